"""``xattr train task=alpha_unet``: DiffIB's amortized alpha-U-Net (Algorithm 1 over a training split).

One U-Net ``x -> alpha`` trained for a fixed classifier with ``CE(f(z), y) + beta * mean(alpha)``,
``z = sqrt(sigmoid(alpha)) x + sqrt(sigmoid(-alpha)) eps`` with ``x`` standardised by the classifier's
normalisation (``mean``/``std``; ``None``: pixel space); afterwards attribution is one forward pass.
Checkpoint ``<cache_dir>/alpha_unets/<model>-<dataset>-<size>-b<beta>-w<width>d<depth><space>.pt`` holds
``{"model": EMA weights, "config", "meta"}``; ``<...>.partial.pt`` (model, EMA, optimizer, gradient scaler,
step, losses) is written atomically every ``save_every`` steps and resumed from; both plain values, read
weights-only as cache entries (:mod:`xattr.utils.cache`), trained under the entry's lock. Every random draw of a
batch position (image, noise) comes from its own generator seeded by ``(seed, step, position)``
(:func:`~xattr.training._loop.sample_seed`): a resumed run, a CUDA run and a run on several processes
(``torchrun``, :mod:`xattr.training.distributed`) train on the same batches. Hyper-parameters and their defaults:
``conf/task/alpha_unet.yaml`` (:class:`AlphaUNetTrainer`). The network itself: :mod:`xattr.nets.alpha_unet`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from xattr.data import BUILTIN_DATASETS
from xattr.errors import XattrError
from xattr.info import noise_channel
from xattr.models import OFFLINE_MODELS
from xattr.models.spec import OnStandardised
from xattr.models.standardise import space_constants, space_tag
from xattr.nets.alpha_unet import AlphaUNet
from xattr.training import distributed
from xattr.training._loop import (
    ResumableSteps,
    StandardisedSpaceTrainer,
    load_network,
    materialise,
    training_split,
)
from xattr.utils import cache
from xattr.utils.hooks import eval_mode, frozen

log = logging.getLogger(__name__)


def alpha_unet_path(cache_dir: str | Path, model_name: str, dataset_name: str, image_size: int, beta: float,
                    width: int, depth: int, mean=None, std=None) -> Path:
    return (Path(cache_dir) / "alpha_unets"
            / f"{model_name}-{dataset_name}-{image_size}-b{beta:g}-w{width}d{depth}{space_tag(mean, std)}.pt")


@dataclass(kw_only=True)
class AlphaUNetTrainer(StandardisedSpaceTrainer):
    """``_target_`` of ``conf/task/alpha_unet.yaml``: DiffIB's amortized alpha-U-Net (Algorithm 1 over the training
    split) for one classifier. Keys: ``beta``, ``alpha_init``, ``alpha_range`` and the base class's."""

    task = "alpha_unet"

    beta: float
    alpha_init: float
    alpha_range: list[float] | None

    def checkpoint(self, cache_dir: str | Path, model_name: str, dataset_name: str, image_size: int) -> Path:
        return alpha_unet_path(cache_dir, model_name, dataset_name, image_size, self.beta, self.width, self.depth,
                               self.mean, self.std)

    def draws(self, generators: list[torch.Generator], count: int, shape) -> tuple[torch.Tensor, torch.Tensor]:
        """The random draws of the batch positions ``generators`` stand for, each from its own generator in this
        order: its image's index in ``[0, count)``, its noise ``eps`` ``[1,C,H,W]`` (``shape = (C,H,W)``).
        Returns ``index [b]`` and ``eps [b,C,H,W]`` on the CPU."""
        index, eps = [], []
        for generator in generators:
            index.append(torch.randint(0, count, (1,), generator=generator))
            eps.append(torch.randn((1, *shape), generator=generator))
        return torch.cat(index), torch.cat(eps)

    def fit(self, model: torch.nn.Module, dataset, *, seed: int = 0, checkpoint: Path | None = None,
            meta: dict | None = None, progress: bool = True, device: str | torch.device | None = None,
            precision: str = "fp32") -> AlphaUNet:
        """Train an amortized alpha-U-Net for ``model`` on ``dataset`` (items with ``image`` and ``label``);
        returns the EMA copy in eval mode. The U-Net maps standardised images ``(x - mean) / std`` to alpha (see
        module doc). The classifier is left unchanged (eval mode, frozen).

        ``device`` (``None``: the classifier's) must be the classifier's; the U-Net, its EMA copy and the
        optimizer live there (float32), the rendered images stay on the CPU and each step's batch goes there; the
        draws are made on the CPU, so every device trains on the same numbers. The forward pass and loss run under
        ``precision``'s autocast. Inside a process group (:mod:`xattr.training.distributed`) this process computes
        its share of the global ``batch_size``."""
        steps, beta = self.steps, self.beta
        device = classifier_device(model, device)
        images, labels = materialise(dataset, self.train_size, with_labels=True)
        if labels is None or (labels < 0).any():
            raise XattrError("train_alpha_unet needs labelled images (dataset items with 'label')")
        channels = images.shape[1]
        classifier = OnStandardised(model, *space_constants(self.mean, self.std, channels))
        net = AlphaUNet(channels, channels, self.width, self.depth, alpha_init=self.alpha_init,
                        alpha_range=self.alpha_range, seed=seed)
        loop = ResumableSteps(net, steps=steps, batch_size=self.batch_size, lr=self.lr, ema_decay=self.ema_decay,
                              save_every=self.save_every, seed=seed, checkpoint=checkpoint, what="alpha-U-Net",
                              progress=progress, device=device, precision=precision)
        with eval_mode(classifier), frozen(classifier):
            for step in loop:
                index, eps = self.draws(loop.generators(step), len(images), images.shape[1:])
                x = classifier.standardise((images[index].float() / 255).to(device))
                y, eps = labels[index].to(device), eps.to(device)
                with loop.autocast():
                    alpha = loop.model(x)
                    loss = F.cross_entropy(classifier(noise_channel(x, alpha, eps)), y) + beta * alpha.mean()
                loop.update(step, loss, alpha=alpha.mean())
        return loop.finish({**(meta or {}), "steps": steps, "beta": beta})

    def run(self, cfg) -> Path:
        """``xattr train task=alpha_unet``: for the classifier ``cfg.model`` (trained here if it is an offline
        model without a checkpoint yet; else as the model config builds it), on ``cfg.device`` in
        ``cfg.precision``; under torchrun, one share of each batch per process (:mod:`xattr.training.distributed`)."""
        trainer = self.filled()
        train_set, dataset_name, image_size = training_split(cfg)
        model_name = cfg.model.name
        path = trainer.checkpoint(cfg.paths.cache_dir, model_name, dataset_name, image_size)
        with distributed.session(cfg.device) as device:
            model = run_classifier(cfg, train_set, dataset_name, image_size, device)
            # the cache entry's lock, taken by the main process: a first use elsewhere waits for this training
            with distributed.main_lock(path):
                trainer.fit(model, train_set, seed=int(cfg.seed), checkpoint=path,
                            meta={"model": model_name, "dataset": dataset_name, "image_size": image_size},
                            device=device, precision=cfg.get("precision", "fp32"))
            if distributed.is_main():
                print(f"alpha-U-Net for {model_name} on {dataset_name}: checkpoint {path}")
        return path


