"""Cache entries: the files the suite writes itself under ``paths.cache_dir`` and reads back — trained
classifiers, DiffIB's denoisers and alpha-U-Nets, their resumable ``<name>.partial.pt`` states, feature statistics.

- :func:`read` — the one reader of a cache file (:func:`xattr.utils.io.load_torch_file`: weights-only, a pickle
  that carries code is refused and never runs). Whatever is wrong with the file (unreadable, truncated, code,
  an older format) ends in one :class:`~xattr.errors.XattrError` line that names the file and says to delete it:
  the suite writes it again on next use. There is no unsafe fallback.
- :func:`unpacking` — the same line for a readable file whose content does not fit (keys, shapes, config).
- :func:`load_or_build` — first use: load the entry, else build it once across processes. A waiting lock per
  entry (:func:`xattr.utils.locks.waiting`, ``<entry>.lock`` beside it): one process builds, the others wait,
  then load the finished file (written atomically, so an entry that exists is complete).

A user-given file (``model.checkpoint=PATH``) is no cache entry: :mod:`xattr.models.checkpoint` reads it with
the same loader and its own advice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from xattr.errors import XattrError
from xattr.utils.io import load_torch_file
from xattr.utils.locks import waiting

T = TypeVar("T")

#: what the one-line error of a bad cache entry tells the user to do
DELETE = "delete it (it is rebuilt on next use)"


def bad_entry(path: str | Path, what: str, problem: str) -> XattrError:
    """The one line for a cache entry that cannot be used: ``<what> cache file <path> <problem>; delete it (...)``."""
    return XattrError(f"{what} cache file {path} {problem}; {DELETE}")


def read(path: str | Path, what: str) -> dict:
    """The content (a dict) of the cache file at ``path``, which holds a ``what`` (e.g. ``"denoiser"``)."""
    state = load_torch_file(path, name=f"{what} cache file", fix=DELETE)
    if not isinstance(state, dict):
        raise bad_entry(path, what, f"holds a {type(state).__name__}, not a dict")
    return state


@contextlib.contextmanager
def unpacking(path: str | Path, what: str) -> Iterator[None]:
    """Turn what goes wrong while the block takes apart the content of ``path`` (a missing key, a state dict of
    other shapes, a config the network does not take) into the one line of :func:`bad_entry`."""
    try:
        yield
    except (XattrError, KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise bad_entry(path, what, f"has unusable content ({_first_words(error)})") from error


def _first_words(error: BaseException) -> str:
    """``Type: first line`` of ``error`` (with the next line where the first only introduces it, as torch's
    ``Error(s) in loading state_dict for X:``), at most 200 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else (lines[0] if lines else "")
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_or_build(path: str | Path, load: Callable[[Path], T | None], build: Callable[[Path], T]) -> T:
    """The cache entry at ``path``: ``load(path)`` (``None``: absent, or not the entry asked for); else, holding the
    entry's lock, ``load`` again (another process may have built it meanwhile) and only then ``build(path)``."""
    path = Path(path)
    found = load(path)
    if found is not None:
        return found
    with waiting(path):
        found = load(path)
        return found if found is not None else build(path)
