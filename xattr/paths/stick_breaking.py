"""Stick-breaking (truncated Dirichlet-process) path schedules: the path prior of SPI and DiffIG.

For each feature ``i`` (a pixel-channel value, or a pixel) an independent truncated ``DP(α, U[0,1])``:

- ``β_j ~ Beta(1, α)``, ``j = 1 … n_breaks``, drawn as ``β = 1 − U^{1/α}`` with ``U ~ U(0,1)``. In log space
  ``log(1 − β_j) = log(U_j)/α`` exactly and ``β_j = −expm1(log(U_j)/α)``: no cancellation for small α (the
  authors' ``1 − U^{1/α}`` needed a separate branch below α = 0.1) nor for large α;
- weights ``π_j = β_j ∏_{i<j}(1 − β_i) = β_j · exp(Σ_{i<j} log(U_i)/α)``; atoms ``θ_j ~ U[0,1]``;
- the leftover ``1 − Σ_j π_j = exp(Σ_j log(U_j)/α)`` (large α, finite breaks) goes to ``leftover``:
  ``atom`` (default: its own uniform atom, so ``E F(t) = t`` exactly), ``renormalise`` (``π / Σ π``, also
  unbiased) or ``end`` (at ``t = 1``: the authors' ``F(1) := 1``, which biases ``F`` low);
- ``F_i(t) = Σ_{θ_j ≤ t} π_j`` with ``F(0) = 0``, ``F(1) = 1`` exactly, monotone.

Small α: each feature jumps almost at once, at a uniform time, so features switch one by one in random order.
``1 ≪ α ≪ n_breaks``: ``F(t) ≈ t`` (std ``√(t(1−t)/(α+1))``), close to the straight line.

Memory: features are drawn in chunks of ``max(1, budget // n_breaks)``, so no ``features × breaks`` tensor
exists beyond ``budget`` elements; ``F`` at ``P`` times is a histogram of the atoms into the ``P`` time cells
(``searchsorted`` + ``scatter_add``) and a cumulative sum — no ``features × breaks × points`` tensor at all.
A draw is reproducible chunk by chunk (chunk ``c`` uses the generator seeded with ``seed + c``), so it can
be evaluated twice: once on a fine grid to measure arc length, once at the resampled times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from xattr.errors import XattrError
from xattr.utils.seed import make_generator

LEFTOVERS = ("atom", "renormalise", "end")
#: features × breaks elements per chunk (float64: 8 MiB a tensor)
DEFAULT_BUDGET = 1 << 20


def _check(n_features: int, n_breaks: int, alpha: float, leftover: str) -> None:
    if int(n_features) < 1 or int(n_breaks) < 1:
        raise XattrError(f"n_features={n_features} and n_breaks={n_breaks} must be >= 1")
    if not (math.isfinite(float(alpha)) and float(alpha) > 0):
        raise XattrError(f"alpha={alpha} must be a positive concentration, e.g. alpha=1")
    if leftover not in LEFTOVERS:
        raise XattrError(f"leftover={leftover!r} is not one of {list(LEFTOVERS)}; pick one of them")


def stick_weights(n: int, n_breaks: int, alpha: float, generator: torch.Generator,
                  leftover: str = "atom") -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights, atoms)`` ``[n, n_breaks (+1 with leftover=atom/end)]`` float64 for ``n`` features.

    Draw order: ``U`` for the breaks, then the atoms, then (``atom``) the leftover's atom.
    """
    u = torch.rand(n, n_breaks, generator=generator, dtype=torch.float64).clamp_min_(torch.finfo(torch.float64).tiny)
    log_rest = u.log_().div_(float(alpha))  # log(1 − β_j)
    before = log_rest.cumsum(1)
    remainder = before[:, -1:].exp()  # ∏_j (1 − β_j): the leftover stick
    before.sub_(log_rest)  # Σ_{i<j} log(1 − β_i)
    weights = torch.expm1(log_rest).neg_().mul_(before.exp_())  # β_j ∏_{i<j}(1 − β_i)
    del log_rest, before
    atoms = torch.rand(n, n_breaks, generator=generator, dtype=torch.float64)
    if leftover == "renormalise":
        return weights / weights.sum(1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny), atoms
    where = torch.rand(n, 1, generator=generator, dtype=torch.float64) if leftover == "atom" else torch.ones(n, 1,
                                                                                                           dtype=torch.float64)
    return torch.cat([weights, remainder], 1), torch.cat([atoms, where], 1)


