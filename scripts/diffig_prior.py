"""Prior fidelity of DiffIG's path model: unguided samples against fresh stick-breaking draws, per α.

For each α: the mean and the across-pixel variance of ``S_k`` at ``k = 4, 8, 12`` (of ``K = 16``) and the share
of flat increments (``|ΔS| < 0.01``), for 32 draws and 32 unguided DDIM samples (``xattr.nets.path_unet.ddim_sample``, the
sampler of ``method=diffig``), each sample mapped to a schedule by
``xattr.nets.path_unet.sample_to_schedule`` (isotonic projection) and, for comparison, by a cumulative max.

    PYTHONPATH=. python scripts/diffig_prior.py [--cache .cache] [--steps N] [--sampling-steps 20]

Trains (and caches) the default path model first if it is missing (``--steps`` overrides its training steps).
"""

from __future__ import annotations

import argparse

import torch

from xattr.nets.path_unet import ddim_sample, sample_to_schedule
from xattr.training.path_diffusion import draw_schedule, load_or_train_path_model


def summary(schedules: torch.Tensor) -> str:
    """``schedules`` ``[N, K+1, C', h, w]`` -> mean / variance of ``S_k`` at every 4th step, flat increments."""
    inner = schedules[:, 1:-1]
    mean, var = inner.mean((0, 2, 3, 4)), inner.var(dim=(0, 2, 3, 4))
    flat = (schedules.diff(dim=1).abs() < 0.01).float().mean().item()
    show = lambda v: " ".join(f"{x:.3f}" for x in v[3::4].tolist())  # noqa: E731
    return f"mean {show(mean)} | var {show(var)} | flat {flat:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=".cache")
    parser.add_argument("--steps", type=int, default=None, help="training steps of the path model (default: conf)")
    parser.add_argument("--sampling-steps", type=int, default=20)
    parser.add_argument("--count", type=int, default=32)
    args = parser.parse_args()
    net = load_or_train_path_model(args.cache, steps=args.steps).eval()
    for alpha in (0.1, 1.0, 10.0, 100.0):
        draws = torch.stack([draw_schedule(net.grid, net.n_steps, net.channels, alpha, 1000 + i)
                             for i in range(args.count)])
        noise = torch.randn(args.count, (net.n_steps - 1) * net.channels, net.grid, net.grid,
                            generator=torch.Generator().manual_seed(1))
        u = ddim_sample(net, noise, torch.full((args.count,), alpha), args.sampling_steps)
        cummax = sample_to_schedule(u, net.n_steps)
        cummax[:, 1:-1] = torch.cummax(((u + 1) / 2).clamp(0, 1).view_as(cummax[:, 1:-1]), 1).values
        print(f"alpha {alpha:g}")
        print(f"  stick-breaking draws  {summary(draws)}")
        print(f"  samples, isotonic map {summary(sample_to_schedule(u, net.n_steps))}")
        print(f"  samples, cummax map   {summary(cummax)}")


if __name__ == "__main__":
    main()
