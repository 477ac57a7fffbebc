"""ImageNet transformers from timm: vit_b16, deit_b16, swin_b (weights from timm's Hugging Face tags)."""

from __future__ import annotations

import torch.nn as nn

from xattr.errors import XattrError
from xattr.models.registry import register_model, weights_unavailable
from xattr.models.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

SOURCE = "timm"
#: ViT-B/16s with a class token at 224 px (``_vit_spec``): model name → timm architecture
VITS = {"vit_b16": "vit_base_patch16_224", "deit_b16": "deit_base_patch16_224"}


def _host_resolves(host: str) -> bool:
    """DNS look-up of ``host``: a fast offline test (no retries, no traffic beyond the resolver)."""
    import socket

    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _timm_cached_file(arch: str) -> str | None:
    """Path of the cached Hugging Face weights of timm's default tag for ``arch``, if present."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None or not cfg.hf_hub_id:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(cfg.hf_hub_id, filename)
        if isinstance(found, str):
            return found
    return None


def _create(name: str, arch: str, pretrained: bool, num_classes: int) -> nn.Module:
    import timm

    if pretrained:
        from huggingface_hub.constants import HF_HUB_CACHE

        cached = _timm_cached_file(arch)
        if cached is not None:
            return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": cached})
        if not _host_resolves("huggingface.co"):
            raise XattrError(weights_unavailable(name, HF_HUB_CACHE))
        try:
            return timm.create_model(arch, pretrained=True)
        except Exception as error:
            raise XattrError(weights_unavailable(name, HF_HUB_CACHE)) from error
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)


def _timm_norm(arch: str) -> tuple[tuple, tuple]:
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean), tuple(cfg.std)


def _vit_spec(name: str, arch: str, num_classes: int, size: int = 224, patch: int = 16, depth: int = 12) -> ModelSpec:
    mean, std = _timm_norm(arch)
    return ModelSpec(name=name, input_size=(size, size), num_classes=num_classes, family="vit",
                     layers={"block": "blocks.{i}", "norm1": "blocks.{i}.norm1", "bottleneck": "blocks.4",
                             "gradcam": f"blocks.{depth - 1}.norm1"},
                     num_blocks=depth, token_grid=(size // patch, size // patch), num_prefix_tokens=1,
                     mean=mean, std=std)


def _vit_builder(name: str, arch: str):
    def build(pretrained, num_classes, **_):
        return _create(name, arch, pretrained, num_classes), _vit_spec(name, arch, num_classes)

    return build


for _name, _arch in VITS.items():
    register_model(_name, SOURCE)(_vit_builder(_name, _arch))


@register_model("swin_b", SOURCE)
def _build_swin_b(pretrained, num_classes, **_):
    arch = "swin_base_patch4_window7_224"
    mean, std = _timm_norm(arch)
    spec = ModelSpec("swin_b", (224, 224), num_classes, "swin",
                     layers={"stage": "layers.{i}", "block": "layers.{i}", "bottleneck": "layers.1",
                             "gradcam": "layers.3"},
                     num_blocks=4, token_grid=(7, 7), num_prefix_tokens=0, mean=mean, std=std)
    return _create("swin_b", arch, pretrained, num_classes), spec
