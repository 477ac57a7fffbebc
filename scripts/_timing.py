"""Timing helper shared by the benchmarks (``scripts/`` is on ``sys.path`` when a script runs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_time(fn: Callable[[], Any], repeats: int = 1, *, clock: Callable[[], float] = time.perf_counter,
              warmup: bool = False) -> tuple[float, Any]:
    """``(shortest of `repeats` timed calls of fn, the last call's result)``; ``warmup`` adds an untimed first
    call. ``clock=time.process_time`` counts this process's CPU time, robust on a machine shared with other jobs."""
    if warmup:
        fn()
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        start = clock()
        out = fn()
        best = min(best, clock() - start)
    return best, out
