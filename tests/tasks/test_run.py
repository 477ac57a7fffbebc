"""The run task in-process: resume after an interruption without recomputation or duplicate rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from run_helpers import Interrupt, make_cfg

from xattr.errors import XattrError
from xattr.models import build_model
from xattr.tasks import run as run_task


@pytest.fixture()
def counted(monkeypatch):
    """Count Saliency._attribute calls (images per call); raise on the call number in ``fail_on``."""
    from xattr.methods.saliency import Saliency

    state = {"calls": [], "fail_on": None}
    original = Saliency._attribute

    def attribute(self, x, target):
        state["calls"].append(x.shape[0])
        if state["fail_on"] == len(state["calls"]):
            raise Interrupt("simulated crash")
        return original(self, x, target)

    monkeypatch.setattr(Saliency, "_attribute", attribute)
    return state


def test_resume_continues_without_recomputation_or_duplicates(tmp_path, checkpoint, counted):
    reference_dir = tmp_path / "reference"
    run_task.run(make_cfg(tmp_path, checkpoint), out_dir=reference_dir)
    assert counted["calls"] == [4, 4, 2]

    run_dir = tmp_path / "run"
    counted.update(calls=[], fail_on=2)
    with pytest.raises(Interrupt):
        run_task.run(make_cfg(tmp_path, checkpoint), out_dir=run_dir)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "simulated crash" in status["error"]
    assert not run_task.is_complete(run_dir) and not (run_dir / "summary.csv").exists()
    assert sorted(p.name for p in (run_dir / "partial").glob("batch-*.npz")) == ["batch-00000.npz"]

    # without resume=true the folder is refused rather than overwritten
    with pytest.raises(XattrError, match="resume=true"):
        run_task.run(make_cfg(tmp_path, checkpoint), out_dir=run_dir)
    # resuming with a different batching would mix chunks: refused, naming what changed
    with pytest.raises(XattrError, match="batch_size"):
        run_task.run(make_cfg(tmp_path, checkpoint, "resume=true", "batch_size=2"), out_dir=run_dir)

    counted.update(calls=[], fail_on=None)
    run_task.run(make_cfg(tmp_path, checkpoint, "resume=true"), out_dir=run_dir)
    assert counted["calls"] == [4, 2]  # batch 0 was not recomputed
    assert run_task.is_complete(run_dir) and not (run_dir / "partial").exists()

    resumed = pd.read_csv(run_dir / "per_sample.csv")
    reference = pd.read_csv(reference_dir / "per_sample.csv")
    assert len(resumed) == 10 and not resumed.duplicated(["id", "metric"]).any()
    pd.testing.assert_frame_equal(resumed, reference)
    np.testing.assert_array_equal(np.load(run_dir / "maps.npz")["maps"], np.load(reference_dir / "maps.npz")["maps"])
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "summary.csv"), pd.read_csv(reference_dir / "summary.csv"))

    # a complete folder resumes to a no-op
    counted.update(calls=[])
    run_task.run(make_cfg(tmp_path, checkpoint, "resume=true"), out_dir=run_dir)
    assert counted["calls"] == []


def test_run_names_and_outputs_in_process(tmp_path, checkpoint):
    cfg = make_cfg(tmp_path, checkpoint, "target=pred", "maps_dtype=float16", "names.method=sal")
    run_dir = run_task.run(cfg, out_dir=tmp_path / "r")
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary[["method", "model", "dataset"]].iloc[0].tolist() == ["sal", "tiny_cnn", "shapes"]
    per_sample = pd.read_csv(run_dir / "per_sample.csv")
    assert (per_sample["target"] == per_sample["pred"]).all()  # target=pred explains the prediction
    maps = np.load(run_dir / "maps.npz")
    assert maps["maps"].dtype == np.float16 and maps["maps"].shape == (10, 3, 64, 64)


def test_metric_outputs_split_values_and_curves():
    values, curves = run_task.metric_outputs("m", {"auc": torch.ones(3), "curve": torch.zeros(3, 5)}, 3)
    assert list(values) == ["m.auc"] and curves["m.curve"].shape == (3, 5)
    values, curves = run_task.metric_outputs("m", torch.arange(3.0), 3)
    assert values["m"].tolist() == [0.0, 1.0, 2.0] and not curves
    with pytest.raises(XattrError, match="returned shape"):
        run_task.metric_outputs("m", torch.ones(()), 3)


def test_hooks_and_model_flags_untouched(tmp_path, checkpoint, counted, monkeypatch):
    """The run leaves no hooks behind, also when the method raises."""
    from xattr.utils.hooks import count_hooks

    seen = {}
    original = run_task.build_model

    def spy(*args, **kwargs):
        seen["model"] = original(*args, **kwargs)
        return seen["model"]

    monkeypatch.setattr(run_task, "build_model", spy)
    counted.update(fail_on=1)
    with pytest.raises(Interrupt):
        run_task.run(make_cfg(tmp_path, checkpoint), out_dir=tmp_path / "a")
    assert count_hooks(seen["model"]) == 0 and not seen["model"].training


def test_offline_model_without_checkpoint_is_trained_first(tmp_path, checkpoint, monkeypatch, caplog):
    """checkpoint=null: the classifier comes from load_trained_classifier (which trains on first use and logs
    one line saying so), called with the dataset's name, image size, the cache folder and the model options."""
    import logging
    import types

    import xattr.training

    calls = []
    fake = types.ModuleType("xattr.training.classifier")
    fake.checkpoint_path = lambda cache_dir, model, dataset, size: Path(cache_dir) / f"{model}-{dataset}-{size}.pt"

    def load_trained_classifier(model_name, dataset_name, image_size, cache_dir, device="cpu", **kwargs):
        calls.append((model_name, dataset_name, image_size, Path(cache_dir), device, kwargs))
        model = build_model(model_name, num_classes=6, image_size=image_size, **kwargs)
        model.net.load_state_dict(torch.load(checkpoint, weights_only=True))
        return model

    fake.load_trained_classifier = load_trained_classifier
    monkeypatch.setitem(__import__("sys").modules, "xattr.training.classifier", fake)
    monkeypatch.setattr(xattr.training, "classifier", fake, raising=False)
    cfg = make_cfg(tmp_path, checkpoint, "model.checkpoint=null", "dataset.n_samples=4")
    with caplog.at_level(logging.INFO):
        run_task.run(cfg, out_dir=tmp_path / "t")
    assert calls == [("tiny_cnn", "shapes", 64, tmp_path / "cache", "cpu", {"width": cfg.model.width})]
    assert not [r for r in caplog.records if "train" in r.getMessage()]  # the run task adds no second line


