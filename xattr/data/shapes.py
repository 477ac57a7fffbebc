"""``shapes``: the embedded procedural dataset (no download), deterministic by seed.

Six classes — circle, square, triangle, star, cross, ring — each drawn with random size, colour,
position and rotation on a textured background (random colour gratings + pixel noise) cluttered
with distractors (line segments and small dots). The object's exact mask and tight box are known,
so localisation metrics (box ratio, segmentation ratio) have exact ground truth.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from skimage.draw import line_aa, polygon2mask

from xattr.data.base import AttributionDataset, mask_to_box
from xattr.data.registry import register_dataset
from xattr.errors import XattrError

CLASS_NAMES = ("circle", "square", "triangle", "star", "cross", "ring")
SPLIT_SIZES = {"train": 10000, "val": 1000, "test": 1000}


def _polygon(n_points: int, radii: np.ndarray, rotation: float) -> np.ndarray:
    angles = rotation + np.linspace(0, 2 * np.pi, n_points, endpoint=False)
    return np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)  # (n, 2) as (u, v)


def shape_mask(label: int, size: int, center: tuple[float, float], radius: float, rotation: float) -> np.ndarray:
    """Exact ``[size,size]`` bool mask of shape ``label`` centred at ``center`` (row, col)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dr, dc = rows - center[0], cols - center[1]
    cos, sin = np.cos(rotation), np.sin(rotation)
    u, v = (cos * dc + sin * dr) / radius, (-sin * dc + cos * dr) / radius
    name = CLASS_NAMES[label]
    if name == "circle":
        return u**2 + v**2 <= 1.0
    if name == "ring":
        r2 = u**2 + v**2
        return (r2 <= 1.0) & (r2 >= 0.5**2)
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.78
    if name == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    if name == "triangle":
        vertices = _polygon(3, np.ones(3), rotation - np.pi / 2)
    else:  # star: 5 points, inner radius 0.45
        vertices = _polygon(10, np.tile([1.0, 0.45], 5), rotation - np.pi / 2)
    points = np.stack([center[0] + vertices[:, 1] * radius, center[1] + vertices[:, 0] * radius], axis=1)
    return polygon2mask((size, size), points)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size] / size
    image = np.empty((size, size, 3))
    base = rng.uniform(0.25, 0.75, size=3)
    image[:] = base
    for _ in range(3):  # colour gratings
        freq = rng.uniform(1.0, 6.0)
        angle = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * freq * (np.cos(angle) * cols + np.sin(angle) * rows) + phase)
        image += 0.12 * wave[..., None] * rng.uniform(-1, 1, size=3)
    image += rng.normal(0, 0.04, size=image.shape)
    return image


def _distractors(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    size = image.shape[0]
    for _ in range(count):
        colour = rng.uniform(0, 1, size=3)
        if rng.random() < 0.5:
            r0, c0, r1, c1 = rng.integers(0, size, size=4)
            rr, cc, val = line_aa(r0, c0, r1, c1)
            image[rr, cc] = (1 - val[:, None]) * image[rr, cc] + val[:, None] * colour
        else:
            r, c = rng.uniform(0, size, size=2)
            rad = rng.uniform(1.0, 2.5) * size / 64
            rows, cols = np.ogrid[0:size, 0:size]
            image[(rows - r) ** 2 + (cols - c) ** 2 <= rad**2] = colour


def render_sample(seed: int, split: str, index: int, size: int = 64, n_distractors: tuple[int, int] = (3, 7)):
    """Render sample ``index`` of ``split``: returns ``(image [H,W,3] float64 in [0,1], label, mask [H,W])``."""
    split_key = zlib.crc32(split.encode())
    rng = np.random.default_rng([seed, split_key, index])
    label = int(rng.integers(len(CLASS_NAMES)))
    image = _background(rng, size)
    _distractors(rng, image, int(rng.integers(n_distractors[0], n_distractors[1] + 1)))
    radius = rng.uniform(0.2, 0.36) * size
    margin = radius * 1.0
    center = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
    mask = shape_mask(label, size, center, radius, rng.uniform(0, 2 * np.pi))
    colour = rng.uniform(0, 1, size=3)
    colour[rng.integers(3)] = rng.choice([0.05, 0.95])  # saturated: stands out from the background
    shade = 1.0 + 0.15 * np.linspace(-1, 1, size)[None, :, None] * rng.uniform(-1, 1)
    object_pixels = np.broadcast_to(colour, image.shape) * shade
    image = np.where(mask[..., None], object_pixels, image)
    return np.clip(image, 0.0, 1.0), label, mask


@register_dataset(builtin=True)
class ShapesDataset(AttributionDataset):
    """Procedural shapes; sample ``i`` of a split is the same for a given ``seed`` on every machine.

    Args:
        split: ``train`` (10,000), ``val`` (1,000) or ``test`` (1,000) — disjoint random streams.
        image_size: side length in pixels (default 64).
        seed: base seed of the generator.
        length: override the number of samples in the split.
        n_samples: seeded random subset of the split (``None``: all).
        shard, num_shards: keep contiguous part ``shard`` of ``num_shards`` of the selection (sharded runs).
    """

    name = "shapes"
    class_names = CLASS_NAMES

    def __init__(self, split: str = "test", image_size: int = 64, seed: int = 0, length: int | None = None,
                 n_samples: int | None = None, shard: int = 0, num_shards: int = 1):
        if split not in SPLIT_SIZES:
            raise XattrError(f"unknown split {split!r} for shapes; choose one of {', '.join(SPLIT_SIZES)}")
        if image_size < 16:
            raise XattrError(f"shapes image_size={image_size} is too small; use at least 16")
        self.split, self.image_size, self.seed = split, int(image_size), int(seed)
        self.length = SPLIT_SIZES[split] if length is None else int(length)
        self._select(n_samples, seed, shard, num_shards)

    def _raw_len(self) -> int:
        return self.length

    def _load(self, index: int) -> dict:
        image, label, mask = render_sample(self.seed, self.split, index, self.image_size)
        mask_t = torch.from_numpy(mask)
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1).float().contiguous(),
            "label": label,
            "id": f"shapes-{self.split}-{index:05d}",
            "mask": mask_t,
            "boxes": mask_to_box(mask_t),
        }
