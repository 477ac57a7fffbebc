"""Timing helpers shared by the benchmarks (``scripts/`` is on ``sys.path`` when a script runs).

CUDA runs asynchronously: a timer read right after a call measures the launch, not the work. Every timer
here synchronises the device first (:func:`synchronize`), and on a GPU reads wall time: the process's CPU
time (``time.process_time``) does not count what the GPU does.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch


def synchronize(device: str | torch.device = "cpu") -> None:
    """Wait until the work queued on ``device`` is done (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def device_clock(device: str | torch.device, clock: Callable[[], float]) -> Callable[[], float]:
    """``clock`` on the CPU; wall time (``time.perf_counter``) on a GPU."""
    return time.perf_counter if torch.device(device).type == "cuda" else clock


def best_time(fn: Callable[[], Any], repeats: int = 1, *, clock: Callable[[], float] = time.perf_counter,
              warmup: bool = False, device: str | torch.device = "cpu") -> tuple[float, Any]:
    """``(shortest of `repeats` timed calls of fn, the last call's result)``; ``warmup`` adds an untimed first
    call. ``clock=time.process_time`` counts this process's CPU time, robust on a machine shared with other jobs
    (on a GPU ``device`` the clock is wall time). The device is synchronised before and after each call."""
    clock = device_clock(device, clock)
    if warmup:
        fn()
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        synchronize(device)
        start = clock()
        out = fn()
        synchronize(device)
        best = min(best, clock() - start)
    return best, out


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device`` (default ``cpu``): where both sides of a benchmark's comparison run."""
    parser.add_argument("--device", default="cpu",
                        help="torch device both sides of every comparison run on: cpu (default), cuda, cuda:N")


def bench_device(name: str) -> torch.device:
    """``name`` as a device that exists here, else exit with one line naming it (``xattr.utils.precision``)."""
    from xattr.errors import XattrError
    from xattr.utils.precision import check_device

    try:
        return check_device(name)
    except XattrError as error:
        raise SystemExit(f"error: {error}") from None


def device_label(device: torch.device) -> str:
    """``cpu`` or ``cuda:0 (<GPU name>)`` for a benchmark's header line."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
