"""``shapes_captions``: procedural captioned scenes for text-to-image attribution (no download), deterministic by seed.

Each image (default 32×32, the pixel space of ``tiny_t2i``) shows 1–3 non-overlapping objects on a plain
grey background: each a distinct shape of :data:`xattr.data.shapes.CLASS_NAMES` in one flat colour of
:data:`COLOURS`, ``small`` or ``large``. The background is flat on purpose (one grey level per image, no
texture, no noise) so that a 1M-parameter pixel-space denoiser can learn colour and position, and so
that the object pixels are exactly the object's colour.

Captions come from a small grammar (every word in :data:`VOCABULARY`)::

    caption  := phrase [relation phrase ["and" relation phrase]]
    phrase   := "a" [size] colour shape          size: small | large (said for half of the objects)
    relation := "to the left of" | "to the right of" | "above" | "below"

e.g. ``"a small red star to the left of a blue ring and above a green circle"`` (with three objects the
first is the subject of both relations). A stated relation holds between the objects' centres with a
margin of :data:`RELATION_MARGIN` × the image side; the shapes in one image are distinct, so each noun
names exactly one object.

Samples are (image, word) pairs: for each image the distinct explained words of its caption, in caption
order, chosen by ``words`` (``nouns`` = shape words, ``adjectives`` = size and colour words,
``relations`` = left/right/above/below, ``all`` = the three, ``caption`` = one sample per image with
``word=""``). Function words (``a``, ``to``, ``the``, ``of``, ``and``) are never explained. The mask of a
word is the union of the objects it names: a noun or adjective → the object(s) it is attached to (a colour
said of two objects names both), a relation word → both objects of each relation it states.

Perturbed captions (ARO-like relation tests), seeded per image and each checked to be *false* for the
image (:func:`judge_caption`): ``attribute_swap`` (swap the colour — or the size — words of two objects
whose values differ), ``relation_swap`` (swap the subject and an object of a relation, ARO's VG-Relation
style), ``relation_flip`` (left↔right, above↔below), ``word_shuffle`` (a random order of all words).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from xattr.data.base import AttributionDataset, mask_to_box
from xattr.data.registry import register_dataset
from xattr.data.shapes import CLASS_NAMES, shape_mask
from xattr.errors import XattrError

#: flat object colours (RGB in [0,1]); none is grey, so none blends into the background
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.10, 0.70, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.85, 0.10),
    "purple": (0.60, 0.20, 0.80),
    "white": (0.97, 0.97, 0.97),
}
SIZE_WORDS = ("small", "large")
#: relation word → its phrase in a caption
RELATION_PHRASES = {"left": ("to", "the", "left", "of"), "right": ("to", "the", "right", "of"),
                    "above": ("above",), "below": ("below",)}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
FUNCTION_WORDS = ("a", "to", "the", "of", "and")
#: every word the grammar produces, lower case (a CLIP tokenizer built from it has one token per word)
VOCABULARY: tuple[str, ...] = (*FUNCTION_WORDS, *SIZE_WORDS, *COLOURS, *CLASS_NAMES, *RELATION_PHRASES)
WORD_TYPES = {**{w: "adjective" for w in (*SIZE_WORDS, *COLOURS)}, **{w: "noun" for w in CLASS_NAMES},
              **{w: "relation" for w in RELATION_PHRASES}}
PERTURBATIONS = ("attribute_swap", "relation_swap", "relation_flip", "word_shuffle")
SPLIT_SIZES = {"train": 10000, "val": 1000, "test": 1000}  # images per split (as in ``shapes``)
#: a relation holds when the centres differ by more than this fraction of the image side in its direction
RELATION_MARGIN = 0.1
#: object radius ranges as fractions of the image side (``small``, ``large``)
RADII = {"small": (0.11, 0.14), "large": (0.19, 0.22)}
#: every shape of ``shape_mask`` lies within this many radii of its centre (the square's corner: 0.78·√2)
_REACH = 1.11
_OBJECT_COUNTS, _OBJECT_WEIGHTS = (1, 2, 3), (0.2, 0.4, 0.4)


@dataclass(frozen=True)
class SceneObject:
    """One drawn object: ``center`` is (row, col) in pixels; ``says_size`` whether the caption says its size."""

    shape: str
    colour: str
    size: str
    center: tuple[float, float]
    radius: float
    rotation: float
    says_size: bool

    def phrase(self) -> list[str]:
        return ["a", *([self.size] if self.says_size else []), self.colour, self.shape]


@dataclass(frozen=True)
class Scene:
    """A scene's layout (no pixels): objects, relations ``(subject, word, object)`` as object indices, caption."""

    image_size: int
    background: float
    objects: tuple[SceneObject, ...]
    relations: tuple[tuple[int, str, int], ...]

    @property
    def caption(self) -> str:
        words = self.objects[0].phrase()
        for k, (_, word, other) in enumerate(self.relations):  # the subject is always object 0
            words += [*(["and"] if k else []), *RELATION_PHRASES[word], *self.objects[other].phrase()]
        return " ".join(words)


