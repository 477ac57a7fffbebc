"""Blur IG (Xu, Venugopalan, Sundararajan, "Attribution in Scale and Space", CVPR 2020), as PAIR ``saliency``'s
``BlurIG.GetMask`` computes it, batched.

The path runs from ``γ(σ_max) = blur(x, σ_max)`` down to ``γ(0) = x`` with a Gaussian blur in ``[0,1]`` pixel
space (``xattr.paths.gaussian_blur``: scipy's kernel, PAIR's zero padding by default). With ``σ_i = i·σ_max/K``
(``sqrt=True``: ``σ_i = √(i·σ_max/K)``) and ``Δσ_i = σ_{i+1} − σ_i``, ``i = 0 … K−1``:

``A = −Σ_i Δσ_i · ∂γ/∂σ(σ_i) ⊙ ∇f_c(γ(σ_i))``  (paper Eq. 5 as a Riemann sum)

with ``∂γ/∂σ ≈ (blur(x, σ_i + grad_step) − blur(x, σ_i)) / grad_step`` (``increment=tangent``, PAIR), or
``increment=chord``: the exact increments ``blur(x, σ_i) − blur(x, σ_{i+1})`` of the discrete path, whose sum
telescopes to ``x − blur(x, σ_max)`` (completeness up to the rule's error only). Gradients are read at
``σ_0 … σ_{K−1}``: in the path core's baseline→input order that is the ``right`` rule.
PAIR with ``sqrt=True`` and ``batch_size > 1`` uses one ``Δσ`` per batch (the last one's); here every node
has its own. Passes: ``n_steps`` forward-backward per image, ``chunk`` images per pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.methods._path_method import PathMethod
from xattr.paths import gaussian_blur, integrate_nodes
from xattr.paths.baselines import PADDINGS
from xattr.paths.integrate import OUTPUTS, check_choice, finish

INCREMENTS = ("tangent", "chord")


def blur_sigmas(max_sigma: float, n_steps: int, sqrt: bool = False) -> list[float]:
    """``σ_0 = 0 … σ_K = σ_max`` (linear, or ``√(i·σ_max/K)``) as PAIR spaces them."""
    if sqrt:
        return [math.sqrt(float(i) * max_sigma / float(n_steps)) for i in range(n_steps + 1)]
    return [float(i) * max_sigma / float(n_steps) for i in range(n_steps + 1)]


class BlurIG(PathMethod):
    """Blur IG, ``[B,C,H,W]``; defaults = PAIR ``saliency`` 0.2.1 (``max_sigma=50``, ``steps=100``, ``grad_step=0.01``)."""

    def __init__(self, model: nn.Module, max_sigma: float = 50.0, n_steps: int = 100, grad_step: float = 0.01,
                 sqrt: bool = False, increment: str = "tangent", padding: str = "zero",
                 output: str = "probability", chunk: int = 32):
        super().__init__(model)
        if not float(max_sigma) > 0 or int(n_steps) < 1 or not float(grad_step) > 0 or int(chunk) < 1:
            raise XattrError(f"Blur IG needs max_sigma > 0, n_steps >= 1, grad_step > 0 and chunk >= 1; got "
                             f"{max_sigma}, {n_steps}, {grad_step}, {chunk}")
        self.max_sigma, self.n_steps, self.grad_step = float(max_sigma), int(n_steps), float(grad_step)
        self.sqrt = bool(sqrt)
        self.increment = check_choice("increment", increment, INCREMENTS)
        self.padding = check_choice("padding", padding, PADDINGS)
        self.output = check_choice("output", output, OUTPUTS)
        self.chunk = int(chunk)

    def nodes(self, x: torch.Tensor):
        """``(points, increments)`` ``[m,B,C,H,W]`` for ``σ_0 … σ_{K−1}``, ``m = chunk // B`` at a time."""
        sigmas = blur_sigmas(self.max_sigma, self.n_steps, self.sqrt)
        per_chunk = max(1, self.chunk // x.shape[0])
        for lo in range(0, self.n_steps, per_chunk):
            points, increments = [], []
            for i in range(lo, min(lo + per_chunk, self.n_steps)):
                point = gaussian_blur(x, sigmas[i], self.padding)
                if self.increment == "tangent":
                    ahead = gaussian_blur(x, sigmas[i] + self.grad_step, self.padding)
                    increments.append(-(sigmas[i + 1] - sigmas[i]) * (ahead - point) / self.grad_step)
                else:
                    increments.append(point - gaussian_blur(x, sigmas[i + 1], self.padding))
                points.append(point)
            yield torch.stack(points), torch.stack(increments)

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        maps, calls = integrate_nodes(self.model, target, self.nodes(x), self.output)
        start = gaussian_blur(x, self.max_sigma, self.padding)
        result = finish(self.model, maps, start, x, target, self.output, calls)
        return self._record(result.attribution, result.f_end, result.f_start)
