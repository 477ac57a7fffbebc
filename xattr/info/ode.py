"""The probability-flow ODE of an ε-predictor, solved with the deterministic Heun sampler of Karras et al.
(2022, "Elucidating the Design Space of Diffusion-Based Generative Models", Alg. 1), in both directions:
``invert`` (clean → noise) and ``generate`` (noise → clean). Info-Decomp §3.3 uses it for prompt
intervention: invert a real latent under its caption, then integrate back under an edited caption.

**VP ↔ VE.** The denoisers here are ε-predictors in the variance-preserving log-SNR channel of
:func:`xattr.info.noise_channel`, ``z = sqrt(σ(α)) x₀ + sqrt(σ(−α)) ε`` (``σ(·)`` the logistic). Karras et al.
work in the variance-exploding form ``x = x₀ + s·ε`` (noise level ``s``, called σ in the paper; ``s`` here to
keep it apart from the logistic). Dividing by ``sqrt(1 + s²)`` turns one into the other::

    z = x / sqrt(1 + s²)    at    α = −2 log s       (σ(α) = 1/(1+s²), so s = exp(−α/2))

so the VE denoiser (Karras Eq. 7 with their ``s(t) = 1``, ``σ(t) = t``) and the ODE (Eq. 1 / Alg. 1 line 4) are::

    D(x; s) = x − s · ε̂(x / sqrt(1+s²), α = −2 log s)
    dx/ds   = (x − D(x; s)) / s = ε̂(x / sqrt(1+s²), −2 log s)

**Schedule** (Karras Eq. 5): ``s_i = (s_max^{1/ρ} + i/(n−1)·(s_min^{1/ρ} − s_max^{1/ρ}))^ρ``, ``i = 0 … n−1``,
``ρ = 7``; ``s_min = exp(−α_max/2)``, ``s_max = exp(−α_min/2)`` from the model's trained log-SNR range
(SD 2.1's [−5.36, 7.07]: s ∈ [0.029, 14.6]). Karras append ``s_n = 0``; here the clean latent is the VE state
``x(s_min)`` in both directions (no final step to 0), so ``generate(invert(x))`` retraces the same
``n − 1`` intervals: ``2(n−1)`` denoiser calls per direction. :func:`heun` itself also takes a schedule that
ends at 0 (Alg. 1: the last step is then Euler), which is what diffusers' ``HeunDiscreteScheduler`` runs.

**Heun step** (Alg. 1 lines 3–8, no churn, ``S_churn = 0``): from ``s_i`` to ``s_{i+1}`` (either order)::

    d_i     = dx/ds at (x_i, s_i)
    x̃       = x_i + (s_{i+1} − s_i) d_i                         (Euler predictor)
    x_{i+1} = x_i + (s_{i+1} − s_i) (d_i + dx/ds at (x̃, s_{i+1})) / 2   (trapezoidal corrector; Euler if s_{i+1} = 0)

Tensors: ``x`` is ``[N, ...]`` (latents ``[N,C,h,w]`` or vectors ``[N,d]``); ``eps_fn(z [N,...], logsnr [N])
-> ε̂ [N,...]`` is the ε-predictor with its condition bound (e.g. ``lambda z, a: model.eps(z, a, embeds)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from xattr.errors import XattrError

__all__ = ["karras_sigmas", "sigma_range", "sigma_to_logsnr", "logsnr_to_sigma", "ode_velocity", "heun",
           "invert", "generate"]

#: ``eps_fn(z [N,...], logsnr [N]) -> ε̂ [N,...]``: an ε-predictor in the VP log-SNR channel, condition bound
EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sigma_to_logsnr(sigma: torch.Tensor | float) -> torch.Tensor:
    """``α = −2 log s`` (the VE noise level ``s`` → VP log-SNR)."""
    return -2.0 * torch.log(torch.as_tensor(sigma, dtype=torch.float64))


def logsnr_to_sigma(logsnr: torch.Tensor | float) -> torch.Tensor:
    """``s = exp(−α/2)`` (VP log-SNR → VE noise level)."""
    return torch.exp(-0.5 * torch.as_tensor(logsnr, dtype=torch.float64))


def sigma_range(logsnr_range: tuple[float, float]) -> tuple[float, float]:
    """``(s_min, s_max) = (exp(−α_max/2), exp(−α_min/2))`` from a model's trained ``(α_min, α_max)``."""
    low, high = float(logsnr_range[0]), float(logsnr_range[1])
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise XattrError(f"logsnr_range={logsnr_range}: needs finite (min, max) with min < max, e.g. "
                         "model.logsnr_range")
    return math.exp(-high / 2), math.exp(-low / 2)


