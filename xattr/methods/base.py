"""Method contract: ``Method(model, **hparams).attribute(x, target) -> Tensor``.

``x``: ``[B,3,H,W]`` float in ``[0,1]``; ``target``: LongTensor ``[B]``; result float32 on ``x.device``,
``[B,C,H,W]`` (per pixel-channel) or ``[B,1,H,W]`` (per pixel), not normalised.

Optional: ``diagnostics() -> {name: [B]}``, per-image values about the last ``attribute`` call (e.g. a path
method's completeness error, a fit's final loss); the run task writes them to ``per_sample.csv`` and
``summary.csv`` as metric ``<method>/<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from xattr.utils.validate import check_images, check_targets

#: the seed a cache entry built on first use is trained or estimated with (DiffIB's denoiser and alpha-U-Net, the
#: bottlenecks' feature statistics). Their cache keys hold no seed, so they must not depend on the run's seed:
#: else a sweep over seeds would cache whichever job trained first, and a run's result would depend on the
#: runs before it. ``xattr train seed=N`` trains an entry with another seed deliberately.
CACHE_SEED = 0


@dataclass
class RunContext:
    """What a method may need beyond the model, handed to ``prepare`` by the run task.

    ``train_dataset`` is the training split of the run's dataset (feature statistics, fitted
    networks); ``cache_dir`` is where such artefacts are cached, keyed by ``model_name`` and
    ``dataset_name``. From Python, build one yourself or skip ``prepare`` and pass artefacts directly.
    ``seed`` is the run's seed; cached artefacts are built with :data:`CACHE_SEED`, not with it.
    """

    train_dataset: torch.utils.data.Dataset | None = None
    cache_dir: Path = field(default_factory=lambda: Path(".cache"))
    model_name: str = "model"
    dataset_name: str = "dataset"
    device: str = "cpu"
    seed: int = 0


class AttributionMethod:
    """Small base for methods: stores the model and validates inputs before ``_attribute``."""

    #: whether the method's rules are exact on transformer blocks (GELU / LayerNorm)
    supports_transformers: bool = True
    #: whether the method applies to CNNs (transformer-only methods set this to False)
    supports_cnn: bool = True

    def __init__(self, model: nn.Module):
        self.model = model

    @property
    def num_classes(self) -> int | None:
        spec = getattr(self.model, "spec", None)
        return spec.num_classes if spec is not None else None

    def prepare(self, context: RunContext) -> None:
        """Estimate statistics / load or train networks the method needs. Default: nothing."""

    def adopt_model_independent(self, prepared: AttributionMethod) -> None:
        """Take over what ``prepared`` (the same method, prepared for another model) holds that does not depend
        on the model, so a re-prepare for e.g. a randomised copy skips it. Default: nothing."""

    def attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_images(x)
        target = check_targets(target, x.shape[0], self.num_classes).to(x.device)
        maps = self._attribute(x, target)
        return maps.detach().float()

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """Per-image diagnostics ``{name: [B]}`` of the last ``attribute`` call (e.g. a completeness error or a
        fit's final loss), written by the run task as metric ``<method>/<name>``. Default: none."""
        return {}

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.attribute(x, target)
