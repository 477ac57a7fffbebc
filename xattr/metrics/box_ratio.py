"""Box-Ratio (DiffIB, Table 3): share of the N most important pixel-channel values (N from the
MNIM crossing) that lie inside the union of the ground-truth boxes; plus the energy-based ratio
(positive attribution mass inside the boxes / total) as a second output."""

from __future__ import annotations

import torch
import torch.nn as nn

from xattr.data import boxes_to_mask
from xattr.errors import XattrError
from xattr.metrics._ratio import RegionRatio


class BoxRatio(RegionRatio):
    """``BoxRatio(threshold=0.9, relative=False, substrate='noise')(model, x, maps, target, boxes=[...])``.

    ``boxes``: list of ``[N,4]`` (x0, y0, x1, y1) per image. ``mnim_n``/``mnim_reached`` (``[B]``, optional): a precomputed
    MNIM counts; else the result of an MNIM with equal settings in ``memo`` (the batch's memo, see
    :mod:`xattr.metrics.mnim`); otherwise MNIM runs with the given settings. Returns
    ``{'ratio', 'energy', 'n', 'reached'}`` of ``[B]`` tensors.
    """

    def __call__(self, model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                 boxes=None, mnim_n=None, mnim_reached=None, memo: dict | None = None,
                 **ground_truth) -> dict[str, torch.Tensor]:
        if boxes is None:
            raise XattrError("BoxRatio needs ground-truth boxes; use a dataset with boxes (e.g. dataset=shapes) "
                             "or drop box_ratio from metric")
        if len(boxes) != x.shape[0]:
            raise XattrError(f"got boxes for {len(boxes)} images but {x.shape[0]} images; pass one [N,4] per image")
        height, width = x.shape[-2:]
        region = torch.stack([boxes_to_mask(torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4), height, width)
                              for b in boxes])
        return self.ratios(model, x, maps, target, region, mnim_n, mnim_reached, memo)
