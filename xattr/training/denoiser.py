"""``xattr train task=denoiser``: DiffIB's MMSE eps-denoiser (Algorithm 2).

Loss ``||eps - eps_theta(sqrt(sigmoid(alpha)) x + sqrt(sigmoid(-alpha)) eps, alpha)||^2`` with ``alpha`` drawn per
pixel-channel by :func:`xattr.info.sample_log_snr` (paper: ``N(0, I)``; here by default a wider law that also
covers the low-SNR end of DiffIB's integration path, plus spatially smooth fields). Images are standardised
with the classifier's normalisation ``u = (x - mean) / std`` (``mean``/``std``; ``None``: the ``[0,1]`` pixel
space), the space DiffIB's noise channel works in. Checkpoint
``<cache_dir>/denoisers/<dataset>-<size>-w<width>d<depth><space>.pt`` (``<space>``: see :func:`space_tag`)
holds ``{"model": EMA weights, "config", "meta"}``; ``<...>.partial.pt`` (model, EMA, optimizer, step, RNG,
losses) is written atomically every ``save_every`` steps and resumed from; both plain values, read weights-only
as cache entries (:mod:`xattr.utils.cache`), trained under the entry's lock. Hyper-parameters and their
defaults: ``conf/task/denoiser.yaml`` (:class:`DenoiserTrainer`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from xattr.errors import XattrError
from xattr.info import noise_channel, sample_log_snr
from xattr.models.standardise import space_tag, standardiser
from xattr.nets.unet import Denoiser
from xattr.training._loop import (
    ResumableSteps,
    StandardisedSpaceTrainer,
    load_network,
    materialise,
    training_split,
)
from xattr.utils import cache
from xattr.utils.locks import waiting

log = logging.getLogger(__name__)


def denoiser_path(cache_dir: str | Path, dataset_name: str, image_size: int, width: int, depth: int,
                  mean=None, std=None) -> Path:
    return (Path(cache_dir) / "denoisers"
            / f"{dataset_name}-{image_size}-w{width}d{depth}{space_tag(mean, std)}.pt")


@dataclass(kw_only=True)
class DenoiserTrainer(StandardisedSpaceTrainer):
    """``_target_`` of ``conf/task/denoiser.yaml``: DiffIB's MMSE eps-denoiser (Algorithm 2). Keys: the log-SNR
    law of the training noise (``alpha_*``, ``smooth_*``) and the base class's."""

    task = "denoiser"

    alpha_mean: float
    alpha_scale: float
    alpha_sample_scale: float
    smooth_sigma: float
    smooth_fraction: float

    def checkpoint(self, cache_dir: str | Path, dataset_name: str, image_size: int) -> Path:
        return denoiser_path(cache_dir, dataset_name, image_size, self.width, self.depth, self.mean, self.std)

    def fit(self, dataset, *, seed: int = 0, checkpoint: Path | None = None, meta: dict | None = None,
            progress: bool = True) -> Denoiser:
        """Train a :class:`~xattr.nets.unet.Denoiser` on ``dataset`` (items with ``"image"``, or a ``uint8``/float
        tensor ``[N,C,H,W]``) standardised by ``mean``/``std`` (``None``: pixel space) and return its EMA copy in
        eval mode. With ``checkpoint``, resumable."""
        steps, batch_size, lr = self.steps, self.batch_size, self.lr
        images = materialise(dataset, self.train_size)
        if images.dim() != 4:
            raise XattrError(f"train_denoiser needs images [N,C,H,W], got shape {tuple(images.shape)}")
        scale = 255.0 if images.dtype == torch.uint8 else 1.0
        channels = images.shape[1]
        standardise = standardiser(self.mean, self.std, channels)
        net = Denoiser(channels, self.width, self.depth, seed=seed)
        loop = ResumableSteps(net, steps=steps, lr=lr, ema_decay=self.ema_decay, save_every=self.save_every,
                              seed=seed, checkpoint=checkpoint, what="denoiser", progress=progress)
        generator = loop.generator
        for step in loop:
            # cosine decay to 10% of lr, computed from the step so resuming needs no scheduler state
            for group in loop.optimizer.param_groups:
                group["lr"] = lr * (0.55 + 0.45 * torch.cos(torch.tensor(step / max(steps, 1) * torch.pi)).item())
            index = torch.randint(0, len(images), (batch_size,), generator=generator)
            x = standardise(images[index].float() / scale)
            flip = torch.rand(batch_size, generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            alpha = sample_log_snr(x.shape, mean=self.alpha_mean, scale=self.alpha_scale,
                                   sample_scale=self.alpha_sample_scale, smooth_sigma=self.smooth_sigma,
                                   smooth_fraction=self.smooth_fraction, generator=generator)
            eps = torch.randn(x.shape, generator=generator)
            loop.update(step, (net(noise_channel(x, alpha, eps), alpha) - eps).pow(2).mean())
        return loop.finish({**(meta or {}), "steps": steps, "final_loss": loop.losses[-1] if loop.losses else None})

    def run(self, cfg) -> Path:
        """``xattr train task=denoiser``: train on ``cfg.dataset``'s training split."""
        trainer = self.filled()
        train_set, dataset_name, image_size = training_split(cfg)
        path = trainer.checkpoint(cfg.paths.cache_dir, dataset_name, image_size)
        with waiting(path):  # the cache entry's lock: a first use elsewhere waits for this training
            trainer.fit(train_set, seed=int(cfg.seed), checkpoint=path,
                        meta={"dataset": dataset_name, "image_size": image_size})
        print(f"denoiser for {dataset_name}: checkpoint {path}")
        return path


def train_denoiser(dataset, *, seed: int = 0, checkpoint: Path | None = None, meta: dict | None = None,
                   progress: bool = True, **hparams) -> Denoiser:
    """:meth:`DenoiserTrainer.fit` with ``conf/task/denoiser.yaml``'s hyper-parameters, ``hparams`` replacing some."""
    return DenoiserTrainer.from_conf(**hparams).fit(dataset, seed=seed, checkpoint=checkpoint, meta=meta,
                                                    progress=progress)


def load_denoiser(path: str | Path, device: str = "cpu") -> Denoiser:
    """A trained :class:`Denoiser` (EMA weights, eval mode) from ``path``."""
    return load_network(path, Denoiser, "denoiser", device)


def load_or_train_denoiser(train_dataset, cache_dir: str | Path, dataset_name: str, image_size: int, *,
                           seed: int = 0, device: str = "cpu", **hparams) -> Denoiser:
    """Load the cached denoiser for ``dataset_name``; train and cache it first if missing (one log line), once across
    processes (:func:`xattr.utils.cache.load_or_build`: the others wait for it, then load it).
    ``hparams`` replace values of ``conf/task/denoiser.yaml``; ``None`` keeps the file's value (but for mean/std)."""
    trainer = DenoiserTrainer.from_conf(**hparams).filled()

    def load(path: Path) -> Denoiser | None:
        return load_denoiser(path, device) if path.exists() else None

    def train(path: Path) -> Denoiser:
        if train_dataset is None:
            raise XattrError(f"no denoiser at {path} and no training set to train one; run "
                             f"`xattr train task=denoiser dataset={dataset_name}`")
        log.warning("no MMSE denoiser for %s at %s: training it now (%d steps, cached for later runs)",
                    dataset_name, path, trainer.steps)
        trainer.fit(train_dataset, seed=seed, checkpoint=path, meta={"dataset": dataset_name, "image_size": image_size})
        return load(path)

    return cache.load_or_build(trainer.checkpoint(cache_dir, dataset_name, image_size), load, train)


__all__ = ["DenoiserTrainer", "denoiser_path", "train_denoiser", "load_denoiser", "load_or_train_denoiser"]
