"""The schemas of ``conf/run.yaml`` and ``conf/train.yaml`` as they compose (:mod:`xattr.utils.schema`).

:func:`check_config` validates a whole composed config before any work and raises ONE ``XattrError`` line
listing every bad key: the top-level keys are typed and ranged here (unknown ones, ``+key`` or not, are
refused with the closest known key); every group node with a ``_target_`` (model, dataset, method, each
metric, the training task) is checked against its target's signature (known keys and their types), with
the ranges below laid over the keys many targets share. What only a target knows (a method's ``beta``, a
metric's ``step``) is range-checked by its constructor, which also runs before any work.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from omegaconf import DictConfig
from pydantic import BaseModel, Field

from xattr.errors import XattrError
from xattr.runs.writers import MAPS_DTYPES
from xattr.utils.precision import PRECISIONS
from xattr.utils.schema import STRICT, check, check_target, plain

Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
Device = Annotated[str, Field(pattern=r"^(cpu|cuda(:\d+)?|mps)$", description="cpu, cuda, cuda:N or mps")]
Text = Annotated[str, Field(min_length=1)]
Positive = Annotated[int, Field(ge=1)]
Precision = Literal[tuple(PRECISIONS)]


class Names(BaseModel):
    """``names.*``: labels in ``summary.csv`` and the report; null = the chosen config names."""

    model_config = STRICT
    method: Text | None = None
    model: Text | None = None
    dataset: Text | None = None


class Paths(BaseModel):
    """``paths.*`` (``conf/paths/default.yaml``)."""

    model_config = STRICT
    root_dir: Text | None = None
    data_dir: Text | None = None
    cache_dir: Text | None = None
    output_dir: Text | None = None


class Loader(BaseModel):
    """``loader.*``: the run's DataLoader (:mod:`xattr.data.loader`)."""

    model_config = STRICT
    num_workers: Annotated[int, Field(ge=0)] = 0
    pin_memory: bool | Literal["auto"] = "auto"
    prefetch_factor: Positive = 2


class RunConfig(BaseModel):
    """The top level of ``conf/run.yaml`` (documented in docs/run.md); groups are checked by their targets."""

    model_config = STRICT
    task: Literal["run"] = "run"
    seed: Seed
    device: Device = "cpu"
    precision: Precision = "fp32"
    target: Literal["label", "pred"]
    batch_size: Positive
    resume: bool = False
    n_figure: Annotated[int, Field(ge=0)] = 8
    maps_dtype: Literal[MAPS_DTYPES] = "float32"
    save_maps: bool = True
    train_split: Text = "train"
    loader: Loader | None = None
    names: Names | None = None
    paths: Paths
    model: dict[str, Any]
    dataset: dict[str, Any]
    method: dict[str, Any]
    metric: dict[str, dict[str, Any]] | None = None


class TrainConfig(BaseModel):
    """The top level of ``conf/train.yaml``; ``task`` is checked by its trainer's signature."""

    model_config = STRICT
    seed: Seed = 0
    device: Device = "cpu"
    precision: Precision = "fp32"
    paths: Paths | None = None
    task: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    dataset: dict[str, Any] | None = None


SCHEMAS = {"run": RunConfig, "train": TrainConfig}

#: ranges of keys many targets share (the rest: each constructor's own checks)
RANGES: dict[str, dict[str, Any]] = {
    "model": {"num_classes": Field(ge=1), "image_size": Field(ge=8, le=4096), "width": Field(ge=1),
              "patch_size": Field(ge=2), "dim": Field(ge=1), "depth": Field(ge=1), "heads": Field(ge=1)},
    "dataset": {"image_size": Field(ge=8, le=4096), "n_samples": Field(ge=1), "seed": Field(ge=0),
                "shard": Field(ge=0), "num_shards": Field(ge=1),
                "length": Field(ge=0), "crop_fraction": Field(gt=0, le=1), "test_fraction": Field(gt=0, lt=1)},
    "task": {"epochs": Field(ge=1), "steps": Field(ge=1), "batch_size": Field(ge=1), "train_size": Field(ge=1),
             "save_every": Field(ge=1), "width": Field(ge=1), "depth": Field(ge=1), "lr": Field(gt=0),
             "weight_decay": Field(ge=0), "ema_decay": Field(ge=0, lt=1)},
}


def known_keys(command: str) -> list[str]:
    """The top-level keys of ``conf/<command>.yaml`` (``run`` or ``train``)."""
    return list(SCHEMAS[command].model_fields)


def check_config(cfg: DictConfig, command: str) -> None:
    """Validate the composed ``conf/<command>.yaml``; one ``XattrError`` line naming every bad key."""
    data = plain(cfg)
    data.pop("hydra", None)  # Hydra's own node, when a caller composed with return_hydra_config=True
    problems = check(data, SCHEMAS[command], where=f"conf/{command}.yaml")
    for group, node in _target_nodes(data):
        problems += _check_node(group, node)
    if problems:
        shown = problems[:4] + ([f"and {len(problems) - 4} more"] if len(problems) > 4 else [])
        raise XattrError("; ".join(shown))


def _target_nodes(data: dict) -> list[tuple[str, dict]]:
    """``(key, node)`` for every node of a group that instantiates a ``_target_``."""
    nodes = [(group, data[group]) for group in ("model", "dataset", "method", "task")
             if isinstance(data.get(group), dict)]
    metric = data.get("metric")
    if isinstance(metric, dict):
        nodes += [(f"metric.{name}", node) for name, node in metric.items() if isinstance(node, dict)]
    return [(group, node) for group, node in nodes if isinstance(node.get("_target_"), str)]


def _check_node(key: str, node: dict) -> list[str]:
    from hydra.utils import get_object

    try:
        target = get_object(node["_target_"])
    except Exception:  # noqa: BLE001 - an unimportable target: instantiate reports it with its own message
        return []
    group = key.split(".")[0]
    options: dict[str, Any] = {"ranges": RANGES.get(group)}
    if group == "method":
        options["skip"] = ("model",)  # the model is handed over at build time
    elif group == "task":
        from xattr.training._loop import LABEL

        options["labels"] = (LABEL,)
    elif group == "model":
        options.update(skip=("device",), extra=_model_builder(node.get("name")))
    from xattr.tasks._build import node_label

    label = f"{group} {key.split('.', 1)[-1] if group == 'metric' else node_label(group, node)!r}"
    problems = check_target(node, target, f"{key}.", "it", **options)
    if group == "dataset" and not problems:
        problems = _shard_problems(node)
    return [f"{label}: {problem}" for problem in problems]


def _shard_problems(node: dict) -> list[str]:
    """``dataset.shard`` must name one of the ``dataset.num_shards`` parts (each is ranged on its own)."""
    shard, num_shards = node.get("shard", 0), node.get("num_shards", 1)
    if isinstance(shard, int) and isinstance(num_shards, int) and shard >= num_shards:
        return [f"dataset.shard={shard} is not one of the {num_shards} shards; expected 0..{num_shards - 1} "
                f"(dataset.num_shards={num_shards})"]
    return []


def _model_builder(name: Any):
    """The registered builder of model ``name``: ``build_model`` hands it its ``**kwargs`` (its options)."""
    from xattr.models import list_models, model_entry

    return model_entry(name).builder if isinstance(name, str) and name in list_models() else None
