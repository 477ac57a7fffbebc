"""Shared internals of the perturbation metrics (insertion, deletion, MNIM, ROAD, ratios).

* **Units.** A map ``[B,C,H,W]`` with ``C == x.shape[1]`` ranks pixel-channel values (``C*H*W`` units,
  as DiffIB's MNIM counts them); a map ``[B,1,H,W]`` ranks pixels (``H*W`` units, all channels of a pixel
  move together).
* **Ranking and ties.** Units are sorted by map value, largest first. Ties are broken by seeded
  infinitesimal noise: the units are first put in a seeded random order (one permutation of the
  ``units`` shared by every image, so a sample's ranking does not depend on its batch), then sorted
  *stably*. This equals adding noise smaller than any gap between distinct values: distinct values are
  never reordered, equal values come out in a reproducible random order.
* **Curves.** An image with ``k`` units taken from ``finish`` and the rest from ``start`` is
  ``where(rank < k, finish, start)``. All (image, k) pairs of a batch are flattened and sent through the
  model in chunks of ``max_batch`` images (memory-bounded; the loop is visible in ``perturbation_probs``).
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.models.spec import input_normalization
from xattr.utils.hooks import eval_mode
from xattr.utils.seed import make_generator
from xattr.utils.validate import check_images, check_maps, check_targets

SUBSTRATES = ("blur", "zero", "noise", "shared_noise", "mean")

# RISE (Petsiuk et al. 2018, eclique/RISE evaluation.py): insertion starts from a Gaussian blur,
# kernel size 11, sigma 5, applied per channel with zero padding.
BLUR_KERNEL_SIZE = 11
BLUR_SIGMA = 5.0


def validate_inputs(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target) -> torch.Tensor:
    """Check images, maps and targets; return ``target`` as a LongTensor ``[B]`` on ``x``'s device."""
    check_images(x)
    if not isinstance(maps, torch.Tensor):
        raise XattrError(f"maps must be a torch.Tensor [B,C,H,W], got {type(maps).__name__}")
    check_maps(maps, x)
    num_classes = getattr(getattr(model, "spec", None), "num_classes", None)
    return check_targets(target, x.shape[0], num_classes).to(x.device)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise XattrError(f"{name}={value!r} is not one of {list(choices)}; pick one of them")
    return value


def check_fraction(name: str, value: float, low_open: bool = True) -> float:
    value = float(value)
    inside = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not inside:
        raise XattrError(f"{name}={value} must be a fraction in (0, 1]; e.g. {name}=0.01")
    return value


def tie_permutation(units: int, seed: int) -> torch.Tensor:
    """The seeded random order of ``units`` that breaks ties (shared by all images)."""
    return torch.randperm(units, generator=make_generator(seed))


