"""Batched, differentiable isotonic regression: the Euclidean projection of each row onto non-decreasing sequences.

``isotonic_regression(y)[i] = max_{j ≤ i} min_{k ≥ i} mean(y_j … y_k)`` (the min–max formula of isotonic
regression; Barlow, Bartholomew, Bremner & Brunk 1972, Thm 1.4), computed for every row at once from the block
means of a cumulative sum: ``O(n²)`` memory per row, meant for short rows (a path schedule's ``K − 1`` steps).
Each output is the mean of the inputs of its **block**, the run of outputs with the same fitted value, so the
result is differentiable almost everywhere, keeps each row's sum, and its gradient is spread evenly over the block.

Ties: where inputs are equal (clipped values, schedules at 0 or 1), the min–max formula's argmin/argmax falls on
whichever of the equal block means rounds lowest — a choice float round-off of the inputs flips, and with it the
gradient. Blocks are therefore taken from the fitted values (computed in float64; equal within four units of the
input dtype's round-off, ``4 ε · max|y|``) and the output is recomputed as their means: a tie always pools,
whatever the round-off. Bounded isotonic regression onto ``[lo, hi]`` is the clipped unbounded solution, so
``isotonic_regression(y).clamp(lo, hi)`` is the projection onto monotone sequences in a box.

scikit-learn's ``IsotonicRegression`` (pool-adjacent-violators) gives the same values one row at a time without
gradients; the tests compare the two.
"""

from __future__ import annotations

import torch


def isotonic_regression(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Non-decreasing least-squares fit along ``dim`` of ``values`` (any shape; the result has the same shape):
    each output the mean of its block (module docstring), differentiable through those means."""
    rows = values.movedim(dim, -1)
    with torch.no_grad():
        rows64 = rows.double()  # float64: the cumulative sum's round-off stays far below the input's
        fitted = _min_max_fit(rows64)
        ulps = max(4 * torch.finfo(rows.dtype).eps, 8 * rows.shape[-1] * torch.finfo(torch.float64).eps)
        tolerance = ulps * rows64.abs().amax(-1, keepdim=True)
        block = torch.nn.functional.pad((fitted.diff(dim=-1) > tolerance).cumsum(-1), (1, 0))  # [..., n] block ids
        same_block = (block[..., :, None] == block[..., None, :]).to(rows.dtype)  # [..., n, n]
    block_sums = (same_block @ rows[..., None]).squeeze(-1)
    return (block_sums / same_block.sum(-1)).movedim(-1, dim)


def _min_max_fit(rows: torch.Tensor) -> torch.Tensor:
    """The isotonic fit of each row of ``rows`` ``[..., n]`` by the min–max formula (module docstring)."""
    n = rows.shape[-1]
    sums = torch.nn.functional.pad(rows.cumsum(-1), (1, 0))
    start = torch.arange(n, device=rows.device).view(n, 1)
    end = torch.arange(n, device=rows.device).view(1, n)
    lengths = (end - start + 1).clamp(min=1).to(rows.dtype)
    means = (sums[..., None, 1:] - sums[..., :-1, None]) / lengths  # [..., j, k] = mean(y_j … y_k) for k >= j
    means = means.masked_fill(end < start, float("inf"))
    suffix_min = means.flip(-1).cummin(-1).values.flip(-1)  # [..., j, i] = min_{k >= i} mean(y_j … y_k)
    return suffix_min.masked_fill(start > end, float("-inf")).amax(-2)  # max over j <= i


__all__ = ["isotonic_regression"]