def tokenize(caption: str, strict: bool = True) -> list[str]:
    """The words of ``caption`` (split on whitespace, lower case); ``strict``: each must be in :data:`VOCABULARY`."""
    words = caption.lower().split()
    if strict:
        unknown = [w for w in words if w not in VOCABULARY]
        if unknown:
            raise XattrError(f"caption {caption!r} has words outside the shapes_captions vocabulary: {unknown}")
    return words


def relation_offset(subject: SceneObject, word: str, other: SceneObject) -> float:
    """How far (pixels) ``subject`` is ``word`` of ``other``: centre difference along the relation's direction."""
    (sr, sc), (orow, oc) = subject.center, other.center
    return {"left": oc - sc, "right": sc - oc, "above": orow - sr, "below": sr - orow}[word]


def _stream(seed: int, split: str, index: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(split.encode()), int(index), purpose])


def make_scene(seed: int, split: str, index: int, image_size: int = 32) -> Scene:
    """The layout of image ``index`` of ``split`` (same on every machine for a given ``seed``)."""
    rng = _stream(seed, split, index, 0)
    side = float(image_size)
    margin = RELATION_MARGIN * side
    while True:  # redraw the scene until a placement satisfies it (almost always the first draw)
        n = int(rng.choice(_OBJECT_COUNTS, p=_OBJECT_WEIGHTS))
        shapes = rng.choice(len(CLASS_NAMES), size=n, replace=False)
        colours = rng.integers(len(COLOURS), size=n)
        sizes = rng.integers(len(SIZE_WORDS), size=n)
        says_size = rng.random(n) < 0.5
        radii = np.array([rng.uniform(*RADII[SIZE_WORDS[s]]) for s in sizes]) * side
        rotations = rng.uniform(0, 2 * np.pi, size=n)
        relations = tuple((0, str(rng.choice(list(RELATION_PHRASES))), k) for k in range(1, n))
        reach = _REACH * radii
        # 256 candidate placements at once; keep the first that fits
        centres = rng.uniform(reach[None, :, None], side - reach[None, :, None], size=(256, n, 2))
        ok = np.ones(256, dtype=bool)
        for i in range(n):
            for j in range(i + 1, n):
                distance = np.linalg.norm(centres[:, i] - centres[:, j], axis=1)
                ok &= distance > reach[i] + reach[j] + 1.0
        for _, word, k in relations:
            d_row, d_col = centres[:, k, 0] - centres[:, 0, 0], centres[:, k, 1] - centres[:, 0, 1]
            offset = {"left": d_col, "right": -d_col, "above": d_row, "below": -d_row}[word]
            ok &= offset > margin
        if ok.any():
            chosen = centres[int(np.argmax(ok))]
            break
    background = float(rng.uniform(0.25, 0.45))
    colour_names, objects = list(COLOURS), []
    for i in range(n):
        objects.append(SceneObject(CLASS_NAMES[shapes[i]], colour_names[colours[i]], SIZE_WORDS[sizes[i]],
                                   (float(chosen[i, 0]), float(chosen[i, 1])), float(radii[i]),
                                   float(rotations[i]), bool(says_size[i])))
    return Scene(int(image_size), background, tuple(objects), relations)


def object_masks(scene: Scene) -> np.ndarray:
    """``[N,H,W]`` bool: the exact mask of each object (disjoint by construction)."""
    size = scene.image_size
    return np.stack([shape_mask(CLASS_NAMES.index(o.shape), size, o.center, o.radius, o.rotation)
                     for o in scene.objects])


