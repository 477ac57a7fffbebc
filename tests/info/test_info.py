"""xattr.info: noise channel, log-SNR samplers, Gaussian ground truth, MMSE integrals (Eq. 10/14)."""

from __future__ import annotations

import math

import pytest
import torch

from xattr.errors import XattrError
from xattr.info import (
    gaussian_eps_denoiser,
    gaussian_mmse_eps,
    gaussian_mutual_information,
    mmse_integral,
    noise_channel,
    random_covariance,
    sample_log_snr,
    smooth_field,
    trapezoid_weights,
)


def _setup(d=16, seed=0, low=-3.0, high=4.0):
    g = torch.Generator().manual_seed(seed)
    sigma = random_covariance(d, generator=g)
    alpha = torch.empty(d, dtype=torch.float64).uniform_(low, high, generator=g)
    return g, sigma, alpha


def test_noise_channel_is_variance_preserving_and_matches_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    alpha = torch.tensor([-4.0, 0.0, 3.0], dtype=torch.float64).expand_as(x)
    eps = torch.randn(x.shape, generator=g, dtype=torch.float64)
    z = noise_channel(x, alpha, eps)
    assert torch.allclose(z.var(0), torch.ones(3, dtype=torch.float64), atol=0.01)
    s = torch.sigmoid(torch.tensor(3.0, dtype=torch.float64))
    assert torch.allclose(z[:, 2], s.sqrt() * x[:, 2] + (1 - s).sqrt() * eps[:, 2])
    # sigmoid(a) + sigmoid(-a) = 1: signal and noise weights square-sum to one for any alpha
    a = torch.linspace(-20, 20, 41, dtype=torch.float64)
    assert torch.allclose(torch.sigmoid(a) + torch.sigmoid(-a), torch.ones_like(a))
    with pytest.raises(XattrError):
        noise_channel(x, alpha, eps[:10])


def test_log_snr_sampler_moments_and_smooth_fields():
    g = torch.Generator().manual_seed(0)
    a = sample_log_snr((64, 3, 32, 32), mean=-1.0, scale=2.0, generator=g)
    assert abs(a.mean().item() + 1.0) < 0.05 and abs(a.std().item() - 2.0) < 0.05
    smooth = smooth_field(torch.randn(16, 3, 32, 32, generator=g), 3.0)
    assert abs(smooth.std().item() - 1.0) < 0.1
    # neighbouring pixels are strongly correlated in a smooth field, not in white noise
    corr = torch.corrcoef(torch.stack([smooth[..., :-1].flatten(), smooth[..., 1:].flatten()]))[0, 1]
    assert corr > 0.8
    mixed = sample_log_snr((8, 3, 16, 16), smooth_sigma=2.0, smooth_fraction=1.0, generator=g)
    assert mixed.shape == (8, 3, 16, 16) and torch.isfinite(mixed).all()


