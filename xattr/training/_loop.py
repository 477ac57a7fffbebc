"""What the training loops share: the trainer base class and its defaults (``conf/task/<name>.yaml``), the
training set rendered once, EMA weights, resumable partial checkpoints, the final checkpoint with its
loss-curve PNG, loading a trained network back."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from tqdm.auto import tqdm

from xattr.errors import XattrError
from xattr.models.standardise import as_list
from xattr.training import distributed
from xattr.utils import cache
from xattr.utils.conf import conf_dir
from xattr.utils.io import atomic_savefig, atomic_torch_save
from xattr.utils.precision import autocast, check_precision, grad_scaler

log = logging.getLogger(__name__)

#: the key of a ``conf/task/*.yaml`` that names the task (a label, not passed to the trainer)
LABEL = "name"
#: keys of a ``conf/task/*.yaml`` that are no hyper-parameter: the trainer class and the task's label
LABEL_KEYS = ("_target_", LABEL)


def task_defaults(name: str) -> dict:
    """The hyper-parameters in ``conf/task/<name>.yaml`` (plain Python values, without :data:`LABEL_KEYS`).

    That file is the one place a trainer's defaults are written; code that trains outside ``xattr train``
    (DiffIB's first use, ``xattr run`` with an untrained offline classifier) reads them here.
    """
    from omegaconf import OmegaConf

    path = conf_dir() / "task" / f"{name}.yaml"
    if not path.is_file():
        raise XattrError(f"no config {path} for training task {name!r}")
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return {key: value for key, value in values.items() if key not in LABEL_KEYS}


def with_defaults(defaults: dict, given: dict, nullable: tuple[str, ...] = ()) -> dict:
    """``given`` over ``defaults``, where ``None`` in ``given`` means "the default" (except for ``nullable`` keys,
    whose ``None`` is a value of its own, e.g. ``mean``/``std`` ``None`` = pixel space)."""
    return {**defaults, **{k: v for k, v in given.items() if v is not None or k in nullable}}


class Trainer:
    """Base of the trainers ``conf/task/<task>.yaml`` names by ``_target_``. Subclasses are keyword-only
    dataclasses whose fields are exactly that file's keys (less :data:`LABEL_KEYS`) and have no defaults of their
    own: ``xattr train`` instantiates them from the composed config, Python code from :meth:`from_conf`.
    ``run(cfg)`` trains with the rest of the composed train config (model, dataset, paths, seed, device)."""

    task: ClassVar[str]
    #: fields whose ``None`` is a value of its own; for the others ``None`` means "the YAML's value"
    nullable: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_conf(cls, **overrides):
        """The trainer with the values of ``conf/task/<task>.yaml``, ``overrides`` taken as they are."""
        return cls(**{**task_defaults(cls.task), **overrides})

    def hparams(self) -> dict:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def filled(self):
        """This trainer with every ``None`` (but those of :attr:`nullable` fields) replaced by the YAML's value,
        as a null on the command line or in a method's ``denoiser:``/``alpha_unet:`` section means."""
        return dataclasses.replace(self, **with_defaults(task_defaults(self.task), self.hparams(), self.nullable))

    def run(self, cfg) -> Path:
        raise NotImplementedError


@dataclass(kw_only=True)
class StandardisedSpaceTrainer(Trainer):
    """A trainer of a U-Net (``width``, ``depth``) fitted by ``steps`` Adam steps of ``batch_size`` images drawn from
    ``train_size`` rendered ones, EMA weights (``ema_decay``), resumable every ``save_every`` steps, in the
    standardised space ``(x - mean) / std`` of the classifier's normalisation (:mod:`xattr.models.standardise`;
    ``mean``/``std`` ``None``: the ``[0,1]`` pixel space). DiffIB's denoiser and alpha-U-Net trainers."""

    nullable = ("mean", "std")

    steps: int
    batch_size: int
    lr: float
    width: int
    depth: int
    ema_decay: float
    train_size: int | None
    save_every: int
    mean: list[float] | None
    std: list[float] | None

    def __post_init__(self):
        self.mean, self.std = as_list(self.mean), as_list(self.std)


def materialise(dataset, limit: int | None = None, with_labels: bool = False, desc: str = "render"):
    """Render ``dataset`` (items with ``"image"`` in ``[0,1]``, and ``"label"``) once into ``uint8 [N,C,H,W]``
    images (and ``[N]`` labels, ``-1`` where an item has none) so that epochs are fast. A tensor ``[N,C,H,W]``
    is taken as it is (its labels ``None``)."""
    if isinstance(dataset, torch.Tensor):
        data = dataset if limit is None else dataset[:limit]
        return (data, None) if with_labels else data
    count = len(dataset) if limit is None else min(limit, len(dataset))
    images, labels = [], []
    for index in tqdm(range(count), desc=desc, leave=False, mininterval=1.0, disable=not distributed.is_main()):
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


# ------------------------------------------------------------------------------------------------ checkpoints


def partial_path(checkpoint: Path | None) -> Path | None:
    """Where an interrupted training of ``checkpoint`` keeps its state: ``<name>.partial.pt``."""
    return checkpoint.with_suffix(".partial.pt") if checkpoint else None


def read_partial(partial: Path | None, what: str) -> dict | None:
    """The state saved by :func:`write_partial` (a cache entry, :func:`xattr.utils.cache.read`: weights-only, a bad
    file is one line saying to delete it), ``None`` when there is nothing to resume."""
    if partial is None or not partial.exists():
        return None
    return cache.read(partial, f"resumable {what} state")


def write_partial(partial: Path | None, state: dict) -> None:
    """Write resumable state atomically (nothing without ``partial``)."""
    if partial is not None:
        atomic_torch_save(partial, state)


def write_final(checkpoint: Path, partial: Path | None, state: dict) -> None:
    """The finished checkpoint, written atomically; the partial one is dropped."""
    atomic_torch_save(checkpoint, state)
    if partial is not None and partial.exists():
        partial.unlink()


#: the version of the random draws a partial state was written with (an older one cannot be continued)
STREAMS = "per-sample-blake2b-v1"


def sample_seed(seed: int, step: int, position: int) -> int:
    """The seed of the draws of batch position ``position`` at step ``step`` of a training seeded ``seed``:
    the first 63 bits of ``blake2b("<seed>:<step>:<position>")``. A function of the three numbers only (not of
    the batch size or the number of processes), distinct for distinct triples but for hash collisions
    (probability about ``n^2 / 2^64`` over ``n`` draws)."""
    digest = hashlib.blake2b(f"{int(seed)}:{int(step)}:{int(position)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def sample_generators(seed: int, step: int, positions) -> list[torch.Generator]:
    """One CPU generator per batch position in ``positions`` (:func:`sample_seed`): every random draw of that
    position (its image, flip, noise) comes from its own generator, so a step's batch is the same whichever
    process computes which positions, and a CPU and a CUDA run draw the same numbers."""
    return [torch.Generator().manual_seed(sample_seed(seed, step, position)) for position in positions]


class ResumableSteps:
    """The step loop the DiffIB trainers share: Adam on ``net`` with EMA weights (both float32) on ``device``,
    per-sample seeded draws (:meth:`generators`), the forward pass under ``precision``'s autocast
    (:meth:`autocast`) and the backward pass through its gradient scaler (fp16 on CUDA), resumable: every
    ``save_every`` steps and at the last one the state goes to ``<checkpoint>.partial.pt``, which a new loop for
    the same checkpoint continues from.

    ``batch_size`` is the global batch. Inside a process group (:mod:`xattr.training.distributed`) this process
    computes :attr:`positions` of it, :attr:`model` is ``net`` in DDP (gradients averaged over the processes: the
    update of one process on the whole batch), the logged loss is the mean over the processes, and only the main
    process shows the bar and writes files (every process reads the partial state it resumes from).

    ``for step in loop:`` yields the steps still to do (with a progress bar); the body draws its batch from
    ``loop.generators(step)``, computes the loss with ``loop.model`` under ``loop.autocast()`` and calls
    :meth:`update`; :meth:`finish` writes the final checkpoint.
    """

    def __init__(self, net: torch.nn.Module, *, steps: int, batch_size: int, lr: float, ema_decay: float,
                 save_every: int, seed: int, checkpoint: Path | None, what: str, progress: bool = True,
                 device: str | torch.device = "cpu", precision: str = "fp32"):
        self.steps, self.save_every, self.what, self.seed = steps, save_every, what, seed
        self.device, self.precision = torch.device(device), check_precision(precision)
        self.positions = distributed.local_positions(batch_size)
        self.progress = progress and distributed.is_main()
        self.net = net.to(self.device)
        self.ema = EMA(self.net, ema_decay)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.scaler = grad_scaler(self.device, self.precision)
        self.checkpoint, self.partial = checkpoint, partial_path(checkpoint)
        self.start, self.losses = resume_partial(self.partial, self.net, self.ema, self.optimizer, self.scaler, what)
        distributed.barrier()  # every process has read the partial state before the main one writes a new one
        self.model = distributed.wrap(self.net, self.device)
        self.bar = None

    def __iter__(self):
        self.bar = tqdm(range(self.start, self.steps), desc=f"train {self.what}", initial=self.start,
                        total=self.steps, disable=not self.progress)
        return iter(self.bar)

    def generators(self, step: int) -> list[torch.Generator]:
        """The CPU generators of this process's batch positions at ``step`` (:func:`sample_generators`)."""
        return sample_generators(self.seed, step, self.positions)

    def autocast(self):
        """The autocast context of the forward pass and loss (:func:`xattr.utils.precision.autocast`)."""
        return autocast(self.device, self.precision)

    def update(self, step: int, loss: torch.Tensor, **postfix: torch.Tensor) -> None:
        """One Adam and EMA step on ``loss`` (the mean over this process's positions); the loss (and the scalar
        tensors ``postfix``), averaged over the processes, logged and on the bar; the partial checkpoint."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.net)
        logged = distributed.all_mean(torch.stack([loss.detach().float(), *(v.detach().float() for v in
                                                                            postfix.values())])).tolist()
        self.losses.append(logged[0])
        recent = self.losses[-20:]
        self.bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}",
                             **{key: f"{value:.2f}" for key, value in zip(postfix, logged[1:])})
        if distributed.is_main() and ((step + 1) % self.save_every == 0 or step + 1 == self.steps):
            save_partial(self.partial, self.net, self.ema, self.optimizer, self.scaler, step + 1, self.losses)

    def finish(self, meta: dict) -> torch.nn.Module:
        """The final checkpoint (EMA weights, the network's config, ``meta``) and loss curve, written by the main
        process (the others wait for it); the EMA network."""
        if distributed.is_main():
            save_final(self.checkpoint, self.partial, self.ema, self.ema.shadow.config(), meta, self.losses,
                       self.what)
        distributed.barrier()
        return self.ema.shadow.eval()


def resume_partial(partial: Path | None, net, ema, optimizer, scaler, what: str) -> tuple[int, list[float]]:
    """Restore an interrupted step loop from ``partial`` (model, EMA, optimizer, gradient scaler, step, losses).

    Returns ``(start_step, losses)``; ``(0, [])`` when there is nothing to resume. A state written with other
    random draws (an older xattr's single generator) cannot be continued: the one line saying to delete it.
    """
    state = read_partial(partial, what)
    if state is None:
        return 0, []
    with cache.unpacking(partial, f"resumable {what} state"):
        if state.get("streams") != STREAMS:
            raise ValueError(f"written with other random draws than {STREAMS}")
        net.load_state_dict(state["model"])
        ema.shadow.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:  # empty: written without fp16's scaler (its default state serves)
            scaler.load_state_dict(state["scaler"])
        start, losses = int(state["step"]), [float(loss) for loss in state["losses"]]
    log.info("resuming %s training at step %d (%s)", what, start, partial)
    return start, losses


def save_partial(partial: Path | None, net, ema, optimizer, scaler, step: int, losses: list[float]) -> None:
    """Write the state read by :func:`resume_partial` (weights-only: state dicts, numbers, a list, a string)."""
    write_partial(partial, {"model": net.state_dict(), "ema": ema.shadow.state_dict(),
                            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                            "streams": STREAMS, "step": step, "losses": losses})


def save_final(checkpoint: Path | None, partial: Path | None, ema, config: dict, meta: dict, losses: list[float],
               title: str) -> None:
    """Final checkpoint ``{"model": EMA weights, "config", "meta"}`` and its loss-curve PNG; drops ``partial``."""
    if checkpoint is None:
        return
    write_final(checkpoint, partial, {"model": ema.shadow.state_dict(), "config": config, "meta": meta})
    save_loss_curve(checkpoint.with_suffix(".loss.png"), losses, f"{title} {checkpoint.stem}")


def save_loss_curve(path: Path, losses: list[float], title: str) -> None:
    """Loss per step (raw and running mean) as a PNG."""
    from xattr.utils.figures import agg_figure

    fig = agg_figure(figsize=(5, 3))
    ax = fig.subplots()
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


def load_network(path: str | Path, network_cls: type, task: str, device: str = "cpu") -> torch.nn.Module:
    """A trained network (EMA weights, eval mode) from a checkpoint written by ``xattr train task=<task>``
    (``{"model": state dict, "config": the constructor's keywords, "meta"}``, plain values: read weights-only as
    a cache entry, :func:`xattr.utils.cache.read`; a file that does not load or fit is one line saying to delete it).
    """
    path = Path(path)
    if not path.exists():
        raise XattrError(f"{task} checkpoint {path} not found; train it with `xattr train task={task}`")
    return network_from_state(cache.read(path, task), path, network_cls, task, device)


def warn_if_other_recipe(path: Path, state: dict, asked: dict, what: str) -> None:
    """One warning when the cached checkpoint ``state`` (read from ``path``) was trained with other values of the
    keys in ``asked`` (e.g. ``steps``) than asked for: cache names hold the architecture only, so
    ``method.<network>.steps=N`` alone selects no other entry and trains none — give another ``paths.cache_dir``."""
    meta = state.get("meta") or {}
    differ = [f"{key}={meta[key]!r} (asked {value!r})" for key, value in asked.items()
              if key in meta and value is not None and _as_plain(meta[key]) != _as_plain(value)]
    if differ:
        log.warning("cached %s %s was trained with %s: it is used as it is (the cache name does not hold these; give "
                    "another paths.cache_dir to train the one asked for)", what, path, ", ".join(differ))


def _as_plain(value):
    """Lists for tuples (a YAML list and a tuple of the same values compare equal)."""
    return list(value) if isinstance(value, (tuple, list)) else value


def network_from_state(state: dict, path: str | Path, network_cls: type, task: str,
                       device: str = "cpu") -> torch.nn.Module:
    """The network of a checkpoint already read from ``path`` (:func:`load_network` without reading it again)."""
    with cache.unpacking(Path(path), task):
        net = network_cls(**state["config"])
        net.load_state_dict(state["model"])
    return net.to(device).eval()


def training_split(cfg) -> tuple[object, str, int]:
    """``(training split of cfg.dataset, its name, its image size)`` for a trainer's ``run(cfg)``."""
    from hydra.utils import instantiate

    train_set = instantiate(cfg.dataset, split="train", n_samples=None)
    return train_set, getattr(train_set, "name", "dataset"), int(cfg.dataset.get("image_size", 64))
