"""Path methods against their references: Blur IG and Guided IG vs PAIR ``saliency`` (float64, identical inputs),
Expected Gradients vs Captum's GradientShap (equal draws), IG² GradPath, SPI, completeness diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from xattr.methods.blur_ig import BlurIG
from xattr.methods.expected_gradients import ExpectedGradients
from xattr.methods.guided_ig import GuidedIG, guided_ig_path_integral
from xattr.methods.ig2 import IG2
from xattr.methods.integrated_gradients import IntegratedGradients
from xattr.methods.spi import SPI
from xattr.paths import integrate_nodes


def smooth_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3, padding=1), nn.Softplus(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5)).double().eval()


@pytest.fixture()
def inputs():
    torch.manual_seed(3)
    return torch.rand(2, 3, 12, 12, dtype=torch.float64), torch.tensor([1, 3])


def pair_call_model(net, target: int):
    """PAIR's ``call_model_function``: HWC batches in, gradients of the target's softmax probability out."""
    import saliency.core as sc

    def call(batch, call_model_args=None, expected_keys=None):
        images = torch.tensor(batch).permute(0, 3, 1, 2).requires_grad_(True)
        prob = net(images).softmax(1)[:, target].sum()
        (grad,) = torch.autograd.grad(prob, images)
        return {sc.INPUT_OUTPUT_GRADIENTS: grad.permute(0, 2, 3, 1).numpy()}

    return call


@pytest.fixture()
def numpy2_quantile(monkeypatch):
    """saliency 0.2.1 calls ``np.quantile(..., interpolation=)``, removed in numpy 2 (now ``method=``)."""
    quantile = np.quantile
    monkeypatch.setattr(np, "quantile", lambda a, q, interpolation=None, **kw: quantile(a, q, method=interpolation, **kw))


@pytest.mark.parametrize("sqrt", [False, True])
def test_blur_ig_equals_pair_saliency(inputs, sqrt):
    sc = pytest.importorskip("saliency.core")
    x, target = inputs
    net = smooth_net()
    method = BlurIG(net, max_sigma=50.0, n_steps=12, sqrt=sqrt, chunk=5)
    ours, _ = integrate_nodes(net, target, method.nodes(x), "probability")
    for i in range(2):
        ref = sc.BlurIG().GetMask(x[i].permute(1, 2, 0).numpy(), pair_call_model(net, int(target[i])),
                                  max_sigma=50, steps=12, sqrt=sqrt, batch_size=1)
        np.testing.assert_allclose(ours[i].permute(1, 2, 0).numpy(), ref, rtol=1e-9, atol=1e-14 * abs(ref).max())


def test_blur_ig_chord_increments_telescope(inputs):
    x, target = inputs
    method = BlurIG(smooth_net(), max_sigma=20.0, n_steps=64, increment="chord", output="logit")
    method.attribute(x.float().double(), target)
    tangent = BlurIG(smooth_net(), max_sigma=20.0, n_steps=64, output="logit")
    tangent.attribute(x, target)
    assert method.diagnostics()["completeness_error"].max() < 0.05
    assert (method.diagnostics()["completeness_error"] <= tangent.diagnostics()["completeness_error"] + 1e-6).all()


def test_guided_ig_equals_pair_saliency(inputs, numpy2_quantile):
    sc = pytest.importorskip("saliency.core")
    x, target = inputs
    net = smooth_net()
    ours = guided_ig_path_integral(net, x, torch.zeros_like(x), target, n_steps=15, fraction=0.25, max_dist=0.02)
    for i in range(2):  # batched over images, equal to PAIR's one-image loop
        ref = sc.GuidedIG().GetMask(x[i].permute(1, 2, 0).numpy(), pair_call_model(net, int(target[i])),
                                    x_steps=15, fraction=0.25, max_dist=0.02)
        np.testing.assert_allclose(ours[i].permute(1, 2, 0).numpy(), ref, rtol=1e-9, atol=1e-14 * abs(ref).max())


def test_guided_ig_ends_at_the_input_and_is_complete_with_many_steps(inputs):
    x, target = inputs
    method = GuidedIG(smooth_net(), n_steps=100, max_dist=1.0, output="logit")
    method.attribute(x, target)
    assert method.diagnostics()["completeness_error"].max() < 0.05


def test_expected_gradients_equals_captum_gradient_shap_with_equal_draws(inputs):
    import captum.attr

    x, target = inputs
    net = smooth_net()
    bank = torch.rand(7, 3, 12, 12, dtype=torch.float64)
    n = 5
    np.random.seed(0)
    captum_maps = captum.attr.GradientShap(net).attribute(x, baselines=bank, target=target, n_samples=n, stdevs=0.0)
    np.random.seed(0)  # Captum's draws: reference indices, then one alpha per (image, sample), image-major
    index = torch.tensor(np.random.choice(bank.shape[0], n * 2)).view(2, n)
    alpha = torch.tensor(np.random.uniform(0.0, 1.0, n * 2)).view(2, n)
    method = ExpectedGradients(net, n_samples=n, output="logit", chunk=4)
    ours, _ = integrate_nodes(net, target, method.nodes(x, bank[index], alpha), "logit")
    torch.testing.assert_close(ours, captum_maps)


def test_expected_gradients_completeness_against_the_drawn_references(inputs):
    """On a linear logit every sample is complete, so Σ A = f(x) − mean f(x'_j) over the drawn references."""
    x, target = inputs
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 5)).double()
    method = ExpectedGradients(linear, n_samples=6, output="logit")
    method.set_references(torch.rand(20, 3, 12, 12, dtype=torch.float64))
    method.attribute(x, target)
    assert method.diagnostics()["completeness_error"].max() < 1e-5


