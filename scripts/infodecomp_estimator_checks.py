"""Checks of the pointwise information estimators (Info-Decomp, Eq. 5-6) on jointly Gaussian ground truth.

Prints dated markdown tables and writes every number to ``outputs/infodecomp_estimator_checks.csv``:

1. exact I(X;Y), I(X;Y|C) against the mean ± standard error of i^o and i^s (both integration modes);
2. the truncation loss of the log-SNR range for a unit-variance scalar pair at correlation 0.9 / 0.999 (exact
   integrand: ½ ∫ (σ(α) − σ(α + log(1 − ρ²))) dα), at clip 3 (the default, [−5, 7]) and clip 4 ([−7, 9]);
3. the Monte-Carlo std of i^s over that of i^o for fixed images at 10 / 50 / 100 draws;
4. the variance of a difference of two CMIs against a shared context (a word swap) with shared draws (one
   ``pointwise_information_many`` call) against independent draws (two calls): the factor of draws that
   common random numbers save for the same error.

    PYTHONPATH=. python scripts/infodecomp_estimator_checks.py [--seed 0] [--samples 50000]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from xattr.info import (
    JointGaussian,
    TruncatedLogistic,
    pointwise_information,
    pointwise_information_many,
    random_joint_gaussian,
)

Y, Y2, C = [0, 1, 2], [3, 4, 5], [6, 7, 8]


def gaussian_information_rows(samples: int, n_draws: int, seed: int) -> list[dict]:
    """Section 1: the test case of tests/info/test_pointwise.py (x: 3, y: 3, c: 3; coupling 0.95, seed 1)."""
    model = random_joint_gaussian(3, 6, coupling=0.95, generator=torch.Generator().manual_seed(1))
    sampler = TruncatedLogistic()
    generator = torch.Generator().manual_seed(seed)
    x, w = model.sample(samples, generator=generator)
    rows = []
    context = [3, 4, 5]                            # w = (y, c) with c at indices 3..5 in this 6-dim w
    for case, (cond, ref) in {"I(X;Y)": (Y, []), "I(X;Y|C)": (Y + context, context)}.items():
        exact = model.information(cond, ref)
        truncated = model.truncated_information(cond, ref, low=sampler.low, high=sampler.high)
        for integration in ("sample", "quadrature"):
            out = pointwise_information(model.eps_denoiser(), x, model.condition(w, cond), model.condition(w, ref),
                                        n_draws=n_draws, generator=generator, integration=integration,
                                        chunk_size=1 << 20)
            for estimator in ("i_o", "i_s"):
                values = out[estimator]
                rows.append(dict(section="gaussian", case=case, integration=integration, estimator=estimator,
                                 exact=exact, truncated=truncated, mean=values.mean().item(),
                                 se=values.std().item() / math.sqrt(samples), samples=samples, draws=n_draws))
    return rows


def truncation_rows(seed: int) -> list[dict]:
    """Section 2: scalar (x, y), unit variances, correlation rho: kept fraction of -½ log(1 − ρ²)."""
    rows = []
    for rho in (0.5, 0.9, 0.999):
        model = JointGaussian(torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64), 1)
        exact = model.information([0])
        for clip in (3.0, 4.0):
            sampler = TruncatedLogistic(loc=1.0, scale=2.0, clip=clip)
            log_residual = math.log(1 - rho**2)
            alpha = torch.tensor([sampler.low, sampler.high], dtype=torch.float64)
            primitive = 0.5 * (F.softplus(alpha) - F.softplus(alpha + log_residual))
            kept = (primitive[1] - primitive[0]).item()
            assert abs(kept - model.truncated_information([0], low=sampler.low, high=sampler.high)) < 1e-12
            generator = torch.Generator().manual_seed(seed)
            x, w = model.sample(20_000, generator=generator)
            out = pointwise_information(model.eps_denoiser(), x, model.condition(w, [0]), model.condition(w, []),
                                        n_draws=32, loc=1.0, scale=2.0, clip=clip, generator=generator,
                                        integration="quadrature", chunk_size=1 << 20)
            rows.append(dict(section="truncation", case=f"rho={rho}", clip=clip, low=sampler.low, high=sampler.high,
                             exact=exact, truncated=kept, kept_fraction=kept / exact,
                             i_o_mean=out["i_o"].mean().item(),
                             i_o_se=out["i_o"].std().item() / math.sqrt(x.shape[0])))
    return rows


def _fixed_images(model: JointGaussian, n_images: int, seed: int):
    return model.sample(n_images, generator=torch.Generator().manual_seed(seed + 100))


def spread_rows(n_images: int, repeats: int, seed: int) -> list[dict]:
    """Section 3: per fixed image, std over ``repeats`` independent runs; ratio std(i^s)/std(i^o), median over images."""
    model = random_joint_gaussian(3, 6, coupling=0.95, generator=torch.Generator().manual_seed(1))
    x, w = _fixed_images(model, n_images, seed)
    rows = []
    for n_draws in (10, 50, 100):
        generator = torch.Generator().manual_seed(seed + n_draws)
        rep = lambda t: t.repeat_interleave(repeats, 0)  # noqa: E731  image-major: rows [i*repeats:(i+1)*repeats]
        out = pointwise_information(model.eps_denoiser(), rep(x), rep(model.condition(w, Y)),
                                    rep(model.condition(w, [])), n_draws=n_draws, generator=generator,
                                    chunk_size=1 << 20)
        std_o = out["i_o"].reshape(n_images, repeats).std(1)
        std_s = out["i_s"].reshape(n_images, repeats).std(1)
        ratio = std_s / std_o
        rows.append(dict(section="spread", case="I(X;Y)", draws=n_draws, images=n_images, repeats=repeats,
                         std_i_o=std_o.mean().item(), std_i_s=std_s.mean().item(),
                         ratio_median=ratio.median().item(), ratio_min=ratio.min().item(),
                         ratio_max=ratio.max().item()))
    return rows


def common_random_number_rows(n_images: int, repeats: int, n_draws: int, seed: int) -> list[dict]:
    """Section 4: Var[i(x;a|c) − i(x;b|c)] over repeated runs of fixed images, shared vs independent draws.

    x: 3, w = (y1: 3, y2: 3, c: 3). Two pairs of conditions against the shared context c: two different variables
    (a = y1, b = y2), and two near-identical ones (a = y1, b = y1 without its last coordinate: a caption and the
    caption with one word left out, the ARO / word-swap situation)."""
    model = random_joint_gaussian(3, 9, coupling=0.95, generator=torch.Generator().manual_seed(2))
    x, w = _fixed_images(model, n_images, seed)
    rep = lambda t: t.repeat_interleave(repeats, 0)  # noqa: E731
    eps_fn = model.eps_denoiser()
    rows = []
    for case, (a, b) in {"i(x;y1|c) - i(x;y2|c)": (Y, Y2), "i(x;y1|c) - i(x;y1[:2]|c)": (Y, Y[:-1])}.items():
        xs, ref = rep(x), rep(model.condition(w, C))
        conds = rep(torch.stack([model.condition(w, a + C), model.condition(w, b + C)], 1))
        shared = pointwise_information_many(eps_fn, xs, conds, ref, n_draws=n_draws,
                                            generator=torch.Generator().manual_seed(seed), chunk_size=1 << 20)
        separate = [pointwise_information(eps_fn, xs, conds[:, k], ref, n_draws=n_draws,
                                          generator=torch.Generator().manual_seed(seed + 1 + k), chunk_size=1 << 20)
                    for k in range(2)]
        exact = model.information(a + C, C) - model.information(b + C, C)
        for estimator in ("i_o", "i_s"):
            diff_shared = (shared[estimator][:, 0] - shared[estimator][:, 1]).reshape(n_images, repeats)
            diff_indep = (separate[0][estimator] - separate[1][estimator]).reshape(n_images, repeats)
            ratio = diff_indep.var(1) / diff_shared.var(1)
            rows.append(dict(section="crn", case=case, estimator=estimator,
                             draws=n_draws, images=n_images, repeats=repeats, exact_mean_difference=exact,
                             var_shared=diff_shared.var(1).mean().item(),
                             var_independent=diff_indep.var(1).mean().item(), ratio_median=ratio.median().item(),
                             ratio_min=ratio.min().item(), ratio_max=ratio.max().item()))
    return rows


def print_tables(rows: list[dict], header: str) -> None:
    print(header)
    sections: dict[str, list[dict]] = {}
    for row in rows:
        sections.setdefault(row["section"], []).append(row)
    for name, section in sections.items():
        keys = [k for k in section[0] if k != "section"]
        print(f"\n### {name}\n")
        print("| " + " | ".join(keys) + " |")
        print("|" + " --- |" * len(keys))
        for row in section:
            cells = (f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k]).replace("|", "\\|") for k in keys)
            print("| " + " | ".join(cells) + " |")


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--draws", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("outputs/infodecomp_estimator_checks.csv"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rows = (gaussian_information_rows(args.samples, args.draws, args.seed) + truncation_rows(args.seed)
            + spread_rows(20, 200, args.seed) + common_random_number_rows(20, 200, 50, args.seed))
    print_tables(rows, f"# pointwise information estimators on Gaussian ground truth (seed {args.seed}, "
                       f"{dt.date.today().isoformat()}; scripts/infodecomp_estimator_checks.py; loc 1, scale 2, "
                       "clip 3 unless stated)")
    write_csv(rows, args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
