"""COCO-IT and COCO100-IT (Kong et al., ICLR 2024, §3.3): word localisation pairs from COCO val2017.

Layout under ``root`` (default ``${paths.data_dir}/coco``)::

    annotations/captions_val2017.json  annotations/instances_val2017.json  val2017/<file_name>.jpg

Construction (the paper's, as its authors' code does it): for each image (by image id) and each category
annotated in it (by category id), the first of the image's captions (in file order) that names the
category — or its plural — as a whole word (:func:`xattr.utils.text.contains_word`, case-insensitive; a
multi-word category such as "teddy bear" as a phrase) gives one pair; the mask is the union of all of that
category's instances in the image (crowd regions included). The paper counts about 6,927 pairs over 4,550
images. ``word`` is the form the caption uses (``"dog"`` or ``"dogs"``, lower case), so a whole-word
removal of it gives the CMI context; ``category`` is COCO's name. Plurals: English rules (+s; +es after
s, x, z, ch, sh) and a small table of COCO's irregular ones (person → people/persons, mouse → mice,
knife → knives, sheep, skis, scissors). COCO100-IT: the first 10 pairs (in the order above) of each of
airplane, bear, bed, cat, dog, elephant, horse, person, teddy bear, zebra (the paper does not say which
10; the first ones are our reproducible choice).

Masks are decoded here (pycocotools is not a dependency): polygons with :func:`skimage.draw.polygon2mask`
(pixel-centre sampling, which may differ from pycocotools' rasteriser on boundary pixels), uncompressed
and compressed RLE with :func:`rle_decode`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from xattr.data.captioned import CaptionFileDataset, CaptionRecord, check_files
from xattr.data.registry import register_dataset
from xattr.errors import XattrError
from xattr.utils.text import contains_word, find_word

LAYOUT = ("<root>/annotations/captions_val2017.json, <root>/annotations/instances_val2017.json "
          "and images <root>/val2017/<file_name>")
COCO100_CATEGORIES = ("airplane", "bear", "bed", "cat", "dog", "elephant", "horse", "person", "teddy bear", "zebra")
COCO100_PER_CATEGORY = 10
IRREGULAR_PLURALS = {"person": ("people", "persons"), "mouse": ("mice",), "knife": ("knives",), "sheep": (),
                     "skis": (), "scissors": ()}


def plural_forms(name: str) -> tuple[str, ...]:
    """``name`` and its plural(s): the last word is pluralised (``"teddy bear"`` → ``"teddy bears"``)."""
    *head, last = name.split()
    if last in IRREGULAR_PLURALS:
        plurals = IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        plurals = (last + "es",)
    else:
        plurals = (last + "s",)
    return (name, *(" ".join([*head, p]) for p in plurals))


def naming_form(caption: str, name: str) -> str | None:
    """The form of category ``name`` (singular or a plural) that ``caption`` names first as a whole word."""
    found = []
    for form in plural_forms(name):
        position = find_word(caption, form)
        if position is not None:
            found.append((position, form))
    return min(found)[1] if found else None


# ------------------------------------------------------------------------------------- mask decoding

def rle_counts_from_string(counts: str) -> list[int]:
    """Decode COCO's compressed RLE string (pycocotools' ``rleFrString``: 6-bit chunks from ``chr(48)``,
    5 data bits + a continuation bit, sign-extended; counts after the second are deltas to the one two back)."""
    values: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            chunk = ord(counts[position]) - 48
            value |= (chunk & 0x1F) << (5 * shift)
            more = bool(chunk & 0x20)
            position += 1
            shift += 1
            if not more and chunk & 0x10:
                value |= -1 << (5 * shift)
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return values


def rle_decode(rle: dict) -> np.ndarray:
    """``{"size": [h, w], "counts": list[int] | str}`` → ``[h,w]`` bool. Counts alternate runs of 0 and 1
    (starting with 0) over the pixels in column-major (Fortran) order."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = rle_counts_from_string(counts)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != height * width or (counts < 0).any():
        raise XattrError(f"COCO RLE counts sum to {int(counts.sum())}, not {height}x{width}={height * width}; "
                         "the annotation file is damaged")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape(width, height).T.copy()


