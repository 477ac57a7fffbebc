"""Batched, differentiable isotonic regression: the Euclidean projection of each row onto non-decreasing sequences.

``isotonic_regression(y)[i] = max_{j ≤ i} min_{k ≥ i} mean(y_j … y_k)`` (the min–max formula of isotonic
regression; Barlow, Bartholomew, Bremner & Brunk 1972, Thm 1.4), computed for every row at once from the block
means of a cumulative sum: ``O(n²)`` memory per row, meant for short rows (a path schedule's ``K − 1`` steps).
Each output is the mean of one block of inputs, so the result is differentiable almost everywhere and keeps each
row's sum. Bounded isotonic regression onto ``[lo, hi]`` is the clipped unbounded solution, so
``isotonic_regression(y).clamp(lo, hi)`` is the projection onto monotone sequences in a box.

scikit-learn's ``IsotonicRegression`` (pool-adjacent-violators) gives the same values one row at a time without
gradients; the tests compare the two.
"""

from __future__ import annotations

import torch


def isotonic_regression(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Non-decreasing least-squares fit along ``dim`` of ``values`` (any shape; the result has the same shape)."""
    rows = values.movedim(dim, -1)
    n = rows.shape[-1]
    sums = torch.nn.functional.pad(rows.cumsum(-1), (1, 0))
    start = torch.arange(n, device=values.device).view(n, 1)
    end = torch.arange(n, device=values.device).view(1, n)
    lengths = (end - start + 1).clamp(min=1).to(rows.dtype)
    means = (sums[..., None, 1:] - sums[..., :-1, None]) / lengths  # [..., j, k] = mean(y_j … y_k) for k >= j
    means = means.masked_fill(end < start, float("inf"))
    suffix_min = means.flip(-1).cummin(-1).values.flip(-1)  # [..., j, i] = min_{k >= i} mean(y_j … y_k)
    fitted = suffix_min.masked_fill(start > end, float("-inf")).amax(-2)  # max over j <= i
    return fitted.movedim(-1, dim)


__all__ = ["isotonic_regression"]
