"""Per-batch results as chunk arrays: metric outputs (values and curves) and method diagnostics."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xattr.errors import XattrError


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value.astype(np.float32)
    return torch.as_tensor(value).detach().float().cpu().numpy()


def metric_outputs(name: str, output: Any, batch: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split a metric's output into per-sample values ``{name[.key]: [B]}`` and curves ``{name.key: [B,T]}``."""
    items = output.items() if isinstance(output, dict) else [(None, output)]
    values: dict[str, np.ndarray] = {}
    curves: dict[str, np.ndarray] = {}
    for key, value in items:
        full = name if key is None else f"{name}.{key}"
        array = _as_array(value)
        if array.ndim == 1 and array.shape[0] == batch:
            values[full] = array
        elif array.ndim == 2 and array.shape[0] == batch:
            curves[full] = array
        else:
            raise XattrError(f"metric {full} returned shape {tuple(array.shape)} for a batch of {batch}; "
                             "metrics return [B] values or [B,T] curves")
    return values, curves


def method_diagnostics(method: Any, label: str, batch: int) -> dict[str, np.ndarray]:
    """The method's per-image diagnostics of its last ``attribute`` call (``method.diagnostics()``, see
    :class:`~xattr.methods.base.AttributionMethod`) as values ``{<label>/<name>: [B]}``."""
    report = getattr(method, "diagnostics", None)
    values: dict[str, np.ndarray] = {}
    for name, value in (report() if report is not None else {}).items():
        array = _as_array(value)
        if array.shape != (batch,):
            raise XattrError(f"method {label} reported diagnostic {name} of shape {tuple(array.shape)} for a batch "
                             f"of {batch}; diagnostics are one value per image ([B])")
        values[f"{label}/{name}"] = array
    return values
