"""ImageNet CNNs from torchvision: vgg16, resnet50, efficientnet_b0 (weights from torchvision's enums)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.models.registry import register_model, weights_unavailable
from xattr.models.spec import ModelSpec

SOURCE = "torchvision"


def _create(name: str, builder: str, weights_enum: str, pretrained: bool, num_classes: int) -> nn.Module:
    import torchvision.models as tvm

    weights = None
    if pretrained:
        weights = getattr(tvm, weights_enum).IMAGENET1K_V1
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        if not cached.exists():
            try:
                return getattr(tvm, builder)(weights=weights)
            except Exception as error:  # no network: one line, not a traceback
                raise XattrError(weights_unavailable(name, str(cached.parent))) from error
    return getattr(tvm, builder)(weights=weights, num_classes=num_classes)


@register_model("vgg16", SOURCE)
def _build_vgg16(pretrained, num_classes, **_):
    spec = ModelSpec("vgg16", (224, 224), num_classes, "cnn",
                     layers={"bottleneck": "features.17", "gradcam": "features.28"})
    return _create("vgg16", "vgg16", "VGG16_Weights", pretrained, num_classes), spec


@register_model("resnet50", SOURCE)
def _build_resnet50(pretrained, num_classes, **_):
    spec = ModelSpec("resnet50", (224, 224), num_classes, "cnn",
                     layers={"bottleneck": "layer2", "gradcam": "layer4"})
    return _create("resnet50", "resnet50", "ResNet50_Weights", pretrained, num_classes), spec


@register_model("efficientnet_b0", SOURCE)
def _build_efficientnet_b0(pretrained, num_classes, **_):
    spec = ModelSpec("efficientnet_b0", (224, 224), num_classes, "cnn",
                     layers={"bottleneck": "features.4", "gradcam": "features.8"})
    return _create("efficientnet_b0", "efficientnet_b0", "EfficientNet_B0_Weights", pretrained, num_classes), spec
