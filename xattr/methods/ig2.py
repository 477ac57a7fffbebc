"""IG² (Zhuo & Ge, "IG²: Integrated Gradient on Iterative Gradient Path for Feature Attribution", TPAMI 2024).

GradPath (the authors' ``IG2.Get_GradPath``, JoeZhuo-ZY/IG2): from ``x_0 = x``, move toward a counterfactual whose
penultimate representation ``h`` (the input of the classifier's last linear layer) matches a reference's:

``δ ← clip(x + δ + η · g / ‖g‖₂) − x``,  ``g = ∇_x [−MSE(h(x + δ), h(x^r))]``,  ``x_j = x + δ`` (``j = 1 … steps``)

with the L2 norm per (image, reference) and clipping to the image range ``[0,1]``. Attribution (paper Eq. 3 as
the code sums it): ``A = Σ_{j=1}^{steps} (x_{j−1} − x_j) ⊙ ∇f_c(x_{j−1})``, averaged over the references. In the
path core's baseline→input order this is the ``right`` rule on the path from ``x_steps`` to ``x``; completeness is
measured against ``f_c(x_steps)`` (the path's start), averaged over references.

Differences from the reference code (documented guesses): the path lives in ``[0,1]`` pixel space and the
gradients are taken there (the reference moves raw ``[0,255]`` pixels along gradients of the *normalised*
input, ``step_size=256``); ``step_size`` here is the L2 length of one step in ``[0,1]`` units, default
``256/255 ≈ 1.0`` (the reference's step on its scale). References: ``n_references`` per image drawn from a
seeded bank of ``reference_bank`` training images (the DiffIG authors' group: 3 of 100).
One sequential loop of ``steps`` iterations, each one forward and two backward passes (``f_c`` and the
representation loss) for all ``B × n_references`` rows at once.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from xattr.errors import XattrError
from xattr.methods._path_method import PathMethod
from xattr.methods._references import check_bank, pick_references, reference_bank
from xattr.methods.base import RunContext
from xattr.paths.integrate import OUTPUTS, check_choice, class_score, class_scores, gradient_session
from xattr.utils.hooks import forward_hook


def penultimate_layer(model: nn.Module, name: str | None = None) -> nn.Module:
    """The module whose *input* is the representation ``h``: ``name`` (dotted, inside ``model``), or the last
    ``nn.Linear`` of the model (the classifier head of every zoo model)."""
    if name:
        try:
            return model.get_submodule(name)
        except AttributeError as error:
            raise XattrError(f"ig2: model has no layer {name!r}; give the dotted name of its classifier "
                             "layer (e.g. net.fc) or layer=null for the last nn.Linear") from error
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise XattrError("ig2: the model has no nn.Linear head; set layer= to the module whose input is the "
                         "penultimate representation")
    return linears[-1]


class IG2(PathMethod):
    """IG² ``[B,C,H,W]``: IG along GradPath toward training references, averaged over references."""

    def __init__(self, model: nn.Module, steps: int = 201, step_size: float = 1.0, n_references: int = 3,
                 reference_bank: int = 100, layer: str | None = None, output: str = "probability", seed: int = 0):
        super().__init__(model)
        if int(steps) < 1 or not float(step_size) > 0 or int(n_references) < 1 or int(reference_bank) < 1:
            raise XattrError(f"ig2 needs steps >= 1, step_size > 0, n_references >= 1 and reference_bank >= 1; got "
                             f"{steps}, {step_size}, {n_references}, {reference_bank}")
        self.steps, self.step_size, self.n_references = int(steps), float(step_size), int(n_references)
        self.bank_size, self.layer, self.seed = int(reference_bank), layer, int(seed)
        self.output = check_choice("output", output, OUTPUTS)
        penultimate_layer(model, layer)  # fail early
        self.references: torch.Tensor | None = None

    def prepare(self, context: RunContext) -> None:
        self.references = reference_bank(context.train_dataset, self.bank_size, seed=0)

    def adopt_model_independent(self, prepared) -> None:
        self.references = prepared.references

    def set_references(self, images: torch.Tensor) -> None:
        """Use ``images`` ``[N,C,H,W]`` in ``[0,1]`` as the reference bank."""
        self.references = images.detach()

    def _representation(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, h)`` for ``images``: ``h`` the flattened input of the penultimate layer."""
        seen = {}

        def keep(module, inputs, output):
            seen["h"] = inputs[0]

        with forward_hook(penultimate_layer(self.model, self.layer), keep):
            logits = self.model(images)
        return logits, seen["h"].flatten(1)

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bank = check_bank(self.references, x, "ig2")
        b, n = x.shape[0], self.n_references
        indices, _ = pick_references(x, bank, n, self.seed)
        refs = bank[indices.to(bank.device).reshape(-1)]  # [B·n, C,H,W], image-major
        rows_target = target.repeat_interleave(n)
        start = x.repeat_interleave(n, dim=0)
        with gradient_session(self.model), torch.no_grad():
            _, h_ref = self._representation(refs)
        point, attr = start.clone(), torch.zeros_like(start)
        with gradient_session(self.model):
            for _ in range(self.steps):
                current = point.detach().requires_grad_(True)
                logits, h = self._representation(current)
                score = class_score(logits, rows_target, self.output).sum()
                (grad_f,) = torch.autograd.grad(score, current, retain_graph=True)
                loss = -F.mse_loss(h, h_ref, reduction="none").mean(1).sum()  # one −MSE per row
                (grad_h,) = torch.autograd.grad(loss, current)
                norm = grad_h.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                nxt = (point + self.step_size * grad_h / norm).clamp(0.0, 1.0)  # x + clip(δ) as the reference
                attr += (point - nxt) * grad_f
                point = nxt.detach()
        maps = attr.view(b, n, *x.shape[1:]).mean(1)
        f_x = class_scores(self.model, x, target, self.output)
        f_end = class_scores(self.model, point, rows_target, self.output).view(b, n).mean(1)
        return self._record(maps, f_x, f_end)
