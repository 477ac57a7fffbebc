"""Relation testing (``xattr.metrics.aro``): argmax, common draws, nested draw counts, DiffITM's score."""

from __future__ import annotations

import pytest
import torch

from xattr.data.shapes_captions import VOCABULARY
from xattr.errors import XattrError
from xattr.info.logsnr import TruncatedLogistic
from xattr.metrics.aro import AROScores, check_candidates, nested_means, relation_outputs
from xattr.models import TextToImageModel, build_tiny_t2i_pipeline

CANDIDATES = [["a red star to the left of a blue ring", "a blue star to the left of a red ring",
               "a blue ring to the left of a red star"],
              ["a green circle above a white cross", "a white circle above a green cross",
               "a green circle below a white cross"]]


@pytest.fixture(scope="module")
def model() -> TextToImageModel:
    return TextToImageModel(build_tiny_t2i_pipeline(VOCABULARY, image_size=16, seed=0), name="tiny_t2i")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def test_relation_outputs_count_a_strict_argmax_on_the_true_caption():
    scores = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 0.0], [1.0, 1.0, 0.0]])
    out = relation_outputs(scores)
    assert out["correct"].tolist() == [1.0, 0.0, 0.0]       # a tie with the true caption fails
    assert out["margin"].tolist() == [1.0, -1.0, 0.0]
    assert out["pairwise"].tolist() == [[1.0, 1.0], [0.0, 1.0], [0.0, 1.0]]


def test_nested_means_are_prefix_means():
    values = torch.arange(12.0).view(4, 1, 3)
    out = nested_means(values, [1, 2, 4])
    assert out.shape == (1, 3, 3)
    assert torch.equal(out[0, 0], values[0, 0])
    assert torch.allclose(out[0, 2], values[:, 0].mean(0))


def test_scores_use_one_stacked_call_per_chunk_with_common_draws(model, images, monkeypatch):
    calls = []
    original = model.eps

    def spy(z, logsnr, c):
        calls.append((z.clone(), logsnr.clone(), c.shape[0]))
        return original(z, logsnr, c)

    monkeypatch.setattr(model, "eps", spy)
    metric = AROScores(n_draws=3, draw_counts=[1, 3], chunk_size=10_000)
    torch.manual_seed(0)
    out = metric(model, images, None, None, candidates=CANDIDATES)
    assert len(calls) == 1, "all candidates, the empty prompt and all draws in one stacked call"
    z, logsnr, rows = calls[0]
    assert rows == (3 + 1) * 3 * 2
    blocks_z, blocks_a = z.view(4, -1, *z.shape[1:]), logsnr.view(4, -1)
    for k in range(1, 4):   # every condition block sees the same (z, alpha): common random numbers
        assert torch.equal(blocks_z[k], blocks_z[0]) and torch.equal(blocks_a[k], blocks_a[0])
    assert set(out) == {f"{s}.{key}" for s in ("info", "info_s", "diffitm")
                        for key in ("correct", "margin", "pairwise", "correct_by_draws")}
    assert out["info.correct"].shape == (2,) and out["info.pairwise"].shape == (2, 2)
    assert out["diffitm.correct_by_draws"].shape == (2, 2)


