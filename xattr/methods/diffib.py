"""DiffIB — "Diffusion Models for Attribution" (Chen et al., AAAI 2025): alpha-U-Net (Algorithm 1) + MMSE integral (Eq. 10/14).

1. A U-Net ``alpha_theta`` maps the image ``x`` to one log-SNR per pixel-channel; the classifier sees
   ``z = sqrt(sigmoid(alpha)) x + sqrt(sigmoid(-alpha)) eps`` and the loss is ``CE(f(z), y) + beta * mean(alpha)``
   (Adam). ``mode='per_sample'`` (the paper) fits a fresh U-Net per image — B images at once, each with its
   own parameters, as one grouped-convolution U-Net; ``mode='amortized'`` (beyond the paper) runs one U-Net
   trained over the training split (``xattr train task=alpha_unet``) in a single forward pass.
2. ``A_i = 1/2 int_{alpha_min}^{alpha_i} mmse_i d alpha'`` with the MMSE eps-denoiser of Algorithm 2
   (:func:`xattr.info.mmse_integral`; derivation and error in that module). ``output='alpha'`` returns the
   alpha map instead (ablation).

``x`` is the image in the space the classifier's network computes in (``space='normalized'``: standardised
by the model's own mean/std, so pure channel noise is the standard-normal "noise-filled image" of the MNIM
metric), or the ``[0,1]`` pixel space (``space='pixel'``: unit noise there is ~4.4 standard deviations of
ImageNet-normalised input). The denoiser and the amortized U-Net are trained in the same space.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from xattr.errors import XattrError
from xattr.info import mmse_integral, noise_channel
from xattr.methods.base import CACHE_SEED, AttributionMethod, RunContext
from xattr.models.spec import OnStandardised, input_normalization
from xattr.models.standardise import space_constants
from xattr.nets.alpha_unet import bound_alpha, init_alpha_unet_params
from xattr.nets.unet import unet_apply
from xattr.utils.hooks import eval_mode, frozen
from xattr.utils.seed import image_seeds

log = logging.getLogger(__name__)

MODES = ("per_sample", "amortized")
OUTPUTS = ("mmse_integral", "alpha")
SPACES = ("normalized", "pixel")


def _alpha_forward(params: dict[str, torch.Tensor], x: torch.Tensor, depth: int, batching: str,
                   alpha_range: tuple[float, float] | None = None) -> torch.Tensor:
    """alpha for ``x`` ``[G,C,H,W]`` from G stacked U-Nets (params ``[G, *shape]``), bounded to ``alpha_range``."""
    if alpha_range is not None:
        return bound_alpha(_alpha_forward(params, x, depth, batching), alpha_range)
    G, C, H, W = x.shape
    if batching == "grouped":
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in params.items()}
        return unet_apply(flat, x.reshape(1, G * C, H, W), depth, groups=G).reshape(G, -1, H, W)
    if batching == "vmap":
        from torch.func import vmap

        return vmap(lambda p, xi: unet_apply(p, xi[None], depth)[0])(params, x)
    if batching == "loop":
        return torch.cat([unet_apply({k: v[g] for k, v in params.items()}, x[g:g + 1], depth) for g in range(G)])
    raise XattrError(f"batching={batching!r}: use grouped, vmap or loop")


def fit_alpha_per_sample(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *, beta: float = 0.1,
                         steps: int = 300, lr: float = 0.003, width: int = 8, depth: int = 3,
                         alpha_init: float = 5.0, patience: int = 30, tol: float = 1e-3,
                         seeds: list[int] | None = None, batching: str = "grouped",
                         alpha_range: tuple[float, float] | None = (-10.0, 10.0),
                         progress: bool = False) -> torch.Tensor:
    """Algorithm 1 per image: B independent U-Nets fitted jointly; returns alpha ``[B,C,H,W]``.

    Each image ``b`` has its own initialisation and noise stream (``seeds[b]``), its own Adam state and its
    own stopping time: it stops after ``steps`` steps or when its smoothed loss (EMA, decay 0.9) has not
    improved by ``tol`` (relative) for ``patience`` steps. Stopped images keep their parameters (masked
    Adam) and leave the forward/backward pass, so a batched fit computes the same thing as fitting each
    image alone and costs nothing for images that have stopped.
    """
    B, C, H, W = x.shape
    seeds = list(range(B)) if seeds is None else list(seeds)
    if len(seeds) != B:
        raise XattrError(f"fit_alpha_per_sample: {len(seeds)} seeds for {B} images; give one seed per image")
    generators = [torch.Generator(device=x.device).manual_seed(int(s)) for s in seeds]
    inits = [init_alpha_unet_params(C, width, depth, alpha_init, alpha_range,
                                    generator=torch.Generator().manual_seed(int(s) + 7919)) for s in seeds]
    params = {k: torch.stack([p[k] for p in inits]).to(x.device).requires_grad_(True) for k in inits[0]}
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v2 = {k: torch.zeros_like(v) for k, v in params.items()}
    b1, b2, adam_eps = 0.9, 0.999, 1e-8
    t = torch.zeros(B, device=x.device)                 # Adam step count per image
    active = torch.ones(B, dtype=torch.bool, device=x.device)
    smooth = torch.full((B,), float("nan"), device=x.device)
    best = torch.full((B,), float("inf"), device=x.device)
    since_best = torch.zeros(B, dtype=torch.long, device=x.device)
    with eval_mode(model), frozen(model):
        for _ in tqdm(range(steps), desc="diffib per-sample fit", leave=False, disable=not progress):
            # only the images still fitting run forward/backward (stopped ones keep their parameters); the one
            # host read per step: which images still fit (their noise streams are per image)
            live_images = torch.nonzero(active).flatten().tolist()
            if not live_images:
                break
            idx = torch.tensor(live_images, device=x.device)
            live = {k: v[idx] for k, v in params.items()}
            alpha = _alpha_forward(live, x[idx], depth, batching, alpha_range)
            eps = torch.stack([torch.randn(x.shape[1:], generator=generators[i], device=x.device)
                               for i in live_images])
            z = noise_channel(x[idx], alpha, eps)
            ce = F.cross_entropy(model(z), target[idx], reduction="none")
            loss_live = ce + beta * alpha.mean(dim=(1, 2, 3))
            grads = torch.autograd.grad(loss_live.sum(), list(params.values()))
            loss = torch.zeros(B, device=x.device).index_copy(0, idx, loss_live.detach())
            with torch.no_grad():
                t = t + active
                mask = active.float()
                for (name, p), g in zip(params.items(), grads):
                    shape = (B,) + (1,) * (p.dim() - 1)
                    mk = mask.view(shape)
                    m[name] = torch.where(mk.bool(), b1 * m[name] + (1 - b1) * g, m[name])
                    v2[name] = torch.where(mk.bool(), b2 * v2[name] + (1 - b2) * g * g, v2[name])
                    tt = t.clamp_min(1).view(shape)
                    update = lr * (m[name] / (1 - b1 ** tt)) / ((v2[name] / (1 - b2 ** tt)).sqrt() + adam_eps)
                    p -= update * mk
                current = loss
                smooth = torch.where(torch.isnan(smooth), current, 0.9 * smooth + 0.1 * current)
                improved = torch.isinf(best) | (smooth < best - tol * best.abs().clamp_min(1e-8))
                best = torch.where(improved & active, smooth, best)
                since_best = torch.where(improved, torch.zeros_like(since_best), since_best + 1)
                active = active & (since_best < patience)
        with torch.no_grad():
            return _alpha_forward(params, x, depth, batching, alpha_range).detach()


class DiffIB(AttributionMethod):
    """DiffIB attribution; see the module docstring. Defaults equal ``conf/method/diffib.yaml``."""

    supports_transformers = True

    def __init__(self, model, mode: str = "per_sample", beta: float = 0.1, steps: int = 300, lr: float = 0.003,
                 patience: int = 30, tol: float = 1e-3, width: int = 8, depth: int = 3, alpha_init: float = 5.0,
                 output: str = "mmse_integral", alpha_min: float = -10.0, n_points: int = 17, n_noise: int = 2,
                 chunk_size: int = 64, denoiser: dict | None = None, alpha_unet: dict | None = None,
                 batching: str = "grouped", alpha_max: float | None = 10.0, space: str = "normalized",
                 seed: int = 0):
        super().__init__(model)
        if mode not in MODES:
            raise XattrError(f"diffib mode={mode!r}: use one of {', '.join(MODES)}")
        if output not in OUTPUTS:
            raise XattrError(f"diffib output={output!r}: use one of {', '.join(OUTPUTS)}")
        if space not in SPACES:
            raise XattrError(f"diffib space={space!r}: use one of {', '.join(SPACES)}")
        self.space = space
        self.mode, self.beta, self.steps, self.lr = mode, float(beta), int(steps), float(lr)
        self.patience, self.tol, self.width, self.depth = int(patience), float(tol), int(width), int(depth)
        self.alpha_init, self.output, self.alpha_min = float(alpha_init), output, float(alpha_min)
        self.n_points, self.n_noise, self.chunk_size = int(n_points), int(n_noise), int(chunk_size)
        self.denoiser_cfg = dict(denoiser or {})
        self.alpha_unet_cfg = dict(alpha_unet or {})
        self.batching, self.seed = batching, int(seed)
        # alpha bounded to [alpha_min, alpha_max] (alpha_max=None: unbounded, the paper's literal Algorithm 1)
        self.alpha_range = None if alpha_max is None else (self.alpha_min, float(alpha_max))
        self.denoiser: torch.nn.Module | None = None     # set by prepare() or directly
        self.alpha_net: torch.nn.Module | None = None    # amortized mode: set by prepare() or directly

    def prepare(self, context: RunContext) -> None:
        """Load (or train and cache, one log line each) the denoiser and, for amortized mode, the alpha-U-Net."""
        from xattr.training.alpha_unet import load_or_train_alpha_unet
        from xattr.training.denoiser import load_or_train_denoiser

        size = self._image_size(context)
        space = self._space_constants()
        if self.output == "mmse_integral" and self.denoiser is None:
            self.denoiser = load_or_train_denoiser(context.train_dataset, context.cache_dir, context.dataset_name,
                                                   size, seed=CACHE_SEED, device=context.device,
                                                   **{**self.denoiser_cfg, **space})
        if self.mode == "amortized" and self.alpha_net is None:
            self.alpha_net = load_or_train_alpha_unet(
                self.model, context.train_dataset, context.cache_dir, context.model_name, context.dataset_name,
                size, seed=CACHE_SEED, device=context.device,
                **{"beta": self.beta, "width": self.width, "depth": self.depth, "alpha_init": self.alpha_init,
                   "alpha_range": self.alpha_range, **self.alpha_unet_cfg, **space})

    def adopt_model_independent(self, prepared: AttributionMethod) -> None:
        """Reuse ``prepared``'s denoiser (it depends on the dataset and the channel's space, not on the
        classifier) when both work in the same space — e.g. for the randomised models of the sanity check."""
        if (isinstance(prepared, DiffIB) and prepared.denoiser is not None and self.denoiser is None
                and self._space_constants() == prepared._space_constants()):
            self.denoiser = prepared.denoiser

    def _space_constants(self, channels: int | None = None) -> dict:
        """``{"mean": [C], "std": [C]}`` lists of the space the channel works in (``None`` for pixel space)."""
        if self.space == "pixel":
            return {"mean": None, "std": None}
        spec = getattr(self.model, "spec", None)
        channels = channels or len(getattr(spec, "mean", (0, 0, 0)))
        mean, std = input_normalization(self.model, channels)
        return {"mean": mean.tolist(), "std": std.tolist()}

    def classifier_view(self, channels: int) -> OnStandardised:
        """The classifier as a function of the channel's input ``u`` (see module doc)."""
        space = self._space_constants(channels)
        return OnStandardised(self.model, *space_constants(space["mean"], space["std"], channels))

    def _image_size(self, context: RunContext) -> int:
        spec = getattr(self.model, "spec", None)
        if spec is not None and getattr(spec, "input_size", None):
            size = spec.input_size
            return int(size[-1] if isinstance(size, (tuple, list)) else size)
        return 64

    def alpha(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The log-SNR map ``[B,C,H,W]`` for images ``x`` in ``[0,1]`` (per-sample fit or amortized forward)."""
        view = self.classifier_view(x.shape[1]).to(x.device)
        u = view.standardise(x)
        if self.mode == "amortized":
            if self.alpha_net is None:
                raise XattrError("diffib mode=amortized has no alpha-U-Net; call prepare(context) or set "
                                 "method.alpha_net (train with `xattr train task=alpha_unet`)")
            with torch.no_grad(), eval_mode(self.alpha_net):
                return self.alpha_net(u)
        # per-image seeds from content + method seed: a repeated call reproduces its maps, and an image's
        # initialisation and noise stream do not depend on its batch position
        seeds = [s % (2**31 - 1) for s in image_seeds(x, self.seed)]
        return fit_alpha_per_sample(view, u, target, beta=self.beta, steps=self.steps, lr=self.lr,
                                    width=self.width, depth=self.depth, alpha_init=self.alpha_init,
                                    patience=self.patience, tol=self.tol, seeds=seeds, batching=self.batching,
                                    alpha_range=self.alpha_range)

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha(x, target)
        if self.output == "alpha":
            return alpha
        if self.denoiser is None:
            raise XattrError("diffib output=mmse_integral has no denoiser; call prepare(context) or set "
                             "method.denoiser (train with `xattr train task=denoiser`)")
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        u = self.classifier_view(x.shape[1]).to(x.device).standardise(x)
        with eval_mode(self.denoiser):
            return mmse_integral(self.denoiser, u, alpha, alpha_min=self.alpha_min, n_points=self.n_points,
                                 n_noise=self.n_noise, chunk_size=self.chunk_size, generator=generator)


__all__ = ["DiffIB", "fit_alpha_per_sample"]
