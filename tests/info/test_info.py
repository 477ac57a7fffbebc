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


def _exact_error_denoiser(sigma: torch.Tensor):
    """An eps-predictor whose error at ``x = 0`` is exactly the Gaussian MMSE, in every draw.

    At ``x = 0`` the channel gives ``z = b * eps``, so ``z / b - sqrt(mmse_eps(alpha))`` misses ``eps`` by exactly
    ``sqrt(mmse_eps(alpha))``: :func:`mmse_integral` then computes the quadrature of the exact MMSE curve with no
    Monte Carlo error (its noise draws, chunking and batching cannot change the result).
    """

    def eps_fn(z, alpha):
        b = torch.sigmoid(-alpha.double()).sqrt()
        error = gaussian_mmse_eps(sigma, alpha.double().reshape(alpha.shape[0], -1)).sqrt()
        return (z.double() / b - error.reshape(z.shape)).to(z.dtype)

    return eps_fn


def _diagonal_gaussian(dtype=torch.float64):
    """Independent coordinates with different variances and log-SNRs, and each one's exact information
    ``1/2 log(1 + e^alpha v) - 1/2 log(1 + e^alpha_min v)`` (alpha_min = -10): for independent coordinates
    the straight-path decomposition of Eq. 14 is that of each coordinate alone."""
    v = torch.tensor([0.1, 0.3, 1.0, 3.0, 10.0, 0.5, 2.0, 5.0], dtype=dtype)
    alpha = torch.tensor([3.0, -1.0, 0.5, 2.0, -3.0, 4.0, 1.0, -0.5], dtype=dtype)
    exact = 0.5 * (torch.log1p(alpha.exp() * v) - torch.log1p(math.exp(-10.0) * v))
    return v, alpha, exact


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quadrature_of_exact_mmse_gives_mutual_information(seed):
    """No Monte Carlo (exact-error denoiser): mmse_integral's A sums to I(X;Z) (I-MMSE, straight path), and on
    independent coordinates each A_i is that coordinate's own information (Eq. 14 per pixel, not a mean)."""
    _, sigma, alpha = _setup(d=24, seed=seed)
    info = gaussian_mutual_information(sigma, alpha).item()
    x0 = torch.zeros(2, 24, dtype=torch.float64)
    for n_points, tol in [(33, 2e-3), (129, 2e-4)]:
        A = mmse_integral(_exact_error_denoiser(sigma), x0, alpha.expand(2, 24).clone(), alpha_min=-10.0,
                          n_points=n_points, n_noise=1, generator=torch.Generator().manual_seed(seed))
        assert abs(A[0].sum().item() - info) / info < tol
        torch.testing.assert_close(A[1], A[0], rtol=1e-9, atol=0)
    v, alpha, exact = _diagonal_gaussian()
    for n_points, tol in [(33, 1e-2), (129, 1e-3)]:
        A = mmse_integral(_exact_error_denoiser(torch.diag(v)), torch.zeros(1, 8, dtype=torch.float64), alpha[None],
                          alpha_min=-10.0, n_points=n_points, n_noise=1)
        torch.testing.assert_close(A[0], exact, rtol=tol, atol=0)


