"""oxford_pet / flowers102 through torchvision's classes: samples from a fake Pet folder; one-line missing-data errors."""

from __future__ import annotations

import pytest
from PIL import Image

from xattr.data import Flowers102Dataset, OxfordPetDataset
from xattr.errors import XattrError


def fake_pet(root):
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations" / "trimaps").mkdir(parents=True)
    lines = []
    for i, breed in enumerate(["Abyssinian_1", "american_bulldog_2"]):
        Image.new("RGB", (40, 30), (200, 10 * i, 0)).save(base / "images" / f"{breed}.jpg")
        trimap = Image.new("L", (40, 30), 2)  # background
        trimap.paste(1, (10, 5, 30, 25))  # foreground box
        trimap.save(base / "annotations" / "trimaps" / f"{breed}.png")
        lines.append(f"{breed} {i + 1} {i + 1} 1")
    for split in ("test", "trainval"):
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")


def test_oxford_pet_samples_have_labels_and_trimap_masks(tmp_path):
    fake_pet(tmp_path)
    dataset = OxfordPetDataset(tmp_path, split="test", image_size=16, crop_fraction=1.0)
    assert len(dataset) == 2 and dataset.num_classes == 2
    sample = dataset[1]
    assert sample["image"].shape == (3, 16, 16) and sample["label"] == 1
    assert sample["mask"].dtype.is_floating_point is False and 0 < sample["mask"].float().mean() < 1
    assert len(OxfordPetDataset(tmp_path, split="train", image_size=16)) == 2


@pytest.mark.parametrize(("cls", "folder"), [(OxfordPetDataset, "oxford-iiit-pet"), (Flowers102Dataset, "flowers-102")])
def test_missing_data_is_one_line_naming_the_layout(cls, folder, tmp_path):
    with pytest.raises(XattrError) as info:
        cls(tmp_path)
    message = str(info.value)
    assert "\n" not in message and folder in message and "paths.data_dir" in message
    with pytest.raises(XattrError, match="split"):
        cls(tmp_path, split="everything")
