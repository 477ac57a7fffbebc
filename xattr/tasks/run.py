"""``xattr run``: attribute a model on a dataset with a method, score the maps, write a run folder.

The loop, per batch of ``batch_size`` samples (a tqdm bar counts images)::

    logits = model(x)                        # clean prediction → confidence of the target
    target = label or argmax(logits)         # cfg.target
    maps = method.attribute(x, target)       # [B,C,H,W] or [B,1,H,W]
    scores = metric(model, x, maps, target, mask=, boxes=, label=, method_factory=)  # per metric

Run folder (Hydra's output dir)::

    .hydra/            composed config, overrides (written by Hydra)
    xattr.log          log of the job (Hydra)
    status.json        state running|failed|complete, samples done, names, timings, error
    partial/           per-batch chunk files while running (removed when the run completes)
    maps.npz           maps [N,C,H,W], ids [N], targets [N], labels [N]
    per_sample.csv     id, label, target, pred, confidence, metric, value (one row per sample and metric)
    curves.npz         [N,T] curves returned by metrics (e.g. insertion.curve), ids
    summary.csv        method, model, dataset, metric, mean, std, n
    summary.md         the same as a markdown table
    figures/overview.png   first n_figure images with |map| overlays
    DONE               written last: the run is complete

Resume: ``xattr run resume=true hydra.run.dir=<folder> <same overrides>`` keeps the finished
batches in ``partial/`` and computes only the missing ones. Each batch is seeded with
``seed + batch_index`` so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from xattr.data import collate
from xattr.errors import XattrError
from xattr.methods.base import AttributionMethod, RunContext
from xattr.utils.io import (
    atomic_save_dataframe,
    atomic_save_npz,
    atomic_savefig,
    atomic_write_json,
    atomic_write_text,
)
from xattr.utils.seed import seed_everything
from xattr.utils.validate import check_maps

log = logging.getLogger(__name__)

PARTIAL = "partial"
DONE = "DONE"
STATUS = "status.json"
MANIFEST = "manifest.json"
_VALUE, _CURVE = "value__", "curve__"


# --------------------------------------------------------------------------- names and folders


def _hydra_runtime() -> Any | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime if HydraConfig.initialized() else None
    except Exception:  # noqa: BLE001 - no Hydra context (plain Python call)
        return None


def run_names(cfg: DictConfig) -> dict[str, str]:
    """``method``/``model``/``dataset`` labels: ``cfg.names.*``, else Hydra's chosen config names,
    else names derived from the configs (plain Python calls)."""
    names = dict(cfg.get("names") or {})
    runtime = _hydra_runtime()
    choices = dict(runtime.choices) if runtime is not None else {}

    def target_name(node: DictConfig | None, strip: str = "") -> str:
        target = str((node or {}).get("_target_", "unknown"))
        last = target.rsplit(".", 1)[-1]
        return last.lower().removesuffix(strip) or last.lower()

    derived = {
        "method": str(cfg.method.get("_target_", "method")).rsplit(".", 2)[-2] if "_target_" in cfg.method
        else "method",
        "model": str(cfg.model.get("name") or target_name(cfg.model)),
        "dataset": target_name(cfg.dataset, "dataset"),
    }
    return {key: str(names.get(key) or choices.get(key) or derived[key]) for key in ("method", "model", "dataset")}


def output_dir(cfg: DictConfig, out_dir: str | Path | None = None) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    runtime = _hydra_runtime()
    if runtime is None:
        raise XattrError("no run folder: call run(cfg, out_dir=...) or start it through `xattr run`")
    return Path(runtime.output_dir)


def is_complete(run_dir: str | Path) -> bool:
    """A run folder is complete when its ``DONE`` marker exists (written after every other file)."""
    return (Path(run_dir) / DONE).is_file()


# --------------------------------------------------------------------------- building blocks


def build_dataset(cfg: DictConfig, dataset_name: str, **overrides):
    dataset = instantiate(cfg.dataset, **overrides)
    if len(dataset) == 0:
        split = overrides.get("split", cfg.dataset.get("split"))
        raise XattrError(
            f"dataset {dataset_name} (split={split}, n_samples={cfg.dataset.get('n_samples')}) has no samples; "
            "point paths.data_dir at a filled folder or raise dataset.n_samples / dataset.length")
    return dataset


def build_model(cfg: DictConfig, names: dict[str, str], dataset, cache_dir: Path, device: str) -> torch.nn.Module:
    """Instantiate ``cfg.model``. Offline models (tiny_cnn / tiny_vit) get the dataset's class count;
    without a checkpoint they come from ``load_trained_classifier`` (trained and cached on first use)."""
    from xattr.models import OFFLINE_MODELS

    model_cfg = cfg.model
    name = model_cfg.get("name")
    overrides: dict[str, Any] = {}
    if name in OFFLINE_MODELS and not model_cfg.get("checkpoint"):
        return _trained_offline_model(model_cfg, names["dataset"], dataset, cache_dir).to(device).eval()
    if name in OFFLINE_MODELS and model_cfg.get("num_classes") is None:
        overrides["num_classes"] = dataset.num_classes
    return instantiate(model_cfg, **overrides).to(device).eval()


def _trained_offline_model(model_cfg: DictConfig, dataset_name: str, dataset, cache_dir: Path) -> torch.nn.Module:
    try:
        from xattr.training import classifier as train_classifier
    except ImportError as error:
        raise XattrError(f"model {model_cfg.name} has no checkpoint and the classifier trainer is missing; "
                         "pass model.checkpoint=PATH") from error
    options = OmegaConf.to_container(model_cfg, resolve=True)
    image_size = int(options.get("image_size") or getattr(dataset, "image_size", 64))
    kwargs = {k: v for k, v in options.items()
              if k not in ("_target_", "name", "pretrained", "checkpoint", "num_classes", "image_size", "device")}
    # load_trained_classifier logs the one line "no trained ... training it now" when it has to train
    return train_classifier.load_trained_classifier(model_cfg.name, dataset_name, image_size, cache_dir, **kwargs)


def build_metrics(cfg: DictConfig) -> dict[str, Callable]:
    """``cfg.metric`` is a multi-select group: ``{name: config}`` (each file has ``# @package metric.<name>``)."""
    node = cfg.get("metric")
    if node is None:
        return {}
    if not isinstance(node, DictConfig):
        raise XattrError(f"metric must be a mapping name → config, got {node!r}; select metrics as metric=[insertion]")
    if "_target_" in node:
        raise XattrError("a metric config is missing its package header; start conf/metric/<name>.yaml with "
                         "`# @package metric.<name>`")
    return {str(name): instantiate(sub) for name, sub in node.items()}


def _overrides_prepare(method: Any) -> bool:
    prepare = getattr(type(method), "prepare", None)
    return prepare is not None and prepare is not AttributionMethod.prepare


def make_method_factory(cfg: DictConfig, context: RunContext,
                        prepared: Any = None) -> Callable[[torch.nn.Module], Any]:
    """``model → a fresh method`` with the run's config, prepared with a throw-away cache folder
    (so statistics of e.g. a randomised model never land in the shared cache). What the run's own
    ``prepared`` method holds independently of the model (DiffIB's denoiser) is handed over, not re-made."""

    def factory(model: torch.nn.Module):
        method = instantiate(cfg.method, model=model)
        if prepared is not None and hasattr(method, "adopt_model_independent"):
            method.adopt_model_independent(prepared)
        if _overrides_prepare(method):
            with tempfile.TemporaryDirectory(prefix="xattr-factory-") as tmp:
                method.prepare(dataclasses.replace(context, cache_dir=Path(tmp), model_name=f"{context.model_name}-factory"))
        return method

    return factory


def _mnim_settings(metric: Any) -> tuple | None:
    """Settings of the MNIM a metric is or runs inside (box/seg ratios), ``None`` for other metrics."""
    from xattr.metrics.mnim import MNIM

    inner = metric if isinstance(metric, MNIM) else getattr(metric, "mnim", None)
    return inner.settings() if isinstance(inner, MNIM) else None


def _reusable_mnim(metric: Any, found: dict[tuple, dict]) -> dict:
    """``mnim_n``/``mnim_reached`` for a ratio metric whose MNIM an earlier metric of the batch already ran."""
    settings = _mnim_settings(metric)
    if settings is None or not hasattr(metric, "mnim") or settings not in found:
        return {}
    return {"mnim_n": found[settings]["n"], "mnim_reached": found[settings]["reached"]}


def _remember_mnim(metric: Any, output: Any, found: dict[tuple, dict]) -> None:
    settings = _mnim_settings(metric)
    if settings is not None and isinstance(output, dict) and "n" in output and "reached" in output:
        found.setdefault(settings, {"n": output["n"], "reached": output["reached"]})


# --------------------------------------------------------------------------- validation


def check_image_size(dataset, model, names: dict[str, str]) -> None:
    image = dataset[0]["image"]
    got, want = tuple(image.shape[-2:]), tuple(model.spec.input_size)
    if got != want:
        raise XattrError(
            f"dataset {names['dataset']} gives {got[0]}x{got[1]} images but model {names['model']} takes "
            f"{want[0]}x{want[1]}; set dataset.image_size={want[0]} (or use a model built for {got[0]}px)")


def check_batch(x: torch.Tensor, ids: list[str], names: dict[str, str]) -> None:
    finite = torch.isfinite(x).flatten(1).all(1)
    if not finite.all():
        bad = [ids[i] for i in torch.nonzero(~finite).flatten().tolist()]
        raise XattrError(f"images {', '.join(bad[:5])} of dataset {names['dataset']} contain NaN or inf values; "
                         "fix or remove them (e.g. lower dataset.n_samples or clean the image folder)")
    low, high = float(x.min()), float(x.max())
    if low < -1e-4 or high > 1 + 1e-4:
        raise XattrError(f"images of dataset {names['dataset']} lie in [{low:.3g}, {high:.3g}], not [0,1]; "
                         "datasets must return unnormalised images (zoo models normalise inside)")


def check_labels(label: torch.Tensor, ids: list[str], num_classes: int, names: dict[str, str]) -> None:
    bad = (label < 0) | (label >= num_classes)
    if bad.any():
        index = torch.nonzero(bad).flatten().tolist()
        values = sorted({int(label[i]) for i in index})
        raise XattrError(
            f"target labels {values} (samples {', '.join(ids[i] for i in index[:3])}) are out of range for model "
            f"{names['model']} with {num_classes} classes; use a model trained on {names['dataset']} "
            f"(e.g. model.num_classes=<its classes> with its checkpoint) or target=pred")


# --------------------------------------------------------------------------- per-batch work


def metric_outputs(name: str, output: Any, batch: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split a metric's output into per-sample values ``{name[.key]: [B]}`` and curves ``{name.key: [B,T]}``."""
    items = output.items() if isinstance(output, dict) else [(None, output)]
    values: dict[str, np.ndarray] = {}
    curves: dict[str, np.ndarray] = {}
    for key, value in items:
        full = name if key is None else f"{name}.{key}"
        array = torch.as_tensor(value).detach().float().cpu().numpy() if not isinstance(value, np.ndarray) \
            else value.astype(np.float32)
        if array.ndim == 1 and array.shape[0] == batch:
            values[full] = array
        elif array.ndim == 2 and array.shape[0] == batch:
            curves[full] = array
        else:
            raise XattrError(f"metric {full} returned shape {tuple(array.shape)} for a batch of {batch}; "
                             "metrics return [B] values or [B,T] curves")
    return values, curves


def _chunk_path(partial: Path, index: int) -> Path:
    return partial / f"batch-{index:05d}.npz"


def _load_chunk(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _fingerprint(cfg: DictConfig, selection: list[int], names: dict[str, str]) -> dict:
    """What must not change between an interrupted run and its resumption."""
    container = OmegaConf.to_container
    return {
        "dataset": container(cfg.dataset, resolve=True),
        "selection": selection,
        "batch_size": int(cfg.batch_size),
        "target": str(cfg.target),
        "seed": int(cfg.seed),
        "names": names,
        "method": container(cfg.method, resolve=True),
        "metric": container(cfg.metric, resolve=True) if cfg.get("metric") is not None else {},
        "model": {k: v for k, v in container(cfg.model, resolve=True).items() if k != "device"},
    }


def _prepare_folder(run_dir: Path, cfg: DictConfig, fingerprint: dict) -> set[int]:
    """Check/initialise ``partial/``; return the indices of batches already finished."""
    partial = run_dir / PARTIAL
    manifest_path = partial / MANIFEST
    resume = bool(cfg.get("resume", False))
    if not resume and (manifest_path.exists() or is_complete(run_dir)):
        raise XattrError(f"run folder {run_dir} already holds results; pass resume=true to continue it "
                         "or choose a new hydra.run.dir")
    if manifest_path.exists():
        import json

        previous = json.loads(manifest_path.read_text())
        changed = [key for key in fingerprint if previous.get(key) != fingerprint[key]]
        if changed:
            raise XattrError(f"cannot resume {run_dir}: {', '.join(changed)} differ from the interrupted run; "
                             "repeat its overrides or start a new hydra.run.dir")
    else:
        partial.mkdir(parents=True, exist_ok=True)
        atomic_write_json(manifest_path, fingerprint)
    finished = set()
    for path in partial.glob("batch-*.npz"):
        finished.add(int(path.stem.split("-")[1]))
    return finished


def _write_status(run_dir: Path, **fields) -> None:
    atomic_write_json(run_dir / STATUS, fields)


# --------------------------------------------------------------------------- outputs


def _markdown_table(frame, precision: int = 4) -> str:
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in frame.itertuples(index=False):
        cells = [f"{v:.{precision}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
    return pd.DataFrame(rows, columns=["method", "model", "dataset", "metric", "mean", "std", "n"])


def overview_figure(images: torch.Tensor, maps: np.ndarray, ids: list[str], targets: np.ndarray,
                    confidence: np.ndarray, title: str):
    """Two rows: the images, then |map| (summed over channels, per-image max-normalised) over a grey copy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = images.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2.0 * n, 4.4), squeeze=False)
    for i in range(n):
        image = images[i].permute(1, 2, 0).clamp(0, 1).numpy()
        heat = np.abs(maps[i].astype(np.float32).sum(axis=0))
        heat = heat / heat.max() if heat.max() > 0 else heat
        axes[0, i].imshow(image)
        axes[0, i].set_title(f"{ids[i][-12:]}\nt={int(targets[i])} p={confidence[i]:.2f}", fontsize=7)
        axes[1, i].imshow(image.mean(axis=2), cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(heat, cmap="jet", alpha=0.55, vmin=0, vmax=1)
        for row in (0, 1):
            axes[row, i].axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def _finish(run_dir: Path, cfg: DictConfig, dataset, names: dict[str, str], n_batches: int, timings: dict) -> None:
    import pandas as pd

    chunks = [_load_chunk(_chunk_path(run_dir / PARTIAL, k)) for k in range(n_batches)]
    ids = np.concatenate([c["ids"] for c in chunks]).astype(str)
    targets = np.concatenate([c["targets"] for c in chunks])
    labels = np.concatenate([c["labels"] for c in chunks])
    preds = np.concatenate([c["preds"] for c in chunks])
    confidence = np.concatenate([c["confidence"] for c in chunks])
    value_keys = [k for k in chunks[0] if k.startswith(_VALUE)]
    curve_keys = [k for k in chunks[0] if k.startswith(_CURVE)]

    frames = []
    for key in value_keys:
        frames.append(pd.DataFrame({"id": ids, "label": labels, "target": targets, "pred": preds,
                                    "confidence": confidence, "metric": key[len(_VALUE):],
                                    "value": np.concatenate([c[key] for c in chunks])}))
    columns = ["id", "label", "target", "pred", "confidence", "metric", "value"]
    per_sample = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    if frames:  # one block per sample, metrics in config order
        order = {metric: i for i, metric in enumerate(per_sample["metric"].unique())}
        position = {sample: i for i, sample in enumerate(ids)}
        per_sample = per_sample.assign(_s=per_sample["id"].map(position), _m=per_sample["metric"].map(order))
        per_sample = per_sample.sort_values(["_s", "_m"], kind="stable").drop(columns=["_s", "_m"])
    atomic_save_dataframe(run_dir / "per_sample.csv", per_sample[columns])

    if curve_keys:
        atomic_save_npz(run_dir / "curves.npz", {"ids": ids, **{k[len(_CURVE):]: np.concatenate([c[k] for c in chunks])
                                                                for k in curve_keys}})
    maps = None
    if cfg.get("save_maps", True) or cfg.get("n_figure", 0):
        maps = np.concatenate([c["maps"] for c in chunks])
    if cfg.get("save_maps", True):
        dtype = np.dtype(str(cfg.get("maps_dtype", "float32")))
        stored = maps
        if dtype == np.float16 and np.abs(maps).max(initial=0.0) >= np.finfo(np.float16).max:
            log.warning("maps exceed the float16 range; storing them as float32")
        else:
            stored = maps.astype(dtype)
        atomic_save_npz(run_dir / "maps.npz", {"maps": stored, "ids": ids, "targets": targets, "labels": labels})

    summary = summarise(per_sample, names)
    atomic_save_dataframe(run_dir / "summary.csv", summary)
    header = (f"# {names['method']} on {names['model']} / {names['dataset']}\n\n"
              f"{len(ids)} samples, target={cfg.target}, seed={cfg.seed}; mean and std over samples "
              "(population std, non-finite values skipped; n counts the finite ones).\n\n")
    atomic_write_text(run_dir / "summary.md", header + _markdown_table(summary))

    n_figure = min(int(cfg.get("n_figure", 0) or 0), len(ids))
    if n_figure > 0:
        import matplotlib.pyplot as plt

        images = torch.stack([dataset[i]["image"] for i in range(n_figure)])
        fig = overview_figure(images, maps[:n_figure], list(ids[:n_figure]), targets, confidence,
                              f"{names['method']} · {names['model']} · {names['dataset']}")
        try:
            atomic_savefig(run_dir / "figures" / "overview.png", fig)
        finally:
            plt.close(fig)
    _write_status(run_dir, state="complete", done=len(ids), total=len(ids), names=names, **timings)
    atomic_write_text(run_dir / DONE, "complete\n")
    shutil.rmtree(run_dir / PARTIAL, ignore_errors=True)
    log.info("run complete: %s\n%s", run_dir, _markdown_table(summary).rstrip())


# --------------------------------------------------------------------------- the task


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> Path:
    """Run the job described by ``cfg`` (``conf/run.yaml``) into ``out_dir`` (default: Hydra's output dir)."""
    run_dir = output_dir(cfg, out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_complete(run_dir) and cfg.get("resume", False):
        log.info("run folder %s is already complete; nothing to do", run_dir)
        return run_dir
    if not cfg.get("resume", False) and ((run_dir / PARTIAL / MANIFEST).exists() or is_complete(run_dir)):
        raise XattrError(f"run folder {run_dir} already holds results; pass resume=true to continue it "
                         "or choose a new hydra.run.dir")
    names = run_names(cfg)
    # record the labels in the saved config (names.* = Hydra's chosen config names unless set), so that
    # `xattr report --by names.method` works; a plain Python call gets its .hydra/config.yaml here too
    with open_dict(cfg):
        cfg.names = names
    atomic_write_text(run_dir / ".hydra" / "config.yaml", OmegaConf.to_yaml(cfg))
    _write_status(run_dir, state="running", names=names)
    try:
        with _terminate_as_exception():
            _run(cfg, run_dir, names)
    except BaseException as error:
        if not is_complete(run_dir):
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            _write_status(run_dir, state="failed", error=f"{type(error).__name__}: {message}", names=names)
        raise
    return run_dir


@contextlib.contextmanager
def _terminate_as_exception():
    """SIGTERM (e.g. a job scheduler's kill) raises SystemExit(143) so the run records state=failed."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(cfg: DictConfig, run_dir: Path, names: dict[str, str]) -> None:
    if str(cfg.target) not in ("label", "pred"):
        raise XattrError(f"target={cfg.target} is not an option; use target=label or target=pred")
    batch_size = int(cfg.batch_size)
    if batch_size <= 0:
        raise XattrError(f"batch_size={batch_size} must be positive")
    device = str(cfg.get("device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise XattrError(f"device={device} but no CUDA device is available; use device=cpu")
    seed = int(cfg.seed)
    seed_everything(seed)
    cache_dir = Path(cfg.paths.cache_dir)

    dataset = build_dataset(cfg, names["dataset"])
    model = build_model(cfg, names, dataset, cache_dir, device)
    check_image_size(dataset, model, names)
    num_classes = int(model.spec.num_classes)

    method = instantiate(cfg.method, model=model)
    context = RunContext(train_dataset=None, cache_dir=cache_dir, model_name=names["model"],
                         dataset_name=names["dataset"], device=device, seed=seed)
    if _overrides_prepare(method):
        context = dataclasses.replace(context, train_dataset=build_dataset(
            cfg, names["dataset"], split=str(cfg.get("train_split", "train")), n_samples=None))
    if hasattr(method, "prepare"):
        method.prepare(context)
    metrics = build_metrics(cfg)
    method_factory = make_method_factory(cfg, context, prepared=method)

    selection = [int(i) for i in getattr(dataset, "indices", range(len(dataset)))]
    n_total = len(dataset)
    n_batches = math.ceil(n_total / batch_size)
    finished = _prepare_folder(run_dir, cfg, _fingerprint(cfg, selection, names))
    finished = {k for k in finished if k < n_batches}
    done = sum(min(batch_size, n_total - k * batch_size) for k in finished)
    if finished:
        log.info("resuming %s: %d of %d samples already done", run_dir, done, n_total)
    _write_status(run_dir, state="running", done=done, total=n_total, names=names)

    from tqdm.auto import tqdm

    timings = {"attribution_seconds": 0.0, "metric_seconds": 0.0, "computed_samples": 0}
    bar = tqdm(total=n_total, initial=done, unit="img", leave=False, disable=None,
               desc=f"{names['method']} · {names['model']} · {names['dataset']}")
    try:
        for index in range(n_batches):
            if index in finished:
                continue
            start, stop = index * batch_size, min((index + 1) * batch_size, n_total)
            batch = collate([dataset[i] for i in range(start, stop)])
            chunk = _run_batch(batch, model, method, metrics, method_factory, cfg, names, num_classes,
                               seed + index, device, timings)
            atomic_save_npz(_chunk_path(run_dir / PARTIAL, index), chunk)
            done += stop - start
            _write_status(run_dir, state="running", done=done, total=n_total, names=names)
            bar.update(stop - start)
    finally:
        bar.close()
    computed = max(timings.pop("computed_samples"), 1)
    timings = {"attribution_seconds_per_image": timings["attribution_seconds"] / computed,
               "metric_seconds_per_image": timings["metric_seconds"] / computed}
    _finish(run_dir, cfg, dataset, names, n_batches, timings)


def _run_batch(batch: dict, model, method, metrics: dict, method_factory, cfg: DictConfig, names: dict,
               num_classes: int, batch_seed: int, device: str, timings: dict) -> dict[str, np.ndarray]:
    ids = batch["id"]
    x = batch["image"].to(device)
    label = batch["label"].to(device)
    check_batch(x, ids, names)
    with torch.no_grad():
        probabilities = torch.softmax(model(x).float(), dim=1)
    pred = probabilities.argmax(dim=1)
    if cfg.target == "label":
        check_labels(label, ids, num_classes, names)
        target = label
    else:
        target = pred
    confidence = probabilities.gather(1, target[:, None])[:, 0]

    seed_everything(batch_seed)
    started = time.perf_counter()
    maps = method.attribute(x, target)
    timings["attribution_seconds"] += time.perf_counter() - started
    check_maps(maps, x)

    ground_truth: dict[str, Any] = {"label": label, "method_factory": method_factory}
    if "mask" in batch:
        ground_truth["mask"] = batch["mask"].to(device)
    if "boxes" in batch:
        ground_truth["boxes"] = batch["boxes"]
    chunk: dict[str, np.ndarray] = {
        "ids": np.asarray(ids, dtype=str), "labels": label.cpu().numpy(), "targets": target.cpu().numpy(),
        "preds": pred.cpu().numpy(), "confidence": confidence.cpu().numpy().astype(np.float32),
        "maps": maps.detach().float().cpu().numpy(),
    }
    started = time.perf_counter()
    found_mnim: dict[tuple, dict] = {}  # MNIM settings -> its n/reached, reused by box/seg ratios
    for name, metric in metrics.items():
        seed_everything(batch_seed)
        reuse = _reusable_mnim(metric, found_mnim)
        output = metric(model, x, maps, target, **ground_truth, **reuse)
        _remember_mnim(metric, output, found_mnim)
        values, curves = metric_outputs(name, output, len(ids))
        chunk.update({_VALUE + k: v for k, v in values.items()})
        chunk.update({_CURVE + k: v for k, v in curves.items()})
    timings["metric_seconds"] += time.perf_counter() - started
    timings["computed_samples"] += len(ids)
    return chunk
