"""What every zoo model answers the same way: input size, classes, layers of interest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """Static facts about a zoo model (like timm's ``feature_info``).

    ``layers`` maps a role to a dotted module name inside ``ZooModel.net``:
    ``bottleneck`` (IBA's layer), ``gradcam`` (last conv / token layer), and for transformers
    ``block`` / ``norm1`` as templates with ``{i}`` plus ``num_blocks``.
    ``family`` is ``cnn``, ``vit`` or ``swin``; ``token_grid`` the patch grid of a transformer.
    ``kind`` (a class constant) tells a classifier's spec from a text-to-image model's
    (:class:`xattr.models.text_to_image.TextToImageSpec`, ``kind = "text_to_image"``).
    """

    kind: ClassVar[str] = "classifier"
    name: str
    input_size: tuple[int, int]
    num_classes: int
    family: str
    layers: dict[str, str] = field(default_factory=dict)
    num_blocks: int = 0
    token_grid: tuple[int, int] | None = None
    num_prefix_tokens: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def layer(self, role: str, index: int | None = None) -> str:
        """Name of the layer for ``role`` (``index`` fills ``{i}`` templates)."""
        if role not in self.layers:
            raise KeyError(f"model {self.name} declares no layer for role {role!r}; known: {sorted(self.layers)}")
        name = self.layers[role]
        return name.format(i=index) if "{i}" in name else name


class Normalize(nn.Module):
    """``(x - mean) / std`` with per-channel buffers; the first module of every zoo model."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def input_normalization(model: nn.Module, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` float32 ``[C]`` the model normalises its ``[0,1]`` input with (ImageNet's without a spec).

    Models with a different channel count than their constants (e.g. 1-channel digits) get the channel means.
    """
    spec = getattr(model, "spec", None)
    mean = torch.tensor(getattr(spec, "mean", IMAGENET_MEAN), dtype=torch.float32)
    std = torch.tensor(getattr(spec, "std", IMAGENET_STD), dtype=torch.float32)
    if mean.numel() != channels:
        mean, std = mean.mean().expand(channels).clone(), std.mean().expand(channels).clone()
    return mean, std


class OnStandardised(nn.Module):
    """The classifier as a function of the standardised input ``u = (x - mean) / std`` (the space its network
    computes in): ``forward(u) = model(u * std + mean)``; ``u`` ``[B,C,H,W]``, unbounded."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).float())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).float())
        self.train(model.training)  # mode helpers that restore the view's mode must not flip the model's

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(u * self.std.to(u) + self.mean.to(u))


class ZooModel(nn.Module):
    """A classifier that takes ``[B,3,H,W]`` images in ``[0,1]`` and returns logits ``[B,K]``.

    ``net`` is the underlying torchvision/timm/tiny network; layer names in ``spec.layers`` are
    relative to it, so ``model.get_layer('features.17')`` is ``model.net.features[17]``.
    """

    def __init__(self, net: nn.Module, spec: ModelSpec):
        super().__init__()
        self.normalize = Normalize(spec.mean, spec.std)
        self.net = net
        self.spec = spec
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def get_layer(self, name_or_role: str, index: int | None = None) -> nn.Module:
        """Module by dotted name inside ``net``, or by role declared in ``spec.layers``."""
        name = self.spec.layer(name_or_role, index) if name_or_role in self.spec.layers else name_or_role
        try:
            return self.net.get_submodule(name)
        except AttributeError as error:
            raise KeyError(f"model {self.spec.name} has no layer {name!r}") from error

    def layer_name(self, module: nn.Module) -> str:
        """Dotted name (inside ``net``) of ``module``."""
        for name, candidate in self.net.named_modules():
            if candidate is module:
                return name
        raise KeyError("module is not part of this model")
