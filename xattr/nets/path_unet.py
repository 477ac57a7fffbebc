"""DiffIG's path diffusion model: a diffusers ``UNet2DModel`` over path schedules, conditioned on ``log α``.

**The space it diffuses in.** A path schedule is ``S ∈ [0,1]^{(K+1)×C'×h×w}``, non-decreasing in ``k`` with
``S_0 = 0`` and ``S_K = 1`` (``xattr.paths.SchedulePath``). The endpoints carry nothing, so the network sees the
``K−1`` interior values ``S_1 … S_{K−1}`` of each of the ``C'`` channels as ``(K−1)·C'`` image channels on the
``h×w`` grid, scaled to ``[−1, 1]`` (``u = 2S − 1``, the DDPM convention). A sample ``u`` maps back by
:func:`sample_to_schedule`: ``S = clip(iso_k((u + 1)/2), 0, 1)`` with ``S_0 = 0``, ``S_K = 1`` prepended and
appended, ``iso_k`` the isotonic regression over ``k`` (:func:`xattr.utils.isotonic.isotonic_regression`), so
``S`` is the Euclidean projection of ``(u + 1)/2`` onto valid schedules. That map is monotone with exact
endpoints *by construction*, keeps exact zero increments (a pooled block of equal values, or values clipped to 0
or 1, the jumps of small-α stick-breaking draws) and is the identity on valid schedules (training targets are its
fixed points). It keeps each pixel's sum over ``k``: a cumulative max (our first map) raised every violation to
the running maximum and biased the sampled schedules upward (``S_4`` 0.35 instead of 0.25 at α = 0.1, measured
in docs/paths.md). The alternative, increments on the simplex through a
softmax, cannot represent an exact zero increment (docs/paths.md, "DiffIG").

**Conditioning.** ``class_embed_type="timestep"`` (diffusers 0.42): the class label is a float passed through
the same sinusoidal projection as the timestep and its own MLP, then added to the time embedding. The label is
``1000·(log α − log α_low)/(log α_high − log α_low)``, i.e. ``log α`` spread over the timestep range
(``alpha_range`` is the training range; values outside it extrapolate).

**Image conditioning (our guess, off by default).** With ``image_channels = C`` the image, area-averaged onto the
grid and scaled to ``[−1, 1]`` (:func:`image_on_grid`), is concatenated to the noisy sample as ``C`` more input
channels. Trained on stick-breaking draws alone it would learn to ignore them; it is trained on image-dependent
targets instead (the best of M draws by the faithfulness energy, :mod:`xattr.training.path_diffusion`).

The network also carries the DDPM noise schedule it was trained with (``num_train_timesteps``,
``beta_schedule``) and what it predicts (``prediction_type``): the sampler rebuilds the same schedule from
:meth:`PathUNet.config`.

**What it predicts.** ``v_prediction`` (Salimans & Ho 2022, ``v = √ᾱ_t ε − √(1−ᾱ_t) u_0``; diffusers'
``get_velocity``) by default. Under ε-prediction the clean estimate at high noise is
``(u_t − √(1−ᾱ_t) ε̂)/√ᾱ_t``: at the first sampling steps (``ᾱ_t`` ≈ 0.006 and below on the cosine schedule) the
per-step mean of ``u_0`` lives in an offset of ``ε̂`` smaller than the network's error, so the sampler starts from
a clean estimate near 0 for every step and the samples' mean schedule is wrong (measured, docs/paths.md). ``v``
tends to ``−u_0`` there, so the network predicts the mean directly. ``epsilon`` stays as an option.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.utils.hooks import eval_mode
from xattr.utils.isotonic import isotonic_regression

PREDICTION_TYPES = {"v_prediction": "v", "epsilon": "eps"}  # prediction type -> its tag in checkpoint names


def check_prediction_type(prediction_type: str) -> None:
    """Raise the one-line :class:`XattrError` unless ``prediction_type`` is a key of :data:`PREDICTION_TYPES`."""
    if prediction_type not in PREDICTION_TYPES:
        raise XattrError(f"prediction_type={prediction_type!r} is not one of {list(PREDICTION_TYPES)}")


def schedule_to_sample(schedule: torch.Tensor) -> torch.Tensor:
    """``S`` ``[N, K+1, C', h, w]`` -> the diffused tensor ``u = 2 S_{1…K−1} − 1`` ``[N, (K−1)·C', h, w]``."""
    if schedule.dim() != 5 or schedule.shape[1] < 3:
        raise XattrError(f"schedule of shape {tuple(schedule.shape)} must be [N, K+1, C', h, w] with K >= 2")
    inner = schedule[:, 1:-1]
    return (2 * inner - 1).flatten(1, 2)


def sample_to_schedule(sample: torch.Tensor, n_steps: int) -> torch.Tensor:
    """The diffused ``u`` ``[N, (K−1)·C', h, w]`` -> a monotone schedule ``[N, K+1, C', h, w]`` (module docstring):
    isotonic regression of ``(u + 1)/2`` over ``k``, clipped to ``[0, 1]``, ``S_0 = 0`` and ``S_K = 1`` exactly.
    Differentiable almost everywhere (each value's gradient is spread over its pooled block)."""
    n, channels, h, w = sample.shape
    if channels % (int(n_steps) - 1):
        raise XattrError(f"sample with {channels} channels does not hold K-1={int(n_steps) - 1} steps per channel; "
                         "give the n_steps the path model was trained with")
    inner = ((sample + 1) / 2).view(n, int(n_steps) - 1, -1, h, w)
    inner = isotonic_regression(inner, dim=1).clamp(0, 1)
    zero, one = torch.zeros_like(inner[:, :1]), torch.ones_like(inner[:, :1])
    return torch.cat([zero, inner, one], dim=1)


class PathUNet(nn.Module):
    """``ε̂ = unet(u_t, t, label(log α))`` for ``u_t`` ``[N, (K−1)·C', h, w]`` (module docstring).

    ``width``: channels of the first level (levels ``width · 2^i``, ``i < depth``); ``layers_per_block`` ResNet
    blocks per level; GroupNorm groups ``min(8, width)``. ``seed`` makes the random initialisation reproducible.
    """

    def __init__(self, n_steps: int = 16, grid: int = 16, channels: int = 1, width: int = 32, depth: int = 2,
                 layers_per_block: int = 1, alpha_range: tuple | list = (0.1, 100.0),
                 num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2",
                 prediction_type: str = "v_prediction", seed: int = 0, image_channels: int = 0):
        super().__init__()
        from diffusers import UNet2DModel

        if int(n_steps) < 2 or int(grid) < 2 ** (int(depth) - 1) or int(channels) < 1:
            raise XattrError(f"path model needs n_steps >= 2, grid >= 2**(depth-1), channels >= 1; got n_steps="
                             f"{n_steps}, grid={grid}, depth={depth}, channels={channels}")
        check_prediction_type(prediction_type)
        low, high = (float(v) for v in alpha_range)
        if not 0 < low < high:
            raise XattrError(f"alpha_range [{low}, {high}] must satisfy 0 < low < high, e.g. [0.1, 100]")
        self.n_steps, self.grid, self.channels = int(n_steps), int(grid), int(channels)
        self.width, self.depth, self.layers_per_block = int(width), int(depth), int(layers_per_block)
        self.alpha_range, self.seed = [low, high], int(seed)
        self.num_train_timesteps, self.beta_schedule = int(num_train_timesteps), str(beta_schedule)
        self.prediction_type = str(prediction_type)
        self.image_channels = int(image_channels)
        planes = (self.n_steps - 1) * self.channels
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.unet = UNet2DModel(sample_size=self.grid, in_channels=planes + self.image_channels, out_channels=planes,
                                    layers_per_block=self.layers_per_block,
                                    block_out_channels=tuple(self.width * 2 ** i for i in range(self.depth)),
                                    down_block_types=("DownBlock2D",) * self.depth,
                                    up_block_types=("UpBlock2D",) * self.depth,
                                    norm_num_groups=min(8, self.width), class_embed_type="timestep")

    def config(self) -> dict:
        """The constructor's keywords (plain values: a checkpoint stores them)."""
        return {"n_steps": self.n_steps, "grid": self.grid, "channels": self.channels, "width": self.width,
                "depth": self.depth, "layers_per_block": self.layers_per_block, "alpha_range": list(self.alpha_range),
                "num_train_timesteps": self.num_train_timesteps, "beta_schedule": self.beta_schedule,
                "prediction_type": self.prediction_type, "seed": self.seed, "image_channels": self.image_channels}

    def alpha_label(self, alpha: torch.Tensor) -> torch.Tensor:
        """``1000·(log α − log low)/(log high − log low)`` ``[N]`` for concentrations ``alpha`` ``[N]``."""
        low, high = (math.log(v) for v in self.alpha_range)
        return 1000.0 * (alpha.double().log() - low) / (high - low)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, alpha: torch.Tensor,
                image: torch.Tensor | None = None) -> torch.Tensor:
        """``ε̂`` or ``v̂`` (``prediction_type``) ``[N, (K−1)·C', h, w]`` for noisy ``sample`` (same shape),
        ``timestep`` ``[N]`` and ``alpha`` ``[N]``; an image-conditioned model (``image_channels > 0``) also takes
        ``image`` ``[N, image_channels, h, w]`` (:func:`image_on_grid`), concatenated to ``sample``."""
        label = self.alpha_label(alpha.to(sample.device)).to(sample.dtype)
        if self.image_channels:
            if image is None or tuple(image.shape[1:]) != (self.image_channels, *sample.shape[-2:]):
                got = None if image is None else tuple(image.shape)
                raise XattrError(f"this path model is image-conditioned: give image [N, {self.image_channels}, "
                                 f"{self.grid}, {self.grid}] (image_on_grid), got {got}")
            sample = torch.cat([sample, image.to(sample)], 1)
        return self.unet(sample, timestep, class_labels=label).sample


