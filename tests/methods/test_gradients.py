"""Correctness of the Captum-backed gradient baselines beyond the contract: each map is compared with a
slow, obviously-correct hand computation, and the traps (ResNet ReLU reuse, overlapping max-pool,
transformer token layouts, rules missing on GELU/LayerNorm) are shown to be handled."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import DeepLift as CaptumDeepLift

from xattr.methods import _captum
from xattr.methods.deeplift import DeepLift
from xattr.methods.deepliftshap import DeepLiftShap
from xattr.methods.gradcam import GradCAM
from xattr.methods.guided_backprop import GuidedBackprop
from xattr.methods.integrated_gradients import IntegratedGradients
from xattr.methods.saliency import Saliency
from xattr.methods.smoothgrad import SmoothGrad
from xattr.models import ModelSpec, ZooModel, build_model
from xattr.utils.hooks import count_hooks, forward_hook

TARGETS = torch.tensor([0, 3, 5])


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def target_logits(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return model(x).gather(1, target[:, None])[:, 0]


def input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Reference: d logit_target / d x by plain autograd (one sum: images are independent in eval mode)."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(target_logits(model, x, target).sum(), x)
    return grad


# ------------------------------------------------------------------------------------------ saliency


def test_saliency_is_abs_gradient_of_target_logit(tiny_cnn, images):
    maps = Saliency(tiny_cnn).attribute(images, TARGETS)
    torch.testing.assert_close(maps, input_gradient(tiny_cnn, images, TARGETS).abs())
    signed = Saliency(tiny_cnn, abs=False).attribute(images, TARGETS)
    torch.testing.assert_close(signed, input_gradient(tiny_cnn, images, TARGETS))
    assert (signed < 0).any()  # really signed, so abs=True is a real transformation


def test_saliency_keeps_model_flags(tiny_cnn, images):
    tiny_cnn.train()
    flags = [p.requires_grad for p in tiny_cnn.parameters()]
    Saliency(tiny_cnn).attribute(images, TARGETS)
    assert tiny_cnn.training and [p.requires_grad for p in tiny_cnn.parameters()] == flags
    assert all(p.grad is None for p in tiny_cnn.parameters())


# ------------------------------------------------------------------------------------------ IG


def test_integrated_gradients_equals_hand_riemann_sum(tiny_cnn, images):
    steps = 8
    maps = IntegratedGradients(tiny_cnn, n_steps=steps, method="riemann_trapezoid").attribute(images, TARGETS)
    alphas = torch.linspace(0, 1, steps, dtype=torch.float64)
    weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
    weights[0] = weights[-1] = 0.5 / (steps - 1)
    total = torch.zeros_like(images, dtype=torch.float64)
    for alpha, weight in zip(alphas, weights):
        total += weight * input_gradient(tiny_cnn, float(alpha) * images, TARGETS).double()
    torch.testing.assert_close(maps, (images * total).float(), rtol=1e-4, atol=1e-6)


def test_integrated_gradients_completeness_improves_with_steps(tiny_cnn, images):
    """Σ A − (f(x) − f(0)) shrinks as n_steps grows (logits scaled so the gap is O(1), 32×32 for speed)."""
    model = tiny_cnn
    with torch.no_grad():
        model.net.classifier[1].weight *= 1000
    x, target = F.interpolate(images[:2], size=32, mode="area"), TARGETS[:2]
    gap = (target_logits(model, x, target) - target_logits(model, 0 * x, target)).detach()
    errors = []
    for steps in (4, 16, 64):
        method = IntegratedGradients(model, n_steps=steps, method="riemann_trapezoid")
        maps, delta = method.attribute_with_delta(x, target)
        torch.testing.assert_close(delta, maps.sum((1, 2, 3)) - gap, rtol=1e-4, atol=1e-4)
        errors.append((delta.abs() / gap.abs()).max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.25 * errors[0] and errors[2] < 0.1


def test_integrated_gradients_chunking_does_not_change_maps(tiny_cnn, images):
    small = IntegratedGradients(tiny_cnn, n_steps=12, internal_batch_size=3).attribute(images, TARGETS)
    large = IntegratedGradients(tiny_cnn, n_steps=12, internal_batch_size=64).attribute(images, TARGETS)
    torch.testing.assert_close(small, large, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ Grad-CAM


def hand_gradcam(model, layer, x, target, to_image=lambda a: a):
    store = {}

    def keep(module, inputs, output):
        output.retain_grad()
        store["act"] = output

    x = x.clone().requires_grad_(True)
    with forward_hook(layer, keep):
        target_logits(model, x, target).sum().backward()
    act, grad = to_image(store["act"].detach()), to_image(store["act"].grad)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True))
    for p in model.parameters():
        p.grad = None
    return cam, F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)


def test_gradcam_equals_hand_computation_on_tiny_cnn(tiny_cnn, images):
    method = GradCAM(tiny_cnn)
    layer = tiny_cnn.get_layer("gradcam")
    small, full = hand_gradcam(tiny_cnn, layer, images, TARGETS)
    assert small.shape == (3, 1, 8, 8)
    torch.testing.assert_close(method.layer_maps(images, TARGETS), small, rtol=1e-4, atol=1e-6)
    maps = method.attribute(images, TARGETS)
    assert maps.shape == (3, 1, 64, 64) and (maps >= 0).all()
    torch.testing.assert_close(maps, full, rtol=1e-4, atol=1e-6)
    assert count_hooks(tiny_cnn) == 0


def test_gradcam_on_vit_tokens_drops_prefix_and_uses_grid(tiny_vit, images):
    spec = tiny_vit.spec
    layer = tiny_vit.get_layer("gradcam")

    def to_image(tokens):  # [B,T,C] -> drop CLS -> [B,C,8,8], row-major like timm's patch embedding
        return tokens[:, 1:].reshape(tokens.shape[0], *spec.token_grid, -1).permute(0, 3, 1, 2)

    small, full = hand_gradcam(tiny_vit, layer, images, TARGETS, to_image)
    method = GradCAM(tiny_vit)
    torch.testing.assert_close(method.layer_maps(images, TARGETS), small, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(method.attribute(images, TARGETS), full, rtol=1e-4, atol=1e-6)
    assert count_hooks(tiny_vit) == 0


def test_token_grid_order_matches_patch_embedding(tiny_vit, images):
    """Token t of a ViT is the patch at row t // w, column t % w: reshaping tokens must give back the
    patch-embedding convolution's own image (this fails for a column-major or transposed reshape)."""
    embed = tiny_vit.net.patch_embed
    normed = tiny_vit.normalize(images)
    tokens = embed(normed)  # [B, 64, C], no prefix yet
    cls = torch.randn(3, 1, tokens.shape[-1])
    image, back = _captum.tokens_to_image(torch.cat([cls, tokens], 1), "vit", 1, tiny_vit.spec.token_grid)
    torch.testing.assert_close(image, embed.proj(normed))
    torch.testing.assert_close(back(image), torch.cat([cls, tokens], 1))


