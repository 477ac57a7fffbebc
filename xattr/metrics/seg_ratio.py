"""Segmentation ratio (DiffIB, seed 000, Table 4, on FSS-1000): share of the N most important
pixel-channel values (N from the MNIM crossing) inside the segmentation mask; plus the energy-based
ratio (positive attribution mass inside the mask / total) as a second output."""

from __future__ import annotations

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.metrics._ratio import region_ratios
from xattr.metrics.mnim import MNIM, _reusable_mnim


class SegRatio:
    """``SegRatio(threshold=0.9, relative=False, substrate='noise')(model, x, maps, target, mask=[B,H,W])``.

    ``mnim_n``/``mnim_reached`` (``[B]``, optional): a precomputed MNIM result; else the result of an MNIM with
    equal settings in ``memo`` (the batch's memo, see :mod:`xattr.metrics.mnim`); otherwise MNIM runs with the
    given settings.
    Returns ``{'ratio', 'energy', 'n', 'reached'}`` of ``[B]`` tensors.
    """

    def __init__(self, threshold: float = 0.9, relative: bool = False, substrate: str = "noise", grid: int = 16,
                 seed: int = 0, max_batch: int = 16):
        self.mnim = MNIM(threshold, relative, substrate, grid, seed, max_batch)

    def __call__(self, model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                 mask=None, mnim_n=None, mnim_reached=None, memo: dict | None = None,
                 **ground_truth) -> dict[str, torch.Tensor]:
        if mask is None:
            raise XattrError("SegRatio needs ground-truth segmentation masks; use a dataset with masks "
                             "(e.g. dataset=shapes or fss1000) or drop seg_ratio from metric")
        reuse = _reusable_mnim(self, memo) if mnim_n is None else {"mnim_n": mnim_n, "mnim_reached": mnim_reached}
        return region_ratios(model, x, maps, target, mask, self.mnim, memo=memo, **reuse)
