"""Segmentation ratio (DiffIB, Table 4, on FSS-1000): share of the N most important
pixel-channel values (N from the MNIM crossing) inside the segmentation mask; plus the energy-based
ratio (positive attribution mass inside the mask / total) as a second output."""

from __future__ import annotations

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.metrics._ratio import RegionRatio


class SegRatio(RegionRatio):
    """``SegRatio(threshold=0.9, relative=False, substrate='noise')(model, x, maps, target, mask=[B,H,W])``.

    ``mnim_n``/``mnim_reached`` (``[B]``, optional): a precomputed MNIM result; else the result of an MNIM with
    equal settings in ``memo`` (the batch's memo, see :mod:`xattr.metrics.mnim`); otherwise MNIM runs with the
    given settings.
    Returns ``{'ratio', 'energy', 'n', 'reached'}`` of ``[B]`` tensors.
    """

    def __call__(self, model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                 mask=None, mnim_n=None, mnim_reached=None, memo: dict | None = None,
                 **ground_truth) -> dict[str, torch.Tensor]:
        if mask is None:
            raise XattrError("SegRatio needs ground-truth segmentation masks; use a dataset with masks "
                             "(e.g. dataset=shapes or fss1000) or drop seg_ratio from metric")
        return self.ratios(model, x, maps, target, mask, mnim_n, mnim_reached, memo)