def tiny_swin() -> ZooModel:
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    net = SwinTransformer(img_size=64, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1),
                          num_heads=(1, 2), num_classes=6)
    spec = ModelSpec("tiny_swin", (64, 64), 6, "swin", layers={"gradcam": "layers.1"}, num_blocks=2,
                     token_grid=(8, 8), num_prefix_tokens=0)
    return ZooModel(net, spec).eval()


def test_gradcam_on_swin_nhwc_stage(images):
    model = tiny_swin()
    layer = model.get_layer("gradcam")
    embed = model.net.patch_embed
    normed = model.normalize(images)
    image, _ = _captum.tokens_to_image(embed(normed), "swin", 0, None)  # timm Swin is NHWC
    expected = embed.norm(embed.proj(normed).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(image, expected)
    small, full = hand_gradcam(model, layer, images, TARGETS, lambda a: a.permute(0, 3, 1, 2))
    assert small.shape == (3, 1, 8, 8)
    maps = GradCAM(model).attribute(images, TARGETS)
    torch.testing.assert_close(maps, full, rtol=1e-4, atol=1e-6)
    assert count_hooks(model) == 0


# ------------------------------------------------------------------------------------------ Guided-BP


class _GuidedReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0)


class _GuidedReLU(nn.Module):
    def forward(self, x):
        return _GuidedReLUFunction.apply(x)


