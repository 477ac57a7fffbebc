"""Path integrals of the target's gradient, batched over waypoints and images, and the completeness error.

Every path method computes ``A = Σ_j ∇f_c(p_j) ⊙ d_j`` over quadrature *nodes* ``(p_j, d_j)``: a point on the
path and the increment it weighs. For waypoints ``γ_0 = b … γ_K = x`` and ``Δ_k = γ_{k+1} − γ_k``:

- ``left`` (the DiffIG authors' code, Captum ``riemann_left``): nodes ``(γ_k, Δ_k)``, ``k = 0 … K−1``;
- ``right`` (IG²'s and PAIR Blur IG's orientation): nodes ``(γ_k, Δ_{k−1})``, ``k = 1 … K``;
- ``trapezoid``: nodes ``(γ_k, ½(Δ_{k−1} + Δ_k))``, ``k = 0 … K`` (``Δ_{−1} = Δ_K = 0``), i.e.
  ``Σ_k ½(∇f(γ_k) + ∇f(γ_{k+1})) ⊙ Δ_k``.

Since ``Σ_k Δ_k = x − b`` the three rules differ only in where the gradient is read; all converge to the path
integral, whose sum is ``f_c(x) − f_c(b)`` (completeness, for any path). ``f_c`` is the target's softmax
``probability`` (the DiffIG authors' group) or its ``logit``.

Batching: the nodes of ``m = max(1, chunk // B)`` waypoints of all ``B`` images go through the model as one
batch of ``m·B`` images; only those waypoints are ever in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from xattr.errors import XattrError
from xattr.paths.waypoints import Path
from xattr.utils.hooks import eval_mode, frozen

RULES = ("left", "right", "trapezoid")
OUTPUTS = ("probability", "logit")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise XattrError(f"{name}={value!r} is not one of {list(choices)}; pick one of them")
    return value


def class_score(logits: torch.Tensor, target: torch.Tensor, output: str) -> torch.Tensor:
    """``f_c`` per row ``[N]``: the target's softmax ``probability`` or its ``logit`` from ``logits [N, classes]``."""
    if output == "logit":
        return logits.gather(1, target[:, None])[:, 0]
    if output == "probability":
        return F.softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
    raise XattrError(f"output={output!r} is not one of {list(OUTPUTS)}; pick one of them")


def score_and_gradient(model: nn.Module, points: torch.Tensor, target: torch.Tensor,
                       output: str = "probability") -> tuple[torch.Tensor, torch.Tensor]:
    """``(f_c(points) [N], ∇f_c(points) [N,C,H,W])`` for ``points [N,C,H,W]``, ``target [N]``: one forward-backward.

    The caller holds the model in eval mode with frozen parameters (:func:`gradient_session`).
    """
    points = points.detach().requires_grad_(True)
    scores = class_score(model(points), target, output)
    (gradient,) = torch.autograd.grad(scores.sum(), points)
    return scores.detach(), gradient


@torch.no_grad()
def class_scores(model: nn.Module, images: torch.Tensor, target: torch.Tensor, output: str = "probability",
                 chunk: int = 64) -> torch.Tensor:
    """``f_c(images)`` ``[N]`` without gradients, ``chunk`` images per forward pass."""
    with eval_mode(model):
        return torch.cat([class_score(model(images[lo:lo + chunk]), target[lo:lo + chunk], output)
                          for lo in range(0, images.shape[0], chunk)])


