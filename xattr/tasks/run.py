"""``xattr run``: attribute a model on a dataset with a method, score the maps, write a run folder.

The loop: build → for each batch of ``batch_size`` samples (a tqdm bar counts images) predict, attribute,
score → finish::

    prediction = kind.predict(model, batch, x)     # classifier: clean forward → pred, confidence; target
    maps = kind.attribute(method, x, prediction)   # classifier: method.attribute(x, target) [B,C,H,W] or [B,1,H,W]
    diagnostics = method.diagnostics()             # optional {name: [B]} → rows "<method>/<name>"
    scores = metric(model, x, maps, target, label=, mask=, boxes=, candidates=, method_factory=, memo=)  # per metric

``kind`` (:mod:`xattr.tasks._kinds`) is the seam for other kinds of model: what ``predict`` returns, how
the method is called, which per-sample entries go into the chunk and ``per_sample.csv``. Today every model
is a classifier (:class:`~xattr.tasks._kinds.ClassifierKind`). ``memo`` is a dict created per batch and
shared by its metrics (e.g. box/seg ratios reuse an MNIM's result, see :mod:`xattr.metrics.mnim`); the
loop knows no particular metric. A method's diagnostics of the last ``attribute`` call
(:meth:`~xattr.methods.base.AttributionMethod.diagnostics`) land in ``per_sample.csv`` and
``summary.csv`` beside the metrics, with metric name ``<method label>/<name>`` (after the metrics).

The run folder (files, chunks, ``DONE``) is :mod:`xattr.runs`; the run holds its lock throughout. Resume:
``xattr run resume=true hydra.run.dir=<folder> <same overrides>`` keeps the finished batches in ``partial/``
and computes only the missing ones; the fingerprint in ``manifest.json`` is compared before the model or
method is built (only the dataset, for its selection). Each batch is seeded with ``seed + batch_index`` so a
resumed run equals an uninterrupted one. Batches are loaded by a ``DataLoader`` over that plan
(:mod:`xattr.data.loader`; ``loader.num_workers``, ``loader.pin_memory``, ``loader.prefetch_factor``). With
``precision=bf16|fp16`` prediction, attribution and metrics run under autocast
(:mod:`xattr.utils.precision`); maps are stored as float32. Sharded runs (``dataset.shard``/``dataset.num_shards``,
docs/run.md): a shard's batches lie on the unsharded run's batch grid and ``batch_index`` is the global
one (:func:`batch_plan`), so a deterministic method's shards equal the unsharded run row for row, and a
stochastic one's too wherever every shard boundary falls on a multiple of ``batch_size``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from xattr.data.loader import batch_loader
from xattr.runs import Results, RunFolder, chunk_arrays, is_complete, markdown_table, summarise
from xattr.runs.provenance import describe_process
from xattr.runs.writers import (
    per_sample_frame,
    write_curves,
    write_maps,
    write_overview,
    write_per_sample,
    write_summary,
)
from xattr.tasks._build import (
    build_dataset,
    build_method,
    build_metrics,
    build_model,
    make_method_factory,
    output_dir,
    run_names,
)
from xattr.tasks._checks import check_batch, check_image_size, check_run_config
from xattr.tasks._kinds import model_kind
from xattr.tasks._outputs import method_diagnostics, metric_outputs
from xattr.utils.precision import apply_float32_precision, autocast
from xattr.utils.seed import seed_everything
from xattr.utils.validate import check_maps

__all__ = ["run", "is_complete", "metric_outputs"]

log = logging.getLogger(__name__)


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> Path:
    """Run the job described by ``cfg`` (``conf/run.yaml``) into ``out_dir`` (default: Hydra's output dir)."""
    check_run_config(cfg)  # the whole config, before the folder is touched
    folder = RunFolder(output_dir(cfg, out_dir))
    with folder.lock():  # a second process on the folder is refused here, before it writes anything
        previous = folder.status()
        if not folder.open(resume=bool(cfg.get("resume", False))):
            log.info("run folder %s is already complete; nothing to do", folder.path)
            return folder.path
        if previous and previous.get("state") == "running":  # no end recorded: killed (we hold the lock now)
            log.warning("run folder %s: the run before this one never recorded an end (%s); resuming it",
                        folder.path, describe_process(previous) or "killed, or an older xattr")
        names = run_names(cfg)
        # record the labels in the config (names.* = Hydra's chosen config names unless set): the manifest's
        # config is what `xattr report --by names.method` reads
        with open_dict(cfg):
            cfg.names = names
        with folder.recording(names):
            _run(cfg, folder, names)
    return folder.path


@dataclass
class _Job:
    """What every batch of a run uses (built once)."""

    model: torch.nn.Module
    kind: Any
    method: Any
    metrics: dict[str, Any]
    method_factory: Any
    names: dict[str, str]
    device: str
    precision: str = "fp32"


def _run(cfg: DictConfig, folder: RunFolder, names: dict[str, str]) -> None:
    # the manifest first (written, or compared with an interrupted run's): only the cheap dataset is built
    # before it, so a resume with other overrides is refused before any model, method or training
    device, seed, cache_dir = str(cfg.get("device", "cpu")), int(cfg.seed), Path(cfg.paths.cache_dir)
    apply_float32_precision(str(cfg.get("precision", "fp32")))  # CUDA's float32: IEEE for fp32, TF32 for tf32
    seed_everything(seed)  # build in this order: it fixes the seeded random state
    dataset = build_dataset(cfg, names["dataset"])
    n_total, batch_size = len(dataset), int(cfg.batch_size)
    # a shard's batches lie on the unsharded run's batch grid (global batch k: samples k*B..k*B+B-1 of the
    # whole selection) and are seeded by the global batch index: see batch_plan
    plan = batch_plan(n_total, batch_size, int(getattr(dataset, "shard_offset", 0)))
    selection = [int(i) for i in getattr(dataset, "indices", range(n_total))]
    finished = folder.start(cfg, selection, names, len(plan))
    folder.write_config(cfg)
    done = sum(len(plan[k][1]) for k in finished)
    if finished:
        log.info("resuming %s: %d of %d samples already done", folder.path, done, n_total)
    folder.write_status(state="running", done=done, total=n_total, names=names)

    model = build_model(cfg, names, dataset, cache_dir, device)
    check_image_size(dataset, model, names)
    method, context = build_method(cfg, model, names, cache_dir, device, seed)
    job = _Job(model, model_kind(model, cfg, names), method, build_metrics(cfg),
               make_method_factory(cfg, context, prepared=method), names, device, str(cfg.get("precision", "fp32")))

    from tqdm.auto import tqdm

    timings = {"attribution_seconds": 0.0, "metric_seconds": 0.0, "computed_samples": 0}
    bar = tqdm(total=n_total, initial=done, unit="img", leave=False, disable=None,
               desc=f"{names['method']} · {names['model']} · {names['dataset']}")
    todo = [(index, global_index, rows) for index, (global_index, rows) in enumerate(plan) if index not in finished]
    batches = batch_loader(dataset, [rows for _, _, rows in todo], device=device, **loader_options(cfg))
    try:
        for (index, global_index, rows), batch in zip(todo, batches):
            chunk = _run_batch(job, batch, seed + global_index, timings)
            folder.save_chunk(index, chunk)
            done += len(rows)
            folder.write_status(state="running", done=done, total=n_total, names=names)
            bar.update(len(rows))
    finally:
        bar.close()
    computed = max(timings.pop("computed_samples"), 1)
    timings = {"attribution_seconds_per_image": timings["attribution_seconds"] / computed,
               "metric_seconds_per_image": timings["metric_seconds"] / computed}
    _finish(folder, cfg, dataset, job.kind, names, len(plan), timings)


def loader_options(cfg: DictConfig) -> dict:
    """``cfg.loader`` (``conf/run.yaml``) as keywords of :func:`xattr.data.loader.batch_loader`, whose defaults
    stand for keys a hand-made config leaves out."""
    return OmegaConf.to_container(cfg.loader, resolve=True) if cfg.get("loader") else {}


def batch_plan(n_total: int, batch_size: int, offset: int = 0) -> list[tuple[int, range]]:
    """``(global batch index, local rows)`` for the ``n_total`` samples of a shard that starts at position
    ``offset`` of the whole selection: batches follow the unsharded run's grid (global batch ``k`` holds
    positions ``k*batch_size`` … ``k*batch_size+batch_size-1``), so a shard boundary inside a global batch
    splits that batch in two. Unsharded (``offset=0``): ``[(0, range(0, B)), (1, range(B, 2B)), …]``."""
    plan = []
    start = 0
    while start < n_total:
        index = (offset + start) // batch_size
        stop = min((index + 1) * batch_size - offset, n_total)
        plan.append((index, range(start, stop)))
        start = stop
    return plan


def _run_batch(job: _Job, batch: dict, batch_seed: int, timings: dict) -> dict[str, np.ndarray]:
    """Predict, attribute, score one batch; returns its chunk."""
    ids = batch["id"]
    x = batch["image"].to(job.device, non_blocking=True)
    check_batch(x, ids, job.names)
    with autocast(job.device, job.precision):
        prediction = job.kind.predict(job.model, batch, x)

    seed_everything(batch_seed)
    started = time.perf_counter()
    with autocast(job.device, job.precision):
        maps = job.kind.attribute(job.method, x, prediction).float()
    timings["attribution_seconds"] += time.perf_counter() - started
    check_maps(maps, x)
    diagnostics = method_diagnostics(job.method, job.names["method"], len(ids))

    started = time.perf_counter()
    values, curves = _score(job, batch, x, maps, prediction, batch_seed)
    timings["metric_seconds"] += time.perf_counter() - started
    timings["computed_samples"] += len(ids)
    return chunk_arrays(ids, prediction.samples, maps.detach().float().cpu().numpy(), {**values, **diagnostics},
                        curves)


def _score(job: _Job, batch: dict, x: torch.Tensor, maps: torch.Tensor, prediction,
           batch_seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every metric on the batch (each seeded alike); their ``[B]`` values and ``[B,T]`` curves by name."""
    # memo: shared by the batch's metrics (e.g. box/seg ratios reuse an MNIM's result)
    ground_truth = {**prediction.ground_truth, "method_factory": job.method_factory, "memo": {}}
    if "mask" in batch:
        ground_truth["mask"] = batch["mask"].to(job.device)
    if "boxes" in batch:
        ground_truth["boxes"] = batch["boxes"]
    if "candidates" in batch:  # relation tests (ARO, shapes_captions): each sample's captions, the true one first
        ground_truth["candidates"] = batch["candidates"]
    values: dict[str, np.ndarray] = {}
    curves: dict[str, np.ndarray] = {}
    for name, metric in job.metrics.items():
        seed_everything(batch_seed)
        with autocast(job.device, job.precision):
            output = metric(job.model, x, maps, prediction.target, **ground_truth)
        metric_values, metric_curves = metric_outputs(name, output, x.shape[0])
        values.update(metric_values)
        curves.update(metric_curves)
    return values, curves


def _finish(folder: RunFolder, cfg: DictConfig, dataset, kind, names: dict[str, str], n_batches: int,
            timings: dict) -> None:
    """Merge the chunks into the result files, then mark the folder complete."""
    results = Results.from_chunks(folder.load_chunks(n_batches))
    per_sample = per_sample_frame(results, kind.sample_columns)
    write_per_sample(folder.path, per_sample)
    write_curves(folder.path, results)
    n_figure = min(int(cfg.get("n_figure", 0) or 0), len(results.ids))
    maps = results.maps() if cfg.get("save_maps", True) or n_figure else None
    if cfg.get("save_maps", True):
        write_maps(folder.path, maps, results.ids, {key: results.samples[key] for key in kind.maps_fields},
                   cfg.get("maps_dtype", "float32"))
    summary = summarise(per_sample, names)
    write_summary(folder.path, summary, names, f"{len(results.ids)} samples, {kind.describe()}, seed={cfg.seed}")
    if n_figure > 0:
        images = torch.stack([dataset[i]["image"] for i in range(n_figure)])
        captions = [f"{results.ids[i][-12:]}\n{kind.caption(results.samples, i)}" for i in range(n_figure)]
        write_overview(folder.path, images, maps[:n_figure], captions,
                       f"{names['method']} · {names['model']} · {names['dataset']}")
    folder.complete(done=len(results.ids), total=len(results.ids), names=names, **timings)
    log.info("run complete: %s\n%s", folder.path, markdown_table(summary, precision=4).rstrip())