def guided_reference(model, x, target):
    """Same model with every nn.ReLU module swapped for a guided ReLU (stateless, so reuse is harmless)."""
    import copy

    guided = copy.deepcopy(model)
    for parent in list(guided.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, _GuidedReLU())
    return input_gradient(guided, x, target)


def test_guided_backprop_equals_guided_relu_reference(tiny_cnn, images):
    maps = GuidedBackprop(tiny_cnn).attribute(images, TARGETS)
    torch.testing.assert_close(maps, guided_reference(tiny_cnn, images, TARGETS), rtol=1e-4, atol=1e-7)
    assert not torch.allclose(maps, input_gradient(tiny_cnn, images, TARGETS))  # the rule changed something


def test_guided_backprop_on_resnet_with_reused_relu():
    torch.manual_seed(0)
    model = build_model("resnet50", num_classes=10)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([1, 7])
    maps = GuidedBackprop(model).attribute(x, target)
    torch.testing.assert_close(maps, guided_reference(model, x, target), rtol=1e-3, atol=1e-6)
    assert count_hooks(model) == 0


# ------------------------------------------------------------------------------------------ DeepLIFT


def deeplift_relative_delta(model, x, target, baseline):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, delta = CaptumDeepLift(model).attribute(x.clone(), baseline, target=target, return_convergence_delta=True)
    gap = target_logits(model, x, target) - target_logits(model, baseline, target)
    return (delta.abs() / gap.abs()).max().item()


def test_deeplift_completeness_on_tiny_cnn(tiny_cnn, images):
    """conv→BN→ReLU→MaxPool: plain Captum breaks completeness (the ReLU's hook stores the pool's plain
    output gradient before the pool's rule rewrites it); our view separates the two and it holds."""
    with torch.no_grad():
        tiny_cnn.net.classifier[1].weight *= 1000  # logit gaps O(1), so relative errors mean something
    assert deeplift_relative_delta(tiny_cnn, images, TARGETS, torch.zeros_like(images)) > 1e-2
    maps, delta = DeepLift(tiny_cnn).attribute_with_delta(images, TARGETS)
    gap = (target_logits(tiny_cnn, images, TARGETS) - target_logits(tiny_cnn, 0 * images, TARGETS)).detach()
    torch.testing.assert_close(maps.sum((1, 2, 3)), gap, rtol=1e-4, atol=1e-4)
    assert (delta.abs() / gap.abs()).max() < 1e-4
    torch.testing.assert_close(DeepLift(tiny_cnn).attribute(images, TARGETS), maps)
    assert count_hooks(tiny_cnn) == 0


def test_deeplift_resnet_relu_reuse_and_overlapping_pool_are_fixed():
    """torchvision ResNet50 (random init): Captum on the raw model raises (one ReLU module per block,
    called 3 times); each of our three fixes is needed for completeness, and with all of them it holds."""
    torch.manual_seed(0)
    model = build_model("resnet50", num_classes=10)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([2, 9])
    base = torch.zeros_like(x)
    reference = model(x).detach()
    gap = (target_logits(model, x, target) - target_logits(model, base, target)).detach()

    try:
        raw_broken = deeplift_relative_delta(model, x, target, base) > 1e-3
    except RuntimeError as error:  # Captum: "module is being used more than once"
        raw_broken = "more than once" in str(error)
    assert raw_broken
    for module in model.modules():  # Captum leaves its per-module attributes behind when it raises
        for attribute in ("input", "output"):
            module.__dict__.pop(attribute, None)

    for partial in ({"sum_overlapping_pools": False}, {"separate_adjacent": False}):
        view, _ = _captum.unshare_nonlinearities(model, **partial)
        assert deeplift_relative_delta(view, x, target, base) > 1e-3, partial

    maps, delta = DeepLift(model).attribute_with_delta(x, target)
    torch.testing.assert_close(maps.sum((1, 2, 3)), gap, rtol=1e-4, atol=1e-4)
    assert (delta.abs() / gap.abs()).max() < 1e-4
    assert count_hooks(model) == 0
    torch.testing.assert_close(model(x), reference)  # the model itself is untouched


