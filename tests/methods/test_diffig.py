"""DiffIG (xattr.methods.diffig) on a random-init tiny path model: energies, the sign and weights of guidance, the
unguided case, completeness on a linear model, pass counting, masks and the one-line errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.methods.diffig import DiffIG, region_energy, smoothness_energy, waypoint_indices
from xattr.nets.path_unet import PathUNet, ddim_sample, image_on_grid
from xattr.nets.unet import Denoiser
from xattr.paths import check_schedule, refine_schedule


class Linear(nn.Module):
    """A linear classifier on 3x8x8 images (logit completeness is exact for any path)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 8 * 8, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def method(model=None, **kwargs) -> DiffIG:
    m = DiffIG(model or Linear(), **{"n_paths": 2, "n_steps": 8, "sampling_steps": 4, **kwargs})
    m.path_net = PathUNet(n_steps=4, grid=4, width=8, seed=1)
    return m


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 8, 8, generator=g), torch.tensor([0, 2])


def box(size: int = 4) -> torch.Tensor:
    mask = torch.zeros(2, 1, size, size)
    mask[..., : size // 2, : size // 2] = 1
    return mask


def contrast(s: torch.Tensor, mask: torch.Tensor) -> float:
    """mean S inside the mask − outside, ``s`` ``[B, N, K+1, C', h, w]``, mask ``[B,1,h,w]``."""
    m = mask[:, None, None]
    return float((s * m).sum() / (m.sum() * s.shape[1] * s.shape[2]) -
                  (s * (1 - m)).sum() / ((1 - m).sum() * s.shape[1] * s.shape[2]))


def tv(s: torch.Tensor) -> float:
    return float(smoothness_energy(s.flatten(0, 1)).mean())


def test_energies_rank_schedules_as_asked():
    mask = box()[:1]
    early = torch.zeros(1, 5, 1, 4, 4)
    early[:, 1:] = mask.unsqueeze(1)
    early[:, -1] = 1  # the mask first, the rest at the end
    late = 1 - early.flip(1)
    assert region_energy(early, mask, "early") < region_energy(late, mask, "early")
    assert region_energy(early, mask, "late") > region_energy(late, mask, "late")
    flat = torch.linspace(0, 1, 5).view(1, 5, 1, 1, 1).expand(1, 5, 1, 4, 4)
    assert float(smoothness_energy(flat)) == 0 and float(smoothness_energy(early)) > 0


def test_waypoint_cap_and_rotation():
    assert waypoint_indices(16, 8, 0) != waypoint_indices(16, 8, 1)
    assert all(len(waypoint_indices(16, 8, s)) == 8 and set(waypoint_indices(16, 8, s)) <= set(range(1, 16))
               for s in range(5))
    assert waypoint_indices(4, 8, 3) == [1, 2, 3]


def test_refine_schedule_keeps_a_valid_schedule():
    s = torch.sort(torch.rand(5, 2, 3), dim=0).values
    s[0], s[-1] = 0, 1
    fine = refine_schedule(s, 12, dim=0)
    check_schedule(fine, dim=0, tol=0)
    torch.testing.assert_close(fine[::3], s)
    assert torch.equal(refine_schedule(s, 4, dim=0), s)


def test_region_guidance_reveals_the_mask_in_the_asked_direction(data):
    """Catches a flipped guidance sign and a weight that is not applied."""
    x, target = data
    schedules = {}
    for mode, weight in (("early", 0.3), ("late", 0.3), ("early", 0.0)):
        m = method(energies={"region": {"weight": weight, "mode": mode}})
        m._region_mask = nn.functional.interpolate(box(), size=(8, 8))
        schedules[mode, weight] = m.sample(x, torch.zeros_like(x), target)[0]
    mask = box()
    assert contrast(schedules["early", 0.3], mask) > contrast(schedules["early", 0.0], mask) + 0.05
    assert contrast(schedules["late", 0.3], mask) < contrast(schedules["early", 0.0], mask) - 0.05


def test_more_smoothness_weight_gives_smoother_schedules(data):
    x, target = data
    tvs = [tv(method(energies={"smoothness": {"weight": w}}).sample(x, torch.zeros_like(x), target)[0])
           for w in (0.0, 0.1, 0.4)]
    assert tvs[0] > tvs[1] > tvs[2]


def test_zero_weights_are_unguided_and_faithfulness_changes_the_path(data):
    x, target = data
    plain = method().sample(x, torch.zeros_like(x), target)[0]
    zero = method(energies={"faithfulness": {"weight": 0.0}, "smoothness": {"weight": 0}}).sample(
        x, torch.zeros_like(x), target)[0]
    assert torch.equal(plain, zero)
    guided = method(energies={"faithfulness": {"weight": 0.3}}).sample(x, torch.zeros_like(x), target)[0]
    assert not torch.equal(plain, guided)


def test_faithfulness_guidance_raises_the_target_score_along_the_path(data):
    """The target's mean probability over the (refined) waypoints is higher with faithfulness guidance."""
    x, target = data
    model = Linear()

    def area(weight):
        m = method(model, energies={"faithfulness": {"weight": weight}}, waypoint_cap=3)
        s = refine_schedule(m.sample(x, torch.zeros_like(x), target)[0], 16, dim=2)  # [B,N,17,1,4,4]
        up = nn.functional.interpolate(s.flatten(0, 2), size=(8, 8), mode="bilinear").view(2, 2, 17, 1, 8, 8)
        points = (up * x[:, None, None]).flatten(0, 2)
        with torch.no_grad():
            p = model(points).softmax(1).view(2, 2, 17, -1)
        return float(p.gather(3, target.view(2, 1, 1, 1).expand(2, 2, 17, 1)).mean())

    assert area(0.3) > area(0.0)


def test_complete_on_a_linear_model_and_passes_counted(data):
    x, target = data
    m = method(output="logit", energies={"faithfulness": {"weight": 0.2}}, waypoint_cap=2)
    maps = m.attribute(x, target)
    assert maps.shape == x.shape and torch.isfinite(maps).all()
    d = m.diagnostics()
    assert float(d["completeness_error"].max()) < 1e-4
    # guidance: 4 DDIM steps x 2 waypoints x 2 paths; integral: 2 paths x 8 steps
    assert d["guidance_passes"].tolist() == [16.0, 16.0] and d["classifier_passes"].tolist() == [32.0, 32.0]


def test_on_manifold_runs_with_a_denoiser_and_counts_its_passes(data):
    x, target = data
    m = method(energies={"on_manifold": {"weight": 0.2}}, waypoint_cap=2)
    with pytest.raises(XattrError, match="denoiser"):
        m.attribute(x, target)
    m.denoiser = Denoiser(3, 4, 2, seed=0).eval()
    plain = method().sample(x, torch.zeros_like(x), target)[0]
    assert not torch.equal(m.sample(x, torch.zeros_like(x), target)[0], plain)
    flags = [p.requires_grad for p in m.denoiser.parameters()]
    m.attribute(x, target)
    assert m.diagnostics()["denoiser_passes"].tolist() == [16.0, 16.0]
    assert [p.requires_grad for p in m.denoiser.parameters()] == flags and not m.denoiser.training


def test_region_masks_from_box_and_file_and_errors(data, tmp_path):
    import numpy as np

    x, target = data
    with pytest.raises(XattrError, match="needs a mask"):
        method(energies={"region": {"weight": 0.1}}).attribute(x, target)
    by_box = method(energies={"region": {"weight": 0.1, "box": [0, 0, 0.5, 0.5]}})
    np.save(tmp_path / "m.npy", np.pad(np.ones((4, 4)), ((0, 4), (0, 4))))
    by_file = method(energies={"region": {"weight": 0.1, "file": str(tmp_path / "m.npy")}})
    torch.testing.assert_close(by_box._mask(x), by_file._mask(x))
    torch.testing.assert_close(by_box._mask(x), box())
    for bad in ({"nope": {}}, {"region": {"weight": 1, "mode": "sideways"}}, {"smoothness": {"weight": "nan"}}):
        with pytest.raises(XattrError) as info:
            method(energies=bad)
        assert "\n" not in str(info.value)
    with pytest.raises(XattrError, match="path model"):
        DiffIG(Linear()).attribute(x, target)


class PointMass(nn.Module):
    """The exact predictor of data concentrated on one schedule ``u*``: ``ε̂ = (u_t − √ᾱ_t u*) / √(1−ᾱ_t)``, or
    ``v̂ = √ᾱ_t ε̂ − √(1−ᾱ_t) u*``."""

    def __init__(self, target: torch.Tensor, prediction_type: str = "epsilon"):
        super().__init__()
        from xattr.training.path_diffusion import ddpm_scheduler

        self.n_steps, self.grid, self.channels, self.alpha_range = 4, 4, 1, [0.1, 100.0]
        self.num_train_timesteps, self.beta_schedule = 1000, "squaredcos_cap_v2"
        self.prediction_type, self.image_channels = prediction_type, 0
        self.target = target
        self.a_bar = ddpm_scheduler(self).alphas_cumprod
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, u, t, alpha, image=None):
        a = self.a_bar[t].view(-1, 1, 1, 1).to(u)
        eps = (u - a.sqrt() * self.target) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * self.target if self.prediction_type == "v_prediction" else eps


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_sampler_returns_the_data_of_an_exact_denoiser(data, prediction_type):
    """DDIM with the exact ε or v of a point mass lands on it (catches a wrong x̂0/ε/v conversion or timestep use)."""
    from xattr.nets.path_unet import sample_to_schedule

    x, target = data
    star = torch.linspace(-0.8, 0.8, 3).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    m = method()
    m.path_net = PointMass(star, prediction_type)
    s = m.sample(x, torch.zeros_like(x), target)[0]
    torch.testing.assert_close(s, sample_to_schedule(star, 4).expand_as(s[0, 0][None]).expand_as(s),
                               rtol=0, atol=1e-3)
    m.energies["smoothness"]["weight"] = 1e-9  # the guided branch, with a negligible step: the same point
    torch.testing.assert_close(m.sample(x, torch.zeros_like(x), target)[0], s, rtol=0, atol=1e-3)


