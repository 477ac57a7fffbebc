"""ROAD: RemOve And Debias (Rong, Leemann et al. 2022, "A Consistent and Efficient Evaluation Strategy
for Attribution Methods"), as CoIBA (Table 2) uses it.

**Noisy linear imputation** (the authors' ``NoisyLinearImputer``): every removed pixel is the weighted
mean of its 8 neighbours, weight 1/6 for the 4 edge neighbours and 1/12 for the 4 diagonal ones;
neighbours outside the image drop out (the weights of the remaining ones are renormalised); removed
neighbours are unknowns themselves, so all removed pixels of one image (and channel mask) are solved
together as ONE sparse linear system ``A v = b`` (``A = diag(sum of in-image weights) - W_removed``,
symmetric positive definite unless every pixel is removed). Then Gaussian noise ``noise * N(0,1)`` is
added to the imputed values only, in ``[0,1]`` image space (sigma 0.01 as the authors; no clipping).

**What a fraction means here: the share of units REMOVED (imputed), for both orders.** ``MoRF`` at
``f`` removes the ``floor(f * units)`` most relevant units; ``LeRF`` at ``f`` removes the
``floor(f * units)`` least relevant units. (The authors' ``ImputedDataset`` with ``remove=False`` and
the ``grad-cam`` package's ``percentile`` use the share *kept* instead: their LeRF at 0.2 / percentile
80 removes 80%. Pass ``1 - f`` to compare.) With this convention ``LeRF - MoRF`` at the same fraction
(CoIBA's Delta-ROAD) compares equally damaged images.

Units are pixels for ``[B,1,H,W]`` maps (all channels of a pixel imputed together, one system with C
right-hand sides) and pixel-channel values for ``[B,C,H,W]`` maps (each channel has its own removed set
and its own system; a channel with nothing kept is filled with the mean of the image's kept values).
Ties: seeded infinitesimal noise (``_perturb.rank_units``).

Scores per fraction: the target's softmax probability ``prob@f`` and top-1 correctness ``acc@f``
(prediction == target), plus their means over fractions ``prob`` and ``acc``. MoRF: lower is better;
LeRF: higher is better.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

from xattr.errors import XattrError
from xattr.metrics._perturb import check_choice, check_max_batch, class_probs, rank_units, validate_inputs
from xattr.utils.hooks import eval_mode
from xattr.utils.seed import make_generator

# (row offset, column offset, weight): the authors' ``neighbors_weights``.
NEIGHBOUR_WEIGHTS = (
    (1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12),
    (0, -1, 1 / 6), (-1, -1, 1 / 12), (1, 0, 1 / 6), (-1, 0, 1 / 6),
)


def linear_imputation_system(removed: np.ndarray):
    """Sparse system of the removed pixels of one ``[H,W]`` bool mask.

    Returns ``(A, rows, cols, weights_known)``: ``A`` (csc, ``n x n``) with the in-image neighbour
    weight sum on the diagonal and ``-w`` for each removed neighbour pair, the coordinates of the ``n``
    unknowns (row-major order), and a function turning an image ``[C,H,W]`` into the right-hand side
    ``[n,C]`` (weighted sum of the kept neighbours).
    """
    height, width = removed.shape
    rows, cols = np.nonzero(removed)
    n = rows.size
    index = np.full((height, width), -1, dtype=np.int64)
    index[rows, cols] = np.arange(n)
    diagonal = np.zeros(n)
    entry_rows, entry_cols, entry_vals = [np.arange(n)], [None], [None]
    known_terms = []  # (unknown ids, neighbour rows, neighbour cols, weight)
    for dy, dx, weight in NEIGHBOUR_WEIGHTS:
        ny, nx = rows + dy, cols + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        diagonal[inside] += weight
        ids, ny, nx = np.nonzero(inside)[0], ny[inside], nx[inside]
        neighbour = index[ny, nx]
        unknown = neighbour >= 0
        entry_rows.append(ids[unknown])
        entry_cols.append(neighbour[unknown])
        entry_vals.append(np.full(int(unknown.sum()), -weight))
        known_terms.append((ids[~unknown], ny[~unknown], nx[~unknown], weight))
    entry_cols[0], entry_vals[0] = np.arange(n), diagonal
    matrix = coo_matrix((np.concatenate(entry_vals), (np.concatenate(entry_rows), np.concatenate(entry_cols))),
                        shape=(n, n)).tocsc()

    def right_hand_side(image: np.ndarray) -> np.ndarray:
        rhs = np.zeros((n, image.shape[0]))
        for ids, ny, nx, weight in known_terms:
            rhs[ids] += weight * image[:, ny, nx].T  # ids are unique per offset
        return rhs

    return matrix, rows, cols, right_hand_side


def impute_linear(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Noise-free linear imputation of ``image`` ``[C,H,W]`` (float64) at ``removed`` ``[H,W]`` bool."""
    out = image.copy()
    if not removed.any():
        return out
    if removed.all():
        raise XattrError("ROAD cannot impute an image with every pixel removed; use fractions below 1")
    matrix, rows, cols, rhs = linear_imputation_system(removed)
    solution = splu(matrix, permc_spec="COLAMD").solve(rhs(image))  # [n, C]
    out[:, rows, cols] = solution.T
    return out


