"""CoIBA, IBA and IBA* on transformers (tiny_vit and a small timm Swin, random init, CPU)."""

from __future__ import annotations

import math

import pytest
import torch
from coiba_helpers import layer_statistics

from xattr.errors import XattrError
from xattr.methods import _token_bottleneck as tb
from xattr.methods.coiba import CoIBA
from xattr.methods.iba_star import IBAStar
from xattr.methods.iba_vit import IBATransformer
from xattr.models import ModelSpec, ZooModel
from xattr.utils.hooks import count_hooks

FAST = dict(steps=2, draws=2)


@pytest.fixture(scope="module")
def stats_images():
    torch.manual_seed(1)
    return torch.rand(16, 3, 64, 64)


def ready(method, x):
    method.set_statistics(layer_statistics(method.model, method.layer_names, x))
    return method


def small_swin() -> ZooModel:
    from timm.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    net = SwinTransformer(img_size=64, patch_size=4, embed_dim=16, depths=(2, 2), num_heads=(2, 2),
                          window_size=4, num_classes=6, mlp_ratio=2.0)
    spec = ModelSpec("tiny_swin", (64, 64), 6, "swin",
                     layers={"stage": "layers.{i}", "block": "layers.{i}", "bottleneck": "layers.0",
                             "gradcam": "layers.1"},
                     num_blocks=2, token_grid=(8, 8), num_prefix_tokens=0)
    return ZooModel(net, spec).eval()


def test_default_layers_follow_paper_scaling(tiny_vit):
    assert CoIBA(tiny_vit).layer_names == [f"blocks.{i}.norm1" for i in range(2, 6)]
    assert tb.default_range(12) == (4, 12)  # ViT-B: blocks 4..11 (authors' run.sh)
    assert IBATransformer(tiny_vit).layer_names == ["blocks.1"]
    method = CoIBA(tiny_vit, layers={"start": 0, "end": 3}, op="")
    assert method.layer_names == ["blocks.0", "blocks.1", "blocks.2"]
    with pytest.raises(XattrError, match="layers.start"):
        CoIBA(tiny_vit, layers={"start": 4, "end": 9})
    with pytest.raises(XattrError, match="no layer"):
        CoIBA(tiny_vit, op="norm7")


def test_cnn_is_refused(tiny_cnn):
    with pytest.raises(XattrError, match="transformer"):
        CoIBA(tiny_cnn)


def test_kl_matches_gaussian_closed_form():
    torch.manual_seed(0)
    r, mu = torch.randn(50), torch.randn(50)
    sigma, lam = torch.rand(50) + 0.1, torch.rand(50) * 0.98 + 0.01
    mean_z, std_z = lam * r + (1 - lam) * mu, (1 - lam) * sigma
    reference = torch.log(sigma / std_z) + (std_z ** 2 + (mean_z - mu) ** 2) / (2 * sigma ** 2) - 0.5
    torch.testing.assert_close(tb._kl_elementwise(r, lam, mu, sigma), reference, rtol=1e-4, atol=1e-5)


def test_cls_token_never_perturbed(tiny_vit, shapes_batch, stats_images):
    x, y = shapes_batch["image"][:2], shapes_batch["label"][:2]
    method = ready(CoIBA(tiny_vit, alpha_init=-4.0, steps=1, draws=2), stats_images)
    raw, passed = {}, {}
    handles = []
    for name in method.layer_names:  # registered first: sees the output before the bottleneck replaces it
        block = name.rsplit(".", 1)[0]
        handles.append(tiny_vit.net.get_submodule(name).register_forward_hook(
            lambda m, i, o, n=name: raw.__setitem__(n, o.detach().clone())))
        handles.append(tiny_vit.net.get_submodule(block + ".attn").register_forward_pre_hook(
            lambda m, i, n=name: passed.__setitem__(n, i[0].detach().clone())))
    try:
        method.attribute(x, y)
    finally:
        for h in handles:
            h.remove()
    assert set(passed) == set(method.layer_names)
    for name in method.layer_names:
        torch.testing.assert_close(passed[name][:, :1], raw[name][:, :1], rtol=0, atol=0)
        assert (passed[name][:, 1:] - raw[name][:, 1:]).abs().mean() > 0.1  # λ≈0.02: patches are noise
    assert count_hooks(tiny_vit) == 0