@contextlib.contextmanager
def gradient_session(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode + frozen parameters + gradients on; flags restored on exit (also after an exception)."""
    with eval_mode(model), frozen(model), torch.enable_grad():
        yield model


def _increments(block: torch.Tensor, first: int, lo: int, hi: int, k_max: int, rule: str) -> torch.Tensor:
    """Increments ``[hi-lo, B, C, H, W]`` of nodes ``lo … hi-1`` from waypoints ``first …`` in ``block``."""
    deltas = block.diff(dim=0)  # Δ_k for k = first … first + len(block) - 2
    zero = torch.zeros_like(block[0])

    def delta(k: int) -> torch.Tensor:  # Δ_k, zero outside 0 … K-1
        return deltas[k - first] if 0 <= k < k_max else zero

    if rule == "left":
        return torch.stack([delta(k) for k in range(lo, hi)])
    if rule == "right":
        return torch.stack([delta(k - 1) for k in range(lo, hi)])
    return torch.stack([0.5 * (delta(k - 1) + delta(k)) for k in range(lo, hi)])


def waypoint_nodes(path: Path, rule: str = "left", per_chunk: int = 16) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Quadrature nodes of ``path`` for ``rule``, ``per_chunk`` waypoints at a time: ``(points, increments)``,
    each ``[m, B, C, H, W]`` (see the module docstring for the three rules)."""
    check_choice("rule", rule, RULES)
    k_max = path.n_steps
    first, last = {"left": (0, k_max - 1), "right": (1, k_max), "trapezoid": (0, k_max)}[rule]
    for lo in range(first, last + 1, per_chunk):
        hi = min(lo + per_chunk, last + 1)  # nodes lo … hi-1
        a, b = max(lo - 1, 0), min(hi + 1, k_max + 1)  # waypoints needed around them
        block = path.block(a, b)
        yield block[lo - a:hi - a], _increments(block, a, lo, hi, k_max, rule)


def integrate_nodes(model: nn.Module, target: torch.Tensor,
                    nodes: Iterable[tuple[torch.Tensor, torch.Tensor]], output: str = "probability",
                    ) -> tuple[torch.Tensor, int]:
    """``A = Σ_j ∇f_c(p_j) ⊙ d_j`` over node chunks ``(points, increments)`` ``[m,B,C,H,W]``; returns
    ``(A [B,C,H,W], gradient calls per image)``. Each chunk is one forward-backward of ``m·B`` images."""
    check_choice("output", output, OUTPUTS)
    total, calls = None, 0
    with gradient_session(model):
        for points, increments in nodes:
            m, b = points.shape[:2]
            _, grad = score_and_gradient(model, points.reshape(m * b, *points.shape[2:]), target.repeat(m), output)
            term = (grad.view_as(points) * increments).sum(0)
            total = term if total is None else total + term
            calls += m
    if total is None:
        raise XattrError("the path has no quadrature nodes; give it at least one step (n_steps >= 1)")
    return total, calls


def completeness_error(attribution: torch.Tensor, f_end: torch.Tensor, f_start: torch.Tensor,
                       eps: float = 1e-12) -> torch.Tensor:
    """``|Σ A − (f_c(x) − f_c(b))| / |f_c(x) − f_c(b)|`` per image ``[B]`` (``eps`` guards ``f_c(x) = f_c(b)``)."""
    gap = (f_end - f_start).double()
    total = attribution.flatten(1).double().sum(1)
    return ((total - gap).abs() / gap.abs().clamp_min(eps)).float()


@dataclass
class PathResult:
    """What one path integral returns: ``attribution [B,C,H,W]``, ``f_start``/``f_end`` ``[B]`` (``f_c(b)``,
    ``f_c(x)``), ``completeness_error [B]`` and ``gradient_calls`` (per image)."""

    attribution: torch.Tensor
    f_start: torch.Tensor
    f_end: torch.Tensor
    completeness_error: torch.Tensor
    gradient_calls: int


def path_attribution(model: nn.Module, x: torch.Tensor, target: torch.Tensor, path: Path | None = None, *,
                     baseline: torch.Tensor | float = 0.0, n_steps: int = 200, rule: str = "left",
                     output: str = "probability", chunk: int = 32) -> PathResult:
    """``A = Σ_k ∇f_c(γ_k) ⊙ (γ_{k+1} − γ_k)`` (``rule``) along ``path`` (default: the straight line from
    ``baseline`` to ``x`` in ``n_steps`` steps), ``chunk`` images per forward-backward; plus the completeness error.

    ``x`` ``[B,C,H,W]``, ``target`` ``[B]``. The path's own endpoints define ``f_c(b)`` and ``f_c(x)``.
    """
    from xattr.paths.waypoints import StraightPath

    if int(chunk) < 1:
        raise XattrError(f"chunk={chunk} must be a positive number of images per forward-backward pass")
    path = StraightPath(baseline, x, n_steps) if path is None else path
    per_chunk = max(1, int(chunk) // x.shape[0])
    attribution, calls = integrate_nodes(model, target, waypoint_nodes(path, rule, per_chunk), output)
    return finish(model, attribution, path.start, path.end, target, output, calls)


def finish(model: nn.Module, attribution: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
           target: torch.Tensor, output: str, calls: int) -> PathResult:
    """Wrap an attribution with ``f_c`` at the path's endpoints (one forward of ``2B`` images) and its
    completeness error."""
    scores = class_scores(model, torch.cat([start, end]), target.repeat(2), output)
    f_start, f_end = scores.chunk(2)
    return PathResult(attribution, f_start, f_end, completeness_error(attribution, f_end, f_start), calls)
