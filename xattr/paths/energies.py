"""Waypoints of schedule paths and the faithfulness energy on them: shared by DiffIG's guidance
(:mod:`xattr.methods.diffig`) and the image-conditioned path model's training targets
(:mod:`xattr.training.path_diffusion`)."""

from __future__ import annotations

import torch

from xattr.paths.integrate import class_score
from xattr.paths.waypoints import SchedulePath


def waypoints_at(schedule: torch.Tensor, index: list[int], baseline: torch.Tensor, x: torch.Tensor,
                 mode: str) -> torch.Tensor:
    """``γ_k = b + up(S_k) ⊙ (x − b)`` for ``k`` in ``index``: ``[m·P, C, H, W]`` (waypoint-major) from ``S``
    ``[P, K+1, C', h, w]`` and ``baseline``, ``x`` ``[P, C, H, W]`` (differentiable in ``S``)."""
    path = SchedulePath(baseline, x, schedule[:, index], mode=mode, check=False)
    block = path.block(0, len(index))  # [m, P, C, H, W]
    return block.reshape(-1, *x.shape[1:])


def faithfulness_energy(model, points: torch.Tensor, target: torch.Tensor, output: str, m: int) -> torch.Tensor:
    """``−mean_k f_c(γ_k)`` ``[P]`` over the ``m`` waypoints ``points`` ``[m·P, C, H, W]`` (waypoint-major): the
    path should raise the target's score early (its insertion curve's area, negated)."""
    scores = class_score(model(points), target.repeat(m), output)
    return -scores.view(m, -1).mean(0)


def path_faithfulness(model, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor, schedule: torch.Tensor,
                      output: str = "probability", mode: str = "bilinear") -> torch.Tensor:
    """:func:`faithfulness_energy` ``[P]`` of whole paths: over every interior waypoint ``k = 1 … K−1`` of ``S``
    ``[P, K+1, C', h, w]`` between ``baseline`` and ``x`` ``[P, C, H, W]``, for ``target`` ``[P]``."""
    interior = list(range(1, schedule.shape[1] - 1))
    points = waypoints_at(schedule, interior, baseline, x, mode)
    return faithfulness_energy(model, points, target, output, len(interior))


__all__ = ["waypoints_at", "faithfulness_energy", "path_faithfulness"]