def test_one_lambda_tensor_shared_by_every_layer(tiny_vit, shapes_batch, stats_images):
    x, y = shapes_batch["image"][:3], shapes_batch["label"][:3]
    method = ready(CoIBA(tiny_vit, layers={"start": 1, "end": 5}, **FAST), stats_images)
    method.trace = []
    method.attribute(x, y)
    assert len(method.trace) == FAST["steps"]
    for step in method.trace:
        assert list(step) == method.layer_names
        lambdas = list(step.values())
        assert all(lam is lambdas[0] for lam in lambdas)  # the very same tensor object
        assert lambdas[0].shape == (3 * FAST["draws"], 64, 1)  # one value per patch token, uniform over C
    assert method.trace[0][method.layer_names[0]] is not method.trace[1][method.layer_names[0]]


def test_deeper_layers_drive_the_shared_ratio(tiny_vit, shapes_batch, stats_images):
    """λ is used by all layers: noise injected only at deeper layers changes the first layer's map."""
    x, y = shapes_batch["image"][:2], shapes_batch["label"][:2]
    one = ready(CoIBA(tiny_vit, layers={"start": 1, "end": 2}, **FAST), stats_images).attribute(x, y)
    many = ready(CoIBA(tiny_vit, layers={"start": 1, "end": 6}, **FAST), stats_images).attribute(x, y)
    assert (one - many).abs().max() > 1e-4


def test_single_layer_coiba_equals_channel_uniform_iba(tiny_vit, shapes_batch, stats_images):
    x, y = shapes_batch["image"][:2], shapes_batch["label"][:2]
    coiba = ready(CoIBA(tiny_vit, layers={"start": 3, "end": 4}, op="", beta=10.0, **FAST), stats_images)
    iba = ready(IBATransformer(tiny_vit, layer="blocks.3", beta=10.0, channel_uniform=True, **FAST), stats_images)
    torch.testing.assert_close(coiba.attribute(x, y), iba.attribute(x, y), rtol=1e-5, atol=1e-6)
    per_channel = ready(IBATransformer(tiny_vit, layer="blocks.3", beta=10.0, **FAST), stats_images)
    assert (per_channel.attribute(x, y) - iba.attribute(x, y)).abs().max() > 1e-5


