"""File datasets (imagenet, imagenet_a/r, fss1000, folder) on tiny synthetic folders built in tmp_path:
labels in torchvision's sorted-wnid order, boxes and masks following the resize/crop of the image
(checked against the pixels of a drawn rectangle), and one-line errors for missing folders/files."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from xattr.data import (
    FolderDataset,
    FSS1000Dataset,
    ImageNetADataset,
    ImageNetDataset,
    ImageNetRDataset,
    boxes_to_mask,
    collate,
)
from xattr.data.transforms import Geometry
from xattr.errors import XattrError

# deliberately unsorted in the file: indices must follow sorted wnid order (torchvision's)
SYNSETS = ["n02000000 zebra thing, other", "n01000000 aardvark", "n03000000 yak", "n01500000 bee"]
SORTED = ["n01000000", "n01500000", "n02000000", "n03000000"]
CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset"


def draw(path: Path, size: tuple[int, int], box: tuple[int, int, int, int] | None, fmt: str = "JPEG") -> None:
    """Black image of ``size`` (w, h) with a white rectangle ``box`` (x0, y0, x1, y1, exclusive end)."""
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        array[y0:y1, x0:x1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, fmt, **({"quality": 100} if fmt == "JPEG" else {}))


def write_synsets(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(SYNSETS) + "\n")


# image id -> (wnid, size (w, h), box)
VAL = {
    "ILSVRC2012_val_00000001": ("n03000000", (100, 200), (10, 50, 60, 150)),
    "ILSVRC2012_val_00000002": ("n01000000", (160, 80), (100, 10, 150, 70)),
    "ILSVRC2012_val_00000003": ("n01500000", (64, 64), (0, 0, 64, 32)),
}


def make_imagenet(root: Path, layout: str = "flat", boxes: str = "csv") -> None:
    write_synsets(root / "LOC_synset_mapping.txt")
    rows = ["ImageId,PredictionString"]
    for image_id, (wnid, size, box) in VAL.items():
        folder = root / "val" / (wnid if layout == "folders" else "")
        draw(folder / f"{image_id}.JPEG", size, box)
        x0, y0, x1, y1 = box
        rows.append(f"{image_id},{wnid} {x0} {y0} {x1} {y1} n02000000 0 0 5 5")  # + another class's box
        if boxes == "xml":
            xml = (f"<annotation><filename>{image_id}</filename><object><name>{wnid}</name><bndbox>"
                   f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                   "</annotation>")
            (root / "val_boxes").mkdir(parents=True, exist_ok=True)
            (root / "val_boxes" / f"{image_id}.xml").write_text(xml)
    if boxes == "csv":
        (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")


def white(image: torch.Tensor) -> torch.Tensor:
    return image.mean(0) > 0.5


def check_box_matches_pixels(sample: dict) -> None:
    """The transformed box covers the white pixels of the transformed image (±1 px of interpolation)."""
    boxes = sample["boxes"]
    assert boxes.shape == (1, 4)
    size = sample["image"].shape[-1]
    from_box = boxes_to_mask(boxes, size, size)
    from_pixels = white(sample["image"])
    disagree = (from_box ^ from_pixels).float()
    perimeter = 2 * ((boxes[0, 2] - boxes[0, 0]) + (boxes[0, 3] - boxes[0, 1])) + 4
    assert disagree.sum() <= perimeter, (disagree.sum(), perimeter)


@pytest.mark.parametrize(("layout", "boxes"), [("flat", "csv"), ("flat", "xml"), ("folders", "csv")])
def test_imagenet_labels_and_boxes(tmp_path, layout, boxes):
    root = tmp_path / "imagenet"
    make_imagenet(root, layout, boxes)
    dataset = ImageNetDataset(root, image_size=32, crop_fraction=0.875)
    assert len(dataset) == 3 and dataset.num_classes == 4
    assert list(dataset.wnids) == SORTED and dataset.class_names[2] == "zebra thing"
    by_id = {dataset[i]["id"]: dataset[i] for i in range(3)}
    for image_id, (wnid, _, _) in VAL.items():
        sample = by_id[image_id]
        assert sample["label"] == SORTED.index(wnid)
        assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
        assert 0 <= sample["image"].min() and sample["image"].max() <= 1
        check_box_matches_pixels(sample)  # only the image's own class box is kept
    batch = collate([dataset[i] for i in range(3)])
    assert batch["label"].tolist() == [SORTED.index(VAL[i][0]) for i in batch["id"]]
    assert len(batch["boxes"]) == 3


def test_imagenet_box_geometry_by_hand(tmp_path):
    root = tmp_path / "imagenet"
    make_imagenet(root)
    sample = next(s for s in ImageNetDataset(root, image_size=28) if s["id"].endswith("1"))
    # 100×200 image, shorter side → round(28 / 0.875) = 32: scale 0.32, 32×64, crop left 2, top 18
    assert Geometry.for_image(100, 200, 28) == Geometry(100, 200, 32, 64, 2, 18, 28)
    expected = torch.tensor([[10 * 0.32 - 2, 50 * 0.32 - 18, 60 * 0.32 - 2, 150 * 0.32 - 18]]).clamp(0, 28)
    torch.testing.assert_close(sample["boxes"], expected)


def test_imagenet_subset_and_flat_without_labels(tmp_path):
    root = tmp_path / "imagenet"
    make_imagenet(root)
    subset = ImageNetDataset(root, image_size=16, n_samples=2, seed=3)
    assert len(subset) == 2
    assert [s["id"] for s in subset] == [s["id"] for s in ImageNetDataset(root, image_size=16, n_samples=2, seed=3)]
    (root / "LOC_val_solution.csv").unlink()
    with pytest.raises(XattrError, match="no label for flat val image"):
        ImageNetDataset(root, image_size=16)


def test_missing_roots_are_one_line_errors(tmp_path):
    cases = [
        (lambda: ImageNetDataset(tmp_path / "imagenet"), "imagenet"),
        (lambda: ImageNetADataset(tmp_path / "imagenet-a"), "imagenet-a"),
        (lambda: ImageNetRDataset(tmp_path / "imagenet-r"), "imagenet-r"),
        (lambda: FSS1000Dataset(tmp_path / "fss1000"), "fss1000"),
        (lambda: FolderDataset(tmp_path / "folder"), "folder"),
    ]
    for build, subdir in cases:
        with pytest.raises(XattrError) as error:
            build()
        message = str(error.value)
        assert "\n" not in message and "paths.data_dir=" in message and "expected" in message
        assert f"{subdir}/" in message


def test_missing_synset_file(tmp_path):
    root = tmp_path / "imagenet"
    make_imagenet(root)
    (root / "LOC_synset_mapping.txt").unlink()
    with pytest.raises(XattrError, match="LOC_synset_mapping.txt not found"):
        ImageNetDataset(root)


@pytest.mark.parametrize("cls", [ImageNetADataset, ImageNetRDataset])
def test_imagenet_variants_map_to_1000_class_indices(tmp_path, cls):
    write_synsets(tmp_path / "imagenet" / "LOC_synset_mapping.txt")  # found next to the imagenet data
    root = tmp_path / cls.folder_name
    draw(root / "n03000000" / "a.jpg", (40, 30), (5, 5, 20, 20))
    draw(root / "n01500000" / "b.jpg", (30, 40), None)
    draw(root / "n01500000" / "c.jpg", (30, 40), None)
    dataset = cls(root, image_size=16)
    assert [s["label"] for s in dataset] == [1, 1, 3]
    assert dataset.subset_indices == [1, 3] and dataset.num_classes == 4
    assert "boxes" not in dataset[0] and dataset[0]["id"] == "n01500000/b"


def make_fss(root: Path) -> None:
    for name, count in (("zucchini", 4), ("abacus", 3)):
        for n in range(1, count + 1):
            box = (4 * n, 8, 4 * n + 20, 40)
            draw(root / name / f"{n}.jpg", (64, 48), box)
            draw(root / name / f"{n}.png", (64, 48), box, fmt="PNG")


def test_fss1000_masks_labels_and_splits(tmp_path):
    root = tmp_path / "fss1000"
    make_fss(root)
    dataset = FSS1000Dataset(root, image_size=32)
    assert dataset.class_names == ("abacus", "zucchini") and len(dataset) == 7
    labels = {s["id"]: s["label"] for s in dataset}
    assert labels["abacus/1"] == 0 and labels["zucchini/4"] == 1
    for sample in dataset:
        mask = sample["mask"]
        assert mask.shape == (32, 32) and mask.dtype == torch.bool and mask.any()
        # mask and image went through the same resize/crop: the white rectangle lies on the mask
        assert (mask ^ white(sample["image"])).sum() <= 2 * 32
        check_box_matches_pixels(sample)
    train = [s["id"] for s in FSS1000Dataset(root, split="train", image_size=32)]
    test = [s["id"] for s in FSS1000Dataset(root, split="test", image_size=32)]
    assert train == ["abacus/1", "abacus/2", "zucchini/1", "zucchini/2"]
    assert test == ["abacus/3", "zucchini/3", "zucchini/4"]


def test_folder_with_optional_masks(tmp_path):
    root, masks = tmp_path / "folder", tmp_path / "masks"
    draw(root / "dog" / "x.png", (20, 20), (0, 0, 10, 10), fmt="PNG")
    draw(root / "cat" / "y.jpg", (20, 20), None)
    draw(masks / "dog" / "x.png", (20, 20), (0, 0, 10, 10), fmt="PNG")
    plain = FolderDataset(root, image_size=20, crop_fraction=1.0)
    assert plain.class_names == ("cat", "dog") and [s["label"] for s in plain] == [0, 1]
    assert "mask" not in plain[1]
    with pytest.warns(UserWarning, match="1 images have no mask"):
        masked = FolderDataset(root, image_size=20, crop_fraction=1.0, mask_root=masks)
    assert masked[1]["mask"][:10, :10].all() and not masked[1]["mask"][10:].any()


def test_dataset_configs_instantiate_with_data_dir(tmp_path):
    make_imagenet(tmp_path / "imagenet")
    make_fss(tmp_path / "fss1000")
    for name, expected in (("imagenet", 3), ("fss1000", 7)):
        cfg = OmegaConf.create({"paths": {"data_dir": str(tmp_path)}, "dataset": OmegaConf.load(CONF / f"{name}.yaml")})
        cfg.dataset.image_size = 16
        dataset = hydra.utils.instantiate(cfg.dataset)
        assert len(dataset) == expected and dataset[0]["image"].shape == (3, 16, 16)
    cfg = OmegaConf.create({"paths": {"data_dir": str(tmp_path / "nowhere")}, "dataset": OmegaConf.load(CONF / "folder.yaml")})
    with pytest.raises(Exception) as error:  # hydra wraps it; the CLI reports the XattrError cause
        hydra.utils.instantiate(cfg.dataset)
    cause = error.value if isinstance(error.value, XattrError) else error.value.__cause__
    assert isinstance(cause, XattrError) and "paths.data_dir=" in str(cause)