def cdf_at(weights: torch.Tensor, atoms: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """``F(t) = Σ_{θ_j ≤ t} π_j`` at sorted ``times [P]`` (``times[0] = 0``, ``times[-1] = 1``): ``[n, P]``.

    Each atom lands in the first time cell ``p`` with ``t_p ≥ θ`` (at least cell 1, so ``F(0) = 0``); a
    cumulative sum of the cells is ``F``. Endpoints are set exactly: ``F(0) = 0``, ``F(1) = 1``.
    """
    cell = torch.searchsorted(times, atoms.reshape(-1)).view_as(atoms).clamp_(1, times.numel() - 1)
    mass = torch.zeros(weights.shape[0], times.numel(), dtype=weights.dtype)
    mass.scatter_add_(1, cell, weights)
    cdf = mass.cumsum_(1).clamp_(0.0, 1.0)
    cdf[:, 0], cdf[:, -1] = 0.0, 1.0
    return cdf


@dataclass(frozen=True)
class StickBreakingDraw:
    """One reproducible stick-breaking draw for ``n_features`` features (evaluate it with :meth:`cdf`)."""

    n_features: int
    alpha: float
    seed: int
    n_breaks: int = 1000
    leftover: str = "atom"
    budget: int = DEFAULT_BUDGET

    def __post_init__(self):
        _check(self.n_features, self.n_breaks, self.alpha, self.leftover)

    @property
    def feature_chunk(self) -> int:
        return max(1, int(self.budget) // (int(self.n_breaks) + 1))

    def chunks(self):
        """``(lo, hi, weights, atoms)`` per feature chunk, the same on every call."""
        step = self.feature_chunk
        for c, lo in enumerate(range(0, self.n_features, step)):
            hi = min(lo + step, self.n_features)
            weights, atoms = stick_weights(hi - lo, self.n_breaks, self.alpha, make_generator(self.seed + c),
                                           self.leftover)
            yield lo, hi, weights, atoms

    def cdf(self, times: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """``F_i(t)`` for every feature at ``times`` ``[P]`` (sorted, 0 first, 1 last): ``[n_features, P]``."""
        times = check_times(times)
        out = torch.empty(self.n_features, times.numel(), dtype=dtype)
        for lo, hi, weights, atoms in self.chunks():
            out[lo:hi] = cdf_at(weights, atoms, times).to(dtype)
        return out

    def arc_length_times(self, scale: torch.Tensor, n_points: int, grid: int | None = None) -> torch.Tensor:
        """``n_points`` times ``[n_points]`` equally spaced in L2 arc length of ``γ(t) = b + F(t) ⊙ (x − b)``.

        ``scale`` ``[n_features]`` is ``x − b`` per feature. The length is measured on a grid of
        ``grid = max(20·(n_points − 1), 500)`` times (the authors' resolution), then inverted linearly.
        A path of zero length (``x = b``) gets uniform times.
        """
        grid = max(20 * (int(n_points) - 1), 500) if grid is None else int(grid)
        fine = torch.linspace(0, 1, grid, dtype=torch.float64)
        squared = torch.zeros(grid - 1, dtype=torch.float64)
        scale = scale.detach().reshape(-1).double().cpu()
        for lo, hi, weights, atoms in self.chunks():
            steps = cdf_at(weights, atoms, fine).diff(dim=1) * scale[lo:hi, None]
            squared += steps.square().sum(0)
        length = torch.cat([torch.zeros(1, dtype=torch.float64), squared.sqrt().cumsum(0)])
        if float(length[-1]) <= 0:
            return torch.linspace(0, 1, int(n_points), dtype=torch.float64)
        goal = torch.linspace(0, float(length[-1]), int(n_points), dtype=torch.float64)
        right = torch.searchsorted(length, goal).clamp_(1, grid - 1)
        l0, l1 = length[right - 1], length[right]
        frac = torch.where(l1 > l0, (goal - l0) / (l1 - l0).clamp_min(1e-300), torch.zeros_like(goal))
        times = fine[right - 1] + frac.clamp(0, 1) * (fine[right] - fine[right - 1])
        times = torch.cummax(times, 0).values
        times[0], times[-1] = 0.0, 1.0
        return times


def check_times(times: torch.Tensor) -> torch.Tensor:
    times = torch.as_tensor(times, dtype=torch.float64).cpu()
    if times.dim() != 1 or times.numel() < 2 or float(times[0]) != 0 or float(times[-1]) != 1 \
            or bool((times.diff() < 0).any()):
        raise XattrError("times must be a sorted 1-d tensor from exactly 0 to exactly 1, e.g. torch.linspace(0, 1, P)")
    return times


def _seed_from(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


def stick_breaking_schedule(n_features: int, n_points: int, alpha: float, *, generator: torch.Generator | None = None,
                            n_breaks: int = 1000, leftover: str = "atom", times: torch.Tensor | None = None,
                            budget: int = DEFAULT_BUDGET) -> torch.Tensor:
    """Per-feature stick-breaking CDFs at ``linspace(0, 1, n_points)`` (or ``times``): ``[n_features, n_points]``.

    Every row is non-decreasing with ``F(0) = 0`` and ``F(1) = 1`` exactly (module docstring for the process,
    the leftover mass and the memory bound). ``generator`` draws one seed; the draw is reproducible from it.
    """
    if times is None:
        if int(n_points) < 2:
            raise XattrError(f"n_points={n_points} must be >= 2 (the schedule's first and last point)")
        times = torch.linspace(0, 1, int(n_points), dtype=torch.float64)
    draw = StickBreakingDraw(int(n_features), float(alpha), _seed_from(generator), int(n_breaks), leftover, int(budget))
    return draw.cdf(times)


def sample_alpha(n: int, low: float, high: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` concentrations ``α``, log-uniform in ``[low, high]`` (``low = high``: that value): ``[n]`` float64."""
    if not 0 < float(low) <= float(high):
        raise XattrError(f"alpha range [{low}, {high}] must satisfy 0 < low <= high, e.g. alpha_range=[0.1, 100]")
    u = torch.rand(int(n), generator=generator, dtype=torch.float64)
    return torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def stick_breaking_path_schedule(x: torch.Tensor, baseline: torch.Tensor, n_steps: int, alpha: float, *,
                                 seed: int, per_channel: bool = True, n_breaks: int = 1000, leftover: str = "atom",
                                 spacing: str = "arc_length", budget: int = DEFAULT_BUDGET) -> torch.Tensor:
    """A schedule ``[K+1, C', H, W]`` for one image ``x`` ``[C,H,W]`` and baseline ``[C,H,W]`` (``C' = C`` with
    ``per_channel``, the authors' pixel-channel features; else 1), ``K = n_steps``: stick-breaking CDFs at
    ``K+1`` times equally spaced in L2 arc length (``spacing=arc_length``, the authors' default) or in ``t``
    (``uniform``). Plug it into :class:`xattr.paths.SchedulePath`."""
    if spacing not in ("arc_length", "uniform"):
        raise XattrError(f"spacing={spacing!r} is not one of ['arc_length', 'uniform']; pick one of them")
    channels, height, width = x.shape
    c = channels if per_channel else 1
    draw = StickBreakingDraw(c * height * width, float(alpha), int(seed), int(n_breaks), leftover, int(budget))
    if spacing == "uniform":
        times = torch.linspace(0, 1, int(n_steps) + 1, dtype=torch.float64)
    else:
        diff = (x - baseline).detach()
        scale = diff if per_channel else diff.square().sum(0, keepdim=True).sqrt()
        times = draw.arc_length_times(scale.reshape(-1), int(n_steps) + 1)
    return draw.cdf(times).T.reshape(int(n_steps) + 1, c, height, width)
