"""Guided IG (Kapishnikov, Venugopalan, Avci, Wedin, Terry, Bolukbasi, "Guided Integrated Gradients: an Adaptive
Path Method for Removing Noise", CVPR 2021), PAIR ``saliency``'s ``guided_ig_impl`` batched over images.

From ``x = b``, step ``k = 1 … K``: read ``g = ∇f_c(x)``; the L1 distance to the input must fall to
``l1_total·(1 − k/K)``. Repeatedly move the ``fraction`` of features with the smallest ``|g|`` (PAIR's
``np.quantile(|g|, fraction, 'lower')`` threshold, features already at the upper bound excluded) toward their
bound ``x_max`` (the straight line's point at ``α_k + max_dist``), first lifting features that lag behind
``α_k − max_dist`` to ``x_min``, until the target is met (the last move is the fraction ``γ`` that meets it
exactly). ``A += (x_after − x_before) ⊙ g`` per step (left rule along the adaptive path).
The bookkeeping (``x``, bounds, L1 distances, ``A``) is float64, as PAIR's: in float32 the step fraction ``γ``
can come out slightly negative (the known failure). Gradients come from the model in its own dtype.
Passes: ``n_steps`` forward-backward per image (sequential: each step's path depends on its gradient),
all images of the batch in one pass; the inner selection loop reads one flag per repetition to the host.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.methods._path_method import PathMethod
from xattr.paths import make_baseline, score_and_gradient
from xattr.paths.baselines import BASELINES
from xattr.paths.integrate import OUTPUTS, check_choice, finish, gradient_session

EPSILON = 1e-9  # PAIR's math.isclose tolerance (relative and absolute)


def _quantile_lower(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per row of ``values [B,N]``: ``np.quantile(row, fraction, interpolation='lower')`` ``[B,1]``."""
    k = int(fraction * (values.shape[1] - 1))  # floor, as numpy's 'lower' index
    return values.kthvalue(k + 1, dim=1, keepdim=True).values


def guided_ig_path_integral(model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor,
                            n_steps: int = 200, fraction: float = 0.25, max_dist: float = 0.02,
                            output: str = "probability") -> torch.Tensor:
    """Guided IG attribution ``[B,C,H,W]`` float64 (the module docstring; PAIR's algorithm, step for step)."""
    shape, b = x.shape, x.shape[0]
    x_in, x_base = x.detach().reshape(b, -1).double(), baseline.detach().reshape(b, -1).double()
    point = x_base.clone()
    l1_total = (x_in - x_base).abs().sum(1, keepdim=True)
    attr = torch.zeros_like(x_in)
    total_diff = x_in - x_base
    with torch.no_grad():
        moving = total_diff != 0
    live = (l1_total > 0).squeeze(1)
    for step in range(n_steps):
        with gradient_session(model):
            _, grad = score_and_gradient(model, point.view(shape).to(x.dtype), target, output)
        grad_actual = grad.reshape(b, -1).double()
        alpha = (step + 1.0) / n_steps
        alpha_min, alpha_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        x_min, x_max = x_base + total_diff * alpha_min, x_base + total_diff * alpha_max
        l1_target = l1_total * (1 - (step + 1) / n_steps)
        before = point.clone()
        active = live.clone()
        while bool(active.any()):
            x_alpha = torch.where(moving, (point - x_base) / torch.where(moving, total_diff, 1.0), alpha_max)
            lagging = (x_alpha < alpha_min) & active[:, None]
            point = torch.where(lagging, x_min, point)
            l1_current = (point - x_in).abs().sum(1, keepdim=True)
            close = ((l1_target - l1_current).abs() <= torch.maximum(
                EPSILON * torch.maximum(l1_target.abs(), l1_current.abs()), torch.full_like(l1_target, EPSILON)))
            active &= ~close.squeeze(1)
            grad_masked = torch.where(point == x_max, torch.inf, grad_actual.abs())
            threshold = _quantile_lower(grad_masked, fraction)
            chosen = (grad_masked <= threshold) & (grad_masked != torch.inf)
            l1_s = ((point - x_max).abs() * chosen).sum(1, keepdim=True)
            gamma = torch.where(l1_s > 0, (l1_current - l1_target) / l1_s.clamp_min(1e-300),
                                torch.full_like(l1_s, torch.inf))
            whole = (gamma > 1.0) & active[:, None]
            partial = (gamma <= 1.0) & active[:, None]
            if bool((partial & (gamma <= 0)).any()):
                raise XattrError(f"Guided IG step {step}: step fraction gamma <= 0; run it in float64 inputs or "
                                 "lower fraction")
            moved = point + (x_max - point) * gamma  # PAIR translate_alpha_to_x(gamma, x_max, x)
            point = torch.where(chosen & whole, x_max, torch.where(chosen & partial, moved, point))
            active &= whole.squeeze(1)
        attr += (point - before) * grad_actual
    return attr.view(shape)


class GuidedIG(PathMethod):
    """Guided IG, ``[B,C,H,W]``; defaults = PAIR ``saliency`` 0.2.1 (200 steps, fraction 0.25, max_dist 0.02)."""

    def __init__(self, model: nn.Module, n_steps: int = 200, fraction: float = 0.25, max_dist: float = 0.02,
                 baseline: str = "black", output: str = "probability"):
        super().__init__(model)
        if int(n_steps) < 1 or not 0 < float(fraction) <= 1 or not 0 <= float(max_dist) <= 1:
            raise XattrError(f"Guided IG needs n_steps >= 1, fraction in (0, 1] and max_dist in [0, 1]; got "
                             f"{n_steps}, {fraction}, {max_dist}")
        self.n_steps, self.fraction, self.max_dist = int(n_steps), float(fraction), float(max_dist)
        self.baseline = check_choice("baseline", baseline, BASELINES)
        self.output = check_choice("output", output, OUTPUTS)

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        baseline = make_baseline(x, self.baseline)
        maps = guided_ig_path_integral(self.model, x, baseline, target, self.n_steps, self.fraction, self.max_dist,
                                       self.output).to(x.dtype)
        result = finish(self.model, maps, baseline, x, target, self.output, self.n_steps)
        return self._record(result.attribution, result.f_end, result.f_start)
