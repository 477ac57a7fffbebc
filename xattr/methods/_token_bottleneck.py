"""Shared core of the token bottlenecks on transformers: CoIBA, IBA on one layer, IBA*.

Private helpers (not a method): layer resolution for ViT/DeiT (``blocks.{i}.<op>``, tokens
``[B,T,C]`` with prefix tokens first) and Swin (``layers.{s}.blocks.{i}.<op>``, tokens ``[B,H,W,C]``),
feature statistics, and ``optimise_bottleneck`` — the loop of IBA (Schulz et al. 2020) generalised to a
damping ratio shared by several hooked layers, as CoIBA (Hong et al. CVPR 2025, Eq. 3) needs it.

The loop, per image (B images are explained jointly, each with its own α and its own noise stream, so
a batch gives the same maps as one image at a time with the same seed):

    λ = sigmoid(α)                    α: [B, *tokens, 1] (channel-uniform) or [B, *tokens, C]
    at every hooked layer l:  Z_l = λ·R'_l + (1−λ)·ε_l,   ε_l ~ N(μ_l, σ_l), σ_l ≥ min_std
    loss_b = CE(f(x_b), y_b) averaged over `draws` noise draws
             + β · mean_{tokens,channels} KL(P(Z_1|R_1) || N(μ_1, σ_1))       (bound="first": Eq. 8)
             + (1/L) Σ_l β_l · mean KL(P(Z_l|R'_l) || N(μ_l, σ_l))           (bound="sum":   Eq. 4)
    Adam(lr) on α for `steps` steps; map = KL of the first layer with the final λ, summed over
    channels, in bits, on the token grid (map_layers="first", as the CoIBA authors' code), or
    (1/L) Σ_l of every layer's KL map with the final λ (map_layers="all"; one more forward pass with
    `draws` noise draws: KL_l is averaged over the draws of R'_l, as E_{Z_{l-1}} in Eq. 5–6).

Prefix (CLS / distillation / register) tokens are never perturbed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from xattr.errors import XattrError
from xattr.utils.hooks import eval_mode, forward_hooks, frozen


@dataclass(frozen=True)
class TokenLayer:
    """A hooked module whose output holds tokens: ``[B, prefix+T, C]`` (vit) or ``[B, H, W, C]`` (swin)."""

    name: str
    layout: str  # "vit" | "swin"
    num_prefix: int = 0


# ---------------------------------------------------------------------------------------------- layers


def _family(model: nn.Module) -> str:
    spec = getattr(model, "spec", None)
    family = getattr(spec, "family", None)
    if family not in ("vit", "swin"):
        raise XattrError(f"token bottlenecks need a transformer (model family vit or swin), got {family!r}; "
                         "use method=iba for CNNs")
    return family


def _num_prefix(model: nn.Module) -> int:
    spec = model.spec
    prefix = getattr(spec, "num_prefix_tokens", None)
    if prefix is None:
        prefix = getattr(model.net, "num_prefix_tokens", 0)
    return int(prefix)


def _has_module(model: nn.Module, name: str) -> bool:
    try:
        model.net.get_submodule(name)
        return True
    except AttributeError:
        return False


def block_count(model: nn.Module, stage: int | None = None) -> int:
    """Number of blocks a layer range indexes: ViT blocks, or the blocks of Swin stage ``stage``."""
    if _family(model) == "vit":
        return len(model.net.blocks)
    stages = model.net.layers
    if stage is None or not 0 <= stage < len(stages):
        raise XattrError(f"swin stage {stage!r} out of range; choose method.stage in 0..{len(stages) - 1}")
    return len(stages[stage].blocks)


def default_stage(model: nn.Module) -> int:
    """Swin: the second-to-last stage (Swin-B: stage 2, 18 blocks on a 14×14 grid at 224 px)."""
    return max(len(model.net.layers) - 2, 0)


def default_range(depth: int) -> tuple[int, int]:
    """Paper's ViT-B range 4..12 (blocks 4..11) scaled to other depths: round(depth/3)..depth."""
    return int(round(depth / 3)), depth


def token_layer(model: nn.Module, block: int, op: str, stage: int | None = None) -> TokenLayer:
    """The hooked module of ``block`` (``op`` = sub-module such as ``norm1``; empty = the block output)."""
    family = _family(model)
    base = f"blocks.{block}" if family == "vit" else f"layers.{stage}.blocks.{block}"
    name = f"{base}.{op}" if op else base
    if not _has_module(model, name):
        raise XattrError(f"model {model.spec.name} has no layer {name!r}; check method.op / method.layers")
    return TokenLayer(name, family, _num_prefix(model) if family == "vit" else 0)


