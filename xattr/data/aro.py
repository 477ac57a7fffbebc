"""ARO (Yuksekgonul et al., ICLR 2023) as the information-decomposition paper uses it (Kong et al. 2024, Tables 1–2).

Layouts (ARO's own file names and fields; ``root`` defaults in ``conf/dataset/aro_*.yaml``)::

    aro_vg_relation     <root>/visual_genome_relation.json     + <root>/images/<image_path>
    aro_vg_attribution  <root>/visual_genome_attribution.json  + <root>/images/<image_path>
    aro_coco_order      <root>/coco_karpathy_test.json         + <root>/<image>  (e.g. val2014/COCO_val2014_….jpg)
    aro_flickr_order    <root>/flickr30k_test.json             + <root>/<image>  (e.g. flickr30k-images/….jpg)

VG items carry ``image_path``, ``bbox_x/y/w/h`` (the image is cropped to that box, as ARO does),
``true_caption``, ``false_caption`` and ``relation_name`` (VG-R) or ``attributes`` (VG-A, two words). The
Karpathy files list ``{"image": path, "caption": [captions]}``; there is one sample per (image, caption).

Every sample has ``candidates`` with the TRUE caption FIRST (ARO's VG lists are ``[false, true]``; here the
true one is always index 0), ``caption`` (= the true one), ``word=""``, and for the Table 2 breakdown
``relation`` (VG-R) or ``attribute`` (``"<a>_<b>"``, VG-A; ARO's report skips attributes with fewer than
25 cases — that filter belongs to the report, every item is here).

COCO/Flickr-Order captions are cleaned as BLIP/ARO's ``pre_caption`` does (lower case; ``,.'!?"()*#:;~``
removed, ``-`` and ``/`` → space; at most ``max_words`` = 30 words) and then perturbed four ways:
``shuffle_nouns_and_adj``, ``shuffle_allbut_nouns_and_adj``, ``shuffle_within_trigrams``,
``shuffle_trigrams``. Deviations from ARO's code, deliberately:

- perturbations are SEEDED per (seed, image, caption) (ARO draws from the global ``random``/NumPy state, so
  its candidates are not reproducible); each is redrawn (up to 20 times) until it differs from the true
  caption and the earlier candidates; a caption for which some kind cannot differ (e.g. one noun and one
  adjective) is left out (``dropped`` counts them) rather than scored against a copy of itself;
- the candidate list is built once and never reversed (the Info-Decomp code reverses it in place on
  every access);
- ARO tags parts of speech with spaCy ``en_core_web_sm`` and splits trigrams after ``nltk.word_tokenize``;
  neither is available offline here. Words are split on whitespace after cleaning (punctuation is gone by
  then, so this matches ``word_tokenize`` + ``pre_caption`` except for contractions), and nouns/adjectives
  come from :func:`pos_tag`, a small lexicon tagger (closed-class words and verbs by list and suffix, a
  list of common caption adjectives, every other word a noun). Its tags differ from spaCy's on some
  words, so the two POS-based perturbations are close to ARO's, not identical; the trigram ones are exact
  up to the random draws.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from xattr.data.captioned import CaptionFileDataset, CaptionRecord, check_files
from xattr.data.registry import register_dataset
from xattr.errors import XattrError

ORDER_PERTURBATIONS = ("shuffle_nouns_and_adj", "shuffle_allbut_nouns_and_adj", "shuffle_within_trigrams",
                       "shuffle_trigrams")
MAX_WORDS = 30  # ARO's max_words for COCO/Flickr-Order

# ----------------------------------------------------------------------------------- lexicon tagger

_CLOSED = set("""
a an the this that these those some any each every no another other both either neither all few many much
several such its his her their our my your whose which what who whom where when while how why there here
of in on at by for with without within from to into onto upon over under above below beside besides between
among through across along around behind beyond near next inside outside toward towards against off out up
down about after before during like than as via atop underneath beneath past throughout
and or but nor so yet if because though although unless whether then also too very just not only still even
it he she they we you i me him them us itself himself herself themselves one ones
is are was were be been being am do does did has have had having will would can could shall should may might
must 's
""".split())
_NUMBERS = set("""two three four five six seven eight nine ten eleven twelve dozen hundred first second third""".split())
_VERBS = set("""
sit sits sat stand stands stood lie lies lay lays laid hold holds held ride rides rode look looks looked
eat eats ate play plays go goes went come comes came wait waits fly flies flew walk walks run runs ran
carry carries carried wear wears wore make makes made take takes took get gets got give gives gave show shows
contain contains filled covered parked stacked topped surrounded seen shown made lined decorated loaded
appears seems seem appear watch watches use uses fill fills pull pulls push pushes cut cuts set sets put puts
""".split())
_NOT_VERBS = set("""
building buildings ceiling clothing painting paintings evening morning thing things king ring rings string
wing wings icing frosting topping toppings railing railings sibling siblings sling stuffing awning
awnings pudding dumpling dumplings wedding bedding sing spring swing swings
bed red shed sled""".split())
_ADJECTIVES = set("""
white black red blue green yellow orange brown pink purple gray grey silver gold golden dark light bright
colorful colourful small large big little tiny huge giant tall short long wide narrow thin thick fat
young old new modern antique vintage wooden metal plastic glass stone brick empty full open closed clean
dirty wet dry hot cold warm fresh cooked raw sliced delicious tasty good nice great beautiful pretty cute
ugly busy crowded quiet calm sunny cloudy snowy grassy sandy rocky shady lush leafy different various
single double several multiple many few same other front back top bottom left right middle side upper lower
high low close far electric digital commercial public private professional wild domestic adult baby
happy sad smiling asian african american chinese italian mexican french english
""".split())


def pos_tag(words: list[str]) -> list[str]:
    """``NOUN``, ``ADJ`` or ``OTHER`` for each (lower-case) word: a lexicon approximation of spaCy's
    NN*/JJ* tags that ARO's perturbations use (see the module docstring)."""
    tags = []
    for word in words:
        if word in _CLOSED or word in _NUMBERS or word.isdigit():
            tags.append("OTHER")
        elif word in _ADJECTIVES:
            tags.append("ADJ")
        elif word in _VERBS or (word not in _NOT_VERBS and re.fullmatch(r"\w{2,}(ing|ed)", word)):
            tags.append("OTHER")
        else:
            tags.append("NOUN")
    return tags


