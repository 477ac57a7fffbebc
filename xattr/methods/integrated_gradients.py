"""Integrated Gradients (Sundararajan, Taly & Yan 2017) as a thin wrapper over ``captum.attr.IntegratedGradients``.

``A_i = (x_i − x'_i) · ∫₀¹ ∂f_t(x' + a(x − x'))/∂x_i da`` with the target logit ``f_t`` and a black
baseline ``x' = 0`` in ``[0,1]`` image space (the zoo model normalises inside, so this is the image of zeros,
not the dataset mean). ``n_steps=200`` as in the DiffIB paper's setup; Captum's default Gauss–Legendre
quadrature. Completeness: ``Σ_i A_i ≈ f_t(x) − f_t(x')`` with an error that falls with ``n_steps``.
Memory stays bounded: at most ``internal_batch_size`` scaled images go through the model at once.
``diagnostics()`` reports each image's relative completeness error ``|Σ A − (f_t(x) − f_t(x'))| / |f_t(x) − f_t(x')|``
(from Captum's convergence delta and one extra forward pass of ``x`` and ``x'``).
"""

from __future__ import annotations

import captum.attr
import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.methods._captum import captum_session, fresh_input
from xattr.methods._path_method import PathMethod
from xattr.paths.integrate import class_scores

METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


class IntegratedGradients(PathMethod):
    """IG with baseline ``baseline`` (a constant in ``[0,1]``, default 0 = black). Output ``[B,C,H,W]``.

    Passes: ``n_steps`` forward-backward passes per image, in chunks of ``internal_batch_size`` images.
    """

    supports_transformers = True

    def __init__(self, model: nn.Module, n_steps: int = 200, method: str = "gausslegendre",
                 baseline: float = 0.0, internal_batch_size: int = 16):
        super().__init__(model)
        if method not in METHODS:
            raise XattrError(f"unknown integration method {method!r}; choose one of {', '.join(METHODS)}")
        if int(n_steps) < 1 or int(internal_batch_size) < 1:
            raise XattrError(f"n_steps={n_steps} and internal_batch_size={internal_batch_size} must be >= 1")
        self.n_steps = int(n_steps)
        self.method = method
        self.baseline = float(baseline)
        self.internal_batch_size = int(internal_batch_size)

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        maps, _ = self.attribute_with_delta(x, target)
        with torch.no_grad():
            f_x = class_scores(self.model, x, target, "logit")
            f_b = class_scores(self.model, torch.full_like(x, self.baseline), target, "logit")
        return self._record(maps, f_x, f_b)

    def attribute_with_delta(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps and Captum's completeness error ``Σ A − (f_t(x) − f_t(baseline))`` per image."""
        ig = captum.attr.IntegratedGradients(self.model, multiply_by_inputs=True)
        with captum_session(self.model):
            maps, delta = ig.attribute(
                fresh_input(x), baselines=self.baseline, target=target, n_steps=self.n_steps,
                method=self.method, internal_batch_size=max(self.internal_batch_size, x.shape[0]),
                return_convergence_delta=True,
            )
        return maps, delta