def test_mmse_integral_per_coordinate_matches_each_gaussian_coordinates_information():
    """Eq. 14 per pixel with the exact eps-denoiser: on x ~ N(0, diag(v)) (v and alpha differ per coordinate, so
    a per-image mean or any pooling over pixels is wrong) the mean of A_i over x is 1/2 log(1 + e^alpha_i v_i)
    (less the part below alpha_min) to a few percent. x's marginals are stratified (normal quantiles, shuffled
    per coordinate) so that the x-average is exact and the Monte Carlo error is the eps draws' alone (~1%)."""
    v, alpha, exact = _diagonal_gaussian()
    B, d = 4000, v.numel()
    g = torch.Generator().manual_seed(0)
    quantiles = torch.distributions.Normal(0.0, 1.0).icdf((torch.arange(B, dtype=torch.float64) + 0.5) / B)
    x = torch.stack([quantiles[torch.randperm(B, generator=g)] for _ in range(d)], 1) * v.sqrt()
    A = mmse_integral(gaussian_eps_denoiser(torch.diag(v)), x, alpha.expand(B, d).clone(), alpha_min=-10.0,
                      n_points=33, n_noise=2, chunk_size=50_000, generator=g)
    assert A.shape == x.shape and (A >= 0).all()
    torch.testing.assert_close(A.mean(0), exact, rtol=0.04, atol=0)


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
    """Images [B,C,H,W] in float32 work; the result does not depend on the chunk size; each pixel gets its own
    coordinate's information (images of independent Gaussian pixels, exact-error denoiser: no Monte Carlo)."""
    d = 2 * 2 * 4
    g = torch.Generator().manual_seed(3)
    sigma = random_covariance(d, generator=g)
    x = (torch.randn(6, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(sigma).T).float()
    x = x.view(6, 2, 2, 4)
    alpha = torch.empty(6, 2, 2, 4).uniform_(-2, 3, generator=g)
    a1 = mmse_integral(gaussian_eps_denoiser(sigma), x, alpha, n_points=9, n_noise=3, chunk_size=7,
                       generator=torch.Generator().manual_seed(0))
    assert a1.shape == x.shape and a1.dtype == torch.float32 and (a1 >= 0).all()
    # chunking changes the order of the noise draws; with the exact-error denoiser the draws do not matter
    v = 0.2 + torch.rand(d, generator=g, dtype=torch.float64) * 4.8
    eps_fn = _exact_error_denoiser(torch.diag(v))
    zero = torch.zeros_like(x)
    runs = [mmse_integral(eps_fn, zero, alpha, n_points=65, n_noise=n_noise, chunk_size=chunk,
                          generator=torch.Generator().manual_seed(seed))
            for chunk, n_noise, seed in [(7, 3, 0), (1000, 3, 1), (5, 1, 2)]]
    assert all(a.dtype == torch.float32 for a in runs)
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(runs[2], runs[0], rtol=1e-5, atol=1e-7)
    a64, v64 = alpha.double().view(6, d), v[None]
    exact = 0.5 * (torch.log1p(a64.exp() * v64) - torch.log1p(math.exp(-10.0) * v64))
    torch.testing.assert_close(runs[0].double().view(6, d), exact, rtol=2e-3, atol=1e-6)


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


def test_trapezoid_weights_halve_both_endpoints_exactly():
    """``h/2, h, ..., h, h/2`` with ``h = 1/(n-1)``: the endpoint pattern, not only the sum, is the rule."""
    torch.testing.assert_close(trapezoid_weights(5), torch.tensor([1, 2, 2, 2, 1], dtype=torch.float64) / 8,
                               rtol=0, atol=0)
    torch.testing.assert_close(trapezoid_weights(2), torch.tensor([0.5, 0.5], dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_mmse_integral_of_a_unit_error_is_half_the_log_snr_span_exactly(chunk_size):
    """Eq. 14 with ``mmse_eps = 1`` on the whole path: ``A_i = 1/2 (alpha_i - alpha_min) * int_0^1 1 dt``, exactly,
    for every image, point and draw (row 0 of the stacked batch included), whatever the chunking. At ``x = 0`` the
    channel gives ``z = b * eps``, so ``z / b - 1`` misses eps by exactly 1. 3 points, 1 draw: every row weighs."""
    g = torch.Generator().manual_seed(0)
    alpha = torch.empty(3, 5, dtype=torch.float64).uniform_(-4, 4, generator=g)

    def unit_error(z, a):
        return z / torch.sigmoid(-a).sqrt() - 1.0

    A = mmse_integral(unit_error, torch.zeros_like(alpha), alpha, alpha_min=-10.0, n_points=3, n_noise=1,
                      chunk_size=chunk_size, generator=g)
    torch.testing.assert_close(A, 0.5 * (alpha + 10.0), rtol=1e-12, atol=0)


def test_log_snr_sampler_defaults_are_algorithm_2s_standard_normal():
    """DiffIB Algorithm 2 draws ``alpha ~ N(0, 1)`` per coordinate: the defaults are that law (mean 0, std 1,
    no per-image shift: every image's own mean is 0 to within its sampling error)."""
    a = sample_log_snr((400, 256), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(a.mean().item()) < 0.01 and abs(a.std().item() - 1.0) < 0.01
    assert a.mean(1).std().item() < 2.0 / 256 ** 0.5


def test_log_snr_sampler_per_image_shift_is_gaussian_with_sample_scale():
    """``sample_scale * g_b``: with ``scale=0`` each image is one constant log-SNR, Gaussian across images with
    std ``sample_scale`` (not a ratio of Gaussians: its tails are light)."""
    a = sample_log_snr((20_000, 3, 2, 2), mean=1.0, scale=0.0, sample_scale=2.0,
                       generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    per_image = a.flatten(1)
    assert torch.equal(per_image, per_image[:, :1].expand_as(per_image))
    assert abs(per_image[:, 0].mean().item() - 1.0) < 0.05 and abs(per_image[:, 0].std().item() - 2.0) < 0.05
    assert per_image[:, 0].sub(1.0).abs().max().item() < 2.0 * 5.0


@pytest.mark.parametrize("sigma", [0.3, 1.5])
def test_smooth_field_of_an_impulse_is_the_normalised_gaussian_kernel_wrapped_around(sigma):
    """``smooth_field`` blurs along both axes with ``k_j ~ exp(-j^2 / (2 sigma^2))``, ``|j| <= max(1, ceil(3 sigma))``,
    circular padding, then divides by ``sum k^2`` (unit variance for white noise): an impulse at a corner gives
    ``k_dy k_dx / sum k^2`` at offsets ``(dy, dx)`` taken modulo the image size."""
    radius = max(1, math.ceil(3 * sigma))
    j = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(j ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    size = 12
    expected = torch.zeros(size, size, dtype=torch.float64)
    for dy, ky in zip(j.long().tolist(), k.tolist()):
        for dx, kx in zip(j.long().tolist(), k.tolist()):
            expected[dy % size, dx % size] += ky * kx / k.pow(2).sum()
    impulse = torch.zeros(1, 1, size, size, dtype=torch.float64)
    impulse[0, 0, 0, 0] = 1.0
    torch.testing.assert_close(smooth_field(impulse, sigma)[0, 0], expected, rtol=1e-12, atol=1e-15)


def test_log_snr_sampler_smooths_the_chosen_images_of_a_4d_draw():
    """``smooth_fraction=1`` with ``smooth_sigma > 0`` (also below 1 pixel) smooths every image of a ``[B,C,H,W]``
    draw: neighbouring coordinates correlate as the blurred field's do; ``smooth_fraction=0`` leaves white noise."""
    def neighbour_corr(a):
        return torch.corrcoef(torch.stack([a[..., :-1].flatten(), a[..., 1:].flatten()]))[0, 1].item()

    g = torch.Generator().manual_seed(2)
    for sigma, low in [(0.6, 0.3), (2.0, 0.8)]:
        smoothed = sample_log_snr((32, 3, 16, 16), smooth_sigma=sigma, smooth_fraction=1.0, generator=g)
        assert neighbour_corr(smoothed) > low, sigma
        assert abs(smoothed.std().item() - 1.0) < 0.1
    white = sample_log_snr((32, 3, 16, 16), smooth_sigma=2.0, smooth_fraction=0.0, generator=g)
    assert abs(neighbour_corr(white)) < 0.05
