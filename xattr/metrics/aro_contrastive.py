"""Relation testing with a contrastive dual encoder (Info-Decomp Table 1's "OpenCLIP" row; ARO).

``s(x, y) = ⟨f(x), g(y)⟩``, the cosine of the unit image and text embeddings (Sec. 3.1), for every candidate
caption of an image (the true one first, ``candidates``); the outputs are those of :mod:`xattr.metrics.aro`
(``correct``, ``margin``, ``pairwise``), with strict ``>`` (ties fail). The encoder is not the run's model:

- ``encoder: tiny`` — :class:`xattr.models.contrastive.TinyDualEncoder` from ``path`` or the cache entry
  ``<cache_dir>/contrastive/tiny_contrastive-<dataset>-<image_size>.pt`` written by
  ``xattr train task=contrastive dataset=shapes_captions`` (a metric trains nothing: a missing file is one line
  saying how to train it);
- ``encoder: open_clip`` — OpenCLIP ``architecture``/``pretrained`` (ViT-H-14 / laion2b_s32b_b79k, SD 2.1's text
  encoder) from its cache.

Deterministic: nothing is drawn.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xattr.errors import XattrError
from xattr.metrics.aro import check_candidates, relation_outputs

ENCODERS = ("tiny", "open_clip")


class AROContrastive:
    """``AROContrastive(encoder="tiny", path=None, cache_dir=".cache", dataset="shapes_captions", image_size=32,
    architecture="ViT-H-14", pretrained="laion2b_s32b_b79k")(model, x, maps, target, candidates=...)`` →
    ``{"correct": [B], "margin": [B], "pairwise": [B,K−1]}``. The encoder is loaded on first use."""

    def __init__(self, encoder: str = "tiny", path: str | None = None, cache_dir: str = ".cache",
                 dataset: str = "shapes_captions", image_size: int = 32, architecture: str = "ViT-H-14",
                 pretrained: str = "laion2b_s32b_b79k"):
        if encoder not in ENCODERS:
            raise XattrError(f"aro_contrastive: encoder={encoder!r}; use metric.aro_contrastive.encoder=tiny or "
                             "open_clip")
        self.encoder_name, self.path, self.cache_dir = encoder, path, cache_dir
        self.dataset, self.image_size = str(dataset), int(image_size)
        self.architecture, self.pretrained = architecture, pretrained
        self._encoder = None

    def encoder(self, device: torch.device | str):
        if self._encoder is None:
            from xattr.models.contrastive import OpenCLIPEncoder, load_dual_encoder

            if self.encoder_name == "open_clip":
                self._encoder = OpenCLIPEncoder(self.architecture, self.pretrained, self.cache_dir, device)
            else:
                path = Path(self.path) if self.path else (Path(self.cache_dir) / "contrastive" /
                                                          f"tiny_contrastive-{self.dataset}-{self.image_size}.pt")
                self._encoder = load_dual_encoder(path, device)
        return self._encoder

    @torch.no_grad()
    def scores(self, x: torch.Tensor, candidates) -> torch.Tensor:
        """Cosine similarities ``[B,K]`` of each image with each of its candidates."""
        lists = check_candidates(candidates, x.shape[0], "aro_contrastive")
        encoder = self.encoder(x.device)
        image = encoder.encode_image(x)                                                      # [B,D]
        text = encoder.encode_text([t for texts in lists for t in texts]).view(len(lists), len(lists[0]), -1)
        return torch.einsum("bd,bkd->bk", image.to(text), text)

    def __call__(self, model, x: torch.Tensor, maps=None, target=None, candidates=None,
                 **ground_truth) -> dict[str, torch.Tensor]:
        return relation_outputs(self.scores(x, candidates))


__all__ = ["AROContrastive", "ENCODERS"]
