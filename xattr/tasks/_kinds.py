"""Kinds of model the run loop drives: the seam between the loop and what a model predicts.

Per batch the loop (:mod:`xattr.tasks.run`) asks the kind::

    prediction = kind.predict(model, batch, x)       # what is explained, per-sample entries, metric kwargs
    maps = kind.attribute(method, x, prediction)     # the method called with the kind's arguments
    metric(model, x, maps, prediction.target, **prediction.ground_truth, ...)

and when it finishes: ``kind.sample_columns`` (the ``per_sample.csv`` columns after ``id``, taken from
``prediction.samples``), ``kind.maps_fields`` (sample entries stored in ``maps.npz``), ``kind.caption``
(overview figure titles) and ``kind.describe`` (the line in ``summary.md``).

:class:`ClassifierKind` is the only kind today. A text-to-image kind (samples carry ``caption`` and
``word``; a text-image method ``attribute(x, prompts, words) -> [B,1,H,W]``; no class prediction) has
the same members: ``predict`` puts e.g. ``captions``/``words`` into ``samples`` (columns ``caption``,
``word``), ``attribute`` calls ``method.attribute(x, captions, words)``; :func:`model_kind` picks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from xattr.tasks._checks import check_labels


@dataclass
class Prediction:
    """What a kind's ``predict`` hands to the rest of the batch.

    ``target``: what metrics score (a classifier: the explained class ``[B]``); ``samples``: per-sample
    ``[B]`` arrays for the chunk; ``ground_truth``: the kind's extra metric kwargs.
    """

    target: Any
    samples: dict[str, np.ndarray]
    ground_truth: dict[str, Any] = field(default_factory=dict)


class ClassifierKind:
    """An image classifier: explains the label or its prediction (``cfg.target``), records prediction and
    the softmax confidence of the target."""

    sample_columns = {"label": "labels", "target": "targets", "pred": "preds", "confidence": "confidence"}
    maps_fields = ("targets", "labels")

    def __init__(self, model: torch.nn.Module, target_mode: str, names: dict[str, str]):
        self.num_classes = int(model.spec.num_classes)
        self.target_mode = str(target_mode)
        self.names = names

    def predict(self, model: torch.nn.Module, batch: dict, x: torch.Tensor) -> Prediction:
        """Clean forward pass → ``pred``; target = label or ``pred``; confidence = p(target)."""
        label = batch["label"].to(x.device)
        with torch.no_grad():
            probabilities = torch.softmax(model(x).float(), dim=1)
        pred = probabilities.argmax(dim=1)
        if self.target_mode == "label":
            check_labels(label, batch["id"], self.num_classes, self.names)
            target = label
        else:
            target = pred
        confidence = probabilities.gather(1, target[:, None])[:, 0]
        samples = {"labels": label.cpu().numpy(), "targets": target.cpu().numpy(), "preds": pred.cpu().numpy(),
                   "confidence": confidence.cpu().numpy().astype(np.float32)}
        return Prediction(target=target, samples=samples, ground_truth={"label": label})

    def attribute(self, method: Any, x: torch.Tensor, prediction: Prediction) -> torch.Tensor:
        return method.attribute(x, prediction.target)

    def caption(self, samples: dict[str, np.ndarray], i: int) -> str:
        return f"t={int(samples['targets'][i])} p={samples['confidence'][i]:.2f}"

    def describe(self) -> str:
        return f"target={self.target_mode}"


def model_kind(model: torch.nn.Module, cfg: DictConfig, names: dict[str, str]) -> ClassifierKind:
    """The kind of ``model`` (every model is a classifier today; a text-to-image kind is chosen here)."""
    return ClassifierKind(model, str(cfg.target), names)
