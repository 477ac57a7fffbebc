"""Transformer baselines (Rollout, Generic attention, Chefer-LRP, Beyond-Intuition, ViT-CX, IIA) on tiny_vit."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from xattr.errors import XattrError
from xattr.methods._attention import attention_modules, capture_attention
from xattr.methods.beyond_intuition import BeyondIntuition
from xattr.methods.chefer_lrp import (
    CheferLRP,
    add_relprop,
    linear_relprop,
    lrp_forward,
    matmul_relprop,
    safe_divide,
)
from xattr.methods.generic_attention import GenericAttention
from xattr.methods.iia import IteratedIntegratedAttributions
from xattr.methods.rollout import AttentionRollout
from xattr.methods.vit_cx import ViTCX
from xattr.models import build_model
from xattr.models.spec import ModelSpec, ZooModel
from xattr.utils.hooks import count_hooks

FACTORIES = {
    "rollout": lambda m: AttentionRollout(m),
    "generic_attention": lambda m: GenericAttention(m),
    "chefer_lrp": lambda m: CheferLRP(m),
    "beyond_intuition": lambda m: BeyondIntuition(m, steps=4),
    "iia": lambda m: IteratedIntegratedAttributions(m, steps=2),
    "vit_cx": lambda m: ViTCX(m),
}


def _images(n: int = 3, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 64, 64, generator=gen)


def _fused_flags(model):
    return [m.fused_attn for m in attention_modules(model)]


@pytest.mark.parametrize("name", list(FACTORIES))
def test_batched_equals_one_by_one_and_shapes(tiny_vit, name):
    method = FACTORIES[name](tiny_vit)
    x, target = _images(), torch.tensor([0, 3, 5])
    maps = method.attribute(x, target)
    assert maps.shape == (3, 1, 64, 64) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert maps.abs().sum() > 0
    single = torch.cat([method.attribute(x[i:i + 1], target[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(maps, single, rtol=1e-4, atol=1e-7 * float(maps.abs().max()) + 1e-12)
    # different targets give different maps (the gradient-based and causal methods are class-specific)
    if name != "rollout":
        other = method.attribute(x, torch.tensor([1, 1, 1]))
        assert not torch.allclose(other, maps)
    # determinism
    torch.testing.assert_close(method.attribute(x, target), maps, rtol=0, atol=0)
    assert count_hooks(tiny_vit) == 0 and all(_fused_flags(tiny_vit))


class _Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


@pytest.mark.parametrize("name", list(FACTORIES))
def test_hooks_and_fusion_restored_after_exception(tiny_vit, name):
    method = FACTORIES[name](tiny_vit)
    flags = _fused_flags(tiny_vit)
    tiny_vit.net.norm = _Boom()  # raises inside the capture context (after the blocks ran)
    with pytest.raises(RuntimeError, match="boom"):
        method.attribute(_images(2), torch.tensor([0, 1]))
    assert count_hooks(tiny_vit) == 0
    assert _fused_flags(tiny_vit) == flags and all(flags)
    assert not tiny_vit.training


def test_capture_records_softmax_probabilities_with_graph(tiny_vit):
    x = _images(2)
    with capture_attention(tiny_vit) as rec:
        assert not any(_fused_flags(tiny_vit))
        logits = tiny_vit(x)
        assert len(rec.maps) == tiny_vit.spec.num_blocks
        a = rec.maps[2]
        assert a.shape == (2, 4, 65, 65)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 4, 65))
        (g,) = torch.autograd.grad(logits[:, 0].sum(), a)
        assert g.abs().sum() > 0
    assert all(_fused_flags(tiny_vit)) and count_hooks(tiny_vit) == 0
    torch.testing.assert_close(tiny_vit(x), logits.detach(), rtol=1e-5, atol=1e-5)


def test_rollout_uniform_attention_gives_uniform_map(tiny_vit):
    # zero query/key weights and biases: every head attends uniformly, so A + I has the form aI + bJ in
    # every block and the CLS row of the rolled-out product is the same for every patch token
    with torch.no_grad():
        for block in tiny_vit.net.blocks:
            dim = block.attn.qkv.in_features
            block.attn.qkv.weight[: 2 * dim].zero_()
            block.attn.qkv.bias[: 2 * dim].zero_()
    maps = AttentionRollout(tiny_vit).attribute(_images(2), torch.tensor([0, 1]))
    assert maps.min() > 0
    torch.testing.assert_close(maps, torch.full_like(maps, float(maps[0, 0, 0, 0])), rtol=1e-5, atol=0)
    # analytic value: T tokens, each block (J/T + I)/2; CLS->patch entry of the product of L blocks
    t, depth = 65, tiny_vit.spec.num_blocks
    expected = (1 - 0.5 ** depth) / t
    assert float(maps[0, 0, 0, 0]) == pytest.approx(expected, rel=1e-5)


def test_rollout_identity_attention_and_discard(tiny_vit):
    def identity(module, inputs, output):
        return torch.eye(output.shape[-1]).expand_as(output)

    handles = [m.attn_drop.register_forward_hook(identity) for m in attention_modules(tiny_vit)]
    try:
        maps = AttentionRollout(tiny_vit).attribute(_images(1), torch.tensor([0]))
    finally:
        for h in handles:
            h.remove()
    assert torch.all(maps == 0)  # identity attention: CLS never mixes with patches -> uniform (zero) map
    fused = AttentionRollout(tiny_vit, head_fusion="max", discard_ratio=0.9).attribute(_images(1), torch.tensor([0]))
    assert torch.isfinite(fused).all()
    with pytest.raises(XattrError):
        AttentionRollout(tiny_vit, head_fusion="median")


def _manual_single_block(model, x, target):
    """Hand-written ViT with one block from the raw weights; returns logits and the attention tensor."""
    net = model.net
    h = net.patch_embed(model.normalize(x))
    h = torch.cat([net.cls_token.expand(x.shape[0], -1, -1), h], dim=1) + net.pos_embed
    blk = net.blocks[0]
    n1 = F.layer_norm(h, (h.shape[-1],), blk.norm1.weight, blk.norm1.bias, blk.norm1.eps)
    b, t, c = n1.shape
    heads = blk.attn.num_heads
    qkv = (n1 @ blk.attn.qkv.weight.T + blk.attn.qkv.bias).reshape(b, t, 3, heads, c // heads)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    attn = torch.softmax(q @ k.transpose(-1, -2) / (c // heads) ** 0.5, dim=-1)
    h = h + ((attn @ v).transpose(1, 2).reshape(b, t, c) @ blk.attn.proj.weight.T + blk.attn.proj.bias)
    n2 = F.layer_norm(h, (c,), blk.norm2.weight, blk.norm2.bias, blk.norm2.eps)
    h = h + blk.mlp.fc2(F.gelu(blk.mlp.fc1(n2)))
    h = F.layer_norm(h, (c,), net.norm.weight, net.norm.bias, net.norm.eps)
    logits = h[:, 0] @ net.head.weight.T + net.head.bias
    return logits, attn


def test_generic_attention_matches_hand_computation_one_block():
    torch.manual_seed(0)
    model = build_model("tiny_vit", num_classes=6, depth=1)
    x, target = _images(2), torch.tensor([2, 4])
    logits, attn = _manual_single_block(model, x, target)
    torch.testing.assert_close(logits, model(x), rtol=1e-4, atol=1e-5)
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), attn)
    cam = (grad * attn).clamp(min=0).mean(dim=1)  # [B,T,T]
    relevance = torch.eye(65) + cam  # R = I + cam @ I
    expected = F.interpolate(relevance[:, 0, 1:].reshape(2, 1, 8, 8), size=(64, 64), mode="bilinear",
                             align_corners=False)
    maps = GenericAttention(model).attribute(x, target)
    torch.testing.assert_close(maps, expected.detach(), rtol=1e-4, atol=1e-9)


def test_chefer_functional_forward_equals_timm(tiny_vit):
    x = _images(3)
    with capture_attention(tiny_vit):  # timm's non-fused path: identical operations
        reference = tiny_vit(x)
    logits = lrp_forward(tiny_vit, x)[0]
    assert torch.equal(logits, reference)
    torch.testing.assert_close(logits, tiny_vit(x), rtol=1e-5, atol=1e-5)  # fused path: equal up to rounding


def test_lrp_rules_conserve_relevance():
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(4, 7, 10, generator=gen), torch.randn(5, 10, generator=gen)
    relevance = torch.rand(4, 7, 5, generator=gen)
    r_in = linear_relprop(relevance, x, w, alpha=1.0)
    torch.testing.assert_close(r_in.sum(dim=-1), relevance.sum(dim=-1), rtol=1e-4, atol=1e-6)
    a, b = torch.rand(3, 6, 4, generator=gen), torch.rand(3, 6, 4, generator=gen)
    r = torch.rand(3, 6, 4, generator=gen)
    ra, rb = add_relprop(r, a, b)
    torch.testing.assert_close((ra + rb).sum(dim=(1, 2)), r.sum(dim=(1, 2)), rtol=1e-5, atol=1e-6)
    # per-image totals: image 0 alone gives the same split as in the batch
    ra0, rb0 = add_relprop(r[:1], a[:1], b[:1])
    torch.testing.assert_close(ra0, ra[:1])


def _autograd_linear_relprop(relevance, x, weight, alpha):
    """Chefer's ``Linear.relprop`` written with autograd, as in their ``layers_ours.py``."""
    beta = alpha - 1
    pw, nw = weight.clamp(min=0), weight.clamp(max=0)
    px, nx = x.clamp(min=0).requires_grad_(True), x.clamp(max=0).requires_grad_(True)

    def f(w1, w2):
        z1, z2 = F.linear(px, w1), F.linear(nx, w2)
        s = safe_divide(relevance, (z1 + z2).detach())  # grad_outputs are constants
        g1, g2 = torch.autograd.grad((z1 * s).sum() + (z2 * s).sum(), [px, nx])
        return px * g1 + nx * g2

    return (alpha * f(pw, nw) - beta * f(nw, pw)).detach()


