"""coco_it / coco100_it and the ARO datasets on tiny fake layouts written in tmp_path; COCO mask decoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xattr.data import (
    AROCOCOOrderDataset,
    AROFlickrOrderDataset,
    AROVGAttributionDataset,
    AROVGRelationDataset,
    COCO100ITDataset,
    COCOITDataset,
    collate,
)
from xattr.data.aro import ORDER_PERTURBATIONS, clean_caption, order_perturbation, pos_tag
from xattr.data.coco import naming_form, plural_forms, rle_counts_from_string, rle_decode, segmentation_mask
from xattr.errors import XattrError

# ---------------------------------------------------------------------------------------- RLE / masks


def _rle_string(counts: list[int]) -> str:
    """Test-only encoder (pycocotools' rleToString), to round-trip the decoder."""
    out = []
    for i, value in enumerate(counts):
        x = value - counts[i - 2] if i > 2 else value
        more = True
        while more:
            chunk = x & 0x1F
            x >>= 5
            more = x != -1 if chunk & 0x10 else x != 0
            if more:
                chunk |= 0x20
            out.append(chr(chunk + 48))
    return "".join(out)


def test_compressed_rle_hand_made_example():
    # [0, 10, 2, 3]: '0' = 0, ':' = 10, '2' = 2, then 3 - 10 = -7 → 25 with the sign bit → 'I'
    assert rle_counts_from_string("0:2I") == [0, 10, 2, 3]
    assert rle_counts_from_string("T3") == [100]  # 100 = 4 + 3·32: chunk 4 with continuation, then 3
    rng = np.random.default_rng(0)
    counts = [int(v) for v in rng.integers(0, 300, size=40)]
    assert rle_counts_from_string(_rle_string(counts)) == counts


def test_rle_decode_is_column_major():
    mask = np.zeros((4, 3), dtype=bool)
    mask[1:3, 1] = True  # column 1, rows 1-2
    mask[3, 2] = True
    # column-major order: col0 (4 zeros), col1 (0,1,1,0), col2 (0,0,0,1) → runs 5 zeros, 2 ones, 4 zeros, 1 one
    counts = [5, 2, 4, 1]
    assert np.array_equal(rle_decode({"size": [4, 3], "counts": counts}), mask)
    assert np.array_equal(rle_decode({"size": [4, 3], "counts": _rle_string(counts)}), mask)
    with pytest.raises(XattrError, match="damaged"):
        rle_decode({"size": [4, 3], "counts": [5, 2]})


def test_polygon_mask_uses_pixel_centres():
    mask = segmentation_mask([[2, 3, 10, 3, 10, 8, 2, 8]], 12, 14)  # x 2..10, y 3..8
    expected = np.zeros((12, 14), dtype=bool)
    expected[3:8, 2:10] = True
    assert np.array_equal(mask, expected)


def test_plurals_and_naming_form():
    assert plural_forms("dog") == ("dog", "dogs") and plural_forms("bus") == ("bus", "buses")
    assert plural_forms("person") == ("person", "people", "persons")
    assert plural_forms("teddy bear") == ("teddy bear", "teddy bears")
    assert naming_form("Two Dogs and a dog", "dog") == "dogs"  # the form that occurs first (any case)
    assert naming_form("a man catches a ball", "cat") is None  # whole words only
    assert naming_form("People at a table", "person") == "people"


# ------------------------------------------------------------------------------------------ fake COCO

def _write_image(path: Path, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def _fake_coco(root: Path) -> None:
    _write_image(root / "val2017" / "000000000001.png", (20, 20), 1)
    _write_image(root / "val2017" / "000000000002.png", (20, 20), 2)
    person = np.zeros((20, 20), dtype=bool)
    person[10:15, 12:18] = True
    flat = person.T.reshape(-1)
    runs, value, count = [], False, 0
    for pixel in flat:  # column-major runs, starting with zeros
        if pixel != value:
            runs.append(count)
            value, count = pixel, 0
        count += 1
    runs.append(count)
    instances = {
        "images": [{"id": 1, "file_name": "000000000001.png", "width": 20, "height": 20},
                   {"id": 2, "file_name": "000000000002.png", "width": 20, "height": 20}],
        "categories": [{"id": 1, "name": "person"}, {"id": 17, "name": "cat"}, {"id": 18, "name": "dog"},
                       {"id": 88, "name": "teddy bear"}],
        "annotations": [
            {"image_id": 1, "category_id": 18, "segmentation": [[2, 3, 10, 3, 10, 8, 2, 8]], "iscrowd": 0},
            {"image_id": 1, "category_id": 18, "segmentation": {"size": [20, 20], "counts": [20 * 15 + 2, 3,
                                                                                             400 - 305]},
             "iscrowd": 1},
            {"image_id": 1, "category_id": 1, "segmentation": {"size": [20, 20], "counts": _rle_string(runs)},
             "iscrowd": 0},
            {"image_id": 1, "category_id": 17, "segmentation": [[0, 0, 4, 0, 4, 4]], "iscrowd": 0},
            {"image_id": 2, "category_id": 88, "segmentation": [[1, 1, 19, 1, 19, 19, 1, 19]], "iscrowd": 0},
        ],
    }
    captions = {"annotations": [
        {"image_id": 1, "caption": "A man catches a frisbee."},
        {"image_id": 1, "caption": "Two dogs and a person in a park."},
        {"image_id": 1, "caption": "A dog runs."},
        {"image_id": 2, "caption": "A hot dog on a plate."},
        {"image_id": 2, "caption": "Teddy bears on a bed"},
    ]}
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps(captions))


def test_coco_it_pairs_and_masks(tmp_path):
    _fake_coco(tmp_path / "coco")
    dataset = COCOITDataset(tmp_path / "coco", image_size=20)
    pairs = [(s["id"], s["word"], s["category"], s["caption"]) for s in dataset]
    assert pairs == [  # image order, then category id; no cat ("catches"); the first caption that names it
        ("000000000001-person", "person", "person", "Two dogs and a person in a park."),
        ("000000000001-dog", "dogs", "dog", "Two dogs and a person in a park."),
        ("000000000002-teddy_bear", "teddy bears", "teddy bear", "Teddy bears on a bed"),
    ]
    dog = dataset[1]
    expected = np.zeros((20, 20), dtype=bool)
    expected[3:8, 2:10] = True  # the polygon
    expected[2:5, 15] = True  # the crowd RLE: column 15, rows 2-4
    assert dog["mask"].dtype == torch.bool and np.array_equal(dog["mask"].numpy(), expected)
    assert dog["label"] == dataset.class_names.index("dog") and dataset.class_names[0] == "person"
    person = dataset[0]["mask"].numpy()
    assert person.sum() == 30 and person[10:15, 12:18].all()
    image = np.asarray(Image.open(tmp_path / "coco" / "val2017" / "000000000001.png"), dtype=np.float32) / 255
    assert torch.allclose(dog["image"], torch.from_numpy(image).permute(2, 0, 1), atol=1e-6)
    small = COCOITDataset(tmp_path / "coco", image_size=10)
    assert small[1]["image"].shape == (3, 10, 10) and small[1]["mask"].shape == (10, 10)
    batch = collate([dataset[0], dataset[1]])
    assert batch["word"] == ["person", "dogs"] and batch["category"] == ["person", "dog"]
    hundred = COCO100ITDataset(tmp_path / "coco", image_size=20)
    assert [s["category"] for s in hundred] == ["person", "dog", "teddy bear"]  # all of the 10 categories


def test_coco_missing_files_is_one_line(tmp_path):
    with pytest.raises(XattrError) as error:
        COCOITDataset(tmp_path / "nowhere")
    message = str(error.value)
    assert "\n" not in message and "paths.data_dir" in message and "captions_val2017.json" in message
    assert "instances_val2017.json" in message and "val2017" in message


# ------------------------------------------------------------------------------------------- fake ARO

def _fake_vg(root: Path) -> None:
    _write_image(root / "images" / "1.jpg", (30, 20), 3)
    relation = [
        {"image_id": 1, "image_path": "1.jpg", "bbox_x": 5, "bbox_y": 2, "bbox_w": 10, "bbox_h": 12,
         "true_caption": "the cup is on the table", "false_caption": "the table is on the cup",
         "relation_name": "on"},
        {"image_id": 1, "image_path": "1.jpg", "bbox_x": 0, "bbox_y": 0, "bbox_w": 30, "bbox_h": 20,
         "true_caption": "the dog is to the left of the cat", "false_caption": "the cat is to the left of the dog",
         "relation_name": "to the left of"},
    ]
    attribution = [
        {"image_id": 1, "image_path": "1.jpg", "bbox_x": 5, "bbox_y": 2, "bbox_w": 10, "bbox_h": 12,
         "true_caption": "the white cup and the wooden table", "false_caption": "the wooden cup and the white table",
         "attributes": ["white", "wooden"]},
    ]
    (root / "visual_genome_relation.json").write_text(json.dumps(relation))
    (root / "visual_genome_attribution.json").write_text(json.dumps(attribution))


def test_vg_relation_and_attribution(tmp_path):
    _fake_vg(tmp_path / "aro")
    relation = AROVGRelationDataset(tmp_path / "aro", image_size=10)
    first = relation[0]
    assert first["candidates"] == ["the cup is on the table", "the table is on the cup"]  # true first
    assert first["caption"] == first["candidates"][0] and first["relation"] == "on" and first["word"] == ""
    assert relation[1]["relation"] == "to the left of"
    cropped = AROVGRelationDataset(tmp_path / "aro", image_size=12, n_samples=1)  # crop 10x12 → 12x12
    assert cropped[0]["image"].shape == (3, 12, 12)
    pixels = np.asarray(Image.open(tmp_path / "aro" / "images" / "1.jpg").convert("RGB"), dtype=np.float32) / 255
    whole = AROVGRelationDataset(tmp_path / "aro", image_size=20)[1]["image"]  # full box 30x20 → 20x20
    assert whole.shape == (3, 20, 20) and abs(float(whole.mean()) - pixels.mean()) < 0.02
    attribution = AROVGAttributionDataset(tmp_path / "aro", image_size=8)
    assert attribution[0]["attribute"] == "white_wooden" and len(attribution[0]["candidates"]) == 2
    batch = collate([relation[0], relation[1]])
    assert batch["relation"] == ["on", "to the left of"] and len(batch["candidates"]) == 2


def test_vg_missing_files_is_one_line(tmp_path):
    for cls, name in ((AROVGRelationDataset, "visual_genome_relation.json"),
                      (AROVGAttributionDataset, "visual_genome_attribution.json")):
        with pytest.raises(XattrError) as error:
            cls(tmp_path / "aro")
        assert "\n" not in str(error.value) and "paths.data_dir" in str(error.value) and name in str(error.value)


CAPTIONS = ["A man riding a red bike down the busy street.", "Two small dogs play with a ball in the grass.",
            "A dog.", "A large white plate topped with sliced pizza and green salad."]


def _fake_karpathy(root: Path, annotation: str, image: str) -> None:
    _write_image(root / image, (16, 16), 4)
    items = [{"image": image, "caption": CAPTIONS[:2]}, {"image": image, "caption": CAPTIONS[2:]}]
    (root / annotation).write_text(json.dumps(items))


@pytest.mark.parametrize("cls, annotation, image", [
    (AROCOCOOrderDataset, "coco_karpathy_test.json", "val2014/COCO_val2014_000000000001.jpg"),
    (AROFlickrOrderDataset, "flickr30k_test.json", "flickr30k-images/1.jpg"),
])
def test_order_datasets(tmp_path, cls, annotation, image):
    _fake_karpathy(tmp_path / "data", annotation, image)
    a, b = cls(tmp_path / "data", image_size=8), cls(tmp_path / "data", image_size=8)
    assert a.dropped == 1 and len(a) == 3  # "a dog" cannot be reordered four different ways
    other = cls(tmp_path / "data", image_size=8, seed=1)
    assert [s["candidates"] for s in a] == [s["candidates"] for s in b]  # seeded
    assert [s["candidates"] for s in a] != [s["candidates"] for s in other]
    for sample in a:
        candidates = sample["candidates"]
        assert candidates[0] == sample["caption"] and len(candidates) == 5
        assert candidates[0] in {clean_caption(c) for c in CAPTIONS}
        assert len(set(candidates)) == 5 and sample["perturbations"] == list(ORDER_PERTURBATIONS)
        assert all(sorted(c.split()) == sorted(candidates[0].split()) for c in candidates)
        assert a[0]["image"].shape == (3, 8, 8)
    again = [s["candidates"] for s in a]
    assert again == [s["candidates"] for s in a]  # not reversed on a second access
    with pytest.raises(XattrError) as error:
        cls(tmp_path / "nowhere")
    assert "\n" not in str(error.value) and "paths.data_dir" in str(error.value) and annotation in str(error.value)


def test_clean_caption_pos_tags_and_perturbations():
    caption = clean_caption("A man riding a red bike -- down the busy street!")
    assert caption == "a man riding a red bike down the busy street"
    words = caption.split()
    tags = dict(zip(words, pos_tag(words)))
    assert tags["man"] == tags["bike"] == tags["street"] == "NOUN" and tags["red"] == tags["busy"] == "ADJ"
    assert tags["riding"] == tags["a"] == tags["down"] == tags["the"] == "OTHER"
    rng = np.random.default_rng(0)
    nouns = order_perturbation(caption, "shuffle_nouns_and_adj", rng).split()
    assert [w for w, t in zip(nouns, pos_tag(words)) if t == "OTHER"] == [w for w in words if tags[w] == "OTHER"]
    others = order_perturbation(caption, "shuffle_allbut_nouns_and_adj", rng).split()
    assert [w for w, t in zip(others, pos_tag(words)) if t != "OTHER"] == [w for w in words if tags[w] != "OTHER"]
    within = order_perturbation(caption, "shuffle_within_trigrams", rng).split()
    assert all(sorted(within[i:i + 3]) == sorted(words[i:i + 3]) for i in range(0, len(words), 3))
    nine = words[:9]  # whole trigrams only: the shuffled caption is the same trigrams in another order
    trigrams = order_perturbation(" ".join(nine), "shuffle_trigrams", rng).split()
    chunks = [tuple(nine[i:i + 3]) for i in range(0, 9, 3)]
    assert sorted(tuple(trigrams[i:i + 3]) for i in range(0, 9, 3)) == sorted(chunks)
