"""DiffID with known answers: a model that reads one pixel, the sign of the map, perfect vs inverted maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.metrics.diffid import DiffID, fill_with_kept_mean


class OnePixel(nn.Module):
    """Class 1 iff pixel (0, 2, 3) is above 0.5, else class 0."""

    def forward(self, x):
        v = x[:, 0, 2, 3] - 0.5
        return torch.stack([-v, v], 1)


def images():
    x = torch.full((2, 3, 6, 6), 0.2)
    x[:, 0, 2, 3] = 0.9  # the pixel that makes it class 1
    return x, torch.tensor([1, 1])


def test_perfect_map_scores_one_and_inverted_map_minus_one():
    x, target = images()
    perfect = torch.zeros_like(x)
    perfect[:, 0, 2, 3] = 1.0
    result = DiffID()(OnePixel(), x, perfect, target)
    # insertion keeps the pixel at every ratio (class 1); deletion removes it first (mean 0.2 of the rest: class 0)
    assert result["insertion_accuracy"].tolist() == [1.0, 1.0] and result["deletion_accuracy"].tolist() == [0.0, 0.0]
    assert result["diffid"].tolist() == [1.0, 1.0]
    inverted = DiffID()(OnePixel(), x, 1.0 - perfect, target)
    assert inverted["diffid"].tolist() == [-1.0, -1.0]


def test_ranking_uses_the_magnitude_not_the_sign():
    x, target = images()
    negative = torch.zeros_like(x)
    negative[:, 0, 2, 3] = -5.0
    assert DiffID()(OnePixel(), x, negative, target)["diffid"].tolist() == [1.0, 1.0]


def test_removed_elements_take_the_kept_mean_per_channel():
    x = torch.arange(8.0).view(1, 2, 2, 2) / 10
    keep = torch.tensor([[[[True, False], [False, False]], [[True, True], [False, False]]]])
    out = fill_with_kept_mean(x, keep)
    assert torch.allclose(out[0, 0], torch.full((2, 2), 0.0))  # channel 0 keeps only 0.0
    assert torch.allclose(out[0, 1], torch.tensor([[0.4, 0.5], [0.45, 0.45]]))
    empty = fill_with_kept_mean(x, torch.zeros_like(keep))
    assert torch.allclose(empty[0, 0], torch.full((2, 2), 0.15))  # nothing kept: the channel mean
    one = fill_with_kept_mean(x, torch.tensor([[[[False, False], [False, True]], [[False, True], [False, False]]]]))
    assert torch.allclose(one[0, 0], torch.full((2, 2), 0.3)) and torch.allclose(one[0, 1], torch.full((2, 2), 0.5))


def test_pixel_maps_and_bad_ratios():
    x, target = images()
    pixel = torch.zeros(2, 1, 6, 6)
    pixel[:, 0, 2, 3] = 1.0
    assert DiffID()(OnePixel(), x, pixel, target)["diffid"].tolist() == [1.0, 1.0]
    with pytest.raises(XattrError, match="ratios"):
        DiffID(ratios=[0.0, 0.5])
