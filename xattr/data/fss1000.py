"""FSS-1000 (Li et al. 2020): 1,000 classes × 10 images, each ``<N>.jpg`` with a ``<N>.png`` mask.

Layout under ``root`` (default ``${paths.data_dir}/fss1000``)::

    <class>/1.jpg  <class>/1.png  ...  <class>/10.jpg  <class>/10.png

FSS-1000 classes are not ImageNet classes: ``label`` is the index of the class folder in sorted order,
useful for grouping only. Experiments on it (DiffIB's segmentation ratio) explain the model's
prediction: use ``target=pred``. ``mask`` is the PNG (≥128 = object) after the same resize/crop;
``boxes`` its tight box. Splits (no official image split exists for attribution): ``all``; ``train``
= the first half of each class's images (sorted by number), ``test`` = the second half.
"""

from __future__ import annotations

from pathlib import Path

from xattr.data.files import FileDataset, Record, missing_root
from xattr.data.registry import register_dataset
from xattr.errors import XattrError

LAYOUT = "<root>/<class>/<N>.jpg with masks <root>/<class>/<N>.png"


def _number(path: Path):
    return (0, int(path.stem)) if path.stem.isdigit() else (1, path.stem)


@register_dataset()
class FSS1000Dataset(FileDataset):
    """Images with exact object masks; ``label`` = class-folder index (not an ImageNet class)."""

    name = "fss1000"

    def __init__(self, root: str | Path, split: str = "all", image_size: int = 224, seed: int = 0,
                 n_samples: int | None = None, crop_fraction: float = 1.0,
                 shard: int = 0, num_shards: int = 1):
        root = Path(root)
        if split not in ("all", "train", "test"):
            raise XattrError(f"unknown split {split!r} for fss1000; choose all, train or test")
        if not root.is_dir():
            raise missing_root(self.name, root, LAYOUT, "fss1000")
        self.root, self.split, self.image_size, self.crop_fraction = root, split, int(image_size), float(crop_fraction)
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
        self.class_names = tuple(p.name for p in class_dirs)
        self.records = []
        for label, class_dir in enumerate(class_dirs):
            images = sorted((p for p in class_dir.glob("*.jpg") if p.with_suffix(".png").is_file()), key=_number)
            half = (len(images) + 1) // 2
            chosen = images if split == "all" else images[:half] if split == "train" else images[half:]
            for path in chosen:
                self.records.append(Record(path=path, label=label, id=f"{class_dir.name}/{path.stem}",
                                           mask_path=path.with_suffix(".png")))
        self._finish(n_samples, seed, root, shard, num_shards)
