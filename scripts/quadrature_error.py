"""Quadrature error of DiffIB's Eq. 14 integral on Gaussian ground truth (no Monte Carlo, no trained denoiser).

For x ~ N(0, Sigma) the eps-MMSE of every coordinate is exact (``xattr.info.gaussian_mmse_eps``), so the
straight-path integral ``A_i = 1/2 (alpha_i - alpha_min) int_0^1 mmse_i(alpha_min + t (alpha - alpha_min)) dt``
can be evaluated with ``mmse_integral``'s trapezoid weights alone, and ``sum_i A_i`` compared with the exact
``I = 1/2 log det(I + Gamma^1/2 Sigma Gamma^1/2)``. Prints the relative error for each lower end ``alpha_min``
and number of points K (d = 24, random correlated Sigma, alpha_i ~ U(-3, 4), seed 0 by default).

    PYTHONPATH=. python scripts/quadrature_error.py [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime as dt

import torch

from xattr.info.gaussian import gaussian_mmse_eps, gaussian_mutual_information, random_covariance
from xattr.info.mmse import trapezoid_weights


def path_integral(sigma: torch.Tensor, alpha: torch.Tensor, alpha_min: float, n_points: int) -> torch.Tensor:
    """Trapezoid rule of Eq. 14 with the exact per-coordinate eps-MMSE along the path: ``[d]`` nats."""
    t = torch.linspace(0.0, 1.0, n_points, dtype=sigma.dtype)
    path = alpha_min + t[:, None] * (alpha[None] - alpha_min)  # [K, d]
    mmse = gaussian_mmse_eps(sigma, path)                      # [K, d]
    weights = trapezoid_weights(n_points, dtype=sigma.dtype)   # [K], sums to 1
    return 0.5 * (alpha - alpha_min) * (weights[:, None] * mmse).sum(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--d", type=int, default=24)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(args.seed)
    sigma = random_covariance(args.d, generator=generator)
    alpha = -3.0 + 7.0 * torch.rand(args.d, generator=generator, dtype=torch.float64)
    exact = gaussian_mutual_information(sigma, alpha).item()
    points = (9, 17, 33, 65)
    print(f"# relative error of sum_i A_i against the log-det (d = {args.d}, seed {args.seed}, "
          f"{dt.date.today().isoformat()}; scripts/quadrature_error.py)")
    print("| alpha_min | " + " | ".join(f"K = {k}" for k in points) + " |")
    print("| --- |" + " --- |" * len(points))
    for alpha_min in (-10.0, -8.0, -6.0):
        errors = [(path_integral(sigma, alpha, alpha_min, k).sum().item() - exact) / exact for k in points]
        print(f"| {alpha_min:g} | " + " | ".join(f"{e:+.1e}" for e in errors) + " |")


if __name__ == "__main__":
    main()
