"""ImageNet (ILSVRC2012) validation/train folders with boxes, and the ImageNet-A / ImageNet-R variants.

Class indices match torchvision's and timm's ImageNet weights: index ``i`` is the ``i``-th WordNet id in
sorted order (n01440764 = 0 "tench" … n15075141 = 999). torchvision does not ship the WordNet ids, so the
class list is read from ``LOC_synset_mapping.txt`` (Kaggle's ILSVRC localisation release; one line
``<wnid> <names>`` per class), which you place next to the data.

Layout under ``root`` (default ``${paths.data_dir}/imagenet``)::

    LOC_synset_mapping.txt                    # required: the 1000 wnids (and names)
    val/ILSVRC2012_val_00000001.JPEG ...      # flat, labels from the boxes below, or
    val/n01440764/ILSVRC2012_val_00000293.JPEG  # one folder per wnid (labels from the folder)
    LOC_val_solution.csv                      # boxes (+labels): ImageId,PredictionString "wnid x0 y0 x1 y1 ..."
    val_boxes/ILSVRC2012_val_00000001.xml     # or per-image PASCAL-VOC XML (ILSVRC2012_bbox_val_v3)
    train/n01440764/*.JPEG                    # optional, split=train (no boxes)

Boxes are the annotated objects of the image's class, read as continuous pixel coordinates
(x0=xmin, y0=ymin, x1=xmax, y1=ymax; the 0/1-based convention differs by at most one original pixel),
then resized and centre-cropped with the image (see ``xattr.data.transforms``).
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from xattr.data.files import FileDataset, Record, missing_root
from xattr.data.registry import register_dataset
from xattr.data.transforms import IMAGE_SUFFIXES, list_images
from xattr.errors import XattrError

SYNSET_FILE = "LOC_synset_mapping.txt"
LAYOUT = ("<root>/LOC_synset_mapping.txt and <root>/val/*.JPEG (flat, with LOC_val_solution.csv or "
          "val_boxes/*.xml) or <root>/val/<wnid>/*.JPEG")


def read_synsets(path: Path) -> tuple[list[str], list[str]]:
    """Sorted wnids and their first names from a ``LOC_synset_mapping.txt``-style file."""
    entries = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            wnid, _, names = line.partition(" ")
            entries.append((wnid, names.split(",")[0].strip() or wnid))
    entries.sort()
    if not entries or not all(w.startswith("n") and w[1:].isdigit() for w, _ in entries):
        raise XattrError(f"{path} is not a synset list (lines '<wnid> <names>'); use Kaggle's LOC_synset_mapping.txt")
    return [w for w, _ in entries], [n for _, n in entries]


def find_synset_file(candidates: list[Path], name: str) -> Path:
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise XattrError(
        f"dataset {name}: class list {SYNSET_FILE} not found (looked in {', '.join(map(str, candidates))}); "
        "copy Kaggle's ILSVRC LOC_synset_mapping.txt there or set dataset.synset_file=PATH"
    )


def read_solution_csv(path: Path) -> dict[str, list[tuple[str, list[float]]]]:
    """``LOC_val_solution.csv`` → {image id: [(wnid, [x0, y0, x1, y1]), ...]}."""
    out: dict[str, list[tuple[str, list[float]]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            parts = row["PredictionString"].split()
            out[row["ImageId"]] = [(parts[i], [float(v) for v in parts[i + 1:i + 5]]) for i in range(0, len(parts), 5)]
    return out


def read_voc_xml(path: Path) -> list[tuple[str, list[float]]]:
    """PASCAL-VOC style XML → [(wnid, [x0, y0, x1, y1]), ...]."""
    objects = []
    for obj in ET.parse(path).getroot().iter("object"):
        box = obj.find("bndbox")
        coords = [float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
        objects.append((obj.find("name").text.strip(), coords))
    return objects


@register_dataset()
class ImageNetDataset(FileDataset):
    """ILSVRC2012 ``val`` (with boxes) or ``train`` images, labels in torchvision's class order."""

    name = "imagenet"

    def __init__(self, root: str | Path, split: str = "val", image_size: int = 224, seed: int = 0,
                 n_samples: int | None = None, crop_fraction: float = 0.875, synset_file: str | Path | None = None,
                 shard: int = 0, num_shards: int = 1):
        root = Path(root)
        if split not in ("val", "train"):
            raise XattrError(f"unknown split {split!r} for imagenet; choose val or train")
        if not (root / split).is_dir():
            raise missing_root(self.name, root / split, LAYOUT, "imagenet")
        self.root, self.split, self.image_size, self.crop_fraction = root, split, int(image_size), float(crop_fraction)
        synsets = find_synset_file([Path(synset_file)] if synset_file else [root / SYNSET_FILE], self.name)
        self.wnids, self.class_names = read_synsets(synsets)
        self.class_index = {w: i for i, w in enumerate(self.wnids)}
        solution = read_solution_csv(root / "LOC_val_solution.csv") if (root / "LOC_val_solution.csv").is_file() else {}
        xml_dir = root / "val_boxes"
        self.has_boxes = split == "val" and (bool(solution) or xml_dir.is_dir())
        self.records = []
        folder = root / split
        class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
        if class_dirs:  # one folder per wnid
            for class_dir in class_dirs:
                if class_dir.name not in self.class_index:
                    raise XattrError(f"dataset imagenet: folder {class_dir} is not a wnid of {synsets}; "
                                     "remove it or use dataset=folder")
                for path in list_images(class_dir):
                    self.records.append(self._record(path, self.class_index[class_dir.name], solution, xml_dir))
        else:  # flat: labels from the box annotations
            for path in list_images(folder):
                self.records.append(self._record(path, None, solution, xml_dir))
        self._finish(n_samples, seed, folder, shard, num_shards)

    def _record(self, path: Path, label: int | None, solution: dict, xml_dir: Path) -> Record:
        image_id = path.stem
        objects = solution.get(image_id)
        if objects is None and self.split == "val" and (xml_dir / f"{image_id}.xml").is_file():
            objects = read_voc_xml(xml_dir / f"{image_id}.xml")
        if label is None:
            if not objects:
                raise XattrError(f"dataset imagenet: no label for flat val image {path.name}; add "
                                 f"{self.root}/LOC_val_solution.csv or val_boxes/{image_id}.xml, or use wnid folders")
            if objects[0][0] not in self.class_index:
                raise XattrError(f"dataset imagenet: {image_id} is labelled {objects[0][0]}, not a known wnid")
            label = self.class_index[objects[0][0]]
        boxes = None
        if objects:
            wnid = self.wnids[label]
            own = [coords for w, coords in objects if w == wnid]
            boxes = torch.tensor(own, dtype=torch.float32).reshape(-1, 4)
        return Record(path=path, label=label, id=image_id, boxes=boxes)


