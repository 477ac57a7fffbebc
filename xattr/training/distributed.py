"""Multi-process (DDP) training of the DiffIB trainers on :mod:`torch.distributed`.

``torchrun --nproc_per_node=W -m xattr.cli train task=denoiser`` (or ``python -m torch.distributed.run ...``)
starts ``W`` processes with ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (and the rendezvous ``MASTER_ADDR``/
``MASTER_PORT``) in their environment. :func:`session` joins them into one process group (gloo on CPU, nccl on
CUDA) and gives each its device (``device=cuda`` becomes ``cuda:<LOCAL_RANK>``). ``batch_size`` stays the global
batch: rank ``r`` computes the positions :func:`local_positions` names, DDP averages the gradients, so each
update equals the one-process update on the whole batch. Only the main process (rank 0) writes files, shows a
progress bar and takes a cache entry's lock.

Without torchrun (or a process group made by the caller) every helper answers as for one process: rank 0 of 1,
:func:`all_mean` and :func:`barrier` do nothing. The library launches no process itself.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from xattr.errors import XattrError
from xattr.utils.locks import waiting
from xattr.utils.precision import check_device

#: the environment torchrun sets in each process it starts
TORCHRUN_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
#: how long a collective (a barrier while rank 0 waits for a cache entry's lock) may wait
TIMEOUT = datetime.timedelta(hours=2)


def launched() -> bool:
    """Whether this process was started by torchrun (its ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` are set)."""
    return all(key in os.environ for key in TORCHRUN_ENV)


def active() -> bool:
    """Whether a process group is up (made by :func:`setup` or by the caller)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the group, 0 without one."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes in the group, 1 without one."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes the files, shows the bar and takes the locks (rank 0)."""
    return rank() == 0


def local_device(device: str | torch.device) -> torch.device:
    """``device`` for this process, checked to exist: a bare ``cuda`` is ``cuda:<LOCAL_RANK>`` under torchrun,
    else the current CUDA device (so that it compares equal to the device of a tensor put there)."""
    resolved = check_device(device)
    if resolved.type == "cuda" and resolved.index is None:
        index = int(os.environ["LOCAL_RANK"]) if launched() else torch.cuda.current_device()
        resolved = check_device(torch.device("cuda", index))
    return resolved


def setup(device: str | torch.device) -> bool:
    """Join torchrun's process group once (gloo for CPU, nccl for CUDA); ``True`` if this call made it."""
    if not launched() or active():
        return False
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return True


def destroy() -> None:
    """Leave the process group (nothing without one)."""
    if active():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device: str | torch.device) -> Iterator[torch.device]:
    """The block of ``xattr train``'s distributed work: yields this process's device (:func:`local_device`),
    inside torchrun's process group, which it leaves at the end if it joined it."""
    resolved = local_device(device)
    made = setup(resolved)
    try:
        yield resolved
    finally:
        if made:
            destroy()


def local_positions(batch_size: int) -> range:
    """The positions ``r*B/W .. (r+1)*B/W - 1`` of the global batch ``B`` that rank ``r`` of ``W`` computes."""
    size, index = world_size(), rank()
    if batch_size % size:
        raise XattrError(f"batch_size={batch_size} is not divisible by the {size} training processes; "
                         f"choose a multiple of {size}, e.g. task.batch_size={size * max(1, batch_size // size)}")
    share = batch_size // size
    return range(index * share, (index + 1) * share)


def all_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` (any shape, float) over the processes, a new tensor; ``tensor`` itself without a group."""
    if not active() or world_size() == 1:
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / world_size()


def barrier() -> None:
    """Wait until every process got here (nothing without a group)."""
    if active() and world_size() > 1:
        dist.barrier()


def wrap(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``net`` in :class:`~torch.nn.parallel.DistributedDataParallel` (gradients averaged over the processes)
    inside a group of more than one process; ``net`` itself otherwise."""
    if world_size() == 1:
        return net
    ids = [device.index] if device.type == "cuda" and device.index is not None else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


@contextlib.contextmanager
def main_lock(target: str | Path) -> Iterator[None]:
    """The cache entry's lock (:func:`xattr.utils.locks.waiting`) held by the main process only, the others
    waiting at a barrier until it holds it (they must not take it: the main one would wait for them forever)."""
    with waiting(target) if is_main() else contextlib.nullcontext():
        barrier()
        yield


__all__ = ["launched", "active", "rank", "world_size", "is_main", "local_device", "setup", "destroy", "session",
           "local_positions", "all_mean", "barrier", "wrap", "main_lock"]
