"""Building blocks of the run task: labels, the run folder's path, dataset, model, method, metrics.

Each builds one thing from the composed config (``conf/run.yaml``); :mod:`xattr.tasks.run` calls them
in a fixed order (the order matters for the seeded random state).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from xattr.errors import XattrError
from xattr.methods.base import AttributionMethod, RunContext

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

    return {key: str(names.get(key) or choices.get(key) or node_label(key, cfg.get(key)))
            for key in ("method", "model", "dataset")}


def node_label(group: str, node) -> str:
    """The label a config node of ``group`` gets when no name is chosen: a model's (or task's) ``name``, else its
    target's last part; a method's module (``xattr.methods.saliency.Saliency`` → ``saliency``); a dataset's class
    less ``Dataset`` (``ShapesDataset`` → ``shapes``)."""
    node = node or {}
    target = str(node.get("_target_", "unknown"))
    last = target.rsplit(".", 1)[-1]
    if group in ("model", "task"):
        return str(node.get("name") or last.lower())
    if group == "method":
        return target.rsplit(".", 2)[-2] if "_target_" in node and target.count(".") >= 2 else "method"
    if group == "dataset":
        return last.lower().removesuffix("dataset") or last.lower()
    return last.lower()


def output_dir(cfg: DictConfig, out_dir: str | Path | None = None) -> Path:
    """The run folder: ``out_dir`` when given, else Hydra's output dir."""
    if out_dir is not None:
        return Path(out_dir)
    runtime = _hydra_runtime()
    if runtime is None:
        raise XattrError("no run folder: call run(cfg, out_dir=...) or start it through `xattr run`")
    return Path(runtime.output_dir)


# --------------------------------------------------------------------------- model, dataset, method, metrics


def build_dataset(cfg: DictConfig, dataset_name: str, **overrides):
    """``cfg.dataset`` (with ``overrides``, e.g. the training split); refuses an empty one."""
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
    if str(model_cfg.get("_target_", "")).endswith("build_text_to_image_model"):
        return _text_to_image_model(cfg, names, cache_dir, device)
    overrides: dict[str, Any] = {}
    if name in OFFLINE_MODELS and not model_cfg.get("checkpoint"):
        return _trained_offline_model(model_cfg, names["dataset"], dataset, cache_dir, device).to(device).eval()
    if name in OFFLINE_MODELS and model_cfg.get("num_classes") is None:
        overrides["num_classes"] = dataset.num_classes
    return instantiate(model_cfg, **overrides).to(device).eval()


def _text_to_image_model(cfg: DictConfig, names: dict[str, str], cache_dir: Path, device: str) -> torch.nn.Module:
    """A text-to-image backbone built on ``device`` (half-precision weights load there directly). ``tiny_t2i``
    without ``model.path`` is the cached pipeline folder for the run's dataset, trained on first use
    (``xattr train task=t2i``; the hyper-parameters of ``conf/task/t2i.yaml``)."""
    overrides: dict[str, Any] = {"device": device}
    if cfg.model.get("name") == "tiny_t2i" and not cfg.model.get("path"):
        from xattr.training.text_to_image import load_or_train_t2i

        train = build_dataset(cfg, names["dataset"], split=str(cfg.get("train_split", "train")), n_samples=None)
        size = int(getattr(train, "image_size", 32))
        overrides["path"] = str(load_or_train_t2i(train, cache_dir, names["dataset"], size,
                                                  seed=int(cfg.seed), device=device))
    return instantiate(cfg.model, **overrides).eval()


def _trained_offline_model(model_cfg: DictConfig, dataset_name: str, dataset, cache_dir: Path,
                           device: str = "cpu") -> torch.nn.Module:
    from xattr.training.classifier import load_trained_classifier

    options = OmegaConf.to_container(model_cfg, resolve=True)
    image_size = int(options.get("image_size") or getattr(dataset, "image_size", 64))
    kwargs = {k: v for k, v in options.items()
              if k not in ("_target_", "name", "pretrained", "checkpoint", "num_classes", "image_size", "device")}
    # load_trained_classifier logs the one line "no trained ... training it now" when it has to train
    return load_trained_classifier(model_cfg.name, dataset_name, image_size, cache_dir, device=device, **kwargs)


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
    """Whether the method's class has its own ``prepare`` (then it may need the training split)."""
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


def build_method(cfg: DictConfig, model: torch.nn.Module, names: dict[str, str], cache_dir: Path, device: str,
                 seed: int) -> tuple[Any, RunContext]:
    """``cfg.method`` on ``model``, prepared (with the training split when it overrides ``prepare``); returns
    the method and the :class:`RunContext` it was prepared with."""
    method = instantiate(cfg.method, model=model)
    context = RunContext(train_dataset=None, cache_dir=cache_dir, model_name=names["model"],
                         dataset_name=names["dataset"], device=device, seed=seed)
    if _overrides_prepare(method):
        context = dataclasses.replace(context, train_dataset=build_dataset(
            cfg, names["dataset"], split=str(cfg.get("train_split", "train")), n_samples=None))
    if hasattr(method, "prepare"):
        method.prepare(context)
    return method, context
