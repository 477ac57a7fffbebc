"""``xattr train task=denoiser``: DiffIB's MMSE eps-denoiser (Algorithm 2).

Loss ``||eps - eps_theta(sqrt(sigmoid(alpha)) x + sqrt(sigmoid(-alpha)) eps, alpha)||^2`` with ``alpha`` drawn per
pixel-channel by :func:`xattr.info.sample_log_snr` (paper: ``N(0, I)``; here by default a wider law that also
covers the low-SNR end of DiffIB's integration path, plus spatially smooth fields). Images are standardised
with the classifier's normalisation ``u = (x - mean) / std`` (``mean``/``std``; ``None``: the ``[0,1]`` pixel
space), the space DiffIB's noise channel works in. Checkpoint
``<cache_dir>/denoisers/<dataset>-<size>-w<width>d<depth><space>.pt`` (``<space>``: see :func:`space_tag`)
holds ``{"model": EMA weights, "config", "meta"}``; ``<...>.partial.pt`` (model, EMA, optimizer, gradient
scaler, step, losses) is written atomically every ``save_every`` steps and resumed from; both plain values, read
weights-only as cache entries (:mod:`xattr.utils.cache`), trained under the entry's lock. Every random draw of a
batch position (image, flip, log-SNR, noise) comes from its own generator seeded by ``(seed, step, position)``
(:func:`~xattr.training._loop.sample_seed`): a resumed run, a CUDA run and a run on several processes
(``torchrun``, :mod:`xattr.training.distributed`) train on the same batches. Hyper-parameters and their
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
from xattr.training import distributed
from xattr.training._loop import (
    ResumableSteps,
    StandardisedSpaceTrainer,
    load_network,
    materialise,
    network_from_state,
    training_split,
    warn_if_other_recipe,
)
from xattr.utils import cache

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

    def draws(self, generators: list[torch.Generator], count: int, shape) -> tuple[torch.Tensor, ...]:
        """The random draws of the batch positions ``generators`` stand for, each from its own generator in this
        order: its image's index in ``[0, count)``, its horizontal flip, its log-SNR field (:func:`sample_log_snr`
        for one image ``[1,C,H,W]``, ``shape = (C,H,W)``: its own shift and smooth-or-white choice), its noise.
        Returns ``index [b]``, ``flip [b]`` (bool), ``alpha [b,C,H,W]``, ``eps [b,C,H,W]`` on the CPU."""
        index, flip, alpha, eps = [], [], [], []
        for generator in generators:
            index.append(torch.randint(0, count, (1,), generator=generator))
            flip.append(torch.rand(1, generator=generator) < 0.5)
            alpha.append(sample_log_snr((1, *shape), mean=self.alpha_mean, scale=self.alpha_scale,
                                        sample_scale=self.alpha_sample_scale, smooth_sigma=self.smooth_sigma,
                                        smooth_fraction=self.smooth_fraction, generator=generator))
            eps.append(torch.randn((1, *shape), generator=generator))
        return torch.cat(index), torch.cat(flip), torch.cat(alpha), torch.cat(eps)

    def fit(self, dataset, *, seed: int = 0, checkpoint: Path | None = None, meta: dict | None = None,
            progress: bool = True, device: str | torch.device = "cpu", precision: str = "fp32") -> Denoiser:
        """Train a :class:`~xattr.nets.unet.Denoiser` on ``dataset`` (items with ``"image"``, or a ``uint8``/float
        tensor ``[N,C,H,W]``) standardised by ``mean``/``std`` (``None``: pixel space) and return its EMA copy in
        eval mode. With ``checkpoint``, resumable.

        The network, its EMA copy and the optimizer live on ``device`` (float32); the rendered images stay on the
        CPU and each step's batch goes to ``device``; the draws are made on the CPU
        (:meth:`~xattr.training._loop.ResumableSteps.generators`), so every device trains on the same numbers.
        The forward pass and loss run under ``precision``'s autocast. Inside a process group
        (:mod:`xattr.training.distributed`) this process computes its share of the global ``batch_size``."""
        steps, lr = self.steps, self.lr
        images = materialise(dataset, self.train_size)
        if images.dim() != 4:
            raise XattrError(f"train_denoiser needs images [N,C,H,W], got shape {tuple(images.shape)}")
        scale = 255.0 if images.dtype == torch.uint8 else 1.0
        standardise = standardiser(self.mean, self.std, images.shape[1])
        net = Denoiser(images.shape[1], self.width, self.depth, seed=seed)
        loop = ResumableSteps(net, steps=steps, batch_size=self.batch_size, lr=lr, ema_decay=self.ema_decay,
                              save_every=self.save_every, seed=seed, checkpoint=checkpoint, what="denoiser",
                              progress=progress, device=device, precision=precision)
        device = loop.device
        for step in loop:
            # cosine decay to 10% of lr, computed from the step so resuming needs no scheduler state
            for group in loop.optimizer.param_groups:
                group["lr"] = lr * (0.55 + 0.45 * torch.cos(torch.tensor(step / max(steps, 1) * torch.pi)).item())
            index, flip, alpha, eps = self.draws(loop.generators(step), len(images), images.shape[1:])
            x = standardise(images[index].to(device).float() / scale)
            x = torch.where(flip.to(device).view(-1, 1, 1, 1), x.flip(-1), x)
            alpha, eps = alpha.to(device), eps.to(device)
            with loop.autocast():
                loss = (loop.model(noise_channel(x, alpha, eps), alpha) - eps).pow(2).mean()
            loop.update(step, loss)
        return loop.finish({**(meta or {}), "steps": steps, "final_loss": loop.losses[-1] if loop.losses else None})

    def run(self, cfg) -> Path:
        """``xattr train task=denoiser``: train on ``cfg.dataset``'s training split on ``cfg.device`` in
        ``cfg.precision``; under torchrun, one share of each batch per process (:mod:`xattr.training.distributed`)."""
        trainer = self.filled()
        train_set, dataset_name, image_size = training_split(cfg)
        path = trainer.checkpoint(cfg.paths.cache_dir, dataset_name, image_size)
        # the cache entry's lock, taken by the main process: a first use elsewhere waits for this training
        with distributed.session(cfg.device) as device, distributed.main_lock(path):
            trainer.fit(train_set, seed=int(cfg.seed), checkpoint=path,
                        meta={"dataset": dataset_name, "image_size": image_size}, device=device,
                        precision=cfg.get("precision", "fp32"))
            if distributed.is_main():
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
        if not path.exists():
            return None
        state = cache.read(path, "denoiser")  # read once: its meta for the check, its weights for the network
        warn_if_other_recipe(path, state, {"steps": trainer.steps}, "denoiser")
        return network_from_state(state, path, Denoiser, "denoiser", device)

    def train(path: Path) -> Denoiser:
        if train_dataset is None:
            raise XattrError(f"no denoiser at {path} and no training set to train one; run "
                             f"`xattr train task=denoiser dataset={dataset_name}`")
        log.warning("no MMSE denoiser for %s at %s: training it now (%d steps, cached for later runs)",
                    dataset_name, path, trainer.steps)
        trainer.fit(train_dataset, seed=seed, checkpoint=path, meta={"dataset": dataset_name, "image_size": image_size},
                    device=device)
        return load(path)

    return cache.load_or_build(trainer.checkpoint(cache_dir, dataset_name, image_size), load, train)


__all__ = ["DenoiserTrainer", "denoiser_path", "train_denoiser", "load_denoiser", "load_or_train_denoiser"]
