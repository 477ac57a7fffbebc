"""Atomic writes: every file is written to a temp file in the same folder, then renamed.

A crash leaves either the old file or the new one, never a half-written file. Torch files are written by
:func:`atomic_torch_save` and read by :func:`load_torch_file`, both weights-only (no pickled code either way).
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xattr.errors import XattrError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Save a compressed ``.npz`` atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buffer.getvalue())


def atomic_save_dataframe(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame as CSV atomically."""
    return atomic_write_text(path, frame.to_csv(index=False))


def atomic_savefig(path: str | os.PathLike, figure, **kwargs) -> Path:
    """Save a matplotlib figure (PNG by default) atomically: a :class:`matplotlib.figure.Figure` of its own
    (:func:`xattr.utils.figures.agg_figure`, or a bare one: ``savefig`` picks the canvas for the format), no
    pyplot needed."""
    buffer = io.BytesIO()
    kwargs.setdefault("format", Path(path).suffix.lstrip(".") or "png")
    kwargs.setdefault("dpi", 120)
    kwargs.setdefault("bbox_inches", "tight")
    figure.savefig(buffer, **kwargs)
    return atomic_write_bytes(path, buffer.getvalue())


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` atomically (checkpoints survive an interrupted write), every tensor moved to the host first
    (a file written by a CUDA run loads anywhere). ``obj`` must load back with ``weights_only=True`` (tensors,
    dicts, lists, tuples, str, numbers, None), as :func:`load_torch_file` reads it: anything else is a bug of the
    writer (``TypeError``), caught here rather than when the file is read."""
    import torch

    buffer = io.BytesIO()
    torch.save(_on_host(obj), buffer)
    data = buffer.getvalue()
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:
        raise TypeError(f"{path}: the state to save does not load with weights_only=True "
                        f"({_refusal(error)}); store tensors, dicts, lists, str and numbers only") from error
    return atomic_write_bytes(path, data)


def _on_host(obj: Any) -> Any:
    """``obj`` with every tensor in it (nested dicts, lists, tuples) detached and on the CPU."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {key: _on_host(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_host(value) for value in obj)
    return obj


def load_torch_file(path: str | os.PathLike, *, name: str, fix: str) -> Any:
    """The one way the suite reads a torch file: ``torch.load(weights_only=True)`` on the CPU, so a pickle that
    carries code is refused and never runs (no unsafe fallback). Any failure is one :class:`XattrError` line
    ``<name> <path> is unreadable (<why>); <fix>``: ``fix`` tells what to do with the file (a user's checkpoint:
    pass another; a cache entry: delete it)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise XattrError(f"{name} {path} is unreadable ({_refusal(error)}); {fix}") from error


def _refusal(error: BaseException) -> str:
    """A few words for why ``torch.load(weights_only=True)`` failed (torch's own text is many lines long and
    suggests turning the weights-only check off, which would run the code)."""
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if unsafe:
        return (f"it refers to {unsafe.group(1)}, which a weights-only load refuses: code, or an object of "
                "another version's format")
    if isinstance(error, EOFError):
        return "empty or cut short"
    return f"not a weights-only torch file, or truncated: {type(error).__name__}"