def test_an_image_conditioned_path_model_is_trained_for_the_classifier_and_conditions_the_paths(data, tmp_path):
    from xattr.methods.base import RunContext

    x, target = data
    train = [{"image": torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(i))} for i in range(4)]
    tiny = {"steps": 2, "batch_size": 2, "train_size": 4, "grid": 4, "n_steps": 4, "n_breaks": 20, "width": 8,
            "image_conditioned": True, "candidates": 2}
    m = DiffIG(Linear(), n_paths=2, n_steps=8, sampling_steps=4, path_model=tiny)
    m.prepare(RunContext(train_dataset=train, cache_dir=tmp_path, model_name="linear", dataset_name="noise",
                         device="cpu", seed=0))
    assert m.path_net.image_channels == 3
    assert list((tmp_path / "path_models").glob("*-img-linear-noise-64-m2.pt"))  # no spec: 64 px (_input_size)
    noise, alpha = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2)), torch.ones(2)
    own = ddim_sample(m.path_net, noise, alpha, 4, image=image_on_grid(x, 4))
    other = ddim_sample(m.path_net, noise, alpha, 4, image=image_on_grid(x.flip(0), 4))
    assert not torch.allclose(own, other)  # same noise and alpha, other image: other paths
    assert m.attribute(x, target).shape == (2, 3, 8, 8)
