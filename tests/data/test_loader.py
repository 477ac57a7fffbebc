"""The run task's DataLoader: batches at the rows asked for, the same with or without workers."""

from __future__ import annotations

import pytest
import torch

from xattr.data import ShapesDataset, collate
from xattr.data.loader import batch_loader, resolve_pin_memory, worker_message
from xattr.errors import XattrError


@pytest.fixture(scope="module")
def dataset():
    return ShapesDataset(split="test", n_samples=12, image_size=32)


def test_batches_are_the_rows_asked_for_in_order(dataset):
    rows = [[0, 1, 2], [7, 8], [3]]
    for got, want in zip(batch_loader(dataset, rows), rows, strict=True):
        expected = collate([dataset[i] for i in want])
        assert got["id"] == expected["id"]
        assert torch.equal(got["image"], expected["image"]) and torch.equal(got["label"], expected["label"])


def test_worker_processes_load_the_same_batches(dataset):
    rows = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    inline = list(batch_loader(dataset, rows))
    workers = list(batch_loader(dataset, rows, num_workers=2, prefetch_factor=1))
    assert [b["id"] for b in workers] == [b["id"] for b in inline]
    assert all(torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
               for a, b in zip(inline, workers))


class BrokenDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        raise XattrError(f"image {index} of dataset broken is unreadable; remove it")


def test_a_dataset_error_in_a_worker_stays_one_line():
    with pytest.raises(XattrError) as error:
        list(batch_loader(BrokenDataset(), [[0, 1]], num_workers=1))
    assert str(error.value) == "image 0 of dataset broken is unreadable; remove it"
    assert worker_message("plain line") == "plain line"


def test_pin_memory_auto_pins_for_cuda_only_and_bad_values_are_named():
    assert resolve_pin_memory("auto", "cuda") is True
    assert resolve_pin_memory("auto", "cpu") is False
    assert resolve_pin_memory(True, "cpu") is True
    with pytest.raises(XattrError, match="loader.pin_memory='yes'"):
        resolve_pin_memory("yes", "cpu")
    with pytest.raises(XattrError, match="loader.num_workers=-1"):
        list(batch_loader(BrokenDataset(), [[0]], num_workers=-1))