def test_batched_equals_one_by_one(tiny_vit, shapes_batch, stats_images):
    x, y = shapes_batch["image"][:3], shapes_batch["label"][:3]
    method = ready(CoIBA(tiny_vit, **FAST), stats_images)
    batched = method.attribute(x, y)
    alone = torch.cat([method.attribute(x[i:i + 1], y[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)
    assert batched.shape == (3, 1, 64, 64) and batched.dtype == torch.float32
    assert torch.isfinite(batched).all() and (batched >= 0).all()


def test_map_is_kl_in_bits_on_the_token_grid(tiny_vit, shapes_batch, stats_images):
    """One token whose mean is far from its activation carries the most information, at its grid cell."""
    x, y = shapes_batch["image"][:1], shapes_batch["label"][:1]
    method = ready(CoIBA(tiny_vit, layers={"start": 2, "end": 3}, lr=1e-6, **FAST), stats_images)
    name = method.layer_names[0]
    mean, std = method.statistics[name]
    mean = mean.clone()
    row, col = 2, 5
    mean[1 + row * 8 + col] += 50.0  # +1: CLS comes first
    method.set_statistics({name: (mean, std)})
    maps = method.attribute(x, y)
    grid = torch.nn.functional.avg_pool2d(maps, 8)[0, 0]
    assert divmod(int(grid.argmax()), 8) == (row, col)
    # value check on the token grid: λ stays sigmoid(5) (lr≈0), the cell holds the closed-form KL in bits
    grid = tb.optimise_bottleneck(tiny_vit, x, y, method.layers, method.statistics, beta=1.0, lr=1e-6, **FAST)
    torch.testing.assert_close(tb.upsample(grid, (64, 64)), maps)
    raw = layer_statistics(tiny_vit, [name], x)[name][0][1 + row * 8 + col]  # the image's own token
    lam = torch.sigmoid(torch.tensor(5.0))
    s = std[1 + row * 8 + col].clamp_min(0.01)
    kl = tb._kl_elementwise(raw, lam, mean[1 + row * 8 + col], s).sum() / math.log(2)
    assert grid[0, 0, row, col].item() == pytest.approx(kl.item(), rel=1e-3)


def _attention_flags(model):
    return [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]


def test_hooks_and_flags_restored_after_success_and_exception(tiny_vit, shapes_batch, stats_images):
    x, y = shapes_batch["image"][:2], shapes_batch["label"][:2]
    flags = [p.requires_grad for p in tiny_vit.parameters()]
    attention = _attention_flags(tiny_vit)
    for cls in (CoIBA, IBATransformer, IBAStar):
        ready(cls(tiny_vit, steps=1, draws=1), stats_images).attribute(x, y)
        assert count_hooks(tiny_vit) == 0
    assert [p.requires_grad for p in tiny_vit.parameters()] == flags
    assert all(p.grad is None for p in tiny_vit.parameters())
    assert not tiny_vit.training and _attention_flags(tiny_vit) == attention

    method = ready(CoIBA(tiny_vit, steps=1, draws=1), stats_images)

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    tiny_vit.net.blocks[5].mlp.forward = boom  # raises after every bottleneck hook fired
    tiny_vit.train()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            method.attribute(x, y)
    finally:
        del tiny_vit.net.blocks[5].mlp.forward
    assert count_hooks(tiny_vit) == 0
    assert tiny_vit.training  # the caller's flag is restored, not forced
    assert [p.requires_grad for p in tiny_vit.parameters()] == flags
    tiny_vit.eval()


def test_missing_statistics_and_bad_options(tiny_vit, shapes_batch):
    x, y = shapes_batch["image"][:1], shapes_batch["label"][:1]
    with pytest.raises(XattrError, match="statistics"):
        CoIBA(tiny_vit, **FAST).attribute(x, y)
    with pytest.raises(XattrError, match="bound"):
        method = CoIBA(tiny_vit, bound="max", **FAST)
        method.set_statistics({n: (torch.zeros(65, 96), torch.ones(65, 96)) for n in method.layer_names})
        method.attribute(x, y)
    with pytest.raises(XattrError, match="train_dataset"):
        from xattr.methods.base import RunContext

        CoIBA(tiny_vit).prepare(RunContext(train_dataset=None))


def test_sum_bound_and_iba_star(tiny_vit, shapes_batch, stats_images):
    x, y = shapes_batch["image"][:2], shapes_batch["label"][:2]
    first = ready(CoIBA(tiny_vit, **FAST), stats_images).attribute(x, y)
    summed = ready(CoIBA(tiny_vit, bound="sum", betas=[1.0, 2.0, 3.0, 4.0], **FAST), stats_images).attribute(x, y)
    assert summed.shape == first.shape and (summed - first).abs().max() > 1e-6
    star = ready(IBAStar(tiny_vit, **FAST), stats_images)
    maps = star.layer_maps(x, y)
    assert len(maps) == 4
    torch.testing.assert_close(star.attribute(x, y), torch.stack(maps).mean(0))


def test_swin_path_keeps_token_positions(shapes_batch):
    model = small_swin()
    x, y = shapes_batch["image"][:2], shapes_batch["label"][:2]
    torch.manual_seed(2)
    images = torch.rand(8, 3, 64, 64)
    method = CoIBA(model, stage=0, layers={"start": 0, "end": 2}, lr=1e-6, **FAST)
    assert method.layer_names == ["layers.0.blocks.0.norm1", "layers.0.blocks.1.norm1"]
    ready(method, images)
    maps = method.attribute(x, y)
    assert maps.shape == (2, 1, 64, 64) and torch.isfinite(maps).all()
    assert count_hooks(model) == 0
    # token (row, col) of the [B,H,W,C] layout lands at its cell; block 1 is the shifted-window block
    name = method.layer_names[0]
    mean, std = method.statistics[name]
    mean = mean.clone()
    mean[3, 11] += 50.0
    method.set_statistics({name: (mean, std)})
    grid = torch.nn.functional.avg_pool2d(method.attribute(x, y), 4)[0, 0]  # 16×16 token grid
    assert divmod(int(grid.argmax()), 16) == (3, 11)
    batched_vs_single = method.attribute(x[1:], y[1:])
    torch.testing.assert_close(method.attribute(x, y)[1:], batched_vs_single, rtol=1e-4, atol=1e-5)
    # IBA on the Swin stage output
    iba = ready(IBATransformer(model, **FAST), images)
    assert iba.layer_names == ["layers.0"] and iba.attribute(x, y).shape == (2, 1, 64, 64)


class _TokenBlock(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(dim)
        self.mlp = torch.nn.Linear(dim, dim)

    def forward(self, t):
        return t + self.mlp(self.norm1(t))   # per token: no token sees another


class _OneTokenViT(torch.nn.Module):
    """ViT-like: 8x8 patches of a 32x32 image (4x4 tokens) + CLS, token-wise residual blocks, and a head that
    reads the features of patch token ``reads`` only (sharpened x10: the class flips when that token is noise)."""

    num_prefix_tokens = 1

    def __init__(self, reads: int, dim: int = 8, depth: int = 3):
        super().__init__()
        self.reads = reads
        self.patch_embed = torch.nn.Conv2d(3, dim, 8, 8)
        self.cls_token = torch.nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = torch.nn.ModuleList([_TokenBlock(dim) for _ in range(depth)])
        self.head = torch.nn.Linear(dim, 2)
        with torch.no_grad():
            self.head.weight.mul_(10)

    def forward(self, x):
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], 1)
        for block in self.blocks:
            t = block(t)
        return self.head(t[:, 1 + self.reads])


def test_coiba_keeps_the_one_token_the_output_reads_and_its_objective_falls():
    """Eq. 8 on a toy transformer whose output depends on one patch token: minimising CE + beta * KL closes every
    other token (lambda -> 0: pure noise) but keeps that one (its CE term defends it), so the map ranks it first
    with bits to spare, the objective (recomputed from the logits and lambdas of each step) falls, and the
    prediction survives. Measured over 6 model seeds: the token's cell >= 1.9 bits, objective ratio <= 0.12."""
    from torch.nn import functional as F

    reads, draws = 6, 4
    torch.manual_seed(0)
    model = ZooModel(_OneTokenViT(reads), ModelSpec("one_token_vit", (32, 32), 2, "vit", token_grid=(4, 4),
                                                    num_prefix_tokens=1)).eval()
    g = torch.Generator().manual_seed(100)
    stats_x, x = torch.rand(32, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    method = ready(CoIBA(model, layers={"start": 0, "end": 3}, op="", steps=10, draws=draws), stats_x)
    method.trace = []
    logits, first = [], []   # registered before the bottleneck's hooks: the first layer's unperturbed R_1
    handles = [model.register_forward_hook(lambda m, i, o: logits.append(o.detach())),
               model.net.get_submodule(method.layer_names[0]).register_forward_hook(
                   lambda m, i, o: first.append(o.detach()))]
    try:
        maps = method.attribute(x, y)
    finally:
        for h in handles:
            h.remove()
    cells = torch.nn.functional.avg_pool2d(maps, 8)[:, 0].flatten(1)   # [B, 16] token grid
    assert cells.argmax(1).tolist() == [reads, reads], cells
    assert (cells[:, reads] > 1.0).all(), f"bits at the token the output reads: {cells[:, reads].tolist()}"
    # the objective of Eq. 8 at each step, from what that step's forward pass saw
    name = method.layer_names[0]
    mean, std = method.statistics[name]
    mean, std = mean[1:], std[1:].clamp_min(0.01)
    objective, ce = [], None
    for step, (out, r1) in enumerate(zip(logits, first)):
        ce = F.cross_entropy(out, y.repeat_interleave(draws), reduction="none").view(2, draws).mean(1)
        lam = method.trace[step][name].detach()
        kl = tb._kl_elementwise(r1[:, 1:], lam, mean, std).reshape(2, -1).mean(1)
        objective.append(ce + method.beta * kl)
    assert len(objective) == method.steps
    assert (objective[-1] < 0.25 * objective[0]).all(), f"Eq. 8 objective first/last: {objective[0]} {objective[-1]}"
    assert (ce < 0.5).all(), f"cross-entropy at the last step {ce.tolist()}"


def _gaussian_kl_bits(r, lam, mu, sigma):
    """KL(N(λr+(1−λ)μ, ((1−λ)σ)²) || N(μ, σ²)) summed over the last (channel) axis, in bits (closed form)."""
    mean_z, std_z = lam * r + (1 - lam) * mu, (1 - lam) * sigma
    kl = torch.log(sigma / std_z) + (std_z ** 2 + (mean_z - mu) ** 2) / (2 * sigma ** 2) - 0.5
    return kl.sum(-1) / math.log(2)


class _SideNormBlock(torch.nn.Module):
    """``norm1`` is a side branch whose (bottlenecked) output the block discards: R'_l = norm1_l(clean stream)."""

    def __init__(self, dim):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(dim)
        self.mlp = torch.nn.Linear(dim, dim)
        with torch.no_grad():
            self.norm1.weight.uniform_(0.5, 2.0)
            self.norm1.bias.normal_()

    def forward(self, t):
        self.norm1(t)
        return t + self.mlp(t)


class _SideNormViT(_OneTokenViT):
    def __init__(self, dim: int = 8, depth: int = 3):
        super().__init__(reads=0, dim=dim, depth=depth)
        self.blocks = torch.nn.ModuleList([_SideNormBlock(dim) for _ in range(depth)])


def test_map_layers_all_is_the_mean_of_the_per_layer_kl_maps():
    """A toy whose hooked layers see the clean stream, so each layer's KL map has a closed form: with λ fixed
    at sigmoid(0) = 0.5 (lr ≈ 0), ``all`` = mean over layers of those maps, ``first`` = the first one."""
    torch.manual_seed(0)
    model = ZooModel(_SideNormViT(), ModelSpec("side_norm_vit", (32, 32), 2, "vit", token_grid=(4, 4),
                                               num_prefix_tokens=1)).eval()
    g = torch.Generator().manual_seed(7)
    stats_x, x = torch.rand(32, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    y = torch.tensor([0, 1])
    options = dict(layers={"start": 0, "end": 3}, alpha_init=0.0, lr=1e-6, steps=2, draws=3)
    first = ready(CoIBA(model, **options), stats_x)
    names = first.layer_names
    clean = {}
    handles = [model.net.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: clean.__setitem__(n, o.detach())) for n in names]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    per_layer = []
    for name in names:
        mean, std = first.statistics[name]
        bits = _gaussian_kl_bits(clean[name][:, 1:], torch.tensor(0.5), mean[1:], std[1:].clamp_min(0.01))
        per_layer.append(tb.upsample(bits.reshape(2, 1, 4, 4), (32, 32)))
    assert (per_layer[0] - per_layer[2]).abs().max() > 1e-2  # the layers carry different information
    every = ready(CoIBA(model, map_layers="all", **options), stats_x)
    torch.testing.assert_close(first.attribute(x, y), per_layer[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(every.attribute(x, y), torch.stack(per_layer).mean(0), rtol=1e-4, atol=1e-5)


def test_map_layers_all_on_the_noise_path(tiny_vit, shapes_batch, stats_images):
    """tiny_vit: R'_l of deeper layers carries the noise of the layers before it. The map is the mean over
    layers of each layer's KL (closed form on what the map pass fed each layer, mean over draws); one layer
    gives ``first``'s map; a bad choice is a one-line error."""
    x, y = shapes_batch["image"][:2], shapes_batch["label"][:2]
    draws = FAST["draws"]
    method = ready(CoIBA(tiny_vit, map_layers="all", **FAST), stats_images)
    trace = []
    seen = {n: [] for n in method.layer_names}  # registered first: the outputs before the bottleneck replaces them
    handles = [tiny_vit.net.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: seen[n].append(o.detach())) for n in method.layer_names]
    try:
        grid = tb.optimise_bottleneck(tiny_vit, x, y, method.layers, method.statistics, beta=1.0, trace=trace,
                                      map_layers="all", **FAST)  # the token grid, [2,1,8,8]
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(method.attribute(x, y), tb.upsample(grid, (64, 64)))
    assert len(trace) == FAST["steps"] + 1 and all(len(v) == FAST["steps"] + 1 for v in seen.values())
    maps = []
    for name in method.layer_names:
        mean, std = method.statistics[name]
        lam = trace[-1][name]  # the final λ of the map pass, [B*draws, 64, 1]
        bits = _gaussian_kl_bits(seen[name][-1][:, 1:], lam, mean[1:], std[1:].clamp_min(0.01))
        maps.append(bits.reshape(2, draws, 8, 8).mean(1).unsqueeze(1))
    torch.testing.assert_close(grid, torch.stack(maps).mean(0), rtol=1e-3, atol=1e-4)
    assert (maps[-1] - maps[0]).abs().max() > 1e-3
    first = ready(CoIBA(tiny_vit, **FAST), stats_images)
    assert (first.attribute(x, y) - method.attribute(x, y)).abs().max() > 1e-4
    one = dict(layers={"start": 3, "end": 4}, **FAST)
    torch.testing.assert_close(ready(CoIBA(tiny_vit, map_layers="all", **one), stats_images).attribute(x, y),
                               ready(CoIBA(tiny_vit, **one), stats_images).attribute(x, y), rtol=1e-5, atol=1e-6)
    with pytest.raises(XattrError, match="map_layers"):
        CoIBA(tiny_vit, map_layers="last")


def _one_token_model(reads: int = 6):
    torch.manual_seed(0)
    return ZooModel(_OneTokenViT(reads), ModelSpec("one_token_vit", (32, 32), 2, "vit", token_grid=(4, 4),
                                                   num_prefix_tokens=1)).eval()


def test_bottleneck_output_is_the_damped_mixture_with_the_seeded_noise():
    """Eq. 2: ``Z = λR + (1 − λ)(μ + σε)`` on the patch tokens, ε the seeded per-image stream, the CLS token
    untouched. Read off the next block's input on the first forward pass (λ = sigmoid(0) = 0.5 there)."""
    model = _one_token_model()
    g = torch.Generator().manual_seed(3)
    stats_x, x = torch.rand(32, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g)
    draws, seed = 3, 11
    method = ready(CoIBA(model, layers={"start": 0, "end": 3}, op="", steps=1, draws=draws, alpha_init=0.0,
                         seed=seed), stats_x)
    first, after = method.layer_names[0], []
    clean = []   # registered before the bottleneck's hooks: the unperturbed R of the first layer
    handles = [model.net.get_submodule(first).register_forward_hook(lambda m, i, o: clean.append(o.detach())),
               model.net.blocks[1].register_forward_pre_hook(lambda m, i: after.append(i[0].detach()))]
    try:
        method.attribute(x, torch.tensor([0]))
    finally:
        for h in handles:
            h.remove()
    mean, std = method.statistics[first]
    mean, std = mean[1:], std[1:].clamp_min(0.01)
    r, z = clean[0], after[0]                                      # [draws, 1 + 16, C]
    eps = torch.randn((draws, 16, r.shape[-1]), generator=torch.Generator().manual_seed(seed))
    expected = 0.5 * r[:, 1:] + 0.5 * (mean + std * eps)
    torch.testing.assert_close(z[:, 1:], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z[:, :1], r[:, :1])                 # the CLS token passes unchanged
    assert (z[:, 1:] - r[:, 1:]).abs().max() > 0.1


def test_sum_bound_weights_each_layer_by_its_beta_over_the_layer_count():
    """Eq. 4: ``CE + (1/L) Σ_l β_l · mean KL_l``. With ``betas = [L·β, 0, 0]`` only the first layer's KL counts,
    with weight β: the fit is Eq. 8's (``bound=first``, ``beta=β``) step for step. Doubling the other layers'
    weights from 0 changes it."""
    model = _one_token_model()
    g = torch.Generator().manual_seed(4)
    stats_x, x = torch.rand(32, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    options = dict(layers={"start": 0, "end": 3}, op="", steps=5, draws=2, beta=2.0)
    first = ready(CoIBA(model, **options), stats_x).attribute(x, y)
    summed = ready(CoIBA(model, bound="sum", betas=[6.0, 0.0, 0.0], **options), stats_x).attribute(x, y)
    torch.testing.assert_close(summed, first, rtol=1e-4, atol=1e-5)
    other = ready(CoIBA(model, bound="sum", betas=[6.0, 6.0, 6.0], **options), stats_x).attribute(x, y)
    assert (other - first).abs().max() > 1e-3
    single = ready(CoIBA(model, bound="sum", betas=[2.0, 0.0, 0.0], **options), stats_x).attribute(x, y)
    assert (single - first).abs().max() > 1e-3, "β_l is divided by the layer count L"
    default = ready(CoIBA(model, bound="sum", **{**options, "beta": 6.0}), stats_x).attribute(x, y)
    torch.testing.assert_close(default, other)   # betas unset: β for every layer
