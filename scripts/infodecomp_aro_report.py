"""Info-Decomp Tables 1–2 (relation testing) from run folders, the paper's numbers beside.

    python scripts/infodecomp_aro_report.py outputs/infodecomp/tiny/aro --out DIR

Reads every complete run folder below the paths: ``per_sample.csv`` (``aro.<score>.correct``,
``aro_contrastive.correct``) and ``curves.npz`` (``<score>.pairwise`` ``[N,K−1]``, ``aro.<score>.correct_by_draws``
``[N,T]``). Writes ``aro.md`` / ``aro_table1.csv`` / ``aro_draws.csv`` (and ``aro_table2.csv`` for VG) in ``--out``.

- **Table 1**: accuracy % ± s.e. per score (rows: contrastive, DiffITM, Info) and test (columns). A dataset with
  ``dataset.candidates`` kinds (``shapes_captions``) gets one column per kind — the two-way test of the true caption
  against that perturbation (``pairwise``), as ARO's VG-A/VG-R are two-way — and ``all`` (the true caption above all
  ``K−1``, as COCO/Flickr-Order's five-way test). ARO's datasets get one column each.
- **Paired**: Info − DiffITM (and Info by ``i^s`` − DiffITM) on the same images and draws, mean ± s.e. of the
  per-image difference.
- **Accuracy vs draws**: ``correct`` from the first ``n`` draws (nested prefixes of one set of draws).
- **Table 2**: VG-R per relation and VG-A per attribute pair, those with at least ``--min-cases`` (ARO: 25) items;
  the relation of each item comes from the dataset the run's config names (ARO's files must be present).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xattr.runs import RunFolder, markdown_table, scan_runs  # noqa: E402
from xattr.tasks.report import config_value  # noqa: E402
from xattr.utils.io import atomic_save_dataframe, atomic_write_text  # noqa: E402

SCORES = {"aro_contrastive": "contrastive", "aro.diffitm": "diffitm", "aro.info": "info", "aro.info_s": "info_s"}
LABELS = {"contrastive": "Contrastive (tiny dual encoder / OpenCLIP)", "diffitm": "DiffITM (−MMSE)",
          "info": "Info. (the run's estimator; the paper's i^o)", "info_s": "Info. by i^s (same draws)"}
PAPER_COLUMNS = {"aro_vg_attribution": "VG-A", "aro_vg_relation": "VG-R", "aro_coco_order": "COCO",
                 "aro_flickr_order": "Flickr30k"}


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def _cell(values: np.ndarray) -> str:
    return f"{100 * values.mean():.1f} ± {100 * _se(values):.1f}"


def read_run(run: Path, by: list[str] = ()) -> dict | None:
    folder = RunFolder(run)
    config = folder.config()
    per_sample = folder.per_sample()
    if per_sample is None or not any(per_sample["metric"].astype(str).str.startswith("aro")):
        return None
    curves = dict(np.load(run / "curves.npz", allow_pickle=False)) if (run / "curves.npz").is_file() else {}
    kinds = config_value(config, "dataset.candidates")
    kinds = [k.strip(" '\"") for k in str(kinds).strip("[]").split(",")] if kinds not in (None, "None") else None
    n_draws = config_value(config, "metric.aro.n_draws")
    counts = config_value(config, "metric.aro.draw_counts")
    if n_draws is not None and counts is not None:
        given = [int(c) for c in str(counts).strip("[]").split(",") if c.strip()]
        counts = sorted({min(c, int(n_draws)) for c in given} | {int(n_draws)})
    return {"run": run, "config": config, "per_sample": per_sample, "curves": curves, "kinds": kinds,
            "counts": counts, "dataset": str(config_value(config, "names.dataset")) + "".join(
                f"[{key}={config_value(config, key)}]" for key in by),
            "model": str(config_value(config, "names.model"))}


def values_of(per_sample: pd.DataFrame, metric: str) -> pd.Series:
    part = per_sample[per_sample["metric"] == metric]
    return part.set_index("id")["value"].astype(float)


def table1(runs: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    rows, paired, long = {}, [], []
    for r in runs:
        columns: dict[str, dict[str, np.ndarray]] = {}
        for prefix, score in SCORES.items():
            correct = values_of(r["per_sample"], f"{prefix}.correct")
            if correct.empty:
                continue
            if r["kinds"]:
                pairwise = r["curves"].get(f"{prefix}.pairwise")
                if pairwise is not None:
                    for j, kind in enumerate(r["kinds"]):
                        columns.setdefault(f"{r['dataset']}: {kind}", {})[score] = pairwise[:, j]
                columns.setdefault(f"{r['dataset']}: all", {})[score] = correct.to_numpy()
            else:
                columns.setdefault(r["dataset"], {})[score] = correct.to_numpy()
        for column, by_score in columns.items():
            for score, values in by_score.items():
                rows.setdefault(score, {"score": LABELS[score]})[column] = _cell(values)
                long.append({"model": r["model"], "column": column, "score": score, "n": len(values),
                             "accuracy": values.mean(), "se": _se(values)})
            for info in ("info", "info_s"):
                if info in by_score and "diffitm" in by_score:
                    d = by_score[info] - by_score["diffitm"]
                    paired.append({"column": column, "score": info, "n": len(d), "score − diffitm (points)":
                                   f"{100 * d.mean():+.1f} ± {100 * _se(d):.1f}",
                                   "score only right": f"{np.mean(d > 0):.0%}",
                                   "diffitm only right": f"{np.mean(d < 0):.0%}"})
    order = [s for s in ("contrastive", "diffitm", "info", "info_s") if s in rows]
    return pd.DataFrame([rows[s] for s in order]).fillna("—"), pd.DataFrame(paired), long


def draws_table(runs: list[dict]) -> pd.DataFrame:
    rows = []
    for r in runs:
        for score in ("info", "info_s", "diffitm"):
            curve = r["curves"].get(f"aro.{score}.correct_by_draws")
            if curve is None or r["counts"] is None:
                continue
            for j, n in enumerate(r["counts"]):
                rows.append({"dataset": r["dataset"], "score": score, "draws": n,
                             "accuracy %": round(100 * curve[:, j].mean(), 1), "s.e.": round(100 * _se(curve[:, j]), 1)})
    return pd.DataFrame(rows)


def table2(runs: list[dict], min_cases: int) -> pd.DataFrame:
    """Per relation (VG-R) / attribute pair (VG-A) with >= ``min_cases`` items; needs the ARO files."""
    from hydra.utils import instantiate

    rows = []
    for r in runs:
        key = {"aro_vg_relation": "relation", "aro_vg_attribution": "attribute"}.get(r["dataset"].split("[")[0])
        if key is None:
            continue
        dataset = instantiate(r["config"].dataset, n_samples=None, shard=0, num_shards=1)
        group = {rec.id: rec.extra[key] for rec in dataset.records}
        for prefix, score in SCORES.items():
            correct = values_of(r["per_sample"], f"{prefix}.correct")
            if correct.empty:
                continue
            frame = pd.DataFrame({"correct": correct, key: [group.get(i) for i in correct.index]})
            for name, part in frame.groupby(key):
                if len(part) >= min_cases:
                    rows.append({"dataset": r["dataset"], key: name, "score": score, "n": len(part),
                                 "accuracy %": round(100 * part["correct"].mean(), 1)})
    return pd.DataFrame(rows)


def paper_table(paper_csv: Path) -> pd.DataFrame:
    if not paper_csv.is_file():
        return pd.DataFrame()
    paper = pd.read_csv(paper_csv)
    paper = paper[paper["table"] == "table1"]
    wide = paper.assign(value=(100 * paper["mean"]).round(1)).pivot_table(index="method", columns="metric",
                                                                           values="value", aggfunc="first")
    return wide.rename(columns=PAPER_COLUMNS).reset_index()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--out", default=None)
    parser.add_argument("--paper", default=str(ROOT / "xattr" / "paper" / "infodecomp.csv"))
    parser.add_argument("--by", action="append", default=[], metavar="KEY",
                        help="config key that tells runs of one dataset apart (a sweep: metric.aro.n_draws, "
                             "metric.aro.estimator, metric.aro.loc, ...); repeatable")
    parser.add_argument("--min-cases", type=int, default=25, help="Table 2: ARO's minimum items per relation/attribute")
    options = parser.parse_args(argv)
    found, skipped = scan_runs(options.paths)
    for run in skipped:
        print(f"skipped incomplete run {run}", file=sys.stderr)
    runs = [r for r in (read_run(run, options.by) for run in found) if r is not None]
    if not runs:
        print(f"no complete relation-test run under {', '.join(options.paths)}; run `make infodecomp-aro` first",
              file=sys.stderr)
        return 2
    wide, paired, long = table1(runs)
    draws = draws_table(runs)
    t2 = table2(runs, options.min_cases)
    paper = paper_table(Path(options.paper))
    n = ", ".join(f"{r['dataset']} ({r['model']}): {r['per_sample']['id'].nunique()} images" for r in runs)
    parts = [f"Relation testing accuracy % ± s.e. over images ({n}); ties count as failures.", "",
             markdown_table(wide).rstrip(), "", "Paired Info − DiffITM and Info by i^s − DiffITM (same images, same draws):", "",
             markdown_table(paired).rstrip() if len(paired) else "(no run with both)", ""]
    if len(draws):
        parts += ["Accuracy vs draws (nested prefixes of one set of draws):", "",
                  markdown_table(draws.pivot_table(index=["dataset", "score"], columns="draws",
                                                   values="accuracy %").reset_index()).rstrip(), ""]
    if len(t2):
        parts += [f"Table 2 (>= {options.min_cases} cases):", "", markdown_table(t2).rstrip(), ""]
    if len(paper):
        parts += ["Paper (Table 1, SD 2.1 / OpenCLIP ViT-H-14, accuracy %):", "", markdown_table(paper).rstrip(), ""]
    text = "\n".join(parts)
    out = Path(options.out or options.paths[0])
    atomic_save_dataframe(out / "aro_table1.csv", pd.DataFrame(long))
    atomic_save_dataframe(out / "aro_draws.csv", draws)
    if len(t2):
        atomic_save_dataframe(out / "aro_table2.csv", t2)
    atomic_write_text(out / "aro.md", text)
    print(text)
    print(f"wrote {out / 'aro.md'}, aro_table1.csv, aro_draws.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