def clean_caption(caption: str, max_words: int = MAX_WORDS) -> str:
    """BLIP/ARO ``pre_caption``: lower case, drop ``,.'!?"()*#:;~``, ``-``/``/`` → space, collapse, truncate."""
    text = re.sub(r"[,.'!?\"()*#:;~]", "", caption.lower()).replace("-", " ").replace("/", " ")
    words = text.split()
    return " ".join(words[:max_words])


def _shuffle_positions(words: list[str], positions: list[int], rng: np.random.Generator) -> list[str]:
    out = list(words)
    for target, source in zip(positions, rng.permutation(positions)):
        out[target] = words[source]
    return out


def _trigrams(words: list[str]) -> list[list[str]]:
    return [words[i:i + 3] for i in range(0, len(words), 3)]


def order_perturbation(caption: str, kind: str, rng: np.random.Generator) -> str:
    """One of ARO's four order perturbations of a cleaned caption (words split on whitespace)."""
    words = caption.split()
    tags = pos_tag(words)
    if kind == "shuffle_nouns_and_adj":
        for tag in ("NOUN", "ADJ"):
            words = _shuffle_positions(words, [i for i, t in enumerate(tags) if t == tag], rng)
        return " ".join(words)
    if kind == "shuffle_allbut_nouns_and_adj":
        return " ".join(_shuffle_positions(words, [i for i, t in enumerate(tags) if t == "OTHER"], rng))
    if kind == "shuffle_within_trigrams":
        return " ".join(w for tri in _trigrams(words) for w in (tri[i] for i in rng.permutation(len(tri))))
    if kind == "shuffle_trigrams":
        trigrams = _trigrams(words)
        return " ".join(w for i in rng.permutation(len(trigrams)) for w in trigrams[i])
    raise XattrError(f"unknown order perturbation {kind!r}; choose one of {', '.join(ORDER_PERTURBATIONS)}")


def order_candidates(caption: str, rng: np.random.Generator, tries: int = 20) -> list[str] | None:
    """``[caption, *one perturbation per kind]``, each different from the caption and the earlier ones;
    ``None`` when some kind cannot differ in ``tries`` draws."""
    candidates = [caption]
    for kind in ORDER_PERTURBATIONS:
        for _ in range(tries):
            candidate = order_perturbation(caption, kind, rng)
            if candidate not in candidates:
                candidates.append(candidate)
                break
        else:
            return None
    return candidates


# ------------------------------------------------------------------------------------------ datasets

def _read_list(path: Path, name: str) -> list:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise XattrError(f"dataset {name}: cannot read {path} ({error}); replace the file") from error
    if not isinstance(data, list):
        raise XattrError(f"dataset {name}: {path} holds a {type(data).__name__}, not ARO's list of items")
    return data


