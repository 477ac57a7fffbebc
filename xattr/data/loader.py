"""Batches of a dataset through :class:`torch.utils.data.DataLoader`: the run task's loader.

The run loop decides which rows make a batch (its batch plan: global batch indices, shards, resumed batches
skipped) and hands them as a batch sampler; the loader only loads and collates them — in the run's process
(``num_workers=0``, the default: the embedded datasets render a sample in about a millisecond, a worker
process would cost more than it saves) or in ``num_workers`` worker processes, ``prefetch_factor`` batches
each ahead, into pinned memory (``pin_memory``) so that the copy to a GPU overlaps the work. A sample
depends only on its index (every dataset here draws from its own seeded generator), so the batches are
the same whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader

from xattr.data.base import collate
from xattr.errors import XattrError

#: the worker traceback DataLoader appends to an exception it re-raises in the main process
_WORKER_TRACEBACK = "Original Traceback"


def resolve_pin_memory(pin_memory: bool | str, device: str | torch.device) -> bool:
    """``pin_memory``: ``"auto"`` = pinned exactly when the batches go to a CUDA device."""
    if pin_memory == "auto":
        return torch.device(device).type == "cuda"
    if isinstance(pin_memory, bool):
        return pin_memory
    raise XattrError(f"loader.pin_memory={pin_memory!r} must be true, false or auto")


def batch_loader(dataset, batches: Sequence[Sequence[int]], *, num_workers: int = 0,
                 pin_memory: bool | str = "auto", prefetch_factor: int = 2,
                 device: str | torch.device = "cpu") -> Iterator[dict]:
    """The collated batches (:func:`xattr.data.collate`: ``image [B,3,H,W]``, ``label [B]``, ``id``, …) of
    ``dataset`` at the row lists ``batches``, in order. A dataset error raised in a worker is re-raised as the
    one line it was (not as the worker's traceback)."""
    if num_workers < 0:
        raise XattrError(f"loader.num_workers={num_workers} must be >= 0 (0: load in the run's process)")
    if prefetch_factor < 1:
        raise XattrError(f"loader.prefetch_factor={prefetch_factor} must be >= 1")
    loader = DataLoader(dataset, batch_sampler=[list(rows) for rows in batches], collate_fn=collate,
                        num_workers=num_workers, pin_memory=resolve_pin_memory(pin_memory, device),
                        prefetch_factor=prefetch_factor if num_workers > 0 else None,
                        persistent_workers=False)
    try:
        yield from loader
    except XattrError as error:
        raise XattrError(worker_message(str(error))) from None


def worker_message(message: str) -> str:
    """The one-line message of an ``XattrError`` a DataLoader worker raised (DataLoader wraps it in
    ``Caught XattrError in DataLoader worker process 0.\\nOriginal Traceback …\\nxattr.errors.XattrError: <line>``)."""
    if _WORKER_TRACEBACK not in message:
        return message
    last = message.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if last.startswith(("xattr.errors.XattrError", "XattrError")) else last


__all__ = ["batch_loader", "resolve_pin_memory", "worker_message"]
