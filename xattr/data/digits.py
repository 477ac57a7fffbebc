"""``digits``: scikit-learn's bundled handwritten digits (real data, offline), upscaled to RGB."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from xattr.data.base import AttributionDataset, mask_to_box
from xattr.data.registry import register_dataset
from xattr.errors import XattrError


@register_dataset(builtin=True)
class DigitsDataset(AttributionDataset):
    """1,797 8×8 grey digits (0–16) → ``[3,S,S]`` in ``[0,1]`` by bilinear upsampling.

    Split: a seeded permutation; the first ``test_fraction`` is ``test``, the rest ``train``.
    ``mask`` marks ink (upsampled intensity > 0.25); ``boxes`` its tight box.
    """

    name = "digits"
    class_names = tuple(str(i) for i in range(10))

    def __init__(self, split: str = "test", image_size: int = 64, seed: int = 0, test_fraction: float = 0.25,
                 n_samples: int | None = None, shard: int = 0, num_shards: int = 1):
        from sklearn.datasets import load_digits

        if split not in ("train", "test"):
            raise XattrError(f"unknown split {split!r} for digits; choose train or test")
        data = load_digits()
        order = np.random.default_rng(seed).permutation(len(data.target))
        n_test = int(round(test_fraction * len(order)))
        self.images = torch.from_numpy(data.images.astype(np.float32) / 16.0)
        self.targets = data.target
        self.source_indices = order[:n_test] if split == "test" else order[n_test:]
        self.split, self.image_size = split, int(image_size)
        self._select(n_samples, seed, shard, num_shards)

    def _raw_len(self) -> int:
        return len(self.source_indices)

    def _load(self, index: int) -> dict:
        source = int(self.source_indices[index])
        grey = F.interpolate(self.images[source][None, None], size=(self.image_size,) * 2,
                             mode="bilinear", align_corners=False)[0, 0].clamp(0, 1)
        mask = grey > 0.25
        return {"image": grey.expand(3, -1, -1).contiguous(), "label": int(self.targets[source]),
                "id": f"digits-{source:04d}", "mask": mask, "boxes": mask_to_box(mask)}
