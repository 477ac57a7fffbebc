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


def load_state_dict(path: str | os.PathLike, input_size: tuple[int, int] | None = None) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; unwrap ``{'model': ...}``-style dicts.

    With ``input_size``, a checkpoint that records the image size it was trained at (``meta.image_size``, as
    every classifier trained here does) must have been trained at that size (a bare state dict records none).
    """
    path = Path(path)
    if not path.is_file():
        raise XattrError(f"checkpoint {path} does not exist; pass an existing file as model.checkpoint=PATH")
    state = load_torch_file(path, name="checkpoint", fix=USER_FIX)
    if input_size is not None:
        check_recorded_size(state, path, input_size)
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


def check_recorded_size(state, path: str | os.PathLike, input_size: tuple[int, int]) -> None:
    """The image size a checkpoint records (``meta.image_size``: an int or ``[h, w]``) must be ``input_size``;
    resizing the images to the checkpoint's size stays the user's explicit choice (``dataset.image_size``)."""
    meta = state.get("meta") if isinstance(state, dict) else None
    recorded = meta.get("image_size") if isinstance(meta, dict) else None
    if recorded is None:
        return
    recorded = tuple(recorded) if isinstance(recorded, (list, tuple)) else (int(recorded), int(recorded))
    if recorded != tuple(input_size):
        (rh, rw), (h, w) = recorded, input_size
        raise XattrError(
            f"checkpoint {path} was trained on {rh}x{rw} images but the model is built for {h}x{w} (tiny models "
            f"follow dataset.image_size); resize the images to the checkpoint's size with dataset.image_size={rh}, "
            f"or use a checkpoint trained at {h}x{w}")


def load_checkpoint(model: ZooModel, checkpoint: str | os.PathLike) -> None:
    """Load the state dict at ``checkpoint`` into ``model`` (keys ``net.*``) or into ``model.net``; a checkpoint
    that records another image size than ``model.spec.input_size`` is refused (:func:`check_recorded_size`)."""
    state = load_state_dict(checkpoint, input_size=tuple(model.spec.input_size))
    try:
        fit_state_dict(model, state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise XattrError(f"checkpoint {checkpoint} does not fit model {model.spec.name}: {first}") from error