class _VGDataset(CaptionFileDataset):
    annotation_file = ""
    key = ""  # "relation" or "attribute"

    def __init__(self, root: str | Path, image_size: int = 512, resample: str = "bicubic", seed: int = 0,
                 n_samples: int | None = None, shard: int = 0, num_shards: int = 1):
        root = Path(root)
        self.root, self.split = root, "test"
        self._check_resize(image_size, resample)
        annotation = root / self.annotation_file
        layout = f"<root>/{self.annotation_file} and images <root>/images/<image_path>"
        check_files(self.name, {"annotations": annotation, "images": root / "images"}, layout, "aro")
        self.records = []
        for index, item in enumerate(_read_list(annotation, self.name)):
            try:
                x, y, w, h = (float(item[k]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
                true, false = str(item["true_caption"]), str(item["false_caption"])
                value = self._value(item)
                path = root / "images" / str(item["image_path"])
            except (KeyError, TypeError, ValueError, IndexError) as error:
                raise XattrError(f"dataset {self.name}: item {index} of {annotation} lacks ARO's fields "
                                 f"({error!r}); use ARO's {self.annotation_file}") from error
            self.records.append(CaptionRecord(path=path, id=f"{self.name}-{index:05d}", caption=true,
                                              crop=(x, y, x + w, y + h),
                                              extra={"candidates": [true, false], self.key: value}))
        if not self.records:
            raise XattrError(f"dataset {self.name}: {annotation} has no items")
        self._select(n_samples, seed, shard, num_shards)

    def _value(self, item: dict) -> str:
        raise NotImplementedError


@register_dataset()
class AROVGRelationDataset(_VGDataset):
    """VG-Relation: ``candidates = [true, subject–object-swapped]``, ``relation`` (ARO's ``relation_name``)."""

    name = "aro_vg_relation"
    annotation_file = "visual_genome_relation.json"
    key = "relation"

    def _value(self, item: dict) -> str:
        return str(item["relation_name"])


@register_dataset()
class AROVGAttributionDataset(_VGDataset):
    """VG-Attribution: ``candidates = [true, attribute-swapped]``, ``attribute`` = ``"<a>_<b>"`` (ARO's key)."""

    name = "aro_vg_attribution"
    annotation_file = "visual_genome_attribution.json"
    key = "attribute"

    def _value(self, item: dict) -> str:
        first, second = item["attributes"][:2]
        return f"{first}_{second}"


class _OrderDataset(CaptionFileDataset):
    annotation_file = ""
    data_subdir = ""
    image_example = ""

    def __init__(self, root: str | Path, image_size: int = 512, resample: str = "bicubic", seed: int = 0,
                 max_words: int = MAX_WORDS, n_samples: int | None = None, shard: int = 0, num_shards: int = 1):
        root = Path(root)
        self.root, self.split = root, "test"
        self._check_resize(image_size, resample)
        annotation = root / self.annotation_file
        layout = f"<root>/{self.annotation_file} (Karpathy test split) and images <root>/{self.image_example}"
        check_files(self.name, {"annotations": annotation}, layout, self.data_subdir)
        self.records, self.dropped = [], 0
        for index, item in enumerate(_read_list(annotation, self.name)):
            try:
                path, captions = root / str(item["image"]), item["caption"]
                captions = [captions] if isinstance(captions, str) else [str(c) for c in captions]
            except (KeyError, TypeError) as error:
                raise XattrError(f"dataset {self.name}: item {index} of {annotation} lacks 'image'/'caption' "
                                 f"({error!r}); use the Karpathy {self.annotation_file}") from error
            for k, raw in enumerate(captions):
                caption = clean_caption(raw, max_words)
                candidates = order_candidates(caption, np.random.default_rng([int(seed), index, k]))
                if candidates is None:
                    self.dropped += 1
                    continue
                self.records.append(CaptionRecord(path=path, id=f"{self.name}-{index:05d}-{k}", caption=caption,
                                                  extra={"candidates": candidates,
                                                         "perturbations": list(ORDER_PERTURBATIONS)}))
        if not self.records:
            raise XattrError(f"dataset {self.name}: {annotation} has no usable captions")
        self._select(n_samples, seed, shard, num_shards)


@register_dataset()
class AROCOCOOrderDataset(_OrderDataset):
    """COCO-Order: Karpathy test captions (5,000 images) + ARO's four seeded order perturbations."""

    name = "aro_coco_order"
    annotation_file = "coco_karpathy_test.json"
    data_subdir = "coco"
    image_example = "val2014/COCO_val2014_<id>.jpg"


@register_dataset()
class AROFlickrOrderDataset(_OrderDataset):
    """Flickr30k-Order: Karpathy test captions (1,000 images) + ARO's four seeded order perturbations."""

    name = "aro_flickr_order"
    annotation_file = "flickr30k_test.json"
    data_subdir = "flickr30k"
    image_example = "flickr30k-images/<id>.jpg"


__all__ = ["AROVGRelationDataset", "AROVGAttributionDataset", "AROCOCOOrderDataset", "AROFlickrOrderDataset",
           "ORDER_PERTURBATIONS", "clean_caption", "order_candidates", "order_perturbation", "pos_tag"]
