"""Checkpoints of zoo models: read a user's state dict safely, load a state dict into a ``ZooModel`` or its ``net``.

A file given as ``model.checkpoint=PATH`` is read here (:func:`load_state_dict`; the advice of its errors is about
that option); the classifiers the suite trains and caches itself are read as cache entries
(:mod:`xattr.utils.cache`, whose errors say to delete the file) and loaded with :func:`fit_state_dict`.
"""

from __future__ import annotations

import os
from pathlib import Path

from xattr.errors import XattrError
from xattr.models.spec import ZooModel
from xattr.utils.io import load_torch_file

#: what an unreadable ``model.checkpoint=PATH`` asks for
USER_FIX = "pass a state dict saved with torch.save(model.state_dict(), PATH)"


def load_state_dict(path: str | os.PathLike) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; unwrap ``{'model': ...}``-style dicts."""
    path = Path(path)
    if not path.is_file():
        raise XattrError(f"checkpoint {path} does not exist; pass an existing file as model.checkpoint=PATH")
    state = load_torch_file(path, name="checkpoint", fix=USER_FIX)
    for key in ("model", "state_dict", "ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise XattrError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    return state


def fit_state_dict(model: ZooModel, state: dict) -> None:
    """Load ``state`` into ``model`` (keys ``net.*``) or into ``model.net``; ``RuntimeError`` when it does not fit."""
    target = model if any(k.startswith("net.") for k in state) else model.net
    target.load_state_dict(state)


def load_checkpoint(model: ZooModel, checkpoint: str | os.PathLike) -> None:
    """Load the state dict at ``checkpoint`` into ``model`` (keys ``net.*``) or into ``model.net``."""
    state = load_state_dict(checkpoint)
    try:
        fit_state_dict(model, state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise XattrError(f"checkpoint {checkpoint} does not fit model {model.spec.name}: {first}") from error
