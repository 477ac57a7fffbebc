"""Contrastive image–text dual encoders: the relation-test baseline of Info-Decomp Table 1 ("OpenCLIP").

Both answer the same two questions: ``encode_image(x [B,3,H,W] in [0,1]) -> [B,D]`` and
``encode_text(texts: list[str]) -> [B,D]``, L2-normalised, so the alignment score of ARO is the cosine
``s(x, y) = ⟨f(x), g(y)⟩`` (Sec. 3.1: "for contrastive VLMs, s is the cosine similarity").

- :class:`TinyDualEncoder` (tiny scale): the text tower is ``tiny_t2i``'s — the same word tokenizer
  (:func:`~xattr.models.tiny_t2i.build_word_tokenizer`) and the same 2-layer CLIP text model
  (:func:`~xattr.models.tiny_t2i.tiny_text_config`), pooled at the end token as CLIP does, then a linear
  projection; the image tower is a small CNN (three stride-2 convolutions, a 4×4 adaptive pool that keeps where
  things are — relations are about position — and a linear projection). Trained by
  ``xattr train task=contrastive`` (:mod:`xattr.training.contrastive`, CLIP's InfoNCE), saved as one file
  ``{"config", "model"}`` (plain values, read weights-only) by :func:`save_dual_encoder`.
- :class:`OpenCLIPEncoder` (paper scale): OpenCLIP ViT-H-14 (``laion2b_s32b_b79k``, the text encoder of SD 2.1)
  through ``open_clip_torch`` (the optional extra ``pip install -e ".[openclip]"``), weights from its cache;
  offline with nothing cached it is one line naming the model, the cache folder and the way to fetch it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from xattr.errors import XattrError


class TinyDualEncoder(nn.Module):
    """A CLIP-style dual encoder for captions of ``vocabulary`` and ``image_size`` px images (module docstring)."""

    def __init__(self, vocabulary: Sequence[str], image_size: int = 32, text_width: int = 64, embed_dim: int = 64,
                 image_width: int = 32, max_length: int = 32):
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel

        from xattr.models.tiny_t2i import build_word_tokenizer, tiny_text_config

        self.config = dict(vocabulary=sorted({str(w) for w in vocabulary}), image_size=int(image_size),
                           text_width=int(text_width), embed_dim=int(embed_dim), image_width=int(image_width),
                           max_length=int(max_length))
        self.tokenizer = build_word_tokenizer(self.config["vocabulary"], max_length=max_length)
        self.text_model = CLIPTextModel(CLIPTextConfig(**tiny_text_config(self.tokenizer, width=text_width)))
        self.text_projection = nn.Linear(text_width, embed_dim, bias=False)
        w = int(image_width)
        self.image_model = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.image_projection = nn.Linear(4 * w * 16, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B,3,H,W]`` in ``[0,1]`` (resized to ``image_size`` when needed) → unit vectors ``[B,D]``."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise XattrError(f"encode_image needs [B,3,H,W] images in [0,1], got shape {tuple(x.shape)}")
        size = self.config["image_size"]
        x = x.to(self.device, torch.float32)
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return F.normalize(self.image_projection(self.image_model(2 * x - 1)), dim=-1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """``B`` captions → unit vectors ``[B,D]`` (the end token's last hidden state, projected)."""
        tokens = self.tokenizer(list(texts), padding="max_length", max_length=self.config["max_length"],
                                truncation=True, return_tensors="pt").to(self.device)
        pooled = self.text_model(**tokens).pooler_output
        return F.normalize(self.text_projection(pooled), dim=-1)

    def forward(self, x: torch.Tensor, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(encode_image(x), encode_text(texts))`` (one call, so a DDP wrapper sees the whole step)."""
        return self.encode_image(x), self.encode_text(texts)


def save_dual_encoder(model: TinyDualEncoder, path: str | Path) -> Path:
    """``{"config", "model"}`` (plain values and tensors) at ``path``, written atomically."""
    from xattr.utils.io import atomic_torch_save

    path = Path(path)
    atomic_torch_save(path, {"config": dict(model.config), "model": model.state_dict()})
    return path


def load_dual_encoder(path: str | Path, device: str | torch.device = "cpu") -> TinyDualEncoder:
    """A :class:`TinyDualEncoder` written by :func:`save_dual_encoder` (eval mode); one line when it is missing
    or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise XattrError(f"no contrastive dual encoder at {path}; train it with `xattr train task=contrastive "
                         "dataset=shapes_captions` (or set the metric's path=FILE)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = TinyDualEncoder(**state["config"])
        model.load_state_dict(state["model"])
    except Exception as error:  # noqa: BLE001 - any unreadable or mismatched file is the same one-line advice
        raise XattrError(f"cannot load the contrastive dual encoder {path} ({type(error).__name__}); delete it and "
                         "retrain with `xattr train task=contrastive dataset=shapes_captions`") from error
    return model.to(device).eval()


#: CLIP's image normalisation (OpenCLIP ViT-H-14 uses OpenAI's mean and std)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


class OpenCLIPEncoder(nn.Module):
    """OpenCLIP ``architecture`` / ``pretrained`` (default ViT-H-14 / laion2b_s32b_b79k) behind the same interface.

    Images are resized (bicubic, no crop — as the diffusion side resizes without cropping) to the model's input
    size and normalised with CLIP's mean/std; texts go through OpenCLIP's tokenizer (77 tokens)."""

    def __init__(self, architecture: str = "ViT-H-14", pretrained: str = "laion2b_s32b_b79k",
                 cache_dir: str | None = None, device: str | torch.device = "cpu"):
        super().__init__()
        try:
            import open_clip
        except ImportError as error:
            raise XattrError("the OpenCLIP baseline needs open_clip_torch; install the extra with "
                             "`pip install -e \".[openclip]\"` (or use the tiny contrastive model)") from error
        try:
            model, _, _ = open_clip.create_model_and_transforms(architecture, pretrained=pretrained,
                                                                cache_dir=cache_dir, device=device)
        except Exception as error:  # noqa: BLE001 - offline / missing weights: one line, whatever the hub raised
            where = cache_dir or "the Hugging Face cache ($HF_HUB_CACHE or ~/.cache/huggingface/hub)"
            raise XattrError(f"OpenCLIP {architecture} ({pretrained}) weights are not in {where} and cannot be "
                             f"fetched ({type(error).__name__}); download them once online or pass "
                             "metric.aro_contrastive.cache_dir=DIR") from error
        self.model, self.tokenizer = model.eval(), open_clip.get_tokenizer(architecture)
        size = getattr(model.visual, "image_size", 224)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x.to(self.device, torch.float32), size=self.image_size, mode="bicubic",
                          align_corners=False).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return F.normalize(self.model.encode_image((x - mean) / std).float(), dim=-1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float(), dim=-1)


__all__ = ["TinyDualEncoder", "OpenCLIPEncoder", "save_dual_encoder", "load_dual_encoder"]