def test_train_dispatcher_calls_task_module(monkeypatch, tmp_path):
    import sys
    import types

    from omegaconf import OmegaConf

    from xattr.tasks import train

    seen = {}
    module = types.ModuleType("fake_trainers")

    class FakeTrainer:
        def __init__(self, lr):
            self.lr = lr

        def run(self, cfg):
            seen["lr"] = self.lr
            return tmp_path / "fake.pt"

    module.FakeTrainer = FakeTrainer
    monkeypatch.setitem(sys.modules, "fake_trainers", module)
    cfg = OmegaConf.create({"task": {"_target_": "fake_trainers.FakeTrainer", "name": "fake", "lr": 0.1}, "seed": 0})
    assert train.run(cfg) == tmp_path / "fake.pt" and seen == {"lr": 0.1}
    with pytest.raises(XattrError, match="no training code for task 'nothere'"):
        train.run(OmegaConf.create({"task": {"name": "nothere"}, "seed": 0}))
    with pytest.raises(XattrError, match="task group"):
        train.run(OmegaConf.create({"seed": 0}))


def test_report_difficulty_hands_per_sample_table(tmp_path, checkpoint, monkeypatch, capsys):
    import sys
    import types

    import pandas as pd

    from xattr.tasks.report import report

    run_dir = run_task.run(make_cfg(tmp_path, checkpoint, "dataset.n_samples=4"), out_dir=tmp_path / "r")
    seen = {}

    def difficulty_breakdown(per_sample, out_dir, n_bins=20):
        seen.update(columns=set(per_sample.columns), n=len(per_sample), out_dir=out_dir, n_bins=n_bins,
                    method=set(per_sample["method"]))
        return pd.DataFrame({"method": ["x"], "bin": [0], "n": [4]})

    fake = types.ModuleType("xattr.tasks.difficulty")
    fake.difficulty_breakdown = difficulty_breakdown
    monkeypatch.setitem(sys.modules, "xattr.tasks.difficulty", fake)
    report([run_dir], by=["seed"], out=tmp_path / "rep", difficulty=True, n_bins=5)
    assert seen["columns"] >= {"method", "model", "dataset", "id", "target", "confidence", "metric", "value"}
    assert seen["n"] == 4 and seen["n_bins"] == 5 and seen["out_dir"] == tmp_path / "rep" / "difficulty"
    assert seen["method"] == {"saliency[seed=0]"}
    assert "| method | bin | n |" in capsys.readouterr().out


