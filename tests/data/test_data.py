"""Datasets: sample dict contract, determinism, exact masks/boxes, seeded selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xattr.data import DigitsDataset, ShapesDataset, boxes_to_mask, collate
from xattr.data.shapes import CLASS_NAMES, shape_mask
from xattr.errors import XattrError


def test_shapes_contract_and_determinism():
    a, b = ShapesDataset(split="train", n_samples=None), ShapesDataset(split="train", n_samples=None)
    for i in range(5):
        sa, sb = a[i], b[i]
        assert sa["image"].shape == (3, 64, 64) and sa["image"].dtype == torch.float32
        assert 0 <= sa["image"].min() and sa["image"].max() <= 1
        assert torch.equal(sa["image"], sb["image"]) and sa["label"] == sb["label"]
        assert sa["mask"].dtype == torch.bool and sa["mask"].any()
        assert torch.equal(boxes_to_mask(sa["boxes"], 64, 64) & sa["mask"], sa["mask"])  # box covers mask


def test_shapes_has_all_classes_and_disjoint_splits():
    train = ShapesDataset(split="train", length=300)
    labels = {train[i]["label"] for i in range(300)}
    assert labels == set(range(len(CLASS_NAMES))) and len(CLASS_NAMES) >= 6
    test = ShapesDataset(split="test")
    assert not torch.equal(train[0]["image"], test[0]["image"])


def test_shapes_size_and_selection():
    small = ShapesDataset(split="test", image_size=32, n_samples=7, seed=3)
    assert len(small) == 7 and small[0]["image"].shape == (3, 32, 32)
    assert [s["id"] for s in small] == sorted(s["id"] for s in small)
    with pytest.raises(XattrError):
        ShapesDataset(split="nope")


def test_shape_masks_are_exact_geometry():
    circle = shape_mask(0, 64, (32, 32), 10, 0.0)
    assert abs(circle.sum() - np.pi * 100) / (np.pi * 100) < 0.05
    ring = shape_mask(5, 64, (32, 32), 10, 0.0)
    assert not ring[32, 32] and ring.sum() < circle.sum()


def test_collate_and_digits():
    digits = DigitsDataset(split="test", n_samples=5)
    batch = collate([digits[i] for i in range(5)])
    assert batch["image"].shape == (5, 3, 64, 64) and batch["mask"].shape == (5, 64, 64)
    assert len(batch["boxes"]) == 5 and batch["label"].dtype == torch.long


@pytest.mark.parametrize("n_samples, num_shards", [(10, 3), (32, 4), (5, 5), (None, 7)])
def test_shards_split_the_selection_contiguously_and_near_equally(n_samples, num_shards):
    whole = ShapesDataset(n_samples=n_samples, length=50)
    shards = [ShapesDataset(n_samples=n_samples, length=50, shard=k, num_shards=num_shards) for k in range(num_shards)]
    assert [i for shard in shards for i in shard.indices] == whole.indices  # in order, disjoint, complete
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert [shard.shard_offset for shard in shards] == [sum(sizes[:k]) for k in range(num_shards)]
    again = ShapesDataset(n_samples=n_samples, length=50, shard=num_shards - 1, num_shards=num_shards)
    assert again.indices == shards[-1].indices and again[0]["id"] == shards[-1][0]["id"]
    digits = [DigitsDataset(n_samples=12, shard=k, num_shards=3) for k in range(3)]
    assert [i for shard in digits for i in shard.indices] == DigitsDataset(n_samples=12).indices


@pytest.mark.parametrize("shard, num_shards, expected", [
    (3, 3, "dataset.shard=3 must be in 0..2 for dataset.num_shards=3"),
    (-1, 2, "dataset.shard=-1 must be in 0..1"),
    (0, 0, "dataset.num_shards=0 must be a whole number >= 1"),
    (2, 3, "dataset.num_shards=3 is more than the 2 selected samples: shard 2 would be empty"),
])
def test_bad_shards_are_one_line_errors(shard, num_shards, expected):
    with pytest.raises(XattrError) as error:
        ShapesDataset(n_samples=2, shard=shard, num_shards=num_shards)
    assert expected in str(error.value) and "\n" not in str(error.value)
