"""IBA — Per-Sample Information Bottleneck Attribution (Schulz et al., ICLR 2020).

Reference code: BioroboticsLab/IBA, ``IBA/pytorch.py`` (``IBA.analyze``, ``_do_restrict_information``,
``_kl_div``, ``_get_saliency``) and ``IBA/utils.py`` (``to_saliency_map``).

For each image, a damping map ``α`` (one value per feature element at the bottleneck layer) is
optimised so that the restricted features ``z = λ r + (1-λ) ε``, ``λ = smooth(sigmoid(α))``,
``ε ~ N(μ, max(σ, min_std))``, keep the target class (cross-entropy over a batch of noise draws)
while passing little information ``β · mean(KL capacity)``. The heatmap is the capacity of the
last forward pass, summed over channels, in bits, scaled to bits per input pixel and resized
bilinearly to the input.

Batched: B images are optimised in one loop, each with its own ``α``. Their losses are summed
(each image's loss is its own mean over draws and elements, exactly as the reference's loss), so
each ``α`` receives the gradient it would receive alone; Adam is elementwise, and each image's
noise comes from a generator seeded by the image content and ``seed``, so the batched result
equals the one-at-a-time result (up to floating-point reduction order).

Speed: the layers before the bottleneck run once per image (not once per noise draw): the hook
expands the batch from B to B·batch_size after the bottleneck. This needs a model without skip
connections around the bottleneck layer (true for VGG ``features.*``, ResNet ``layer*``,
EfficientNet ``features.*``, tiny_cnn); otherwise a one-line error names the problem.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from xattr.errors import XattrError
from xattr.info.bottleneck import SpatialGaussianSmoothing, bottleneck_sample, kl_capacity, standard_normal
from xattr.info.feature_statistics import feature_statistics, model_fingerprint, resolve_layer
from xattr.methods.base import CACHE_SEED, AttributionMethod, RunContext
from xattr.utils.hooks import forward_hook, frozen
from xattr.utils.seed import image_seeds, make_generator


def _layer_name(model: nn.Module, layer: str | None) -> str:
    if layer is not None:
        return layer
    spec = getattr(model, "spec", None)
    if spec is None or "bottleneck" not in spec.layers:
        raise XattrError("the model declares no 'bottleneck' layer; pass layer=<module name> (e.g. features.17)")
    return spec.layer("bottleneck")


def stats_cache_key(context: RunContext, model: nn.Module, layer: str, n_samples: int) -> str:
    """File-name-safe key: model name + dataset + layer + n_samples + weight fingerprint."""
    raw = f"{context.model_name}-{context.dataset_name}-{layer}-n{n_samples}-{model_fingerprint(model)}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


class IBA(AttributionMethod):
    """Per-Sample Bottleneck (IBA). Output ``[B,1,H,W]``: bits per pixel, not normalised.

    Args (defaults = the reference code / paper, see ``conf/method/iba.yaml``):
        layer: bottleneck module (``None``: the model's ``bottleneck`` role, VGG16 ``features.17``,
            ResNet50 ``layer2``).
        beta: weight of the information loss (10).
        optimization_steps: Adam steps (10).
        lr: Adam learning rate (1).
        batch_size: noise draws per step (10).
        initial_alpha: initial ``α`` (5, so λ ≈ 0.993).
        sigma: std of the Gaussian smoothing of λ (1; 0 turns smoothing off).
        min_std: floor of the feature std (0.01).
        active_neurons_threshold: elements non-zero in at most this fraction of images get no noise
            and no capacity (0.01).
        n_samples: training images for the feature statistics (10,000 in the paper).
        stats_batch_size: batch size of the statistics pass.
        seed: seed mixed with each image's content for its noise.
    """

    supports_transformers = False

    def __init__(self, model: nn.Module, layer: str | None = None, beta: float = 10.0,
                 optimization_steps: int = 10, lr: float = 1.0, batch_size: int = 10,
                 initial_alpha: float = 5.0, sigma: float = 1.0, min_std: float = 0.01,
                 active_neurons_threshold: float = 0.01, n_samples: int = 10_000,
                 stats_batch_size: int = 32, seed: int = 0, progress: bool = True):
        super().__init__(model)
        self.layer = _layer_name(model, layer)
        self.beta = float(beta)
        self.optimization_steps = int(optimization_steps)
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.initial_alpha = float(initial_alpha)
        self.sigma = float(sigma)
        self.min_std = float(min_std)
        self.active_neurons_threshold = float(active_neurons_threshold)
        self.n_samples = int(n_samples)
        self.stats_batch_size = int(stats_batch_size)
        self.seed = int(seed)
        self.progress = progress
        if self.optimization_steps < 1 or self.batch_size < 1:
            raise XattrError(f"IBA needs optimization_steps >= 1 and batch_size >= 1, got "
                             f"{optimization_steps} and {batch_size}")
        resolve_layer(model, self.layer)  # fail early on a bad layer name
        self.stats: dict | None = None
        #: per-step losses of the last call, ``[steps, B]`` (model loss, information loss)
        self.history: dict[str, torch.Tensor] = {}

    # -- statistics -------------------------------------------------------------------------
    def prepare(self, context: RunContext) -> None:
        """Estimate (or load from ``context.cache_dir``) the feature statistics on ``train_dataset``."""
        key = stats_cache_key(context, self.model, self.layer, self.n_samples)
        self.stats = feature_statistics(self.model, self.layer, context.train_dataset, n_samples=self.n_samples,
                                        batch_size=self.stats_batch_size, cache_dir=context.cache_dir,
                                        cache_key=key, device=context.device,
                                        active_threshold=self.active_neurons_threshold, seed=CACHE_SEED,
                                        progress=self.progress)

    def set_feature_statistics(self, stats: dict) -> None:
        """Use given statistics (``dict(mean, std, active)`` from ``feature_statistics``)."""
        for key in ("mean", "std", "active"):
            if key not in stats:
                raise XattrError(f"feature statistics lack {key!r}; build them with feature_statistics()")
        self.stats = stats

    def _statistics(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.stats is None:
            raise XattrError("IBA has no feature statistics; call prepare(RunContext(train_dataset=...)) "
                             "or set_feature_statistics(feature_statistics(...)) first")
        mean = self.stats["mean"].to(device)
        std = torch.clamp(self.stats["std"].to(device), min=self.min_std)
        active = self.stats["active"].to(device).float()
        return mean, std, active

    # -- optimisation -----------------------------------------------------------------------
    def fit_capacity(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Optimise one ``α`` per image jointly; return the last forward's capacity ``[B,C,h,w]`` (nats)."""
        mean, std, active = self._statistics(x.device)
        b, draws = x.shape[0], self.batch_size
        layer = resolve_layer(self.model, self.layer)
        smooth = SpatialGaussianSmoothing(self.sigma).to(x.device)
        generators = [make_generator(s, x.device) for s in image_seeds(x, self.seed)]
        alpha = torch.full((b,) + tuple(mean.shape), self.initial_alpha, device=x.device, requires_grad=True)
        optimizer = torch.optim.Adam([alpha], lr=self.lr)
        target_rep = target.repeat_interleave(draws)
        state: dict[str, torch.Tensor] = {}

        def restrict(_module, _inputs, r):
            if not isinstance(r, torch.Tensor) or r.dim() != 4 or r.shape[0] != b:
                shape = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
                raise XattrError(f"IBA layer {self.layer!r} gave {shape}; it needs [B,C,h,w] CNN features")
            lam = smooth(torch.sigmoid(alpha))
            state["capacity"] = kl_capacity(r, lam, mean, std) * active  # same for every draw
            eps = standard_normal((b * draws,) + tuple(r.shape[1:]), generators, device=r.device, dtype=r.dtype)
            z = bottleneck_sample(r.repeat_interleave(draws, 0), lam.repeat_interleave(draws, 0), mean, std, eps=eps)
            return z * active

        losses_model, losses_info = [], []
        from tqdm.auto import tqdm

        steps = tqdm(range(self.optimization_steps), desc="IBA", leave=False, disable=not self.progress or None)
        with torch.enable_grad(), frozen(self.model), forward_hook(layer, restrict):
            for _ in steps:
                optimizer.zero_grad()
                logits = self.model(x)
                if logits.shape[0] != b * draws:
                    raise XattrError(f"IBA at layer {self.layer!r}: the model has a skip connection around it "
                                     "(batch did not expand); choose a layer on the main path")
                model_loss = F.cross_entropy(logits, target_rep, reduction="none").view(b, draws).mean(1)
                info_loss = state["capacity"].flatten(1).mean(1)
                loss = (model_loss + self.beta * info_loss).sum()
                loss.backward()
                optimizer.step()
                losses_model.append(model_loss.detach())
                losses_info.append(info_loss.detach())
        self.history = {"model_loss": torch.stack(losses_model), "information_loss": torch.stack(losses_info)}
        return state["capacity"].detach()

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        capacity = self.fit_capacity(x, target)
        return capacity_to_saliency(capacity, tuple(x.shape[-2:]))


def capacity_to_saliency(capacity: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """IBA's ``to_saliency_map``: sum over channels, nats → bits, bits per input pixel, bilinear resize."""
    bits_map = capacity.sum(dim=1, keepdim=True) / math.log(2)
    h, w = capacity.shape[-2:]
    bits_map = bits_map * (h * w) / (size[0] * size[1])
    return F.interpolate(bits_map, size=size, mode="bilinear", align_corners=False)
