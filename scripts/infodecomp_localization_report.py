"""Info-Decomp Table 3 (word localisation mIoU) from run folders: both threshold protocols, the paper's beside.

    python scripts/infodecomp_localization_report.py outputs/infodecomp/tiny/localization --out DIR

Reads every complete run folder below the paths (``xattr.runs.scan_runs``): its config (method label, the draws —
``method.n_draws``, or DAAM's ``method.steps`` —, ``dataset.words``, ``dataset.split``), the ``miou.curve`` curves
(per-image IoU over ``linspace(0.1, 0.5, 50)``, ``curves.npz``) and, for ``whole_image``, ``mask_mass.area`` (its IoU
at every threshold: min–max normalisation sends the constant map to 0, see ``xattr/methods/whole_image.py``).

Protocols (both in the table, labelled):
- ``oracle`` — the paper's: the single threshold with the best mean IoU over the very images reported;
- ``fair`` — the threshold with the best mean IoU on held-out images, applied to the reported ones: the runs of
  the same configuration on ``dataset.split=val`` when there are any, else two-fold cross-fitting over the
  reported images (halves by a hash of the image id; each half gets the other's threshold).
Cells: mIoU % ± standard error over images (at the chosen threshold), the threshold in brackets.

**Paired**: ``info_cmi`` − each other method on the same (image, word) samples, both at their fair thresholds,
at equal draws (DAAM's steps count as draws, as the paper's columns pair them; the whole-image row pairs with
every draw count): mean ± s.e. of the per-sample difference in IoU points (``localization_paired.csv``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xattr.runs import RunFolder, markdown_table, scan_runs  # noqa: E402
from xattr.tasks.report import config_value  # noqa: E402
from xattr.utils.io import atomic_save_dataframe, atomic_write_text  # noqa: E402

THRESHOLDS = np.linspace(0.1, 0.5, 50)
PAPER_LABELS = {"whole_image": "Whole Image Mask", "daam": "Attention", "info_cmi": "Conditional Mutual Info.",
                "attention_information": "Attention+Information", "info_mi": "Mutual Info. (not in the paper)"}


def run_curves(run: Path, by: list[str] = ()) -> tuple[dict, pd.Series] | None:
    """``(keys, per-image IoU curves indexed by id)`` of one run; ``None`` when it has no ``miou`` curve. ``by``:
    config keys appended to the method label (a sweep over ``method.loc``, ``method.estimator``, ...)."""
    folder = RunFolder(run)
    config = folder.config()
    label = str(config_value(config, "names.method") or "method")
    method = label + "".join(f"[{key}={config_value(config, key)}]" for key in by)
    draws = config_value(config, "method.n_draws") or config_value(config, "method.steps")
    keys = {"method": method, "draws": int(draws) if draws is not None else None,
            "words": str(config_value(config, "dataset.words") or "—"),
            "split": str(config_value(config, "dataset.split") or "test"),
            "model": str(config_value(config, "names.model") or "model"), "run": str(run)}
    if label == "whole_image":
        per_sample = folder.per_sample()
        area = per_sample[per_sample["metric"] == "mask_mass.area"].set_index("id")["value"].astype(float)
        if area.empty:
            return None
        curves = pd.Series({i: np.full(len(THRESHOLDS), a) for i, a in area.items()})
        return keys, curves
    path = run / "curves.npz"
    if not path.is_file():
        return None
    data = np.load(path, allow_pickle=False)
    if "miou.curve" not in data:
        return None
    return keys, pd.Series(dict(zip([str(i) for i in data["ids"]], data["miou.curve"].astype(float))))


def half_of(sample_id: str) -> int:
    return hashlib.blake2b(sample_id.split("-")[2].encode() if sample_id.count("-") >= 2 else sample_id.encode(),
                           digest_size=1).digest()[0] % 2


def choose(curves: np.ndarray) -> int:
    """Index of the threshold with the best mean IoU over the rows of ``curves [N,T]`` (first on ties)."""
    return int(np.argmax(curves.mean(0)))


def evaluate(test: pd.Series, val: pd.Series | None) -> dict:
    """Oracle and fair mIoU of one configuration; ``"fair_values"``: the per-sample IoU at the fair threshold
    (a ``pd.Series`` by sample id, for the paired differences)."""
    ids = list(test.index)
    matrix = np.stack(test.to_numpy())
    oracle = choose(matrix)
    row = {"n": len(ids), "oracle": matrix[:, oracle].mean(), "oracle_se": _se(matrix[:, oracle]),
           "oracle_t": THRESHOLDS[oracle]}
    if val is not None and len(val):
        fair = choose(np.stack(val.to_numpy()))
        values = matrix[:, fair]
        row.update(fair=values.mean(), fair_se=_se(values), fair_t=THRESHOLDS[fair], fair_from="val split",
                   fair_values=pd.Series(values, index=ids))
    else:
        halves = np.array([half_of(i) for i in ids])
        values = np.empty(len(ids))
        chosen = []
        for h in (0, 1):
            other = matrix[halves != h]
            t = choose(other) if len(other) else oracle
            chosen.append(THRESHOLDS[t])
            values[halves == h] = matrix[halves == h, t]
        row.update(fair=values.mean(), fair_se=_se(values), fair_t=float(np.mean(chosen)), fair_from="2-fold",
                   fair_values=pd.Series(values, index=ids))
    return row


def paired_table(table: pd.DataFrame, reference: str = "info_cmi") -> pd.DataFrame:
    """``reference`` − every other method, per (model, words, draws), on the samples both scored (module docstring)."""
    rows = []
    for (model, words), part in table.groupby(["model", "words"], sort=False):
        ours = {r.draws: r.fair_values for r in part[part["method"] == reference].itertuples()}
        for r in part[part["method"] != reference].itertuples():
            for draws, values in ours.items():
                if r.draws is not None and r.draws == r.draws and r.draws != draws:
                    continue
                common = values.index.intersection(r.fair_values.index)
                if len(common) < 2:
                    continue
                d = values[common].to_numpy() - r.fair_values[common].to_numpy()
                rows.append({"model": model, "words": words, "draws": draws, "method": r.method, "n": len(common),
                             "difference": d.mean(), "se": _se(d), "reference better": float(np.mean(d > 0)),
                             "reference worse": float(np.mean(d < 0))})
    paired = pd.DataFrame(rows)
    # one method's rows in the order of their draws (50, 100, 200), whatever order the table came in
    return paired.sort_values(["model", "words", "method", "draws"], kind="stable", ignore_index=True) if rows \
        else paired


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def localization_table(paths: list[str], by: list[str] = ()) -> pd.DataFrame:
    runs, skipped = scan_runs(paths)
    for run in skipped:
        print(f"skipped incomplete run {run}", file=sys.stderr)
    found = [r for r in (run_curves(run, by) for run in runs) if r is not None]
    groups: dict[tuple, dict[str, list[pd.Series]]] = {}
    for keys, curves in found:
        group = (keys["model"], keys["words"], keys["method"], keys["draws"])
        groups.setdefault(group, {}).setdefault(keys["split"], []).append(curves)
    rows = []
    for (model, words, method, draws), splits in sorted(groups.items(), key=_group_order):
        reported = splits.get("test", []) or [s for k, v in splits.items() if k != "val" for s in v]
        if not reported:  # held-out runs only (a sweep whose test half has not run yet): nothing to report
            continue
        test = pd.concat(reported)
        if test.empty:
            continue
        test = test[~test.index.duplicated()]  # re-runs of one configuration: each image once
        val = pd.concat(splits["val"]) if splits.get("val") else None
        rows.append({"model": model, "words": words, "method": method, "draws": draws, **evaluate(test, val)})
    return pd.DataFrame(rows)


def _group_order(item: tuple[tuple, dict]) -> tuple:
    """Sort key of a ``((model, words, method, draws), splits)`` group: names as text, draws as a number (50 before
    100; the draw-less whole image first)."""
    (model, words, method, draws), _ = item
    return str(model), str(words), str(method), -1 if draws is None else int(draws)


def paper_rows(paper_csv: Path) -> pd.DataFrame:
    paper = pd.read_csv(paper_csv)
    return paper[paper["table"] == "table3"]


def render(table: pd.DataFrame, paper: pd.DataFrame, paired: pd.DataFrame | None = None) -> str:
    lines = ["Word localisation mIoU % (± s.e. over images) [threshold]. oracle = the paper's protocol (best single "
             "threshold over the reported images); fair = threshold chosen on held-out images (val split, or "
             "2-fold cross-fitting). The whole-image row is the mask's area.", ""]
    for (model, words), part in table.groupby(["model", "words"], sort=False):
        lines.append(f"**{model}, words={words}** (n = {int(part['n'].max())} samples)")
        lines.append("")
        cells = []
        counts = sorted({int(d) for d in part["draws"] if d is not None and d == d})
        for method, rows in part.groupby("method", sort=False):
            cell = {"method": PAPER_LABELS.get(method, method)}
            for r in rows.sort_values("draws", na_position="first").itertuples():
                drawless = r.draws is None or r.draws != r.draws   # whole image: the same at every draw count
                for label in ([f"{c}" for c in counts] or ["—"]) if drawless else [f"{int(r.draws)}"]:
                    cell[f"oracle @{label}"] = f"{100 * r.oracle:.2f} ± {100 * r.oracle_se:.2f} [{r.oracle_t:.2f}]"
                    cell[f"fair @{label}"] = (f"{100 * r.fair:.2f} ± {100 * r.fair_se:.2f} [{r.fair_t:.2f}, "
                                              f"{r.fair_from}]")
            cells.append(cell)
        lines.append(markdown_table(pd.DataFrame(cells)).rstrip())
        lines.append("")
        pairs = paired[(paired["model"] == model) & (paired["words"] == words)] if paired is not None and len(
            paired) else pd.DataFrame()
        if len(pairs):
            lines.append(f"Paired CMI − method (fair thresholds, same samples), IoU points, words={words}:")
            lines.append("")
            shown = pd.DataFrame({"method": [PAPER_LABELS.get(m, m) for m in pairs["method"]],
                                  "draws": pairs["draws"].astype(int), "n": pairs["n"],
                                  "CMI − method": [f"{100 * d:+.2f} ± {100 * e:.2f}"
                                                   for d, e in zip(pairs["difference"], pairs["se"])],
                                  "CMI better / worse": [f"{b:.0%} / {w:.0%}" for b, w in
                                                         zip(pairs["reference better"], pairs["reference worse"])]})
            lines.append(markdown_table(shown).rstrip())
            lines.append("")
    if len(paper):
        lines.append("**Paper (SD 2.1, COCO-IT, oracle threshold), mIoU %**")
        lines.append("")
        wide = paper.assign(value=100 * paper["mean"]).pivot_table(index="method", columns="metric", values="value",
                                                                   aggfunc="first")
        wide.index = [PAPER_LABELS.get(m, m) for m in wide.index]
        wide = wide[sorted(wide.columns, key=_draw_count)]  # miou_oracle@50, @100, @200: by draws, not as text
        lines.append(markdown_table(wide.round(2).reset_index(names="method")).rstrip())
        lines.append("")
    return "\n".join(lines)


def _draw_count(column: str) -> tuple[int, str]:
    """Sort key of a paper column ``<metric>@<draws>``: the draw count as a number (columns without one last)."""
    _, _, draws = column.rpartition("@")
    return (int(draws), column) if draws.isdigit() else (sys.maxsize, column)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--out", default=None, help="folder for localization.csv / localization.md (default: first path)")
    parser.add_argument("--paper", default=str(ROOT / "xattr" / "paper" / "infodecomp.csv"))
    parser.add_argument("--by", action="append", default=[], metavar="KEY",
                        help="config key appended to the method label (a sweep: method.loc, method.estimator, ...)")
    options = parser.parse_args(argv)
    table = localization_table(options.paths, options.by)
    if table.empty:
        print(f"no complete run with miou curves under {', '.join(options.paths)}; run `make "
              "infodecomp-localization` first", file=sys.stderr)
        return 2
    paper = paper_rows(Path(options.paper)) if Path(options.paper).is_file() else pd.DataFrame()
    paired = paired_table(table)
    text = render(table, paper, paired)
    out = Path(options.out or options.paths[0])
    atomic_save_dataframe(out / "localization.csv", table.drop(columns="fair_values"))
    atomic_save_dataframe(out / "localization_paired.csv", paired)
    atomic_write_text(out / "localization.md", text)
    print(text)
    print(f"wrote {out / 'localization.csv'}, localization_paired.csv, localization.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
