"""DiffIB: U-Net batching, per-sample fit (batched == one at a time), method contract, train tasks (resume)."""

from __future__ import annotations

import inspect

import pytest
import torch

from xattr.data import ShapesDataset
from xattr.errors import XattrError
from xattr.methods.base import RunContext
from xattr.methods.diffib import DiffIB, _alpha_forward, fit_alpha_per_sample
from xattr.nets.unet import Denoiser, UNet, init_unet_params, stack_params, unet_apply, unstack_params
from xattr.utils.hooks import count_hooks


def test_grouped_unet_equals_separate_unets():
    x = torch.rand(3, 3, 16, 16)
    ps = [init_unet_params(3, 3, 4, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    grouped = unet_apply(stack_params(ps), x.reshape(1, 9, 16, 16), 3, groups=3).reshape(3, 3, 16, 16)
    separate = torch.cat([unet_apply(p, x[i:i + 1], 3) for i, p in enumerate(ps)])
    assert torch.allclose(grouped, separate, atol=1e-5)
    back = unstack_params(stack_params(ps), 3)
    assert all(torch.equal(back[1][k], ps[1][k]) for k in ps[1])
    stacked = {k: torch.stack([p[k] for p in ps]) for k in ps[0]}
    for batching in ("grouped", "vmap", "loop"):
        assert torch.allclose(_alpha_forward(stacked, x, 3, batching), separate, atol=1e-5)


def test_unet_and_denoiser_shapes_and_errors():
    assert UNet(3, 3, 4, 2)(torch.rand(2, 3, 8, 8)).shape == (2, 3, 8, 8)
    den = Denoiser(3, 4, 2, seed=0)
    z = torch.randn(2, 3, 8, 8)
    assert den(z, torch.zeros_like(z)).shape == z.shape
    # v-parameterisation: at very low SNR eps_hat == z whatever the network outputs
    assert torch.allclose(den(z, torch.full_like(z, -60.0)), z, atol=1e-6)
    with pytest.raises(XattrError):
        UNet(3, 3, 4, 4)(torch.rand(1, 3, 12, 12))


def test_per_sample_batched_fit_equals_one_at_a_time(tiny_cnn, shapes_batch):
    x, y = shapes_batch["image"][:3], shapes_batch["label"][:3]
    kw = dict(steps=6, width=4, depth=2, lr=0.01, seeds=[11, 12, 13])
    batched = fit_alpha_per_sample(tiny_cnn, x, y, **kw)
    single = torch.cat([fit_alpha_per_sample(tiny_cnn, x[i:i + 1], y[i:i + 1], **{**kw, "seeds": [kw["seeds"][i]]})
                        for i in range(3)])
    assert batched.shape == x.shape
    assert torch.allclose(batched, single, atol=1e-3)
    assert (batched - 5.0).abs().max() > 1e-3  # the fit moved alpha away from its initial value


def test_plateau_rule_stops_each_image(tiny_cnn, shapes_batch):
    x, y = shapes_batch["image"][:2], shapes_batch["label"][:2]
    kw = dict(width=4, depth=2, seeds=[0, 1])
    # tol so large nothing counts as improvement: stop after the first step + patience steps
    stopped = fit_alpha_per_sample(tiny_cnn, x, y, steps=1000, patience=3, tol=1e9, **kw)
    fixed = fit_alpha_per_sample(tiny_cnn, x, y, steps=4, patience=1000, **kw)
    assert torch.allclose(stopped, fixed, atol=1e-6)


def test_per_sample_fit_is_adam_on_algorithm_1s_loss(tiny_cnn, shapes_batch):
    """Algorithm 1 with torch.optim.Adam as the reference: the same initial U-Net, the same noise stream, the loss
    CE(f(z), y) + β·mean(α) (Eq. 12); the hand-written masked Adam of the batched fit must take the same steps."""
    from torch.nn import functional as F

    from xattr.info import noise_channel
    from xattr.nets.alpha_unet import init_alpha_unet_params

    x, y = shapes_batch["image"][:1], shapes_batch["label"][:1]
    kw = dict(steps=4, width=4, depth=2, lr=0.05, beta=1.0, alpha_init=5.0, alpha_range=(-10.0, 10.0), seeds=[3],
              patience=1000)   # 4 steps: Adam's sign-like first steps amplify float round-off later (4e-5 at 4, 1e-3 at 8)
    ours = fit_alpha_per_sample(tiny_cnn, x, y, **kw)
    init = init_alpha_unet_params(3, 4, 2, 5.0, (-10.0, 10.0), generator=torch.Generator().manual_seed(3 + 7919))
    params = {k: v[None].clone().requires_grad_(True) for k, v in init.items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=0.05, betas=(0.9, 0.999), eps=1e-8)
    noise = torch.Generator().manual_seed(3)
    tiny_cnn.eval()
    for _ in range(4):
        alpha = _alpha_forward(params, x, 2, "grouped", (-10.0, 10.0))
        z = noise_channel(x, alpha, torch.randn(x.shape[1:], generator=noise)[None])
        loss = F.cross_entropy(tiny_cnn(z), y) + 1.0 * alpha.mean()
        optimizer.zero_grad()
        grads = torch.autograd.grad(loss, list(params.values()))
        for p, g in zip(params.values(), grads):
            p.grad = g
        optimizer.step()
    with torch.no_grad():
        reference = _alpha_forward(params, x, 2, "grouped", (-10.0, 10.0))
    assert (reference - 5.0).abs().max() > 1.0, "the reference fit must move alpha"
    torch.testing.assert_close(ours, reference, rtol=0, atol=2e-4)


def test_batched_fit_with_staggered_stops_equals_one_at_a_time(tiny_cnn, shapes_batch):
    """Images that stop at different steps: a stopped image keeps its parameters (masked update) and its stopping
    loss is its own CE + β·mean(α_b) — not a mean over the batch — so the batch equals each image fitted alone."""
    x, y = shapes_batch["image"][:4], shapes_batch["label"][:4]
    kw = dict(steps=12, width=4, depth=2, lr=0.05, beta=1.0, patience=3, tol=1e-2)   # image 0 stops at step 5
    batched = fit_alpha_per_sample(tiny_cnn, x, y, seeds=[0, 1, 2, 3], **kw)
    single = torch.cat([fit_alpha_per_sample(tiny_cnn, x[i:i + 1], y[i:i + 1], seeds=[i], **kw) for i in range(4)])
    full = fit_alpha_per_sample(tiny_cnn, x, y, seeds=[0, 1, 2, 3], **{**kw, "patience": 1000})
    assert torch.isfinite(batched).all()
    moved_on = (batched - full).abs().flatten(1).amax(1)
    assert (moved_on > 1e-4).any() and (moved_on < 1e-6).any(), f"some images stop early, some do not: {moved_on}"
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("output", ["mmse_integral", "alpha"])
def test_diffib_on_tiny_cnn_returns_finite_maps_and_leaves_model_untouched(tiny_cnn, shapes_batch, output):
    x, y = shapes_batch["image"], shapes_batch["label"]
    flags = [p.requires_grad for p in tiny_cnn.parameters()]
    method = DiffIB(tiny_cnn, steps=5, width=4, depth=2, output=output, n_points=5, n_noise=1)
    method.denoiser = Denoiser(3, 4, 2, seed=0)
    maps = method.attribute(x, y)
    assert maps.shape == x.shape and maps.dtype == torch.float32 and torch.isfinite(maps).all()
    if output == "mmse_integral":
        assert (maps >= 0).all()
    assert count_hooks(tiny_cnn) == 0
    assert [p.requires_grad for p in tiny_cnn.parameters()] == flags and not tiny_cnn.training


def test_diffib_errors(tiny_cnn, shapes_batch):
    with pytest.raises(XattrError):
        DiffIB(tiny_cnn, mode="bogus")
    with pytest.raises(XattrError):
        DiffIB(tiny_cnn, output="bogus")
    method = DiffIB(tiny_cnn, steps=1, width=4, depth=2)
    with pytest.raises(XattrError):  # no denoiser and prepare() not called
        method.attribute(shapes_batch["image"][:1], shapes_batch["label"][:1])
    assert count_hooks(tiny_cnn) == 0
    with pytest.raises(XattrError):
        DiffIB(tiny_cnn, mode="amortized", output="alpha").attribute(shapes_batch["image"][:1],
                                                                      shapes_batch["label"][:1])


def test_prepare_trains_and_caches_denoiser_and_amortized_alpha_unet(tiny_cnn, shapes_batch, tmp_path):
    train = ShapesDataset(split="train", n_samples=8)
    context = RunContext(train_dataset=train, cache_dir=tmp_path, model_name="tiny_cnn", dataset_name="shapes")
    method = DiffIB(tiny_cnn, mode="amortized", width=4, depth=2, n_points=3, n_noise=1,
                    denoiser={"steps": 2, "batch_size": 2, "width": 4, "depth": 2},
                    alpha_unet={"steps": 2, "batch_size": 2})
    method.prepare(context)
    assert list((tmp_path / "denoisers").glob("*.pt")) and list((tmp_path / "alpha_unets").glob("*.pt"))
    assert list((tmp_path / "denoisers").glob("*.loss.png"))
    x, y = shapes_batch["image"], shapes_batch["label"]
    maps = method.attribute(x, y)
    assert maps.shape == x.shape and torch.isfinite(maps).all()
    # a second method with the same settings loads from the cache (no training set needed)
    again = DiffIB(tiny_cnn, mode="amortized", width=4, depth=2, n_points=3, n_noise=1,
                   denoiser={"steps": 2, "batch_size": 2, "width": 4, "depth": 2},
                   alpha_unet={"steps": 2, "batch_size": 2})
    again.prepare(RunContext(train_dataset=None, cache_dir=tmp_path, model_name="tiny_cnn", dataset_name="shapes"))
    assert torch.allclose(again.alpha_net(x), method.alpha_net(x))


def test_denoiser_training_resumes_after_interruption(tmp_path, monkeypatch):
    from xattr.training import _loop
    from xattr.training import denoiser as td

    images = (torch.rand(8, 3, 8, 8) * 255).to(torch.uint8)
    kw = dict(steps=4, batch_size=2, width=4, depth=2, train_size=None, save_every=2, smooth_sigma=1.0, seed=3)
    reference = td.train_denoiser(images, checkpoint=tmp_path / "ref.pt", **kw)
    calls = {"n": 0}
    original = _loop.EMA.update

    def flaky(self, module):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        original(self, module)

    monkeypatch.setattr(_loop.EMA, "update", flaky)
    with pytest.raises(KeyboardInterrupt):
        td.train_denoiser(images, checkpoint=tmp_path / "run.pt", **kw)
    assert (tmp_path / "run.partial.pt").exists()
    monkeypatch.setattr(_loop.EMA, "update", original)
    resumed = td.train_denoiser(images, checkpoint=tmp_path / "run.pt", **kw)
    assert not (tmp_path / "run.partial.pt").exists()
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    loaded = td.load_denoiser(tmp_path / "run.pt")
    z = torch.randn(1, 3, 8, 8)
    assert torch.allclose(loaded(z, torch.zeros_like(z)), resumed(z, torch.zeros_like(z)))


def test_channel_space_is_the_models_standardised_input(tiny_cnn, shapes_batch):
    from xattr.metrics._perturb import make_generator, noise_field
    from xattr.models.standardise import space_tag

    x = shapes_batch["image"]
    view = DiffIB(tiny_cnn).classifier_view(3)
    u = view.standardise(x)
    with torch.no_grad():
        assert torch.allclose(view(u), tiny_cnn(x), atol=1e-5)
    # the channel's pure-noise end (u = eps) is the MNIM "noise-filled image" before its [0,1] clip
    eps = torch.randn(x.shape[1:], generator=make_generator(3))
    field = noise_field(tiny_cnn, tuple(x.shape[1:]), 3, "cpu")
    pixel = (eps * view.std[0] + view.mean[0])
    inside = (pixel > 0) & (pixel < 1)
    assert torch.allclose(field[inside], pixel[inside], atol=1e-6) and inside.float().mean() > 0.9
    pixel_view = DiffIB(tiny_cnn, space="pixel").classifier_view(3)
    assert torch.equal(pixel_view.standardise(x), x)
    assert space_tag(None, None) == "" and space_tag(view.mean.flatten(), view.std.flatten()) == "-imagenet"
    assert space_tag([0.5] * 3, [0.5] * 3).startswith("-n") and space_tag([0.5] * 3, [0.5] * 3) != "-imagenet"
    with pytest.raises(XattrError, match="space"):
        DiffIB(tiny_cnn, space="bogus")


@pytest.mark.parametrize("space, suffix", [("normalized", "-imagenet.pt"), ("pixel", "w4d2.pt")])
def test_denoiser_is_trained_and_cached_in_the_channel_space(tiny_cnn, tmp_path, space, suffix):
    context = RunContext(train_dataset=ShapesDataset(split="train", n_samples=4), cache_dir=tmp_path,
                         model_name="tiny_cnn", dataset_name="shapes")
    DiffIB(tiny_cnn, space=space, denoiser={"steps": 1, "batch_size": 2, "width": 4, "depth": 2}).prepare(context)
    names = [p.name for p in (tmp_path / "denoisers").glob("*.pt")]
    assert len(names) == 1 and names[0].endswith(suffix), names


def test_a_copy_for_another_model_adopts_the_denoiser_of_the_same_space(tiny_cnn):
    import copy

    prepared = DiffIB(tiny_cnn)
    prepared.denoiser = Denoiser(3, 4, 2, seed=0)
    randomised = DiffIB(copy.deepcopy(tiny_cnn))
    randomised.adopt_model_independent(prepared)
    assert randomised.denoiser is prepared.denoiser
    pixel = DiffIB(tiny_cnn, space="pixel")
    pixel.adopt_model_independent(prepared)   # a denoiser trained in another space is not reused
    assert pixel.denoiser is None


# ------------------------------------------------------------------ the paper's promises on a known answer

def _box_diffib(beta: float, **kwargs) -> DiffIB:
    from box_helpers import BoxReader, StandardNormalDenoiser

    method = DiffIB(BoxReader(), beta=beta, steps=80, lr=0.01, width=4, depth=2, patience=1000, n_points=9,
                    n_noise=1, **kwargs)
    method.denoiser = StandardNormalDenoiser()
    return method


def test_alpha_and_eq14_map_put_their_mass_where_the_classifier_looks():
    """Algorithm 1 + Eq. 14 on a classifier that reads only a box: the fit keeps alpha high in the box and drives
    it towards alpha_min elsewhere (the beta * mean(alpha) term has nothing to oppose it there), and the per-pixel
    information map puts most of its mass in the box (36 of 256 pixels: area share 0.14). Pooled over 4 images:
    a single fit can still lose the box to the lower bound (measured on 10 seeds: pooled alpha contrast >= 3.3,
    alpha outside <= -8.1, share inside >= 0.9)."""
    from box_helpers import box_images, box_mask

    x, y = box_images(4), torch.zeros(4, dtype=torch.long)
    method = _box_diffib(beta=0.1)
    inside = box_mask().expand_as(x)
    alpha = method.alpha(x, y)
    alpha_in, alpha_out = alpha[inside].mean().item(), alpha[~inside].mean().item()
    assert alpha_out < -6 and alpha_in > alpha_out + 2, (alpha_in, alpha_out)
    maps = method.attribute(x, y)
    assert (maps >= 0).all()
    share = (maps[inside].sum() / maps.sum()).item()
    assert share > 0.6, f"share of the Eq. 14 mass inside the box {share:.3f} (area share 0.14)"


def test_raising_beta_lowers_the_fitted_information():
    """The IB trade-off of Algorithm 1: on the same images and seeds, a larger beta gives a lower alpha and less
    Eq. 14 information (pooled over 4 images; measured on 10 seeds: alpha lower by >= 0.99, information ratio
    <= 0.41)."""
    from box_helpers import StandardNormalDenoiser, box_images

    from xattr.info import mmse_integral

    x, y = box_images(4, seed=1), torch.zeros(4, dtype=torch.long)
    alphas, infos = [], []
    for beta in (0.03, 0.3):
        method = _box_diffib(beta=beta)
        alpha = method.alpha(x, y)
        u = method.classifier_view(1).standardise(x)
        alphas.append(alpha.mean().item())
        infos.append(mmse_integral(StandardNormalDenoiser(), u, alpha, n_points=9, n_noise=1,
                                   generator=torch.Generator().manual_seed(0)).sum().item())
    assert alphas[1] < alphas[0] - 0.5, f"mean alpha at beta 0.03 / 0.3: {alphas}"
    assert infos[1] < 0.7 * infos[0], f"Eq. 14 information (nats) at beta 0.03 / 0.3: {infos}"


def test_per_sample_fits_defaults_are_the_methods_and_the_yamls():
    """``fit_alpha_per_sample`` called without settings runs Algorithm 1 as ``conf/method/diffib.yaml`` does: every
    parameter it shares with ``DiffIB`` has the same default (and ``DiffIB``'s equal the YAML's,
    ``tests/test_config_defaults.py``)."""
    fit = inspect.signature(fit_alpha_per_sample).parameters
    method = inspect.signature(DiffIB).parameters
    shared = [k for k in fit if k in method and fit[k].default is not inspect.Parameter.empty]
    assert {"beta", "steps", "lr", "width", "depth", "alpha_init", "patience", "tol", "batching"} <= set(shared)
    assert {k: fit[k].default for k in shared} == {k: method[k].default for k in shared}