def classifier_device(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    """The device of ``model``'s parameters, which ``device`` (``None``: that one) must be (one line otherwise)."""
    own, wanted = next(model.parameters()).device, None if device is None else torch.device(device)
    if wanted is not None and (wanted.type != own.type or wanted.index not in (None, own.index)):
        raise XattrError(f"device={device} but the classifier is on {own}; move it with model.to({str(device)!r}) "
                         f"or pass device={own}")
    return own


def run_classifier(cfg, train_set, dataset_name: str, image_size: int, device: torch.device) -> torch.nn.Module:
    """The classifier of ``xattr train task=alpha_unet`` on ``device``: the cached one of an offline model on a
    built-in dataset (trained first if missing; a bad cache entry stops here), else as ``cfg.model`` builds it."""
    from hydra.utils import instantiate

    from xattr.training.classifier import load_trained_classifier

    model_name = cfg.model.name
    if model_name in OFFLINE_MODELS and dataset_name in BUILTIN_DATASETS:
        return load_trained_classifier(model_name, dataset_name, image_size, cache_dir=cfg.paths.cache_dir,
                                       device=device, seed=int(cfg.seed))
    return instantiate(cfg.model, num_classes=train_set.num_classes).to(device).eval()


def train_alpha_unet(model: torch.nn.Module, dataset, *, seed: int = 0, checkpoint: Path | None = None,
                     meta: dict | None = None, progress: bool = True, **hparams) -> AlphaUNet:
    """:meth:`AlphaUNetTrainer.fit` with ``conf/task/alpha_unet.yaml``'s hyper-parameters, ``hparams`` replacing
    some."""
    return AlphaUNetTrainer.from_conf(**hparams).fit(model, dataset, seed=seed, checkpoint=checkpoint, meta=meta,
                                                     progress=progress)


def load_alpha_unet(path: str | Path, device: str = "cpu") -> AlphaUNet:
    """A trained :class:`AlphaUNet` (EMA weights, eval mode) from ``path``."""
    return load_network(path, AlphaUNet, "alpha_unet", device)


def load_or_train_alpha_unet(model, train_dataset, cache_dir: str | Path, model_name: str, dataset_name: str,
                             image_size: int, *, seed: int = 0, device: str = "cpu", **hparams) -> AlphaUNet:
    """Load the cached amortized alpha-U-Net for (model, dataset, beta, width, depth); train it if missing, once
    across processes (:func:`xattr.utils.cache.load_or_build`: the others wait for it, then load it).
    ``hparams`` replace values of ``conf/task/alpha_unet.yaml``; ``None`` keeps the file's value (but for mean/std)."""
    trainer = AlphaUNetTrainer.from_conf(**hparams).filled()

    def load(path: Path) -> AlphaUNet | None:
        return load_alpha_unet(path, device) if path.exists() else None

    def train(path: Path) -> AlphaUNet:
        if train_dataset is None:
            raise XattrError(f"no alpha-U-Net at {path} and no training set to train one; run "
                             f"`xattr train task=alpha_unet model={model_name} dataset={dataset_name}`")
        log.warning("no amortized alpha-U-Net for %s on %s at %s: training it now (%d steps, cached)",
                    model_name, dataset_name, path, trainer.steps)
        trainer.fit(model, train_dataset, seed=seed, checkpoint=path,
                    meta={"model": model_name, "dataset": dataset_name, "image_size": image_size})
        return load(path)

    return cache.load_or_build(trainer.checkpoint(cache_dir, model_name, dataset_name, image_size), load, train)


__all__ = ["AlphaUNetTrainer", "alpha_unet_path", "train_alpha_unet", "load_alpha_unet", "load_or_train_alpha_unet"]
