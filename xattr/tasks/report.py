"""``xattr report RUN_DIR...``: methods × metrics tables from run folders and multirun folders.

Every complete run folder (one with ``DONE``, :func:`xattr.runs.is_complete`) at or below the given
paths is read (:func:`xattr.runs.scan_runs`); each incomplete one (interrupted, failed, killed, running) is
named on stderr, one line from its ``status.json``, and ``strict`` refuses to report while there is one.
``--by`` values come from each run's config as it recorded it (:meth:`xattr.runs.RunFolder.config`).
Rows are (``--by`` keys…, method, model, dataset); columns are metrics; cells are ``mean ± std``. Runs
that share a row (e.g. dataset seeds) are pooled: mean and population std over all their samples (``n``
adds up); runs of a row that scored the same images are refused unless ``pool_runs`` (``--pool``), since
each image would count once per run. The shards of one run (``dataset.shard``/``dataset.num_shards``,
:func:`shard_sets`) are that one run: merged, shards of different configs refused, missing shards named on
stderr (``strict`` refuses). Output: the markdown table on stdout, and ``report.csv`` (long
format, one row per row-key and metric), ``report.md`` and ``report.tex`` in ``--out`` (default: the
first RUN_DIR argument, i.e. next to the runs it summarises).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from xattr.errors import XattrError
from xattr.runs import RunFolder, markdown_table, no_complete_runs, scan_runs
from xattr.runs.folder import why_incomplete
from xattr.utils.io import atomic_save_dataframe, atomic_write_text

NAME_COLUMNS = ["method", "model", "dataset"]
PAPER_DIR = Path(__file__).resolve().parents[1] / "paper"
PAPER_COLUMNS = ["table", "model", "method", "metric", "mean", "std"]


# --------------------------------------------------------------------------- reading


def config_value(config: DictConfig | None, key: str) -> object:
    """``key`` (dotted) of a run's config; ``None`` when absent. Nodes become compact strings."""
    if config is None:
        return None
    value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
        value = str(value).replace(" ", "")
    return value


def load_summaries(run_dirs: Sequence[Path], by: Sequence[str] = ()) -> pd.DataFrame:
    """One row per run and metric: ``by`` columns, method, model, dataset, metric, mean, std, n, run."""
    frames = []
    found_key = dict.fromkeys(by, False)
    for run_dir in run_dirs:
        folder = RunFolder(run_dir)
        summary, config = folder.summary(), folder.config()
        for key in by:
            if key in NAME_COLUMNS:  # method / model / dataset labels are summary.csv columns already
                found_key[key] = True
                continue
            value = config_value(config, key)
            found_key[key] |= value is not None
            summary.insert(0, key, "—" if value is None else value)
        summary["run"] = str(run_dir)
        frames.append(summary)
    missing = [key for key, ok in found_key.items() if not ok]
    if missing:
        raise XattrError(f"--by {missing[0]}: no run has this config key; use a dotted key of the runs' "
                         "config (manifest.json) such as method.beta, seed or dataset.n_samples")
    return pd.concat(frames, ignore_index=True)


def skipped_line(run_dir: Path) -> str:
    """One line naming an incomplete run folder and, from its ``status.json``, why it is not complete."""
    return f"skipped {run_dir}: {why_incomplete(run_dir)}"


def colliding_runs(frame: pd.DataFrame, keys: Sequence[str]) -> list[list[str]]:
    """Runs (``run`` column) that share a row of ``keys`` and scored the same images
    (:meth:`~xattr.runs.RunFolder.images`), one list per such set; runs with unknown images never collide.
    With a ``unit`` column (:func:`shard_sets`), the shards of one run count as that one run: its images are
    the union of theirs (so a complete set of shards collides with the unsharded run of the same images)."""
    collisions = []
    for _, part in frame.groupby(list(keys), sort=False, dropna=False):
        units: dict[str, list[str]] = {}
        for run, unit in dict.fromkeys(zip(part["run"], part["unit"] if "unit" in part else part["run"])):
            units.setdefault(unit, []).append(run)
        by_images: dict[str, list[str]] = {}
        for runs in units.values():
            images = _unit_images(runs)
            if images is not None:
                by_images.setdefault(images, []).append(runs)
        collisions += [[run for runs in sets for run in runs] for sets in by_images.values() if len(sets) > 1]
    return collisions


