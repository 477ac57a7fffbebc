"""ImageNet CNNs from torchvision: vgg16, resnet50, efficientnet_b0, resnet18, googlenet (weights from torchvision's enums).

GoogLeNet: random init without the auxiliary heads (``aux_logits=False``); with weights torchvision sets
``transform_input=True``, which maps our ImageNet-normalised input to the normalisation its weights expect.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.models.registry import register_model, weights_unavailable
from xattr.models.spec import ModelSpec

SOURCE = "torchvision"


#: model name (= torchvision builder) → (weights enum, IBA bottleneck layer, Grad-CAM layer)
MODELS = {
    "vgg16": ("VGG16_Weights", "features.17", "features.28"),
    "resnet50": ("ResNet50_Weights", "layer2", "layer4"),
    "efficientnet_b0": ("EfficientNet_B0_Weights", "features.4", "features.8"),
    "resnet18": ("ResNet18_Weights", "layer2", "layer4"),  # ResNet layers as resnet50
    "googlenet": ("GoogLeNet_Weights", "inception4a", "inception5b"),  # guess: mid block / last inception block
}
#: builder options for random init (weights=None)
RANDOM_INIT_OPTIONS = {"googlenet": {"aux_logits": False, "init_weights": True}}


def _create(name: str, weights_enum: str, pretrained: bool, num_classes: int) -> nn.Module:
    import torchvision.models as tvm

    weights = None
    if pretrained:
        weights = getattr(tvm, weights_enum).IMAGENET1K_V1
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        if not cached.exists():
            try:
                return getattr(tvm, name)(weights=weights)
            except Exception as error:  # no network: one line, not a traceback
                raise XattrError(weights_unavailable(name, str(cached.parent))) from error
    options = {} if pretrained else RANDOM_INIT_OPTIONS.get(name, {})
    return getattr(tvm, name)(weights=weights, num_classes=num_classes, **options)


def _builder(name: str, weights_enum: str, bottleneck: str, gradcam: str):
    def build(pretrained, num_classes, **_):
        spec = ModelSpec(name, (224, 224), num_classes, "cnn", layers={"bottleneck": bottleneck, "gradcam": gradcam})
        return _create(name, weights_enum, pretrained, num_classes), spec

    return build


for _name, (_weights, _bottleneck, _gradcam) in MODELS.items():
    register_model(_name, SOURCE)(_builder(_name, _weights, _bottleneck, _gradcam))
