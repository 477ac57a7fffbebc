"""DiffIG — "Diffusion Integrated Gradients: Controllable Path Generation for Flexible Feature Attribution" (Kim, Lee,
Choi, ECCV 2026). No text or code of the paper is public: everything below but the outline (a diffusion model over
stick-breaking paths, guided sampling with user guidance) is our design (docs/paths.md, "DiffIG").

Per image, ``n_paths`` paths:

1. ``α`` log-uniform in the path model's ``alpha_range`` and a start noise, both seeded by the image content;
2. DDIM (:func:`xattr.nets.path_unet.ddim_sample`: ``η = 0``, ``sampling_steps`` trailing timesteps, the clean
   estimate clipped to the data range ``[−1, 1]``, the model's own ``prediction_type``) with the path model
   (:class:`xattr.nets.path_unet.PathUNet`, trained by ``xattr train task=path_diffusion``) gives a schedule
   ``S [K+1, C', h, w]`` through the monotone map :func:`~xattr.nets.path_unet.sample_to_schedule`;
3. **guidance** (reconstruction guidance on the predicted clean schedule): at every DDIM step the clean estimate
   ``û_0 = √ᾱ_t u_t − √(1−ᾱ_t) v̂`` (``(u_t − √(1−ᾱ_t) ε̂)/√ᾱ_t`` for an ε model) is mapped to ``Ŝ``; each energy ``E_e(Ŝ)`` with weight ``w_e ≠ 0`` gives
   ``g_e = ∇_{û_0} E_e`` — **the gradient with respect to û_0, not through the U-Net** (no backward pass through the
   path model); ``û_0 ← û_0 − Σ_e w_e g_e / rms(g_e)`` (each gradient scaled to unit root-mean-square per path, so
   a weight is a step length in ``u`` units whatever the energy's scale; our choice) and the step continues with the
   model output (``v`` or ``ε``) that matches the new ``û_0``. Energies (:data:`ENERGIES`): ``faithfulness`` ``−mean_k f_c(γ_k)`` (the
   target's score should rise early), ``smoothness`` (total variation of ``Ŝ`` over the grid), ``region``
   (a mask revealed ``early`` or ``late``), ``on_manifold`` (DiffIB's MMSE denoiser's ε-residual at the waypoints).
   The classifier / denoiser energies see at most ``waypoint_cap`` interior waypoints per step (rotating);
4. ``S`` is refined to ``n_steps`` segments (:func:`xattr.paths.refine_schedule`), ``γ_k = b + up(S_k) ⊙ (x − b)``
   (:class:`xattr.paths.SchedulePath`) and ``A`` is the path integral (:func:`xattr.paths.path_attribution`);
   DiffIG = the mean over the paths. ``diagnostics()``: completeness error, classifier passes (forward-backward)
   per image, of which guidance, and denoiser passes.

All weights 0: unguided DiffIG, a learned SPI prior (the stick-breaking draws depend on no image). With
``path_model.image_conditioned=true`` (our guess) the path model also reads the image on its grid and was trained
on the best of ``candidates`` draws per training image by the faithfulness energy for this classifier (trained on
first use; :mod:`xattr.training.path_diffusion`): unguided sampling is then per image.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path as FilePath

import torch
import torch.nn.functional as F

from xattr.errors import XattrError
from xattr.methods._path_method import PathMethod
from xattr.methods.base import CACHE_SEED, AttributionMethod, RunContext
from xattr.models.spec import input_normalization
from xattr.models.standardise import standardiser
from xattr.nets.path_unet import PathUNet, ddim_sample, image_on_grid, sample_to_schedule
from xattr.paths import SchedulePath, make_baseline, path_attribution, refine_schedule, sample_alpha
from xattr.paths.baselines import BASELINES
from xattr.paths.energies import faithfulness_energy, waypoints_at
from xattr.paths.integrate import OUTPUTS, RULES, check_choice, gradient_session
from xattr.paths.waypoints import UPSAMPLE_MODES
from xattr.utils.hooks import eval_mode, frozen
from xattr.utils.seed import image_seeds, make_generator

log = logging.getLogger(__name__)

ENERGIES = ("faithfulness", "smoothness", "region", "on_manifold")
REGION_MODES = ("early", "late")


# ------------------------------------------------------------------------------------------------ energies


def smoothness_energy(schedule: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of ``S`` ``[P, K+1, C', h, w]`` over the grid, mean over ``k``: ``[P]``."""
    dh = (schedule[..., 1:, :] - schedule[..., :-1, :]).abs().flatten(2).mean(2)
    dw = (schedule[..., :, 1:] - schedule[..., :, :-1]).abs().flatten(2).mean(2)
    return (dh + dw).mean(1)


