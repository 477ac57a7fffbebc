"""``xattr train task=contrastive dataset=shapes_captions``: the tiny contrastive dual encoder (ARO's CLIP baseline).

CLIP's symmetric InfoNCE (Radford et al. 2021): for a batch of ``B`` (image, caption) pairs,
``logits = exp(t) · f(x) g(y)ᵀ`` ``[B,B]`` and ``loss = ½ (CE(logits, I) + CE(logitsᵀ, I))`` with a learned
temperature ``t`` (clamped at log 100, as CLIP). The text tower is ``tiny_t2i``'s (same tokenizer, same CLIP text
model configuration), the image tower a small CNN (:class:`xattr.models.contrastive.TinyDualEncoder`). Adam, EMA
weights, per-sample seeded draws and resumable state every ``save_every`` steps as every trainer here
(:class:`~xattr.training._loop.ResumableSteps`). The default is short (a few hundred steps, a minute or two on two
CPU cores): the baseline only has to know the words, not to be a good CLIP.

The cache entry is ``<cache_dir>/contrastive/tiny_contrastive-<dataset>-<size>.pt`` (``{"config", "model"}``,
read by :func:`xattr.models.contrastive.load_dual_encoder`), its loss curve ``.loss.png`` beside it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from xattr.models.contrastive import TinyDualEncoder, save_dual_encoder
from xattr.training import distributed
from xattr.training._loop import ResumableSteps, Trainer, save_loss_curve
from xattr.training.text_to_image import training_captions, vocabulary_of

log = logging.getLogger(__name__)


def contrastive_path(cache_dir: str | Path, dataset_name: str, image_size: int) -> Path:
    """The cache entry of the tiny dual encoder trained on ``dataset_name`` at ``image_size``."""
    return Path(cache_dir) / "contrastive" / f"tiny_contrastive-{dataset_name}-{image_size}.pt"


def info_nce(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE of unit vectors ``image [B,D]`` and ``text [B,D]`` (row ``b`` pairs with ``b``)."""
    logits = logit_scale.clamp(max=math.log(100)).exp() * image @ text.T
    labels = torch.arange(image.shape[0], device=image.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


@dataclass(kw_only=True)
class ContrastiveTrainer(Trainer):
    """``_target_`` of ``conf/task/contrastive.yaml`` (its keys and defaults are there)."""

    task = "contrastive"

    steps: int
    batch_size: int
    lr: float
    ema_decay: float
    train_size: int | None
    save_every: int
    embed_dim: int

    def fit(self, dataset, *, seed: int = 0, path: Path | None = None, progress: bool = True,
            device: str | torch.device = "cpu") -> TinyDualEncoder:
        """Train on ``dataset`` (items with ``image`` and ``caption``); with ``path``, resumable and saved there."""
        images, captions = training_captions(dataset, self.train_size)
        size = int(images.shape[-1])
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            net = TinyDualEncoder(vocabulary_of(dataset, captions), image_size=size, embed_dim=self.embed_dim)
        loop = ResumableSteps(net.train(), steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                              ema_decay=self.ema_decay, save_every=self.save_every, seed=seed, checkpoint=path,
                              what="contrastive", progress=progress, device=device)
        for step in loop:
            index = [int(torch.randint(0, len(images), (1,), generator=g)) for g in loop.generators(step)]
            x = images[index].to(loop.device).float() / 255
            with loop.autocast():
                image, text = loop.model(x, [captions[i] for i in index])
                loss = info_nce(image, text, loop.net.logit_scale)
            loop.update(step, loss)
        trained = loop.ema.shadow.eval()
        if path is not None and distributed.is_main():
            save_dual_encoder(trained, path)
            save_loss_curve(path.with_suffix(".loss.png"), loop.losses, f"contrastive {path.stem}")
            if loop.partial is not None and loop.partial.exists():
                loop.partial.unlink()
            log.info("tiny contrastive %s: %d steps, final loss %.4f", path, self.steps,
                     loop.losses[-1] if loop.losses else float("nan"))
        distributed.barrier()
        return trained

    def run(self, cfg) -> Path:
        """Train on the dataset's training split, one sample per image (``words=caption``)."""
        from hydra.utils import instantiate

        trainer = self.filled()
        extra = {"words": "caption"} if "words" in cfg.dataset else {}
        train_set = instantiate(cfg.dataset, split="train", n_samples=None, **extra)
        name, size = getattr(train_set, "name", "dataset"), int(cfg.dataset.get("image_size", 32))
        path = contrastive_path(cfg.paths.cache_dir, name, size)
        with distributed.session(cfg.device) as device, distributed.main_lock(path):
            trainer.fit(train_set, seed=int(cfg.seed), path=path, device=device)
            if distributed.is_main():
                print(f"tiny contrastive dual encoder for {name}: {path}")
        return path


__all__ = ["ContrastiveTrainer", "contrastive_path", "info_nce"]
