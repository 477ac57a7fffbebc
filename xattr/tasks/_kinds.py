"""Kinds of model the run loop drives: the seam between the loop and what a model predicts.

Per batch the loop (:mod:`xattr.tasks.run`) asks the kind::

    prediction = kind.predict(model, batch, x)       # what is explained, per-sample entries, metric kwargs
    maps = kind.attribute(method, x, prediction)     # the method called with the kind's arguments
    metric(model, x, maps, prediction.target, **prediction.ground_truth, ...)

and when it finishes: ``kind.sample_columns`` (the ``per_sample.csv`` columns after ``id``, taken from
``prediction.samples``), ``kind.maps_fields`` (sample entries stored in ``maps.npz``), ``kind.caption``
(overview figure titles) and ``kind.describe`` (the line in ``summary.md``).

:class:`ClassifierKind` drives an image classifier; :class:`TextImageKind` a text-to-image diffusion model
(samples carry ``caption`` and the ``word`` to explain; a text-image method is called
``attribute(x, captions, words) -> [B,1,H,W]``; nothing is predicted). :func:`model_kind` picks one by the
model's ``spec.kind``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from xattr.errors import XattrError
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
        if getattr(method, "kind", None) == "text_image":
            raise XattrError(f"method {self.names['method']} explains words of a text-to-image model, not "
                             f"classifier {self.names['model']}; use it with model=tiny_t2i, sd21 or sd15")
        return method.attribute(x, prediction.target)

    def caption(self, samples: dict[str, np.ndarray], i: int) -> str:
        return f"t={int(samples['targets'][i])} p={samples['confidence'][i]:.2f}"

    def describe(self) -> str:
        return f"target={self.target_mode}"


class TextImageKind:
    """A text-to-image diffusion model (``spec.kind == "text_to_image"``): explains one word of each sample's
    caption; records the caption and the word. There is no class target: metrics get ``target=None`` and
    the word's ``mask`` when the dataset has one."""

    sample_columns = {"caption": "captions", "word": "words"}
    maps_fields = ("captions", "words")

    def __init__(self, names: dict[str, str]):
        self.names = names

    def predict(self, model: torch.nn.Module, batch: dict, x: torch.Tensor) -> Prediction:
        """No forward pass: the captions and words of the batch (``batch['caption']``, ``batch['word']``)."""
        missing = [key for key in ("caption", "word") if key not in batch]
        if missing:
            raise XattrError(f"dataset {self.names['dataset']} gives no {' or '.join(missing)} per sample, which "
                             f"text-to-image model {self.names['model']} explains; use a captioned dataset "
                             "(dataset=shapes_captions, coco_it)")
        captions, words = [str(c) for c in batch["caption"]], [str(w) for w in batch["word"]]
        samples = {"captions": np.asarray(captions, dtype=str), "words": np.asarray(words, dtype=str)}
        return Prediction(target=None, samples=samples)

    def attribute(self, method: Any, x: torch.Tensor, prediction: Prediction) -> torch.Tensor:
        if getattr(method, "kind", None) != "text_image":
            raise XattrError(f"method {self.names['method']} explains classifiers, not text-to-image model "
                             f"{self.names['model']}; use a text-image method (method=info_cmi, info_mi, daam, "
                             "attention_information)")
        return method.attribute(x, list(prediction.samples["captions"]), list(prediction.samples["words"]))

    def caption(self, samples: dict[str, np.ndarray], i: int) -> str:
        return str(samples["words"][i]) or "(caption)"

    def describe(self) -> str:
        return "word heatmaps of a text-to-image model"


def model_kind(model: torch.nn.Module, cfg: DictConfig, names: dict[str, str]) -> ClassifierKind | TextImageKind:
    """The kind of ``model``: :class:`TextImageKind` for ``spec.kind == "text_to_image"``, else a classifier."""
    if getattr(getattr(model, "spec", None), "kind", None) == "text_to_image":
        return TextImageKind(names)
    return ClassifierKind(model, str(cfg.target), names)
