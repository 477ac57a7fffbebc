"""The per-batch metric memo: MNIM writes its result under its settings, box/seg ratios read it."""

from __future__ import annotations

import torch

from xattr.metrics.box_ratio import BoxRatio
from xattr.metrics.mnim import MNIM
from xattr.metrics.seg_ratio import SegRatio


def _inputs(shapes_batch):
    x, y = shapes_batch["image"], shapes_batch["label"]
    maps = torch.rand(x.shape[0], 1, *x.shape[2:], generator=torch.Generator().manual_seed(0))
    return x, y, maps


def _count_searches(monkeypatch) -> list:
    calls: list = []
    search = MNIM._search

    def counted(self, *args, **kwargs):
        calls.append(self.settings())
        return search(self, *args, **kwargs)

    monkeypatch.setattr(MNIM, "_search", counted)
    return calls


def test_ratios_read_mnim_from_memo_and_equal_their_own(tiny_cnn, shapes_batch, monkeypatch):
    x, y, maps = _inputs(shapes_batch)
    gt = {"mask": shapes_batch["mask"], "boxes": shapes_batch["boxes"]}
    mnim, box, seg = MNIM(grid=4), BoxRatio(grid=4), SegRatio(grid=4)
    alone = {"box": box(tiny_cnn, x, maps, y, **gt), "seg": seg(tiny_cnn, x, maps, y, **gt)}  # no memo

    calls = _count_searches(monkeypatch)
    memo: dict = {}
    found = mnim(tiny_cnn, x, maps, y, memo=memo, **gt)
    assert list(memo) == [mnim.memo_key()]
    assert torch.equal(memo[mnim.memo_key()]["n"], found["n"])
    shared = {"box": box(tiny_cnn, x, maps, y, memo=memo, **gt), "seg": seg(tiny_cnn, x, maps, y, memo=memo, **gt)}
    assert len(calls) == 1  # the ratios did not search again
    for name in alone:
        assert set(shared[name]) == set(alone[name])
        assert all(torch.equal(shared[name][k], alone[name][k]) for k in alone[name])
        assert torch.equal(shared[name]["n"], found["n"]) and torch.equal(shared[name]["reached"], found["reached"])


def test_first_ratio_fills_the_memo_for_the_next_and_other_settings_search(tiny_cnn, shapes_batch, monkeypatch):
    x, y, maps = _inputs(shapes_batch)
    gt = {"mask": shapes_batch["mask"], "boxes": shapes_batch["boxes"]}
    calls = _count_searches(monkeypatch)
    memo: dict = {}
    box = BoxRatio(grid=4)(tiny_cnn, x, maps, y, memo=memo, **gt)   # runs its MNIM, which writes the memo
    seg = SegRatio(grid=4)(tiny_cnn, x, maps, y, memo=memo, **gt)   # reads it
    assert len(calls) == 1 and torch.equal(box["n"], seg["n"])
    SegRatio(grid=8)(tiny_cnn, x, maps, y, memo=memo, **gt)         # other settings: its own search
    MNIM(grid=4)(tiny_cnn, x, maps, y, memo=memo)                    # MNIM itself always searches
    assert len(calls) == 3 and len(memo) == 2


def test_run_loop_passes_a_fresh_memo_and_nothing_mnim_specific(tmp_path, checkpoint, monkeypatch):
    """Every metric of a batch gets the same ``memo`` dict (a new one per batch) and no MNIM kwargs."""
    from run_helpers import make_cfg

    from xattr.metrics._perturb import CausalAUC
    from xattr.tasks import run as run_task

    seen: list[dict] = []
    call = CausalAUC.__call__

    def spy(self, model, x, maps, target, **ground_truth):
        seen.append(ground_truth)
        return call(self, model, x, maps, target, **ground_truth)

    monkeypatch.setattr(CausalAUC, "__call__", spy)
    cfg = make_cfg(tmp_path, checkpoint, "metric=[deletion,insertion]", "metric.insertion.step=0.25",
                   "dataset.n_samples=6")
    run_task.run(cfg, out_dir=tmp_path / "r")
    assert len(seen) == 4  # two metrics, two batches
    assert all(not {"mnim_n", "mnim_reached"} & set(gt) for gt in seen)
    assert seen[0]["memo"] is seen[1]["memo"] and seen[2]["memo"] is seen[3]["memo"]
    assert seen[0]["memo"] is not seen[2]["memo"]
    assert not (set(seen[0]) - {"label", "method_factory", "mask", "boxes", "memo"})
