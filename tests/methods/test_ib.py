"""IBA, InputIBA, HSIC-Attribution, RISE and the shared bottleneck core (xattr.info.bottleneck,
xattr.info.feature_statistics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.distributions import Normal, kl_divergence

from xattr.data import ShapesDataset
from xattr.errors import XattrError
from xattr.info.bottleneck import SpatialGaussianSmoothing, bits, bottleneck_sample, kl_capacity
from xattr.info.feature_statistics import WelfordEstimator, feature_statistics
from xattr.methods.base import RunContext
from xattr.methods.hsic import HSIC, hsic_dirac_rbf, hsic_lhs_masks
from xattr.methods.iba import IBA
from xattr.methods.input_iba import InputIBA, kl_capacity_given_mask
from xattr.methods.rise import RISE, rise_masks
from xattr.utils.hooks import count_hooks, forward_hook
from xattr.utils.seed import make_generator


@pytest.fixture(scope="module")
def train_small():
    return ShapesDataset("train", n_samples=48)


@pytest.fixture()
def stats(tiny_cnn, train_small):
    return feature_statistics(tiny_cnn, "bottleneck", train_small, n_samples=48, batch_size=16, progress=False)


# -- shared core -----------------------------------------------------------------------------------
def test_welford_equals_torch_mean_std():
    torch.manual_seed(0)
    data = torch.randn(53, 3, 4, 5) * 3 + 7
    data[:, 0, 0, 0] = 0.0
    data[:2, 1, 1, 1] = 0.0
    estimator = WelfordEstimator()
    for chunk in torch.split(data, [1, 10, 17, 25]):
        estimator.update(chunk)
    assert estimator.n_samples == 53
    torch.testing.assert_close(estimator.mean, data.mean(0), rtol=0, atol=1e-5)
    torch.testing.assert_close(estimator.std, data.std(0), rtol=0, atol=1e-5)
    assert estimator.active_fraction[0, 0, 0] == 0
    assert estimator.active_fraction[1, 1, 1] == pytest.approx(51 / 53)
    assert not estimator.active_mask()[0, 0, 0] and estimator.active_mask()[1, 1, 1]


def test_kl_capacity_matches_torch_distributions():
    torch.manual_seed(0)
    shape = (2, 4, 5, 5)
    r, mu = torch.randn(shape, dtype=torch.float64) * 2, torch.randn(shape, dtype=torch.float64)
    sigma = torch.rand(shape, dtype=torch.float64) + 0.05
    lam = torch.rand(shape, dtype=torch.float64) * 0.999
    direct = kl_divergence(Normal(lam * r + (1 - lam) * mu, (1 - lam) * sigma), Normal(mu, sigma))
    torch.testing.assert_close(kl_capacity(r, lam, mu, sigma), direct, rtol=1e-10, atol=1e-10)
    # λ = 0 passes no information
    assert kl_capacity(r, torch.zeros_like(r), mu, sigma).abs().max() < 1e-12


def test_input_kl_matches_torch_distributions():
    torch.manual_seed(1)
    shape = (3, 3, 6, 6)
    x = torch.randn(shape, dtype=torch.float64)
    m = torch.rand(shape, dtype=torch.float64) * 0.99
    lam = torch.rand(shape, dtype=torch.float64) * 0.99
    # posterior N(λx, (1-λ)²), prior = the GAN-mask restriction N(m x, (1-m λ)²)... as the reference writes it
    direct = kl_divergence(Normal(lam * x, 1 - lam), Normal(lam * m * x, 1 - m * lam))
    torch.testing.assert_close(kl_capacity_given_mask(x, m, lam, 0.0, 1.0), direct, rtol=1e-9, atol=1e-9)


def test_bottleneck_sample_moments_and_smoothing():
    gen = make_generator(0)
    r = torch.full((20000,), 2.0)
    z = bottleneck_sample(r, torch.tensor(0.25), torch.tensor(1.0), torch.tensor(3.0), generator=gen)
    assert z.mean().item() == pytest.approx(0.25 * 2 + 0.75 * 1, abs=0.05)
    assert z.std().item() == pytest.approx(0.75 * 3, rel=0.03)
    smooth = SpatialGaussianSmoothing(1.0)
    ones = torch.ones(2, 3, 7, 7)
    torch.testing.assert_close(smooth(ones), ones)
    spike = torch.zeros(1, 1, 9, 9)
    spike[0, 0, 4, 4] = 1
    out = smooth(spike)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-6) and out[0, 0, 4, 4] == out.max()


def iba_spatial_gaussian_kernel(sigma: float) -> torch.Tensor:
    """IBA's ``_SpatialGaussianKernel`` (Schulz et al. 2020, reference code) written as it builds it: size
    ``2 * round(2 sigma) + 1``, a 2-D grid of squared distances to the centre ``(size - 1) / 2``, normalised."""
    size = int(round(2 * sigma)) * 2 + 1
    coords = torch.arange(size, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    centre = (size - 1) / 2.0
    kernel = torch.exp(-((xx - centre) ** 2 + (yy - centre) ** 2) / (2 * sigma ** 2))
    return kernel / kernel.sum()


@pytest.mark.parametrize("sigma", [0.6, 1.0, 2.0])
def test_spatial_smoothing_is_ibas_gaussian_kernel_with_reflection(sigma):
    """A spike away from the border comes out as IBA's kernel (its size and width, centred); near the border
    the map is reflected (IBA's ``ReflectionPad2d``); the default sigma is IBA's 1."""
    kernel = iba_spatial_gaussian_kernel(sigma)
    half = (kernel.shape[0] - 1) // 2
    smooth = SpatialGaussianSmoothing(sigma)
    spike = torch.zeros(1, 1, 15, 15, dtype=torch.float64)
    spike[0, 0, 7, 7] = 1.0
    expected = torch.zeros(15, 15, dtype=torch.float64)
    expected[7 - half:8 + half, 7 - half:8 + half] = kernel
    torch.testing.assert_close(smooth(spike)[0, 0], expected, rtol=1e-6, atol=1e-9)
    maps = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    padded = torch.nn.functional.pad(maps.reshape(6, 1, 9, 11), (half,) * 4, mode="reflect")
    reference = torch.nn.functional.conv2d(padded, kernel[None, None]).reshape(2, 3, 9, 11)
    torch.testing.assert_close(smooth(maps), reference, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(SpatialGaussianSmoothing()(maps), SpatialGaussianSmoothing(1.0)(maps))


def test_bits_are_nats_over_log_2():
    torch.testing.assert_close(bits(torch.tensor([math.log(2.0), math.log(8.0)])), torch.tensor([1.0, 3.0]))


def test_feature_statistics_cached(tiny_cnn, train_small, tmp_path):
    first = feature_statistics(tiny_cnn, "bottleneck", train_small, n_samples=20, batch_size=8,
                               cache_dir=tmp_path, cache_key="k", progress=False)
    assert first["mean"].dim() == 3 and first["mean"].shape[-2:] == (16, 16) and first["n_samples"] == 20
    assert (tmp_path / "feature_stats" / "k.pt").is_file()
    again = feature_statistics(tiny_cnn, "bottleneck", train_small, n_samples=20,
                               cache_dir=tmp_path, cache_key="k", progress=False)
    assert torch.equal(first["std"], again["std"]) and count_hooks(tiny_cnn) == 0
    # direct check against stacked features
    feats = []
    with forward_hook(tiny_cnn.get_layer("bottleneck"), lambda m, i, o: feats.append(o)), torch.no_grad():
        images = torch.stack([train_small[i]["image"] for i in range(len(train_small))])
        tiny_cnn(images)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(train_small), generator=g)[:20].sort().values
    torch.testing.assert_close(first["mean"], feats[0][idx].mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(first["std"], feats[0][idx].std(0), atol=1e-5, rtol=0)


# -- IBA -------------------------------------------------------------------------------------------
def test_iba_batched_equals_one_by_one(tiny_cnn, stats, shapes_batch):
    x, y = shapes_batch["image"][:3], shapes_batch["label"][:3]
    iba = IBA(tiny_cnn, batch_size=4, progress=False)  # 10 steps as the paper, fewer draws for speed
    iba.set_feature_statistics(stats)
    joint = iba.attribute(x, y)
    alone = torch.cat([iba.attribute(x[i:i + 1], y[i:i + 1]) for i in range(3)])
    assert joint.shape == (3, 1, 64, 64) and joint.dtype == torch.float32
    assert torch.isfinite(joint).all() and joint.min() >= 0 and joint.max() > 0
    torch.testing.assert_close(joint, alone, rtol=0, atol=1e-5)
    # the information loss falls over the steps (λ moves away from 1)
    assert (iba.history["information_loss"][-1] < iba.history["information_loss"][0]).all()


def test_iba_leaves_model_untouched(tiny_cnn, stats, shapes_batch):
    x, y = shapes_batch["image"], shapes_batch["label"]
    flags = [p.requires_grad for p in tiny_cnn.parameters()]
    before = tiny_cnn(x).detach().clone()
    iba = IBA(tiny_cnn, optimization_steps=2, batch_size=3, progress=False)
    iba.set_feature_statistics(stats)
    iba.attribute(x, y)
    assert count_hooks(tiny_cnn) == 0 and not tiny_cnn.training
    assert torch.equal(tiny_cnn(x), before)
    assert [p.requires_grad for p in tiny_cnn.parameters()] == flags
    assert all(p.grad is None for p in tiny_cnn.parameters())

    calls = {"n": 0}

    def explode(_module, _inputs, _output):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")

    with forward_hook(tiny_cnn.get_layer("features.20"), explode):
        with pytest.raises(RuntimeError, match="boom"):
            iba.attribute(x, y)
    assert count_hooks(tiny_cnn) == 0
    assert torch.equal(tiny_cnn(x), before)
    assert [p.requires_grad for p in tiny_cnn.parameters()] == flags


def test_iba_errors(tiny_cnn, shapes_batch):
    iba = IBA(tiny_cnn, progress=False)
    with pytest.raises(XattrError, match="prepare"):
        iba.attribute(shapes_batch["image"], shapes_batch["label"])
    with pytest.raises(XattrError, match="not found"):
        IBA(tiny_cnn, layer="features.99")


def test_iba_prepare_caches_stats(tiny_cnn, train_small, tmp_path, shapes_batch):
    context = RunContext(train_dataset=train_small, cache_dir=tmp_path, model_name="tiny_cnn", dataset_name="shapes")
    iba = IBA(tiny_cnn, n_samples=16, optimization_steps=1, batch_size=2, progress=False)
    iba.prepare(context)
    files = list((tmp_path / "feature_stats").glob("*.pt"))
    assert len(files) == 1 and "features.13" in files[0].name and "n16" in files[0].name
    assert iba.attribute(shapes_batch["image"][:1], shapes_batch["label"][:1]).shape == (1, 1, 64, 64)


# -- InputIBA --------------------------------------------------------------------------------------
def test_input_iba_shapes_determinism_batch_independence(tiny_cnn, stats, shapes_batch):
    x, y = shapes_batch["image"][:2], shapes_batch["label"][:2]
    method = InputIBA(tiny_cnn, feat_steps=2, feat_batch_size=2, gan_dataset_size=8, gan_sub_dataset_size=4,
                      gan_batch_size=4, gan_epochs=1, gan_critic_iter=1, input_steps=2, input_batch_size=2,
                      progress=False)
    method.set_feature_statistics(stats)
    maps = method.attribute(x, y)
    assert maps.shape == (2, 1, 64, 64) and torch.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1
    assert method.buffers["gan_mask"].shape == (2, 3, 64, 64)
    assert torch.equal(maps, method.attribute(x, y))
    torch.testing.assert_close(method.attribute(x[1:], y[1:]), maps[1:], rtol=0, atol=1e-4)
    assert count_hooks(tiny_cnn) == 0 and all(p.grad is None for p in tiny_cnn.parameters())


# -- HSIC / RISE -----------------------------------------------------------------------------------
class OneCell(nn.Module):
    """Logits depend only on the mean of grid cell (row, col) of a 7x7 grid on 64x64 inputs."""

    def __init__(self, row: int, col: int, grid: int = 7, size: int = 64):
        super().__init__()
        edges = np.linspace(0, size, grid + 1).round().astype(int)
        self.rows = slice(edges[row], edges[row + 1])
        self.cols = slice(edges[col], edges[col + 1])

    def forward(self, x):
        value = x[:, :, self.rows, self.cols].mean(dim=(1, 2, 3))
        return torch.stack([4 * value, -4 * value, torch.zeros_like(value)], dim=1)


def _cell_of_max(maps: torch.Tensor, grid: int = 7) -> tuple[int, int]:
    flat = int(maps.flatten().argmax())
    row, col = divmod(flat, maps.shape[-1])
    edges = np.linspace(0, maps.shape[-1], grid + 1)
    return int(np.searchsorted(edges, row, side="right") - 1), int(np.searchsorted(edges, col, side="right") - 1)


@pytest.mark.parametrize("cell", [(2, 5), (6, 0)])
def test_hsic_and_rise_find_the_only_relevant_cell(cell):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 0.5 + 0.5
    target = torch.tensor([0, 1])
    model = OneCell(*cell)
    for method in (HSIC(model, n_masks=200, batch_size=128, progress=False),
                   RISE(model, n_masks=400, batch_size=128, progress=False)):
        maps = method.attribute(x, target)
        assert maps.shape == (2, 1, 64, 64) and torch.isfinite(maps).all()
        if isinstance(method, HSIC):  # HSIC is sign-free: both targets find the cell
            assert _cell_of_max(maps[0, 0]) == cell and _cell_of_max(maps[1, 0]) == cell
        else:  # RISE: class 0 grows with the cell, class 1 shrinks, so only class 0 peaks there
            assert _cell_of_max(maps[0, 0]) == cell


def test_hsic_estimator_matches_explicit_trace():
    torch.manual_seed(0)
    masks = hsic_lhs_masks(30, 3, make_generator(1)).reshape(30, -1)
    outputs = torch.randn(2, 30)
    fast = hsic_dirac_rbf(masks, outputs)
    n = 30
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    for b in range(2):
        y = outputs[b].double()
        width = y.median() if n % 2 else torch.quantile(y, 0.5)
        gram_l = torch.exp(-((y[:, None] - y[None]) ** 2) / (2 * width**2))
        for d in range(9):
            xd = masks[:, d].double()
            gram_k = 1 - (xd[:, None] - xd[None]) ** 2
            explicit = torch.trace(gram_k @ h @ gram_l @ h) / n
            assert fast[b, d].item() == pytest.approx(explicit.item(), rel=1e-9, abs=1e-12)


def test_lhs_masks_are_latin_and_balanced():
    masks = hsic_lhs_masks(1500, 7, make_generator(0))
    assert masks.shape == (1500, 7, 7) and set(masks.unique().tolist()) == {0.0, 1.0}
    # each LHS column has exactly half of its strata above 0.5 → each cell is on in 375 of 750 points
    per_cell = masks.reshape(750, 2, 49).sum(0)
    assert (per_cell == 375).all()


def test_rise_masks_equal_reference_skimage():
    skimage = pytest.importorskip("skimage.transform")
    g = (torch.rand(4, 7, 7, generator=make_generator(3)) < 0.5).float()
    for size in (64, 50):
        cell = int(np.ceil(size / 7))
        shifts = torch.randint(0, cell, (4, 2), generator=make_generator(4))
        ours = rise_masks(g, shifts, (size, size))[:, 0].numpy()
        for i in range(4):
            big = skimage.resize(g[i].numpy(), ((7 + 1) * cell,) * 2, order=1, mode="reflect", anti_aliasing=False)
            ref = big[shifts[i, 0]:shifts[i, 0] + size, shifts[i, 1]:shifts[i, 1] + size]
            np.testing.assert_allclose(ours[i], ref, atol=1e-6)


def test_hsic_rise_determinism_and_batching(tiny_cnn, shapes_batch):
    x, y = shapes_batch["image"][:3], shapes_batch["label"][:3]
    for make in (lambda: HSIC(tiny_cnn, n_masks=24, batch_size=16, progress=False),
                 lambda: RISE(tiny_cnn, n_masks=24, batch_size=16, progress=False)):
        maps = make().attribute(x, y)
        assert maps.shape == (3, 1, 64, 64) and torch.isfinite(maps).all()
        assert torch.equal(maps, make().attribute(x, y))
        torch.testing.assert_close(make().attribute(x[2:], y[2:]), maps[2:], rtol=1e-4, atol=1e-6)
    assert count_hooks(tiny_cnn) == 0


# -- zoo -------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "vgg16"])
def test_methods_run_on_imagenet_cnns(name):
    from xattr.data import collate
    from xattr.models import build_model

    torch.manual_seed(0)
    model = build_model(name, num_classes=10)
    data = ShapesDataset("train", n_samples=4, image_size=224)
    stats = feature_statistics(model, "bottleneck", data, n_samples=4, batch_size=2, progress=False)
    batch = collate([ShapesDataset("test", n_samples=2, image_size=224)[i] for i in range(2)])
    x, y = batch["image"], batch["label"] % 10
    iba = IBA(model, optimization_steps=2, batch_size=2, progress=False)
    iba.set_feature_statistics(stats)
    inp = InputIBA(model, feat_steps=1, feat_batch_size=2, gan_dataset_size=4, gan_sub_dataset_size=2,
                   gan_batch_size=2, gan_epochs=1, input_steps=1, input_batch_size=2, progress=False)
    inp.set_feature_statistics(stats)
    for method in (iba, inp, HSIC(model, n_masks=4, batch_size=8, progress=False),
                   RISE(model, n_masks=4, batch_size=8, progress=False)):
        maps = method.attribute(x, y)
        assert maps.shape == (2, 1, 224, 224) and torch.isfinite(maps).all()
    assert count_hooks(model) == 0


def test_capacity_finite_when_sigmoid_saturates():
    alpha = torch.tensor([5.0, 20.0, 80.0], requires_grad=True)
    lam = torch.sigmoid(alpha)
    cap = kl_capacity(torch.ones(3), lam, torch.zeros(3), torch.ones(3))
    cap_in = kl_capacity_given_mask(torch.ones(3), torch.full((3,), 0.5), lam, 0.0, 1.0)
    (cap.sum() + cap_in.sum()).backward()
    assert torch.isfinite(cap).all() and torch.isfinite(cap_in).all() and torch.isfinite(alpha.grad).all()
