"""DiffID (LPI, Yang et al., AAAI 2023; the DiffIG authors' group's main metric): insertion accuracy − deletion
accuracy.

Units are ranked by ``|A|`` (pixel-channel elements for ``[B,C,H,W]`` maps, pixels for ``[B,1,H,W]``; ties by
seeded infinitesimal noise, ``_perturb.rank_units``). At each ratio ``r ∈ ratios`` (0.1 … 0.9):

- insertion keeps the top ``r`` of the units, deletion keeps the other ``1 − r``;
- every removed element is replaced by the mean of the *kept* elements of its channel in that image (our
  reading of "the mean of the remaining pixels"; a channel with no kept element gets the image's channel mean);
- accuracy is binary top-1: ``argmax model(image) == target``.

``insertion_accuracy`` and ``deletion_accuracy`` are the means over the ratios; ``diffid`` their difference
(higher is better; in ``[−1, 1]`` per image, reported ×1 — the papers print percentages). All ``2·B·R``
images go through the model in chunks of ``max_batch``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.metrics._perturb import check_max_batch, rank_units, validate_inputs
from xattr.utils.hooks import eval_mode

RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def fill_with_kept_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x`` ``[N,C,H,W]`` with every element outside ``keep`` (bool, same shape) replaced by the mean of the kept
    elements of its channel in its image (the image's channel mean where a channel keeps nothing)."""
    kept = keep.to(x.dtype)
    count = kept.sum((2, 3), keepdim=True)
    mean = torch.where(count > 0, (x * kept).sum((2, 3), keepdim=True) / count.clamp_min(1),
                       x.mean((2, 3), keepdim=True))
    return torch.where(keep, x, mean)


class DiffID:
    """``DiffID(ratios=0.1…0.9)(model, x, maps, target)`` -> ``{'diffid', 'insertion_accuracy',
    'deletion_accuracy'}``, each ``[B]``."""

    def __init__(self, ratios: tuple = RATIOS, seed: int = 0, max_batch: int = 16):
        ratios = tuple(float(r) for r in ratios)
        if not ratios or not all(0.0 < r < 1.0 for r in ratios):
            raise XattrError(f"ratios={list(ratios)} must be fractions in (0, 1), e.g. [0.1, 0.2, ..., 0.9]")
        self.ratios, self.seed, self.max_batch = ratios, int(seed), check_max_batch(max_batch)

    @torch.no_grad()
    def __call__(self, model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                 **ground_truth) -> dict[str, torch.Tensor]:
        target = validate_inputs(model, x, maps, target)
        rank = rank_units(maps.abs(), self.seed).expand_as(x) if maps.shape[1] == 1 else rank_units(maps.abs(), self.seed)
        units = maps[0].numel()
        counts = [int(round(r * units)) for r in self.ratios]
        jobs = [(b, k, insert) for b in range(x.shape[0]) for k in counts for insert in (True, False)]
        correct = torch.empty(len(jobs), device=x.device)
        with eval_mode(model):
            for lo in range(0, len(jobs), self.max_batch):
                part = jobs[lo:lo + self.max_batch]
                index = torch.tensor([b for b, _, _ in part], device=x.device)
                k = torch.tensor([k for _, k, _ in part], device=x.device).view(-1, 1, 1, 1)
                insert = torch.tensor([i for _, _, i in part], device=x.device).view(-1, 1, 1, 1)
                top = rank[index] < k
                images = fill_with_kept_mean(x[index], torch.where(insert, top, ~top))
                correct[lo:lo + len(part)] = (model(images).argmax(1) == target[index]).float()
        correct = correct.view(x.shape[0], len(counts), 2)
        insertion, deletion = correct[..., 0].mean(1), correct[..., 1].mean(1)
        return {"diffid": insertion - deletion, "insertion_accuracy": insertion, "deletion_accuracy": deletion}
