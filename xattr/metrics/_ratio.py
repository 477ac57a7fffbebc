"""Shared part of BoxRatio and SegRatio: where do the N most important units at the MNIM crossing lie?"""

from __future__ import annotations

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.metrics._perturb import rank_units, validate_inputs
from xattr.metrics.mnim import MNIM, _reusable_mnim


def region_ratios(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                  region: torch.Tensor, mnim: MNIM, mnim_n=None, mnim_reached=None, memo: dict | None = None,
                  **ground_truth) -> dict[str, torch.Tensor]:
    """``ratio``: share of the ``N`` top-ranked units inside ``region`` ``[B,H,W]`` (``N`` from ``mnim_n`` or
    computed with ``mnim``; ``N = 0`` counts the single top unit); ``energy``: positive attribution mass
    (channels summed) inside the region over the total (a map with no positive mass counts as uniform,
    giving the region's area share); plus ``n`` and ``reached`` (``mnim_reached`` when given with ``mnim_n``,
    else 1.0 for a given ``mnim_n``). ``memo``: handed to ``mnim`` when it runs, which stores its result there."""
    target = validate_inputs(model, x, maps, target)
    batch = x.shape[0]
    region = torch.as_tensor(region).to(device=x.device, dtype=torch.bool)
    if region.shape != (batch, *x.shape[2:]):
        raise XattrError(f"region mask of shape {tuple(region.shape)} does not match images {tuple(x.shape)}; "
                         "expected [B,H,W] bool")
    if mnim_n is None:
        found = mnim(model, x, maps, target, memo=memo)
        n, reached = found["n"], found["reached"]
    else:
        n = torch.as_tensor(mnim_n, dtype=torch.float32, device=x.device).reshape(-1)
        if n.shape != (batch,):
            raise XattrError(f"mnim_n has shape {tuple(n.shape)}; pass one count per image ([{batch}])")
        reached = (torch.ones(batch, device=x.device) if mnim_reached is None
                   else torch.as_tensor(mnim_reached, dtype=torch.float32, device=x.device).reshape(-1))
    rank = rank_units(maps, mnim.seed)
    units = rank[0].numel()
    count = n.round().long().clamp(1, units)
    top = rank < count.view(-1, 1, 1, 1)
    inside = top & region[:, None]
    ratio = inside.flatten(1).sum(1).float() / top.flatten(1).sum(1).float()
    mass = maps.detach().float().clamp(min=0).sum(1)  # [B,H,W]
    total = mass.flatten(1).sum(1)
    area = region.flatten(1).float().mean(1)
    energy = torch.where(total > 0, (mass * region).flatten(1).sum(1) / total.clamp(min=1e-30), area)
    return {"ratio": ratio, "energy": energy, "n": n.float(), "reached": reached.float()}


class RegionRatio:
    """Base of BoxRatio and SegRatio: holds the MNIM settings; subclasses turn their ground truth into a region
    and call :meth:`ratios`."""

    def __init__(self, threshold: float = 0.9, relative: bool = False, substrate: str = "noise", grid: int = 16,
                 seed: int = 0, max_batch: int = 16):
        self.mnim = MNIM(threshold, relative, substrate, grid, seed, max_batch)

    def ratios(self, model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
               region: torch.Tensor, mnim_n=None, mnim_reached=None,
               memo: dict | None = None) -> dict[str, torch.Tensor]:
        """:func:`region_ratios` with ``N`` from ``mnim_n``, else from an equal MNIM's entry in ``memo``, else
        searched (the search stores its result in ``memo``)."""
        reuse = _reusable_mnim(self, memo) if mnim_n is None else {"mnim_n": mnim_n, "mnim_reached": mnim_reached}
        return region_ratios(model, x, maps, target, region, self.mnim, memo=memo, **reuse)
