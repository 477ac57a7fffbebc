"""Devices and numeric precision: ``device=`` and ``precision=fp32|bf16|fp16`` of ``xattr run`` / ``xattr train``.

``precision`` is *autocast* (:func:`torch.autocast`) for ``bf16``/``fp16``: parameters and the tensors the loop keeps stay float32,
the matrix products and convolutions inside the context run in the reduced type. Code whose numbers are only
meaningful in full precision (the MMSE integrals of :mod:`xattr.info`, the Gaussian references, the
bottleneck's KL capacity) runs inside :func:`full_precision`, which switches autocast off and computes in
float32 (or the float64 its inputs already have) whatever precision the caller chose.

``fp32`` is IEEE float32 on CUDA too (TF32 off for matrix products and convolutions), ``tf32`` allows TF32
there (:func:`apply_float32_precision`). fp16 on CUDA trains with a gradient scaler (:func:`grad_scaler`); bf16 needs none. On CPU, autocast supports
bf16 (and fp16 in recent torch); it is numerically honest but rarely faster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from xattr.errors import XattrError

#: ``precision=`` values and the autocast dtype each one means (``None``: no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "tf32": None, "bf16": torch.bfloat16,
                                             "fp16": torch.float16}
#: the reduced floating types autocast produces; code that needs full precision promotes them to float32
LOW_PRECISION = (torch.bfloat16, torch.float16)


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a one-line error naming it and the choices."""
    if precision not in PRECISIONS:
        raise XattrError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}; e.g. precision=bf16")
    return precision


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` that exists here, else one line naming it and what to pass instead
    (``device=cpu``, or a CUDA index below the number of visible GPUs)."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise XattrError(f"device={device!r} is not a torch device ({error}); use device=cpu or device=cuda") \
            from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise XattrError(f"device={device} but this machine has no CUDA GPU (torch {torch.__version__}); "
                             "use device=cpu")
        if resolved.index is not None and resolved.index >= count:
            raise XattrError(f"device={device} but only {count} CUDA GPU(s) are visible (cuda:0..cuda:{count - 1})")
    return resolved


def autocast(device: str | torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` on ``device`` (fp32: a no-op context)."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@contextlib.contextmanager
def full_precision(device: str | torch.device = "cpu") -> Iterator[None]:
    """Autocast off on ``device``'s type for the block (the MMSE integrals, Gaussian references): its
    operations run in the dtype of their inputs, which the caller keeps float32/float64."""
    with torch.autocast(device_type=torch.device(device).type, enabled=False):
        yield


def apply_float32_precision(precision: str) -> None:
    """How CUDA computes float32 matrix products and convolutions for the rest of the process: IEEE float32
    for ``fp32`` (torch's cuDNN default would be TF32, a 10-bit mantissa, which moves single pixels of a
    gradient map by a third of its maximum on tiny_cnn), TF32 for ``tf32`` (faster on Ampere and later, no
    autocast); ``bf16``/``fp16`` leave torch's defaults to the float32 work outside autocast. No effect on CPU."""
    mode = {"fp32": "ieee", "tf32": "tf32"}.get(check_precision(precision))
    if mode is not None:
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode


def grad_scaler(device: str | torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler that is active only where it is needed: fp16 on CUDA (elsewhere a pass-through)."""
    enabled = check_precision(precision) == "fp16" and torch.device(device).type == "cuda"
    return torch.amp.GradScaler(torch.device(device).type, enabled=enabled)


__all__ = ["PRECISIONS", "LOW_PRECISION", "check_precision", "check_device", "apply_float32_precision", "autocast", "full_precision", "grad_scaler"]
