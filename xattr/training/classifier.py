"""``xattr train task=classifier``: train an offline zoo model (tiny_cnn, tiny_vit) on a dataset.

Hyper-parameters, per model: ``conf/task/classifier.yaml`` (:class:`ClassifierTrainer`); ``xattr run`` reads the
same file when it trains an offline classifier on first use (:func:`load_trained_classifier`).

Checkpoints are cached at ``<cache_dir>/classifiers/<model>-<dataset>-<size>.pt`` (``{"model": state
dict of the ZooModel, "meta": {...}}``); an interrupted run resumes from ``<...>.partial.pt``
(written atomically after every epoch with optimizer and scheduler state, RNG state as a tensor). Both hold plain
values only and are read weights-only as cache entries (:mod:`xattr.utils.cache`: a bad one is one line saying to
delete it); training holds the entry's lock (two first uses train it once).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from xattr.data import BUILTIN_DATASETS, dataset_class
from xattr.errors import XattrError
from xattr.models import OFFLINE_MODELS, ZooModel, build_model
from xattr.models.checkpoint import fit_state_dict
from xattr.training._loop import (
    Trainer,
    materialise,
    partial_path,
    read_partial,
    training_split,
    with_defaults,
    write_final,
    write_partial,
)
from xattr.utils import cache
from xattr.utils.locks import waiting
from xattr.utils.precision import autocast, grad_scaler
from xattr.utils.seed import seed_everything

log = logging.getLogger(__name__)


def checkpoint_path(cache_dir: str | Path, model_name: str, dataset_name: str, image_size: int) -> Path:
    """Where the trained ``model_name`` for ``dataset_name`` at ``image_size`` is cached."""
    return Path(cache_dir) / "classifiers" / f"{model_name}-{dataset_name}-{image_size}.pt"


@dataclass(kw_only=True)
class ClassifierTrainer(Trainer):
    """``_target_`` of ``conf/task/classifier.yaml``; the fields are that file's keys. The hyper-parameters for a
    model are its ``per_model`` entry with the top-level values over it (``None``: the model's own)."""

    task = "classifier"

    epochs: int | None
    batch_size: int | None
    lr: float | None
    weight_decay: float | None
    train_size: int | None
    per_model: dict[str, dict]

    def hparams_for(self, model_name: str) -> dict:
        """``train_classifier`` keywords for ``model_name``."""
        if model_name not in self.per_model:
            raise XattrError(f"conf/task/classifier.yaml has no per_model entry for {model_name}; "
                             f"it has {', '.join(sorted(self.per_model))}")
        given = {key: value for key, value in self.hparams().items() if key != "per_model"}
        return with_defaults(self.per_model[model_name], given)

    def run(self, cfg) -> Path:
        """``xattr train task=classifier``: train ``cfg.model`` on ``cfg.dataset``."""
        from hydra.utils import instantiate

        name = cfg.model.name
        if name not in OFFLINE_MODELS:
            raise XattrError(f"task=classifier trains offline models ({', '.join(OFFLINE_MODELS)}), not {name}")
        train_set, dataset_name, image_size = training_split(cfg)
        test_set = instantiate(cfg.dataset, split="test", n_samples=None)
        path = checkpoint_path(cfg.paths.cache_dir, name, dataset_name, image_size)
        hparams = self.hparams_for(name)
        seed_everything(int(cfg.seed))
        model = instantiate(cfg.model, num_classes=train_set.num_classes, checkpoint=None)
        with waiting(path):  # the cache entry's lock: a first use elsewhere waits for this training
            result = train_classifier(model, train_set, test_set, seed=int(cfg.seed), checkpoint=path,
                                      meta={"model": name, "dataset": dataset_name, "image_size": image_size},
                                      device=str(cfg.get("device", "cpu")),
                                      precision=str(cfg.get("precision", "fp32")), **hparams)
        log.info("%s on %s: test accuracy %.4f -> %s", name, dataset_name, result["test_accuracy"], path)
        print(f"{name} on {dataset_name}: test accuracy {result['test_accuracy']:.4f}; checkpoint {path}")
        return path


@torch.no_grad()
def evaluate_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256,
                      precision: str = "fp32") -> float:
    """Top-1 accuracy of ``model`` on uint8 ``images [N,3,H,W]`` (on the host; each batch goes to the model's
    device, the count stays there: one host read at the end)."""
    model.eval()
    device = next(model.parameters()).device
    correct = torch.zeros((), dtype=torch.long, device=device)
    for start in range(0, len(images), batch_size):
        with autocast(device, precision):
            logits = model(images[start:start + batch_size].to(device).float() / 255)
        correct += (logits.argmax(1) == labels[start:start + batch_size].to(device)).sum()
    return correct.item() / max(len(images), 1)


def train_classifier(model: ZooModel, train_set, test_set, *, epochs: int, batch_size: int, lr: float,
                     weight_decay: float, train_size: int | None = None, seed: int = 0,
                     checkpoint: Path | None = None, meta: dict | None = None, device: str = "cpu",
                     precision: str = "fp32") -> dict:
    """Train ``model`` (AdamW, one-cycle LR, random horizontal flips) and return ``{'test_accuracy': ...}``.

    With ``checkpoint`` set, progress is saved to ``<checkpoint>.partial.pt`` after each epoch and
    resumed from there; the final weights go to ``checkpoint``. The model trains on ``device`` (the rendered
    images stay on the host as uint8, each batch is moved); the shuffling and flips are drawn on the host, so
    a CUDA run draws the same batches as a CPU one. ``precision``: autocast of the forward pass and loss
    (:mod:`xattr.utils.precision`; fp16 on CUDA with a gradient scaler). Checkpoints hold host tensors
    (:func:`xattr.utils.io.atomic_torch_save`).
    """
    model.to(device)
    scaler = grad_scaler(device, precision)
    partial = partial_path(checkpoint)
    state = read_partial(partial, "classifier")  # before rendering: a bad file stops at once
    seed_everything(seed)
    train_x, train_y = materialise(train_set, train_size, with_labels=True, desc="render train")
    test_x, test_y = materialise(test_set, None, with_labels=True, desc="render test")
    if train_y is None or test_y is None or (train_y < 0).any() or (test_y < 0).any():
        raise XattrError("train_classifier needs labelled images (dataset items with 'label')")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    total_steps = epochs * math.ceil(len(train_x) / batch_size)
    if total_steps >= 4:  # one-cycle schedule; its warm-up needs at least 2 steps
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                        pct_start=max(0.2, 2.0 / total_steps))
    else:  # a handful of steps (smoke tests): constant learning rate
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    start_epoch = 0
    if state is not None:
        with cache.unpacking(partial, "resumable classifier state"):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch = int(state["epoch"])
            torch.set_rng_state(state["rng"])
        log.info("resuming classifier training from epoch %d (%s)", start_epoch, partial)
    bar = tqdm(range(start_epoch, epochs), desc=f"train {model.spec.name}", initial=start_epoch, total=epochs)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train_x))
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            x = train_x[index].float() / 255
            flip = torch.rand(len(x)) < 0.5
            x[flip] = x[flip].flip(-1)
            with autocast(device, precision):
                loss = F.cross_entropy(model(x.to(device)), train_y[index].to(device), label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
        model.eval()
        accuracy = evaluate_accuracy(model, test_x, test_y, precision=precision)
        bar.set_postfix(loss=f"{loss.item():.3f}", test_acc=f"{accuracy:.3f}")
        write_partial(partial, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(), "epoch": epoch + 1,
                                "rng": torch.get_rng_state()})
    accuracy = evaluate_accuracy(model.eval(), test_x, test_y, precision=precision)
    if checkpoint is not None:
        write_final(checkpoint, partial, {"model": model.state_dict(),
                                          "meta": {"image_size": model.spec.input_size[0], **(meta or {}),
                                                   "test_accuracy": accuracy, "epochs": epochs}})
    return {"test_accuracy": accuracy}


def estimate_training_seconds(model: ZooModel, train_set, test_set, *, epochs: int, batch_size: int,
                              train_size: int | None = None, **_) -> tuple[float, str]:
    """How long :func:`train_classifier` with this recipe will take here, from measured costs: rendering a few
    samples, and two AdamW steps (after one warm-up) / one evaluation pass on a copy of ``model`` (the model and
    the global RNG are left alone). Returns ``(seconds, the recipe in words)``."""
    import copy
    import time

    n_train = len(train_set) if train_size is None else min(int(train_size), len(train_set))
    n_test = len(test_set)
    started = time.perf_counter()
    for index in range(min(4, len(train_set))):
        train_set[index]
    render = (time.perf_counter() - started) / max(min(4, len(train_set)), 1)
    probe = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    batch = min(int(batch_size), 32, max(n_train, 1))
    x = torch.rand(batch, 3, *model.spec.input_size, generator=generator)
    y = torch.randint(0, model.spec.num_classes, (batch,), generator=generator)
    with torch.random.fork_rng():
        times = []
        for _ in range(3):
            started = time.perf_counter()
            loss = F.cross_entropy(probe(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - started)
        probe.eval()
        started = time.perf_counter()
        with torch.no_grad():
            probe(x)
        evaluate = (time.perf_counter() - started) / batch
    step = sum(times[1:]) / (2 * batch)
    seconds = render * (n_train + n_test) + epochs * (n_train * step + n_test * evaluate)
    recipe = (f"{epochs} epochs x {n_train} images x {step * 1e3:.2g} ms/image measured, + rendering "
              f"{n_train + n_test} and evaluating {n_test} images per epoch")
    return seconds, recipe


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


def load_trained_classifier(model_name: str = "tiny_cnn", dataset_name: str = "shapes", image_size: int = 64,
                            cache_dir: str | Path = ".cache", device: str = "cpu", seed: int = 0,
                            **model_kwargs) -> ZooModel:
    """A trained offline classifier from the cache; trains and caches it first if missing, once across processes
    (:func:`xattr.utils.cache.load_or_build`: the others wait for it, then load it). Before training it logs ONE
    line: that it trains, which other sizes are cached, and how long it will take (an estimate)."""
    if model_name not in OFFLINE_MODELS:
        raise XattrError(f"{model_name} is not trained here; offline models are {', '.join(OFFLINE_MODELS)}")
    if dataset_name not in BUILTIN_DATASETS:
        raise XattrError(f"no built-in training set for dataset {dataset_name!r}; use shapes or digits")
    dataset_cls = dataset_class(dataset_name)
    num_classes = len(dataset_cls.class_names)

    def load(path: Path) -> ZooModel | None:
        if not path.exists():
            return None
        return load_cached_classifier(path, build_model(model_name, num_classes=num_classes, image_size=image_size,
                                                        **model_kwargs))

    def train(path: Path) -> ZooModel:
        torch.manual_seed(seed)
        model = build_model(model_name, num_classes=num_classes, image_size=image_size, **model_kwargs)
        train_set = dataset_cls(split="train", image_size=image_size, seed=seed)
        test_set = dataset_cls(split="test", image_size=image_size, seed=seed)
        hparams = ClassifierTrainer.from_conf().hparams_for(model_name)
        seconds, recipe = estimate_training_seconds(model, train_set, test_set, **hparams)
        log.warning("no trained %s for %s at %d px at %s%s: training it now (cached for later runs), about %s "
                    "(%s)", model_name, dataset_name, image_size, path, _other_sizes(path, image_size),
                    _duration(seconds), recipe)
        meta = {"model": model_name, "dataset": dataset_name, "image_size": image_size}
        train_classifier(model, train_set, test_set, seed=seed, checkpoint=path, meta=meta, device=device, **hparams)
        return load(path)

    path = checkpoint_path(cache_dir, model_name, dataset_name, image_size)
    return cache.load_or_build(path, load, train).to(device).eval()


def load_cached_classifier(path: Path, model: ZooModel) -> ZooModel:
    """``model`` with the weights of the cache entry ``path`` (:func:`xattr.utils.cache.read`: weights-only; a
    file that does not load or fit ``model`` is one line saying to delete it — not a ``model.checkpoint`` error)."""
    state = cache.read(path, "classifier")
    with cache.unpacking(path, "classifier"):
        fit_state_dict(model, state["model"])
    return model


def _other_sizes(path: Path, image_size: int) -> str:
    """`` (cached at 64 px: dataset.image_size=64 uses it)`` when the cache holds the model at other sizes."""
    stem = path.stem.rsplit("-", 1)[0]
    sizes = sorted(int(p.stem.rsplit("-", 1)[1]) for p in path.parent.glob(f"{stem}-*.pt")
                   if p.stem.rsplit("-", 1)[1].isdigit() and int(p.stem.rsplit("-", 1)[1]) != image_size)
    if not sizes:
        return ""
    return f" (cached at {', '.join(map(str, sizes))} px: dataset.image_size={sizes[0]} uses it instead)"


def checkpoint_accuracy(path: str | Path) -> float | None:
    """Test accuracy recorded in a classifier checkpoint (``None`` if absent)."""
    return cache.read(path, "classifier").get("meta", {}).get("test_accuracy")


__all__ = ["ClassifierTrainer", "checkpoint_path", "train_classifier", "load_trained_classifier",
           "evaluate_accuracy", "checkpoint_accuracy", "estimate_training_seconds"]