def render_scene(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """``(image [H,W,3] float64 in [0,1], masks [N,H,W] bool)``: flat objects on a flat grey background."""
    masks = object_masks(scene)
    image = np.full((scene.image_size, scene.image_size, 3), scene.background)
    for obj, mask in zip(scene.objects, masks):
        image[mask] = COLOURS[obj.colour]
    return image, masks


def word_targets(scene: Scene) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(word, word type, indices of the objects it names)`` for each distinct explained word, in caption order."""
    named: dict[str, set[int]] = {}
    for i, obj in enumerate(scene.objects):  # the caption says the objects in index order
        for word in obj.phrase()[1:]:
            named.setdefault(word, set()).add(i)
    for subject, word, other in scene.relations:
        named.setdefault(word, set()).update((subject, other))
    order = [w for w in tokenize(scene.caption) if w in WORD_TYPES]
    seen = list(dict.fromkeys(order))
    return [(w, WORD_TYPES[w], tuple(sorted(named[w]))) for w in seen]


# ------------------------------------------------------------------------------------------ parsing

@dataclass
class _Phrase:
    shape: str
    shape_at: int
    colour: str | None = None
    colour_at: int | None = None
    size: str | None = None
    size_at: int | None = None
    start: int = 0
    stop: int = 0


@dataclass
class _Parse:
    words: list[str]
    phrases: list[_Phrase]
    relations: list[tuple[int, str, int, int]]  # (subject phrase, word, other phrase, position of the word)


def _parse_phrase(words: list[str], i: int) -> _Phrase | None:
    if i >= len(words) or words[i] != "a":
        return None
    start, i, found = i, i + 1, {}
    while i < len(words) and (words[i] in COLOURS or words[i] in SIZE_WORDS):
        kind = "colour" if words[i] in COLOURS else "size"
        if kind in found:
            return None  # two colours (or sizes) for one object
        found[kind] = i
        i += 1
    if i >= len(words) or words[i] not in CLASS_NAMES:
        return None
    phrase = _Phrase(words[i], i, start=start, stop=i + 1)
    if "colour" in found:
        phrase.colour, phrase.colour_at = words[found["colour"]], found["colour"]
    if "size" in found:
        phrase.size, phrase.size_at = words[found["size"]], found["size"]
    return phrase


def _parse_relation(words: list[str], i: int) -> tuple[str, int, int] | None:
    for word, phrase in RELATION_PHRASES.items():
        if tuple(words[i:i + len(phrase)]) == phrase:
            return word, i + phrase.index(word), i + len(phrase)
    return None


def parse_caption(caption: str) -> _Parse | None:
    """Parse a caption of the grammar (adjectives in any order); ``None`` when it is not one."""
    words = tokenize(caption, strict=False)
    first = _parse_phrase(words, 0)
    if first is None:
        return None
    parse, i = _Parse(words, [first], []), first.stop
    while i < len(words):
        if parse.relations:
            if words[i] != "and":
                return None
            i += 1
        relation = _parse_relation(words, i)
        if relation is None:
            return None
        word, at, i = relation
        other = _parse_phrase(words, i)
        if other is None or len(parse.relations) == 2:
            return None
        parse.phrases.append(other)
        parse.relations.append((0, word, len(parse.phrases) - 1, at))
        i = other.stop
    return parse


def judge_caption(caption: str, scene: Scene) -> Literal["true", "false", "unclear", "ungrammatical"]:
    """Whether ``caption`` describes ``scene``: ``false`` when a claim clearly fails (a shape not in the
    image, a wrong colour or size, a relation between an object and itself or whose offset is ≤ 0),
    ``true`` when every claim holds (relations by more than the margin), ``unclear`` otherwise."""
    parse = parse_caption(caption)
    if parse is None:
        return "ungrammatical"
    by_shape = {obj.shape: obj for obj in scene.objects}
    for phrase in parse.phrases:
        obj = by_shape.get(phrase.shape)
        if obj is None or phrase.colour not in (None, obj.colour) or phrase.size not in (None, obj.size):
            return "false"
    verdict = "true"
    for subject, word, other, _ in parse.relations:
        a, b = parse.phrases[subject].shape, parse.phrases[other].shape
        offset = relation_offset(by_shape[a], word, by_shape[b]) if a != b else 0.0
        if offset <= 0:
            return "false"
        if offset <= RELATION_MARGIN * scene.image_size:
            verdict = "unclear"
    return verdict


# ------------------------------------------------------------------------------------- perturbations

def attribute_swap(caption: str, rng: np.random.Generator) -> str | None:
    """Swap the colour (or size) words of two objects whose values differ; ``None`` when no such pair."""
    parse = parse_caption(caption)
    if parse is None:
        return None
    options = []
    for i, p in enumerate(parse.phrases):
        for q in parse.phrases[i + 1:]:
            for attribute in ("colour", "size"):
                va, vb = getattr(p, attribute), getattr(q, attribute)
                if va is not None and vb is not None and va != vb:
                    options.append((getattr(p, f"{attribute}_at"), getattr(q, f"{attribute}_at")))
    if not options:
        return None
    a, b = options[int(rng.integers(len(options)))]
    words = list(parse.words)
    words[a], words[b] = words[b], words[a]
    return " ".join(words)


def relation_swap(caption: str, rng: np.random.Generator) -> str | None:
    """Swap the subject's phrase with the other phrase of one relation (ARO's VG-Relation perturbation)."""
    parse = parse_caption(caption)
    if parse is None or not parse.relations:
        return None
    subject, _, other, _ = parse.relations[int(rng.integers(len(parse.relations)))]
    p, q = parse.phrases[subject], parse.phrases[other]
    words = parse.words
    return " ".join(words[:p.start] + words[q.start:q.stop] + words[p.stop:q.start] + words[p.start:p.stop]
                    + words[q.stop:])


def relation_flip(caption: str, rng: np.random.Generator) -> str | None:
    """Replace one relation word by its opposite (left↔right, above↔below)."""
    parse = parse_caption(caption)
    if parse is None or not parse.relations:
        return None
    _, word, _, at = parse.relations[int(rng.integers(len(parse.relations)))]
    words = list(parse.words)
    words[at] = OPPOSITE[word]
    return " ".join(words)


def word_shuffle(caption: str, rng: np.random.Generator) -> str | None:
    """A random order of all the caption's words (``None`` for a one-word caption)."""
    words = tokenize(caption, strict=False)
    if len(set(words)) < 2:
        return None
    return " ".join(words[i] for i in rng.permutation(len(words)))


