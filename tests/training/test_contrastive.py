"""The tiny contrastive dual encoder: InfoNCE, a few training steps, the cache file, and the ARO metric on it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xattr.data.shapes_captions import ShapesCaptionsDataset
from xattr.errors import XattrError
from xattr.metrics.aro_contrastive import AROContrastive
from xattr.models.contrastive import load_dual_encoder
from xattr.training.contrastive import ContrastiveTrainer, contrastive_path, info_nce


def test_info_nce_is_low_for_matched_pairs_and_symmetric():
    a = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    scale = torch.tensor(4.0)
    matched, shuffled = info_nce(a, a, scale), info_nce(a, a.roll(1, 0), scale)
    assert matched < shuffled
    b = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(1)), dim=-1)
    assert torch.allclose(info_nce(a, b, scale), info_nce(b, a, scale))


def test_trainer_writes_a_loadable_encoder_and_the_metric_scores_candidates(tmp_path):
    train = ShapesCaptionsDataset("train", image_size=16, length=16, words="caption")
    path = contrastive_path(tmp_path, "shapes_captions", 16)
    trainer = ContrastiveTrainer.from_conf(steps=3, batch_size=8, save_every=2)
    trainer.fit(train, seed=0, path=path, progress=False)
    assert path.is_file() and path.with_suffix(".loss.png").is_file()
    encoder = load_dual_encoder(path)
    x = torch.rand(2, 3, 16, 16)
    assert encoder.encode_image(x).shape == (2, 64)
    assert torch.allclose(encoder.encode_text(["a red star", "a blue ring"]).norm(dim=-1), torch.ones(2))
    metric = AROContrastive(cache_dir=str(tmp_path), image_size=16)
    candidates = [["a red star", "a blue star", "a star red"], ["a blue ring", "a red ring", "ring a blue"]]
    out = metric(None, x, candidates=candidates)
    assert out["correct"].shape == (2,) and out["pairwise"].shape == (2, 2)
    scores = metric.scores(x, candidates)
    assert torch.equal(out["correct"], (scores[:, 0] > scores[:, 1:].max(1).values).float())


def test_open_clip_without_the_package_or_weights_is_one_line(monkeypatch):
    import sys
    import types

    from xattr.models.contrastive import OpenCLIPEncoder

    monkeypatch.setitem(sys.modules, "open_clip", None)  # not installed
    with pytest.raises(XattrError, match=r"open_clip_torch.*\[openclip\]"):
        OpenCLIPEncoder()

    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setitem(sys.modules, "open_clip", types.SimpleNamespace(create_model_and_transforms=offline))
    with pytest.raises(XattrError, match="ViT-H-14 .*laion2b_s32b_b79k.* weights are not in /nowhere"):
        OpenCLIPEncoder(cache_dir="/nowhere")
