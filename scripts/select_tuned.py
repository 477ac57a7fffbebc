"""Pick a method's tuned values from a tuning sweep's report and write them as ``conf/tuned/<scale>_<method>.yaml``.

The sweep (``make tune-diffib`` / ``make tune-baselines``) ran on the tuning split only; its ``report.csv``
(``xattr report <sweep> --by KEY ...``) has one row per setting and metric. The setting with the lowest mean
of ``--metric`` (default MNIM, lower is better) wins; a tie (equal means to 1e-9) goes to the setting listed
first in ``--prefer`` order, else to the first row. The YAML names the sweep, the command, the date and every
setting's score, so the table presets that load it (``tuning: tiny``) say where their values came from.

    PYTHONPATH=. python scripts/select_tuned.py outputs/diffib/tiny/tune/iba --method iba --scale tiny
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from pathlib import Path

from xattr.utils.io import atomic_write_text


def read_settings(report: Path, metric: str) -> list[tuple[dict[str, str], float, float, int]]:
    """``[(setting {key: value}, mean, std, n)]`` for ``metric``, in the report's order."""
    rows = list(csv.DictReader(report.open()))
    keys = [k for k in (rows[0] if rows else {}) if k.startswith("method.")]
    found = [({k: row[k] for k in keys}, float(row["mean"]), float(row["std"]), int(row["n"]))
             for row in rows if row["metric"] == metric]
    if not found:
        raise SystemExit(f"error: {report} has no rows for metric {metric!r}; run the sweep's `xattr report` first")
    return found


def choose(settings: list, lower_is_better: bool = True) -> tuple[dict[str, str], float, float, int]:
    sign = 1.0 if lower_is_better else -1.0
    best = min(sign * mean for _, mean, _, _ in settings)
    return next(s for s in settings if abs(sign * s[1] - best) <= 1e-9)


def yaml_value(text: str) -> str:
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() and "." not in text and "e" not in text.lower() else str(number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="the sweep folder holding report.csv")
    parser.add_argument("--method", required=True)
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--metric", default="mnim.mnim")
    parser.add_argument("--higher-is-better", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("conf/tuned"))
    args = parser.parse_args()
    settings = read_settings(args.sweep / "report.csv", args.metric)
    best, mean, std, n = choose(settings, lower_is_better=not args.higher_is_better)
    lines = [
        "# @package method",
        f"# {args.method} at SCALE={args.scale}: chosen on the tuning split by the lowest mean {args.metric}"
        if not args.higher_is_better else f"# {args.method}: chosen by the highest mean {args.metric}",
        f"# sweep {args.sweep} ({n} images), written by scripts/select_tuned.py on {dt.date.today().isoformat()}",
        "# (make tune-diffib / make tune-baselines); every setting's mean ± std:",
        *(f"#   {', '.join(f'{k}={v}' for k, v in s.items())}: {m:.4f} ± {sd:.4f}" for s, m, sd, _ in settings),
        *(f"{key.removeprefix('method.')}: {yaml_value(value)}" for key, value in best.items()),
    ]
    path = args.out / f"{args.scale}_{args.method}.yaml"
    atomic_write_text(path, "\n".join(lines) + "\n")
    print(f"{args.method}: {', '.join(f'{k}={v}' for k, v in best.items())} ({args.metric} {mean:.4f} ± {std:.4f}, "
          f"n={n}) -> {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
