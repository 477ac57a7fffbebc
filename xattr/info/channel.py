"""The variance-preserving Gaussian noise channel of DiffIB (DiffIB Eq. 5) and log-SNR samplers.

``z = sqrt(sigmoid(alpha)) * x + sqrt(sigmoid(-alpha)) * eps`` with ``alpha`` the log-SNR, one value per
coordinate (pixel-channel). Dividing by ``sqrt(sigmoid(-alpha))`` gives ``sqrt(gamma) * x + eps`` with
``gamma = exp(alpha)``, the channel of Guo-Shamai-Verdu's I-MMSE relation. Everything in xattr that noises
inputs with a log-SNR goes through :func:`noise_channel`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from xattr.errors import XattrError


def noise_channel(x: torch.Tensor, alpha: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``sqrt(sigmoid(alpha)) * x + sqrt(sigmoid(-alpha)) * eps`` (``alpha`` broadcastable to ``x``).

    Variance preserving: for unit-variance ``x`` independent of ``eps ~ N(0, I)``, ``Var z = 1``.
    Differentiable in ``alpha`` (Algorithm 1 back-propagates through it).
    """
    if eps.shape != x.shape:
        raise XattrError(f"noise_channel: eps has shape {tuple(eps.shape)} but x has {tuple(x.shape)}; "
                         "draw eps with torch.randn_like(x)")
    alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
    # exp(logsigmoid / 2) == sqrt(sigmoid), with a finite gradient for any alpha (sqrt'(0) is infinite)
    return torch.exp(0.5 * F.logsigmoid(alpha)) * x + torch.exp(0.5 * F.logsigmoid(-alpha)) * eps


def _gaussian_kernel1d(sigma: float, dtype, device) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    grid = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    return kernel / kernel.sum()


def smooth_field(noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur white noise ``[B,C,H,W]`` with a Gaussian of ``sigma`` pixels and rescale it to unit variance."""
    if noise.dim() != 4:
        raise XattrError(f"smooth_field needs [B,C,H,W] noise, got shape {tuple(noise.shape)}; "
                         "use smooth_sigma=0 for vectors")
    if sigma <= 0:
        return noise
    b, c, h, w = noise.shape
    kernel = _gaussian_kernel1d(sigma, noise.dtype, noise.device)
    pad = kernel.numel() // 2
    flat = noise.reshape(b * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="circular"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="circular"), kernel.view(1, 1, -1, 1))
    # unit white noise blurred along both axes by k has variance (sum k^2)^2: divide by sum k^2
    flat = flat / kernel.pow(2).sum()
    return flat.reshape(b, c, h, w)


def sample_log_snr(shape, *, mean: float = 0.0, scale: float = 1.0, sample_scale: float = 0.0,
                   smooth_sigma: float = 0.0, smooth_fraction: float = 0.0,
                   generator: torch.Generator | None = None, dtype=torch.float32,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Draw log-SNR ``alpha`` of ``shape`` (``[B,...]``), one value per coordinate.

    ``alpha = mean + sample_scale * g_b + scale * n`` with ``g_b ~ N(0,1)`` one per sample (shifts a whole
    image's SNR, so the denoiser also sees "everything noisy" and "everything clean") and ``n ~ N(0, I)``
    per coordinate (the paper's Algorithm 2 is ``mean=0, scale=1, sample_scale=0``). For images,
    ``smooth_fraction`` of the samples get a spatially smooth ``n`` (white noise blurred with
    ``smooth_sigma`` pixels, unit variance), shaped like the maps the alpha-U-Net produces.
    """
    shape = tuple(shape)
    n = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    if smooth_fraction > 0 and smooth_sigma > 0 and len(shape) == 4:
        pick = torch.rand(shape[0], generator=generator, device=device) < smooth_fraction
        if pick.any():
            n[pick] = smooth_field(n[pick], smooth_sigma)
    g = torch.randn((shape[0],) + (1,) * (len(shape) - 1), generator=generator, dtype=dtype, device=device)
    return mean + sample_scale * g + scale * n