def named_token_layer(model: nn.Module, name: str) -> TokenLayer:
    """A hooked module given by dotted name or spec role (``bottleneck``)."""
    family = _family(model)
    spec = model.spec
    if name in getattr(spec, "layers", {}):
        name = spec.layer(name, 0)
    if not _has_module(model, name):
        raise XattrError(f"model {spec.name} has no layer {name!r}; pass a dotted name inside model.net")
    return TokenLayer(name, family, _num_prefix(model) if family == "vit" else 0)


def layer_range(model: nn.Module, start: int | None, end: int | None, op: str,
                stage: int | None = None) -> list[TokenLayer]:
    """Layers ``start..end-1`` (end exclusive) at ``op``; ``None`` picks the paper-scaled default."""
    if _family(model) == "swin" and stage is None:
        stage = default_stage(model)
    depth = block_count(model, stage)
    auto_start, auto_end = default_range(depth)
    start = auto_start if start is None else int(start)
    end = auto_end if end is None else int(end)
    if not 0 <= start < end <= depth:
        raise XattrError(f"method.layers.start={start}, method.layers.end={end} invalid for {depth} blocks; "
                         f"need 0 <= start < end <= {depth}")
    return [token_layer(model, i, op, stage) for i in range(start, end)]


# ----------------------------------------------------------------------------------------- statistics


def _stats_pair(result) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept ``(mean, std)``, a dict with ``mean``/``std``, or an object with mean/std (attrs or methods)."""
    if isinstance(result, dict):
        mean, std = result["mean"], result["std"]
    elif isinstance(result, (tuple, list)):
        mean, std = result[0], result[1]
    else:
        mean, std = result.mean, result.std
    mean = mean() if callable(mean) else mean
    std = std() if callable(std) else std
    return torch.as_tensor(mean).float(), torch.as_tensor(std).float()


def estimate_statistics(model: nn.Module, layers: list[TokenLayer], context, n_samples: int,
                        batch_size: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (mean, std) per token and channel via ``xattr.info.feature_statistics.feature_statistics``."""
    if context is None or context.train_dataset is None:
        raise XattrError("token bottleneck: prepare() needs a RunContext with train_dataset for feature "
                         "statistics; or call set_statistics({layer: (mean, std)})")
    from xattr.info.feature_statistics import feature_statistics, model_fingerprint  # shared primitives (ib)

    stats = {}
    fingerprint = model_fingerprint(model)
    for layer in layers:
        key = f"{context.model_name}-{context.dataset_name}-{layer.name}-{fingerprint}"
        result = feature_statistics(model, layer.name, context.train_dataset, n_samples=n_samples,
                                    batch_size=batch_size, cache_dir=context.cache_dir, cache_key=key,
                                    device=context.device)
        stats[layer.name] = _stats_pair(result)
    return stats


def check_statistics(stats: dict, layers: list[TokenLayer]) -> None:
    missing = [layer.name for layer in layers if layer.name not in stats]
    if missing:
        raise XattrError(f"no feature statistics for layers {missing}; call method.prepare(RunContext(...)) "
                         "or method.set_statistics({layer: (mean, std)}) first")


# ------------------------------------------------------------------------------------------------ KL


_KL: list = []


def _shared_kl():
    """``xattr.info.bottleneck.kl_capacity`` (ib); ``None`` while that module is not merged yet."""
    if not _KL:
        try:
            from xattr.info.bottleneck import kl_capacity
        except ImportError:
            kl_capacity = None
        _KL.append(kl_capacity)
    return _KL[0]


