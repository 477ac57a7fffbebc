"""Shared fixtures: small offline models and shapes batches. Torch runs single-threaded per worker.

Tests marked ``cuda`` are skipped where ``torch.cuda.is_available()`` is false. ``XATTR_CUDA_TEST_DEVICE=cpu``
runs them on the CPU instead (both sides of each comparison on the CPU: a dry run of the tests themselves).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from xattr.data import ShapesDataset, collate
from xattr.models import build_model

torch.set_num_threads(1)

CUDA_SKIP_REASON = "needs a CUDA GPU (scripts/gpu_check.sh)"


def cuda_test_device() -> str:
    """The device the ``cuda`` tests run on: ``cuda``, or ``cpu`` with ``XATTR_CUDA_TEST_DEVICE=cpu``."""
    return os.environ.get("XATTR_CUDA_TEST_DEVICE", "cuda")


def pytest_collection_modifyitems(config, items) -> None:
    """Skip every ``cuda``-marked test when there is no CUDA GPU (unless they are sent to the CPU)."""
    if cuda_test_device() != "cuda" or torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=CUDA_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cuda_device() -> str:
    """``device=`` for the GPU side of the ``cuda`` tests (``cpu`` under ``XATTR_CUDA_TEST_DEVICE=cpu``)."""
    return cuda_test_device()


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
