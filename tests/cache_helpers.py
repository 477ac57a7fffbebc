"""Faults planted in cache files by the cache tests (importable as ``cache_helpers``, as ``run_helpers``)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch


class Payload:
    """A pickle that runs code when it is unpickled: ``exec`` touches ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


#: the faults planted in a cache file: its bytes, given the marker file a payload would create
FAULTS = {
    "code": lambda marker: torch_bytes({"model": Payload(marker), "config": {}}),  # torch.save of a payload
    "plain-pickle": lambda marker: pickle.dumps(Payload(marker)),                   # pickle.dump of a payload
    "truncated": lambda marker: torch_bytes({"model": {"w": torch.zeros(1000)}})[:700],
    "garbage": lambda marker: b"not a checkpoint",
    "empty": lambda marker: b"",
    "wrong-content": lambda marker: torch_bytes({"model": {"w": torch.zeros(3)}, "config": {"bogus": 1}}),
}


def plant(path: Path, fault: str, marker: Path) -> bytes:
    """Write the bytes of ``fault`` at ``path`` (folders made); returns them."""
    content = FAULTS[fault](marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return content
