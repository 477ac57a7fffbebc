"""``random_map``: a uniform random map, the control row of a removal metric's table.

A removal metric (DiffID, insertion, deletion, ROAD) ranks the units of a map; with ``random_map`` that ranking is
a random permutation, so its score is what the metric gives with no attribution at all. A method only
ranks pixels better than chance where it beats this row; where every method ties with it, the metric measures
the classifier's response to the removal itself (e.g. scattered mean-filled pixels being out of distribution),
not the maps (the random baseline of Hooker et al., "A Benchmark for Interpretability Methods in Deep Neural
Networks", NeurIPS 2019, arXiv 1806.10758; Rong et al., ROAD, ICML 2022, arXiv 2202.00449).

``attribute(x, target) -> U(0, 1) [B,C,H,W]`` (one value per pixel-channel, so element-wise rankings are random
too), drawn from a generator seeded by ``seed`` and each image's content (:func:`xattr.utils.seed.image_seeds`):
an image gets the same map in any batch, and the map does not depend on the target or the model.
"""

from __future__ import annotations

import torch

from xattr.methods.base import AttributionMethod
from xattr.utils.seed import image_seeds, make_generator


class RandomMap(AttributionMethod):
    """Seeded uniform noise with the shape of ``x`` (module docstring)."""

    supports_transformers = True
    target_agnostic = True

    def __init__(self, model, seed: int = 0):
        super().__init__(model)
        self.seed = int(seed)

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        maps = [torch.rand(x.shape[1:], generator=make_generator(s)) for s in image_seeds(x, self.seed)]
        return torch.stack(maps).to(device=x.device, dtype=torch.float32)
