"""Private helpers of the methods whose baselines are training images (Expected Gradients, IG²).

``reference_bank``: ``size`` images of the training split, a seeded random subset (``CACHE_SEED``-independent of
the run's seed: the bank is part of the method's definition). ``pick_references``: for each image, ``n`` draws
(with replacement) from the bank and ``n`` uniform ``α``, from a generator seeded by the image's content
(``image_seeds``), so an image's references do not depend on its batch.
"""

from __future__ import annotations

import torch

from xattr.errors import XattrError
from xattr.utils.seed import image_seeds, make_generator


def reference_bank(dataset, size: int, seed: int = 0) -> torch.Tensor:
    """``[min(size, len(dataset)), C, H, W]`` training images (``dataset[i]['image']``), seeded subset."""
    if dataset is None or len(dataset) == 0:
        raise XattrError("this method draws its references from the training split: call "
                         "prepare(RunContext(train_dataset=...)) or set_references(images) first")
    order = torch.randperm(len(dataset), generator=make_generator(seed))[:int(size)]
    return torch.stack([dataset[int(i)]["image"] for i in sorted(order.tolist())])


def check_bank(bank: torch.Tensor | None, x: torch.Tensor, name: str) -> torch.Tensor:
    if bank is None:
        raise XattrError(f"{name} has no references; call prepare(RunContext(train_dataset=...)) or "
                         "set_references(images [N,C,H,W]) first")
    if tuple(bank.shape[1:]) != tuple(x.shape[1:]):
        raise XattrError(f"{name}: references of shape {tuple(bank.shape[1:])} do not match images "
                         f"{tuple(x.shape[1:])}; use the same dataset.image_size for train and test")
    return bank.to(x.device, x.dtype)


def pick_references(x: torch.Tensor, bank: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indices [B, n], alphas [B, n])``: per image, ``n`` bank indices and ``n`` ``α ~ U(0,1)`` (float64)."""
    indices, alphas = [], []
    for s in image_seeds(x, seed):
        generator = make_generator(s)
        indices.append(torch.randint(0, bank.shape[0], (n,), generator=generator))
        alphas.append(torch.rand(n, generator=generator, dtype=torch.float64))
    return torch.stack(indices), torch.stack(alphas)
