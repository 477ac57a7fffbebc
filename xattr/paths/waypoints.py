"""Paths from a baseline ``b`` to an input ``x``, as lazily built blocks of waypoints.

A path is ``K+1`` waypoints ``γ_0 = b, …, γ_K = x`` of one batch, each ``[B,C,H,W]``. The whole
``[K+1,B,C,H,W]`` tensor is never built: a path answers ``block(lo, hi) -> [hi-lo, B, C, H, W]`` (waypoints
``lo … hi-1``) and the integrator asks for a few waypoints at a time.

Three kinds:

- :class:`StraightPath` — ``γ_k = b + α_k (x − b)``, ``α_k = k/K`` by default (IG).
- :class:`SchedulePath` — a monotone schedule ``S ∈ [0,1]^{(K+1)×C'×h×w}`` (shared by the batch) or
  ``[B,K+1,C',h,w]`` (one per image): ``γ_k = b + up(S_k) ⊙ (x − b)`` with ``C'`` = 1 (all channels of a
  pixel together) or ``C``, and ``up`` a **bilinear** (default; ``align_corners=False``) or ``nearest``
  upsampling from ``h×w`` to the image. Both keep a monotone, ``[0,1]``-valued schedule monotone and in
  ``[0,1]`` (a convex combination of grid values per pixel), and keep exact endpoints ``S_0 = 0``, ``S_K = 1``.
  This is where a learned (DiffIG) or stick-breaking (SPI) schedule plugs in.
- :class:`GeneratorPath` — any function ``block(lo, hi)`` (e.g. a blur path, GradPath waypoints).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from xattr.errors import XattrError

UPSAMPLE_MODES = ("bilinear", "nearest")


class Path:
    """``n_steps`` = K; waypoints ``0 … K``; ``block(lo, hi)`` returns ``[hi-lo, B, C, H, W]``."""

    n_steps: int

    def block(self, lo: int, hi: int) -> torch.Tensor:
        raise NotImplementedError

    @property
    def start(self) -> torch.Tensor:
        """``γ_0`` ``[B,C,H,W]`` (the baseline)."""
        return self.block(0, 1)[0]

    @property
    def end(self) -> torch.Tensor:
        """``γ_K`` ``[B,C,H,W]`` (the input)."""
        return self.block(self.n_steps, self.n_steps + 1)[0]

    def _check_range(self, lo: int, hi: int) -> None:
        if not 0 <= lo <= hi <= self.n_steps + 1:
            raise XattrError(f"waypoints {lo}..{hi - 1} are outside the path's 0..{self.n_steps}; ask for a sub-range")


def _check_pair(baseline: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    baseline = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    try:
        return baseline.expand_as(x)
    except RuntimeError as error:
        raise XattrError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to the images "
                         f"{tuple(x.shape)}; give a [B,C,H,W] tensor or a constant") from error


class StraightPath(Path):
    """``γ_k = b + α_k (x − b)`` with ``α = linspace(0, 1, K+1)`` or given ``alphas`` ``[K+1]`` (0 first, 1 last)."""

    def __init__(self, baseline: torch.Tensor, x: torch.Tensor, n_steps: int | None = None,
                 alphas: torch.Tensor | None = None):
        if alphas is None:
            if n_steps is None or int(n_steps) < 1:
                raise XattrError(f"n_steps={n_steps} must be >= 1 (the number of path segments)")
            alphas = torch.linspace(0, 1, int(n_steps) + 1, dtype=torch.float64)
        alphas = torch.as_tensor(alphas, dtype=torch.float64)
        if alphas.dim() != 1 or alphas.numel() < 2 or float(alphas[0]) != 0 or float(alphas[-1]) != 1:
            raise XattrError("alphas must be a 1-d sequence from exactly 0 to exactly 1; e.g. torch.linspace(0, 1, K+1)")
        self.x, self.baseline = x, _check_pair(baseline, x)
        self.alphas = alphas.to(x.device, x.dtype)
        self.n_steps = alphas.numel() - 1

    def block(self, lo: int, hi: int) -> torch.Tensor:
        self._check_range(lo, hi)
        a = self.alphas[lo:hi].view(-1, 1, 1, 1, 1)
        return self.baseline + a * (self.x - self.baseline)


class SchedulePath(Path):
    """``γ_k = b + up(S_k) ⊙ (x − b)`` for a monotone schedule ``S`` (see the module docstring).

    ``schedule``: ``[K+1,C',h,w]`` (every image) or ``[B,K+1,C',h,w]`` (one per image), values in ``[0,1]``,
    non-decreasing in ``k``, ``S_0 = 0`` and ``S_K = 1`` exactly (checked; ``check=False`` skips the check).
    """

    def __init__(self, baseline: torch.Tensor, x: torch.Tensor, schedule: torch.Tensor, mode: str = "bilinear",
                 check: bool = True):
        if mode not in UPSAMPLE_MODES:
            raise XattrError(f"upsampling mode {mode!r} is not one of {list(UPSAMPLE_MODES)}")
        if schedule.dim() == 4:
            schedule = schedule.unsqueeze(0)
        if schedule.dim() != 5 or schedule.shape[0] not in (1, x.shape[0]) or schedule.shape[2] not in (1, x.shape[1]):
            raise XattrError(f"schedule of shape {tuple(schedule.shape)} must be [K+1,C',h,w] or [B,K+1,C',h,w] with "
                             f"B={x.shape[0]} and C' 1 or {x.shape[1]}")
        if check:
            check_schedule(schedule, dim=1)
        self.x, self.baseline, self.mode = x, _check_pair(baseline, x), mode
        self.schedule = schedule.to(x.device, x.dtype)
        self.n_steps = schedule.shape[1] - 1

    def upsampled(self, lo: int, hi: int) -> torch.Tensor:
        """``up(S_k)`` for ``k = lo … hi-1``: ``[hi-lo, B or 1, C', H, W]``."""
        s = self.schedule[:, lo:hi].transpose(0, 1)  # [m, B', C', h, w]
        m, b, c = s.shape[:3]
        size = tuple(self.x.shape[-2:])
        if tuple(s.shape[-2:]) != size:
            flat = s.reshape(m * b, c, *s.shape[-2:])
            kwargs = {"align_corners": False} if self.mode == "bilinear" else {}
            s = F.interpolate(flat, size=size, mode=self.mode, **kwargs).view(m, b, c, *size)
        return s

    def block(self, lo: int, hi: int) -> torch.Tensor:
        self._check_range(lo, hi)
        return self.baseline + self.upsampled(lo, hi) * (self.x - self.baseline)


class GeneratorPath(Path):
    """Any lazy path: ``make_block(lo, hi) -> [hi-lo, B, C, H, W]`` for waypoints ``lo … hi-1`` of ``0 … K``."""

    def __init__(self, make_block: Callable[[int, int], torch.Tensor], n_steps: int):
        if int(n_steps) < 1:
            raise XattrError(f"n_steps={n_steps} must be >= 1 (the number of path segments)")
        self.make_block, self.n_steps = make_block, int(n_steps)

    def block(self, lo: int, hi: int) -> torch.Tensor:
        self._check_range(lo, hi)
        return self.make_block(lo, hi)


def refine_schedule(schedule: torch.Tensor, n_steps: int, dim: int = 1) -> torch.Tensor:
    """A schedule with ``K`` steps along ``dim`` resampled to ``n_steps``: linear interpolation at the fractional
    indices ``j·K/n_steps``, ``j = 0 … n_steps``. Keeps monotonicity and ``[0,1]``; endpoints set exactly (0, 1).
    ``[…, K+1, …]`` -> ``[…, n_steps+1, …]`` (DiffIG's K-step schedules integrated with more steps)."""
    if int(n_steps) < 1:
        raise XattrError(f"n_steps={n_steps} must be >= 1 (the number of path segments)")
    s = schedule.movedim(dim, 0)
    k = s.shape[0] - 1
    where = torch.linspace(0, k, int(n_steps) + 1, dtype=torch.float64, device=s.device)
    lo = where.floor().long().clamp_(0, max(k - 1, 0))
    frac = (where - lo).to(s.dtype).view(-1, *([1] * (s.dim() - 1)))
    out = s[lo] + frac * (s[(lo + 1).clamp_(max=k)] - s[lo])
    out[0], out[-1] = 0.0, 1.0
    return out.movedim(0, dim)


def check_schedule(schedule: torch.Tensor, dim: int = 0, tol: float = 1e-6) -> None:
    """One-line error unless ``schedule`` is in ``[0,1]``, non-decreasing along ``dim``, 0 first and 1 last."""
    s = schedule.detach()
    first, last = s.select(dim, 0), s.select(dim, s.shape[dim] - 1)
    problems = []
    if s.shape[dim] < 2:
        problems.append(f"it has {s.shape[dim]} points along dim {dim} (need >= 2)")
    elif not (bool((first == 0).all()) and bool((last == 1).all())):
        problems.append("its first point is not exactly 0 or its last not exactly 1")
    if bool((s < -tol).any()) or bool((s > 1 + tol).any()):
        problems.append("values leave [0, 1]")
    if s.shape[dim] > 1 and bool((s.diff(dim=dim) < -tol).any()):
        problems.append("it decreases somewhere")
    if problems:
        raise XattrError(f"schedule of shape {tuple(s.shape)} is not a monotone path schedule: {'; '.join(problems)}; "
                         "clip it to [0,1], take a cumulative max and set the endpoints to 0 and 1")