def region_energy(schedule: torch.Tensor, mask: torch.Tensor, mode: str = "early") -> torch.Tensor:
    """``−(mean S inside − mean S outside)`` averaged over ``k`` (``early``; ``late``: its negative): ``[P]``.

    ``schedule`` ``[P, K+1, C', h, w]``; ``mask`` ``[P, 1, h, w]`` in ``[0, 1]`` (on the schedule's grid).
    """
    inside = mask.unsqueeze(1)
    outside = 1 - inside
    area_in = inside.sum((2, 3, 4)).clamp_min(1e-6) * schedule.shape[2]
    area_out = outside.sum((2, 3, 4)).clamp_min(1e-6) * schedule.shape[2]
    contrast = (schedule * inside).sum((2, 3, 4)) / area_in - (schedule * outside).sum((2, 3, 4)) / area_out
    sign = -1.0 if check_choice("region.mode", mode, REGION_MODES) == "early" else 1.0
    return sign * contrast.mean(1)


def waypoint_indices(n_steps: int, cap: int, step: int) -> list[int]:
    """At most ``cap`` of the interior waypoints ``1 … K−1`` (``K = n_steps``), evenly spread and rotated by the
    sampling ``step`` so that successive steps see different waypoints (the endpoints do not depend on ``S``)."""
    inner = int(n_steps) - 1
    if cap >= inner:
        return list(range(1, inner + 1))
    return sorted({1 + (j * inner // cap + step) % inner for j in range(cap)})


def manifold_energy(denoiser, points: torch.Tensor, standardise, log_snr: float, noise: torch.Tensor) -> torch.Tensor:
    """DiffIB denoiser's ε-residual ``mean ‖ε̂(z, α) − ε‖²`` per waypoint at log-SNR ``log_snr``, ``z = √σ(α) u +
    √σ(−α) ε``, ``u`` the standardised waypoint: ``[m·P]`` for ``points``/``noise`` ``[m·P, C, H, W]``."""
    u = standardise(points)
    alpha = torch.full_like(u, float(log_snr))
    z = torch.sigmoid(alpha).sqrt() * u + torch.sigmoid(-alpha).sqrt() * noise
    return (denoiser(z, alpha) - noise).pow(2).flatten(1).mean(1)


# ------------------------------------------------------------------------------------------------ masks


def box_mask(box, size: tuple[int, int], batch: int) -> torch.Tensor:
    """``[B, 1, H, W]`` mask of ``box = [y0, x0, y1, x1]`` (fractions of the image height/width)."""
    y0, x0, y1, x1 = (float(v) for v in box)
    if not (0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1):
        raise XattrError(f"region.box={list(box)} must be [y0, x0, y1, x1] fractions with 0 <= y0 < y1 <= 1 and "
                         "0 <= x0 < x1 <= 1, e.g. [0.25, 0.25, 0.75, 0.75]")
    h, w = size
    mask = torch.zeros(batch, 1, h, w)
    mask[..., round(y0 * h):max(round(y1 * h), round(y0 * h) + 1), round(x0 * w):max(round(x1 * w),
                                                                                   round(x0 * w) + 1)] = 1
    return mask


def file_mask(path: str, size: tuple[int, int], batch: int) -> torch.Tensor:
    """``[B, 1, H, W]`` mask from a ``.npy`` array or an image file (non-zero = inside), resized to ``size``."""
    file = FilePath(path)
    if not file.is_file():
        raise XattrError(f"region.file={path} does not exist; give a .npy array or an image file (non-zero = inside)")
    import numpy as np

    if file.suffix == ".npy":
        array = torch.as_tensor(np.load(file), dtype=torch.float32)
    else:
        from PIL import Image

        array = torch.as_tensor(np.asarray(Image.open(file).convert("L")), dtype=torch.float32)
    if array.dim() != 2:
        raise XattrError(f"region.file={path} holds an array of shape {tuple(array.shape)}; give a 2-d [H, W] mask")
    mask = F.interpolate((array > 0).float()[None, None], size=size, mode="nearest")
    return mask.expand(batch, 1, *size).clone()


# ------------------------------------------------------------------------------------------------ the method


class DiffIG(PathMethod):
    """Diffusion Integrated Gradients, ``[B,C,H,W]`` (module docstring). Defaults equal ``conf/method/diffig.yaml``."""

    def __init__(self, model, n_paths: int = 4, n_steps: int = 200, sampling_steps: int = 20, waypoint_cap: int = 8,
                 energies: dict | None = None, rule: str = "left", baseline: str = "black",
                 output: str = "probability", upsample: str = "bilinear", path_model: dict | None = None,
                 denoiser: dict | None = None, seed: int = 0, chunk: int = 32):
        super().__init__(model)
        if min(int(n_paths), int(n_steps), int(sampling_steps), int(waypoint_cap), int(chunk)) < 1:
            raise XattrError(f"diffig needs n_paths, n_steps, sampling_steps, waypoint_cap and chunk >= 1; got "
                             f"{n_paths}, {n_steps}, {sampling_steps}, {waypoint_cap}, {chunk}")
        self.n_paths, self.n_steps, self.sampling_steps = int(n_paths), int(n_steps), int(sampling_steps)
        self.waypoint_cap, self.seed, self.chunk = int(waypoint_cap), int(seed), int(chunk)
        self.energies = self._check_energies(energies or {})
        self.rule = check_choice("rule", rule, RULES)
        self.baseline = check_choice("baseline", baseline, BASELINES)
        self.output = check_choice("output", output, OUTPUTS)
        self.upsample = check_choice("upsample", upsample, UPSAMPLE_MODES)
        self.path_model_cfg, self.denoiser_cfg = dict(path_model or {}), dict(denoiser or {})
        self.path_net: PathUNet | None = None   # set by prepare() or directly
        self.denoiser: torch.nn.Module | None = None  # on_manifold: set by prepare() or directly
        self._region_mask: torch.Tensor | None = None
        self._last: dict[str, torch.Tensor] = {}

    @staticmethod
    def _check_energies(energies: dict) -> dict:
        unknown = set(energies) - set(ENERGIES)
        if unknown:
            raise XattrError(f"diffig energies {sorted(unknown)} are unknown; use {list(ENERGIES)}")
        out = {name: dict(energies.get(name) or {}) for name in ENERGIES}
        for name, entry in out.items():
            entry["weight"] = float(entry.get("weight") or 0.0)
            if not math.isfinite(entry["weight"]):
                raise XattrError(f"energies.{name}.weight={entry['weight']} must be a finite number (0 = off)")
        check_choice("energies.region.mode", out["region"].setdefault("mode", "early"), REGION_MODES)
        out["on_manifold"].setdefault("log_snr", 0.0)
        return out

    def weight(self, name: str) -> float:
        return self.energies[name]["weight"]

    # ---- preparation

    def prepare(self, context: RunContext) -> None:
        """Load (or train and cache) the path model and, with ``on_manifold``, DiffIB's denoiser."""
        from xattr.training.path_diffusion import image_source, load_or_train_path_model

        if self.path_net is None:
            conditioned = {}
            if self.path_model_cfg.get("image_conditioned"):  # targets selected with this classifier on this data
                conditioned = {"classifier": self.model, "train_dataset": context.train_dataset,
                               "image_source": image_source(context.model_name, context.dataset_name,
                                                            _input_size(self.model))}
            self.path_net = load_or_train_path_model(context.cache_dir, seed=CACHE_SEED, device=context.device,
                                                     **conditioned, **self.path_model_cfg)
        if self.weight("on_manifold") != 0 and self.denoiser is None:
            from xattr.training.denoiser import load_or_train_denoiser

            mean, std = input_normalization(self.model)
            size = _input_size(self.model)
            self.denoiser = load_or_train_denoiser(context.train_dataset, context.cache_dir, context.dataset_name,
                                                   size, seed=CACHE_SEED, device=context.device,
                                                   **{**self.denoiser_cfg, "mean": mean.tolist(), "std": std.tolist()})

    def adopt_model_independent(self, prepared: AttributionMethod) -> None:
        """The path model reads no classifier when it samples (an image-conditioned one was selected with the
        prepared classifier and is reused as it is); the denoiser depends on the normalisation only."""
        if isinstance(prepared, DiffIG):
            self.path_net = self.path_net or prepared.path_net
            self.denoiser = self.denoiser or prepared.denoiser

    # ---- attribution

    def attribute_with_mask(self, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`attribute` with the ``region`` energy on ``mask`` ``[B,1,H,W]`` (e.g. a dataset's object mask)."""
        self._region_mask = mask
        try:
            return self.attribute(x, target)
        finally:
            self._region_mask = None

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        """The region mask ``[B,1,h,w]`` on the path model's grid (area average of the image-size mask)."""
        entry, size = self.energies["region"], tuple(x.shape[-2:])
        if self._region_mask is not None:
            mask = self._region_mask.float()
        elif entry.get("box") is not None:
            mask = box_mask(entry["box"], size, x.shape[0])
        elif entry.get("file"):
            mask = file_mask(entry["file"], size, x.shape[0])
        else:
            raise XattrError("diffig energies.region.weight != 0 needs a mask: set energies.region.box=[y0,x0,y1,x1] "
                             "or energies.region.file=PATH, or call attribute_with_mask(x, target, mask)")
        grid = self.path_net.grid
        return F.adaptive_avg_pool2d(mask.to(x.device), (grid, grid))

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.path_net is None:
            raise XattrError("diffig has no path model; call prepare(context) or set method.path_net "
                             "(train one with `xattr train task=path_diffusion`)")
        if self.weight("on_manifold") != 0 and self.denoiser is None:
            raise XattrError("diffig energies.on_manifold needs DiffIB's denoiser; call prepare(context) with a "
                             "training set or set method.denoiser (`xattr train task=denoiser`)")
        baseline = make_baseline(x, self.baseline, seed=self.seed)
        schedules, counts = self.sample(x, baseline, target)  # [B, N, K+1, C', h, w]
        schedules = refine_schedule(schedules, self.n_steps, dim=2)
        total, f_start, f_end, calls = None, 0.0, None, 0
        for j in range(self.n_paths):
            path = SchedulePath(baseline, x, schedules[:, j], mode=self.upsample, check=False)
            result = path_attribution(self.model, x, target, path, rule=self.rule, output=self.output,
                                      chunk=self.chunk)
            total = result.attribution if total is None else total + result.attribution
            f_start, f_end, calls = f_start + result.f_start / self.n_paths, result.f_end, calls + result.gradient_calls
        per_image = torch.ones(x.shape[0])
        self._last = {"classifier_passes": per_image * (calls + counts["guidance"]),
                      "guidance_passes": per_image * counts["guidance"],
                      "denoiser_passes": per_image * counts["denoiser"]}
        return self._record(total / self.n_paths, f_end, f_start)

    def diagnostics(self) -> dict[str, torch.Tensor]:
        return {**super().diagnostics(), **self._last}

    # ---- sampling

    def start(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image, from a generator seeded by its content: ``α`` ``[B·N]`` and the start noise ``[B·N, planes,
        h, w]`` (image-major: path ``p`` belongs to image ``p // N``)."""
        net, alphas, noise = self.path_net, [], []
        planes = (net.n_steps - 1) * net.channels
        for seed in image_seeds(x, self.seed):
            generator = make_generator(seed)
            alphas.append(sample_alpha(self.n_paths, *net.alpha_range, generator=generator))
            noise.append(torch.randn(self.n_paths, planes, net.grid, net.grid, generator=generator))
        return torch.cat(alphas), torch.cat(noise)

    @torch.no_grad()
    def sample(self, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor,
               ) -> tuple[torch.Tensor, dict[str, int]]:
        """Guided DDIM sampling (module docstring): schedules ``[B, N, K+1, C', h, w]`` and the passes per image."""
        net = self.path_net
        alphas, u = self.start(x)
        counts = {"guidance": 0, "denoiser": 0}
        guide = self._guide_context(x, baseline, target) if any(self.weight(e) for e in ENERGIES) else None
        step_guide = None if guide is None else lambda clean, i: self._guided(clean, i, guide, counts)
        image = image_on_grid(x, net.grid).repeat_interleave(self.n_paths, 0) if net.image_channels else None
        u = ddim_sample(net, u, alphas, self.sampling_steps, step_guide, image)
        schedules = sample_to_schedule(u, net.n_steps).to(x.device)
        return schedules.view(x.shape[0], self.n_paths, *schedules.shape[1:]), counts

    def _guide_context(self, x, baseline, target) -> dict:
        """What the energies need, repeated per path (image-major ``[B·N, …]``)."""
        repeat = self.n_paths
        context = {"x": x.repeat_interleave(repeat, 0), "baseline": baseline.repeat_interleave(repeat, 0),
                   "target": target.repeat_interleave(repeat, 0),
                   "seeds": [s for s in image_seeds(x, self.seed + 1) for _ in range(repeat)]}
        if self.weight("region") != 0:
            context["mask"] = self._mask(x).repeat_interleave(repeat, 0)
        if self.weight("on_manifold") != 0:
            mean, std = input_normalization(self.model, x.shape[1])
            context["standardise"] = standardiser(mean.tolist(), std.tolist(), x.shape[1])
        return context

    def _guided(self, clean: torch.Tensor, step: int, guide: dict, counts: dict) -> torch.Tensor:
        """``û_0 − Σ_e w_e ∇E_e / rms(∇E_e)`` ``[P, planes, h, w]``, paths in chunks of ``chunk // m`` (each path's
        energies depend on its own schedule only); adds the passes of this step to ``counts``."""
        index = waypoint_indices(self.path_net.n_steps, self.waypoint_cap, step)
        m = len(index)
        per_chunk = max(1, self.chunk // m)
        out = []
        for lo in range(0, clean.shape[0], per_chunk):
            out.append(self._guided_chunk(clean[lo:lo + per_chunk], slice(lo, lo + per_chunk), index, step, guide))
        if self.weight("faithfulness") != 0:
            counts["guidance"] += m * self.n_paths
        if self.weight("on_manifold") != 0:
            counts["denoiser"] += m * self.n_paths
        return torch.cat(out)

    def _guided_chunk(self, clean: torch.Tensor, rows: slice, index: list[int], step: int, guide: dict):
        with torch.enable_grad():
            leaf = clean.detach().requires_grad_(True)
            schedule = sample_to_schedule(leaf, self.path_net.n_steps).to(guide["x"].dtype)
            update = torch.zeros_like(clean)
            for name, energy in self._energies(schedule, rows, index, step, guide):
                (gradient,) = torch.autograd.grad(energy.sum(), leaf, retain_graph=True)
                rms = gradient.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12).view(-1, 1, 1, 1)
                update += self.weight(name) * gradient / rms
        return clean - update

    def _energies(self, schedule, rows: slice, index: list[int], step: int, guide: dict) -> list:
        """``[(name, energy [P])]`` of every energy with a non-zero weight for the paths ``rows`` (the classifier and
        the denoiser run in eval mode with frozen parameters; their flags are restored before this returns)."""
        out = []
        if self.weight("smoothness"):
            out.append(("smoothness", smoothness_energy(schedule)))
        if self.weight("region"):
            out.append(("region", region_energy(schedule, guide["mask"][rows], self.energies["region"]["mode"])))
        if not (self.weight("faithfulness") or self.weight("on_manifold")):
            return out
        x, baseline = guide["x"][rows], guide["baseline"][rows]
        points = waypoints_at(schedule, index, baseline, x, self.upsample)
        if self.weight("faithfulness"):
            with gradient_session(self.model):
                out.append(("faithfulness", faithfulness_energy(self.model, points, guide["target"][rows],
                                                                self.output, len(index))))
        if self.weight("on_manifold"):
            noise = torch.stack([torch.randn(len(index), *x.shape[1:], generator=make_generator(s + step))
                                 for s in guide["seeds"][rows]], 1).reshape_as(points).to(points)
            with eval_mode(self.denoiser), frozen(self.denoiser):
                residual = manifold_energy(self.denoiser, points, guide["standardise"],
                                           self.energies["on_manifold"]["log_snr"], noise)
            out.append(("on_manifold", residual.view(len(index), -1).mean(0)))
        return out


def _input_size(model) -> int:
    spec = getattr(model, "spec", None)
    size = getattr(spec, "input_size", None) or 64
    return int(size[-1] if isinstance(size, (tuple, list)) else size)


__all__ = ["DiffIG", "ENERGIES", "smoothness_energy", "region_energy", "faithfulness_energy", "manifold_energy",
           "waypoint_indices"]
