"""The Heun probability-flow ODE solver (xattr.info.ode): closed form on Gaussian data, second-order convergence,
equality with diffusers' HeunDiscreteScheduler (an independent implementation of Karras et al. 2022, Alg. 1) on
the same tiny UNet, and inversion followed by regeneration reconstructing the input.

Closed form: for x₀ ~ N(0, diag(v)) the VE state x = x₀ + s·ε has E[ε | x] = s·x/(v + s²) per coordinate, so
dx/ds = s·x/(v + s²) and x(s) = x(s₀)·sqrt((v + s²)/(v + s₀²)). The denoiser used is the VP-form optimum of
xattr.info.gaussian (its own code path), so the test also checks the VE ↔ VP conversion s = exp(−α/2).
"""

from __future__ import annotations

import math

import pytest
import torch

from xattr.errors import XattrError
from xattr.info import gaussian_eps_denoiser
from xattr.info.ode import (
    generate,
    heun,
    invert,
    karras_sigmas,
    logsnr_to_sigma,
    sigma_range,
    sigma_to_logsnr,
)

VARIANCES = torch.tensor([0.05, 0.3, 1.0, 4.0], dtype=torch.float64)
#: SD 2.1's trained log-SNR range (the notes: s ∈ [0.029, 14.6])
SD21_RANGE = (-5.36, 7.07)


def gaussian_eps(variances: torch.Tensor = VARIANCES):
    """The optimal VP ε-predictor for N(0, diag(variances)) as eps_fn(z [N,d], logsnr [N])."""
    optimum = gaussian_eps_denoiser(torch.diag(variances))
    d = variances.numel()
    return lambda z, logsnr: optimum(z, logsnr.to(torch.float64)[:, None].expand(-1, d))


def closed_form(x: torch.Tensor, s_from: float, s_to: float, variances: torch.Tensor = VARIANCES) -> torch.Tensor:
    return x * torch.sqrt((variances + s_to ** 2) / (variances + s_from ** 2))


