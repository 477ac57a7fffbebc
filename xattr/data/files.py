"""Shared base of datasets read from image files (imagenet, imagenet_a/r, fss1000, folder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from xattr.data.base import AttributionDataset
from xattr.data.transforms import load_rgb, open_image, resize_center_crop, transform_boxes, transform_mask
from xattr.errors import XattrError


@dataclass
class Record:
    """One image: its file, label, id, and optional ground truth (original-pixel boxes, mask file)."""

    path: Path
    label: int
    id: str
    boxes: torch.Tensor | None = None
    mask_path: Path | None = None
    extra: dict = field(default_factory=dict)


def missing_root(name: str, root: Path, layout: str, data_subdir: str) -> XattrError:
    return XattrError(
        f"dataset {name}: {root} not found; expected {layout}; "
        f"point paths.data_dir=/path/to/datasets at the folder holding {data_subdir}/ (or set dataset.root)"
    )


class FileDataset(AttributionDataset):
    """Subclasses fill ``self.records`` and ``class_names`` then call ``self._finish(n_samples, seed)``."""

    records: list[Record]
    image_size: int = 224
    crop_fraction: float = 0.875
    has_boxes: bool = False

    def _finish(self, n_samples: int | None, seed: int, where: Path, shard: int = 0, num_shards: int = 1) -> None:
        if not self.records:
            raise XattrError(f"dataset {self.name} at {where} has no images for split {self.split!r}; "
                             "check the folder layout (see docs/gradients.md)")
        self._select(n_samples, seed, shard, num_shards)

    def _raw_len(self) -> int:
        return len(self.records)

    def _load(self, raw_index: int) -> dict:
        record = self.records[raw_index]
        try:
            image, geometry = resize_center_crop(load_rgb(record.path), self.image_size, self.crop_fraction)
        except OSError as error:
            raise XattrError(f"dataset {self.name}: cannot read image {record.path} ({error}); "
                             "remove or replace the file") from error
        sample = {"image": image, "label": record.label, "id": record.id}
        if record.mask_path is not None:
            with open_image(record.mask_path) as mask:
                sample["mask"] = transform_mask(mask, geometry)
            from xattr.data.base import mask_to_box

            sample["boxes"] = mask_to_box(sample["mask"])
        elif record.boxes is not None or self.has_boxes:
            boxes = record.boxes if record.boxes is not None else torch.zeros(0, 4)
            sample["boxes"] = transform_boxes(boxes, geometry)
        return sample
