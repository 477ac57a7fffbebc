"""Baselines ``b`` for path methods, all in ``[0,1]`` pixel space (zoo models normalise inside).

- ``black``: zeros — the image of zeros *before* normalisation, not zero in normalised space;
- ``blur``: :func:`gaussian_blur` of the image (``sigma`` in pixels);
- ``uniform``: uniform noise in ``[0,1]``, one seeded draw per image content (batch-independent);
- ``reference``: given training-set images (Expected Gradients, IG²), see those methods.

:func:`gaussian_blur` is scipy's ``ndimage.gaussian_filter(image, [σ, σ, 0], mode=...)`` in torch: a separable
kernel ``exp(−u²/2σ²)`` over ``|u| ≤ int(4σ + 0.5)`` normalised to sum 1, with ``zero`` padding (scipy
``mode="constant"``, PAIR's Blur IG; it darkens the edges at large σ) or ``replicate`` padding (scipy
``mode="nearest"``). σ = 0 returns the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xattr.errors import XattrError
from xattr.utils.seed import image_seeds, make_generator

BASELINES = ("black", "blur", "uniform")
PADDINGS = ("zero", "replicate")


def gaussian_kernel1d(sigma: float, dtype=torch.float64, device=None, truncate: float = 4.0) -> torch.Tensor:
    """scipy's ``_gaussian_kernel1d(σ, 0, int(truncate·σ + 0.5))``: ``[2r+1]``, sums to 1."""
    radius = int(truncate * float(sigma) + 0.5)
    u = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (u / float(sigma)) ** 2) if radius > 0 else torch.ones(1, dtype=torch.float64)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, sigma: float, padding: str = "zero") -> torch.Tensor:
    """Blur each channel of ``x`` ``[B,C,H,W]`` with a Gaussian of ``sigma`` pixels (see module docstring)."""
    if padding not in PADDINGS:
        raise XattrError(f"padding={padding!r} is not one of {list(PADDINGS)}; pick one of them")
    if float(sigma) < 0:
        raise XattrError(f"sigma={sigma} must be >= 0 pixels")
    if float(sigma) == 0:
        return x
    kernel = gaussian_kernel1d(sigma, x.dtype, x.device)
    radius, channels = kernel.numel() // 2, x.shape[1]
    if radius == 0:
        return x
    mode = "constant" if padding == "zero" else "replicate"
    out = x
    for axis, size in ((3, x.shape[3]), (2, x.shape[2])):
        # zero padding: taps farther than size-1 from the centre only ever see zeros, so they are dropped (exact)
        r = min(radius, size - 1) if padding == "zero" else radius
        k = kernel[radius - r:radius + r + 1]
        pad = (r, r, 0, 0) if axis == 3 else (0, 0, r, r)
        view = (1, 1, 1, -1) if axis == 3 else (1, 1, -1, 1)
        out = F.conv2d(F.pad(out, pad, mode=mode), k.view(*view).expand(channels, *view[1:]), groups=channels)
    return out


def make_baseline(x: torch.Tensor, kind: str = "black", *, sigma: float = 50.0, seed: int = 0,
                  padding: str = "zero") -> torch.Tensor:
    """The baseline ``[B,C,H,W]`` of kind ``black`` | ``blur`` (``sigma``, ``padding``) | ``uniform`` (``seed``)."""
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "blur":
        return gaussian_blur(x, sigma, padding)
    if kind == "uniform":
        draws = [torch.rand(x.shape[1:], generator=make_generator(s), dtype=torch.float64)
                 for s in image_seeds(x, seed)]
        return torch.stack(draws).to(x.device, x.dtype)
    raise XattrError(f"baseline={kind!r} is not one of {list(BASELINES)} (training-set references: "
                     "method=expected_gradients or method=ig2)")