def image_on_grid(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``[0,1]`` images ``[B, C, H, W]`` -> the conditioning input ``[B, C, grid, grid]`` in ``[−1, 1]`` (area
    average onto the schedule's grid)."""
    return 2 * torch.nn.functional.adaptive_avg_pool2d(x, (int(grid), int(grid))) - 1


def clean_estimate(out: torch.Tensor, u: torch.Tensor, a_bar: float, prediction_type: str) -> torch.Tensor:
    """``û_0`` clipped to ``[−1, 1]`` from the model output ``out`` at ``u_t`` (same shape): ``√ᾱ u − √(1−ᾱ) v̂``
    (``v_prediction``) or ``(u − √(1−ᾱ) ε̂)/√ᾱ`` (``epsilon``)."""
    if prediction_type == "v_prediction":
        clean = math.sqrt(a_bar) * u - math.sqrt(1 - a_bar) * out
    else:
        clean = (u - math.sqrt(1 - a_bar) * out) / math.sqrt(a_bar)
    return clean.clamp(-1, 1)


def output_for_clean(clean: torch.Tensor, u: torch.Tensor, a_bar: float, prediction_type: str) -> torch.Tensor:
    """The model output that :func:`clean_estimate` maps to ``clean`` at ``u_t`` (inverse of its unclipped form):
    ``v = (√ᾱ u − û_0)/√(1−ᾱ)`` or ``ε = (u − √ᾱ û_0)/√(1−ᾱ)``."""
    if prediction_type == "v_prediction":
        return (math.sqrt(a_bar) * u - clean) / math.sqrt(1 - a_bar)
    return (u - math.sqrt(a_bar) * clean) / math.sqrt(1 - a_bar)


@torch.no_grad()
def ddim_sample(net: PathUNet, noise: torch.Tensor, alpha: torch.Tensor, sampling_steps: int,
                guide: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                image: torch.Tensor | None = None) -> torch.Tensor:
    """Deterministic DDIM (diffusers ``DDIMScheduler``, ``η = 0``) from ``noise`` ``[N, (K−1)·C', h, w]`` at
    concentrations ``alpha`` ``[N]``: the raw samples ``u`` (same shape; :func:`sample_to_schedule` maps them).

    ``trailing`` timesteps (the first step at ``t = T − 1``, where ``noise`` is pure noise; diffusers' default
    ``leading`` starts at ``T − T/steps``, where the model expects some signal: Lin et al. 2024, "Common Diffusion
    Noise Schedules and Sample Steps are Flawed", arXiv 2305.08891), the clean estimate clipped to ``[−1, 1]``,
    the model's ``prediction_type``. ``guide(û_0, step) -> û_0`` (same shape) replaces the clean estimate at every
    step, and the step continues with the model output that matches it (:func:`output_for_clean`). ``image``
    ``[N, C, h, w]``: the conditioning of an image-conditioned model (:func:`image_on_grid`)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=net.num_train_timesteps, beta_schedule=net.beta_schedule,
                              prediction_type=net.prediction_type, clip_sample=True, set_alpha_to_one=True,
                              timestep_spacing="trailing")
    scheduler.set_timesteps(int(sampling_steps))
    device = next(net.parameters()).device
    u, alpha = noise.to(device), alpha.to(device)
    image = None if image is None else image.to(device)
    a_bars = scheduler.alphas_cumprod.tolist()  # one host read, not one per step
    with eval_mode(net):
        for i, t in enumerate(scheduler.timesteps.tolist()):
            out = net(u, torch.full((u.shape[0],), t, device=device), alpha, image)
            if guide is not None:
                clean = guide(clean_estimate(out, u, a_bars[t], net.prediction_type), i)
                out = output_for_clean(clean, u, a_bars[t], net.prediction_type)
            u = scheduler.step(out, t, u, eta=0.0).prev_sample
    return u


__all__ = ["PREDICTION_TYPES", "check_prediction_type", "PathUNet", "schedule_to_sample", "sample_to_schedule",
           "clean_estimate", "output_for_clean", "ddim_sample", "image_on_grid"]
