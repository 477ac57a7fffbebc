"""The dataset registry: every dataset class registers under its ``name`` (the stem of its ``conf/dataset`` file).

``builtin`` datasets carry their samples with the code or a dependency (``shapes`` is procedural, ``digits``
ships with scikit-learn): they need no files under ``paths.data_dir`` and are what an offline classifier
is trained on. The others read image files (ImageNet and its -A/-R variants, FSS-1000, any folder); the
variants are datasets of their own, each with its class and config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xattr.errors import XattrError


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset: its class and whether its samples ship with the code."""

    name: str
    cls: type
    builtin: bool


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(builtin: bool = False) -> Callable[[type], type]:
    """Class decorator: register a dataset under its ``name`` attribute."""

    def decorate(cls: type) -> type:
        name = cls.name
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice")
        _REGISTRY[name] = DatasetEntry(name, cls, builtin)
        return cls

    return decorate


def list_datasets(builtin: bool | None = None) -> tuple[str, ...]:
    """Registered dataset names in registration order, optionally only the (not) ``builtin`` ones."""
    return tuple(name for name, entry in _REGISTRY.items() if builtin is None or entry.builtin == builtin)


def dataset_class(name: str) -> type:
    """The class registered as ``name``; one-line error naming the choices when unknown."""
    if name not in _REGISTRY:
        raise XattrError(f"unknown dataset {name!r}; choose one of {', '.join(list_datasets())}")
    return _REGISTRY[name].cls