def test_ig2_gradpath_approaches_the_reference_representation(inputs):
    x, target = inputs
    net = smooth_net()
    method = IG2(net, steps=30, step_size=0.05, n_references=1, output="logit")
    reference = torch.rand(1, 3, 12, 12, dtype=torch.float64)
    method.set_references(reference)
    maps = method.attribute(x, target)
    assert maps.shape == x.shape and torch.isfinite(maps).all()
    # the right-rule sum along a fine path is close to f(x) − f(x_steps)
    assert method.diagnostics()["completeness_error"].max() < 0.05
    head = net[-1]
    seen = {}
    handle = head.register_forward_hook(lambda m, i, o: seen.__setitem__("h", i[0]))
    try:
        net(reference)
        h_ref = seen["h"]
        net(x)
        before = (seen["h"] - h_ref).square().mean(1)
    finally:
        handle.remove()
    # repeat the walk by hand for one reference: the MSE falls
    point = x.clone()
    for _ in range(30):
        point = point.detach().requires_grad_(True)
        handle = head.register_forward_hook(lambda m, i, o: seen.__setitem__("h", i[0]))
        try:
            net(point)
        finally:
            handle.remove()
        loss = -(seen["h"] - h_ref).square().mean(1).sum()
        (g,) = torch.autograd.grad(loss, point)
        point = (point + 0.05 * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1)
    handle = head.register_forward_hook(lambda m, i, o: seen.__setitem__("h", i[0]))
    try:
        net(point)
    finally:
        handle.remove()
    assert ((seen["h"] - h_ref).square().mean(1) < before).all()


def test_spi_is_deterministic_batch_independent_and_complete(inputs):
    x, target = inputs
    method = SPI(smooth_net(), n_paths=2, n_steps=64, n_breaks=100, output="logit", rule="trapezoid")
    maps = method.attribute(x, target)
    torch.testing.assert_close(method.attribute(x[1:], target[1:])[0], maps[1])
    assert method.diagnostics()["completeness_error"].max() < 0.05


def test_integrated_gradients_reports_completeness(inputs):
    x, target = inputs
    method = IntegratedGradients(smooth_net(), n_steps=32)
    method.attribute(x, target)
    error = method.diagnostics()["completeness_error"]
    assert error.shape == (2,) and (error < 1e-3).all()