def test_unshared_view_shares_weights(images):
    torch.manual_seed(0)
    model = build_model("resnet50", num_classes=10)
    view, changed = _captum.unshare_nonlinearities(model)
    assert changed == 32 + 1 + 1  # 16 blocks × 2 extra ReLU calls, the stem pool, one ReLU→pool boundary
    x = images[:1]
    torch.testing.assert_close(view(x), model(x))
    with torch.no_grad():
        model.net.fc.bias += 1.0
    torch.testing.assert_close(view(x), model(x))
    assert not any("_xattr_unshared" in name for name, _ in model.named_modules())


def test_summing_unpool_adds_colliding_windows():
    values = torch.tensor([[[[1.0, 2.0]]]])
    indices = torch.tensor([[[[1, 1]]]])  # two windows pick the same input
    summed = _captum._scatter_add_unpool(values, indices, 3, 2, 1, (1, 1, 1, 3))
    torch.testing.assert_close(summed, torch.tensor([[[[0.0, 3.0, 0.0]]]]))


def test_deepliftshap_completeness_against_mean_reference(tiny_cnn, images):
    with torch.no_grad():
        tiny_cnn.net.classifier[1].weight *= 1000
    method = DeepLiftShap(tiny_cnn, n_noise=2)
    refs = method.reference_images(images)
    assert refs.shape == (4, 3, 3, 64, 64)
    torch.testing.assert_close(refs[0], torch.zeros_like(images))
    maps, delta = method.attribute_with_delta(images, TARGETS)
    mean_ref = torch.stack([target_logits(tiny_cnn, r, TARGETS) for r in refs]).mean(0)
    gap = (target_logits(tiny_cnn, images, TARGETS) - mean_ref).detach()
    torch.testing.assert_close(maps.sum((1, 2, 3)), gap, rtol=1e-4, atol=1e-4)
    # = the mean of DeepLIFT maps against each reference, computed one reference at a time
    single = DeepLift(tiny_cnn)
    expected = torch.stack([single.attribute_against(images, TARGETS, r) for r in refs]).mean(0)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-6)


def test_rule_warning_once_per_class_on_transformers(tiny_vit, tiny_cnn, images, monkeypatch):
    monkeypatch.setattr(_captum, "_WARNED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DeepLift(tiny_cnn).attribute(images, TARGETS)
        DeepLift(tiny_vit).attribute(images, TARGETS)
        DeepLift(tiny_vit).attribute(images, TARGETS)  # a new instance: still once per class
        GuidedBackprop(tiny_vit).attribute(images, TARGETS)
        GuidedBackprop(tiny_vit).attribute(images, TARGETS)
        Saliency(tiny_vit).attribute(images, TARGETS)
    ours = [str(w.message) for w in caught if "propagation rules" in str(w.message)]
    assert len(ours) == 2
    assert ours[0].startswith("DeepLift:") and "GELU" in ours[0] and "LayerNorm" in ours[0]
    assert ours[1].startswith("GuidedBackprop:")
    assert not [w for w in caught if "Setting" in str(w.message)]  # Captum's hook chatter is silenced


# ------------------------------------------------------------------------------------------ SmoothGrad


def test_smoothgrad_without_noise_is_saliency(tiny_cnn, images):
    maps = SmoothGrad(tiny_cnn, noise_level=0.0, n_samples=3).attribute(images, TARGETS)
    torch.testing.assert_close(maps, Saliency(tiny_cnn).attribute(images, TARGETS), rtol=1e-5, atol=1e-7)


def test_smoothgrad_seeded_and_leaves_global_rng_alone(tiny_cnn, images):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = SmoothGrad(tiny_cnn, n_samples=4).attribute(images, TARGETS)
    torch.testing.assert_close(torch.rand(3), expected_next)
    again = SmoothGrad(tiny_cnn, n_samples=4).attribute(images, TARGETS)
    other = SmoothGrad(tiny_cnn, n_samples=4, seed=1).attribute(images, TARGETS)
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)
    chunked = SmoothGrad(tiny_cnn, n_samples=4, samples_batch_size=2).attribute(images, TARGETS)
    assert chunked.shape == first.shape
