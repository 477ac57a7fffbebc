"""Log-SNR integration for the information estimators of Info-Decomp (§2.4): a truncated-logistic importance
sampler and a Gauss–Legendre quadrature over the same truncated range.

Every estimator there is ``∫ f(α) dα`` over the log-SNR ``α``. With ``t = (α − loc) / scale`` standard logistic
(density ``σ(t) σ(−t)``) truncated to ``t ∈ [−clip, clip]`` (mass ``σ(clip) − σ(−clip) = tanh(clip/2)``), the
density of ``α`` on ``[loc − scale·clip, loc + scale·clip]`` is::

    q(α) = σ(t) σ(−t) / (scale · tanh(clip/2)),        so        1 / q(α) = scale · tanh(clip/2) / (σ(t) σ(−t))

(the weight of the authors' ``logistic_integrate``). Draws are inverse-CDF: ``u ~ U[σ(−clip), σ(clip)]``,
``α = loc + scale · logit(u)``; then ``∫ f ≈ mean_n f(α_n) / q(α_n)`` (unbiased for the truncated integral).

Defaults ``loc = 1, scale = 2, clip = 3`` (log-SNR range ``[−5, 7]``) are the authors' CLI defaults (their
Info-Decomp code). :meth:`TruncatedLogistic.from_data` sets ``loc, scale`` from the data as
ITdiffusion does (Kong et al. 2023, kxh001/ITdiffusion ``diffusionmodel.py``, ``DiffusionModel.dataset_info``):
``loc = −mean(log λ)``, ``scale = sqrt(1 + 3/π · var(log λ))`` with ``λ`` the eigenvalues of the data covariance
(``var`` unbiased, as ``torch.var``). The authors' code ignores ``clip`` in several functions and uses 4; here
the configured ``clip`` is used everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from xattr.errors import XattrError

__all__ = ["TruncatedLogistic", "INTEGRATIONS"]

#: ``integration=`` choices of the estimators: importance sampling or Gauss–Legendre nodes over the same range
INTEGRATIONS = ("sample", "quadrature")


@dataclass(frozen=True)
class TruncatedLogistic:
    """Logistic(``loc``, ``scale``) over the log-SNR, truncated to ``loc ± scale·clip``."""

    loc: float = 1.0
    scale: float = 2.0
    clip: float = 3.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.loc) and math.isfinite(self.scale) and math.isfinite(self.clip)):
            raise XattrError(f"log-SNR sampler: loc={self.loc}, scale={self.scale}, clip={self.clip} must be finite")
        if self.scale <= 0:
            raise XattrError(f"log-SNR sampler: scale={self.scale} must be > 0 (e.g. scale=2.0)")
        if self.clip <= 0:
            raise XattrError(f"log-SNR sampler: clip={self.clip} must be > 0 (e.g. clip=3.0: range loc ± 3·scale)")

    @classmethod
    def from_eigenvalues(cls, eigenvalues: torch.Tensor, *, clip: float = 3.0) -> TruncatedLogistic:
        """ITdiffusion's data-driven ``loc = −mean(log λ)``, ``scale = sqrt(1 + 3/π · var(log λ))``."""
        lam = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
        if lam.numel() < 2 or (lam <= 0).any():
            raise XattrError(f"from_eigenvalues needs >= 2 positive covariance eigenvalues, got {lam.numel()} "
                             f"with min {lam.min().item() if lam.numel() else float('nan'):.3g}; "
                             "drop zero directions or use more samples")
        log_lam = lam.log()
        return cls(loc=-log_lam.mean().item(), scale=math.sqrt(1 + 3 / math.pi * log_lam.var().item()), clip=clip)

    @classmethod
    def from_data(cls, x: torch.Tensor, *, clip: float = 3.0) -> TruncatedLogistic:
        """:meth:`from_eigenvalues` of the sample covariance of ``x`` ``[N, ...]`` (flattened; needs ``N > d``,
        as ITdiffusion asserts)."""
        flat = torch.as_tensor(x).reshape(x.shape[0], -1).to(torch.float64)
        if flat.shape[0] <= flat.shape[1]:
            raise XattrError(f"from_data: {flat.shape[0]} samples of dimension {flat.shape[1]}; need more samples "
                             "than dimensions (or pass the covariance spectrum to from_eigenvalues)")
        centred = flat - flat.mean(0)
        return cls.from_eigenvalues(torch.linalg.eigvalsh(centred.T @ centred / (flat.shape[0] - 1)), clip=clip)

    @property
    def low(self) -> float:
        return self.loc - self.scale * self.clip

    @property
    def high(self) -> float:
        return self.loc + self.scale * self.clip

    def density(self, logsnr: torch.Tensor) -> torch.Tensor:
        """``q(α) = σ(t) σ(−t) / (scale · tanh(clip/2))``, ``t = (α − loc)/scale`` (0 outside the range)."""
        t = (logsnr - self.loc) / self.scale
        q = torch.sigmoid(t) * torch.sigmoid(-t) / (self.scale * math.tanh(self.clip / 2))
        return torch.where(t.abs() <= self.clip, q, torch.zeros_like(q))

    def importance_weight(self, logsnr: torch.Tensor) -> torch.Tensor:
        """``1 / q(α) = scale · tanh(clip/2) / (σ(t) σ(−t))`` for ``α`` inside the range."""
        t = (logsnr - self.loc) / self.scale
        return self.scale * math.tanh(self.clip / 2) / (torch.sigmoid(t) * torch.sigmoid(-t))

    def sample(self, shape, *, generator: torch.Generator | None = None, dtype=torch.float64,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """Draws of ``α`` of ``shape`` by the inverse CDF: ``u ~ U[σ(−clip), σ(clip)]``, ``α = loc + scale·logit(u)``."""
        u = torch.rand(tuple(shape), generator=generator, dtype=dtype, device=device)
        lo, hi = 1 / (1 + math.exp(self.clip)), 1 / (1 + math.exp(-self.clip))
        return self.loc + self.scale * torch.logit(lo + (hi - lo) * u)

    def quadrature(self, n_points: int, *, dtype=torch.float64,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Gauss–Legendre nodes ``α_k`` and weights ``w_k`` ``[n_points]`` on ``[low, high]``:
        ``Σ_k w_k f(α_k) ≈ ∫_low^high f(α) dα`` (exact for polynomials of degree < 2·n_points)."""
        if n_points < 1:
            raise XattrError(f"quadrature: n_points={n_points} must be >= 1")
        nodes, weights = np.polynomial.legendre.leggauss(n_points)
        half = 0.5 * (self.high - self.low)
        alpha = torch.as_tensor(self.loc + half * nodes, dtype=dtype, device=device)
        return alpha, torch.as_tensor(half * weights, dtype=dtype, device=device)
