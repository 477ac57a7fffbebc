"""``aro_contrastive``: cosine scores of a dual encoder for every candidate caption, against a written-out loop."""

from __future__ import annotations

import pytest
import torch

from xattr.errors import XattrError
from xattr.metrics.aro_contrastive import AROContrastive
from xattr.models.contrastive import TinyDualEncoder, save_dual_encoder
from xattr.training.contrastive import contrastive_path

VOCABULARY = ["a", "red", "blue", "star", "ring", "left", "of"]
CANDIDATES = [["a red star", "a blue star", "star a red"], ["a blue ring", "a red ring", "ring left of a blue"]]


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return TinyDualEncoder(VOCABULARY, image_size=16, text_width=32, embed_dim=16, image_width=8).eval()


@pytest.fixture()
def cached(tmp_path, encoder):
    save_dual_encoder(encoder, contrastive_path(tmp_path, "shapes_captions", 16))
    return tmp_path


def reference_scores(encoder, x, candidates):
    """``s(x_b, y_bk) = ⟨f(x_b), g(y_bk)⟩`` one caption at a time."""
    with torch.no_grad():
        return torch.tensor([[float(encoder.encode_image(x[b:b + 1])[0] @ encoder.encode_text([y])[0])
                              for y in texts] for b, texts in enumerate(candidates)])


def test_scores_are_the_cosines_of_each_image_with_each_of_its_own_candidates(cached, encoder):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    metric = AROContrastive(cache_dir=str(cached), image_size=16)
    scores = metric.scores(x, CANDIDATES)
    assert scores.shape == (2, 3)
    assert torch.allclose(scores, reference_scores(encoder, x, CANDIDATES), atol=1e-5)
    assert scores.abs().max() <= 1 + 1e-5


def test_outputs_compare_the_true_caption_with_the_best_distractor_strictly(cached):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    metric = AROContrastive(cache_dir=str(cached), image_size=16)
    scores, out = metric.scores(x, CANDIDATES), metric(None, x, candidates=CANDIDATES)
    assert torch.equal(out["correct"], (scores[:, 0] > scores[:, 1:].max(1).values).float())
    assert torch.allclose(out["margin"], scores[:, 0] - scores[:, 1:].max(1).values)
    assert torch.equal(out["pairwise"], (scores[:, :1] > scores[:, 1:]).float())
    tied = [["a red star", "a red star"], ["a blue ring", "a blue ring"]]
    assert metric(None, x, candidates=tied)["correct"].sum() == 0  # a tie is a failure


def test_the_encoder_is_read_from_path_or_the_cache_entry_of_dataset_and_image_size(tmp_path, encoder):
    x = torch.rand(1, 3, 16, 16)
    one = [CANDIDATES[0]]
    file = save_dual_encoder(encoder, tmp_path / "mine.pt")
    assert torch.allclose(AROContrastive(path=str(file)).scores(x, one), reference_scores(encoder, x, one),
                          atol=1e-5)
    save_dual_encoder(encoder, contrastive_path(tmp_path, "other_data", 24))
    metric = AROContrastive(cache_dir=str(tmp_path), dataset="other_data", image_size=24)
    assert metric.scores(x, one).shape == (1, 3)
    with pytest.raises(XattrError, match="tiny_contrastive-shapes_captions-16.pt"):
        AROContrastive(cache_dir=str(tmp_path), image_size=16).scores(x, one)


def test_the_encoder_is_loaded_once(cached):
    metric = AROContrastive(cache_dir=str(cached), image_size=16)
    assert metric.encoder("cpu") is metric.encoder("cpu")


def test_missing_encoder_bad_options_and_bad_candidates_are_one_line_errors(tmp_path, cached):
    with pytest.raises(XattrError, match="xattr train task=contrastive"):
        AROContrastive(cache_dir=str(tmp_path))(None, torch.rand(1, 3, 16, 16), candidates=[["a", "b"]])
    with pytest.raises(XattrError, match="encoder='blip'.*tiny or open_clip"):
        AROContrastive(encoder="blip")
    with pytest.raises(XattrError, match="aro_contrastive"):
        AROContrastive(cache_dir=str(cached), image_size=16).scores(torch.rand(2, 3, 16, 16), CANDIDATES[:1])
