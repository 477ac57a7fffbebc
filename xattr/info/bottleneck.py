"""Per-element Gaussian bottleneck: KL capacity, smoothing, restriction (the maths; the feature statistics
``mu, sigma`` it needs come from :mod:`xattr.info.feature_statistics`).

Shared by IBA (``xattr.methods.iba``), InputIBA and CoIBA. Follows Schulz et al., "Restricting the
Flow: Information Bottlenecks for Attribution" (ICLR 2020) and its reference code
(BioroboticsLab/IBA, ``IBA/pytorch.py``: ``_SpatialGaussianKernel``, ``IBA._kl_div``).

The restriction replaces a feature ``r`` by ``z = λ r + (1 - λ) ε`` with ``ε ~ N(μ, σ²)``, where
``μ, σ`` are per-element feature statistics over training data. Its information cost is the
elementwise ``KL(p(z|r) || q(z)) = KL(N(λr + (1-λ)μ, (1-λ)²σ²) || N(μ, σ²))`` (``kl_capacity``).

API (stable; other methods import it):

- ``kl_capacity(r, lam, mu, sigma)``: elementwise KL in nats.
- ``SpatialGaussianSmoothing(sigma)``: per-channel Gaussian blur with reflection padding for λ maps.
- ``bottleneck_sample(r, lam, mu, sigma, generator)``: one draw of ``z``.
- ``standard_normal(shape, generator)``: N(0,1) noise; a list of generators gives one per batch group,
  so batching images does not change any image's draws.
- ``bits(nats)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from xattr.errors import XattrError
from xattr.utils.precision import LOW_PRECISION

__all__ = [
    "kl_capacity",
    "SpatialGaussianSmoothing",
    "bottleneck_sample",
    "standard_normal",
    "bits",
    "LAMBDA_EPS",
]


#: λ is clamped to ``1 - LAMBDA_EPS`` in KL terms (log(1-λ) would be -inf for a saturated sigmoid)
LAMBDA_EPS = 1e-6


def kl_capacity(r: torch.Tensor, lam: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Elementwise ``KL(N(λr + (1-λ)μ, (1-λ)²σ²) || N(μ, σ²))`` in nats (IBA's ``_kl_div``).

    With ``r' = (r - μ)/σ`` this is ``-½ (1 + log (1-λ)² - (λ r')² - (1-λ)²)``; it does not depend on
    the scale of the feature. All arguments broadcast; ``λ`` must lie in ``[0, 1)`` and is clamped to
    ``1 - 1e-6`` so that a saturated sigmoid (α ≳ 17 in float32) gives a large finite value, not inf.
    bf16/fp16 arguments are computed in float32.
    """
    # in at least float32: under autocast (precision=bf16|fp16) the features r arrive in the reduced type
    r, lam, mu, sigma = (t.float() if t.dtype in LOW_PRECISION else t for t in (r, lam, mu, sigma))
    lam = lam.clamp(max=1 - LAMBDA_EPS)
    r_norm = (r - mu) / sigma
    mu_z = r_norm * lam
    var_z = (1 - lam) ** 2
    log_var_z = 2 * torch.log1p(-lam)
    return -0.5 * (1 + log_var_z - mu_z**2 - var_z)


class SpatialGaussianSmoothing(nn.Module):
    """Per-channel 2D Gaussian blur of ``[B,C,H,W]`` maps (IBA's ``_SpatialGaussianKernel``).

    Kernel size ``2·round(2σ)+1`` (5 for σ=1), normalised to sum 1, reflection padding so the output
    keeps the input size. Maps smaller than the padding use replicate padding instead (reflection
    is undefined there). ``sigma <= 0`` is the identity. No learnable parameters.
    """

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        self.sigma = float(sigma)
        if self.sigma > 0:
            size = int(round(2 * self.sigma)) * 2 + 1
            coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
            kernel_1d = torch.exp(-(coords**2) / (2 * self.sigma**2))
            kernel = kernel_1d[:, None] * kernel_1d[None, :]
            kernel = (kernel / kernel.sum()).float()
            self.register_buffer("kernel", kernel[None, None], persistent=False)
            self.pad = (size - 1) // 2
        else:
            self.register_buffer("kernel", torch.ones(1, 1, 1, 1), persistent=False)
            self.pad = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sigma <= 0:
            return x
        if x.dim() != 4:
            raise XattrError(f"SpatialGaussianSmoothing expects [B,C,H,W] maps, got {tuple(x.shape)}")
        b, c, h, w = x.shape
        flat = x.reshape(b * c, 1, h, w)
        mode = "reflect" if min(h, w) > self.pad else "replicate"
        flat = F.pad(flat, (self.pad,) * 4, mode=mode)
        out = F.conv2d(flat, self.kernel.to(dtype=x.dtype, device=x.device))
        return out.reshape(b, c, h, w)


def standard_normal(shape: Sequence[int], generator: torch.Generator | Sequence[torch.Generator] | None = None,
                    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, 1) noise of ``shape``.

    ``generator`` may be one ``torch.Generator``, ``None`` (global RNG) or a list of G generators: then
    ``shape[0]`` is split into G equal consecutive groups and group g is drawn from generator g, so an
    image's noise is the same whether it is explained alone or in a batch (noise is drawn on each
    generator's device and moved to ``device``).
    """
    shape = tuple(int(s) for s in shape)
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)
    generators = list(generator)
    if not generators or shape[0] % len(generators):
        raise XattrError(f"cannot split a batch of {shape[0]} into {len(generators)} generator groups")
    per = shape[0] // len(generators)
    parts = [torch.randn((per,) + shape[1:], generator=g, device=g.device, dtype=dtype).to(device)
             for g in generators]
    return torch.cat(parts, dim=0)


def bottleneck_sample(r: torch.Tensor, lam: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
                      generator: torch.Generator | Sequence[torch.Generator] | None = None,
                      eps: torch.Tensor | None = None) -> torch.Tensor:
    """One draw of the restriction ``z = λ r + (1-λ) ε`` with ``ε = μ + σ·eps``, ``eps ~ N(0, 1)``.

    ``eps`` (standard normal, shape of ``r``) may be given; otherwise it is drawn with
    ``standard_normal(r.shape, generator)``.
    """
    if eps is None:
        eps = standard_normal(r.shape, generator, device=r.device, dtype=r.dtype)
    return lam * r + (1 - lam) * (mu + sigma * eps)


def bits(nats: torch.Tensor) -> torch.Tensor:
    """Convert nats to bits."""
    return nats / math.log(2)
