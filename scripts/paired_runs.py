"""Two run folders of the same images (e.g. one method under two settings), paired: per metric the mean of
each, ``B − A`` on the images both scored (mean ± standard error, share of images where B is higher / lower).
``xattr report --paired`` pairs *methods*; this pairs *runs*, whatever differs between them.

    python scripts/paired_runs.py RUN_A RUN_B [--metric mnim.mnim ...] [--labels A B]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def per_sample(run: Path) -> pd.DataFrame:
    """``per_sample.csv`` of a complete run folder (``run`` or its only subfolder holding one)."""
    files = [run / "per_sample.csv"] if (run / "per_sample.csv").exists() else sorted(run.glob("*/per_sample.csv"))
    if len(files) != 1:
        raise SystemExit(f"{run}: expected one per_sample.csv (a run folder or a sweep with one run), found "
                         f"{len(files)}")
    return pd.read_csv(files[0])[["id", "metric", "value"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--metric", action="append", default=None, help="metrics to show (default: all)")
    parser.add_argument("--labels", nargs=2, default=["A", "B"])
    args = parser.parse_args()
    merged = per_sample(args.run_a).merge(per_sample(args.run_b), on=["id", "metric"], suffixes=("_a", "_b"))
    a, b = args.labels
    print(f"| metric | n | {a} | {b} | {b} − {a} ± s.e. | {b} higher / lower |")
    print("| --- | --- | --- | --- | --- | --- |")
    for metric, group in merged.groupby("metric"):
        if args.metric and metric not in args.metric:
            continue
        d = group["value_b"].astype(float) - group["value_a"].astype(float)
        sem = d.std(ddof=1) / len(d) ** 0.5 if len(d) > 1 else float("nan")
        print(f"| {metric} | {len(d)} | {group['value_a'].mean():.4f} | {group['value_b'].mean():.4f} | "
              f"{d.mean():+.4f} ± {sem:.4f} | {(d > 0).mean():.0%} / {(d < 0).mean():.0%} |")


if __name__ == "__main__":
    main()
