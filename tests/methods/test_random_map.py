"""random_map: the chance row of removal metrics."""

from __future__ import annotations

import torch

from xattr.methods.random_map import RandomMap
from xattr.metrics._perturb import rank_units


def test_random_map_is_uniform_per_element_and_the_same_in_any_batch(tiny_cnn):
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    method = RandomMap(tiny_cnn, seed=0)
    maps = method.attribute(x, torch.tensor([0, 1, 2, 3]))
    assert maps.shape == x.shape and maps.min() >= 0 and maps.max() <= 1
    assert abs(maps.mean().item() - 0.5) < 0.01 and abs(maps.var().item() - 1 / 12) < 0.005
    torch.testing.assert_close(method.attribute(x[2:3], torch.tensor([5])), maps[2:3], rtol=0, atol=0)
    assert not torch.equal(RandomMap(tiny_cnn, seed=1).attribute(x[:1], torch.tensor([0])), maps[:1])
    # the element ranking a removal metric reads is a permutation unrelated to the image
    rank = rank_units(maps, 0).flatten(1).float()
    content = x.flatten(1)
    for b in range(4):
        assert abs(torch.corrcoef(torch.stack([rank[b], content[b]]))[0, 1].item()) < 0.05