def test_lrp_rules_match_autograd_formulation():
    gen = torch.Generator().manual_seed(3)
    x, w = torch.randn(2, 5, 8, generator=gen), torch.randn(6, 8, generator=gen)
    relevance = torch.randn(2, 5, 6, generator=gen)
    for alpha in (1.0, 2.0):
        torch.testing.assert_close(linear_relprop(relevance, x, w, alpha), _autograd_linear_relprop(relevance, x, w, alpha))
    a = torch.rand(2, 3, 5, 5, generator=gen).requires_grad_(True)
    b = torch.randn(2, 3, 5, 4, generator=gen).requires_grad_(True)
    r = torch.randn(2, 3, 5, 4, generator=gen)
    z = a @ b
    ga, gb = torch.autograd.grad(z, [a, b], safe_divide(r, z.detach()))
    ra, rb = matmul_relprop(r, a.detach(), b.detach())
    torch.testing.assert_close(ra, a.detach() * ga)
    torch.testing.assert_close(rb, b.detach() * gb)


def test_cls_methods_reject_cnn_and_swin(tiny_cnn):
    x, target = _images(1), torch.tensor([0])
    for factory in FACTORIES.values():
        with pytest.raises(XattrError):
            factory(tiny_cnn).attribute(x, target)
    swin = _tiny_swin()
    for name in ("rollout", "generic_attention", "chefer_lrp", "beyond_intuition", "iia"):
        with pytest.raises(XattrError, match="CLS"):
            FACTORIES[name](swin).attribute(x, target)
    for factory in FACTORIES.values():
        assert type(factory(swin)).supports_cnn is False


