"""``folder``: any ImageFolder layout, optionally with masks.

Layout under ``root``::

    <root>/<class>/<image>.jpg|png|...          # or <root>/<split>/<class>/<image> when that exists
    <mask_root>/<class>/<image stem>.png        # optional masks (≥128 = object), same relative path

``label`` is the index of the class folder in sorted order (torchvision ``ImageFolder``'s rule); when the
folders are ImageNet wnids and your model is an ImageNet model, prefer ``dataset=imagenet`` for
torchvision's indices, or explain predictions with ``target=pred``.
"""

from __future__ import annotations

from pathlib import Path

from xattr.data.files import FileDataset, Record, missing_root
from xattr.data.registry import register_dataset
from xattr.data.transforms import list_images

LAYOUT = "<root>/<class>/<image>.jpg (ImageFolder), optional masks <mask_root>/<class>/<stem>.png"


@register_dataset()
class FolderDataset(FileDataset):
    """Images from class sub-folders; masks from ``mask_root`` when given (images without a mask keep none)."""

    name = "folder"

    def __init__(self, root: str | Path, split: str = "test", image_size: int = 224, seed: int = 0,
                 n_samples: int | None = None, crop_fraction: float = 0.875, mask_root: str | Path | None = None,
                 shard: int = 0, num_shards: int = 1):
        root = Path(root)
        if not root.is_dir():
            raise missing_root(self.name, root, LAYOUT, "folder")
        folder = root / split if (root / split).is_dir() else root
        self.root, self.split, self.image_size, self.crop_fraction = root, split, int(image_size), float(crop_fraction)
        class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
        self.class_names = tuple(p.name for p in class_dirs)
        masks = Path(mask_root) if mask_root else None
        if masks is not None and (masks / split).is_dir():
            masks = masks / split
        self.records = []
        for label, class_dir in enumerate(class_dirs):
            for path in list_images(class_dir):
                mask = masks / class_dir.name / f"{path.stem}.png" if masks is not None else None
                self.records.append(Record(path=path, label=label, id=f"{class_dir.name}/{path.stem}",
                                           mask_path=mask if mask is not None and mask.is_file() else None))
        if masks is not None and not all(r.mask_path for r in self.records):
            missing = sum(r.mask_path is None for r in self.records)
            import warnings

            warnings.warn(f"dataset folder: {missing} images have no mask under {masks}", stacklevel=2)
        self._finish(n_samples, seed, folder, shard, num_shards)