def test_info_equals_the_estimator_and_diffitm_the_negative_mse_of_the_same_draws(model, images):
    metric = AROScores(n_draws=4, draw_counts=[2, 4], chunk_size=24)  # two draws per call: chunking is covered
    torch.manual_seed(5)
    scored = metric.score_candidates(model, images, CANDIDATES)
    assert torch.allclose(scored["info"][:, -1].float(), scored["i_o"], rtol=1e-4, atol=1e-6)
    # info_s is i^s from the same draws whatever `estimator` says (the paired estimator ablation)
    assert torch.allclose(scored["info_s"][:, -1].float(), scored["i_s"], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(scored["info_s"], scored["info"])
    # reproduce the draws independently: the estimator takes all alpha first, then one eps per draw
    torch.manual_seed(5)
    generator = metric._generator("cpu")
    sampler = TruncatedLogistic(1.0, 2.0, 3.0)
    latent = model.encode_image(images)
    alpha = sampler.sample((4, 2), generator=generator, dtype=latent.dtype)
    eps = [torch.randn(latent.shape, generator=generator) for _ in range(4)]
    errors = torch.zeros(2, 3)
    for n in range(4):
        z = torch.sigmoid(alpha[n]).sqrt().view(-1, 1, 1, 1) * latent + \
            torch.sigmoid(-alpha[n]).sqrt().view(-1, 1, 1, 1) * eps[n]
        for k in range(3):
            c = model.encode_prompt([CANDIDATES[b][k] for b in range(2)])
            errors[:, k] += (eps[n] - model.eps(z, alpha[n], c)).pow(2).flatten(1).sum(1) / 4
    assert torch.allclose(scored["diffitm"][:, -1].float(), -errors, rtol=1e-4)


def test_i_s_estimator_and_score_subsets(model, images):
    metric = AROScores(scores=["info"], estimator="i_s", n_draws=2, draw_counts=[2])
    torch.manual_seed(1)
    scored = metric.score_candidates(model, images, CANDIDATES)
    assert torch.allclose(scored["info"][:, -1].float(), scored["i_s"], rtol=1e-4, atol=1e-6)
    torch.manual_seed(1)
    assert set(metric(model, images, candidates=CANDIDATES)) == {"info.correct", "info.margin", "info.pairwise",
                                                                 "info.correct_by_draws"}


def test_one_line_errors():
    with pytest.raises(XattrError, match="scores"):
        AROScores(scores=["clip"])
    with pytest.raises(XattrError, match="estimator"):
        AROScores(estimator="mse")
    metric = AROScores(n_draws=1)
    with pytest.raises(XattrError, match="candidates"):
        metric(None, torch.zeros(1, 3, 16, 16), candidates=None)
    with pytest.raises(XattrError, match="same number"):
        metric(None, torch.zeros(2, 3, 16, 16), candidates=[["a", "b"], ["a", "b", "c"]])


def test_correct_by_draws_is_the_strict_argmax_at_each_nested_draw_count(model, images):
    """The accuracy-vs-draws curve: column t is ``1[s(y_0) > max_{k>=1} s(y_k)]`` of the scores from the first
    ``draw_counts[t]`` draws (a tie fails); its last column is ``correct``. Scores designed per column: the true
    caption wins, loses to the last candidate only, loses to the second only, ties."""
    by_draws = torch.tensor([[[3.0, 1.0, 2.0], [3.0, 1.0, 4.0], [3.0, 4.0, 1.0]],
                             [[1.0, 2.0, 0.0], [2.0, 2.0, 1.0], [5.0, 1.0, 4.9]]], dtype=torch.float64)
    metric = AROScores(scores=["info"], n_draws=4, draw_counts=[1, 2, 4])
    metric.score_candidates = lambda *args: {"info": by_draws}
    out = metric(model, images, candidates=CANDIDATES)
    torch.testing.assert_close(out["info.correct_by_draws"],
                               torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=out["info.correct_by_draws"].dtype))
    torch.testing.assert_close(out["info.correct_by_draws"][:, -1], out["info.correct"].to(out["info.correct_by_draws"]))


def test_candidates_two_per_image_are_enough_and_one_list_per_image_is_required():
    assert check_candidates([("a", "b"), ["c", "d"]], 2, "aro") == [["a", "b"], ["c", "d"]]
    for bad, message in [([["a", "b"]], "must be 2 lists of strings"), ([["a", 1], ["b", "c"]], "lists of strings"),
                         ([["a"], ["b"]], r"same number \(>= 2\)")]:
        with pytest.raises(XattrError, match=f"^aro: .*{message}"):
            check_candidates(bad, 2, "aro")


def test_the_log_snr_law_is_the_configured_one():
    metric = AROScores(loc=0.5, scale=1.5, clip=2.0)
    assert (metric.sampler.loc, metric.sampler.scale, metric.sampler.clip) == (0.5, 1.5, 2.0)
