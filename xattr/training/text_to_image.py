"""``xattr train task=t2i dataset=shapes_captions``: the pixel-space ``tiny_t2i`` text-to-image model.

ε-prediction in the VP log-SNR parameterisation of :func:`xattr.info.noise_channel`: per image a log-SNR
``α = loc + scale·logit(u)``, ``u ~ U(0,1)`` (a logistic, Kong et al. 2023; ``logsnr_loc`` / ``logsnr_scale``),
clipped to the scheduler's trained range (so the timestep the UNet is told, through the very mapping of
:meth:`xattr.models.TextToImageModel.eps`, always matches the noise), ``z = sqrt(σ(α))(2x−1) + sqrt(σ(−α))ε``,
loss ``‖ε − ε̂(z, α, c)‖²``. The caption is replaced by ``""`` with probability ``caption_dropout`` (10%), so
``""`` gives the unconditional denoiser. The UNet and the CLIP text model are trained together with Adam and
EMA weights (:class:`~xattr.training._loop.ResumableSteps`: per-sample seeded draws, resumable from
``<folder>.partial.pt`` every ``save_every`` steps, tqdm).

The cache entry is a diffusers pipeline folder ``<cache_dir>/t2i/tiny_t2i-<dataset>-<size>/`` (EMA weights,
written atomically, read by :func:`xattr.models.load_pipeline_folder` like Stable Diffusion), beside it
``<...>.loss.png`` and ``<...>.samples.png`` (a deterministic DDIM sampler, :func:`sample_images`, on
``sample_captions``). First use trains under the entry's lock (:func:`load_or_train_t2i`).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.info import noise_channel
from xattr.models.text_to_image import TextToImageModel
from xattr.models.tiny_t2i import build_tiny_t2i_pipeline, save_pipeline_folder
from xattr.training import distributed
from xattr.training._loop import ResumableSteps, Trainer, materialise, save_loss_curve
from xattr.utils import cache
from xattr.utils.io import atomic_savefig

log = logging.getLogger(__name__)


def t2i_folder(cache_dir: str | Path, dataset_name: str, image_size: int) -> Path:
    """The cache entry (a pipeline folder) of ``tiny_t2i`` trained on ``dataset_name`` at ``image_size``."""
    return Path(cache_dir) / "t2i" / f"tiny_t2i-{dataset_name}-{image_size}"


class _Trained(nn.Module):
    """The trained parts of the pipeline as one module (for the optimizer, EMA and the resumable state)."""

    def __init__(self, unet: nn.Module, text_encoder: nn.Module):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder


@torch.no_grad()
def sample_images(model: TextToImageModel, prompts: list[str], *, steps: int = 50,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Deterministic DDIM (η = 0) on the VP channel, from pure noise at the lowest trained log-SNR to the
    highest, ``steps`` log-SNRs evenly spaced: ``x̂ = (z − sqrt(σ(−α))ε̂)/sqrt(σ(α))`` clipped to ``[−1,1]``, then
    ``z ← sqrt(σ(α'))x̂ + sqrt(σ(−α'))ε̂``. Returns ``decode_latent(x̂)`` float32 ``[B,3,H,W]`` in ``[0,1]``."""
    low, high = model.logsnr_range
    alphas = torch.linspace(low, high, steps + 1, dtype=torch.float64)
    c = model.encode_prompt(list(prompts))
    z = torch.randn((len(prompts), *model.latent_shape), generator=generator).to(model.device)
    x = z
    for a, a_next in zip(alphas[:-1].tolist(), alphas[1:].tolist(), strict=True):
        alpha = torch.full((len(prompts),), a, device=z.device)
        eps = model.eps(z, alpha, c)
        s, s_minus = torch.sigmoid(torch.tensor(a)), torch.sigmoid(torch.tensor(-a))
        x = (z - s_minus.sqrt() * eps) / s.sqrt()
        x = x.clamp(-1, 1) if model.vae is None else x  # pixel space: the image lies in [-1, 1]
        z = torch.sigmoid(torch.tensor(a_next)).sqrt() * x + torch.sigmoid(torch.tensor(-a_next)).sqrt() * eps
    return model.decode_latent(x)


