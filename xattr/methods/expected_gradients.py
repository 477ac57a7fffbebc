"""Expected Gradients (Erion, Janizek, Sturmfels, Lundberg, Lee, "Improving performance of deep learning models with
axiomatic attribution priors and expected gradients", Nature Machine Intelligence 2021).

``A = E_{x'∼D, α∼U(0,1)} [(x − x') ⊙ ∇f_c(x' + α(x − x'))]``, estimated with ``n_samples`` pairs per image: one
reference ``x'`` from the training split and one ``α`` per sample (the paper's single-sample-per-reference
estimator). This is exactly Captum's ``GradientShap`` with ``stdevs=0`` (tested: equal maps from equal draws);
we do not call Captum because it draws references and ``α`` from numpy's global generator for the whole batch,
so an image's map would depend on its batch. Here the draws come from the image's own seed.

References: ``prepare`` takes a seeded bank of ``reference_bank`` training images (``context.train_dataset``);
``set_references`` gives them directly. Completeness holds in expectation:
``E[Σ A] = f_c(x) − E f_c(x')``; ``diagnostics()`` reports the error against the mean over the drawn references
(Monte-Carlo noise included). Passes: ``n_samples`` forward-backward per image, ``chunk`` images per pass.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.methods._path_method import PathMethod
from xattr.methods._references import check_bank, pick_references, reference_bank
from xattr.methods.base import RunContext
from xattr.paths import integrate_nodes
from xattr.paths.integrate import OUTPUTS, check_choice, class_scores


class ExpectedGradients(PathMethod):
    """Expected Gradients ``[B,C,H,W]`` over training-set references."""

    def __init__(self, model: nn.Module, n_samples: int = 200, reference_bank: int = 100, output: str = "probability",
                 seed: int = 0, chunk: int = 32):
        super().__init__(model)
        if int(n_samples) < 1 or int(reference_bank) < 1 or int(chunk) < 1:
            raise XattrError(f"n_samples={n_samples}, reference_bank={reference_bank} and chunk={chunk} must be >= 1")
        self.n_samples, self.bank_size, self.seed, self.chunk = int(n_samples), int(reference_bank), int(seed), int(chunk)
        self.output = check_choice("output", output, OUTPUTS)
        self.references: torch.Tensor | None = None

    def prepare(self, context: RunContext) -> None:
        self.references = reference_bank(context.train_dataset, self.bank_size, seed=0)

    def adopt_model_independent(self, prepared) -> None:
        self.references = prepared.references

    def set_references(self, images: torch.Tensor) -> None:
        """Use ``images`` ``[N,C,H,W]`` in ``[0,1]`` as the reference distribution."""
        self.references = images.detach()

    def nodes(self, x: torch.Tensor, refs: torch.Tensor, alphas: torch.Tensor):
        """``(x' + α(x − x'), (x − x')/n)`` per sample: ``refs [B,n,C,H,W]``, ``alphas [B,n]``."""
        per_chunk = max(1, self.chunk // x.shape[0])
        n = refs.shape[1]
        for lo in range(0, n, per_chunk):
            r = refs[:, lo:lo + per_chunk].transpose(0, 1)  # [m,B,C,H,W]
            a = alphas[:, lo:lo + per_chunk].T.to(x.dtype).view(-1, x.shape[0], 1, 1, 1)
            yield r + a * (x - r), (x - r) / n

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bank = check_bank(self.references, x, "expected_gradients")
        indices, alphas = pick_references(x, bank, self.n_samples, self.seed)
        refs = bank[indices.to(bank.device)]  # [B,n,C,H,W]
        maps, _ = integrate_nodes(self.model, target, self.nodes(x, refs, alphas.to(x.device)), self.output)
        f_x = class_scores(self.model, x, target, self.output)
        f_refs = class_scores(self.model, refs.flatten(0, 1), target.repeat_interleave(self.n_samples), self.output)
        return self._record(maps, f_x, f_refs.view(x.shape[0], -1).mean(1))