class _ImageNetVariant(FileDataset):
    """ImageNet-A / -R: ``<root>/<wnid>/*.jpg`` for a 200-class subset; labels are 1000-class indices."""

    folder_name = "imagenet-a"

    def __init__(self, root: str | Path, split: str = "test", image_size: int = 224, seed: int = 0,
                 n_samples: int | None = None, crop_fraction: float = 0.875, synset_file: str | Path | None = None,
                 shard: int = 0, num_shards: int = 1):
        root = Path(root)
        if split not in ("test", "val"):
            raise XattrError(f"{self.name} has a single split; use split=test")
        layout = f"<root>/<wnid>/*.jpg (the {self.folder_name} tarball's class folders) and {SYNSET_FILE}"
        if not root.is_dir():
            raise missing_root(self.name, root, layout, self.folder_name)
        self.root, self.split, self.image_size, self.crop_fraction = root, split, int(image_size), float(crop_fraction)
        candidates = [Path(synset_file)] if synset_file else [root / SYNSET_FILE, root.parent / "imagenet" / SYNSET_FILE]
        synsets = find_synset_file(candidates, self.name)
        self.wnids, self.class_names = read_synsets(synsets)
        index = {w: i for i, w in enumerate(self.wnids)}
        self.records = []
        subset = []
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            if class_dir.name not in index:
                raise XattrError(f"dataset {self.name}: folder {class_dir.name} is not an ImageNet wnid of {synsets}")
            subset.append(index[class_dir.name])
            for path in list_images(class_dir):
                self.records.append(Record(path=path, label=index[class_dir.name], id=f"{class_dir.name}/{path.stem}"))
        #: the 1000-class indices present (200 for the official releases); restrict logits to these if wanted
        self.subset_indices = sorted(subset)
        self._finish(n_samples, seed, root, shard, num_shards)


@register_dataset()
class ImageNetADataset(_ImageNetVariant):
    """ImageNet-A (Hendrycks et al. 2021): natural adversarial examples, 200 classes."""

    name = "imagenet_a"
    folder_name = "imagenet-a"


@register_dataset()
class ImageNetRDataset(_ImageNetVariant):
    """ImageNet-R (Hendrycks et al. 2021): renditions (art, cartoons, ...), 200 classes."""

    name = "imagenet_r"
    folder_name = "imagenet-r"


__all__ = ["ImageNetDataset", "ImageNetADataset", "ImageNetRDataset", "read_synsets", "IMAGE_SUFFIXES"]
