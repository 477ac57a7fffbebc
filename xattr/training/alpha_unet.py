"""``xattr train task=alpha_unet``: DiffIB's amortized alpha-U-Net (Algorithm 1 over a training split).

One U-Net ``x -> alpha`` trained for a fixed classifier with ``CE(f(z), y) + beta * mean(alpha)``,
``z = sqrt(sigmoid(alpha)) x + sqrt(sigmoid(-alpha)) eps`` with ``x`` standardised by the classifier's
normalisation (``mean``/``std``; ``None``: pixel space); afterwards attribution is one forward pass.
Checkpoint ``<cache_dir>/alpha_unets/<model>-<dataset>-<size>-b<beta>-w<width>d<depth><space>.pt`` holds
``{"model": EMA weights, "config", "meta"}``; ``<...>.partial.pt`` (model, EMA, optimizer, step, RNG, losses)
is written atomically every ``save_every`` steps and resumed from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from xattr.errors import XattrError
from xattr.info import noise_channel
from xattr.models.spec import IMAGENET_MEAN, IMAGENET_STD, OnStandardised
from xattr.models.standardise import as_list, space_constants, space_tag
from xattr.nets.alpha_unet import AlphaUNet
from xattr.training._loop import (
    EMA,
    load_network,
    materialise,
    partial_path,
    resume_partial,
    save_final,
    save_partial,
)
from xattr.utils.hooks import eval_mode, frozen

log = logging.getLogger(__name__)

#: Defaults (also in conf/task/alpha_unet.yaml).
DEFAULTS = {"steps": 600, "batch_size": 16, "lr": 2e-3, "beta": 0.03, "width": 8, "depth": 3, "alpha_init": 5.0,
            "alpha_range": (-10.0, 10.0), "ema_decay": 0.99, "train_size": 2000, "save_every": 100,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def alpha_unet_path(cache_dir: str | Path, model_name: str, dataset_name: str, image_size: int, beta: float,
                    width: int, depth: int, mean=None, std=None) -> Path:
    return (Path(cache_dir) / "alpha_unets"
            / f"{model_name}-{dataset_name}-{image_size}-b{beta:g}-w{width}d{depth}{space_tag(mean, std)}.pt")


def train_alpha_unet(model: torch.nn.Module, dataset, *, steps: int = DEFAULTS["steps"],
                     batch_size: int = DEFAULTS["batch_size"], lr: float = DEFAULTS["lr"],
                     beta: float = DEFAULTS["beta"], width: int = DEFAULTS["width"], depth: int = DEFAULTS["depth"],
                     alpha_init: float = DEFAULTS["alpha_init"], alpha_range=DEFAULTS["alpha_range"],
                     ema_decay: float = DEFAULTS["ema_decay"],
                     train_size: int | None = DEFAULTS["train_size"], save_every: int = DEFAULTS["save_every"],
                     mean=DEFAULTS["mean"], std=DEFAULTS["std"],
                     seed: int = 0, checkpoint: Path | None = None, meta: dict | None = None,
                     progress: bool = True) -> AlphaUNet:
    """Train an amortized alpha-U-Net for ``model`` on ``dataset`` (items with ``image`` and ``label``);
    returns the EMA copy in eval mode. The U-Net maps standardised images ``(x - mean) / std`` to alpha (see
    module doc). The classifier is left unchanged (eval mode, frozen)."""
    images, labels = materialise(dataset, train_size, with_labels=True)
    if labels is None or (labels < 0).any():
        raise XattrError("train_alpha_unet needs labelled images (dataset items with 'label')")
    channels = images.shape[1]
    classifier = OnStandardised(model, *space_constants(mean, std, channels))
    net = AlphaUNet(channels, channels, width, depth, alpha_init=alpha_init, alpha_range=alpha_range, seed=seed)
    ema = EMA(net, ema_decay)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    partial = partial_path(checkpoint)
    start, losses = resume_partial(partial, net, ema, optimizer, generator, "alpha-U-Net")
    device = next(model.parameters()).device
    net.to(device)
    ema.shadow.to(device)
    bar = tqdm(range(start, steps), desc="train alpha-U-Net", initial=start, total=steps, disable=not progress)
    with eval_mode(classifier), frozen(classifier):
        for step in bar:
            index = torch.randint(0, len(images), (batch_size,), generator=generator)
            x = classifier.standardise((images[index].float() / 255).to(device))
            y = labels[index].to(device)
            alpha = net(x)
            eps = torch.randn(x.shape, generator=generator).to(device)
            loss = F.cross_entropy(classifier(noise_channel(x, alpha, eps)), y) + beta * alpha.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema.update(net)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}", alpha=f"{alpha.mean().item():.2f}")
            if (step + 1) % save_every == 0 or step + 1 == steps:
                save_partial(partial, net, ema, optimizer, generator, step + 1, losses)
    save_final(checkpoint, partial, ema, ema.shadow.config(), {**(meta or {}), "steps": steps, "beta": beta},
               losses, "alpha-U-Net")
    return ema.shadow.eval()


def load_alpha_unet(path: str | Path, device: str = "cpu") -> AlphaUNet:
    """A trained :class:`AlphaUNet` (EMA weights, eval mode) from ``path``."""
    return load_network(path, AlphaUNet, "alpha_unet", device)


def load_or_train_alpha_unet(model, train_dataset, cache_dir: str | Path, model_name: str, dataset_name: str,
                             image_size: int, *, seed: int = 0, device: str = "cpu", **hparams) -> AlphaUNet:
    """Load the cached amortized alpha-U-Net for (model, dataset, beta, width, depth); train it if missing."""
    hp = {**DEFAULTS, **{k: v for k, v in hparams.items() if v is not None or k in ("mean", "std")}}
    path = alpha_unet_path(cache_dir, model_name, dataset_name, image_size, hp["beta"], hp["width"], hp["depth"],
                           hp["mean"], hp["std"])
    if not path.exists():
        if train_dataset is None:
            raise XattrError(f"no alpha-U-Net at {path} and no training set to train one; run "
                             f"`xattr train task=alpha_unet model={model_name} dataset={dataset_name}`")
        log.warning("no amortized alpha-U-Net for %s on %s at %s: training it now (%d steps, cached)",
                    model_name, dataset_name, path, hp["steps"])
        train_alpha_unet(model, train_dataset, seed=seed, checkpoint=path,
                         meta={"model": model_name, "dataset": dataset_name, "image_size": image_size}, **hp)
    return load_alpha_unet(path, device)


def run(cfg) -> Path:
    """Entry point of ``xattr train task=alpha_unet``: needs a trained classifier ``cfg.model``."""
    from hydra.utils import instantiate

    from xattr.training.classifier import load_trained_classifier

    train_set = instantiate(cfg.dataset, split="train", n_samples=None)
    dataset_name = getattr(train_set, "name", "dataset")
    image_size = int(cfg.dataset.get("image_size", 64))
    model_name = cfg.model.name
    try:
        model = load_trained_classifier(model_name, dataset_name, image_size, cache_dir=cfg.paths.cache_dir,
                                        device=cfg.device, seed=int(cfg.seed))
    except XattrError:
        model = instantiate(cfg.model, num_classes=train_set.num_classes).to(cfg.device).eval()
    hp = {**DEFAULTS, **{k: v for k, v in cfg.task.items()
                         if k in DEFAULTS and (v is not None or k in ("mean", "std"))}}
    hp["mean"], hp["std"] = as_list(hp["mean"]), as_list(hp["std"])
    path = alpha_unet_path(cfg.paths.cache_dir, model_name, dataset_name, image_size, hp["beta"], hp["width"],
                           hp["depth"], hp["mean"], hp["std"])
    train_alpha_unet(model, train_set, seed=int(cfg.seed), checkpoint=path,
                     meta={"model": model_name, "dataset": dataset_name, "image_size": image_size}, **hp)
    print(f"alpha-U-Net for {model_name} on {dataset_name}: checkpoint {path}")
    return path


__all__ = ["DEFAULTS", "alpha_unet_path", "train_alpha_unet", "load_alpha_unet", "load_or_train_alpha_unet", "AlphaUNet", "run"]