def _flat(node: object, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        return {key: value for k, v in node.items() for key, value in _flat(v, f"{prefix}{k}.").items()}
    return {prefix[:-1]: node}


def collision_error(collisions: list[list[str]]) -> XattrError:
    """One line: the first set of colliding runs, the config keys they differ in, and the two ways out."""
    runs = collisions[0]
    configs = [_flat(OmegaConf.to_container(RunFolder(run).config() or OmegaConf.create(), resolve=False))
               for run in runs]
    differ = sorted(key for key in set().union(*configs) if len({str(c.get(key)) for c in configs}) > 1)
    how = (f"their configs differ in {', '.join(differ[:4])}{' …' if len(differ) > 4 else ''}: pass --by "
           f"{differ[0]} to keep them apart" if differ else "their configs are the same (re-runs of one job): "
           "report one of them")
    more = f" (and {len(collisions) - 1} more such sets)" if len(collisions) > 1 else ""
    return XattrError(f"runs {', '.join(runs)} scored the same images and share a row{more}; pooling them would "
                      f"count each image {len(runs)} times; {how}, or pass --pool to pool them anyway")


# --------------------------------------------------------------------------- sharded runs

#: config keys in which the shards of one run may differ (they do not change a sample's result, or only by
#: the floating point of another device): the shard itself, where it ran, how it loaded, what it wrote besides the scores
SHARD_FREE = ("dataset.shard", "device", "model.device", "resume", "n_figure", "save_maps", "maps_dtype")
SHARD_FREE_PREFIXES = ("paths.", "hydra.", "loader.")


def shard_of(run: str | Path) -> tuple[int, int]:
    """``(dataset.shard, dataset.num_shards)`` of a run folder's config; ``(0, 1)`` for an unsharded run."""
    config = RunFolder(run).config()
    shard, num_shards = config_value(config, "dataset.shard"), config_value(config, "dataset.num_shards")
    return (int(shard) if isinstance(shard, int) else 0, int(num_shards) if isinstance(num_shards, int) else 1)


def _shard_identity(run: str) -> dict[str, object]:
    """A shard's flat config less :data:`SHARD_FREE`: equal for the shards of one run."""
    config = RunFolder(run).config() or OmegaConf.create()
    flat = _flat(OmegaConf.to_container(config, resolve=False))
    return {key: value for key, value in flat.items()
            if key not in SHARD_FREE and not key.startswith(SHARD_FREE_PREFIXES)}


def shard_sets(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Group the sharded runs (``dataset.num_shards > 1``) of each row into sets, one per config (less
    :data:`SHARD_FREE`): each set is one run. Returns ``unit`` (run folder → the name of the run it is part
    of; an unsharded run is its own) and one stderr line per set that lacks shards.

    Raises (one line) when one row holds shards of different configs and they do not each make up
    whole sets (e.g. shards 0, 1 with ``method.beta=1`` and shard 2 with ``method.beta=2``), naming the
    folders and the keys they differ in; and when one set holds a shard twice (same images: ``--pool``)."""
    unit = {run: run for run in dict.fromkeys(frame["run"])}
    missing_lines: list[str] = []
    for _, part in frame.groupby(list(keys), sort=False, dropna=False):
        sets: dict[tuple[int, str], list[tuple[int, str]]] = {}
        identities: dict[str, dict] = {}
        for run in dict.fromkeys(part["run"]):
            shard, num_shards = shard_of(run)
            if num_shards <= 1:
                continue
            identity = _shard_identity(run)
            key = json.dumps(identity, sort_keys=True, default=str)
            identities[key] = identity
            sets.setdefault((num_shards, key), []).append((shard, run))
        incomplete = [(n, key) for (n, key), members in sets.items() if {s for s, _ in members} != set(range(n))]
        for num_shards in {n for n, _ in sets}:
            kinds = [key for n, key in sets if n == num_shards]
            if len(kinds) > 1 and any((num_shards, key) in incomplete for key in kinds):
                runs = [run for key in kinds for _, run in sorted(sets[(num_shards, key)])]
                configs = [identities[key] for key in kinds]
                differ = sorted(k for k in set().union(*configs) if len({str(c.get(k)) for c in configs}) > 1)
                raise XattrError(
                    f"shards {', '.join(runs)} (dataset.num_shards={num_shards}) share a row but come from "
                    f"different configs: they differ in {', '.join(differ[:4])}{' …' if len(differ) > 4 else ''}; "
                    f"merge only shards of one config (rerun the odd shards), or pass --by {differ[0]} to keep "
                    "them apart")
        for (num_shards, _), members in sets.items():
            members.sort()
            runs = [run for _, run in members]
            shards = [s for s, _ in members]
            twice = sorted({s for s in shards if shards.count(s) > 1})
            if twice:
                doubled = [run for s, run in members if s == twice[0]]
                raise XattrError(
                    f"runs {', '.join(doubled)} are the same shard (dataset.shard={twice[0]} of "
                    f"dataset.num_shards={num_shards}) of one config: merging them would count its images twice; "
                    "report one of them")
            name = f"{runs[0]} [shards of {num_shards}]"
            for run in runs:
                unit[run] = name
            absent = sorted(set(range(num_shards)) - set(shards))
            if absent:
                missing_lines.append(
                    f"incomplete shards: {', '.join(runs)} hold dataset.shard={','.join(map(str, shards))} of "
                    f"dataset.num_shards={num_shards}; missing dataset.shard={','.join(map(str, absent))} "
                    f"(run it with the same overrides, or resume its folder); reporting {len(shards)} of "
                    f"{num_shards} shards")
    return unit, missing_lines


def _unit_images(runs: Sequence[str]) -> str | None:
    """:meth:`RunFolder.images` of a whole run, its shards merged: the dataset config less shard keys and
    the union of the shards' selections; ``None`` when unknown."""
    datasets, selection = [], []
    for run in runs:
        recorded = RunFolder(run).read_manifest()
        if recorded is None or "dataset" not in recorded or recorded.get("selection") is None:
            return RunFolder(run).images() if len(runs) == 1 else None
        dataset = {k: v for k, v in recorded["dataset"].items() if k not in ("shard", "num_shards")}
        datasets.append(json.dumps(dataset, sort_keys=True, default=str))
        selection += list(recorded["selection"])
    if len(set(datasets)) != 1:
        return None
    return json.dumps([json.loads(datasets[0]), sorted(selection)], sort_keys=True)


def pool(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Combine runs sharing ``keys``: n-weighted mean, pooled population std, summed n, run count."""
    rows = []
    for group, part in frame.groupby(list(keys), sort=False, dropna=False):
        n = part["n"].to_numpy(dtype=np.float64)
        mean = part["mean"].to_numpy(dtype=np.float64)
        std = np.nan_to_num(part["std"].to_numpy(dtype=np.float64))
        ok = (n > 0) & np.isfinite(mean)
        total = n[ok].sum()
        if total > 0:
            pooled_mean = float((n[ok] * mean[ok]).sum() / total)
            second = float((n[ok] * (std[ok] ** 2 + mean[ok] ** 2)).sum() / total)
            pooled_std = math.sqrt(max(second - pooled_mean**2, 0.0))
        else:
            pooled_mean = pooled_std = math.nan
        rows.append({**dict(zip(keys, group if isinstance(group, tuple) else (group,))),
                     "mean": pooled_mean, "std": pooled_std, "n": int(total),
                     "n_runs": part["unit"].nunique() if "unit" in part else len(part)})
    return pd.DataFrame(rows)


def load_paper(sources: Sequence[str], table: str | None = None) -> pd.DataFrame:
    """Paper values: CSV files (or bare names of ``xattr/paper/<name>.csv``) with columns
    table, model, method, metric, mean, std; optionally only rows of ``table``."""
    frames = []
    for source in sources:
        path = Path(source)
        if not path.is_file() and (PAPER_DIR / f"{source}.csv").is_file():
            path = PAPER_DIR / f"{source}.csv"
        if not path.is_file():
            known = sorted(p.stem for p in PAPER_DIR.glob("*.csv")) if PAPER_DIR.is_dir() else []
            raise XattrError(f"paper table {source} not found; pass a CSV path or one of: "
                             f"{', '.join(known) if known else '(no files in xattr/paper/)'}")
        frame = pd.read_csv(path)
        absent = [c for c in PAPER_COLUMNS if c not in frame.columns]
        if absent:
            raise XattrError(f"paper CSV {path} lacks columns {', '.join(absent)}; "
                             f"expected {','.join(PAPER_COLUMNS)}")
        frames.append(frame[PAPER_COLUMNS])
    paper = pd.concat(frames, ignore_index=True)
    if table is not None:
        paper = paper[paper["table"].astype(str) == str(table)]
        if paper.empty:
            raise XattrError(f"--paper-table {table}: no rows with that table name in the paper CSVs")
    return paper.drop_duplicates(["model", "method", "metric"], keep="first").rename(
        columns={"table": "paper_table", "mean": "paper_mean", "std": "paper_std"})


# --------------------------------------------------------------------------- formatting


def _fmt(value: float, precision: int) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{precision}f}"


def _cell(mean: float, std: float, precision: int) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.{precision}f} ± {_fmt(std, precision)}" if math.isfinite(std) else f"{mean:.{precision}f}"


def wide_table(long: pd.DataFrame, row_keys: Sequence[str], precision: int = 3) -> pd.DataFrame:
    """Rows ``row_keys``, one column per metric (``mean ± std``), plus ``<metric> (paper)`` columns."""
    metrics = list(dict.fromkeys(long["metric"]))
    has_paper = "paper_mean" in long.columns
    rows = []
    for group, part in long.groupby(list(row_keys), sort=False, dropna=False):
        row = dict(zip(row_keys, group if isinstance(group, tuple) else (group,)))
        by_metric = {m: r for m, r in zip(part["metric"], part.itertuples(index=False))}
        for metric in metrics:
            record = by_metric.get(metric)
            row[metric] = _cell(record.mean, record.std, precision) if record is not None else "—"
            if has_paper and long.loc[long["metric"] == metric, "paper_mean"].notna().any():
                paper = None if record is None else record.paper_mean
                paper_std = None if record is None else record.paper_std
                row[f"{metric} (paper)"] = ("—" if paper is None or not math.isfinite(paper)
                                            else _cell(float(paper), float(paper_std) if paper_std is not None
                                                       else math.nan, precision))
        rows.append(row)
    return pd.DataFrame(rows)


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
          "±": r"$\pm$", "—": "--", "·": ","}


def _latex_escape(text: object) -> str:
    return "".join(_LATEX.get(char, char) for char in str(text))


def to_latex(frame: pd.DataFrame, caption: str) -> str:
    columns = list(frame.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{" + "l" * len(columns) + "}", r"\toprule",
             " & ".join(_latex_escape(c) for c in columns) + r" \\", r"\midrule"]
    for row in frame.itertuples(index=False):
        lines.append(" & ".join(_latex_escape(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + _latex_escape(caption) + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the command


def report(run_dirs: Sequence[str | Path], by: Sequence[str] = (), out: str | Path | None = None,
           paper: Sequence[str] = (), paper_table: str | None = None, difficulty: bool = False,
           n_bins: int = 20, precision: int = 3, paired: str | None = None, echo: bool = True,
           strict: bool = False, pool_runs: bool = False) -> pd.DataFrame:
    """Build the report; returns the long table (what ``report.csv`` holds). Incomplete run folders are named
    on stderr (``strict``: then refused); runs of one row on the same images are refused unless ``pool_runs``."""
    by = list(dict.fromkeys(by))
    runs, skipped = scan_runs(run_dirs)
    for run_dir in skipped:
        sys.stderr.write(skipped_line(run_dir) + "\n")
    if strict and skipped:
        raise XattrError(f"--strict: {len(skipped)} run folder{'s' if len(skipped) != 1 else ''} not complete "
                         "(named above); resume or remove them, or leave out --strict")
    if not runs:
        raise no_complete_runs(run_dirs)
    summaries = load_summaries(runs, by)
    keys = [k for k in by if k not in NAME_COLUMNS] + NAME_COLUMNS
    unit, missing_shards = shard_sets(summaries, keys)  # the shards of one run are that one run
    for line in missing_shards:
        sys.stderr.write(line + "\n")
    if strict and missing_shards:
        raise XattrError(f"--strict: {len(missing_shards)} sharded run{'s lack' if len(missing_shards) != 1 else ' lacks'} "
                         "shards (named above); run the missing shards, or leave out --strict")
    summaries["unit"] = summaries["run"].map(unit)
    collisions = [] if pool_runs else colliding_runs(summaries, keys)
    if collisions:
        raise collision_error(collisions)
    long = pool(summaries, [*keys, "metric"])
    n_units, n_shards = len(set(unit.values())), sum(1 for run, name in unit.items() if name != run)
    if paper:
        long = long.merge(load_paper(paper, paper_table), on=["model", "method", "metric"], how="left")
    # model / dataset columns only when they vary; otherwise they go into the caption
    constant = [k for k in ("model", "dataset") if k not in by and long[k].nunique() == 1]
    row_keys = [k for k in keys if k not in constant]
    table = wide_table(long, row_keys, precision)
    caption = (" · ".join(f"{k} {long[k].iloc[0]}" for k in constant) + "; " if constant else "") + \
        f"mean ± std over samples ({n_units} run{'s' if n_units != 1 else ''}" + \
        (f"; {n_shards} of them shard folders, merged)" if n_shards else ")")
    markdown = f"{caption}\n\n{markdown_table(table)}"

    out_dir = Path(out) if out is not None else Path(run_dirs[0])
    atomic_save_dataframe(out_dir / "report.csv", long)
    atomic_write_text(out_dir / "report.md", markdown)
    atomic_write_text(out_dir / "report.tex", to_latex(table, caption))
    if echo:
        print(markdown, end="")
        print(f"\nwrote {out_dir / 'report.csv'}, report.md, report.tex")
    if paired is not None:
        differences = paired_differences(per_sample_frame(runs, by), paired)
        atomic_save_dataframe(out_dir / "paired.csv", differences)
        paired_md = (f"paired differences {paired} − method on the same images (mean ± standard error; "
                     f"share of images where {paired} is higher / lower)\n\n"
                     + (markdown_table(paired_table(differences, precision)) if len(differences)
                        else "no other method on the same images\n"))
        atomic_write_text(out_dir / "paired.md", paired_md)
        if echo:
            print(f"\n{paired_md}", end="")
            print(f"\nwrote {out_dir / 'paired.csv'}, paired.md")
    if difficulty:
        breakdown = difficulty_report(runs, by, out_dir / "difficulty", n_bins)
        if echo:
            print("\ndifficulty-aware breakdown (samples binned by clean confidence):\n")
            print(markdown_table(breakdown.round(precision)), end="")
    return long


def per_sample_frame(runs: Sequence[Path], by: Sequence[str] = ()) -> pd.DataFrame:
    """All runs' ``per_sample.csv`` with method, model, dataset columns (``--by`` values are appended to
    the method label, e.g. ``ib[method.beta=10]``, so sweeps stay apart)."""
    frames = []
    for run_dir in runs:
        folder = RunFolder(run_dir)
        frame = folder.per_sample()
        if frame is None:
            continue
        names, config = folder.summary(nrows=1), folder.config()
        label = str(names["method"].iloc[0]) if len(names) else "method"
        extra = [f"{key}={config_value(config, key)}" for key in by if key not in NAME_COLUMNS]
        frame["method"] = f"{label}[{','.join(extra)}]" if extra else label
        for key in ("model", "dataset"):
            frame[key] = str(names[key].iloc[0]) if len(names) else key
        frames.append(frame)
    if not frames:
        raise XattrError("--difficulty needs per_sample.csv in the run folders; none was found")
    return pd.concat(frames, ignore_index=True)


def paired_differences(per_sample: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per metric and method: ``reference − method`` over the images both scored (matched by ``id``).

    Columns: model, dataset, metric, method, n, diff (mean), sem (standard error), higher, lower (share of
    images where the reference's value is higher / lower). Paired differences cancel the per-image spread
    that dominates the ± of a plain table.
    """
    if reference not in set(per_sample["method"]):
        raise XattrError(f"--paired {reference}: no such method in these runs; use one of "
                         f"{', '.join(sorted(set(per_sample['method'])))}")
    keys = ["model", "dataset", "metric", "id"]
    values = per_sample[[*keys, "method", "value"]].drop_duplicates([*keys, "method"])
    base = values[values["method"] == reference].drop(columns="method").rename(columns={"value": "ref"})
    merged = values[values["method"] != reference].merge(base, on=keys)
    merged["d"] = merged["ref"] - merged["value"]
    rows = []
    for (model, dataset, metric, method), group in merged.groupby(["model", "dataset", "metric", "method"]):
        d = group["d"].astype(float)
        rows.append({"model": model, "dataset": dataset, "metric": metric, "method": method, "n": len(d),
                     "diff": d.mean(), "sem": d.std(ddof=1) / len(d) ** 0.5 if len(d) > 1 else float("nan"),
                     "higher": (d > 0).mean(), "lower": (d < 0).mean()})
    return pd.DataFrame(rows)


def paired_table(differences: pd.DataFrame, precision: int = 3) -> pd.DataFrame:
    """Wide view of :func:`paired_differences`: one row per method, one column per metric."""
    if differences.empty:
        return pd.DataFrame()
    cells = differences.assign(cell=[
        f"{_fmt(r.diff, precision)} ± {_fmt(r.sem, precision)} ({r.higher:.0%} / {r.lower:.0%})"
        for r in differences.itertuples()])
    return cells.pivot_table(index="method", columns="metric", values="cell", aggfunc="first").reset_index()


def difficulty_report(runs: Sequence[Path], by: Sequence[str], out_dir: Path, n_bins: int) -> pd.DataFrame:
    from xattr.tasks.difficulty import difficulty_breakdown

    per_sample = per_sample_frame(runs, by)
    return difficulty_breakdown(per_sample, Path(out_dir), n_bins=n_bins)
