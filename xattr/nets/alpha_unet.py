"""DiffIB's alpha-U-Net (Algorithm 1): a :mod:`xattr.nets.unet` U-Net ``x -> alpha`` (one log-SNR per pixel-channel)
whose output is bounded to ``alpha_range`` and starts near ``alpha_init`` (an almost clean image).

Two forms share the initialisation (:func:`init_alpha_unet_params`) and the bound (:func:`bound_alpha`):
the per-sample fit of :mod:`xattr.methods.diffib` runs stacked parameter dicts through
:func:`~xattr.nets.unet.unet_apply`; the amortized mode trains one :class:`AlphaUNet` module
(``xattr train task=alpha_unet``).
"""

from __future__ import annotations

import math

import torch

from xattr.nets.unet import UNet, init_unet_params

#: the last layer's weights start scaled by this (the map starts almost flat at ``alpha_init``)
OUT_SCALE = 0.1


def bound_alpha(u: torch.Tensor, alpha_range: tuple[float, float]) -> torch.Tensor:
    """Map the U-Net output ``u`` into ``alpha_range`` (``lo + (hi - lo) * sigmoid(u)``; identity-like near the middle).

    The paper's loss ``CE + beta * mean(alpha)`` is linear and unbounded below in alpha: for pixels the
    classifier ignores, nothing stops alpha, and with a multiplicative U-Net it ran to -1e14 within 150 steps
    (measured, beta=0.3). Bounding alpha to ``[alpha_min, alpha_max]`` makes ignored pixels settle at the
    integral's lower end (SNR e^-10: no information) instead.
    """
    lo, hi = alpha_range
    return lo + (hi - lo) * torch.sigmoid(u)


def unbound_alpha(alpha: float, alpha_range: tuple[float, float]) -> float:
    """Inverse of :func:`bound_alpha` for a scalar (the U-Net's initial output bias)."""
    lo, hi = alpha_range
    p = min(max((alpha - lo) / (hi - lo), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def out_bias(alpha_init: float, alpha_range: tuple[float, float] | None) -> float:
    """The last layer's initial bias: the U-Net output that :func:`bound_alpha` maps to ``alpha_init``."""
    return alpha_init if alpha_range is None else unbound_alpha(alpha_init, alpha_range)


def init_alpha_unet_params(channels: int, width: int, depth: int, alpha_init: float,
                           alpha_range: tuple[float, float] | None,
                           generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Initial parameters of one alpha-U-Net (``channels`` in and out) for :func:`~xattr.nets.unet.unet_apply`."""
    return init_unet_params(channels, channels, width, depth, out_bias=out_bias(alpha_init, alpha_range),
                            out_scale=OUT_SCALE, generator=generator)


class AlphaUNet(UNet):
    """The amortized alpha-U-Net: a :class:`UNet` whose output is bounded to ``alpha_range`` (see
    :func:`bound_alpha`; ``None``: unbounded)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 8, depth: int = 3,
                 alpha_init: float = 5.0, alpha_range=(-10.0, 10.0), seed: int | None = None):
        self.alpha_range = None if alpha_range is None else (float(alpha_range[0]), float(alpha_range[1]))
        super().__init__(in_channels, out_channels, width, depth, out_bias=out_bias(alpha_init, self.alpha_range),
                         out_scale=OUT_SCALE, seed=seed)
        self.alpha_init = alpha_init

    def config(self) -> dict:
        return {**super().config(), "alpha_init": self.alpha_init,
                "alpha_range": None if self.alpha_range is None else list(self.alpha_range)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = super().forward(x)
        return u if self.alpha_range is None else bound_alpha(u, self.alpha_range)


__all__ = ["bound_alpha", "unbound_alpha", "init_alpha_unet_params", "AlphaUNet", "OUT_SCALE"]