def impute_image(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Linear imputation with a ``[1,H,W]`` (shared by channels) or ``[C,H,W]`` (per channel) mask."""
    if removed.shape[0] == 1:
        return impute_linear(image, removed[0])
    out = image.copy()
    kept = ~removed
    fallback = float(image[kept].mean()) if kept.any() else 0.5
    for c in range(image.shape[0]):
        if removed[c].all():
            out[c] = fallback
        else:
            out[c] = impute_linear(image[c : c + 1], removed[c])[0]
    return out


def removed_masks(rank: torch.Tensor, fraction: float, order: str) -> torch.Tensor:
    """Bool ``[B,Cm,H,W]``: units removed at ``fraction`` (share removed) for ``order``."""
    units = rank[0].numel()
    count = math.floor(fraction * units + 1e-9)
    return rank < count if order == "morf" else rank >= units - count


class ROAD:
    """``ROAD(fractions=(0.2, 0.4, 0.6, 0.8), order='morf', noise=0.01)(model, x, maps, target)``.

    Returns ``{'prob@0.2': [B], ..., 'acc@0.2': [B], ..., 'prob': [B], 'acc': [B]}`` (means over
    fractions); ``return_curves=True`` adds ``curve`` ``[B,F]`` (probabilities per fraction).
    A fraction is the share of units REMOVED for both orders (see module doc).
    """

    def __init__(self, fractions=(0.2, 0.4, 0.6, 0.8), order: str = "morf", noise: float = 0.01, seed: int = 0,
                 max_batch: int = 16, return_curves: bool = False):
        self.fractions = tuple(float(f) for f in fractions)
        if not self.fractions or any(not 0.0 <= f < 1.0 for f in self.fractions):
            raise XattrError(f"ROAD fractions {list(self.fractions)} must be shares removed in [0, 1), e.g. [0.2, 0.4]")
        self.order = check_choice("order", str(order).lower(), ("morf", "lerf"))
        if float(noise) < 0:
            raise XattrError(f"ROAD noise={noise} must be >= 0 (standard deviation in [0,1] image units)")
        self.noise = float(noise)
        self.seed = int(seed)
        self.max_batch = check_max_batch(max_batch)
        self.return_curves = bool(return_curves)

    def impute(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Imputed images ``[B,F,3,H,W]`` (noise included) for every image and fraction."""
        rank = rank_units(maps, self.seed)
        generator = make_generator(self.seed)
        images = x.detach().double().cpu().numpy()
        out = torch.empty(x.shape[0], len(self.fractions), *x.shape[1:], dtype=x.dtype)
        for f, fraction in enumerate(self.fractions):
            removed = removed_masks(rank, fraction, self.order).cpu().numpy()
            for b in range(x.shape[0]):
                imputed = torch.from_numpy(impute_image(images[b], removed[b]))
                if self.noise > 0:
                    where = torch.from_numpy(np.broadcast_to(removed[b], images[b].shape).copy())
                    imputed = imputed + where * self.noise * torch.randn(imputed.shape, generator=generator,
                                                                         dtype=torch.float64)
                out[b, f] = imputed.to(x.dtype)
        return out.to(x.device)

    @torch.no_grad()
    def __call__(self, model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                 **ground_truth) -> dict[str, torch.Tensor]:
        target = validate_inputs(model, x, maps, target)
        imputed = self.impute(x, maps)
        batch, fractions = imputed.shape[:2]
        flat = imputed.reshape(batch * fractions, *x.shape[1:])
        flat_target = target.repeat_interleave(fractions)
        probs = torch.empty(batch * fractions, device=x.device)
        correct = torch.empty(batch * fractions, device=x.device)
        with eval_mode(model):  # on the device throughout: every target checked with the first chunk only
            for lo in range(0, flat.shape[0], self.max_batch):
                chunk_target = flat_target[lo : lo + self.max_batch]
                p, pred = class_probs(model, flat[lo : lo + self.max_batch], chunk_target,
                                      flat_target if lo == 0 else flat_target[:0])
                probs[lo : lo + self.max_batch] = p
                correct[lo : lo + self.max_batch] = (pred == chunk_target).float()
        probs, correct = probs.view(batch, fractions), correct.view(batch, fractions)
        result = {}
        for f, fraction in enumerate(self.fractions):
            result[f"prob@{fraction:g}"] = probs[:, f]
        for f, fraction in enumerate(self.fractions):
            result[f"acc@{fraction:g}"] = correct[:, f]
        result["prob"] = probs.mean(1)
        result["acc"] = correct.mean(1)
        if self.return_curves:
            result["curve"] = probs
        return result
