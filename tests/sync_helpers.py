"""Counting host synchronisations: the calls that copy a tensor's value to the host (``item``, ``cpu``,
``numpy``, ``tolist``, ``bool``/``float``/``int`` of a tensor). On a GPU each one stalls the device, so a hot
loop must not make one per iteration. Counted on CPU with a :class:`~torch.overrides.TorchFunctionMode`
(which sees the calls whatever the device): a count that grows with a method's step count is a per-step
round trip. Reads made inside ``torch.optim`` are not counted: Adam keeps its step counts as host tensors
(unless ``capturable``/``fused``), so its ``item()`` reads no device value. Importable as ``sync_helpers``."""

from __future__ import annotations

import sys
from collections import Counter

from torch.overrides import TorchFunctionMode

#: tensor methods that read a value back to the host
HOST_READS = frozenset({"item", "cpu", "numpy", "tolist", "__bool__", "__float__", "__int__", "__index__"})


class HostReads(TorchFunctionMode):
    """``with HostReads() as reads: …`` → ``reads.counts`` (a Counter by call name) and ``reads.total``."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS and not _inside_optimizer():
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _inside_optimizer() -> bool:
    """Whether the current call comes from a ``torch.optim`` module (a host-side step counter)."""
    frame = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            return False
        if frame.f_globals.get("__name__", "").startswith("torch.optim"):
            return True
        frame = frame.f_back
    return False
