"""DAUC (DiffIB Table 2): insertion AUC minus deletion AUC, higher is better."""

from __future__ import annotations

import torch
import torch.nn as nn

from xattr.metrics._perturb import BLUR_SIGMA
from xattr.metrics.deletion import Deletion
from xattr.metrics.insertion import Insertion


class DAUC:
    """``DAUC(step=0.01, insertion_substrate='blur', deletion_substrate='noise')`` ->
    ``{'dauc': [B], 'insertion': [B], 'deletion': [B]}``.

    DiffIB's protocol (Table 2, after Zhang et al. 2021): deletion replaces the most important units "with
    noise" (seeded per image); insertion adds them into a blurred image (InputIBA's evaluation code:
    ``GaussianBlur(2*sigma - 1, sigma)`` with sigma 5, i.e. kernel 9). RISE's substrates (blur kernel 11 /
    zeros) are ``deletion_substrate=zero blur_kernel=11``.
    """

    def __init__(self, step: float = 0.01, insertion_substrate: str = "blur", deletion_substrate: str = "noise",
                 seed: int = 0, max_batch: int = 16, blur_kernel: int = 9, blur_sigma: float = BLUR_SIGMA):
        self.insertion = Insertion(step, insertion_substrate, seed, max_batch, blur_kernel=blur_kernel,
                                   blur_sigma=blur_sigma)
        self.deletion = Deletion(step, deletion_substrate, seed, max_batch, blur_kernel=blur_kernel,
                                 blur_sigma=blur_sigma)

    def __call__(self, model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                 **ground_truth) -> dict[str, torch.Tensor]:
        ins = self.insertion(model, x, maps, target)
        dele = self.deletion(model, x, maps, target)
        return {"dauc": ins - dele, "insertion": ins, "deletion": dele}
