"""A classifier with a known answer: it reads only the pixels inside a box. Importable as ``box_helpers``.

:class:`BoxReader` gives class 0 the logit ``k * (mean of the box's pixels - threshold)`` and class 1 the logit
0, so the target's probability rises with the box's brightness and nothing outside the box can change it. On
:func:`box_images` (a bright box on a dark textured background) an attribution method that follows its paper
must put its mass inside the box, and a causal metric knows which order of pixels is right.
:class:`StandardNormalDenoiser` is the exact eps-predictor for coordinates ``x ~ N(0, 1)`` (a stand-in for a
trained denoiser in Eq. 14: cheap, and the same for every pixel, so any contrast in a map comes from alpha).
"""

from __future__ import annotations

import torch
import torch.nn as nn

SIZE = 16
ROWS, COLS = slice(4, 10), slice(6, 12)   # 36 of 256 pixels: area share 0.14


def box_mask(size: int = SIZE) -> torch.Tensor:
    """``[1,1,size,size]`` bool, true inside the box."""
    mask = torch.zeros(1, 1, size, size, dtype=torch.bool)
    mask[..., ROWS, COLS] = True
    return mask


def box_images(n: int, channels: int = 1, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    """``[n,C,size,size]`` in ``[0,1]``: background 0.1..0.2, box 0.8..0.9 (uniform texture)."""
    g = torch.Generator().manual_seed(seed)
    return 0.1 + 0.1 * torch.rand(n, channels, size, size, generator=g) + 0.7 * box_mask(size).float()


class BoxReader(nn.Module):
    """Logits ``[k * (mean over the box of x - threshold), 0]`` for ``x`` ``[B,C,H,W]`` in ``[0,1]``."""

    def __init__(self, k: float = 30.0, threshold: float = 0.5, size: int = SIZE):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(float(k)))   # a parameter, so that trainers find the model's device
        self.threshold = threshold
        self.register_buffer("mask", box_mask(size).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.mask).flatten(1).sum(1) / (self.mask.sum() * x.shape[1])
        return torch.stack([self.k * (s - self.threshold), torch.zeros_like(s)], 1)


class StandardNormalDenoiser(nn.Module):
    """``eps_hat(z, alpha) = sqrt(sigmoid(-alpha)) z``: E[eps | z] for ``x ~ N(0, 1)`` per coordinate."""

    def forward(self, z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-alpha).sqrt() * z


def inside_share(maps: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """``[B]``: the part of each map's total mass (over channels and pixels) that lies inside the box."""
    inside = box_mask(size).expand_as(maps)
    return (maps * inside).flatten(1).sum(1) / maps.flatten(1).sum(1)
