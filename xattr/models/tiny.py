"""Small offline classifiers trained here (source ``ours``): ``tiny_cnn`` (VGG-like) and ``tiny_vit`` (timm ViT)."""

from __future__ import annotations

import torch.nn as nn

from xattr.models.registry import OURS, register_model
from xattr.models.spec import ModelSpec


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    # Separate ReLU modules (never reused): DeepLIFT and Guided-BP attach rules per module.
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class TinyCNN(nn.Module):
    """VGG-style CNN for 64×64 inputs: ``features`` (4 stages, 8 convs) → ``pool`` → ``classifier``.

    Layer names mirror VGG16 (``features.N``) so IBA/Grad-CAM code paths are the same.
    ``features.13`` (after stage 2, 16×16×64) plays the role of VGG16's ``features.17``.
    """

    def __init__(self, num_classes: int = 6, width: int = 16, in_channels: int = 3):
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        layers += _conv_block(in_channels, w) + _conv_block(w, w) + [nn.MaxPool2d(2)]  # 0..6, 32x32
        layers += _conv_block(w, 2 * w) + _conv_block(2 * w, 2 * w) + [nn.MaxPool2d(2)]  # 7..13, 16x16
        layers += _conv_block(2 * w, 4 * w) + _conv_block(4 * w, 4 * w) + [nn.MaxPool2d(2)]  # 14..20, 8x8
        layers += _conv_block(4 * w, 4 * w) + _conv_block(4 * w, 4 * w)  # 21..26, 8x8
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(4 * w, num_classes))

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.features(x))))


def conv_stem(dim: int, patch_size: int, in_channels: int = 3) -> nn.Sequential:
    """Convolutional patch embedding: log2(patch_size) stride-2 3×3 convs → ``[B,dim,H/p,W/p]``.

    Replaces the single patchify conv of a ViT ("early convolutions help transformers see better",
    Xiao et al. 2021): on 2 CPU cores a patchify tiny ViT stayed at chance on ``shapes`` for 10 epochs,
    while this stem learns in a few. The token grid (and so every token/attention method) is unchanged.
    """
    n_down = int(patch_size).bit_length() - 1
    if 2**n_down != patch_size or n_down < 1:
        raise ValueError(f"conv stem needs a power-of-two patch_size >= 2, got {patch_size}")
    widths = [in_channels] + [max(dim // 2 ** (n_down - k), 16) for k in range(1, n_down)] + [dim]
    layers: list[nn.Module] = []
    for k in range(n_down):
        layers.append(nn.Conv2d(widths[k], widths[k + 1], 3, stride=2, padding=1))
        if k < n_down - 1:
            layers += [nn.BatchNorm2d(widths[k + 1]), nn.ReLU()]
    return nn.Sequential(*layers)


def tiny_vit(num_classes: int = 6, image_size: int = 64, patch_size: int = 8, dim: int = 96,
             depth: int = 6, heads: int = 4) -> nn.Module:
    """A timm ``VisionTransformer`` small enough to train on 2 CPU cores (8×8 token grid at 64 px).

    Standard timm blocks (``blocks.{i}.norm1``, ``attn`` with ``fused_attn``), CLS token pooling, and a
    convolutional stem as ``patch_embed.proj`` (see ``conv_stem``).
    """
    from timm.models.vision_transformer import VisionTransformer

    net = VisionTransformer(img_size=image_size, patch_size=patch_size, num_classes=num_classes,
                            embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=2.0,
                            class_token=True, global_pool="token")
    net.patch_embed.proj = conv_stem(dim, patch_size)
    return net


@register_model("tiny_cnn", OURS)
def _build_tiny_cnn(pretrained, num_classes, image_size=64, width=16, **_):
    spec = ModelSpec("tiny_cnn", (image_size, image_size), num_classes, "cnn",
                     layers={"bottleneck": "features.13", "gradcam": "features.24"})
    return TinyCNN(num_classes=num_classes, width=width), spec


@register_model("tiny_vit", OURS)
def _build_tiny_vit(pretrained, num_classes, image_size=64, patch_size=8, dim=96, depth=6, heads=4, **_):
    net = tiny_vit(num_classes, image_size, patch_size, dim, depth, heads)
    grid = image_size // patch_size
    spec = ModelSpec("tiny_vit", (image_size, image_size), num_classes, "vit",
                     layers={"block": "blocks.{i}", "norm1": "blocks.{i}.norm1", "bottleneck": "blocks.1",
                             "gradcam": f"blocks.{depth - 1}.norm1"},
                     num_blocks=depth, token_grid=(grid, grid), num_prefix_tokens=1)
    return net, spec
