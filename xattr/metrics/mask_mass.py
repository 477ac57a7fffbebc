"""Where a word's heatmap puts its mass: inside or outside the word's mask, per unit area.

For a per-pixel map ``[B,1,H,W]`` (negative values clipped to 0) and the mask of what the word names
``[B,H,W]``: ``share`` = mass inside / total mass, ``area`` = the mask's share of the image, and
``density_ratio`` = (mass inside / area inside) / (mass outside / area outside) — above 1 when the map is
denser inside the object than around it. A map with no positive mass counts as uniform (share = area,
ratio 1); a mask covering the whole image (or none of it) gives ratio 1.
"""

from __future__ import annotations

import torch

from xattr.metrics.miou import _check_mask, _to_mask_size


def mask_mass(maps: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{'share', 'area', 'density_ratio'}`` ``[B]`` of ``maps [B,1,H,W]`` against ``mask [B,H,W]``."""
    mass = maps[:, 0].float().clamp(min=0)
    inside = mask.bool()
    total = mass.flatten(1).sum(1)
    area = inside.flatten(1).float().mean(1)
    mass_in = (mass * inside).flatten(1).sum(1)
    share = torch.where(total > 0, mass_in / total.clamp(min=1e-30), area)
    proper = (area > 0) & (area < 1)
    ratio = torch.where(proper, (share / area.clamp(min=1e-30)) / ((1 - share) / (1 - area).clamp(min=1e-30)).clamp(min=1e-30),
                        torch.ones_like(area))
    return {"share": share, "area": area, "density_ratio": ratio}


class MaskMass:
    """``MaskMass()(model, x, maps, target, mask=[B,H,W])`` -> ``{'share', 'area', 'density_ratio'}`` of ``[B]``."""

    def __call__(self, model, x: torch.Tensor, maps: torch.Tensor, target=None, mask=None,
                 **ground_truth) -> dict[str, torch.Tensor]:
        mask = _check_mask(mask, maps, "mask_mass")
        return mask_mass(_to_mask_size(maps, mask), mask)