_PERTURB = {"attribute_swap": attribute_swap, "relation_swap": relation_swap, "relation_flip": relation_flip,
            "word_shuffle": word_shuffle}


def perturbations(scene: Scene, kinds: tuple[str, ...] | list[str], rng: np.random.Generator,
                  tries: int = 20) -> dict[str, str | None]:
    """For each kind, a perturbed caption that is false (or ungrammatical) for ``scene`` and differs from the
    caption and from the earlier kinds' results — redrawn up to ``tries`` times; ``None`` when there is none
    (e.g. no relation in a one-object caption, or a colour swap between two red objects)."""
    unknown = [k for k in kinds if k not in _PERTURB]
    if unknown:
        raise XattrError(f"unknown perturbation(s) {unknown}; choose from {', '.join(PERTURBATIONS)}")
    caption, result, taken = scene.caption, {}, {scene.caption}
    for kind in kinds:
        result[kind] = None
        for _ in range(tries):
            candidate = _PERTURB[kind](caption, rng)
            if candidate is None:
                break
            if candidate not in taken and judge_caption(candidate, scene) in ("false", "ungrammatical"):
                result[kind] = candidate
                taken.add(candidate)
                break
    return result


# ------------------------------------------------------------------------------------------ dataset

WordSelection = Literal["nouns", "adjectives", "relations", "all", "caption"]
_TYPES_OF = {"nouns": ("noun",), "adjectives": ("adjective",), "relations": ("relation",),
             "all": ("noun", "adjective", "relation")}


