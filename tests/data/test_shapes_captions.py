"""shapes_captions: determinism, exact word masks, true relations, false perturbations, vocabulary, splits;
and the whole-word removal helper used for CMI contexts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xattr.data import ShapesCaptionsDataset, collate
from xattr.data.shapes_captions import (
    COLOURS,
    PERTURBATIONS,
    RELATION_MARGIN,
    VOCABULARY,
    attribute_swap,
    judge_caption,
    make_scene,
    perturbations,
    relation_offset,
    render_scene,
    tokenize,
    word_targets,
)
from xattr.errors import XattrError
from xattr.utils.text import contains_word, remove_word

SCENES = [make_scene(0, "test", i) for i in range(300)]


def test_contract_and_determinism():
    a, b = ShapesCaptionsDataset(length=20, words="all"), ShapesCaptionsDataset(length=20, words="all")
    assert len(a) == len(b) > 20
    for i in range(0, len(a), 7):
        sa, sb = a[i], b[i]
        assert sa["image"].shape == (3, 32, 32) and sa["image"].dtype == torch.float32
        assert 0 <= sa["image"].min() and sa["image"].max() <= 1 and torch.equal(sa["image"], sb["image"])
        assert sa["mask"].shape == (32, 32) and sa["mask"].dtype == torch.bool and sa["mask"].any()
        assert (sa["caption"], sa["word"], sa["id"]) == (sb["caption"], sb["word"], sb["id"])
        assert sa["word"] in tokenize(sa["caption"])
    assert ShapesCaptionsDataset(image_size=48, length=2)[0]["image"].shape == (3, 48, 48)
    batch = collate([a[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 32, 32) and batch["mask"].shape == (3, 32, 32)
    assert batch["caption"] == [a[i]["caption"] for i in range(3)] and len(batch["word"]) == 3


def test_word_selection_and_types():
    nouns = ShapesCaptionsDataset(length=30)
    adjectives = ShapesCaptionsDataset(length=30, words="adjectives")
    relations = ShapesCaptionsDataset(length=30, words="relations")
    every = ShapesCaptionsDataset(length=30, words="all")
    assert {s["word_type"] for s in nouns} == {"noun"} and {s["word_type"] for s in adjectives} == {"adjective"}
    assert {s["word"] for s in relations} <= {"left", "right", "above", "below"}
    assert len(every) == len(nouns) + len(adjectives) + len(relations)
    captions = ShapesCaptionsDataset(length=30, words="caption")
    assert len(captions) == 30 and captions[0]["word"] == "" and captions[0]["word_type"] == "caption"
    with pytest.raises(XattrError):
        ShapesCaptionsDataset(words="verbs")
    with pytest.raises(XattrError):
        ShapesCaptionsDataset(candidates=["nonsense"])


def test_masks_are_the_named_objects():
    """The pixels inside a word's mask are its objects' colours; every pixel of a noun's colour that lies in
    no other object's mask is inside the noun's mask; objects do not overlap."""
    for scene in SCENES[:80]:
        image, masks = render_scene(scene)
        assert masks.sum(axis=0).max() == 1 and masks.reshape(len(masks), -1).any(axis=1).all()
        background = ~masks.any(axis=0)
        assert np.allclose(image[background], scene.background)
        for word, word_type, objects in word_targets(scene):
            mask = masks[list(objects)].any(axis=0)
            colours = {tuple(np.round(c, 6)) for c in image[mask]}
            assert colours == {tuple(np.round(COLOURS[scene.objects[k].colour], 6)) for k in objects}
            if word_type == "noun":
                (k,) = objects
                assert scene.objects[k].shape == word
                same_colour = np.all(np.isclose(image, COLOURS[scene.objects[k].colour]), axis=-1)
                others = masks[[j for j in range(len(masks)) if j != k]].any(axis=0) if len(masks) > 1 else 0
                assert not (same_colour & ~mask & ~others).any()
            if word in COLOURS:
                assert all(scene.objects[k].colour == word for k in objects)
            if word_type == "relation":
                assert len(objects) >= 2


def test_relations_hold_and_captions_are_true():
    kinds = {len(s.objects) for s in SCENES}
    assert kinds == {1, 2, 3}
    for scene in SCENES:
        assert judge_caption(scene.caption, scene) == "true"
        for subject, word, other in scene.relations:
            offset = relation_offset(scene.objects[subject], word, scene.objects[other])
            assert offset > RELATION_MARGIN * scene.image_size
        assert len({o.shape for o in scene.objects}) == len(scene.objects)  # each noun names one object


def test_vocabulary_covers_every_word():
    assert all(w == w.lower() and " " not in w for w in VOCABULARY) and len(set(VOCABULARY)) == len(VOCABULARY)
    assert {"a", "left", "right", "above", "below", "red", "small", "star"} <= set(VOCABULARY)
    rng = np.random.default_rng(0)
    for scene in SCENES:
        assert set(tokenize(scene.caption)) <= set(VOCABULARY)
        for caption in perturbations(scene, PERTURBATIONS, rng).values():
            if caption is not None:
                assert set(tokenize(caption)) <= set(VOCABULARY)
    with pytest.raises(XattrError, match="vocabulary"):
        tokenize("a red dog")


def test_perturbations_are_false_and_seeded():
    found = dict.fromkeys(PERTURBATIONS, 0)
    for i, scene in enumerate(SCENES):
        a = perturbations(scene, PERTURBATIONS, np.random.default_rng(i))
        b = perturbations(scene, PERTURBATIONS, np.random.default_rng(i))
        assert a == b
        for kind, caption in a.items():
            if caption is None:
                continue
            found[kind] += 1
            assert caption != scene.caption
            if kind != "relation_flip":  # the others keep the words and change their order
                assert sorted(tokenize(caption)) == sorted(tokenize(scene.caption))
            assert judge_caption(caption, scene) in ("false", "ungrammatical")
            if kind != "word_shuffle":
                assert judge_caption(caption, scene) == "false"  # grammatical, and false for this image
        assert len({c for c in a.values() if c is not None}) == sum(c is not None for c in a.values())
    assert all(count > 50 for count in found.values()), found
    # two identical colours (and no size said) cannot be swapped
    same = next(s for s in SCENES if len(s.objects) == 2 and s.objects[0].colour == s.objects[1].colour
                and not (s.objects[0].says_size and s.objects[1].says_size))
    assert attribute_swap(same.caption, np.random.default_rng(0)) is None


def test_candidates_field():
    dataset = ShapesCaptionsDataset(length=40, words="caption", candidates=["attribute_swap", "relation_swap"])
    assert 0 < len(dataset) < 40  # images without two different colours/sizes or a relation are left out
    for sample in dataset:
        scene = make_scene(0, "test", int(sample["id"].split("-")[2]))
        assert sample["candidates"][0] == sample["caption"] == scene.caption and len(sample["candidates"]) == 3
        assert sample["perturbations"] == ["attribute_swap", "relation_swap"]
        assert all(judge_caption(c, scene) == "false" for c in sample["candidates"][1:])
    batch = collate([dataset[0], dataset[1]])
    assert batch["candidates"] == [dataset[0]["candidates"], dataset[1]["candidates"]]


def test_splits_are_disjoint_and_selection_works():
    images = {}
    for split in ("train", "val", "test"):
        dataset = ShapesCaptionsDataset(split=split, length=40, words="caption")
        images[split] = {dataset[i]["image"].numpy().tobytes() for i in range(len(dataset))}
        assert len(images[split]) == 40
    assert not (images["train"] & images["val"]) and not (images["train"] & images["test"])
    assert not (images["val"] & images["test"])
    small = ShapesCaptionsDataset(length=30, n_samples=7, seed=3)
    assert len(small) == 7 and [s["id"] for s in small] == sorted(s["id"] for s in small)
    with pytest.raises(XattrError):
        ShapesCaptionsDataset(split="nope")


@pytest.mark.parametrize("caption, word, expected", [
    ("a red star", "red", "a star"),
    ("a red star", "a", "red star"),
    ("a red star to the left of a red ring", "red", "a star to the left of a ring"),  # every occurrence
    ("a ring on a string", "ring", "a on a string"),  # not the substring of "string"
    ("a string and a ring", "ring", "a string and a"),
    ("A dog, and a Dog.", "dog", "A, and a."),  # case-insensitive, punctuation kept
    ("a teddy bear on a bed", "teddy bear", "a on a bed"),  # a phrase
    ("  a  red   star ", "star", "a red"),  # spaces collapsed
])
def test_remove_word(caption, word, expected):
    assert remove_word(caption, word) == expected
    assert contains_word(caption, word)


def test_remove_word_refuses_absent_words():
    assert not contains_word("a string", "ring")
    with pytest.raises(XattrError, match="does not occur"):
        remove_word("a string", "ring")
    with pytest.raises(XattrError, match="empty"):
        remove_word("a red star", " ")
