"""Information-theoretic core: noise channel, log-SNR samplers, MMSE integrals, pointwise (conditional) MI
estimators, Gaussian ground truth, bottleneck statistics."""

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
from xattr.info.gaussian_conditional import JointGaussian, random_joint_gaussian
from xattr.info.logsnr import TruncatedLogistic
from xattr.info.mmse import mmse_integral, trapezoid_weights
from xattr.info.pointwise import pixel_map, pointwise_information, pointwise_information_many

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
    "JointGaussian",
    "random_joint_gaussian",
    "TruncatedLogistic",
    "pointwise_information",
    "pointwise_information_many",
    "pixel_map",
]
