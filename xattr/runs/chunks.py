"""Per-batch chunks (``partial/batch-NNNNN.npz``) and the run's results merged from them.

A chunk holds ``ids`` ``[B]``, the model kind's per-sample entries (any other ``[B]`` key, e.g. ``targets``),
``maps`` ``[B,C,H,W]``, ``value__<name>`` ``[B]`` (a row per sample in ``per_sample.csv``) and
``curve__<name>`` ``[B,T]`` (``curves.npz``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VALUE, CURVE = "value__", "curve__"


def chunk_arrays(ids: list[str], samples: dict[str, np.ndarray], maps: np.ndarray,
                 values: dict[str, np.ndarray], curves: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of one batch's chunk: ``ids``, ``samples`` (the kind's entries), ``maps``, values, curves."""
    return {"ids": np.asarray(ids, dtype=str), **samples, "maps": maps,
            **{VALUE + name: value for name, value in values.items()},
            **{CURVE + name: curve for name, curve in curves.items()}}


@dataclass
class Results:
    """All chunks of a run concatenated over samples (``maps`` on demand: they may be large)."""

    ids: np.ndarray
    samples: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]
    chunks: list[dict[str, np.ndarray]] = field(repr=False)

    @classmethod
    def from_chunks(cls, chunks: list[dict[str, np.ndarray]]) -> Results:
        """Merge chunks in batch order; names (values in metric order) come from the first chunk."""
        keys = list(chunks[0])

        def merged(key: str) -> np.ndarray:
            return np.concatenate([chunk[key] for chunk in chunks])

        return cls(ids=merged("ids").astype(str),
                   samples={k: merged(k) for k in keys if k not in ("ids", "maps") and not k.startswith((VALUE, CURVE))},
                   values={k[len(VALUE):]: merged(k) for k in keys if k.startswith(VALUE)},
                   curves={k[len(CURVE):]: merged(k) for k in keys if k.startswith(CURVE)},
                   chunks=chunks)

    def maps(self) -> np.ndarray:
        """``[N,C,H,W]`` maps of all samples."""
        return np.concatenate([chunk["maps"] for chunk in self.chunks])
