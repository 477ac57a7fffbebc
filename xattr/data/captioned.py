"""Shared base of the captioned file datasets (``coco_it``, ``coco100_it``, ``aro_*``): image + caption samples.

Images are resized to ``image_size × image_size`` *without cropping* (the aspect ratio is not kept), as the
information-decomposition code does before Stable Diffusion's VAE (512×512; bicubic for ARO, see each
dataset); masks follow with a nearest resize. An optional crop box (Visual Genome's relation box in ARO)
is cut out of the original first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xattr.data.base import AttributionDataset, mask_to_box
from xattr.data.transforms import load_rgb, to_tensor
from xattr.errors import XattrError

RESAMPLING = ("bicubic", "bilinear")


@dataclass
class CaptionRecord:
    """One sample: image file, caption, the word to explain (``""``: none), optional crop box ``(x0, y0, x1, y1)``
    in original pixels, a ``mask(height, width) -> [H,W] bool`` callable (original resolution), and the
    extra text fields (``candidates``, ``relation``, ``attribute``, ``category``, …)."""

    path: Path
    id: str
    caption: str
    word: str = ""
    label: int = 0
    crop: tuple[float, float, float, float] | None = None
    mask: Callable[[int, int], np.ndarray] | None = None
    extra: dict = field(default_factory=dict)


def check_files(name: str, files: dict[str, Path], layout: str, data_subdir: str, set_root: str = "dataset.root") -> None:
    """The one-line missing-data error when any of ``files`` (what → path) does not exist."""
    missing = [f"{what} ({path})" for what, path in files.items() if not path.exists()]
    if missing:
        raise XattrError(f"dataset {name}: missing {', '.join(missing)}; expected {layout}; point "
                         f"paths.data_dir=/path/to/datasets at the folder holding {data_subdir}/ (or set {set_root})")


class CaptionFileDataset(AttributionDataset):
    """Subclasses fill ``self.records`` (and ``class_names``) and call ``self._select(...)``.

    A sample: ``image [3,S,S]`` float32 in [0,1]; ``caption``; ``word``; ``label``; ``id``; with a mask also
    ``mask [S,S]`` bool and ``boxes [1,4]``; and every entry of the record's ``extra``.
    """

    records: list[CaptionRecord]
    image_size: int = 512
    resample: str = "bicubic"
    class_names = ("image",)

    def _raw_len(self) -> int:
        return len(self.records)

    def _check_resize(self, image_size: int, resample: str) -> None:
        if image_size < 8:
            raise XattrError(f"dataset {self.name}: image_size={image_size} is too small; use at least 8")
        if resample not in RESAMPLING:
            raise XattrError(f"dataset {self.name}: resample={resample!r}; choose {' or '.join(RESAMPLING)}")
        self.image_size, self.resample = int(image_size), resample

    def _load(self, raw_index: int) -> dict:
        from PIL import Image

        record = self.records[raw_index]
        try:
            image = load_rgb(record.path)
        except OSError as error:
            raise XattrError(f"dataset {self.name}: cannot read image {record.path} ({error}); "
                             "remove or replace the file") from error
        width, height = image.width, image.height
        if record.crop is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in record.crop)
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if x1 <= x0 or y1 <= y0:
                raise XattrError(f"dataset {self.name}: crop box {record.crop} of {record.id} lies outside the "
                                 f"{width}x{height} image {record.path}")
            image = image.crop((x0, y0, x1, y1))
        size = self.image_size
        resample = Image.BICUBIC if self.resample == "bicubic" else Image.BILINEAR
        tensor = to_tensor(image.resize((size, size), resample)).clamp_(0.0, 1.0)  # bicubic overshoots
        sample = {"image": tensor, "caption": record.caption, "word": record.word, "label": record.label,
                  "id": record.id, **record.extra}
        if record.mask is not None:
            mask = record.mask(height, width)
            if record.crop is not None:
                mask = mask[y0:y1, x0:x1]
            resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)
            sample["mask"] = torch.from_numpy(np.asarray(resized) >= 128)
            sample["boxes"] = mask_to_box(sample["mask"])
        return sample
