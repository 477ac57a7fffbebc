"""``xattr train task=denoiser``: DiffIB's MMSE eps-denoiser (seed 000, Algorithm 2).

Loss ``||eps - eps_theta(sqrt(sigmoid(alpha)) x + sqrt(sigmoid(-alpha)) eps, alpha)||^2`` with ``alpha`` drawn per
pixel-channel by :func:`xattr.info.sample_log_snr` (paper: ``N(0, I)``; here by default a wider law that also
covers the low-SNR end of DiffIB's integration path, plus spatially smooth fields). Images are standardised
with the classifier's normalisation ``u = (x - mean) / std`` (``mean``/``std``; ``None``: the ``[0,1]`` pixel
space), the space DiffIB's noise channel works in. Checkpoint
``<cache_dir>/denoisers/<dataset>-<size>-w<width>d<depth><space>.pt`` (``<space>``: see :func:`space_tag`)
holds ``{"model": EMA weights, "config", "meta"}``; ``<...>.partial.pt`` (model, EMA, optimizer, step, RNG,
losses) is written atomically every ``save_every`` steps and resumed from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from xattr.errors import XattrError
from xattr.info import noise_channel, sample_log_snr
from xattr.models.spec import IMAGENET_MEAN, IMAGENET_STD
from xattr.models.standardise import as_list, space_tag, standardiser
from xattr.nets.unet import Denoiser
from xattr.training._loop import (
    EMA,
    load_network,
    materialise,
    partial_path,
    resume_partial,
    save_final,
    save_partial,
)

log = logging.getLogger(__name__)

#: Defaults (also in conf/task/denoiser.yaml). Sized so `make run` trains it in a few CPU minutes.
DEFAULTS = {"steps": 400, "batch_size": 16, "lr": 2e-3, "width": 16, "depth": 3, "ema_decay": 0.99,
            "alpha_mean": 0.0, "alpha_scale": 3.0, "alpha_sample_scale": 3.0, "smooth_sigma": 4.0,
            "smooth_fraction": 0.5, "train_size": 2000, "save_every": 100,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def denoiser_path(cache_dir: str | Path, dataset_name: str, image_size: int, width: int, depth: int,
                  mean=None, std=None) -> Path:
    return (Path(cache_dir) / "denoisers"
            / f"{dataset_name}-{image_size}-w{width}d{depth}{space_tag(mean, std)}.pt")


def train_denoiser(dataset, *, steps: int = DEFAULTS["steps"], batch_size: int = DEFAULTS["batch_size"],
                   lr: float = DEFAULTS["lr"], width: int = DEFAULTS["width"], depth: int = DEFAULTS["depth"],
                   ema_decay: float = DEFAULTS["ema_decay"], alpha_mean: float = DEFAULTS["alpha_mean"],
                   alpha_scale: float = DEFAULTS["alpha_scale"],
                   alpha_sample_scale: float = DEFAULTS["alpha_sample_scale"],
                   smooth_sigma: float = DEFAULTS["smooth_sigma"], smooth_fraction: float = DEFAULTS["smooth_fraction"],
                   train_size: int | None = DEFAULTS["train_size"], save_every: int = DEFAULTS["save_every"],
                   mean=DEFAULTS["mean"], std=DEFAULTS["std"],
                   seed: int = 0, checkpoint: Path | None = None, meta: dict | None = None,
                   progress: bool = True) -> Denoiser:
    """Train a :class:`~xattr.nets.unet.Denoiser` on ``dataset`` (items with ``"image"``, or a ``uint8``/float
    tensor ``[N,C,H,W]``) standardised by ``mean``/``std`` (``None``: pixel space) and return its EMA copy in
    eval mode. With ``checkpoint``, resumable."""
    images = materialise(dataset, train_size)
    if images.dim() != 4:
        raise XattrError(f"train_denoiser needs images [N,C,H,W], got shape {tuple(images.shape)}")
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    channels = images.shape[1]
    standardise = standardiser(mean, std, channels)
    net = Denoiser(channels, width, depth, seed=seed)
    ema = EMA(net, ema_decay)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    partial = partial_path(checkpoint)
    start, losses = resume_partial(partial, net, ema, optimizer, generator, "denoiser")
    # cosine decay to 10% of lr, computed from the step so resuming needs no scheduler state
    bar = tqdm(range(start, steps), desc="train denoiser", initial=start, total=steps, disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr * (0.55 + 0.45 * torch.cos(torch.tensor(step / max(steps, 1) * torch.pi)).item())
        index = torch.randint(0, len(images), (batch_size,), generator=generator)
        x = standardise(images[index].float() / scale)
        flip = torch.rand(batch_size, generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        alpha = sample_log_snr(x.shape, mean=alpha_mean, scale=alpha_scale, sample_scale=alpha_sample_scale,
                               smooth_sigma=smooth_sigma, smooth_fraction=smooth_fraction, generator=generator)
        eps = torch.randn(x.shape, generator=generator)
        loss = (net(noise_channel(x, alpha, eps), alpha) - eps).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(net)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
        if (step + 1) % save_every == 0 or step + 1 == steps:
            save_partial(partial, net, ema, optimizer, generator, step + 1, losses)
    save_final(checkpoint, partial, ema, net.config(),
               {**(meta or {}), "steps": steps, "final_loss": losses[-1] if losses else None}, losses, "denoiser")
    return ema.shadow.eval()


def load_denoiser(path: str | Path, device: str = "cpu") -> Denoiser:
    """A trained :class:`Denoiser` (EMA weights, eval mode) from ``path``."""
    return load_network(path, Denoiser, "denoiser", device)


def load_or_train_denoiser(train_dataset, cache_dir: str | Path, dataset_name: str, image_size: int, *,
                           seed: int = 0, device: str = "cpu", **hparams) -> Denoiser:
    """Load the cached denoiser for ``dataset_name``; train and cache it first if missing (one log line)."""
    hp = {**DEFAULTS, **{k: v for k, v in hparams.items() if v is not None or k in ("mean", "std")}}
    path = denoiser_path(cache_dir, dataset_name, image_size, hp["width"], hp["depth"], hp["mean"], hp["std"])
    if not path.exists():
        if train_dataset is None:
            raise XattrError(f"no denoiser at {path} and no training set to train one; run "
                             f"`xattr train task=denoiser dataset={dataset_name}`")
        log.warning("no MMSE denoiser for %s at %s: training it now (%d steps, cached for later runs)",
                    dataset_name, path, hp["steps"])
        train_denoiser(train_dataset, seed=seed, checkpoint=path,
                       meta={"dataset": dataset_name, "image_size": image_size}, **hp)
    return load_denoiser(path, device)


def run(cfg) -> Path:
    """Entry point of ``xattr train task=denoiser``: train on ``cfg.dataset``'s training split."""
    from hydra.utils import instantiate

    train_set = instantiate(cfg.dataset, split="train", n_samples=None)
    dataset_name = getattr(train_set, "name", "dataset")
    image_size = int(cfg.dataset.get("image_size", 64))
    hp = {**DEFAULTS, **{k: v for k, v in cfg.task.items()
                         if k in DEFAULTS and (v is not None or k in ("mean", "std"))}}
    hp["mean"], hp["std"] = as_list(hp["mean"]), as_list(hp["std"])
    path = denoiser_path(cfg.paths.cache_dir, dataset_name, image_size, hp["width"], hp["depth"], hp["mean"],
                         hp["std"])
    train_denoiser(train_set, seed=int(cfg.seed), checkpoint=path,
                   meta={"dataset": dataset_name, "image_size": image_size}, **hp)
    print(f"denoiser for {dataset_name}: checkpoint {path}")
    return path


__all__ = ["DEFAULTS", "denoiser_path", "train_denoiser", "load_denoiser", "load_or_train_denoiser", "run"]
