"""Ground truth for pointwise (conditional) mutual information: ``x`` jointly Gaussian with conditioning variables.

``(x, w) ~ N(0, J)`` with ``x`` ``[d]`` and ``w`` ``[m]`` (``w`` holds ``y`` for ``I(X;Y)``, or ``(y, c)`` for
``I(X;Y|C)``). Observing a subset ``S`` of ``w`` leaves ``x | w_S ~ N(K_S w_S, Σ_{x|S})`` with
``K_S = J_{xS} J_{SS}^{-1}`` and ``Σ_{x|S} = J_xx − J_{xS} J_{SS}^{-1} J_{Sx}`` (Schur complement).

A condition is one vector ``c = [w · mask, mask]`` of ``2m`` numbers (:meth:`JointGaussian.condition`): the mask
says which coordinates of ``w`` are observed, so one ε-predictor serves every condition, as a text-to-image
UNet serves every prompt (the all-zero ``c`` is the unconditional "empty prompt").

The MMSE ε-predictor of ``x ~ N(μ, Σ)`` at one log-SNR ``α`` per row (``a² = σ(α)``, ``b² = σ(−α)``,
``z = a x + b ε``) is linear: ``ε̂ = b (a² Σ + b² I)^{-1} (z − a μ)``, computed in ``Σ``'s eigenbasis
``Σ = U diag(λ) Uᵀ`` as ``U diag(b / (a² λ + b²)) Uᵀ (z − a μ)``. Its error trace is ``Σ_k σ(α + log λ_k)``, so
the information a condition adds over a nested reference, integrated over ``α ∈ [lo, hi]``, is in closed form::

    ½ ∫_lo^hi (mmse_ref − mmse_cond) dα = ½ Σ_k [softplus(α + log λ_k^ref)]_lo^hi − ½ Σ_k [softplus(α + log λ_k^cond)]_lo^hi

and over the whole line it is ``½ log det Σ_{x|ref} − ½ log det Σ_{x|cond}`` (= ``I(X;Y)`` for cond = y, ref = ∅,
and ``I(X;Y|C)`` for cond = (y, c), ref = c).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xattr.errors import XattrError

__all__ = ["JointGaussian", "random_joint_gaussian"]


@dataclass(frozen=True)
class JointGaussian:
    """``(x, w) ~ N(0, covariance)``: ``x`` is the first ``x_dim`` coordinates, ``w`` the remaining ``m``.

    ``observed`` arguments below are index lists into ``w`` (``[]`` = unconditional) or boolean masks ``[m]``.
    """

    covariance: torch.Tensor
    x_dim: int

    def __post_init__(self) -> None:
        cov = torch.as_tensor(self.covariance, dtype=torch.float64)
        if cov.dim() != 2 or cov.shape[0] != cov.shape[1] or not 0 < self.x_dim < cov.shape[0]:
            raise XattrError(f"JointGaussian: covariance {tuple(cov.shape)} must be square and larger than "
                             f"x_dim={self.x_dim}; pass the covariance of (x, w) and x's dimension")
        object.__setattr__(self, "covariance", cov)

    @property
    def cond_dim(self) -> int:
        """``m``, the number of conditioning coordinates ``w``."""
        return self.covariance.shape[0] - self.x_dim

    def mask(self, observed: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Boolean ``[m]`` mask of the observed coordinates of ``w``."""
        observed = torch.as_tensor(observed)
        if observed.dtype == torch.bool:
            if observed.shape != (self.cond_dim,):
                raise XattrError(f"observed mask has shape {tuple(observed.shape)}, need ({self.cond_dim},)")
            return observed
        mask = torch.zeros(self.cond_dim, dtype=torch.bool)
        mask[observed.long()] = True
        return mask

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws: ``x`` ``[n, d]`` and ``w`` ``[n, m]``."""
        chol = torch.linalg.cholesky(self.covariance)
        joint = torch.randn(n, self.covariance.shape[0], generator=generator, dtype=torch.float64) @ chol.T
        return joint[:, :self.x_dim].to(dtype), joint[:, self.x_dim:].to(dtype)

    def condition(self, w: torch.Tensor, observed: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The conditioning vectors ``c = [w · mask, mask]`` ``[n, 2m]`` for ``w`` ``[n, m]`` (dtype of ``w``)."""
        mask = self.mask(observed).to(w.dtype)
        return torch.cat([w * mask, mask.expand_as(w)], dim=-1)

    def conditional(self, observed: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K_S [d, m], Σ_{x|S} [d, d])``: ``E[x | w_S] = K_S w`` (zero columns off ``S``) and the covariance."""
        mask = self.mask(observed)
        d = self.x_dim
        jxx, jxw, jww = self.covariance[:d, :d], self.covariance[:d, d:], self.covariance[d:, d:]
        gain = torch.zeros(d, self.cond_dim, dtype=torch.float64)
        if not mask.any():
            return gain, jxx.clone()
        jxs, jss = jxw[:, mask], jww[mask][:, mask]
        gain[:, mask] = torch.linalg.solve(jss, jxs.T).T
        cov = jxx - gain[:, mask] @ jxs.T
        return gain, 0.5 * (cov + cov.T)

    def conditional_eigenvalues(self, observed: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Eigenvalues ``[d]`` of ``Σ_{x|S}``."""
        return torch.linalg.eigvalsh(self.conditional(observed)[1])

    def information(self, cond: Sequence[int] | torch.Tensor, ref: Sequence[int] | torch.Tensor = ()) -> float:
        """``½ log det Σ_{x|ref} − ½ log det Σ_{x|cond}`` nats: ``I(X; w_cond)`` for ``ref = ()``, the CMI
        ``I(X; w_{cond∖ref} | w_ref)`` for nested ``ref ⊂ cond``."""
        half_logdet = [0.5 * torch.linalg.slogdet(self.conditional(s)[1]).logabsdet.item() for s in (ref, cond)]
        return half_logdet[0] - half_logdet[1]

    def truncated_information(self, cond: Sequence[int] | torch.Tensor, ref: Sequence[int] | torch.Tensor = (),
                              *, low: float, high: float) -> float:
        """The part of :meth:`information` inside log-SNR ``[low, high]``: ``½ ∫ (mmse_ref − mmse_cond) dα``
        with ``tr mmse(α) = Σ_k σ(α + log λ_k)`` integrated in closed form (softplus)."""
        def half_integral(observed) -> float:
            log_lam = torch.log(self.conditional_eigenvalues(observed))
            return 0.5 * (F.softplus(high + log_lam) - F.softplus(low + log_lam)).sum().item()

        return half_integral(ref) - half_integral(cond)

    def log_likelihood_ratio(self, x: torch.Tensor, w: torch.Tensor, cond: Sequence[int] | torch.Tensor,
                             ref: Sequence[int] | torch.Tensor = ()) -> torch.Tensor:
        """The exact pointwise information ``log p(x | w_cond) − log p(x | w_ref)`` ``[n]`` (seed Eq. 4 over the
        whole log-SNR line; the mean of ``i^s``) for ``x`` ``[n, d]``, ``w`` ``[n, m]``."""
        x64, w64 = x.reshape(x.shape[0], -1).to(torch.float64), w.to(torch.float64)

        def log_density(observed) -> torch.Tensor:
            gain, cov = self.conditional(observed)
            residual = x64 - w64 @ gain.T
            chol = torch.linalg.cholesky(cov)
            white = torch.linalg.solve_triangular(chol, residual.T, upper=False)
            return -0.5 * white.pow(2).sum(0) - chol.diagonal().log().sum()   # the 2π terms cancel in the ratio

        return log_density(cond) - log_density(ref)

    def eps_denoiser(self) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """The MMSE ε-predictor ``eps_fn(z [N, ...], logsnr [N], c [N, 2m]) -> eps_hat [N, ...]`` given ``c``.

        ``z`` is flattened to ``d = x_dim`` coordinates per row (images work with the covariance over pixels);
        computed in float64 and returned in ``z``'s dtype. Rows are grouped by their mask (one conditional
        covariance and eigenbasis per distinct mask, cached)."""
        cache: dict[tuple[bool, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        m = self.cond_dim

        def basis(mask_row: torch.Tensor):
            key = tuple(bool(v) for v in mask_row.tolist())
            if key not in cache:
                gain, cov = self.conditional(torch.tensor(key, dtype=torch.bool))
                lam, vectors = torch.linalg.eigh(cov)
                cache[key] = (gain, lam.clamp_min(0.0), vectors)
            return cache[key]

        def eps_fn(z: torch.Tensor, logsnr: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            n = z.shape[0]
            zf = z.reshape(n, -1).to(torch.float64)
            if zf.shape[1] != self.x_dim or c.shape != (n, 2 * m) or logsnr.shape != (n,):
                raise XattrError(f"JointGaussian denoiser: z {tuple(z.shape)}, logsnr {tuple(logsnr.shape)}, "
                                 f"c {tuple(c.shape)}; need d={self.x_dim} coordinates, [N] and [N, {2 * m}]")
            c = c.to(torch.float64)
            alpha = logsnr.to(torch.float64)[:, None]
            a, b = torch.sigmoid(alpha).sqrt(), torch.sigmoid(-alpha).sqrt()
            masks, group = _distinct_rows(c[:, m:] > 0.5)
            out = torch.empty_like(zf)
            for g, mask_row in enumerate(masks):
                rows = group == g
                gain, lam, vectors = basis(mask_row.cpu())
                gain, lam, vectors = (t.to(z.device) for t in (gain, lam, vectors))
                centred = zf[rows] - a[rows] * (c[rows, :m] @ gain.T)
                shrink = b[rows] / (a[rows] ** 2 * lam[None] + b[rows] ** 2)
                out[rows] = ((centred @ vectors) * shrink) @ vectors.T
            return out.to(z.dtype).reshape(z.shape)

        return eps_fn


def _distinct_rows(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(masks, dim=0, return_inverse=True)`` for a boolean ``[N, m]``, through one integer key per row
    (``unique`` over rows is slow on large N) when ``m <= 62``."""
    if masks.shape[1] > 62:
        return torch.unique(masks, dim=0, return_inverse=True)
    bits = 2 ** torch.arange(masks.shape[1], device=masks.device, dtype=torch.int64)
    keys, group = torch.unique((masks.long() * bits).sum(1), return_inverse=True)
    return (keys[:, None] & bits) > 0, group


def random_joint_gaussian(x_dim: int, cond_dim: int, *, coupling: float = 0.6,
                          generator: torch.Generator | None = None) -> JointGaussian:
    """A random :class:`JointGaussian` with unit variances (a correlation matrix): ``coupling · W Wᵀ / n +
    (1 − coupling) I`` over ``n = x_dim + cond_dim`` coordinates, rescaled to unit diagonal. Unit variances keep
    the information inside the default log-SNR range (the low-SNR tail loses ``≲ e^lo`` of it)."""
    n = x_dim + cond_dim
    w = torch.randn(n, n, generator=generator, dtype=torch.float64)
    cov = coupling * (w @ w.T) / n + (1 - coupling) * torch.eye(n, dtype=torch.float64)
    scale = cov.diagonal().rsqrt()
    return JointGaussian(scale[:, None] * cov * scale[None], x_dim)