def segmentation_mask(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons ``[[x0,y0,x1,y1,…], …]`` or an RLE dict) → ``[h,w]`` bool."""
    from skimage.draw import polygon2mask

    if isinstance(segmentation, dict):
        mask = rle_decode(segmentation)
        if mask.shape != (height, width):
            raise XattrError(f"COCO RLE of size {mask.shape} on an image of size {(height, width)}")
        return mask
    mask = np.zeros((height, width), dtype=bool)
    for polygon in segmentation:
        xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if len(xy) >= 3:
            # pixel (r, c) covers [r, r+1) x [c, c+1); polygon2mask samples at integer points: shift by half a pixel
            mask |= polygon2mask((height, width), xy[:, ::-1] - 0.5)
    return mask


class _UnionMask:
    """Picklable ``mask(height, width)``: the union of some instance segmentations."""

    def __init__(self, segmentations: list):
        self.segmentations = segmentations

    def __call__(self, height: int, width: int) -> np.ndarray:
        mask = np.zeros((height, width), dtype=bool)
        for segmentation in self.segmentations:
            mask |= segmentation_mask(segmentation, height, width)
        return mask


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise XattrError(f"cannot read COCO annotations {path} ({error}); replace the file") from error


def coco_it_pairs(root: Path, categories: tuple[str, ...] | None = None) -> list[dict]:
    """The COCO-IT pairs under ``root``: dicts with ``image_id``, ``file_name``, ``caption``, ``word``,
    ``category``, ``category_id``, ``segmentations`` — in image-id, then category-id order."""
    captions = _read_json(root / "annotations" / "captions_val2017.json")
    instances = _read_json(root / "annotations" / "instances_val2017.json")
    names = {int(c["id"]): str(c["name"]) for c in instances["categories"]}
    images = {int(image["id"]): image for image in instances["images"]}
    by_image: dict[int, list[str]] = defaultdict(list)
    for annotation in captions["annotations"]:
        by_image[int(annotation["image_id"])].append(str(annotation["caption"]).strip())
    segments: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for annotation in instances["annotations"]:
        segments[int(annotation["image_id"])][int(annotation["category_id"])].append(annotation["segmentation"])
    pairs = []
    for image_id in sorted(segments):
        if image_id not in images:
            continue
        for category_id in sorted(segments[image_id]):
            name = names[category_id]
            if categories is not None and name not in categories:
                continue
            for caption in by_image.get(image_id, []):
                form = naming_form(caption, name)
                if form is not None:
                    pairs.append({"image_id": image_id, "file_name": images[image_id]["file_name"],
                                  "caption": caption, "word": form.lower(), "category": name,
                                  "category_id": category_id, "segmentations": segments[image_id][category_id]})
                    break
    return pairs


@register_dataset()
class COCOITDataset(CaptionFileDataset):
    """COCO-IT word localisation pairs: ``image``, ``caption``, ``word`` (as the caption says it), ``category``,
    ``mask`` (union of the category's instances), ``label`` (index of the category among COCO's categories,
    sorted by id), ``id`` ``<image id>-<category>``.

    Args:
        root: the COCO folder (see the module docstring for its layout).
        image_size: side after the resize without cropping (default 512, SD 2.1's resolution).
        resample: ``bicubic`` or ``bilinear`` for the image (the mask is always nearest).
        n_samples, seed, shard, num_shards: seeded subset and contiguous shard, as every dataset.
    """

    name = "coco_it"
    categories: tuple[str, ...] | None = None

    def __init__(self, root: str | Path, image_size: int = 512, resample: str = "bicubic", seed: int = 0,
                 n_samples: int | None = None, shard: int = 0, num_shards: int = 1):
        root = Path(root)
        self.root, self.split = root, "val2017"
        self._check_resize(image_size, resample)
        check_files(self.name, {"captions": root / "annotations" / "captions_val2017.json",
                                "instances": root / "annotations" / "instances_val2017.json",
                                "images": root / "val2017"}, LAYOUT, "coco")
        instances_categories = _read_json(root / "annotations" / "instances_val2017.json")["categories"]
        ordered = sorted(instances_categories, key=lambda c: int(c["id"]))
        self.class_names = tuple(str(c["name"]) for c in ordered)
        pairs = coco_it_pairs(root, self.categories)
        if self.categories is not None:
            kept, count = [], defaultdict(int)
            for pair in pairs:
                if count[pair["category"]] < COCO100_PER_CATEGORY:
                    kept.append(pair)
                    count[pair["category"]] += 1
            pairs = kept
        if not pairs:
            raise XattrError(f"dataset {self.name} at {root}: no caption names an annotated category; check "
                             "that the annotation files are COCO val2017's")
        self.records = [
            CaptionRecord(path=root / "val2017" / pair["file_name"], id=f"{pair['image_id']:012d}-"
                          f"{pair['category'].replace(' ', '_')}", caption=pair["caption"], word=pair["word"],
                          label=self.class_names.index(pair["category"]), mask=_UnionMask(pair["segmentations"]),
                          extra={"category": pair["category"], "word_type": "noun"})
            for pair in pairs]
        self._select(n_samples, seed, shard, num_shards)


@register_dataset()
class COCO100ITDataset(COCOITDataset):
    """COCO100-IT: the first 10 COCO-IT pairs of each of 10 categories (100 pairs; Kong et al. 2024)."""

    name = "coco100_it"
    categories = COCO100_CATEGORIES


__all__ = ["COCOITDataset", "COCO100ITDataset", "coco_it_pairs", "contains_word", "naming_form", "plural_forms",
           "rle_decode", "segmentation_mask"]
