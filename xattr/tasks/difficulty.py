"""Difficulty-aware breakdown (CoIBA, Fig. 4 and 7): bin samples by the model's clean softmax
confidence in the target into ``n_bins`` equal intervals of ``[0,1]`` and average, per bin,

* ``dauc`` = insertion AUC - deletion AUC (Delta-InsDel), and
* ``delta_road`` = ROAD LeRF probability - ROAD MoRF probability (Delta-ROAD, mean over fractions),

wherever those metrics were run. Metric names are matched on the part before the first ``.`` (the run
task writes ``<metric config name>[.<key>]``): ``insertion``/``deletion`` (value or ``.auc``), a ``dauc``
metric's ``.dauc``, and ``road_lerf``/``road_morf`` ``.prob``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xattr.errors import XattrError

GROUP = ["method", "model", "dataset"]
REQUIRED = ["method", "model", "dataset", "id", "target", "confidence", "metric", "value"]


def _pick(wide: pd.DataFrame, base: str, keys: tuple[str, ...]) -> pd.Series | None:
    for key in keys:
        name = base if key == "" else f"{base}.{key}"
        if name in wide.columns:
            return wide[name]
    return None


def quantities(wide: pd.DataFrame) -> dict[str, pd.Series]:
    """Per-sample ``dauc`` and ``delta_road`` from a wide frame (one column per metric name)."""
    out = {}
    ins, dele = _pick(wide, "insertion", ("", "auc")), _pick(wide, "deletion", ("", "auc"))
    if ins is not None and dele is not None:
        out["dauc"] = ins - dele
    elif _pick(wide, "dauc", ("dauc",)) is not None:
        out["dauc"] = _pick(wide, "dauc", ("dauc",))
    lerf, morf = _pick(wide, "road_lerf", ("prob",)), _pick(wide, "road_morf", ("prob",))
    if lerf is not None and morf is not None:
        out["delta_road"] = lerf - morf
    return out


def difficulty_breakdown(per_sample: pd.DataFrame, out_dir: Path, n_bins: int = 20) -> pd.DataFrame:
    """Per-bin means of ``dauc`` / ``delta_road`` for each (method, model, dataset); writes
    ``difficulty.csv`` and ``difficulty.png`` in ``out_dir`` and returns the table (columns: method, model,
    dataset, bin, conf_low, conf_high, n, then one column per available quantity)."""
    missing = [c for c in REQUIRED if c not in per_sample.columns]
    if missing:
        raise XattrError(f"per-sample table lacks columns {missing}; expected {REQUIRED}")
    if int(n_bins) < 1:
        raise XattrError(f"n_bins={n_bins} must be >= 1 (CoIBA uses 20)")
    n_bins = int(n_bins)
    frame = per_sample.copy()
    frame["id"] = frame["id"].astype(str)
    wide = frame.pivot_table(index=GROUP + ["id"], columns="metric", values="value", aggfunc="mean")
    confidence = frame.groupby(GROUP + ["id"])["confidence"].first().reindex(wide.index)
    found = quantities(wide)
    if not found:
        raise XattrError("difficulty breakdown needs insertion+deletion (or dauc) or road_lerf+road_morf results; "
                         f"the runs have metrics {sorted(frame['metric'].unique())[:10]}")
    per_id = pd.DataFrame(found)
    bins = np.clip(np.floor(confidence.to_numpy(dtype=float) * n_bins), 0, n_bins - 1).astype(int)
    per_id["bin"] = bins
    per_id = per_id.reset_index()
    grouped = per_id.groupby(GROUP + ["bin"])
    table = grouped[list(found)].mean()
    table.insert(0, "n", grouped.size())
    table = table.reset_index()
    table.insert(len(GROUP) + 1, "conf_low", table["bin"] / n_bins)
    table.insert(len(GROUP) + 2, "conf_high", (table["bin"] + 1) / n_bins)

    from xattr.utils.io import atomic_save_dataframe

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_dataframe(out_dir / "difficulty.csv", table)
    _plot(table, list(found), n_bins, out_dir / "difficulty.png")
    return table


def _plot(table: pd.DataFrame, names: list[str], n_bins: int, path: Path) -> None:
    from xattr.utils.figures import agg_figure
    from xattr.utils.io import atomic_savefig

    labels = {"dauc": "ΔInsDel (insertion − deletion AUC)", "delta_road": "ΔROAD (LeRF − MoRF)"}
    fig = agg_figure(figsize=(4.6 * len(names), 3.4))
    axes = fig.subplots(1, len(names), squeeze=False)
    several = table[["model", "dataset"]].drop_duplicates().shape[0] > 1
    for ax, name in zip(axes[0], names):
        for key, part in table.groupby(GROUP, sort=False):
            label = f"{key[0]} ({key[1]}, {key[2]})" if several else key[0]
            centres = (part["conf_low"] + part["conf_high"]) / 2
            ax.plot(centres, part[name], marker="o", ms=3, label=label)
        ax.axvspan(0, 0.5, color="tab:red", alpha=0.06)
        ax.axvspan(0.5, 1, color="tab:blue", alpha=0.06)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"confidence in the target ({n_bins} bins)")
        ax.set_ylabel(labels.get(name, name))
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(path, fig)
