"""DiffIG's path diffusion model: the monotone map between schedules and the diffused space, the DDPM trainer
(checkpoint, loss curve, resume, cache) on tiny grids (a few steps each)."""

from __future__ import annotations

import logging

import pytest
import torch

from xattr.errors import XattrError
from xattr.nets.path_unet import PathUNet, image_on_grid, sample_to_schedule, schedule_to_sample
from xattr.paths import check_schedule
from xattr.training.path_diffusion import (
    PathDiffusionTrainer,
    best_of_draws,
    draw_bank,
    draw_schedule,
    load_or_train_path_model,
)
from xattr.utils import cache

TINY = {"steps": 3, "batch_size": 2, "train_size": 4, "grid": 4, "n_steps": 4, "n_breaks": 20, "width": 8,
        "save_every": 1}


def test_any_sample_maps_to_a_monotone_schedule_with_exact_endpoints():
    u = 3 * torch.randn(5, 7 * 2, 4, 4)
    s = sample_to_schedule(u, 8)
    assert s.shape == (5, 9, 2, 4, 4)
    check_schedule(s, dim=1, tol=0)
    assert (s[:, 1:-1] == 0).any() and (s[:, 1:-1] == 1).any()  # clipping gives exact zero increments


def test_the_map_is_the_projection_onto_valid_schedules_and_does_not_bias_noisy_samples_upward():
    """Noise on a valid schedule (away from 0 and 1) keeps its per-pixel mean over k through the map, and the map's
    result is at least as close to the noisy sample as any valid schedule tried (a cumulative max raises every
    violation to the running maximum: its mean moves up)."""
    g = torch.Generator().manual_seed(0)
    valid = torch.linspace(0.3, 0.7, 7).view(1, 7, 1, 1).expand(64, 7, 4, 4)
    noisy = valid + 0.05 * torch.randn(64, 7, 4, 4, generator=g)
    s = sample_to_schedule(2 * noisy - 1, 8)
    torch.testing.assert_close(s[:, 1:-1, 0].mean(1), noisy.mean(1), rtol=0, atol=1e-5)
    distance = (s[:, 1:-1, 0] - noisy).pow(2).sum(1)
    for other in (valid, torch.cummax(noisy.clamp(0, 1), 1).values):
        assert (distance <= (other - noisy).pow(2).sum(1) + 1e-6).all()


@pytest.mark.parametrize("alpha", [0.01, 1.0, 100.0])
def test_stick_breaking_draws_are_fixed_points_of_the_map(alpha):
    """Training targets (flat runs included: small alpha jumps once) come back unchanged."""
    s = draw_schedule(4, 8, 1, alpha, seed=3, n_breaks=50)[None]
    back = sample_to_schedule(schedule_to_sample(s), 8)
    torch.testing.assert_close(back, s, rtol=0, atol=1e-6)
    if alpha == 0.01:
        assert (s.diff(dim=1) == 0).float().mean() > 0.5  # exact zero increments are in the data


def test_alpha_conditioning_changes_the_prediction():
    net = PathUNet(n_steps=4, grid=4, width=8)
    u, t = torch.randn(2, 3, 4, 4), torch.tensor([500, 500])
    with torch.no_grad():
        a, b = net(u, t, torch.tensor([0.1, 0.1])), net(u, t, torch.tensor([100.0, 100.0]))
    assert not torch.allclose(a, b)


def test_bank_is_reproducible_and_alpha_in_range():
    s1, a1 = draw_bank(3, 4, 4, 1, (0.5, 2.0), seed=1, n_breaks=20, progress=False)
    s2, a2 = draw_bank(3, 4, 4, 1, (0.5, 2.0), seed=1, n_breaks=20, progress=False)
    assert torch.equal(s1, s2) and torch.equal(a1, a2) and ((a1 >= 0.5) & (a1 <= 2.0)).all()
    check_schedule(s1, dim=1)


