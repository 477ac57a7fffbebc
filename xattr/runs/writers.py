"""The result files of a run folder (per_sample.csv, curves.npz, maps.npz, summary.csv/.md, the overview
figure) and the one markdown-table writer (summary.md here, report.md / paired.md in ``xattr report``)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from xattr.errors import XattrError
from xattr.runs.chunks import Results
from xattr.runs.folder import PER_SAMPLE, SUMMARY
from xattr.utils.figures import agg_figure
from xattr.utils.io import atomic_save_dataframe, atomic_save_npz, atomic_savefig, atomic_write_text

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ["method", "model", "dataset", "metric", "mean", "std", "n"]
#: what ``maps.npz`` can store (``maps_dtype``); an integer type would round every map in [0,1] to zeros
MAPS_DTYPES = ("float32", "float16")


def markdown_table(frame, precision: int | None = None) -> str:
    """``frame`` as a markdown table; float cells with ``precision`` decimals when given, else ``str``."""
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in frame.itertuples(index=False):
        cells = [f"{v:.{precision}f}" if precision is not None and isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def per_sample_frame(results: Results, columns: dict[str, str]):
    """One row per sample and value name: ``id``, ``columns`` (per_sample column → sample entry), ``metric``,
    ``value``; one block per sample, names in chunk order (metrics in config order)."""
    import pandas as pd

    header = ["id", *columns, "metric", "value"]
    samples = {"id": results.ids, **{column: results.samples[key] for column, key in columns.items()}}
    frames = [pd.DataFrame({**samples, "metric": name, "value": value}) for name, value in results.values.items()]
    if not frames:
        return pd.DataFrame(columns=header)
    frame = pd.concat(frames, ignore_index=True)
    order = {metric: i for i, metric in enumerate(frame["metric"].unique())}
    position = {sample: i for i, sample in enumerate(results.ids)}
    frame = frame.assign(_s=frame["id"].map(position), _m=frame["metric"].map(order))
    return frame.sort_values(["_s", "_m"], kind="stable").drop(columns=["_s", "_m"])[header]


def write_per_sample(run_dir: Path, frame) -> None:
    atomic_save_dataframe(run_dir / PER_SAMPLE, frame)


def write_curves(run_dir: Path, results: Results) -> None:
    """``curves.npz``: ``ids`` and every ``[N,T]`` curve; nothing when no metric returned curves."""
    if results.curves:
        atomic_save_npz(run_dir / "curves.npz", {"ids": results.ids, **results.curves})


def write_maps(run_dir: Path, maps: np.ndarray, ids: np.ndarray, fields: dict[str, np.ndarray],
               dtype: str = "float32") -> None:
    """``maps.npz``: ``maps`` as ``dtype`` (one of :data:`MAPS_DTYPES`; float16 overflow falls back to float32),
    ``ids``, ``fields``."""
    if str(dtype) not in MAPS_DTYPES:
        raise XattrError(f"maps_dtype={dtype} is not an option; use {' or '.join(f'maps_dtype={d}' for d in MAPS_DTYPES)}")
    wanted = np.dtype(str(dtype))
    stored = maps
    if wanted == np.float16 and np.abs(maps).max(initial=0.0) >= np.finfo(np.float16).max:
        log.warning("maps exceed the float16 range; storing them as float32")
    else:
        stored = maps.astype(wanted)
    atomic_save_npz(run_dir / "maps.npz", {"maps": stored, "ids": ids, **fields})


def summarise(per_sample, names: dict[str, str]):
    """``summary`` frame: method, model, dataset, metric, mean, std (population), n (finite values)."""
    import pandas as pd

    rows = []
    for metric, values in per_sample.groupby("metric", sort=False)["value"]:
        finite = values[np.isfinite(values)].to_numpy(dtype=np.float64)
        rows.append({**names, "metric": metric,
                     "mean": float(finite.mean()) if finite.size else math.nan,
                     "std": float(finite.std()) if finite.size else math.nan,
                     "n": int(finite.size)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def write_summary(run_dir: Path, summary, names: dict[str, str], description: str) -> None:
    """``summary.csv`` and ``summary.md`` (a title, ``description`` of the run, the table at 4 decimals)."""
    atomic_save_dataframe(run_dir / SUMMARY, summary)
    header = (f"# {names['method']} on {names['model']} / {names['dataset']}\n\n"
              f"{description}; mean and std over samples "
              "(population std, non-finite values skipped; n counts the finite ones).\n\n")
    atomic_write_text(run_dir / "summary.md", header + markdown_table(summary, precision=4))


def overview_figure(images, maps: np.ndarray, captions: list[str], title: str):
    """Two rows: the images (titled by ``captions``), then |map| (summed over channels, per-image
    max-normalised) over a grey copy."""
    n = images.shape[0]
    fig = agg_figure(figsize=(2.0 * n, 4.4))
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        image = images[i].permute(1, 2, 0).clamp(0, 1).numpy()
        heat = np.abs(maps[i].astype(np.float32).sum(axis=0))
        heat = heat / heat.max() if heat.max() > 0 else heat
        axes[0, i].imshow(image)
        axes[0, i].set_title(captions[i], fontsize=7)
        axes[1, i].imshow(image.mean(axis=2), cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(heat, cmap="jet", alpha=0.55, vmin=0, vmax=1)
        for row in (0, 1):
            axes[row, i].axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def write_overview(run_dir: Path, images, maps: np.ndarray, captions: list[str], title: str) -> None:
    """``figures/overview.png`` from :func:`overview_figure`."""
    atomic_savefig(run_dir / "figures" / "overview.png", overview_figure(images, maps, captions, title))
