"""Path core: waypoints in blocks, the three rules, completeness, schedules, baselines' blur vs scipy."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.paths import (
    GeneratorPath,
    SchedulePath,
    StraightPath,
    completeness_error,
    gaussian_blur,
    make_baseline,
    path_attribution,
    waypoint_nodes,
)


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5)).double()


def smooth_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 5)).double()


@pytest.fixture()
def batch():
    torch.manual_seed(1)
    return torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.tensor([1, 3])


@pytest.mark.parametrize("rule", ["left", "right", "trapezoid"])
def test_linear_logit_completeness_is_exact_for_every_rule(batch, rule):
    x, target = batch
    result = path_attribution(linear_model(), x, target, n_steps=3, rule=rule, output="logit")
    assert result.completeness_error.max() < 1e-10
    w = linear_model()[1].weight.detach()[target].view(2, 3, 8, 8)
    torch.testing.assert_close(result.attribution, w * x)  # IG of a linear model: w ⊙ (x − 0)


def test_left_riemann_error_shrinks_with_steps(batch):
    x, target = batch
    errors = [float(path_attribution(linear_model(), x, target, n_steps=k, output="probability")
                    .completeness_error.max()) for k in (4, 16, 64)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.25 * errors[0]
    trap = float(path_attribution(linear_model(), x, target, n_steps=64, rule="trapezoid").completeness_error.max())
    assert trap < errors[2] / 10  # second order beats first order


def test_chunking_and_batching_do_not_change_the_result(batch):
    x, target = batch
    model = smooth_model()
    whole = path_attribution(model, x, target, n_steps=10, chunk=1000)
    pieces = path_attribution(model, x, target, n_steps=10, chunk=3)
    single = path_attribution(model, x[1:], target[1:], n_steps=10, chunk=1)
    torch.testing.assert_close(whole.attribution, pieces.attribution)
    torch.testing.assert_close(whole.attribution[1:], single.attribution)
    assert whole.gradient_calls == pieces.gradient_calls == 10


def test_completeness_error_formula():
    attribution = torch.full((1, 1, 2, 2), 0.5)  # Σ A = 2
    error = completeness_error(attribution, torch.tensor([3.0]), torch.tensor([0.5]))  # gap 2.5
    torch.testing.assert_close(error, torch.tensor([0.2]))


def test_rules_read_gradients_where_they_say():
    x, b = torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)
    path = StraightPath(b, x, 4)
    left = [(p.flatten().tolist(), d.flatten().tolist()) for p, d in waypoint_nodes(path, "left", per_chunk=2)]
    assert [v for p, _ in left for v in p] == [0.0, 0.25, 0.5, 0.75]
    right = torch.cat([p.flatten() for p, _ in waypoint_nodes(path, "right", per_chunk=3)])
    assert right.tolist() == [0.25, 0.5, 0.75, 1.0]
    trap = torch.cat([d.flatten() for _, d in waypoint_nodes(path, "trapezoid", per_chunk=2)])
    assert trap.tolist() == [0.125, 0.25, 0.25, 0.25, 0.125]


def test_schedule_path_upsamples_and_checks(batch):
    x, target = batch
    b = torch.zeros_like(x)
    s = torch.linspace(0, 1, 5, dtype=torch.float64).view(5, 1, 1, 1).expand(5, 1, 2, 2)
    straight = StraightPath(b, x, 4).block(0, 5)
    for mode in ("bilinear", "nearest"):
        torch.testing.assert_close(SchedulePath(b, x, s, mode=mode).block(0, 5), straight)
    per_image = torch.stack([s, s.flip(0).neg().add(1)])  # [B,K+1,1,2,2], both straight
    assert SchedulePath(b, x, per_image).block(2, 3).shape == (1, 2, 3, 8, 8)
    with pytest.raises(XattrError, match="monotone"):
        SchedulePath(b, x, s.flip(0))
    # any monotone schedule keeps completeness exact on a linear model
    rand = torch.rand(6, 3, 4, 4, dtype=torch.float64).cumsum(0)
    rand = torch.cat([torch.zeros(1, 3, 4, 4, dtype=torch.float64), rand / rand[-1:]])
    result = path_attribution(linear_model(), x, target, SchedulePath(b, x, rand), output="logit")
    assert result.completeness_error.max() < 1e-10


def test_generator_path_and_range_errors(batch):
    x, _ = batch
    straight = StraightPath(0.0, x, 4)
    lazy = GeneratorPath(straight.block, 4)
    torch.testing.assert_close(lazy.end, x)
    with pytest.raises(XattrError, match="outside"):
        lazy.block(0, 6)


def test_blur_matches_scipy_and_baselines():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(1, 3, 9, 11, dtype=torch.float64)
    for sigma, padding, mode in ((1.5, "zero", "constant"), (30.0, "zero", "constant"), (2.0, "replicate", "nearest")):
        ours = gaussian_blur(x, sigma, padding)[0].permute(1, 2, 0).numpy()
        ref = ndimage.gaussian_filter(x[0].permute(1, 2, 0).numpy(), sigma=[sigma, sigma, 0], mode=mode)
        assert abs(ours - ref).max() < 1e-12, (sigma, padding)
    assert make_baseline(x, "black").abs().sum() == 0
    noise = make_baseline(x, "uniform", seed=3)
    assert noise.shape == x.shape and 0 <= noise.min() and noise.max() <= 1
    torch.testing.assert_close(make_baseline(torch.cat([x, x]), "uniform", seed=3)[1:], noise)
    with pytest.raises(XattrError, match="expected_gradients"):
        make_baseline(x, "dataset")