def test_fit_writes_checkpoint_and_loss_curve_and_the_cache_loads_it(tmp_path, monkeypatch, caplog):
    """Other training values (steps, lr: not in the cache name) load the entry as it is, with one warning."""
    net = load_or_train_path_model(tmp_path, progress=False, **TINY)
    path = PathDiffusionTrainer.from_conf(**TINY).filled().checkpoint(tmp_path)
    assert path.exists() and path.with_suffix(".loss.png").exists() and not path.with_suffix(".partial.pt").exists()
    state = cache.read(path, "path_diffusion")
    assert state["config"] == net.config() and state["meta"]["steps"] == 3

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache entry")

    monkeypatch.setattr(PathDiffusionTrainer, "fit", no_training)
    with caplog.at_level(logging.WARNING, logger="xattr.training"):
        again = load_or_train_path_model(tmp_path, progress=False, **TINY)
        assert not [r for r in caplog.records if "trained with" in r.getMessage()]
        longer = load_or_train_path_model(tmp_path, progress=False, **{**TINY, "steps": 5, "lr": 0.01})
    for p, q, r in zip(net.state_dict().values(), again.state_dict().values(), longer.state_dict().values()):
        assert torch.equal(p, q) and torch.equal(p, r)
    warnings = [r.getMessage() for r in caplog.records if "trained with" in r.getMessage()]
    assert len(warnings) == 1 and "steps=3 (asked 5)" in warnings[0] and "lr=0.001 (asked 0.01)" in warnings[0]


def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    trainer = PathDiffusionTrainer.from_conf(**TINY)
    straight = trainer.fit(checkpoint=tmp_path / "a.pt", progress=False)

    calls = {"n": 0}
    original = PathDiffusionTrainer.draws

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(PathDiffusionTrainer, "draws", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(checkpoint=tmp_path / "b.pt", progress=False)
    assert (tmp_path / "b.partial.pt").exists()
    monkeypatch.setattr(PathDiffusionTrainer, "draws", original)
    resumed = trainer.fit(checkpoint=tmp_path / "b.pt", progress=False)
    for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q)


class LeftHalfReader(torch.nn.Module):
    """Class 0's logit is 10 × the mean of the left half of the image minus 5; class 1's is 0."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        left = x[..., : x.shape[-1] // 2].mean((1, 2, 3))
        return torch.stack([self.scale * left - 5, torch.zeros_like(left)], 1)


def half_first(k_steps: int, left_first: bool) -> torch.Tensor:
    """A 4×4-grid schedule ``[K+1, 1, 4, 4]`` revealing one half at ``k = 1`` and the other at ``k = K``."""
    s = torch.zeros(k_steps + 1, 1, 4, 4)
    first = (slice(None), slice(0, 2)) if left_first else (slice(None), slice(2, 4))
    s[1:, 0][(slice(None), *first)] = 1
    s[-1] = 1
    return s


def test_best_of_draws_picks_the_draw_that_reveals_what_the_classifier_reads_first():
    bank = torch.stack([half_first(4, left_first=False), half_first(4, left_first=True)])
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.8
    best = best_of_draws(LeftHalfReader(), images, bank, candidates=2, seed=0, progress=False)
    assert best.tolist() == [1, 1, 1]


def test_an_image_conditioned_net_reads_the_image_and_asks_for_it():
    net = PathUNet(n_steps=4, grid=4, width=8, image_channels=3)
    u, t, a = torch.randn(2, 3, 4, 4), torch.tensor([500, 500]), torch.tensor([1.0, 1.0])
    images = image_on_grid(torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)), 4)
    with torch.no_grad():
        assert not torch.allclose(net(u, t, a, images), net(u, t, a, -images))
    with pytest.raises(XattrError, match="image-conditioned"):
        net(u, t, a)


def test_image_conditioned_training_is_cached_per_source_and_needs_a_classifier(tmp_path):
    from xattr.data import ShapesDataset

    hparams = {**TINY, "image_conditioned": True, "candidates": 2}
    data = ShapesDataset("train", image_size=16, length=4, n_samples=None)
    with pytest.raises(XattrError, match="classifier"):
        load_or_train_path_model(tmp_path, progress=False, image_source="left-shapes-16", **hparams)
    net = load_or_train_path_model(tmp_path, progress=False, classifier=LeftHalfReader(), train_dataset=data,
                                   image_source="left-shapes-16", **hparams)
    assert net.image_channels == 3
    path = PathDiffusionTrainer.from_conf(**hparams).filled().checkpoint(tmp_path, "left-shapes-16")
    assert path.exists() and path.name.endswith("-img-left-shapes-16-m2.pt")
    assert not PathDiffusionTrainer.from_conf(**TINY).filled().checkpoint(tmp_path).exists()