def test_box_and_seg_ratios_reuse_the_mnim_of_the_same_batch(tiny_cnn, shapes_batch):
    from xattr.metrics.mnim import MNIM, _remember_mnim, _reusable_mnim
    from xattr.metrics.seg_ratio import SegRatio

    x, y, mask = shapes_batch["image"], shapes_batch["label"], shapes_batch["mask"]
    maps = torch.rand(x.shape[0], 1, *x.shape[2:], generator=torch.Generator().manual_seed(0))
    mnim, seg = MNIM(grid=4), SegRatio(grid=4)
    found: dict = {}
    _remember_mnim(mnim, mnim(tiny_cnn, x, maps, y), found)
    reuse = _reusable_mnim(seg, found)
    assert set(reuse) == {"mnim_n", "mnim_reached"}
    reused, fresh = seg(tiny_cnn, x, maps, y, mask=mask, **reuse), seg(tiny_cnn, x, maps, y, mask=mask)
    assert all(torch.equal(reused[k], fresh[k]) for k in fresh)
    assert _reusable_mnim(SegRatio(grid=8), found) == {}   # other settings: computed afresh
    assert _reusable_mnim(mnim, found) == {}               # MNIM itself is never skipped


def test_worker_processes_give_the_same_run(tmp_path, checkpoint):
    """loader.num_workers changes how batches are loaded, not what a run computes."""
    inline = run_task.run(make_cfg(tmp_path, checkpoint), out_dir=tmp_path / "inline")
    workers = run_task.run(make_cfg(tmp_path, checkpoint, "loader.num_workers=2", "loader.prefetch_factor=1"),
                           out_dir=tmp_path / "workers")
    assert (inline / "per_sample.csv").read_bytes() == (workers / "per_sample.csv").read_bytes()
    assert np.array_equal(np.load(inline / "maps.npz")["maps"], np.load(workers / "maps.npz")["maps"])


def test_bf16_autocast_runs_close_to_fp32_and_is_part_of_the_fingerprint(tmp_path, checkpoint):
    """precision=bf16 lowers the model's products (maps differ, but little) and a resume cannot mix precisions."""
    full = run_task.run(make_cfg(tmp_path, checkpoint), out_dir=tmp_path / "fp32")
    low = run_task.run(make_cfg(tmp_path, checkpoint, "precision=bf16"), out_dir=tmp_path / "bf16")
    maps_full, maps_low = (torch.from_numpy(np.load(d / "maps.npz")["maps"]).flatten(1) for d in (full, low))
    assert maps_low.dtype == torch.float32 and not torch.equal(maps_full, maps_low)
    # bf16 keeps 8 bits of mantissa: gradient maps of this random tiny_cnn agree to a cosine of about 0.94-0.98
    assert torch.nn.functional.cosine_similarity(maps_full, maps_low).min() > 0.9
    manifest = json.loads((low / "manifest.json").read_text())
    assert manifest["precision"] == "bf16" and "precision" not in json.loads((full / "manifest.json").read_text())
    (low / "DONE").unlink()
    with pytest.raises(XattrError, match="precision"):
        run_task.run(make_cfg(tmp_path, checkpoint, "resume=true"), out_dir=low)
