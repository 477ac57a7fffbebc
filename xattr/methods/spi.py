"""SPI — IG averaged over stick-breaking random paths ("Beyond single path integrated gradients for reliable input
attribution via randomized path sampling", ICLR 2023 submission; the path prior DiffIG learns).

For each image and each of ``n_paths`` paths: ``α`` log-uniform in ``alpha_range``; per feature (pixel-channel
with ``per_channel``, the authors' choice; else per pixel) a truncated stick-breaking CDF ``F_i``
(``xattr.paths.stick_breaking``); ``K+1`` waypoints ``γ_k = b + F(t_k) ⊙ (x − b)`` at times ``t_k`` equally
spaced in L2 arc length (``spacing=arc_length``, the authors' default) or in ``t``; ``A`` by the ``rule``
(left Riemann: the authors) along the path; SPI = mean over the paths. ``f_c(b)`` is the same for every
path (they share the baseline), so completeness is measured as for one path.
Draws are seeded by ``seed`` and the image content (batch-independent). Passes: ``n_paths × n_steps``
forward-backward per image; memory: one image's ``[K+1, C', H, W]`` schedule at a time plus ``chunk`` waypoints.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.methods._path_method import PathMethod
from xattr.paths import (
    SchedulePath,
    make_baseline,
    path_attribution,
    sample_alpha,
    stick_breaking_path_schedule,
)
from xattr.paths.baselines import BASELINES
from xattr.paths.integrate import OUTPUTS, RULES, check_choice
from xattr.paths.stick_breaking import LEFTOVERS
from xattr.utils.seed import image_seeds, make_generator


class SPI(PathMethod):
    """Stick-breaking path IG, ``[B,C,H,W]``."""

    def __init__(self, model: nn.Module, n_paths: int = 4, n_steps: int = 200, alpha_range: tuple = (0.1, 100.0),
                 n_breaks: int = 1000, leftover: str = "atom", per_channel: bool = True, spacing: str = "arc_length",
                 rule: str = "left", baseline: str = "black", output: str = "probability", seed: int = 0,
                 chunk: int = 32):
        super().__init__(model)
        if int(n_paths) < 1 or int(n_steps) < 1 or int(n_breaks) < 1 or int(chunk) < 1:
            raise XattrError(f"spi needs n_paths, n_steps, n_breaks and chunk >= 1; got {n_paths}, {n_steps}, "
                             f"{n_breaks}, {chunk}")
        low, high = (float(v) for v in alpha_range)
        sample_alpha(1, low, high)  # validates the range
        self.n_paths, self.n_steps, self.alpha_range, self.n_breaks = int(n_paths), int(n_steps), (low, high), int(n_breaks)
        self.leftover = check_choice("leftover", leftover, LEFTOVERS)
        self.per_channel, self.spacing = bool(per_channel), check_choice("spacing", spacing, ("arc_length", "uniform"))
        self.rule = check_choice("rule", rule, RULES)
        self.baseline = check_choice("baseline", baseline, BASELINES)
        self.output = check_choice("output", output, OUTPUTS)
        self.seed, self.chunk = int(seed), int(chunk)

    def _one_image(self, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor, seed: int):
        generator = make_generator(seed)
        alphas = sample_alpha(self.n_paths, *self.alpha_range, generator=generator)
        total, f_start, f_end = None, None, None
        for alpha in alphas.tolist():
            path_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            schedule = stick_breaking_path_schedule(x[0].cpu(), baseline[0].cpu(), self.n_steps, alpha, seed=path_seed,
                                                    per_channel=self.per_channel, n_breaks=self.n_breaks,
                                                    leftover=self.leftover, spacing=self.spacing)
            path = SchedulePath(baseline, x, schedule, mode="nearest", check=False)
            result = path_attribution(self.model, x, target, path, rule=self.rule, output=self.output, chunk=self.chunk)
            total = result.attribution if total is None else total + result.attribution
            f_start, f_end = result.f_start, result.f_end
        return total / self.n_paths, f_start, f_end

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        baseline = make_baseline(x, self.baseline, seed=self.seed)
        maps, starts, ends = [], [], []
        for i, seed in enumerate(image_seeds(x, self.seed)):
            m, f_b, f_x = self._one_image(x[i:i + 1], baseline[i:i + 1], target[i:i + 1], seed)
            maps.append(m), starts.append(f_b), ends.append(f_x)
        return self._record(torch.cat(maps), torch.cat(ends), torch.cat(starts))
