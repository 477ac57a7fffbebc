"""``whole_image``: the map that marks every pixel — Info-Decomp Table 3's "Whole Image Mask" row, and the method of
the relation-test runs (Tables 1–2), whose metrics score candidate captions and read no map.

``attribute(x, prompts, words) -> ones [B,1,H,W]``. Its IoU with a word's mask is the mask's share of the image at
every threshold; the ``miou`` metric cannot show that (min–max normalisation sends a constant map to 0, which
selects nothing), so the localisation report takes the whole-image row from ``mask_mass.area``
(``scripts/infodecomp_localization_report.py``). Any word is accepted, the empty one too (ARO samples have
``word=""``); any model is accepted (nothing is computed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xattr.errors import XattrError
from xattr.methods.base import AttributionMethod
from xattr.utils.validate import check_images


class WholeImage(AttributionMethod):
    """The all-ones map of a text-to-image sample (module docstring)."""

    kind = "text_image"
    supports_cnn = False
    supports_transformers = False

    @property
    def num_classes(self) -> None:
        return None

    def attribute(self, x: torch.Tensor, prompts: Sequence[str], words: Sequence[str]) -> torch.Tensor:  # type: ignore[override]
        check_images(x)
        if len(prompts) != x.shape[0] or len(words) != x.shape[0]:
            raise XattrError(f"method whole_image: {len(prompts)} prompts and {len(words)} words for {x.shape[0]} "
                             "images; give one of each per image")
        return torch.ones(x.shape[0], 1, *x.shape[-2:], dtype=torch.float32, device=x.device)