def _kl_elementwise(r: torch.Tensor, lam: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(λR+(1−λ)μ, (1−λ)²σ²) || N(μ, σ²)) per element, in nats (IBA's capacity)."""
    kl_capacity = _shared_kl()
    if kl_capacity is not None:
        return kl_capacity(r, lam, mean, std)
    r_norm = (r - mean) / std
    var_z = (1 - lam) ** 2
    mu_z = r_norm * lam
    return -0.5 * (1 + torch.log(var_z) - mu_z ** 2 - var_z)


# --------------------------------------------------------------------------------------------- hooks


def _split_tokens(output: torch.Tensor, layer: TokenLayer) -> tuple[torch.Tensor | None, torch.Tensor]:
    if layer.layout == "vit":
        if output.dim() != 3:
            raise XattrError(f"layer {layer.name} gives shape {tuple(output.shape)}, expected [B,T,C] tokens; "
                             "choose a token layer (e.g. blocks.{i}.norm1)")
        return output[:, : layer.num_prefix], output[:, layer.num_prefix:]
    if output.dim() != 4:
        raise XattrError(f"layer {layer.name} gives shape {tuple(output.shape)}, expected [B,H,W,C] "
                         "(Swin stage/block/norm1 outputs are spatial)")
    return None, output


def _join_tokens(prefix: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
    return tokens if prefix is None or prefix.shape[1] == 0 else torch.cat([prefix, tokens], dim=1)


def _token_stats(stats: dict, layer: TokenLayer, min_std: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = stats[layer.name]
    if layer.layout == "vit":
        mean, std = mean[layer.num_prefix:], std[layer.num_prefix:]
    return mean.to(device), std.to(device).clamp_min(min_std)


def tokens_to_grid(values: torch.Tensor, layer: TokenLayer, token_grid) -> torch.Tensor:
    """``[B, T]`` (vit) or ``[B, H, W]`` (swin) → ``[B, 1, h, w]``."""
    if layer.layout == "swin":
        return values.unsqueeze(1)
    n = values.shape[1]
    if token_grid is not None and token_grid[0] * token_grid[1] == n:
        h, w = token_grid
    else:
        h = w = int(round(math.sqrt(n)))
        if h * w != n:
            raise XattrError(f"cannot place {n} tokens of {layer.name} on a square grid; set model.spec.token_grid")
    return values.reshape(values.shape[0], 1, h, w)


def check_map_layers(map_layers: str) -> str:
    """``map_layers`` if it is ``first`` or ``all``; else the one-line error naming it."""
    if map_layers not in ("first", "all"):
        raise XattrError(f"method.map_layers={map_layers!r} unknown; choose first (authors' code) or all "
                         "(mean of every layer's KL map)")
    return map_layers


def optimise_bottleneck(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    layers: list[TokenLayer],
    stats: dict,
    *,
    beta: float,
    betas: list[float] | None = None,
    bound: str = "first",
    channel_uniform: bool = True,
    steps: int = 10,
    lr: float = 1.0,
    draws: int = 10,
    alpha_init: float = 5.0,
    min_std: float = 0.01,
    seed: int = 0,
    trace: list | None = None,
    map_layers: str = "first",
) -> torch.Tensor:
    """Optimise one damping ratio shared by ``layers``; return a KL map ``[B,1,h,w]`` in bits.

    ``map_layers``: ``first`` = the first layer's KL with the final λ; ``all`` = the mean over the ``L``
    layers of every layer's KL map with the final λ (each ``[B,1,h,w]``, averaged over ``draws``).
    ``trace`` (tests): if a list, receives one dict per forward pass with the λ tensor each layer used
    (with ``map_layers=all`` the last entry is the no-grad map pass with the final λ).
    """
    if bound not in ("first", "sum"):
        raise XattrError(f"method.bound={bound!r} unknown; choose first (Eq. 8) or sum (Eq. 4)")
    check_map_layers(map_layers)
    if betas is not None and len(betas) != len(layers):
        raise XattrError(f"method.betas has {len(betas)} values for {len(layers)} layers; give one per layer")
    if steps < 1 or draws < 1:
        raise XattrError(f"method.steps={steps}, method.draws={draws}: both must be >= 1")
    check_statistics(stats, layers)
    device = x.device
    B = x.shape[0]
    modules = [model.net.get_submodule(layer.name) for layer in layers]
    layer_stats = [_token_stats(stats, layer, min_std, device) for layer in layers]
    token_shape = tuple(layer_stats[0][0].shape[:-1])
    for layer, (mean, _) in zip(layers, layer_stats):
        if tuple(mean.shape[:-1]) != token_shape:
            raise XattrError(f"layer {layer.name} has token shape {tuple(mean.shape[:-1])}, not {token_shape}: "
                             "a shared damping ratio needs layers on one token grid (one Swin stage)")
    channels = layer_stats[0][0].shape[-1]
    alpha = torch.full((B, *token_shape, 1 if channel_uniform else channels), float(alpha_init),
                       device=device, requires_grad=True)
    optimizer = torch.optim.Adam([alpha], lr=lr)
    generators = []
    for _ in range(B):  # one stream per image: batched == one-by-one for the same seed
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed))
        generators.append(generator)

    state: dict = {}

    def make_hook(index: int):
        layer = layers[index]
        mean, std = layer_stats[index]

        def hook(module, inputs, output):
            prefix, tokens = _split_tokens(output, layer)
            if tuple(tokens.shape[1:-1]) != token_shape or tokens.shape[0] != B * draws:
                raise XattrError(f"layer {layer.name} gives tokens {tuple(tokens.shape)}, statistics expect "
                                 f"[{B * draws}, {', '.join(map(str, token_shape))}, C]; re-estimate statistics")
            lam = state["lam"]  # the ONE damping ratio of this forward pass, [B*draws, *tokens, 1|C]
            noise = torch.cat([torch.randn((draws, *tokens.shape[1:]), generator=g, device=device,
                                           dtype=tokens.dtype) for g in generators])
            z = lam * tokens + (1 - lam) * (mean + std * noise)
            if index == 0:
                state["r1"] = tokens.detach()
            if index == 0 or bound == "sum" or state.get("map_pass"):
                state["kl"][index] = _kl_elementwise(tokens, lam, mean, std)
            if trace is not None:
                state["trace"][layer.name] = lam
            return _join_tokens(prefix, z)

        return hook

    targets = target.repeat_interleave(draws)
    batch = x.repeat_interleave(draws, dim=0)
    with eval_mode(model), frozen(model), forward_hooks([(m, make_hook(i)) for i, m in enumerate(modules)]):
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            state["lam"] = torch.sigmoid(alpha).repeat_interleave(draws, dim=0)
            state["kl"] = {}
            state["trace"] = {}
            logits = model(batch)
            missing = [layers[i].name for i in range(len(layers)) if i not in state["kl"] and
                       (i == 0 or bound == "sum")]
            if missing:
                raise XattrError(f"bottleneck layers {missing} were not reached in the forward pass")
            ce = F.cross_entropy(logits, targets, reduction="none").view(B, draws).mean(1)
            if bound == "first":
                info = beta * _per_image_mean(state["kl"][0], B)
            else:
                weights = betas if betas is not None else [beta] * len(layers)
                info = sum(w * _per_image_mean(state["kl"][i], B) for i, w in enumerate(weights)) / len(layers)
            loss = (ce + info).sum()  # images are independent: each α only sees its own image's loss
            loss.backward()
            optimizer.step()
            if trace is not None:
                trace.append(dict(state["trace"]))
        if map_layers == "all":
            # one no-grad pass with the final λ: every layer's KL on its R'_l (perturbed by the layers before it)
            state["lam"] = torch.sigmoid(alpha.detach()).repeat_interleave(draws, dim=0)
            state["kl"], state["trace"], state["map_pass"] = {}, {}, True
            with torch.no_grad():
                model(batch)
            missing = [layer.name for i, layer in enumerate(layers) if i not in state["kl"]]
            if missing:
                raise XattrError(f"bottleneck layers {missing} were not reached in the forward pass")
            if trace is not None:
                trace.append(dict(state["trace"]))
    token_grid = getattr(model.spec, "token_grid", None)
    if map_layers == "all":
        maps = [tokens_to_grid(state["kl"][i].sum(-1).reshape(B, draws, *token_shape).mean(1) / math.log(2),
                               layers[i], token_grid) for i in range(len(layers))]
        return torch.stack(maps).mean(0)
    # map of the optimised λ on the unperturbed first-layer representation R_1 (the same at every step)
    mean, std = layer_stats[0]
    r1 = state["r1"][::draws]
    lam = torch.sigmoid(alpha.detach())
    kl = _kl_elementwise(r1, lam, mean, std).sum(-1) / math.log(2)
    return tokens_to_grid(kl, layers[0], token_grid)


def _per_image_mean(kl: torch.Tensor, B: int) -> torch.Tensor:
    """``[B*draws, ...]`` → ``[B]``: mean over draws, tokens and channels."""
    return kl.reshape(B, -1).mean(1)


def upsample(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)


class TokenStatisticsMixin:
    """Per-layer feature statistics of the token methods (CoIBA, IBA on transformers, IBA*).

    Expects ``self.layers`` (``TokenLayer`` list), ``self.model``, ``self.n_samples``,
    ``self.stats_batch_size`` and ``self.statistics`` (``{name: (mean, std)}``).
    """

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def set_statistics(self, statistics) -> None:
        """Per-layer ``{name: (mean, std)}`` per token and channel (one sample's output shape)."""
        self.statistics.update({k: _stats_pair(v) for k, v in statistics.items()})

    def prepare(self, context) -> None:
        missing = [layer for layer in self.layers if layer.name not in self.statistics]
        if missing:
            self.statistics.update(estimate_statistics(self.model, missing, context, self.n_samples,
                                                       self.stats_batch_size))
