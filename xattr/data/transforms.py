"""Image loading and the eval transform of the file datasets: resize the shorter side, centre-crop a square.

:func:`load_rgb` reads 8-bit files through Pillow's RGB conversion and 16-bit / float files as floats (no
clipping, NaN/inf refused naming the file); see its docstring for every mode.

``crop_fraction`` is timm's ``crop_pct``: the shorter side is resized to ``round(image_size / crop_fraction)``
and the centre ``image_size × image_size`` is cut out (0.875 gives the classic ImageNet 256 → 224).
Boxes (x0, y0, x1, y1 in pixels, exclusive end) and masks follow the same geometry.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xattr.errors import XattrError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Geometry:
    """How an original ``width × height`` image maps onto the ``size × size`` crop."""

    width: int
    height: int
    scaled_width: int
    scaled_height: int
    left: int
    top: int
    size: int

    @classmethod
    def for_image(cls, width: int, height: int, size: int, crop_fraction: float = 0.875) -> Geometry:
        shorter = max(size, int(round(size / crop_fraction)))
        scale = shorter / min(width, height)
        scaled_width = max(size, int(round(width * scale)))
        scaled_height = max(size, int(round(height * scale)))
        left = int(round((scaled_width - size) / 2.0))
        top = int(round((scaled_height - size) / 2.0))
        return cls(width, height, scaled_width, scaled_height, left, top, size)


#: Pillow modes with more than 8 bits per sample: read as floats (``convert("RGB")`` would clip them)
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
#: slack on the [0,1] range of float images (rounding in the writer)
FLOAT_SLACK = 1e-4


class FloatImage:
    """A decoded image kept as float32 planes in ``[0,1]`` (one plane for grey, repeated to 3 channels by
    :func:`to_tensor`): what :func:`load_rgb` gives for 16-bit and float files. ``resize``/``crop`` follow
    Pillow's (each plane is a Pillow ``"F"`` image), so :func:`resize_center_crop` treats both kinds alike."""

    def __init__(self, planes: list):
        self.planes = planes

    @classmethod
    def from_array(cls, array: np.ndarray) -> FloatImage:
        from PIL import Image

        return cls([Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")])

    @property
    def width(self) -> int:
        return self.planes[0].width

    @property
    def height(self) -> int:
        return self.planes[0].height

    def resize(self, size: tuple[int, int], resample) -> FloatImage:
        return FloatImage([plane.resize(size, resample) for plane in self.planes])

    def crop(self, box: tuple[int, int, int, int]) -> FloatImage:
        return FloatImage([plane.crop(box) for plane in self.planes])

    def array(self) -> np.ndarray:
        """``[H,W,3]`` float32."""
        planes = [np.asarray(plane, dtype=np.float32) for plane in self.planes]
        return np.stack(planes * (3 // len(planes)), axis=-1)


@contextmanager
def open_image(path: str | Path):
    """``PIL.Image.open(path)``; a file whose header claims more pixels than Pillow's decompression-bomb guard
    allows (``DecompressionBombError``, not an ``OSError``) is a one-line ``XattrError`` naming it."""
    from PIL import Image

    try:
        image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise XattrError(f"image {path} is too large to decode safely ({error}); downscale the file (e.g. to at "
                         "most 4096 px a side) or remove it from the dataset folder") from error
    with image:
        yield image


def load_rgb(path: str | Path):
    """Open an image file as 3 channels in ``[0,1]``, faithfully:

    - 8-bit files: a PIL RGB image (grey, palette and CMYK converted; an alpha channel is DROPPED, the colour
      channels are kept as stored, as torchvision's ImageFolder loader does);
    - 16-bit grey (``I;16``, and 32-bit ``I`` with values in ``[0, 65535]``): values / 65535;
    - float (``F``, e.g. a float32 TIFF): the values as stored, which must be finite and lie in ``[0,1]``;
    - grey of any depth is repeated to 3 channels.

    NaN/inf and out-of-range float values, and integer images beyond 16 bit, are one-line errors naming the file.
    """
    with open_image(path) as image:
        if image.mode not in WIDE_MODES:
            return image.convert("RGB")
        array = np.asarray(image).astype(np.float32)
        mode = image.mode
    if mode == "F":
        if not np.isfinite(array).all():
            raise XattrError(f"image {path} contains NaN or inf values ({int((~np.isfinite(array)).sum())} pixels); "
                             "fix the file or remove it from the dataset folder")
        low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        if low < -FLOAT_SLACK or high > 1 + FLOAT_SLACK:
            raise XattrError(f"image {path} holds float values in [{low:.4g}, {high:.4g}], not [0,1]; scale the "
                             "file to [0,1] (or save it as an 8- or 16-bit PNG)")
        return FloatImage.from_array(np.clip(array, 0.0, 1.0))
    if mode == "I" and (array.min(initial=0) < 0 or array.max(initial=0) > 65535):
        raise XattrError(f"image {path} is a 32-bit integer image with values beyond [0, 65535]; save it as a "
                         "16-bit PNG or a float TIFF in [0,1]")
    return FloatImage.from_array(array / 65535.0)


def to_tensor(image) -> torch.Tensor:
    """PIL RGB (8-bit) or :class:`FloatImage` → ``[3,H,W]`` float32 in ``[0,1]``."""
    if isinstance(image, FloatImage):
        return torch.from_numpy(image.array()).permute(2, 0, 1).contiguous()
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def resize_center_crop(image, size: int, crop_fraction: float = 0.875):
    """Bilinear resize of the shorter side + centre crop. Returns ``([3,size,size] tensor, Geometry)``."""
    from PIL import Image

    geometry = Geometry.for_image(image.width, image.height, size, crop_fraction)
    resized = image.resize((geometry.scaled_width, geometry.scaled_height), Image.BILINEAR)
    cropped = resized.crop((geometry.left, geometry.top, geometry.left + size, geometry.top + size))
    return to_tensor(cropped), geometry


def transform_boxes(boxes: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Map ``[N,4]`` boxes of the original image into the crop; clip, and drop boxes left with no area."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    sx, sy = geometry.scaled_width / geometry.width, geometry.scaled_height / geometry.height
    out = boxes * torch.tensor([sx, sy, sx, sy]) - torch.tensor([geometry.left, geometry.top] * 2, dtype=torch.float32)
    out = out.clamp(0, geometry.size)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out[keep]


def transform_mask(mask, geometry: Geometry, threshold: int = 128) -> torch.Tensor:
    """PIL mask (any mode) → ``[size,size]`` bool: nearest resize, same crop, ``value >= threshold``."""
    from PIL import Image

    grey = mask.convert("L").resize((geometry.scaled_width, geometry.scaled_height), Image.NEAREST)
    left, top, size = geometry.left, geometry.top, geometry.size
    grey = grey.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(grey, dtype=np.uint8) >= threshold)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (sorted by name)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