def test_sigma_range_and_schedule():
    s_min, s_max = sigma_range(SD21_RANGE)
    assert s_min == pytest.approx(0.0292, abs=1e-4) and s_max == pytest.approx(14.6, abs=0.05)
    sigmas = karras_sigmas(100, s_min, s_max)
    assert sigmas.shape == (100,) and float(sigmas[0]) == s_max and float(sigmas[-1]) == s_min
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    # Karras Eq. 5 at one interior point
    i, rho = 37, 7.0
    expected = (s_max ** (1 / rho) + i / 99 * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    assert float(sigmas[i]) == pytest.approx(expected, rel=1e-12)
    assert float(karras_sigmas(5, s_min, s_max, append_zero=True)[-1]) == 0.0


@pytest.mark.parametrize("direction", ["generate", "invert"])
def test_heun_matches_the_gaussian_closed_form(direction):
    s_min, s_max = sigma_range(SD21_RANGE)
    sigmas = karras_sigmas(100, s_min, s_max)
    torch.manual_seed(0)
    if direction == "generate":
        start = s_max * torch.randn(8, 4, dtype=torch.float64)
        out, exact = generate(start, gaussian_eps(), sigmas), closed_form(start, s_max, s_min)
    else:
        start = torch.randn(8, 4, dtype=torch.float64) * VARIANCES.sqrt()
        out, exact = invert(start, gaussian_eps(), sigmas), closed_form(start, s_min, s_max)
    relative = float(((out - exact).abs() / exact.abs()).max())
    assert relative < 1e-3, relative  # measured 6e-4 at n = 100 (and 1.6e-4 at 200: order 2)


def _error(n: int, second_order: bool) -> float:
    s_min, s_max = sigma_range(SD21_RANGE)
    torch.manual_seed(1)
    start = s_max * torch.randn(4, 4, dtype=torch.float64)
    out = heun(start, karras_sigmas(n, s_min, s_max), gaussian_eps(), second_order=second_order)
    return float(((out - closed_form(start, s_max, s_min)).abs() / closed_form(start, s_max, s_min).abs()).max())


def test_heun_error_shrinks_quadratically_and_euler_linearly():
    heun_errors = [_error(n, True) for n in (16, 31, 61)]      # intervals 15, 30, 60: each step halves
    euler_errors = [_error(n, False) for n in (16, 31, 61)]
    heun_ratios = [a / b for a, b in zip(heun_errors, heun_errors[1:])]
    euler_ratios = [a / b for a, b in zip(euler_errors, euler_errors[1:])]
    assert all(3.2 < r < 5.0 for r in heun_ratios), heun_ratios       # order 2: ratio → 4
    assert all(1.6 < r < 2.6 for r in euler_ratios), euler_ratios     # order 1: ratio → 2
    assert heun_errors[-1] < euler_errors[-1] / 10


def test_inversion_then_generation_reconstructs_on_gaussian():
    s_min, s_max = sigma_range(SD21_RANGE)
    sigmas = karras_sigmas(100, s_min, s_max)
    torch.manual_seed(2)
    x0 = torch.randn(6, 4, dtype=torch.float64) * VARIANCES.sqrt()
    back = generate(invert(x0, gaussian_eps(), sigmas), gaussian_eps(), sigmas)
    assert torch.allclose(back, x0, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_model():
    from xattr.data.shapes_captions import VOCABULARY
    from xattr.models import TextToImageModel, build_tiny_t2i_pipeline

    torch.manual_seed(0)
    return TextToImageModel(build_tiny_t2i_pipeline(list(VOCABULARY), image_size=16), name="tiny_t2i")


def test_heun_equals_diffusers_heun_discrete_scheduler(tiny_model):
    """Generation direction, Karras schedule ending at 0 (diffusers' own), on the same random-init UNet: diffusers
    maps σ → timestep by log-σ interpolation of its table and scales the input by 1/sqrt(σ²+1); we map
    α = −2 log σ → timestep in TextToImageModel.eps. Equal to float32 round-off."""
    from diffusers import HeunDiscreteScheduler

    model, n = tiny_model, 8
    scheduler = HeunDiscreteScheduler.from_config(model.scheduler.config, use_karras_sigmas=True)
    scheduler.set_timesteps(n)
    sigmas = karras_sigmas(n, *sigma_range(model.logsnr_range), append_zero=True)
    theirs_levels = torch.unique_consecutive(scheduler.sigmas.double())
    assert torch.allclose(theirs_levels, sigmas, rtol=1e-5), (theirs_levels, sigmas)
    embeds = model.encode_prompt(["a red star", "a blue ring"])
    torch.manual_seed(3)
    start = float(sigmas[0]) * torch.randn(2, *model.latent_shape)
    ours = heun(start.double(), sigmas, lambda z, a: model.eps(z.float(), a, embeds).double())
    x = start.clone()
    for t in scheduler.timesteps:
        eps = model.unet(scheduler.scale_model_input(x, t), t, encoder_hidden_states=embeds, return_dict=False)[0]
        x = scheduler.step(eps, t, x).prev_sample
    assert torch.allclose(ours.float(), x, atol=2e-4 * float(x.abs().max())), (ours.float() - x).abs().max()


def test_inversion_then_generation_reconstructs_on_the_tiny_model(tiny_model):
    """A random-init UNet is no score: over tiny_t2i's whole range (s up to 157) its ODE amplifies the
    discretisation error without bound (PSNR ≈ 2 dB at n = 100), so the round trip is checked on s ∈ [0.05, 3],
    where it is a smooth invertible flow: high PSNR, and second order (4× the steps → far smaller error)."""
    model = tiny_model
    embeds = model.encode_prompt(["a red star", "a large blue ring"])
    torch.manual_seed(4)
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    eps_fn = lambda z, a: model.eps(z, a, embeds)  # noqa: E731

    def psnr(n: int) -> float:
        sigmas = karras_sigmas(n, 0.05, 3.0)
        back = generate(invert(x0, eps_fn, sigmas), eps_fn, sigmas)
        return 10 * math.log10(4.0 / float(((back - x0) ** 2).mean()))  # peak-to-peak 2 in [-1, 1]

    coarse, fine = psnr(10), psnr(20)
    assert coarse > 35 and fine > coarse + 9, (coarse, fine)  # measured 42 dB and 60 dB


def test_bad_schedules_are_one_line_errors():
    eps = gaussian_eps()
    x = torch.zeros(2, 4, dtype=torch.float64)
    for call, pattern in [(lambda: heun(x, torch.tensor([1.0, 2.0, 1.5]), eps), "strictly monotone"),
                          (lambda: heun(x, torch.tensor([0.0, 1.0]), eps), "must be > 0"),
                          (lambda: generate(x, eps, karras_sigmas(4, append_zero=True)), "without append_zero"),
                          (lambda: karras_sigmas(1), "at least 2"),
                          (lambda: karras_sigmas(10, 2.0, 1.0), "0 < sigma_min < sigma_max"),
                          (lambda: sigma_range((3.0, -1.0)), "min < max")]:
        with pytest.raises(XattrError, match=pattern) as info:
            call()
        assert "\n" not in str(info.value)


def test_noise_level_and_log_snr_convert_both_ways_and_give_the_default_schedule_sd21s_range():
    """``α = −2 log s`` and ``s = exp(−α/2)`` (VP log-SNR ↔ VE level), inverse of each other; the default Karras
    range is ``sigma_range`` of SD 2.1's trained log-SNR range [−5.36, 7.07] (the module docstring), 100 levels."""
    sigma = torch.tensor([0.01, 0.5, 1.0, 3.0, 20.0], dtype=torch.float64)
    torch.testing.assert_close(sigma_to_logsnr(sigma), -2.0 * sigma.log())
    torch.testing.assert_close(logsnr_to_sigma(sigma_to_logsnr(sigma)), sigma)
    assert logsnr_to_sigma(2.0).item() == pytest.approx(math.exp(-1.0))
    low, high = sigma_range((-5.36, 7.07))
    default = karras_sigmas()
    assert default.shape == (100,)
    assert default[0].item() == pytest.approx(high, rel=2e-3) and default[-1].item() == pytest.approx(low, rel=2e-3)
    torch.testing.assert_close(default, karras_sigmas(100, default[-1].item(), default[0].item(), 7.0))


def test_the_edges_of_each_valid_range_are_accepted_and_just_beyond_them_refused():
    """Two levels are enough, any ρ > 0 works; equal levels, σ_min = 0, ρ = 0 and an empty log-SNR range are
    refused, and so is a schedule that is not decreasing after its first step (each error names its function)."""
    eps = gaussian_eps()
    x = torch.ones(2, 4, dtype=torch.float64)
    assert karras_sigmas(2, 0.5, 1.0).tolist() == [1.0, 0.5]
    assert karras_sigmas(3, 0.5, 1.0, rho=0.5).shape == (3,)
    two = torch.tensor([2.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(invert(x, eps, two), heun(x, two.flip(0), eps))
    torch.testing.assert_close(generate(x, eps, two), heun(x, two, eps))
    for call, pattern in [(lambda: karras_sigmas(3, 0.0, 1.0), "0 < sigma_min < sigma_max"),
                          (lambda: karras_sigmas(3, 1.0, 1.0), "0 < sigma_min < sigma_max"),
                          (lambda: karras_sigmas(3, 0.5, 1.0, rho=0.0), "rho=0.0 must be > 0"),
                          (lambda: sigma_range((1.0, 1.0)), "min < max"),
                          (lambda: generate(x, eps, torch.tensor([2.0, 2.0, 1.0])), "^generate: .*decreasing"),
                          (lambda: invert(x, eps, torch.tensor([3.0, 1.0, 2.0])), "^invert: .*decreasing"),
                          (lambda: invert(x, eps, torch.tensor([2.0])), "^invert: .*decreasing")]:
        with pytest.raises(XattrError, match=pattern):
            call()


@pytest.mark.parametrize("direction", ["generate", "invert"])
def test_invert_and_generate_pass_their_options_to_heun(direction):
    eps, x, sigmas = gaussian_eps(), torch.ones(2, 4, dtype=torch.float64), karras_sigmas(5, 0.1, 3.0)
    run = invert if direction == "invert" else generate
    steps = []
    euler = run(x, eps, sigmas, second_order=False, callback=lambda i, s, state: steps.append(i))
    assert steps == [0, 1, 2, 3]
    assert not torch.allclose(euler, run(x, eps, sigmas))
