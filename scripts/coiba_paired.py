"""CoIBA tables from run folders: per method mean ± s.e.m. of insertion, deletion, ΔInsDel (``dauc``:
insertion − deletion per image) and ΔROAD (``delta_road``: ROAD LeRF − MoRF probability, mean over fractions,
per image), and the paired difference ``REFERENCE − method`` of each on the same images (mean ± standard error,
share of images where the reference is higher). ``xattr report --paired`` does the same for the raw metrics;
this adds the two per-image differences CoIBA's text compares (Fig. 4/7). Writes ``paired_delta.csv``, prints
markdown.

    python scripts/coiba_paired.py outputs/coiba/tiny/table1 [outputs/coiba/tiny/table2] --reference coiba
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from xattr.runs import find_runs, markdown_table
    from xattr.tasks.difficulty import quantities
    from xattr.tasks.report import paired_differences, per_sample_frame

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--reference", default="coiba")
    parser.add_argument("--by", action="append", default=[], help="config keys appended to the method label")
    parser.add_argument("--out", default=None, help="folder for paired_delta.csv (default: the first run dir)")
    args = parser.parse_args()

    runs = find_runs(args.run_dirs)
    long = per_sample_frame(runs, args.by)
    long["id"] = long["id"].astype(str)
    keys = ["method", "model", "dataset", "id"]
    wide = long.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean")
    derived = {"insertion": wide.get("insertion"), "deletion": wide.get("deletion"), **quantities(wide)}
    frames = [s.rename("value").reset_index().assign(metric=name) for name, s in derived.items() if s is not None]
    values = pd.concat(frames, ignore_index=True).dropna(subset=["value"])
    stats = values.groupby(["model", "dataset", "metric", "method"])["value"].agg(["mean", "sem", "count"])
    order = [m for m in ("insertion", "deletion", "dauc", "delta_road") if m in set(values["metric"])]
    table = stats.apply(lambda r: f"{r['mean']:.3f} ± {r['sem']:.3f}", axis=1).unstack("metric")[order]
    table = table.reset_index()
    print(markdown_table(table))
    paired = paired_differences(values, args.reference)
    out = Path(args.out or args.run_dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    paired.to_csv(out / "paired_delta.csv", index=False)
    cells = paired.assign(cell=[f"{r.diff:+.3f} ± {r.sem:.3f} ({r.higher:.0%} higher)"
                                for r in paired.itertuples()])
    print(f"\npaired {args.reference} − method (mean ± s.e.m., n per cell = images both scored)\n")
    print(markdown_table(cells.pivot_table(index="method", columns="metric", values="cell",
                                           aggfunc="first")[order].reset_index()))
    print(f"\nwrote {out / 'paired_delta.csv'}")


if __name__ == "__main__":
    main()
