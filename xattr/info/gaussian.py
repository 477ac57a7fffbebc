"""Ground truth for Gaussian data ``x ~ N(0, Sigma)`` through the per-coordinate noise channel.

With ``a = sqrt(sigmoid(alpha))``, ``b = sqrt(sigmoid(-alpha))`` and ``z = a*x + b*eps``,
``Cov z = A Sigma A + B^2`` and ``Cov(eps, z) = B``, so the MMSE (= conditional mean) eps-denoiser is linear::

    eps_hat(z, alpha) = B (A Sigma A + B^2)^{-1} z

and ``I(X; Z) = 1/2 log det(I + Gamma^{1/2} Sigma Gamma^{1/2})`` with ``Gamma = diag(exp(alpha))``.

At one scalar alpha for every coordinate both need only the eigenvalues ``lam`` of ``Sigma``:
``tr mmse_eps = sum_k sigmoid(alpha + log lam_k)`` and ``I = 1/2 sum_k log(1 + e^alpha lam_k)``
(``*_eigen``); circularly stationary image fields (``stationary_*``) have them in closed form (the DFT basis).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from xattr.errors import XattrError


def gaussian_eps_denoiser(Sigma: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The optimal eps-predictor for ``x ~ N(0, Sigma)``: ``eps_fn(z, alpha)`` for ``z, alpha`` of shape ``[N, d]``.

    Inputs of shape ``[N, ...]`` are flattened to ``d = prod(...)`` coordinates (so images work too, with
    ``Sigma`` over the flattened pixels). Computed in ``Sigma``'s dtype (use float64 for exactness).
    """
    Sigma = torch.as_tensor(Sigma)
    if Sigma.dim() != 2 or Sigma.shape[0] != Sigma.shape[1]:
        raise XattrError(f"Sigma must be a square [d,d] matrix, got shape {tuple(Sigma.shape)}")
    d = Sigma.shape[0]

    def eps_fn(z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        shape, dtype = z.shape, z.dtype
        zf = z.reshape(shape[0], -1).to(Sigma.dtype)
        af = alpha.reshape(shape[0], -1).to(Sigma.dtype)
        if zf.shape[1] != d:
            raise XattrError(f"gaussian_eps_denoiser: z has {zf.shape[1]} coordinates, Sigma is {d}x{d}")
        unique, inverse = torch.unique(af, dim=0, return_inverse=True)
        a = torch.sigmoid(unique).sqrt()
        b = torch.sigmoid(-unique).sqrt()
        cov = a[:, :, None] * Sigma.to(z.device)[None] * a[:, None, :] + torch.diag_embed(b * b)
        # eps_hat = W z with W = B (A Sigma A + B^2)^{-1}; one solve per distinct alpha row
        weights = b[:, :, None] * torch.linalg.inv(cov)
        if unique.shape[0] * 4 <= zf.shape[0]:
            out = torch.empty_like(zf)
            for u in range(unique.shape[0]):
                rows = inverse == u
                out[rows] = zf[rows] @ weights[u].T
        else:
            out = torch.einsum("nij,nj->ni", weights[inverse], zf)
        return out.to(dtype).reshape(shape)

    return eps_fn


def gaussian_mutual_information(Sigma: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``1/2 log det(I + Gamma^{1/2} Sigma Gamma^{1/2})`` in nats; ``alpha`` is ``[d]`` or ``[B, d]``."""
    Sigma = torch.as_tensor(Sigma)
    alpha = torch.as_tensor(alpha, dtype=Sigma.dtype, device=Sigma.device)
    single = alpha.dim() == 1
    alpha = alpha.reshape(-1, Sigma.shape[0]) if not single else alpha[None]
    root = torch.exp(0.5 * alpha)
    m = root[:, :, None] * Sigma[None] * root[:, None, :]
    eye = torch.eye(Sigma.shape[0], dtype=Sigma.dtype, device=Sigma.device)
    info = 0.5 * torch.linalg.slogdet(eye + m).logabsdet
    return info[0] if single else info


def random_covariance(d: int, *, correlation: float = 0.8, generator: torch.Generator | None = None,
                      dtype=torch.float64) -> torch.Tensor:
    """A random correlated SPD covariance: ``correlation * W W^T / d + (1 - correlation) * diag(s)``, s in [0.5, 2]."""
    w = torch.randn(d, d, generator=generator, dtype=dtype)
    s = 0.5 + 1.5 * torch.rand(d, generator=generator, dtype=dtype)
    return correlation * (w @ w.T) / d + (1 - correlation) * torch.diag(s)


def gaussian_mmse_eps(Sigma: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Exact per-coordinate eps-MMSE ``diag(I - B (A Sigma A + B^2)^{-1} B)`` for ``alpha`` ``[N, d]`` (no sampling).

    Lets the quadrature of :func:`xattr.info.mmse_integral` be checked without Monte Carlo noise.
    """
    Sigma = torch.as_tensor(Sigma)
    alpha = torch.as_tensor(alpha, dtype=Sigma.dtype).reshape(-1, Sigma.shape[0])
    a = torch.sigmoid(alpha).sqrt()
    b = torch.sigmoid(-alpha).sqrt()
    cov = a[:, :, None] * Sigma[None] * a[:, None, :] + torch.diag_embed(b * b)
    inv_b = torch.linalg.solve(cov, torch.diag_embed(b))
    return 1.0 - b * torch.diagonal(inv_b, dim1=-2, dim2=-1)


# ------------------------------------------------------------------ Gaussians known by their eigenvalues
# For x ~ N(mu, Sigma) and one log-SNR alpha for every coordinate, rotate to Sigma's eigenbasis: eps is isotropic,
# so each eigen-direction of variance lam is a scalar channel z = a x + b eps with eps-MMSE
# 1 - b^2 / (a^2 lam + b^2) = e^alpha lam / (1 + e^alpha lam) = sigmoid(alpha + log lam); the trace of the eps-MMSE
# matrix and I(X; Z) = 1/2 sum log(1 + e^alpha lam) need only the eigenvalues.


def gaussian_mmse_eps_eigen(eigenvalues: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``tr mmse_eps(alpha) = sum_k sigmoid(alpha + log lam_k)`` for ``x ~ N(mu, Sigma)`` with eigenvalues ``lam``
    (any shape, flattened to ``[d]``, ``>= 0``) at scalar log-SNRs ``alpha`` ``[K]`` (the same alpha for every
    coordinate); returns ``[K]`` (sum over the d coordinates; divide by d for the per-coordinate mean).

    Computed as ``lam / (lam + e^-alpha)`` in float64: a zero eigenvalue contributes 0, never NaN."""
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
    if (lam < 0).any():
        raise XattrError(f"eigenvalues must be >= 0 (a covariance), got min {lam.min().item():.3g}")
    alpha = torch.as_tensor(alpha, dtype=torch.float64).flatten()
    return (lam[None] / (lam[None] + torch.exp(-alpha)[:, None])).sum(1)


def gaussian_mutual_information_eigen(eigenvalues: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``I(X; Z_alpha) = 1/2 sum_k log(1 + e^alpha lam_k)`` in nats ``[K]`` (DiffIB Eq. 14 integrated over all
    coordinates at a scalar log-SNR: ``dI/dalpha = 1/2 tr mmse_eps``, :func:`gaussian_mmse_eps_eigen`)."""
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
    alpha = torch.as_tensor(alpha, dtype=torch.float64).flatten()
    return 0.5 * torch.log1p(torch.exp(alpha)[:, None] * lam[None]).sum(1)


def stationary_gaussian(spectrum: torch.Tensor, n: int, *, generator: torch.Generator | None = None,
                        dtype=torch.float32) -> torch.Tensor:
    """``n`` draws ``[n,C,H,W]`` of the zero-mean circularly stationary field whose covariance is diagonal in the
    unitary 2-D DFT basis with eigenvalues ``spectrum`` ``[C,H,W]`` (channels independent): white noise filtered
    by ``sqrt(spectrum)`` in the Fourier domain, ``u = ifft2(sqrt(spectrum) * fft2(w))``. ``spectrum`` must be
    even (``spectrum[k] == spectrum[-k]``), so the field is real."""
    spectrum = _check_spectrum(spectrum)
    white = torch.randn((n, *spectrum.shape), generator=generator, dtype=torch.float64)
    field = torch.fft.ifft2(torch.fft.fft2(white) * spectrum.sqrt()).real
    return field.to(dtype)


def stationary_eps_denoiser(spectrum: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The optimal eps-predictor for :func:`stationary_gaussian` data, ``eps_fn(z [B,C,H,W], alpha)``, for an
    ``alpha`` that is one value per image (constant over its coordinates, as on a scalar-SNR path): in the DFT
    basis ``eps_hat_k = b / (a^2 lam_k + b^2) z_k`` (``a^2 = sigmoid(alpha)``, ``b^2 = sigmoid(-alpha)``), the
    diagonal form of :func:`gaussian_eps_denoiser`."""
    spectrum = _check_spectrum(spectrum)

    def eps_fn(z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        per_image = torch.as_tensor(alpha, dtype=torch.float64).expand(z.shape).reshape(z.shape[0], -1)
        if (per_image.amax(1) - per_image.amin(1)).abs().max() > 1e-9:
            raise XattrError("stationary_eps_denoiser needs one alpha per image (constant over its coordinates); "
                             "use gaussian_eps_denoiser with the dense covariance for per-coordinate alpha")
        alpha_b = per_image[:, 0].view(-1, 1, 1, 1)
        a2, b = torch.sigmoid(alpha_b), torch.sigmoid(-alpha_b).sqrt()
        gain = b / (a2 * spectrum.to(z.device)[None] + b * b)
        return torch.fft.ifft2(torch.fft.fft2(z.to(torch.float64)) * gain).real.to(z.dtype)

    return eps_fn


def stationary_covariance(spectrum: torch.Tensor) -> torch.Tensor:
    """The dense covariance ``[d,d]`` (``d = C*H*W``, float64) of :func:`stationary_gaussian`: for checks on small
    fields only (``d^2`` memory)."""
    spectrum = _check_spectrum(spectrum)
    d = spectrum.numel()
    basis = torch.eye(d, dtype=torch.float64).reshape(d, *spectrum.shape)
    columns = torch.fft.ifft2(torch.fft.fft2(basis) * spectrum).real
    return columns.reshape(d, d).T.contiguous()


def _check_spectrum(spectrum: torch.Tensor) -> torch.Tensor:
    spectrum = torch.as_tensor(spectrum, dtype=torch.float64)
    if spectrum.dim() != 3:
        raise XattrError(f"spectrum must be [C,H,W] eigenvalues, got shape {tuple(spectrum.shape)}")
    if (spectrum < 0).any():
        raise XattrError("spectrum must be >= 0 (the eigenvalues of a covariance)")
    mirrored = torch.roll(spectrum.flip(-1, -2), shifts=(1, 1), dims=(-2, -1))  # spectrum[-k]
    if not torch.allclose(spectrum, mirrored, rtol=1e-12, atol=0.0):
        raise XattrError("spectrum must be even (spectrum[k] == spectrum[-k]) for a real-valued field")
    return spectrum