def rank_units(maps: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Rank of each unit of ``maps`` ``[B,C,H,W]`` (0 = most important), same shape, int64.

    Ties are broken by a seeded random order followed by a stable descending sort (see module doc).
    """
    batch = maps.shape[0]
    flat = maps.detach().reshape(batch, -1).double()
    units = flat.shape[1]
    perm = tie_permutation(units, seed).to(maps.device)
    order_in_perm = torch.sort(flat[:, perm], dim=1, descending=True, stable=True).indices
    order = perm[order_in_perm]  # order[b, r] = unit with rank r
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(units, device=maps.device).expand(batch, units))
    return rank.reshape(maps.shape)


def gaussian_kernel(size: int = BLUR_KERNEL_SIZE, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """RISE's ``gkern``: a unit impulse of ``size x size`` filtered by scipy's Gaussian (sums to 1)."""
    from scipy.ndimage import gaussian_filter

    impulse = torch.zeros(size, size).numpy()
    impulse[size // 2, size // 2] = 1.0
    return torch.from_numpy(gaussian_filter(impulse, sigma)).float()


def blur(x: torch.Tensor, size: int = BLUR_KERNEL_SIZE, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Per-channel Gaussian blur with zero padding (as RISE's ``conv2d(x, kern, padding=klen//2)``)."""
    channels = x.shape[1]
    kernel = gaussian_kernel(size, sigma).to(x)[None, None].expand(channels, 1, size, size)
    return nn.functional.conv2d(x, kernel, padding=size // 2, groups=channels)


def noise_field(model: nn.Module, shape: tuple[int, int, int], seed: int, device) -> torch.Tensor:
    """Seeded Gaussian noise in the model's input space, as a ``[C,H,W]`` image in ``[0,1]``.

    ``mean + std * N(0,1)`` with the model's normalisation constants (so after the zoo model's
    ``Normalize`` it is standard normal), clipped to ``[0,1]``. One field for one seed.
    """
    mean, std = input_normalization(model, shape[0])
    eps = torch.randn(shape, generator=make_generator(seed))
    return (mean.view(-1, 1, 1) + std.view(-1, 1, 1) * eps).clamp(0.0, 1.0).to(device)


def image_seed(image: torch.Tensor, seed: int) -> int:
    """A 63-bit seed from ``seed`` and the bytes of one image ``[C,H,W]``: the same image gets the same
    noise in any batch, at any position and under any method, and two different images get independent
    noise. Not :func:`xattr.utils.seed.image_seeds` on purpose: the methods draw their noise from those seeds
    (IBA, DiffIB, InputIBA with their ``seed``, 0 by default), and a metric's substrate must not replay a
    method's own noise; this digest (the seed as a prefix, not as the key) gives an independent stream."""
    digest = hashlib.blake2b(f"{int(seed)}:".encode(), digest_size=8)
    digest.update(image.detach().float().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest(), "little") >> 1


def per_image_noise(model: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """One seeded noise field (``noise_field``) per image of ``x`` ``[B,C,H,W]``, keyed by the image's content
    (``image_seed``): DiffIB's "fully noise-filled image" drawn for each image, so that no single noise
    image that the model happens to classify confidently decides every image's MNIM."""
    shape = tuple(x.shape[1:])
    host = x.detach().float().cpu()  # one read back for the batch
    return torch.stack([noise_field(model, shape, image_seed(image, seed), "cpu") for image in host]).to(x.device)


def make_substrate(model: nn.Module, x: torch.Tensor, kind: str, seed: int = 0,
                   blur_kernel: int = BLUR_KERNEL_SIZE, blur_sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """The image that replaces removed units, ``[B,C,H,W]``: ``blur`` (``blur_kernel``, ``blur_sigma``) |
    ``zero`` | ``noise`` (seeded per image, ``per_image_noise``) | ``shared_noise`` (one seeded field for
    every image) | ``mean`` (per-image channel mean)."""
    check_choice("substrate", kind, SUBSTRATES)
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "blur":
        return blur(x, check_blur_kernel(blur_kernel), check_blur_sigma(blur_sigma))
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if kind == "noise":
        return per_image_noise(model, x, seed)
    return noise_field(model, tuple(x.shape[1:]), seed, x.device).expand_as(x).clone()


def check_blur_kernel(size: int) -> int:
    if int(size) != size or int(size) < 1 or int(size) % 2 == 0:
        raise XattrError(f"blur_kernel={size} must be an odd positive kernel size, e.g. blur_kernel=11")
    return int(size)


def check_blur_sigma(sigma: float) -> float:
    if not float(sigma) > 0:
        raise XattrError(f"blur_sigma={sigma} must be a positive standard deviation in pixels, e.g. blur_sigma=5")
    return float(sigma)


def step_counts(units: int, step: float) -> list[int]:
    """Numbers of units moved at each point of an insertion/deletion curve: ``0, s, 2s, ..., units``.

    ``s = max(1, round(step * units))`` units per step; ``ceil(units / s) + 1`` points (RISE's
    ``n_steps + 1``; the last step may move fewer units).
    """
    per_step = max(1, int(round(step * units)))
    n_steps = math.ceil(units / per_step)
    return [min(i * per_step, units) for i in range(n_steps + 1)]


@torch.no_grad()
def class_probs(model: nn.Module, images: torch.Tensor, target: torch.Tensor,
                checked: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probability of ``target`` and the predicted class, for one chunk. A target in ``checked`` (default
    ``target``; empty: no check, no host read) that the model has no class for is a one-line error: a loop over
    chunks checks all its targets with the first chunk, so that it reads ``max`` back once, not per chunk."""
    logits = model(images)
    checked = target if checked is None else checked
    if checked.numel() and int(checked.max()) >= logits.shape[-1]:
        raise XattrError(
            f"target {int(checked.max())} out of range for a model with {logits.shape[-1]} classes; "
            f"use class indices in [0, {logits.shape[-1] - 1}]"
        )
    probs = logits.float().softmax(dim=-1)
    return probs.gather(1, target.view(-1, 1)).squeeze(1), logits.argmax(dim=-1)


@torch.no_grad()
def perturbation_probs(
    model: nn.Module,
    start: torch.Tensor,
    finish: torch.Tensor,
    rank: torch.Tensor,
    counts: torch.Tensor,
    target: torch.Tensor,
    max_batch: int = 16,
) -> torch.Tensor:
    """Target probability of ``where(rank < counts[b, t], finish, start)`` for every image ``b`` and point ``t``.

    ``start``/``finish`` ``[B,3,H,W]``, ``rank`` ``[B,C,H,W]`` (C = 1 or 3), ``counts`` ``[B,T]`` (or ``[T]``).
    Returns ``[B,T]`` float32. The ``B*T`` images are built and evaluated ``max_batch`` at a time.
    """
    batch = start.shape[0]
    counts = torch.as_tensor(counts, device=start.device)
    if counts.dim() == 1:
        counts = counts.expand(batch, -1)
    points = counts.shape[1]
    image_index = torch.arange(batch, device=start.device).repeat_interleave(points)
    count_flat = counts.reshape(-1)
    out = torch.empty(batch * points, dtype=torch.float32, device=start.device)
    with eval_mode(model):
        for lo in range(0, batch * points, max_batch):
            b = image_index[lo : lo + max_batch]
            k = count_flat[lo : lo + max_batch].view(-1, 1, 1, 1)
            images = torch.where(rank[b] < k, finish[b], start[b])
            checked = target if lo == 0 else target[:0]  # every target once, with the first chunk
            out[lo : lo + max_batch] = class_probs(model, images, target[b], checked)[0]
    return out.view(batch, points)


def trapezoid_auc(curve: torch.Tensor) -> torch.Tensor:
    """Trapezoid-rule area under ``curve`` ``[B,T]`` on an evenly spaced x axis over ``[0,1]``."""
    points = curve.shape[-1]
    if points < 2:
        return curve[..., 0].clone()
    return (curve.sum(-1) - 0.5 * (curve[..., 0] + curve[..., -1])) / (points - 1)


def check_max_batch(max_batch: int) -> int:
    if int(max_batch) < 1:
        raise XattrError(f"max_batch={max_batch} must be a positive number of images per forward pass")
    return int(max_batch)


def causal_curves(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target: torch.Tensor,
    *,
    insert: bool,
    step: float,
    substrate: str,
    seed: int,
    max_batch: int,
    blur_kernel: int = BLUR_KERNEL_SIZE,
    blur_sigma: float = BLUR_SIGMA,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Insertion (``insert=True``) or deletion curve ``[B,T]`` and its trapezoid AUC ``[B]``.

    Insertion starts at the substrate and puts the most important units of ``x`` back first; deletion
    starts at ``x`` and replaces the most important units by the substrate first. Point ``t`` has
    ``step_counts(units, step)[t]`` units moved.
    """
    target = validate_inputs(model, x, maps, target)
    rank = rank_units(maps, seed)
    counts = torch.tensor(step_counts(rank[0].numel(), step), device=x.device)
    base = make_substrate(model, x, substrate, seed, blur_kernel, blur_sigma)
    start, finish = (base, x) if insert else (x, base)
    curve = perturbation_probs(model, start, finish, rank, counts, target, max_batch)
    return curve, trapezoid_auc(curve)


class CausalAUC:
    """Shared body of ``Insertion`` and ``Deletion`` (RISE's causal metrics): ``insert`` picks the direction.

    Returns the trapezoid AUC ``[B]``, or ``{'auc': [B], 'curve': [B,T]}`` with ``return_curves=True``.
    """

    insert: bool = True

    def __init__(self, step: float, substrate: str, seed: int, max_batch: int, return_curves: bool,
                 blur_kernel: int = BLUR_KERNEL_SIZE, blur_sigma: float = BLUR_SIGMA):
        self.step = check_fraction("step", step)
        self.substrate = check_choice("substrate", substrate, SUBSTRATES)
        self.blur_kernel = check_blur_kernel(blur_kernel)
        self.blur_sigma = check_blur_sigma(blur_sigma)
        self.seed = int(seed)
        self.max_batch = check_max_batch(max_batch)
        self.return_curves = bool(return_curves)

    def __call__(self, model, x, maps, target, **ground_truth):
        curve, auc = causal_curves(model, x, maps, target, insert=self.insert, step=self.step,
                                   substrate=self.substrate, seed=self.seed, max_batch=self.max_batch,
                                   blur_kernel=self.blur_kernel, blur_sigma=self.blur_sigma)
        return {"auc": auc, "curve": curve} if self.return_curves else auc
