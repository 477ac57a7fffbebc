"""DAUC (DiffIB Table 2): insertion AUC minus deletion AUC, higher is better."""

from __future__ import annotations

import torch
import torch.nn as nn

from xattr.metrics.deletion import Deletion
from xattr.metrics.insertion import Insertion


class DAUC:
    """``DAUC(step=0.01, insertion_substrate='blur', deletion_substrate='zero')`` ->
    ``{'dauc': [B], 'insertion': [B], 'deletion': [B]}``."""

    def __init__(self, step: float = 0.01, insertion_substrate: str = "blur", deletion_substrate: str = "zero",
                 seed: int = 0, max_batch: int = 16):
        self.insertion = Insertion(step, insertion_substrate, seed, max_batch)
        self.deletion = Deletion(step, deletion_substrate, seed, max_batch)

    def __call__(self, model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                 **ground_truth) -> dict[str, torch.Tensor]:
        ins = self.insertion(model, x, maps, target)
        dele = self.deletion(model, x, maps, target)
        return {"dauc": ins - dele, "insertion": ins, "deletion": dele}
