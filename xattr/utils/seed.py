"""Seeding helpers."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def image_seeds(x: torch.Tensor, seed: int = 0) -> list[int]:
    """One seed per image of ``x`` from its content and ``seed``: noise that does not depend on batching."""
    seeds = []
    for image in x.detach().float().cpu().contiguous():
        digest = hashlib.blake2b(image.numpy().tobytes(), digest_size=8, key=str(int(seed)).encode())
        seeds.append(int.from_bytes(digest.digest(), "little") % (2**63 - 1))
    return seeds