# not ``builtin`` in the registry's sense: it needs no files, but it is no training set for the offline classifiers
@register_dataset()
class ShapesCaptionsDataset(AttributionDataset):
    """Captioned procedural scenes; sample ``i`` is the same for a given configuration on every machine.

    Args:
        split: ``train`` (10,000 images), ``val`` (1,000) or ``test`` (1,000) — disjoint random streams.
        image_size: side in pixels (default 32, the pixel space of ``tiny_t2i``; at least 16).
        seed: base seed of the scenes and of the perturbations.
        length: override the number of images in the split.
        words: which words give samples — ``nouns`` (default), ``adjectives``, ``relations``, ``all``, or
            ``caption`` (one sample per image, ``word=""``, mask = every object).
        candidates: ``null`` (off) or a list of perturbation kinds (:data:`PERTURBATIONS`); then each sample
            carries ``candidates`` (the true caption first, then one per kind, in this order) and
            ``perturbations`` (the kinds), and images lacking one of the kinds are left out.
        n_samples: seeded random subset of the (image, word) samples (``None``: all).
        shard, num_shards: keep contiguous part ``shard`` of ``num_shards`` of the selection.

    A sample: ``image [3,H,W]`` float32 in [0,1]; ``caption``; ``word``; ``word_type`` (noun, adjective,
    relation, caption); ``mask [H,W]`` bool of what the word names and its ``boxes [1,4]``; ``label`` the
    shape class (:data:`xattr.data.shapes.CLASS_NAMES`) of the first object the word names; ``id``
    ``shapes_captions-<split>-<image>-<word>``; with ``candidates`` also ``candidates`` and ``perturbations``.
    """

    name = "shapes_captions"
    class_names = CLASS_NAMES

    def __init__(self, split: str = "test", image_size: int = 32, seed: int = 0, length: int | None = None,
                 words: WordSelection = "nouns", candidates: list[str] | None = None,
                 n_samples: int | None = None, shard: int = 0, num_shards: int = 1):
        if split not in SPLIT_SIZES:
            raise XattrError(f"unknown split {split!r} for shapes_captions; choose one of {', '.join(SPLIT_SIZES)}")
        if image_size < 16:
            raise XattrError(f"shapes_captions image_size={image_size} is too small; use at least 16")
        if words not in (*_TYPES_OF, "caption"):
            raise XattrError(f"dataset.words={words!r}; choose nouns, adjectives, relations, all or caption")
        kinds = tuple(candidates) if candidates is not None else None
        if kinds is not None and (not kinds or any(k not in PERTURBATIONS for k in kinds)):
            raise XattrError(f"dataset.candidates={list(kinds)} must be null or a non-empty list of "
                             f"{', '.join(PERTURBATIONS)}")
        self.split, self.image_size, self.seed, self.words, self.kinds = split, int(image_size), int(seed), words, kinds
        self.length = SPLIT_SIZES[split] if length is None else int(length)
        self.scenes: dict[int, Scene] = {}
        self.candidates: dict[int, list[str]] = {}
        self.samples: list[tuple[int, str, str, tuple[int, ...]]] = []  # (image, word, word type, objects)
        for index in range(self.length):
            scene = make_scene(self.seed, split, index, self.image_size)
            if kinds is not None:
                perturbed = perturbations(scene, kinds, _stream(self.seed, split, index, 1))
                if any(perturbed[k] is None for k in kinds):
                    continue
                self.candidates[index] = [scene.caption, *(perturbed[k] for k in kinds)]
            self.scenes[index] = scene
            if words == "caption":
                self.samples.append((index, "", "caption", tuple(range(len(scene.objects)))))
            else:
                self.samples += [(index, w, t, objs) for w, t, objs in word_targets(scene) if t in _TYPES_OF[words]]
        if not self.samples:
            raise XattrError(f"shapes_captions (split={split}, length={self.length}, words={words}, "
                             f"candidates={list(kinds) if kinds else None}) has no samples; use more images")
        self._select(n_samples, seed, shard, num_shards)

    def _raw_len(self) -> int:
        return len(self.samples)

    def _load(self, raw_index: int) -> dict:
        index, word, word_type, objects = self.samples[raw_index]
        scene = self.scenes[index]
        image, masks = render_scene(scene)
        mask = torch.from_numpy(masks[list(objects)].any(axis=0))
        sample = {
            "image": torch.from_numpy(image).permute(2, 0, 1).float().contiguous(),
            "caption": scene.caption,
            "word": word,
            "word_type": word_type,
            "mask": mask,
            "boxes": mask_to_box(mask),
            "label": CLASS_NAMES.index(scene.objects[objects[0]].shape),
            "id": f"shapes_captions-{self.split}-{index:05d}" + (f"-{word}" if word else ""),
        }
        if self.kinds is not None:
            sample["candidates"] = list(self.candidates[index])
            sample["perturbations"] = list(self.kinds)
        return sample
