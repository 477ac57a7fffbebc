"""Checkpoints of zoo models: read a state dict safely, load it into a ``ZooModel`` or its ``net``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from xattr.errors import XattrError
from xattr.models.spec import ZooModel


def load_state_dict(path: str | os.PathLike) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; unwrap ``{'model': ...}``-style dicts."""
    path = Path(path)
    if not path.is_file():
        raise XattrError(f"checkpoint {path} does not exist; pass an existing file as model.checkpoint=PATH")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise XattrError(f"checkpoint {path} is unreadable ({type(error).__name__}); "
                         "pass a state dict saved with torch.save(model.state_dict(), PATH)") from error
    for key in ("model", "state_dict", "ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise XattrError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    return state


def load_checkpoint(model: ZooModel, checkpoint: str | os.PathLike) -> None:
    """Load the state dict at ``checkpoint`` into ``model`` (keys ``net.*``) or into ``model.net``."""
    state = load_state_dict(checkpoint)
    target = model if any(k.startswith("net.") for k in state) else model.net
    try:
        target.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise XattrError(f"checkpoint {checkpoint} does not fit model {model.spec.name}: {first}") from error
