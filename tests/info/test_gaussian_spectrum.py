"""Gaussian ground truth known by its eigenvalues (xattr.info.gaussian ``*_eigen``, ``stationary_*``): the closed
forms against the dense formulas, against Monte Carlo, and the stationary field's sampler and denoiser."""

from __future__ import annotations

import pytest
import torch

from xattr.errors import XattrError
from xattr.info import (
    gaussian_eps_denoiser,
    gaussian_mmse_eps,
    gaussian_mmse_eps_eigen,
    gaussian_mutual_information,
    gaussian_mutual_information_eigen,
    noise_channel,
    random_covariance,
    stationary_covariance,
    stationary_eps_denoiser,
    stationary_gaussian,
)

ALPHAS = torch.tensor([-4.0, -1.0, 0.0, 2.0, 5.0])


def _spectrum(channels: int = 2, size: int = 4) -> torch.Tensor:
    """An even, anisotropic spectrum [C,H,W] spanning two decades (eigenvalues of a small stationary field)."""
    k = torch.fft.fftfreq(size, d=1 / size, dtype=torch.float64).abs()
    radius2 = k[:, None] ** 2 + 0.5 * k[None, :] ** 2
    return torch.stack([(1 + radius2 / (c + 0.7)) ** -1.5 * (c + 1) for c in range(channels)])


def test_eigen_mmse_and_information_equal_the_dense_formulas():
    """On a random correlated Sigma: tr of the exact eps-MMSE and the log-det equal the eigenvalue forms."""
    sigma = random_covariance(12, generator=torch.Generator().manual_seed(3))
    lam = torch.linalg.eigvalsh(sigma)
    for alpha in ALPHAS:
        dense = gaussian_mmse_eps(sigma, torch.full((1, 12), float(alpha), dtype=torch.float64)).sum()
        assert gaussian_mmse_eps_eigen(lam, alpha)[0].item() == pytest.approx(dense.item(), rel=1e-10)
        info = gaussian_mutual_information(sigma, torch.full((12,), float(alpha), dtype=torch.float64))
        assert gaussian_mutual_information_eigen(lam, alpha)[0].item() == pytest.approx(info.item(), rel=1e-10)


def test_eigen_mmse_matches_monte_carlo_of_the_optimal_denoiser():
    """Monte Carlo eps-MSE of the conditional mean on sampled stationary fields = sum_k sigmoid(alpha + log lam_k)
    within 2% (d = 32, 20,000 draws: MC error ~0.3%); the x-space MMSE or a missing e^alpha would be far off."""
    spectrum = _spectrum()
    generator = torch.Generator().manual_seed(0)
    x = stationary_gaussian(spectrum, 20_000, generator=generator, dtype=torch.float64)
    eps_fn = gaussian_eps_denoiser(stationary_covariance(spectrum))
    for alpha in ALPHAS:
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        a = torch.full_like(x, float(alpha))
        mc = (eps - eps_fn(noise_channel(x, a, eps), a)).pow(2).sum((1, 2, 3)).mean().item()
        exact = gaussian_mmse_eps_eigen(spectrum, alpha)[0].item()
        assert mc == pytest.approx(exact, rel=0.02), (float(alpha), mc, exact)
        if alpha != 0:  # the x-space MMSE (equal to the eps one at alpha = 0 only) would fail this check
            x_space = (spectrum / (1 + torch.exp(alpha) * spectrum)).sum().item()
            assert mc != pytest.approx(x_space, rel=0.1)


def test_stationary_sampler_has_the_spectrum_as_covariance():
    """Empirical covariance of 40,000 draws is the circulant covariance (max entry error < 0.03 of its scale),
    and that covariance's eigenvalues are the spectrum."""
    spectrum = _spectrum()
    dense = stationary_covariance(spectrum)
    assert torch.allclose(dense, dense.T, atol=1e-12)
    assert torch.allclose(torch.linalg.eigvalsh(dense), spectrum.flatten().sort().values, atol=1e-10)
    x = stationary_gaussian(spectrum, 40_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    flat = x.reshape(x.shape[0], -1)
    empirical = flat.T @ flat / flat.shape[0]
    assert (empirical - dense).abs().max() < 0.03 * dense.diagonal().max()


def test_stationary_denoiser_equals_the_dense_conditional_mean():
    spectrum = _spectrum()
    z = torch.randn(6, *spectrum.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    alpha = torch.linspace(-3, 4, 6, dtype=torch.float64).view(-1, 1, 1, 1).expand_as(z)
    dense = gaussian_eps_denoiser(stationary_covariance(spectrum))(z, alpha)
    assert torch.allclose(stationary_eps_denoiser(spectrum)(z, alpha), dense, atol=1e-10)


def test_stationary_helpers_refuse_what_they_cannot_compute():
    spectrum = _spectrum()
    with pytest.raises(XattrError, match="one alpha per image"):
        stationary_eps_denoiser(spectrum)(torch.zeros(1, *spectrum.shape), torch.randn(1, *spectrum.shape))
    odd = spectrum.clone()
    odd[0, 1, 0] += 1.0                                      # spectrum[k] != spectrum[-k]
    with pytest.raises(XattrError, match="even"):
        stationary_gaussian(odd, 2)
    with pytest.raises(XattrError, match=">= 0"):
        gaussian_mmse_eps_eigen(torch.tensor([1.0, -0.1]), torch.zeros(1))
