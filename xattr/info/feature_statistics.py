"""Per-element feature statistics of a layer over training data (IBA's ``mu, sigma`` and active-neuron mask).

Follows the reference code of Schulz et al. (BioroboticsLab/IBA, ``IBA/pytorch.py``: ``TorchWelfordEstimator``,
``IBA.estimate``). Used by IBA (``xattr.methods.iba``), InputIBA, IBA-ViT / IBA* / CoIBA
(``xattr.methods._token_bottleneck``); the bottleneck maths that consumes them is :mod:`xattr.info.bottleneck`.

API (stable; other methods import it):

- ``WelfordEstimator``: streaming per-element mean / std / non-zero fraction over batches.
- ``feature_statistics(model, layer_name, dataset, ...)``: estimator run over a dataset at a layer,
  cached to ``cache_dir/feature_stats/<cache_key>.pt``; returns ``dict(mean, std, active, ...)``.
- ``resolve_layer(model, name)`` and ``model_fingerprint(model)``: helpers for hooks and cache keys.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.utils import cache
from xattr.utils.hooks import forward_hook
from xattr.utils.io import atomic_torch_save

__all__ = [
    "WelfordEstimator",
    "feature_statistics",
    "stack_images",
    "resolve_layer",
    "model_fingerprint",
]


log = logging.getLogger(__name__)


class WelfordEstimator:
    """Streaming per-element mean and standard deviation (Welford / Chan et al. merge), float64.

    ``update(x)`` takes a batch ``[N, *shape]`` (any trailing shape; fixed after the first call).
    The batch is merged exactly like N sequential Welford updates (parallel form of the algorithm),
    so the result does not depend on how data is split into batches (up to float64 rounding).

    Attributes (tensors of ``shape``, float32 on the device of the data unless noted):
        mean: per-element mean.
        std: per-element unbiased standard deviation (``correction=1``, as IBA's estimator and
            ``torch.std``); ``nan`` with fewer than 2 samples.
        active_fraction: fraction of samples where the element was non-zero.
        n_samples: number of samples seen (int).

    ``active_mask(threshold=0.01)`` is IBA's active-neuron mask: ``active_fraction > threshold``.
    """

    def __init__(self) -> None:
        self.n_samples = 0
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None
        self._nonzero: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge a batch ``x`` of shape ``[N, *shape]`` into the running estimates."""
        if x.dim() < 1 or x.shape[0] == 0:
            return
        x = x.detach().to(torch.float64)
        if self._mean is None:
            self._mean = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
            self._m2 = torch.zeros_like(self._mean)
            self._nonzero = torch.zeros(x.shape[1:], dtype=torch.int64, device=x.device)
        elif x.shape[1:] != self._mean.shape:
            raise XattrError(f"WelfordEstimator got features of shape {tuple(x.shape[1:])} after "
                             f"{tuple(self._mean.shape)}; feed one layer's features per estimator")
        n_b = x.shape[0]
        mean_b = x.mean(dim=0)
        m2_b = ((x - mean_b) ** 2).sum(dim=0)
        n_a = self.n_samples
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean += delta * (n_b / n)
        self._m2 += m2_b + delta**2 * (n_a * n_b / n)
        self._nonzero += (x != 0).sum(dim=0)
        self.n_samples = n

    def _check(self) -> None:
        if self._mean is None:
            raise XattrError("WelfordEstimator has seen no data; call update(features) first")

    @property
    def mean(self) -> torch.Tensor:
        self._check()
        return self._mean.float()

    @property
    def std(self) -> torch.Tensor:
        self._check()
        if self.n_samples < 2:
            return torch.full_like(self._mean, float("nan")).float()
        return torch.sqrt(self._m2 / (self.n_samples - 1)).float()

    @property
    def active_fraction(self) -> torch.Tensor:
        self._check()
        return (self._nonzero.double() / self.n_samples).float()

    def active_mask(self, threshold: float = 0.01) -> torch.Tensor:
        """Bool mask of elements non-zero in more than ``threshold`` of the samples (IBA's default 0.01)."""
        return self.active_fraction > threshold

    def state_dict(self) -> dict:
        self._check()
        return {"n_samples": self.n_samples, "mean": self._mean.cpu(), "m2": self._m2.cpu(),
                "nonzero": self._nonzero.cpu()}


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """Module ``name`` of ``model``: a ``ZooModel`` role/name (relative to ``model.net``) or a dotted path."""
    get_layer = getattr(model, "get_layer", None)
    try:
        if get_layer is not None:
            return get_layer(name)
        return model.get_submodule(name)
    except (KeyError, AttributeError) as error:
        known = ""
        spec = getattr(model, "spec", None)
        if spec is not None:
            known = f" (roles: {', '.join(sorted(spec.layers))})"
        raise XattrError(f"layer {name!r} not found in the model{known}; pass a module name such as "
                         "'features.17' or a role such as 'bottleneck'") from error


