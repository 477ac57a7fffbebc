"""Oxford Flowers-102 (Nilsback & Zisserman 2008): 102 flower classes; via ``torchvision.datasets.Flowers102``.

Layout under ``root`` (default ``${paths.data_dir}``; torchvision's own, ``download=False``)::

    flowers-102/jpg/image_00001.jpg ...
    flowers-102/imagelabels.mat  flowers-102/setid.mat

Splits as torchvision (the official ``setid.mat``): ``train`` and ``val`` (10 per class each), ``test`` (6,149).
``label`` = class index 0…101 (not an ImageNet class: use a model fine-tuned on Flowers, or ``target=pred``).
"""

from __future__ import annotations

from pathlib import Path

from xattr.data._torchvision import TorchvisionDataset
from xattr.data.registry import register_dataset


@register_dataset()
class Flowers102Dataset(TorchvisionDataset):
    """Flower images with class labels (no masks)."""

    name = "flowers102"
    folder = "flowers-102"
    layout = ("<root>/flowers-102/jpg/image_*.jpg with <root>/flowers-102/imagelabels.mat and setid.mat "
              "(torchvision Flowers102's layout)")
    splits = {"train": "train", "val": "val", "test": "test"}

    def _open(self, root: Path, split: str):
        from torchvision.datasets import Flowers102

        return Flowers102(root, split=split, download=False)

    def _split(self, sample) -> tuple:
        image, label = sample
        return image, label, None
