"""Whole-word text helpers shared by the data layer (COCO-IT construction) and the information methods
(the CMI context ``c`` = the caption with the word removed).

The reference code builds the context with a *substring* replace (``caption.replace(word, "")``): it
leaves double spaces and hits parts of other words ("cat" in "catch", "ring" in "string"). Here a word
is matched only as a whole word — not preceded or followed by a letter, digit or underscore — and the
space before it goes with it, so the rest of the caption keeps single spaces.
"""

from __future__ import annotations

import re

from xattr.errors import XattrError


def _pattern(word: str, ignore_case: bool) -> re.Pattern:
    words = word.split()
    if not words:
        raise XattrError(f"word {word!r} is empty; name the word to remove or look for")
    # a phrase ("teddy bear") matches with any run of whitespace between its words
    body = r"\s+".join(re.escape(part) for part in words)
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE if ignore_case else 0)


def contains_word(text: str, word: str, ignore_case: bool = True) -> bool:
    """Whether ``word`` (or a phrase of words) occurs in ``text`` as a whole word, not inside another."""
    return _pattern(word, ignore_case).search(text) is not None


def find_word(text: str, word: str, ignore_case: bool = True) -> int | None:
    """Position of the first whole-word occurrence of ``word`` (or a phrase) in ``text``; ``None`` if absent."""
    match = _pattern(word, ignore_case).search(text)
    return None if match is None else match.start()


def remove_word(caption: str, word: str, ignore_case: bool = True) -> str:
    """``caption`` with every whole-word occurrence of ``word`` (a word or phrase) removed, spaces collapsed.

    ``remove_word("a red star", "red") == "a star"``; ``remove_word("a ring on a string", "ring") ==
    "a on a string"``; ``remove_word("A dog, a dog.", "dog") == "A, a."``. Raises a one-line
    :class:`~xattr.errors.XattrError` when the word does not occur (a context equal to the caption would
    give a CMI of exactly zero without saying why).
    """
    pattern = _pattern(word, ignore_case)
    if pattern.search(caption) is None:
        raise XattrError(f"word {word!r} does not occur as a whole word in caption {caption!r}")
    # drop the whitespace before each occurrence with it; one at the very start takes the space after it
    removed = re.sub(rf"\s*{pattern.pattern}", "", caption, flags=pattern.flags)
    return re.sub(r"\s+", " ", removed).strip()


def replace_word(caption: str, word: str, new: str, ignore_case: bool = True) -> str:
    """``caption`` with every whole-word occurrence of ``word`` (a word or phrase) replaced by ``new``.

    ``replace_word("a dog on a bed", "dog", "cat") == "a cat on a bed"``; ``replace_word("hotdogs", "dog",
    "cat")`` raises (no whole word): one line, as :func:`remove_word`.
    """
    pattern = _pattern(word, ignore_case)
    if pattern.search(caption) is None:
        raise XattrError(f"word {word!r} does not occur as a whole word in caption {caption!r}")
    return pattern.sub(lambda _: new, caption)


__all__ = ["contains_word", "find_word", "remove_word", "replace_word"]
