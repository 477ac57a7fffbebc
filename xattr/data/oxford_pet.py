"""Oxford-IIIT Pet (Parkhi et al. 2012): 37 cat and dog breeds, with trimaps; via ``torchvision.datasets.OxfordIIITPet``.

Layout under ``root`` (default ``${paths.data_dir}``; torchvision's own, ``download=False``)::

    oxford-iiit-pet/images/<Breed>_<N>.jpg
    oxford-iiit-pet/annotations/trainval.txt  test.txt  trimaps/<Breed>_<N>.png

Splits: ``train`` = torchvision's ``trainval`` (3,680 images), ``test`` (3,669). ``label`` = breed index in
torchvision's order (not an ImageNet class: use a model fine-tuned on Pet, or ``target=pred``). ``mask`` = the
trimap's foreground (value 1; the boundary class 3 and the background 2 are not object).
"""

from __future__ import annotations

from pathlib import Path

from xattr.data._torchvision import TorchvisionDataset
from xattr.data.registry import register_dataset


@register_dataset()
class OxfordPetDataset(TorchvisionDataset):
    """Pet images with breed labels and trimap foreground masks."""

    name = "oxford_pet"
    folder = "oxford-iiit-pet"
    layout = ("<root>/oxford-iiit-pet/images/*.jpg and <root>/oxford-iiit-pet/annotations/{trainval,test}.txt, "
              "annotations/trimaps/*.png (torchvision OxfordIIITPet's layout)")
    splits = {"train": "trainval", "trainval": "trainval", "test": "test"}

    def _open(self, root: Path, split: str):
        from torchvision.datasets import OxfordIIITPet

        return OxfordIIITPet(root, split=split, target_types=["category", "segmentation"], download=False)

    def _split(self, sample) -> tuple:
        image, (label, trimap) = sample
        return image, label, trimap.point(lambda v: 255 if v == 1 else 0)
