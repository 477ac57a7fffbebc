"""Information-theoretic core: noise channel, log-SNR samplers, MMSE integrals, bottleneck statistics."""

from xattr.info.channel import noise_channel, sample_log_snr, smooth_field
from xattr.info.gaussian import (
    gaussian_eps_denoiser,
    gaussian_mmse_eps,
    gaussian_mmse_eps_eigen,
    gaussian_mutual_information,
    gaussian_mutual_information_eigen,
    random_covariance,
    stationary_covariance,
    stationary_eps_denoiser,
    stationary_gaussian,
)
from xattr.info.mmse import mmse_integral, trapezoid_weights

__all__ = [
    "noise_channel",
    "sample_log_snr",
    "smooth_field",
    "gaussian_eps_denoiser",
    "gaussian_mutual_information",
    "gaussian_mmse_eps",
    "gaussian_mmse_eps_eigen",
    "gaussian_mutual_information_eigen",
    "random_covariance",
    "stationary_covariance",
    "stationary_eps_denoiser",
    "stationary_gaussian",
    "mmse_integral",
    "trapezoid_weights",
]
