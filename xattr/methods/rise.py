"""RISE — Randomized Input Sampling for Explanation (Petsiuk, Das, Saenko, BMVC 2018).

Reference code: eclique/RISE ``explanations.py`` (``RISE.generate_masks``, ``RISEBatch.forward``) and
``Easy_start.ipynb`` (N=4000, s=7, p1=0.5, model followed by a softmax).

Masks: an ``s × s`` grid of Bernoulli(p1) cells, upsampled bilinearly (``skimage.resize`` order 1,
``mode='reflect'``) to ``(s+1)·ceil(H/s)`` pixels and cropped at a random shift in
``[0, ceil(H/s))`` per axis. Saliency of the target class: ``Σ_i p_i M_i / (N · p1)`` with ``p_i``
the softmax probability of the masked input ``x·M_i`` (masking acts on the normalised tensor, as the
reference feeds preprocessed images; ``perturb_space=pixel`` masks to black instead).

The mask set is drawn once per method instance (seeded) and shared by all images, like the
reference's saved ``masks.npy``; only grids and shifts are stored, masks are rebuilt per chunk.
All ``B · N`` forward passes run in chunks of ``batch_size``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.methods._model_space import class_scores, model_space
from xattr.methods.base import AttributionMethod
from xattr.utils.seed import make_generator


def _linear_resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``[n_out, n_in]`` weights of order-1 resizing with pixel-centre alignment and mirror boundary
    (``skimage.transform.resize(order=1, mode='reflect')``, i.e. ``numpy.pad`` 'reflect')."""
    src = (torch.arange(n_out, dtype=torch.float64) + 0.5) * n_in / n_out - 0.5
    low = torch.floor(src)
    frac = src - low
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)

    def mirror(i: torch.Tensor) -> torch.Tensor:
        period = 2 * (n_in - 1)
        i = torch.remainder(i, period) if n_in > 1 else torch.zeros_like(i)
        return torch.where(i >= n_in, period - i, i)

    rows = torch.arange(n_out)
    weights.index_put_((rows, mirror(low.long())), 1 - frac, accumulate=True)
    weights.index_put_((rows, mirror(low.long() + 1)), frac, accumulate=True)
    return weights


def rise_masks(grids: torch.Tensor, shifts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Upsample ``grids [N,s,s]`` as RISE does and crop at ``shifts [N,2]`` → ``[N,1,H,W]``.

    Exactly the reference's ``resize(grid, (s+1)·cell, order=1, mode='reflect', anti_aliasing=False)``
    followed by the crop ``[x:x+H, y:y+W]``, written as ``A_rows · grid · A_colsᵀ`` with linear
    interpolation matrices (only the cropped rows/columns are computed).
    """
    n, s, _ = grids.shape
    cell_h, cell_w = math.ceil(size[0] / s), math.ceil(size[1] / s)
    a_h = _linear_resize_matrix(s, (s + 1) * cell_h).to(grids.device)
    a_w = _linear_resize_matrix(s, (s + 1) * cell_w).to(grids.device)
    rows = shifts[:, 0, None].to(grids.device) + torch.arange(size[0], device=grids.device)  # [N, H]
    cols = shifts[:, 1, None].to(grids.device) + torch.arange(size[1], device=grids.device)  # [N, W]
    masks = a_h[rows] @ grids.double() @ a_w[cols].transpose(1, 2)
    return masks.float()[:, None]


class RISE(AttributionMethod):
    """RISE. Output ``[B,1,H,W]``: expected target probability under each pixel's masks, not normalised.

    Args (see ``conf/method/rise.yaml``):
        n_masks: N (4000). grid_size: s (7). p1: keep probability (0.5).
        batch_size: images per forward pass (reference ``gpu_batch=100``; chunking only).
        output: ``prob`` (reference: softmax) or ``logit``. perturb_space: ``normalized`` or ``pixel``.
        seed: seeds grids and shifts.
    """

    def __init__(self, model: nn.Module, n_masks: int = 4000, grid_size: int = 7, p1: float = 0.5,
                 batch_size: int = 100, output: str = "prob", perturb_space: str = "normalized", seed: int = 0,
                 progress: bool = True):
        super().__init__(model)
        if n_masks < 1 or grid_size < 2 or not 0 < p1 <= 1:
            raise XattrError(f"RISE needs n_masks >= 1, grid_size >= 2, 0 < p1 <= 1; got {n_masks}, {grid_size}, {p1}")
        self.n_masks, self.grid_size, self.p1 = int(n_masks), int(grid_size), float(p1)
        self.batch_size, self.output, self.perturb_space = int(batch_size), output, perturb_space
        self.seed, self.progress = int(seed), progress
        class_scores(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), output)
        model_space(model, perturb_space)
        generator = make_generator(self.seed)
        self.grids = (torch.rand(self.n_masks, self.grid_size, self.grid_size, generator=generator) < self.p1).float()
        self._shift_uniform = torch.rand(self.n_masks, 2, generator=generator, dtype=torch.float64)

    def shifts(self, size: tuple[int, int]) -> torch.Tensor:
        """Random shifts in ``[0, cell)`` per axis for images of ``size`` (fixed per instance)."""
        cells = torch.tensor([math.ceil(size[0] / self.grid_size), math.ceil(size[1] / self.grid_size)],
                             dtype=torch.float64)
        return torch.floor(self._shift_uniform * cells).long()

    def masks(self, size: tuple[int, int], index: slice | torch.Tensor | None = None,
              device: torch.device | str = "cpu") -> torch.Tensor:
        """The masks ``[N,1,H,W]`` (or those at ``index``, a slice or CPU indices) for images of ``size``, computed
        on ``device``."""
        grids, shifts = self.grids, self.shifts(size)
        if index is not None:
            grids, shifts = grids[index], shifts[index]
        return rise_masks(grids.to(device), shifts.to(device), size)

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        normalise, net = model_space(self.model, self.perturb_space)
        b, n = x.shape[0], self.n_masks
        size = tuple(x.shape[-2:])
        saliency = torch.zeros(b, size[0] * size[1], device=x.device, dtype=torch.float64)
        from tqdm.auto import tqdm

        with torch.no_grad():
            x_model = normalise(x)
            # chunks over masks; each chunk explains all B images with the same masks
            per_chunk = max(1, self.batch_size // b)
            for start in tqdm(range(0, n, per_chunk), desc="RISE", leave=False, disable=not self.progress or None):
                masks = self.masks(size, slice(start, min(start + per_chunk, n)), x.device)  # [m,1,H,W]
                m = masks.shape[0]
                stack = (x_model[:, None] * masks[None]).reshape((b * m,) + tuple(x.shape[1:]))
                p = class_scores(net(stack), target.repeat_interleave(m), self.output).view(b, m)
                saliency += p.double() @ masks.view(m, -1).double()
        saliency = saliency / n / self.p1
        return saliency.view(b, 1, *size).float()
