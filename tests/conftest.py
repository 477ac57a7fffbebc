"""Shared fixtures: small offline models and shapes batches. Torch runs single-threaded per worker."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xattr.data import ShapesDataset, collate
from xattr.models import build_model

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shapes_batch() -> dict:
    """Four 64x64 shapes test samples (images in [0,1], labels, masks, boxes)."""
    dataset = ShapesDataset(split="test", n_samples=None)
    return collate([dataset[i] for i in range(4)])


@pytest.fixture()
def tiny_cnn() -> torch.nn.Module:
    """Randomly initialised tiny_cnn (6 classes, 64x64), seeded."""
    torch.manual_seed(0)
    return build_model("tiny_cnn", num_classes=6)


@pytest.fixture()
def tiny_vit() -> torch.nn.Module:
    """Randomly initialised tiny_vit (6 classes, 64x64, 8x8 tokens), seeded."""
    torch.manual_seed(0)
    return build_model("tiny_vit", num_classes=6)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random tiny_cnn state dict (6 classes): `model.checkpoint=PATH` keeps a run from training a classifier."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_cnn.pt"
    torch.save(build_model("tiny_cnn", num_classes=6).net.state_dict(), path)
    return path