def _tiny_swin() -> ZooModel:
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    net = SwinTransformer(img_size=64, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2),
                          num_classes=6)
    spec = ModelSpec("tiny_swin", (64, 64), 6, "swin", layers={"gradcam": "layers.1"}, num_blocks=2,
                     token_grid=(8, 8), num_prefix_tokens=0)
    return ZooModel(net, spec)


def test_vit_cx_runs_on_swin_batched():
    swin = _tiny_swin()
    method = ViTCX(swin)
    x, target = _images(2), torch.tensor([1, 4])
    maps = method.attribute(x, target)
    assert maps.shape == (2, 1, 64, 64) and torch.isfinite(maps).all()
    single = torch.cat([method.attribute(x[i:i + 1], target[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(maps, single, rtol=1e-4, atol=1e-9)
    assert count_hooks(swin) == 0


def test_vit_cx_seed_changes_noise(tiny_vit):
    x, target = _images(1), torch.tensor([0])
    a = ViTCX(tiny_vit, seed=0).attribute(x, target)
    b = ViTCX(tiny_vit, seed=1).attribute(x, target)
    assert not torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_b16", "deit_b16"])
def test_imagenet_vits_functional_forward_and_cls_methods(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=10)
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with capture_attention(model):
        reference = model(x)
    assert torch.equal(lrp_forward(model, x)[0], reference)
    target = torch.tensor([3])
    for method in (AttentionRollout(model), GenericAttention(model), CheferLRP(model)):
        maps = method.attribute(x, target)
        assert maps.shape == (1, 1, 224, 224) and torch.isfinite(maps).all()
    assert count_hooks(model) == 0 and all(_fused_flags(model))
