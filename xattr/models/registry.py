"""The model registry (timm-style): builders register under a name and a weight source; ``build_model`` builds.

A builder is ``builder(pretrained, num_classes, **kwargs) -> (net, ModelSpec)``. Its ``source`` says where
pretrained weights come from: ``torchvision`` (weight enums), ``timm`` (Hugging Face tags) or ``ours``
(trained here, offline: no library weights, ``pretrained`` is ignored). Models are listed by source in
the order of ``SOURCES``, then in the order their module registers them (not in the order of imports).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from xattr.errors import XattrError
from xattr.models.checkpoint import load_checkpoint
from xattr.models.spec import ZooModel

#: the source of models trained here (offline: ``xattr train task=classifier``)
OURS = "ours"
#: every weight source, in the zoo's listing order
SOURCES = ("torchvision", "timm", OURS)


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: its builder and where its pretrained weights come from."""

    name: str
    builder: Callable
    source: str

    @property
    def offline(self) -> bool:
        """Trained here: no library weights to download."""
        return self.source == OURS


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, source: str) -> Callable[[Callable], Callable]:
    """Decorator: register ``builder(pretrained, num_classes, **kwargs) -> (net, spec)`` as model ``name``."""

    if source not in SOURCES:
        raise ValueError(f"model {name!r}: unknown weight source {source!r}; known: {', '.join(SOURCES)}")

    def decorate(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, source)
        return builder

    return decorate


def list_models(source: str | None = None, offline: bool | None = None) -> tuple[str, ...]:
    """Registered model names (by source, then registration order), optionally only ``source`` / ``offline`` ones."""
    entries = sorted(_REGISTRY.values(), key=lambda entry: SOURCES.index(entry.source))  # stable: keeps module order
    return tuple(entry.name for entry in entries
                 if (source is None or entry.source == source) and (offline is None or entry.offline == offline))


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; one-line error naming the choices when unknown."""
    if name not in _REGISTRY:
        raise XattrError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    return _REGISTRY[name]


def weights_unavailable(name: str, where: str) -> str:
    """The one-line message for pretrained weights that are neither cached in ``where`` nor downloadable."""
    return (
        f"model {name}: pretrained weights are not cached in {where} and this machine cannot download them; "
        f"copy them there, or use model.pretrained=false (random init) or model.checkpoint=PATH (a state dict)"
    )


def build_model(name: str = "tiny_cnn", pretrained: bool = False, checkpoint: str | os.PathLike | None = None,
                num_classes: int = 1000, device: str = "cpu", **kwargs) -> ZooModel:
    """Build zoo model ``name`` in eval mode on ``device`` (the ``_target_`` of ``conf/model/*.yaml``).

    Args:
        name: one of ``list_models()``.
        pretrained: library weights (torchvision enum / timm tag); ignored for offline models.
        checkpoint: a state dict (of ``ZooModel`` or of its ``net``) loaded with ``weights_only=True``.
        num_classes: classifier width when not pretrained (1000 for ImageNet models).
        kwargs: builder options of the tiny models (``image_size``, ``width``, ``depth``...).
    """
    entry = model_entry(name)
    pretrained = bool(pretrained) and not entry.offline
    if pretrained:
        num_classes = 1000
    net, spec = entry.builder(pretrained, num_classes, **kwargs)
    model = ZooModel(net, spec)
    if checkpoint:
        load_checkpoint(model, checkpoint)
    return model.to(device).eval()
