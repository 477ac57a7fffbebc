"""Atomic writes, hook context managers, input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xattr.errors import XattrError
from xattr.utils.hooks import count_hooks, forward_hook
from xattr.utils.io import atomic_save_npz, atomic_write_text
from xattr.utils.validate import check_images, check_maps, check_targets


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello")
    atomic_save_npz(tmp_path / "m.npz", {"x": np.ones(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "m.npz"]
    assert np.load(tmp_path / "m.npz")["x"].sum() == 3


def test_hook_removed_after_exception(tiny_cnn):
    with pytest.raises(RuntimeError), forward_hook(tiny_cnn.net.features[0], lambda m, i, o: None):
        assert count_hooks(tiny_cnn) == 1
        raise RuntimeError("boom")
    assert count_hooks(tiny_cnn) == 0


def test_validation_messages():
    with pytest.raises(XattrError, match="NaN"):
        check_images(torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(XattrError, match="dataset.image_size"):
        check_images(torch.rand(1, 3, 8, 8), input_size=(64, 64))
    with pytest.raises(XattrError, match="out of range"):
        check_targets(torch.tensor([7]), 1, num_classes=6)
    with pytest.raises(XattrError, match="NaN"):
        check_maps(torch.full((1, 1, 8, 8), float("nan")), torch.rand(1, 3, 8, 8))


def test_atomic_torch_save_stores_detached_host_tensors_in_the_same_structure(tmp_path):
    import torch

    from xattr.utils.io import atomic_torch_save, load_torch_file

    weight = torch.ones(2, requires_grad=True)
    atomic_torch_save(tmp_path / "s.pt", {"w": weight * 2, "nested": [(weight, 3)], "name": "x"})
    state = load_torch_file(tmp_path / "s.pt", name="state", fix="delete it")
    assert state["name"] == "x" and isinstance(state["nested"][0], tuple) and state["nested"][0][1] == 3
    assert not state["w"].requires_grad and state["w"].device.type == "cpu" and torch.equal(state["w"], weight * 2)
