"""Private base of the datasets read through torchvision's own classes (``oxford_pet``, ``flowers102``).

torchvision indexes the files and labels (``download=False``: nothing is fetched); samples get this package's
resize + centre crop (``transforms.resize_center_crop``) and, where the set has them, masks. A missing folder
is the one-line ``missing_root`` error naming torchvision's layout and ``paths.data_dir=``.
"""

from __future__ import annotations

from pathlib import Path

from xattr.data.base import AttributionDataset, mask_to_box
from xattr.data.files import missing_root
from xattr.data.transforms import resize_center_crop, transform_mask


class TorchvisionDataset(AttributionDataset):
    """Subclasses set ``name``, ``folder`` (torchvision's sub-folder), ``layout``, ``splits`` (ours → torchvision's)
    and implement ``_open(root, split)`` (the torchvision dataset) and ``_split(sample)`` → ``(PIL image, label,
    PIL mask or None)``."""

    folder = ""
    layout = ""
    splits: dict[str, str] = {}

    def __init__(self, root: str | Path, split: str = "test", image_size: int = 224, seed: int = 0,
                 n_samples: int | None = None, crop_fraction: float = 0.875, shard: int = 0, num_shards: int = 1):
        from xattr.errors import XattrError

        if split not in self.splits:
            raise XattrError(f"unknown split {split!r} for {self.name}; choose one of {', '.join(self.splits)}")
        root = Path(root)
        try:
            self.source = self._open(root, self.splits[split])
        except (RuntimeError, FileNotFoundError, OSError) as error:  # torchvision: "Dataset not found or corrupted"
            raise missing_root(self.name, root / self.folder, self.layout, self.folder) from error
        self.root, self.split, self.image_size, self.crop_fraction = root, split, int(image_size), float(crop_fraction)
        self.class_names = tuple(self._class_names())
        self._select(n_samples, seed, shard, num_shards)

    def _raw_len(self) -> int:
        return len(self.source)

    def _load(self, raw_index: int) -> dict:
        image, label, mask = self._split(self.source[raw_index])
        tensor, geometry = resize_center_crop(image.convert("RGB"), self.image_size, self.crop_fraction)
        sample = {"image": tensor, "label": int(label), "id": f"{self.split}/{raw_index:05d}"}
        if mask is not None:
            sample["mask"] = transform_mask(mask, geometry)
            sample["boxes"] = mask_to_box(sample["mask"])
        return sample

    def _open(self, root: Path, split: str):
        raise NotImplementedError

    def _split(self, sample) -> tuple:
        raise NotImplementedError

    def _class_names(self) -> list[str]:
        return list(self.source.classes)


__all__ = ["TorchvisionDataset"]
