"""Checks of the run task before and during the work; each failure is one line naming the fix."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from xattr.errors import XattrError
from xattr.tasks._schema import check_config
from xattr.utils.precision import check_device


def check_run_config(cfg: DictConfig) -> None:
    """The whole composed run config against its schema (types, ranges, no unknown keys: every key of
    :mod:`xattr.tasks._schema`), then whether the ``device`` exists here. Called before any work."""
    check_config(cfg, "run")
    check_device(str(cfg.get("device", "cpu")))


def check_image_size(dataset, model, names: dict[str, str]) -> None:
    if getattr(model.spec, "input_size", None) is None:  # a text-to-image model resizes in encode_image
        return
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
