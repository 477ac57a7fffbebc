"""CoIBA: comprehensive information bottleneck (Hong et al., CVPR 2025) for ViT/DeiT/Swin.

Bottlenecks sit at blocks ``layers.start .. layers.end-1`` (module ``op`` inside each block; ViT-B:
``blocks.4.norm1 .. blocks.11.norm1`` as the authors' ``run.sh``). Every bottleneck computes
``Z_l = λ R'_l + (1−λ) ε_l`` with ONE damping ratio ``λ = sigmoid(α)`` per token (uniform over channels,
shared by all layers); ``R'_l`` is the layer's output computed from the previous bottleneck's ``Z``
because the hooks replace outputs in the forward pass. Noise ``ε_l ~ N(μ_l, σ_l)`` uses per-layer
statistics per token and channel (σ ≥ ``min_std``). Prefix tokens (CLS) pass unperturbed.

Objective (Eq. 8, ``bound=first``): CE + β·KL of the first layer; ``bound=sum`` uses the layer-wise
sum of Eq. 4 with per-layer ``betas``. The map (``map_layers=first``, the authors' code) is the first layer's
KL with the optimised λ, summed over channels, in bits, on the token grid, bilinearly upsampled to the input.
``map_layers=all`` follows the paper's text instead (Fig. 5: "aggregates the relevant information from each
layer"): the mean over the L layers of every layer's KL map with the optimised λ, the (1/L) Σ_l of Eq. 4 and
Eq. 7 (a constant factor from the sum, so rank-based metrics see no difference between sum and mean).

Swin: blocks of one ``stage`` (tokens ``[B,H,W,C]`` at ``norm1``, before the window shift), no prefix.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from xattr.methods import _token_bottleneck as tb
from xattr.methods.base import AttributionMethod


class CoIBA(tb.TokenStatisticsMixin, AttributionMethod):
    """CoIBA attribution: one damping ratio shared by a range of transformer layers.

    Args:
        model: zoo transformer (``spec.family`` ``vit`` or ``swin``).
        layers: ``{"start": s, "end": e}``, blocks ``s..e-1``; ``None`` entries pick ViT-B's 4..12 scaled
            to the depth (``round(depth/3)..depth``).
        op: sub-module of each block that is bottlenecked (``norm1``; ``""`` = block output).
        stage: Swin stage whose blocks are indexed (``None``: second-to-last stage).
        beta: trade-off β of Eq. 8 (paper: 1).
        bound: ``first`` (Eq. 8, KL of the first layer) or ``sum`` (Eq. 4, (1/L)·Σ β_l KL_l).
        betas: per-layer β_l for ``bound=sum`` (``None``: β for every layer).
        steps, lr, draws: Adam steps, learning rate and noise draws per step (paper: 10, 1, 10).
        alpha_init: initial α (paper: 5, λ ≈ 0.993).
        min_std: floor of the noise std (IBA / authors: 0.01).
        seed: seed of the noise streams (one per image).
        n_samples, stats_batch_size: images used by ``prepare`` to estimate per-layer statistics.
        map_layers: ``first`` (authors' code: the first layer's KL) or ``all`` ((1/L) Σ_l KL_l, the paper's
            "aggregates the relevant information from each layer"; one extra no-grad forward pass).
    """

    supports_cnn = False  # token bottlenecks: ViT/DeiT/Swin only (method=iba for CNNs)

    def __init__(self, model: nn.Module, layers: Mapping | None = None, op: str = "norm1",
                 stage: int | None = None, beta: float = 1.0, bound: str = "first",
                 betas: list[float] | None = None, steps: int = 10, lr: float = 1.0, draws: int = 10,
                 alpha_init: float = 5.0, min_std: float = 0.01, seed: int = 0, n_samples: int = 1000,
                 stats_batch_size: int = 32, map_layers: str = "first"):
        super().__init__(model)
        layers = dict(layers or {})
        self.layers = tb.layer_range(model, layers.get("start"), layers.get("end"), op, stage)
        self.beta = float(beta)
        self.bound = bound
        self.betas = None if betas is None else [float(b) for b in betas]
        self.steps, self.lr, self.draws = int(steps), float(lr), int(draws)
        self.alpha_init, self.min_std, self.seed = float(alpha_init), float(min_std), int(seed)
        self.n_samples, self.stats_batch_size = int(n_samples), int(stats_batch_size)
        self.map_layers = tb.check_map_layers(map_layers)
        self.statistics: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.trace: list | None = None  # tests: set to [] to record the λ each layer used

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        grid = tb.optimise_bottleneck(
            self.model, x, target, self.layers, self.statistics, beta=self.beta, betas=self.betas,
            bound=self.bound, channel_uniform=True, steps=self.steps, lr=self.lr, draws=self.draws,
            alpha_init=self.alpha_init, min_std=self.min_std, seed=self.seed, trace=self.trace,
            map_layers=self.map_layers)
        return tb.upsample(grid, tuple(x.shape[-2:]))