def karras_sigmas(n: int = 100, sigma_min: float = 0.0292, sigma_max: float = 14.6, rho: float = 7.0,
                  append_zero: bool = False) -> torch.Tensor:
    """The Karras schedule (Eq. 5), float64 ``[n]`` decreasing from ``sigma_max`` to ``sigma_min``
    (``[n+1]`` ending at 0 with ``append_zero``, as Karras / k-diffusion's ``get_sigmas_karras``)."""
    if int(n) < 2:
        raise XattrError(f"karras_sigmas: n={n} noise levels; needs at least 2 (the paper: 100)")
    if not 0 < sigma_min < sigma_max:
        raise XattrError(f"karras_sigmas: sigma_min={sigma_min}, sigma_max={sigma_max}; needs 0 < sigma_min < "
                         "sigma_max (from sigma_range(model.logsnr_range))")
    if not rho > 0:
        raise XattrError(f"karras_sigmas: rho={rho} must be > 0 (Karras et al.: 7)")
    ramp = torch.linspace(0, 1, int(n), dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    sigmas[0], sigmas[-1] = sigma_max, sigma_min  # exact ends (the power loses the last digits)
    return torch.cat([sigmas, sigmas.new_zeros(1)]) if append_zero else sigmas


def ode_velocity(eps_fn: EpsFn, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``dx/ds = ε̂(x / sqrt(1+s²), −2 log s)`` ``[N,...]`` at VE state ``x`` ``[N,...]`` and level ``s > 0``."""
    alpha = torch.full((x.shape[0],), -2.0 * math.log(sigma), dtype=x.dtype, device=x.device)
    return eps_fn(x / math.sqrt(1.0 + sigma * sigma), alpha).to(x.dtype)


@torch.no_grad()
def heun(x: torch.Tensor, sigmas: torch.Tensor, eps_fn: EpsFn, *, second_order: bool = True,
         callback: Callable[[int, float, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Integrate ``dx/ds`` (module docstring) through the levels ``sigmas`` (``[K]``, strictly monotone in either
    direction; a decreasing one may end at 0) starting from the VE state ``x`` ``[N,...]`` at ``sigmas[0]``.
    Returns the VE state at ``sigmas[-1]`` (float, ``x``'s dtype). ``second_order=False`` is plain Euler (for
    the convergence tests); ``callback(i, s_{i+1}, x_{i+1})`` after each step. ``2(K−1)`` ``eps_fn`` calls
    (one fewer when the last level is 0)."""
    levels = [float(s) for s in torch.as_tensor(sigmas, dtype=torch.float64).flatten()]
    if len(levels) < 2:
        raise XattrError(f"heun: {len(levels)} noise levels; needs at least 2 (e.g. karras_sigmas(100))")
    steps = [b - a for a, b in zip(levels[:-1], levels[1:])]
    if not (all(d > 0 for d in steps) or all(d < 0 for d in steps)):
        raise XattrError(f"heun: sigmas must be strictly monotone, got {levels[:4]}…; build them with "
                         "karras_sigmas (decreasing) or .flip(0) (increasing)")
    if min(levels) < 0 or (min(levels) == 0 and levels[-1] != 0):
        raise XattrError(f"heun: sigmas {levels[0]:.4g} → {levels[-1]:.4g} must be > 0 (only a decreasing "
                         "schedule may end at 0)")
    if not torch.is_floating_point(x):
        raise XattrError(f"heun: x has dtype {x.dtype}; pass a float tensor (the VE state)")
    for i, (s, s_next) in enumerate(zip(levels[:-1], levels[1:])):
        d = ode_velocity(eps_fn, x, s)
        x_next = x + (s_next - s) * d                                   # Euler (Alg. 1 line 5)
        if second_order and s_next != 0:
            d_next = ode_velocity(eps_fn, x_next, s_next)               # Alg. 1 lines 6-7
            x_next = x + (s_next - s) * 0.5 * (d + d_next)              # trapezoidal rule (line 8)
        x = x_next
        if callback is not None:
            callback(i, s_next, x)
    return x


def invert(x0: torch.Tensor, eps_fn: EpsFn, sigmas: torch.Tensor, **options) -> torch.Tensor:
    """Clean latent ``x0`` ``[N,...]`` → the VE state ``x(s_max)`` ``[N,...]``: :func:`heun` over ``sigmas`` in
    increasing order, starting from ``x(s_min) = x0`` (the clean latent is the VE state at the lowest level, as
    in Karras et al. and the authors' code: ``s_min·ε`` is below the data's resolution). ``sigmas`` as
    :func:`karras_sigmas` returns them (decreasing, without the final 0)."""
    return heun(x0, _schedule(sigmas, "invert").flip(0), eps_fn, **options)


def generate(x_max: torch.Tensor, eps_fn: EpsFn, sigmas: torch.Tensor, **options) -> torch.Tensor:
    """VE state ``x(s_max)`` ``[N,...]`` (from :func:`invert`, or ``s_max·N(0, I)`` for a fresh sample) → the clean
    latent ``x(s_min)`` ``[N,...]``: :func:`heun` down ``sigmas`` (decreasing, without the final 0), so that
    ``generate(invert(x0, f, s), f, s) ≈ x0`` up to the discretisation error."""
    return heun(x_max, _schedule(sigmas, "generate"), eps_fn, **options)


def _schedule(sigmas: torch.Tensor, name: str) -> torch.Tensor:
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if sigmas.numel() < 2 or not bool((sigmas[1:] < sigmas[:-1]).all()) or float(sigmas[-1]) <= 0:
        raise XattrError(f"{name}: sigmas must be decreasing and positive (karras_sigmas(n) without append_zero), "
                         f"got {[round(float(s), 4) for s in sigmas[:3]]}…{float(sigmas[-1]):.4g}")
    return sigmas