def test_gaussian_denoiser_is_the_conditional_mean():
    """The closed form eps_hat beats perturbed linear maps and its error equals gaussian_mmse_eps."""
    g, sigma, alpha = _setup(d=8)
    n = 100_000
    x = torch.randn(n, 8, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(sigma).T
    eps = torch.randn(n, 8, generator=g, dtype=torch.float64)
    a = alpha.expand(n, 8)
    z = noise_channel(x, a, eps)
    err = (eps - gaussian_eps_denoiser(sigma)(z, a)).pow(2).mean(0)
    exact = gaussian_mmse_eps(sigma, alpha[None])[0]
    assert torch.allclose(err, exact, rtol=0.03)
    # regression by least squares on the samples recovers the same linear map
    w_ls = torch.linalg.lstsq(z, eps).solution
    err_ls = (eps - z @ w_ls).pow(2).mean(0)
    assert torch.allclose(err_ls, err, rtol=0.01)


def test_mutual_information_closed_form_matches_scalar_case():
    sigma = torch.diag(torch.tensor([0.5, 2.0], dtype=torch.float64))
    alpha = torch.tensor([1.0, -2.0], dtype=torch.float64)
    expected = 0.5 * sum(math.log(1 + math.exp(a) * v) for a, v in [(1.0, 0.5), (-2.0, 2.0)])
    assert abs(gaussian_mutual_information(sigma, alpha).item() - expected) < 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quadrature_of_exact_mmse_gives_mutual_information(seed):
    """No Monte Carlo: sum_i 1/2 (alpha_i - alpha_min) int mmse_eps_i dt == I(X;Z) (I-MMSE, straight path)."""
    _, sigma, alpha = _setup(d=24, seed=seed)
    info = gaussian_mutual_information(sigma, alpha).item()
    for n_points, tol in [(33, 2e-3), (129, 2e-4)]:
        t = torch.linspace(0, 1, n_points, dtype=torch.float64)
        path = -10.0 + t[:, None] * (alpha + 10.0)
        A = 0.5 * (alpha + 10.0) * (trapezoid_weights(n_points)[:, None] * gaussian_mmse_eps(sigma, path)).sum(0)
        assert abs(A.sum().item() - info) / info < tol


@pytest.mark.parametrize("seed", [0, 1])
def test_mmse_integral_with_analytic_denoiser_sums_to_mutual_information(seed):
    """Acceptance: per-coordinate A (pointwise, averaged over x ~ N(0, Sigma)) sums to I within 1%; A >= 0."""
    g, sigma, alpha = _setup(d=16, seed=seed)
    info = gaussian_mutual_information(sigma, alpha).item()
    B = 20_000
    x = torch.randn(B, 16, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(sigma).T
    A = mmse_integral(gaussian_eps_denoiser(sigma), x, alpha.expand(B, 16).clone(), alpha_min=-10.0,
                      n_points=33, n_noise=2, chunk_size=50_000, generator=g)
    assert A.shape == x.shape and A.dtype == torch.float64
    assert (A >= 0).all()
    total = A.sum(1)
    stderr = total.std().item() / math.sqrt(B)
    assert stderr / info < 0.0025  # the check below is meaningful
    assert abs(total.mean().item() - info) / info < 0.01


def test_mmse_integral_images_float32_and_chunking_invariance():
    """Images [B,C,H,W] in float32 work; the result does not depend on the chunk size for fixed noise."""
    d = 2 * 2 * 4
    g = torch.Generator().manual_seed(3)
    sigma = random_covariance(d, generator=g)
    x = (torch.randn(6, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(sigma).T).float()
    x = x.view(6, 2, 2, 4)
    alpha = torch.empty(6, 2, 2, 4).uniform_(-2, 3, generator=g)
    eps_fn = gaussian_eps_denoiser(sigma)
    a1 = mmse_integral(eps_fn, x, alpha, n_points=9, n_noise=3, chunk_size=7,
                       generator=torch.Generator().manual_seed(0))
    a2 = mmse_integral(eps_fn, x, alpha, n_points=9, n_noise=3, chunk_size=1000,
                       generator=torch.Generator().manual_seed(0))
    assert a1.shape == x.shape and a1.dtype == torch.float32 and (a1 >= 0).all()
    # chunking changes the order of noise draws, not their law: compare sums loosely, shapes exactly
    assert abs(a1.sum().item() - a2.sum().item()) / a2.sum().item() < 0.25


def test_mmse_integral_zero_span_and_bad_input():
    x = torch.randn(2, 4)
    eps_fn = gaussian_eps_denoiser(torch.eye(4, dtype=torch.float64))
    A = mmse_integral(eps_fn, x, torch.full_like(x, -20.0), alpha_min=-10.0, n_points=5, n_noise=1)
    assert torch.equal(A, torch.zeros_like(x))  # alpha below alpha_min is clipped: no information
    with pytest.raises(XattrError):
        mmse_integral(eps_fn, x, torch.zeros(2, 3))
    with pytest.raises(XattrError):
        mmse_integral(eps_fn, x, torch.full_like(x, float("nan")))
    with pytest.raises(XattrError):
        trapezoid_weights(1)


def _train_mlp_denoiser(sigma: torch.Tensor, steps: int, seed: int = 0) -> torch.nn.Module:
    """A small MLP eps_theta(z, alpha) trained with Algorithm 2's loss on Gaussian samples (float32)."""
    d = sigma.shape[0]
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(sigma).float()
    net = torch.nn.Sequential(torch.nn.Linear(2 * d, 128), torch.nn.SiLU(), torch.nn.Linear(128, 128),
                              torch.nn.SiLU(), torch.nn.Linear(128, d))

    class EpsNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, z, alpha):
            # v-parameterisation (as xattr.nets.unet.Denoiser): eps_hat = b z + a v_hat, exact as alpha -> -inf
            v_hat = self.net(torch.cat([z, alpha / 5.0], -1))
            return torch.sigmoid(-alpha).sqrt() * z + torch.sigmoid(alpha).sqrt() * v_hat

    model = EpsNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        x = torch.randn(256, d, generator=g) @ chol.T
        # the integration paths run from alpha_min to alpha_i: train on a per-sample shift + per-coordinate jitter
        alpha = sample_log_snr(x.shape, mean=-3.0, scale=2.0, sample_scale=3.5, generator=g)
        eps = torch.randn(x.shape, generator=g)
        loss = (model(noise_channel(x, alpha, eps), alpha) - eps).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def test_mmse_integral_with_trained_mlp_denoiser_within_10_percent():
    torch.set_num_threads(1)
    g, sigma, alpha = _setup(d=16, seed=0)
    info = gaussian_mutual_information(sigma, alpha).item()
    model = _train_mlp_denoiser(sigma, steps=500)
    B = 1000
    x = (torch.randn(B, 16, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(sigma).T).float()
    A = mmse_integral(model, x, alpha.float().expand(B, 16).clone(), n_points=33, n_noise=2,
                      chunk_size=20_000, generator=g)
    assert (A >= 0).all()
    assert abs(A.sum(1).mean().item() - info) / info < 0.10