def save_samples(path: Path, model: TextToImageModel, prompts: list[str], *, steps: int, seed: int = 0,
                 per_prompt: int = 2) -> None:
    """A PNG of ``per_prompt`` samples for each of ``prompts`` (one row per prompt, the prompt as its title)."""
    from xattr.utils.figures import agg_figure

    generator = torch.Generator().manual_seed(seed)
    images = sample_images(model, [p for p in prompts for _ in range(per_prompt)], steps=steps, generator=generator)
    fig = agg_figure(figsize=(1.6 * per_prompt + 2.5, 1.4 * len(prompts)))
    axes = fig.subplots(len(prompts), per_prompt, squeeze=False)
    for i, prompt in enumerate(prompts):
        for j in range(per_prompt):
            ax = axes[i][j]
            ax.imshow(images[i * per_prompt + j].permute(1, 2, 0).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i][0].set_ylabel(prompt or '""', rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    atomic_savefig(path, fig)


def training_captions(dataset, limit: int | None) -> tuple[torch.Tensor, list[str]]:
    """``uint8 [N,3,H,W]`` images and their ``N`` captions (items with ``image`` and ``caption``)."""
    count = len(dataset) if limit is None else min(int(limit), len(dataset))
    captions = []
    for index in range(count):
        caption = dataset[index].get("caption")
        if not isinstance(caption, str):
            raise XattrError(f"task=t2i needs a captioned dataset (samples with 'caption'); item {index} has none: "
                             "use dataset=shapes_captions")
        captions.append(caption)
    return materialise(dataset, count, desc="render captions"), captions


def vocabulary_of(dataset, captions: list[str]) -> list[str]:
    """The words of ``captions`` together with the dataset module's ``VOCABULARY`` where it declares one."""
    declared = getattr(sys.modules.get(type(dataset).__module__), "VOCABULARY", ())
    return sorted({word for caption in captions for word in caption.lower().split()} | set(declared))


@dataclass(kw_only=True)
class TextToImageTrainer(Trainer):
    """``_target_`` of ``conf/task/t2i.yaml`` (its keys and defaults are there)."""

    task = "t2i"

    steps: int
    batch_size: int
    lr: float
    ema_decay: float
    train_size: int | None
    save_every: int
    logsnr_loc: float
    logsnr_scale: float
    caption_dropout: float
    sample_captions: list[str]
    sample_steps: int

    def fit(self, dataset, *, seed: int = 0, folder: Path | None = None, meta: dict | None = None,
            progress: bool = True, device: str | torch.device = "cpu", precision: str = "fp32") -> TextToImageModel:
        """Train ``tiny_t2i`` on ``dataset`` (items with ``image`` ``[3,H,W]`` in ``[0,1]`` and ``caption``); with
        ``folder``, resumable and saved there as a pipeline folder (+ loss and samples PNGs). Returns the EMA
        model (eval mode)."""
        images, captions = training_captions(dataset, self.train_size)
        size = int(images.shape[-1])
        pipe = build_tiny_t2i_pipeline(vocabulary_of(dataset, captions), image_size=size, seed=seed)
        model = TextToImageModel(pipe, name="tiny_t2i")
        nets = _Trained(pipe.unet, pipe.text_encoder).train().requires_grad_(True)
        checkpoint = folder.with_name(folder.name + ".pt") if folder is not None else None  # for .partial.pt only
        loop = ResumableSteps(nets, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                              ema_decay=self.ema_decay, save_every=self.save_every, seed=seed, checkpoint=checkpoint,
                              what="t2i", progress=progress, device=device, precision=precision)
        device = loop.device
        low, high = model.logsnr_range
        for step in loop:
            index, alpha, eps, drop = [], [], [], []
            for generator in loop.generators(step):
                index.append(int(torch.randint(0, len(images), (1,), generator=generator)))
                u = torch.rand(1, generator=generator, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
                alpha.append((self.logsnr_loc + self.logsnr_scale * torch.logit(u)).clamp(low, high))
                eps.append(torch.randn((1, *images.shape[1:]), generator=generator))
                drop.append(bool(torch.rand(1, generator=generator) < self.caption_dropout))
            x = images[index].to(device).float() / 255 * 2 - 1
            alpha, eps = torch.cat(alpha).float().to(device), torch.cat(eps).to(device)
            prompts = ["" if dropped else captions[i] for i, dropped in zip(index, drop, strict=True)]
            with loop.autocast():
                c = model.pipeline.encode_prompt(prompts, device, 1, False)[0]
                z = noise_channel(x, alpha.view(-1, 1, 1, 1), eps)
                loss = (model.unet(z, model.timestep(alpha).to(device), encoder_hidden_states=c,
                                   return_dict=False)[0] - eps).pow(2).mean()
            loop.update(step, loss)
        ema = loop.ema.shadow
        trained = TextToImageModel(type(pipe)(vae=None, text_encoder=ema.text_encoder, tokenizer=pipe.tokenizer,
                                              unet=ema.unet, scheduler=pipe.scheduler, safety_checker=None,
                                              feature_extractor=None, requires_safety_checker=False),
                                   name="tiny_t2i")
        if folder is not None and distributed.is_main():
            save_pipeline_folder(trained.pipeline, folder)
            save_loss_curve(folder.with_name(folder.name + ".loss.png"), loop.losses, f"t2i {folder.name}")
            save_samples(folder.with_name(folder.name + ".samples.png"), trained, list(self.sample_captions),
                         steps=self.sample_steps, seed=seed)
            if loop.partial is not None and loop.partial.exists():
                loop.partial.unlink()
            log.info("tiny_t2i %s: %d steps, final loss %.4f", folder, self.steps,
                     loop.losses[-1] if loop.losses else float("nan"))
        distributed.barrier()
        return trained.eval()

    def run(self, cfg) -> Path:
        """``xattr train task=t2i dataset=shapes_captions``: train on the dataset's training split (one sample
        per image: ``words=caption`` where the dataset has that option)."""
        from hydra.utils import instantiate

        trainer = self.filled()
        extra = {"words": "caption"} if "words" in cfg.dataset else {}
        train_set = instantiate(cfg.dataset, split="train", n_samples=None, **extra)
        name, size = getattr(train_set, "name", "dataset"), int(cfg.dataset.get("image_size", 32))
        folder = t2i_folder(cfg.paths.cache_dir, name, size)
        with distributed.session(cfg.device) as device, distributed.main_lock(folder):
            trainer.fit(train_set, seed=int(cfg.seed), folder=folder, device=device,
                        precision=cfg.get("precision", "fp32"))
            if distributed.is_main():
                print(f"tiny_t2i for {name}: pipeline folder {folder}")
        return folder


def load_or_train_t2i(train_dataset, cache_dir: str | Path, dataset_name: str, image_size: int, *, seed: int = 0,
                      device: str = "cpu", **hparams) -> Path:
    """The cached ``tiny_t2i`` pipeline folder for ``dataset_name`` (pass it as ``model.path``); trained first
    when missing (one log line), once across processes (:func:`xattr.utils.cache.load_or_build`)."""
    trainer = TextToImageTrainer.from_conf(**hparams).filled()

    def load(path: Path) -> Path | None:
        return path if (path / "model_index.json").is_file() else None

    def train(path: Path) -> Path:
        if train_dataset is None:
            raise XattrError(f"no tiny_t2i at {path} and no training set to train one; run "
                             f"`xattr train task=t2i dataset={dataset_name}`")
        log.warning("no tiny_t2i for %s at %s: training it now (%d steps, cached for later runs)",
                    dataset_name, path, trainer.steps)
        trainer.fit(train_dataset, seed=seed, folder=path, device=device)
        return path

    return cache.load_or_build(t2i_folder(cache_dir, dataset_name, image_size), load, train)


__all__ = ["TextToImageTrainer", "t2i_folder", "sample_images", "save_samples", "load_or_train_t2i"]