def model_fingerprint(model: nn.Module) -> str:
    """Short hash of all parameters and buffers: cache keys change when the weights change."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        digest.update(name.encode())
        data = tensor.detach().cpu().contiguous()
        digest.update(str(tuple(data.shape)).encode())
        digest.update(data.view(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


class _StopForward(Exception):
    """Raised inside a hook to skip the layers after the one being measured."""


def stack_images(samples: list[dict]) -> torch.Tensor:
    """Batch of dict samples as ``[N,C,H,W]``: their ``image`` entries stacked (what the statistics read)."""
    return torch.stack([sample["image"] for sample in samples])


def _images_of(batch) -> torch.Tensor:
    if isinstance(batch, dict):
        return batch["image"]
    if isinstance(batch, (list, tuple)):
        return batch[0]
    return batch


def feature_statistics(model: nn.Module, layer_name: str, dataset, n_samples: int = 10_000,
                       batch_size: int = 32, cache_dir: str | os.PathLike | None = None,
                       cache_key: str | None = None, device: str | torch.device = "cpu",
                       active_threshold: float = 0.01, seed: int = 0, progress: bool = True,
                       collate_fn: Callable[[list], object] | None = None) -> dict:
    """Per-element statistics of the output of ``layer_name`` over ``n_samples`` images of ``dataset``.

    As ``IBA.estimate`` in the reference code: a forward hook feeds the layer's output to a
    ``WelfordEstimator`` and stops the forward pass right after the layer. If ``dataset`` holds more
    than ``n_samples`` items, a random subset (fixed by ``seed``) is used; fewer items use all of them.

    Args:
        model: the classifier (a ``ZooModel`` takes ``[0,1]`` images).
        layer_name: module name or ``ZooModel`` role (``'bottleneck'``).
        dataset: map-style dataset of dicts with ``image`` (or tuples whose first item is the image).
        n_samples: images to use (IBA: 10,000 ImageNet training images).
        cache_dir / cache_key: if both are given, results live in
            ``cache_dir/feature_stats/<cache_key>.pt`` (written atomically, read weights-only, reused when
            ``n_samples`` and ``layer_name`` match, else recomputed and overwritten; a file that does not load is
            an error naming it: delete it). Put a model fingerprint (``model_fingerprint``) in the key.
        active_threshold: IBA's active-neuron threshold on the non-zero fraction.
        collate_fn: how the loader batches samples (only the images are used); default: stack the
            ``image`` entries of dict samples (:func:`stack_images`), torch's default collate for others.

    Returns:
        ``dict(mean, std, active, active_fraction, n_samples, layer)`` with tensors of the feature
        shape (without batch) on ``device``; ``std`` is not floored (methods floor it, e.g. ``min_std``).
    """
    if dataset is None:
        raise XattrError("feature statistics need a training dataset; pass RunContext(train_dataset=...) "
                         "or set the statistics directly")
    estimate = functools.partial(_estimate, model, layer_name, dataset, n_samples, batch_size, device, seed,
                                 progress, collate_fn)
    if cache_dir is None or cache_key is None:
        return _stats_from_state(estimate(), active_threshold, device)

    def load(path: Path) -> dict | None:  # a cache entry (weights-only; a bad file is one line: delete it)
        if not path.is_file():
            return None
        stored = cache.read(path, "feature statistics")
        with cache.unpacking(path, "feature statistics"):
            if stored["n_requested"] == int(n_samples) and stored["layer"] == layer_name:
                return _stats_from_state(stored, active_threshold, device)
        return None  # statistics of another n_samples or layer: recomputed and overwritten

    def build(path: Path) -> dict:
        log.info("estimating the feature statistics of %s on %d images (cached at %s)", layer_name,
                 min(int(n_samples), len(dataset)), path)
        state = estimate()
        atomic_torch_save(path, state)
        return _stats_from_state(state, active_threshold, device)

    return cache.load_or_build(Path(cache_dir) / "feature_stats" / f"{cache_key}.pt", load, build)


def _estimate(model: nn.Module, layer_name: str, dataset, n_samples: int, batch_size: int, device, seed: int,
              progress: bool, collate_fn) -> dict:
    """The estimator's state over ``n_samples`` images of ``dataset`` at ``layer_name`` (what the cache holds)."""
    n_total = len(dataset)
    if n_total == 0:
        raise XattrError("feature statistics need a non-empty training dataset")
    n_use = min(int(n_samples), n_total)
    if n_use < 2:
        raise XattrError(f"feature statistics need at least 2 images, got n_samples={n_samples}; increase it")
    if n_use < n_total:
        generator = torch.Generator().manual_seed(int(seed))
        indices = torch.randperm(n_total, generator=generator)[:n_use].sort().values.tolist()
    else:
        indices = list(range(n_total))
    subset = torch.utils.data.Subset(dataset, indices)
    if collate_fn is None and isinstance(dataset[indices[0]], dict):
        collate_fn = stack_images
    loader = torch.utils.data.DataLoader(subset, batch_size=int(batch_size), shuffle=False,
                                         collate_fn=collate_fn)
    layer = resolve_layer(model, layer_name)
    estimator = WelfordEstimator()

    def hook(_module, _inputs, output):
        estimator.update(output)
        raise _StopForward

    from tqdm.auto import tqdm

    bar = tqdm(total=n_use, desc=f"feature stats {layer_name}", leave=False,
               disable=not progress or None)
    try:
        with forward_hook(layer, hook), torch.no_grad():
            for batch in loader:
                images = _images_of(batch).to(device)
                with contextlib.suppress(_StopForward):
                    model(images)
                bar.update(images.shape[0])
    finally:
        bar.close()
    if estimator.n_samples == 0:
        raise XattrError(f"layer {layer_name!r} was never called in the forward pass; pick another layer")
    state = estimator.state_dict()
    state.update({"n_requested": int(n_samples), "layer": layer_name})
    return state


def _stats_from_state(state: dict, active_threshold: float, device) -> dict:
    n = int(state["n_samples"])
    mean = state["mean"].float()
    std = torch.sqrt(state["m2"] / max(n - 1, 1)).float()
    fraction = (state["nonzero"].double() / n).float()
    return {"mean": mean.to(device), "std": std.to(device), "active": (fraction > active_threshold).to(device),
            "active_fraction": fraction.to(device), "n_samples": n, "layer": state["layer"]}
