"""precision=fp32|bf16|fp16 (autocast) and the device checks; full precision where the numbers need it."""

from __future__ import annotations

import pytest
import torch

from xattr.errors import XattrError
from xattr.info import mmse_integral
from xattr.info.bottleneck import kl_capacity
from xattr.info.gaussian import gaussian_eps_denoiser, gaussian_mutual_information, random_covariance
from xattr.utils.precision import autocast, check_device, check_precision, full_precision, grad_scaler


def test_autocast_runs_matmuls_in_the_reduced_type_and_fp32_is_a_no_op():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast("cpu", "bf16"):
        assert (a @ b).dtype == torch.bfloat16
        with full_precision("cpu"):
            assert (a @ b).dtype == torch.float32
    with autocast("cpu", "fp32"):
        assert (a @ b).dtype == torch.float32


def test_bad_precision_and_device_are_one_line_naming_the_value():
    with pytest.raises(XattrError, match=r"precision='fp8' is not one of fp32, tf32, bf16, fp16"):
        check_precision("fp8")
    with pytest.raises(XattrError, match=r"device='cuda:x' is not a torch device"):
        check_device("cuda:x")
    if not torch.cuda.is_available():
        with pytest.raises(XattrError, match=r"device=cuda but this machine has no CUDA GPU.*use device=cpu"):
            check_device("cuda")
    assert check_device("cpu") == torch.device("cpu")


def test_the_gradient_scaler_is_active_only_for_fp16_on_cuda():
    assert not grad_scaler("cpu", "fp16").is_enabled()
    assert not grad_scaler("cpu", "bf16").is_enabled()


class MatmulDenoiser(torch.nn.Module):
    """The exact eps-denoiser of a Gaussian, with its matrix products in an ``nn.Linear`` so that autocast
    would lower them."""

    def __init__(self, Sigma: torch.Tensor):
        super().__init__()
        self.exact = gaussian_eps_denoiser(Sigma)
        self.dtype_seen: list[torch.dtype] = []

    def forward(self, z, alpha):
        self.dtype_seen.append((z.float() @ torch.eye(z.shape[1])).dtype)  # a matmul: lowered under autocast
        return self.exact(z, alpha)


def test_the_mmse_integral_ignores_autocast_and_stays_on_the_gaussian_answer():
    """Under bf16 autocast the integral is the same numbers as without (autocast off inside), and it is
    still the exact Gaussian information: a reduced-precision integral would be neither."""
    Sigma = random_covariance(3, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    x = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=Sigma.dtype), Sigma).sample((64,)).float()
    alpha = torch.full_like(x, 1.0)
    denoiser = MatmulDenoiser(Sigma.float())

    def integral():
        return mmse_integral(denoiser, x, alpha, n_points=17, n_noise=2, generator=torch.Generator().manual_seed(1))

    plain = integral()
    with autocast("cpu", "bf16"):
        lowered = integral()
    assert set(denoiser.dtype_seen) == {torch.float32}
    assert torch.equal(plain, lowered) and lowered.dtype == torch.float32
    exact = gaussian_mutual_information(Sigma.double(), torch.ones(3, dtype=torch.float64))
    assert abs(lowered.sum(1).mean().item() / exact.item() - 1) < 0.15


def test_kl_capacity_computes_bf16_features_in_float32():
    r = torch.randn(2, 8) * 3
    lam = torch.rand(2, 8) * 0.99
    mu, sigma = torch.zeros(8), torch.ones(8)
    full = kl_capacity(r, lam, mu, sigma)
    low = kl_capacity(r.bfloat16(), lam, mu, sigma)
    assert low.dtype == torch.float32
    assert torch.allclose(low, kl_capacity(r.bfloat16().float(), lam, mu, sigma))
    assert torch.allclose(low, full, rtol=0.05, atol=0.05)


def test_fp32_means_ieee_float32_on_cuda_and_tf32_allows_tf32():
    saved = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    try:
        from xattr.utils.precision import apply_float32_precision

        apply_float32_precision("tf32")
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
        apply_float32_precision("fp32")
        assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == ("ieee",) * 2
        with autocast("cpu", "tf32"):  # tf32 is no autocast
            assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == torch.float32
    finally:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved
