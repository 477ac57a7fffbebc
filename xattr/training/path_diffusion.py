"""``xattr train task=path_diffusion``: DiffIG's path diffusion model (:class:`xattr.nets.path_unet.PathUNet`), a DDPM
on stick-breaking path schedules.

Data: a bank of ``train_size`` stick-breaking schedules ``[K+1, C', h, w]`` (``xattr.paths.stick_breaking``), draw
``i`` with ``α_i`` log-uniform in ``alpha_range`` and its own seed, rendered once before the loop. The draws do not
depend on any image, classifier or dataset: the model learns the SPI path prior, and the checkpoint is cached per
(grid, K, C', α range, spacing, breaks, leftover, network size) only — ``model=``/``dataset=`` of ``xattr train``
do not enter it. Times: ``spacing=uniform`` (``t_k = k/K``; default) or ``arc_length`` of the draw with unit
``x − b`` (the authors' spacing for an image whose features all move by 1).

Loss: ``‖g − ĝ(√ᾱ_t u_0 + √(1−ᾱ_t) ε, t, α)‖²`` with diffusers' ``DDPMScheduler.add_noise``, the goal ``g`` the
velocity ``v = √ᾱ_t ε − √(1−ᾱ_t) u_0`` (``prediction_type=v_prediction``, default; ``get_velocity``) or ``ε``
(``u_0 = 2S_{1…K−1} − 1``, :func:`xattr.nets.path_unet.schedule_to_sample`), ``t`` uniform in
``[0, num_train_timesteps)``. Adam, EMA weights, resumable every ``save_every`` steps, tqdm, loss-curve PNG
(:class:`~xattr.training._loop.ResumableSteps`); every draw of a batch position (bank index, ``t``, ε) comes from its
own generator seeded by ``(seed, step, position)``. Checkpoint
``<cache_dir>/path_models/sbp-g<h>-K<K>-c<C'>-a<low>_<high>-<spacing>-b<breaks>-<leftover>-w<width>d<depth>-<v|eps>.pt``.
Defaults: ``conf/task/path_diffusion.yaml`` (:class:`PathDiffusionTrainer`).

**Image conditioning** (``image_conditioned=true``; our guess, off by default): the targets then depend on the
image. For each of the first ``train_size`` training images ``x_i``, ``candidates`` (M) bank draws are picked
(seeded by ``(seed, i)``) and the one with the lowest faithfulness energy ``−mean_k p_c(γ_k)`` over the interior
waypoints (black baseline, ``c`` the classifier's prediction on ``x_i``; :func:`best_of_draws`) becomes the
target, with its ``α``; the network sees ``x_i`` on the grid (:func:`xattr.nets.path_unet.image_on_grid`). The
checkpoint name then also holds the classifier, dataset and size it was selected with, and ``-m<M>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from xattr.errors import XattrError
from xattr.nets.path_unet import (
    PREDICTION_TYPES,
    PathUNet,
    check_prediction_type,
    image_on_grid,
    schedule_to_sample,
)
from xattr.paths.stick_breaking import StickBreakingDraw, sample_alpha
from xattr.training import distributed
from xattr.training._loop import (
    ResumableSteps,
    Trainer,
    network_from_state,
    sample_seed,
    training_split,
    warn_if_other_recipe,
)
from xattr.utils import cache
from xattr.utils.hooks import eval_mode
from xattr.utils.seed import make_generator

log = logging.getLogger(__name__)

SPACINGS = ("uniform", "arc_length")


def ddpm_scheduler(net: PathUNet):
    """The diffusers ``DDPMScheduler`` ``net`` was trained with (its prediction type and noise schedule)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=net.num_train_timesteps, beta_schedule=net.beta_schedule,
                         prediction_type=net.prediction_type, clip_sample=False)


def draw_schedule(grid: int, n_steps: int, channels: int, alpha: float, seed: int, n_breaks: int = 1000,
                  leftover: str = "atom", spacing: str = "uniform") -> torch.Tensor:
    """One stick-breaking schedule ``[K+1, C', h, w]`` (``h = w = grid``) at uniform or unit-scale arc-length times."""
    if spacing not in SPACINGS:
        raise XattrError(f"spacing={spacing!r} is not one of {list(SPACINGS)}; pick one of them")
    draw = StickBreakingDraw(channels * grid * grid, float(alpha), int(seed), int(n_breaks), leftover)
    if spacing == "uniform":
        times = torch.linspace(0, 1, int(n_steps) + 1, dtype=torch.float64)
    else:
        times = draw.arc_length_times(torch.ones(draw.n_features, dtype=torch.float64), int(n_steps) + 1)
    return draw.cdf(times).T.reshape(int(n_steps) + 1, channels, grid, grid)


def draw_bank(count: int, grid: int, n_steps: int, channels: int, alpha_range, seed: int, n_breaks: int = 1000,
              leftover: str = "atom", spacing: str = "uniform", progress: bool = True,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` draws: schedules ``[count, K+1, C', h, w]`` float32 and their ``α`` ``[count]`` float64; draw ``i``
    is seeded by ``sample_seed(seed, -1, i)`` (the same bank for every run with this seed)."""
    schedules, alphas = [], []
    for i in tqdm(range(int(count)), desc="stick-breaking draws", leave=False, mininterval=1.0,
                  disable=not (progress and distributed.is_main())):
        generator = make_generator(sample_seed(seed, -1, i))
        alpha = float(sample_alpha(1, *alpha_range, generator=generator)[0])
        path_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        schedules.append(draw_schedule(grid, n_steps, channels, alpha, path_seed, n_breaks, leftover, spacing))
        alphas.append(alpha)
    return torch.stack(schedules), torch.tensor(alphas, dtype=torch.float64)


@dataclass(kw_only=True)
class PathDiffusionTrainer(Trainer):
    """``_target_`` of ``conf/task/path_diffusion.yaml`` (module docstring); fields = that file's keys."""

    task = "path_diffusion"

    steps: int
    batch_size: int
    lr: float
    ema_decay: float
    save_every: int
    train_size: int
    grid: int
    n_steps: int
    per_channel: bool
    alpha_range: list[float]
    n_breaks: int
    leftover: str
    spacing: str
    width: int
    depth: int
    layers_per_block: int
    num_train_timesteps: int
    beta_schedule: str
    prediction_type: str
    image_conditioned: bool
    candidates: int

    @property
    def channels(self) -> int:
        """``C'``: 3 with ``per_channel`` (pixel-channel features), else 1."""
        return 3 if self.per_channel else 1

    def network(self, seed: int = 0) -> PathUNet:
        low, high = (float(v) for v in self.alpha_range)
        return PathUNet(n_steps=self.n_steps, grid=self.grid, channels=self.channels, width=self.width,
                        depth=self.depth, layers_per_block=self.layers_per_block, alpha_range=[low, high],
                        num_train_timesteps=self.num_train_timesteps, beta_schedule=self.beta_schedule,
                        prediction_type=self.prediction_type, seed=seed,
                        image_channels=self.image_channels)

    @property
    def image_channels(self) -> int:
        """Colour channels of the conditioning image (3: every dataset here is RGB), 0 without conditioning."""
        return 3 if self.image_conditioned else 0

    def checkpoint(self, cache_dir: str | Path, image_source: str | None = None) -> Path:
        """The cache entry; ``image_source`` (``<model>-<dataset>-<size>``) names what an image-conditioned model's
        targets were selected with (required then, one line otherwise)."""
        low, high = (float(v) for v in self.alpha_range)
        path = path_model_path(cache_dir, self.grid, self.n_steps, self.channels, (low, high), self.spacing,
                               self.n_breaks, self.leftover, self.width, self.depth, self.prediction_type)
        if not self.image_conditioned:
            return path
        if not image_source:
            raise XattrError("an image-conditioned path model is selected with a classifier on a dataset: give "
                             "model= and dataset= (xattr train) or use it through method=diffig")
        return path.with_name(f"{path.stem}-img-{image_source}-m{int(self.candidates)}.pt")

    def fit(self, *, seed: int = 0, checkpoint: Path | None = None, meta: dict | None = None, progress: bool = True,
            device: str | torch.device = "cpu", classifier=None, images: torch.Tensor | None = None) -> PathUNet:
        """Train a :class:`PathUNet` on a bank of stick-breaking draws (module docstring); its EMA copy in eval mode.
        Image-conditioned: ``classifier`` and the training ``images`` ``[N, 3, H, W]`` in ``[0, 1]`` select the
        targets (:func:`best_of_draws`)."""
        low, high = (float(v) for v in self.alpha_range)
        schedules, alphas = draw_bank(self.train_size, self.grid, self.n_steps, self.channels, (low, high), seed,
                                      self.n_breaks, self.leftover, self.spacing, progress)
        conditioning = None
        if self.image_conditioned:
            if classifier is None or images is None:
                raise XattrError("image_conditioned=true needs a classifier and training images to select the "
                                 "targets; train it with `xattr train task=path_diffusion task.image_conditioned=true "
                                 "model=... dataset=...` or through method=diffig")
            images = images[: self.train_size]
            best = best_of_draws(classifier, images, schedules, self.candidates, seed, progress=progress)
            schedules, alphas = schedules[best], alphas[best]
            conditioning = image_on_grid(images, self.grid)
        targets = schedule_to_sample(schedules)  # [N, (K-1)C', h, w] in [-1, 1]
        net = self.network(seed)
        scheduler = ddpm_scheduler(net)
        loop = ResumableSteps(net, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                              ema_decay=self.ema_decay, save_every=self.save_every, seed=seed, checkpoint=checkpoint,
                              what="path_diffusion", progress=progress, device=device)
        device = loop.device
        for step in loop:
            index, timestep, eps = self.draws(loop.generators(step), len(targets), targets.shape[1:])
            clean = targets[index].to(device)
            eps, timestep = eps.to(device), timestep.to(device)
            noisy = scheduler.add_noise(clean, eps, timestep)
            goal = scheduler.get_velocity(clean, eps, timestep) if self.prediction_type == "v_prediction" else eps
            with loop.autocast():
                image = None if conditioning is None else conditioning[index].to(device)
                loss = (loop.model(noisy, timestep, alphas[index].to(device), image) - goal).pow(2).mean()
            loop.update(step, loss)
        return loop.finish({**(meta or {}), "steps": self.steps,
                            "final_loss": loop.losses[-1] if loop.losses else None})

    def draws(self, generators: list[torch.Generator], count: int, shape) -> tuple[torch.Tensor, ...]:
        """Per batch position, from its own generator: bank index ``[b]``, timestep ``[b]``, noise ``[b, *shape]``."""
        index, timestep, eps = [], [], []
        for generator in generators:
            index.append(torch.randint(0, count, (1,), generator=generator))
            timestep.append(torch.randint(0, self.num_train_timesteps, (1,), generator=generator))
            eps.append(torch.randn((1, *shape), generator=generator))
        return torch.cat(index), torch.cat(timestep), torch.cat(eps)

    def run(self, cfg) -> Path:
        """``xattr train task=path_diffusion``: train (or resume) and cache; ``cfg.model``/``cfg.dataset`` are used
        by an image-conditioned model only (the classifier and the training split that select its targets)."""
        trainer = self.filled()
        train_set = source = None
        if trainer.image_conditioned:
            train_set, dataset_name, image_size = training_split(cfg)
            source = image_source(cfg.model.name, dataset_name, image_size)
        path = trainer.checkpoint(cfg.paths.cache_dir, source)
        with distributed.session(cfg.device) as device, distributed.main_lock(path):
            selection = {}
            if train_set is not None:
                from xattr.training.alpha_unet import run_classifier

                selection = {"classifier": run_classifier(cfg, train_set, dataset_name, image_size, device),
                             "images": training_images(train_set, trainer.train_size)}
            trainer.fit(seed=int(cfg.seed), checkpoint=path, meta=trainer.hparams(), device=device, **selection)
            if distributed.is_main():
                print(f"path diffusion model: checkpoint {path}")
        return path


def image_source(model_name: str, dataset_name: str, image_size: int) -> str:
    """``<model>-<dataset>-<size>``: what an image-conditioned path model's targets were selected with (its cache
    name holds it)."""
    return f"{model_name}-{dataset_name}-{int(image_size)}"


@torch.no_grad()
def best_of_draws(classifier, images: torch.Tensor, schedules: torch.Tensor, candidates: int, seed: int,
                  baseline: str = "black", progress: bool = True) -> torch.Tensor:
    """Per image, the bank index ``[N]`` of the lowest faithfulness energy among ``candidates`` draws.

    ``images`` ``[N, C, H, W]`` in ``[0, 1]``; ``schedules`` ``[D, K+1, C', h, w]`` (the bank). Image ``i``'s
    candidates are ``candidates`` distinct bank indices from a generator seeded by ``sample_seed(seed, -2, i)``;
    each is scored by ``−mean_k p_c(γ_k)`` over the interior waypoints ``k = 1 … K−1`` (bilinear up-sampling, the
    ``baseline`` of :func:`xattr.paths.make_baseline`), ``c`` the classifier's prediction on ``x_i``."""
    from xattr.paths import make_baseline
    from xattr.paths.energies import path_faithfulness

    device = next(classifier.parameters()).device
    best = []
    with eval_mode(classifier):
        for i in tqdm(range(len(images)), desc="best-of-M path targets", leave=False, mininterval=1.0,
                      disable=not (progress and distributed.is_main())):
            generator = make_generator(sample_seed(seed, -2, i))
            pick = torch.randperm(len(schedules), generator=generator)[: int(candidates)]
            x = images[i:i + 1].to(device)
            target = classifier(x).argmax(1)
            m = len(pick)
            xs, bs = x.expand(m, *x.shape[1:]), make_baseline(x, baseline).expand(m, *x.shape[1:])
            energy = path_faithfulness(classifier, xs, bs, target.expand(m), schedules[pick].to(x))
            best.append(pick[int(energy.argmin())])
    return torch.stack(best)


def training_images(train_set, count: int) -> torch.Tensor:
    """The first ``count`` images ``[n, C, H, W]`` of ``train_set`` (fewer if it is smaller)."""
    return torch.stack([train_set[i]["image"] for i in range(min(int(count), len(train_set)))])


def path_model_path(cache_dir: str | Path, grid: int, n_steps: int, channels: int, alpha_range, spacing: str,
                    n_breaks: int, leftover: str, width: int, depth: int, prediction_type: str = "v_prediction",
                    ) -> Path:
    low, high = (float(v) for v in alpha_range)
    check_prediction_type(prediction_type)
    return (Path(cache_dir) / "path_models" / f"sbp-g{grid}-K{n_steps}-c{channels}-a{low:g}_{high:g}-{spacing}"
            f"-b{n_breaks}-{leftover}-w{width}d{depth}-{PREDICTION_TYPES[prediction_type]}.pt")


def load_or_train_path_model(cache_dir: str | Path, *, seed: int = 0, device: str = "cpu", progress: bool = True,
                             classifier=None, train_dataset=None, image_source: str | None = None,
                             **hparams) -> PathUNet:
    """The cached path model for ``hparams`` (over ``conf/task/path_diffusion.yaml``; ``None`` = the file's value);
    trained and cached first if missing (one log line), once across processes (:func:`xattr.utils.cache.load_or_build`).
    Image-conditioned (``image_conditioned=True``): ``image_source`` (:func:`image_source`) names the entry;
    training it needs the ``classifier`` and the ``train_dataset`` (:meth:`PathDiffusionTrainer.fit` says so)."""
    trainer = PathDiffusionTrainer.from_conf(**hparams).filled()

    def load(path: Path) -> PathUNet | None:
        if not path.exists():
            return None
        state = cache.read(path, "path_diffusion")  # read once: its meta for the check, its weights for the network
        warn_if_other_recipe(path, state, trainer.hparams(), "path diffusion model")
        return network_from_state(state, path, PathUNet, "path_diffusion", device)

    def train(path: Path) -> PathUNet:
        log.warning("no path diffusion model at %s: training it now (%d steps, cached for later runs)", path,
                    trainer.steps)
        images = None if train_dataset is None else training_images(train_dataset, trainer.train_size)
        trainer.fit(seed=seed, checkpoint=path, meta=trainer.hparams(), progress=progress, device=device,
                    classifier=classifier, images=images)
        return load(path)

    return cache.load_or_build(trainer.checkpoint(cache_dir, image_source), load, train)


__all__ = ["PathDiffusionTrainer", "ddpm_scheduler", "draw_schedule", "draw_bank", "best_of_draws", "training_images",
           "image_source", "path_model_path", "load_or_train_path_model"]
