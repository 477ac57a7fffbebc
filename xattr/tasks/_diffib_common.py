"""Helpers shared by the DiffIB train tasks (denoiser, alpha-U-Net): image materialisation, EMA, loss-curve PNG,
checkpoints (the standardised space they train in: :mod:`xattr.models.standardise`)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from tqdm.auto import tqdm

from xattr.utils.io import atomic_savefig


def materialise_images(dataset, limit: int | None = None, with_labels: bool = False):
    """Render ``dataset`` once into ``uint8 [N,C,H,W]`` (and ``[N]`` labels) so epochs are fast."""
    if isinstance(dataset, torch.Tensor):
        data = dataset if limit is None else dataset[:limit]
        return (data, None) if with_labels else data
    count = len(dataset) if limit is None else min(limit, len(dataset))
    images, labels = [], []
    for index in tqdm(range(count), desc="render", leave=False, mininterval=1.0):
        sample = dataset[index]
        images.append((sample["image"] * 255).round().to(torch.uint8))
        labels.append(int(sample.get("label", -1)))
    images = torch.stack(images)
    return (images, torch.tensor(labels)) if with_labels else images


class EMA:
    """Exponential moving average of a module's parameters (``decay`` per step)."""

    def __init__(self, module: torch.nn.Module, decay: float = 0.995):
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for s, p in zip(self.shadow.parameters(), module.parameters()):
            s.lerp_(p.detach(), 1 - self.decay)


def save_loss_curve(path: Path, losses: list[float], title: str) -> None:
    """Loss per step (raw and running mean) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.5, alpha=0.5, label="loss")
    if len(losses) >= 10:
        k = max(5, len(losses) // 50)
        t = torch.tensor(losses)
        smooth = torch.nn.functional.avg_pool1d(t[None, None], k, 1).flatten()
        ax.plot(range(k, len(losses) + 1), smooth, lw=1.2, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    atomic_savefig(path, fig)
    plt.close(fig)


def load_network(path: str | Path, network_cls: type, task: str, device: str = "cpu") -> torch.nn.Module:
    """A trained network (EMA weights, eval mode) from a checkpoint written by ``xattr train task=<task>``.

    ``weights_only=False``: the checkpoint also stores the network's constructor config (plain dict).
    """
    from xattr.errors import XattrError

    path = Path(path)
    if not path.exists():
        raise XattrError(f"{task} checkpoint {path} not found; train it with `xattr train task={task}`")
    state = torch.load(path, map_location="cpu", weights_only=False)
    net = network_cls(**state["config"])
    net.load_state_dict(state["model"])
    return net.to(device).eval()


def resume_partial(partial: Path | None, net, ema, optimizer, generator, what: str) -> tuple[int, list[float]]:
    """Restore an interrupted training from ``partial`` (model, EMA, optimizer, RNG, step, losses).

    Returns ``(start_step, losses)``; ``(0, [])`` when there is nothing to resume.
    """
    import logging

    if partial is None or not partial.exists():
        return 0, []
    state = torch.load(partial, map_location="cpu", weights_only=False)
    net.load_state_dict(state["model"])
    ema.shadow.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["rng"])
    start, losses = int(state["step"]), list(state["losses"])
    logging.getLogger(__name__).info("resuming %s training at step %d (%s)", what, start, partial)
    return start, losses


def save_partial(partial: Path | None, net, ema, optimizer, generator, step: int, losses: list[float]) -> None:
    """Write the resumable state read by :func:`resume_partial` (atomically; nothing without ``partial``)."""
    from xattr.utils.io import atomic_torch_save

    if partial is not None:
        atomic_torch_save(partial, {"model": net.state_dict(), "ema": ema.shadow.state_dict(),
                                    "optimizer": optimizer.state_dict(), "rng": generator.get_state(),
                                    "step": step, "losses": losses})


def save_final(checkpoint: Path | None, partial: Path | None, ema, config: dict, meta: dict, losses: list[float],
               title: str) -> None:
    """Final checkpoint ``{"model": EMA weights, "config", "meta"}``, its loss-curve PNG; drops ``partial``."""
    from xattr.utils.io import atomic_torch_save

    if checkpoint is None:
        return
    atomic_torch_save(checkpoint, {"model": ema.shadow.state_dict(), "config": config, "meta": meta})
    save_loss_curve(checkpoint.with_suffix(".loss.png"), losses, f"{title} {checkpoint.stem}")
    if partial is not None and partial.exists():
        partial.unlink()
