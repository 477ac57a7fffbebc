"""MNIM: Minimum Necessary Information (DiffIB, Table 1; after Fischer 2020).

Insert the original image's units (pixel-channel values for ``[B,C,H,W]`` maps, pixels for
``[B,1,H,W]`` maps), most important first, into a substrate (Gaussian noise in the model's input space
by default, seeded per image: ``_perturb.per_image_noise``; ``substrate=shared_noise`` is one field for all
images, which a classifier may call one class with confidence, tying every method at N = 0 on that class); ``N`` is the number of inserted units at which the target's softmax
probability first reaches ``threshold`` (absolute, or ``threshold * p(full image)`` when
``relative=True``); the score is ``N / units`` (lower is better).

Search: one batched pass over a grid of ``grid + 1`` counts ``0, M/grid, ..., M`` (all images at once),
then bisection inside the first grid cell whose right end reaches the threshold, batched over the images
still searching. The result is an exact crossing, ``p(N-1) < threshold <= p(N)``; it is the first
crossing of the whole curve whenever the curve does not cross and fall back inside that cell before the
grid point (always when the curve is monotone). Forward passes per image: ``grid + 1 + ceil(log2(M / grid))``
(31 on 224x224x3 with ``grid=16``), against up to ``M + 1`` for a linear scan.

Images whose curve never reaches the threshold on the grid get ``reached = 0``, ``N = M`` and score 1.0.
An image that already reaches it with nothing inserted gets ``N = 0`` and ``at_start = 1``: every map ties
there, so the table reports the share of such images (the tie rate) next to the mean.

Memo: called with ``memo=<dict>`` (the run creates one per batch and passes it to every metric of the
batch, i.e. for the same model, images and maps), MNIM stores its ``n``/``reached`` under
:meth:`MNIM.memo_key` (its settings); BoxRatio and SegRatio with equal settings read them from there
instead of searching again (:func:`_reusable_mnim`). Without a memo every metric computes its own.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.metrics._perturb import (
    SUBSTRATES,
    check_choice,
    check_max_batch,
    make_substrate,
    perturbation_probs,
    rank_units,
    validate_inputs,
)


class MNIM:
    """``MNIM(threshold=0.9, relative=False, substrate='noise')(model, x, maps, target)``.

    Returns ``{'mnim': N/units [B], 'n': N [B], 'reached': 1.0/0.0 [B], 'at_start': 1.0 where the substrate
    alone reaches the threshold (N = 0, a tie of every method) [B], 'passes': forward passes [B]}``;
    with ``memo=<dict>`` it also stores ``n``/``reached`` there (see the module docstring).
    """

    def __init__(self, threshold: float = 0.9, relative: bool = False, substrate: str = "noise", grid: int = 16,
                 seed: int = 0, max_batch: int = 16):
        self.threshold = float(threshold)
        if not 0.0 < self.threshold <= 1.0:
            raise XattrError(f"MNIM threshold={threshold} must be a probability in (0, 1], e.g. 0.9")
        self.relative = bool(relative)
        self.substrate = check_choice("substrate", substrate, SUBSTRATES)
        if int(grid) < 1:
            raise XattrError(f"MNIM grid={grid} must be a positive number of grid cells, e.g. 16")
        self.grid = int(grid)
        self.seed = int(seed)
        self.max_batch = check_max_batch(max_batch)

    def settings(self) -> tuple:
        """What the result depends on (not ``max_batch``): MNIMs with equal settings give equal results."""
        return (self.threshold, self.relative, self.substrate, self.grid, self.seed)

    def memo_key(self) -> tuple:
        """Key of this MNIM's ``n``/``reached`` in a batch's memo: equal settings share one entry."""
        return ("mnim", *self.settings())

    def __call__(self, model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                 memo: dict | None = None, **ground_truth) -> dict[str, torch.Tensor]:
        output = self._search(model, x, maps, target)
        _remember_mnim(self, output, memo)
        return output

    @torch.no_grad()
    def _search(self, model: nn.Module, x: torch.Tensor, maps: torch.Tensor,
                target: torch.Tensor) -> dict[str, torch.Tensor]:
        target = validate_inputs(model, x, maps, target)
        batch = x.shape[0]
        rank = rank_units(maps, self.seed)
        units = rank[0].numel()
        start = make_substrate(model, x, self.substrate, self.seed)
        cells = min(self.grid, units)
        grid = torch.tensor([math.floor(j * units / cells) for j in range(cells + 1)], device=x.device)
        probs = perturbation_probs(model, start, x, rank, grid, target, self.max_batch)  # [B, cells+1]
        threshold = self.threshold * probs[:, -1] if self.relative else torch.full((batch,), self.threshold)
        threshold = threshold.to(probs)
        above = probs >= threshold[:, None]
        reached = above.any(dim=1)
        first = torch.where(reached, above.float().argmax(dim=1), torch.full_like(reached, cells, dtype=torch.long))
        hi = grid[first].clone()
        lo = torch.where(first > 0, grid[(first - 1).clamp(min=0)], hi)  # p(lo) < threshold <= p(hi)
        passes = torch.full((batch,), cells + 1, dtype=torch.long, device=x.device)
        while True:
            active = torch.nonzero(reached & (hi - lo > 1)).flatten()
            if active.numel() == 0:
                break
            mid = (lo[active] + hi[active]) // 2
            p_mid = perturbation_probs(model, start[active], x[active], rank[active], mid[:, None], target[active],
                                       self.max_batch)[:, 0]
            passes[active] += 1
            up = p_mid >= threshold[active]
            hi[active] = torch.where(up, mid, hi[active])
            lo[active] = torch.where(up, lo[active], mid)
        n = torch.where(reached, hi, torch.full_like(hi, units))
        return {
            "mnim": n.float() / units,
            "n": n.float(),
            "reached": reached.float(),
            "at_start": above[:, 0].float(),
            "passes": passes.float(),
        }


def _inner_mnim(metric: object) -> MNIM | None:
    """The MNIM a metric is or runs inside (box/seg ratios keep theirs as ``.mnim``), ``None`` for others."""
    inner = metric if isinstance(metric, MNIM) else getattr(metric, "mnim", None)
    return inner if isinstance(inner, MNIM) else None


def _remember_mnim(metric: object, output: object, memo: dict | None) -> None:
    """Store ``output``'s ``n``/``reached`` in ``memo`` under the key of ``metric``'s MNIM (the first one stays)."""
    inner = _inner_mnim(metric)
    if memo is None or inner is None or not isinstance(output, dict) or not {"n", "reached"} <= set(output):
        return
    memo.setdefault(inner.memo_key(), {"n": output["n"], "reached": output["reached"]})


def _reusable_mnim(metric: object, memo: dict | None) -> dict:
    """``mnim_n``/``mnim_reached`` kwargs for a ratio metric whose MNIM result ``memo`` already holds; ``{}``
    when it does not, for other settings, and for an MNIM itself (which always searches)."""
    inner = None if isinstance(metric, MNIM) else _inner_mnim(metric)
    found = None if memo is None or inner is None else memo.get(inner.memo_key())
    return {} if found is None else {"mnim_n": found["n"], "mnim_reached": found["reached"]}
