"""Method diagnostics: per-image values a method reports about its last ``attribute`` call become rows
``<method>/<name>`` in per_sample.csv and summary.csv, after the metrics, and survive a resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from run_helpers import Interrupt, make_cfg

from xattr.errors import XattrError
from xattr.methods.base import AttributionMethod
from xattr.methods.saliency import Saliency
from xattr.tasks import run as run_task

CALLS: dict = {"n": 0, "fail_on": None, "shape": None}


class ToyMethod(Saliency):
    """Saliency that reports each map's sum and the explained target."""

    def _attribute(self, x, target):
        CALLS["n"] += 1
        if CALLS["fail_on"] == CALLS["n"]:
            raise Interrupt("simulated crash")
        maps = super()._attribute(x, target)
        self._last = {"map_sum": maps.flatten(1).sum(1), "target": target.float()}
        if CALLS["shape"] is not None:
            self._last["bad"] = torch.zeros(CALLS["shape"])
        return maps

    def diagnostics(self):
        return self._last


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.update(n=0, fail_on=None, shape=None)


def toy_cfg(tmp_path, checkpoint, *extra):
    return make_cfg(tmp_path, checkpoint, f"method._target_={__name__}.ToyMethod", "names.method=toy", *extra)


def test_default_is_no_diagnostics(tiny_cnn):
    assert AttributionMethod(tiny_cnn).diagnostics() == {}


def test_diagnostics_land_in_per_sample_and_summary(tmp_path, checkpoint):
    run_dir = run_task.run(toy_cfg(tmp_path, checkpoint), out_dir=tmp_path / "r")
    per_sample = pd.read_csv(run_dir / "per_sample.csv")
    assert per_sample["metric"].tolist()[:3] == ["deletion", "toy/map_sum", "toy/target"]  # metrics first
    assert len(per_sample) == 30 and not per_sample.duplicated(["id", "metric"]).any()
    maps = np.load(run_dir / "maps.npz")
    sums = per_sample[per_sample["metric"] == "toy/map_sum"]
    np.testing.assert_allclose(sums["value"], maps["maps"].reshape(10, -1).sum(1), rtol=1e-4)
    assert sums["id"].tolist() == list(maps["ids"])
    targets = per_sample[per_sample["metric"] == "toy/target"]
    assert (targets["value"] == targets["target"]).all()

    summary = pd.read_csv(run_dir / "summary.csv").set_index("metric")
    assert list(summary.index) == ["deletion", "toy/map_sum", "toy/target"]
    assert summary.loc["toy/map_sum", "n"] == 10
    assert summary.loc["toy/map_sum", "mean"] == pytest.approx(sums["value"].mean(), rel=1e-6)
    assert "| toy/map_sum |" in (run_dir / "summary.md").read_text()


def test_resume_keeps_the_diagnostics_of_finished_batches(tmp_path, checkpoint):
    reference = run_task.run(toy_cfg(tmp_path, checkpoint), out_dir=tmp_path / "reference")
    CALLS.update(n=0, fail_on=2)
    with pytest.raises(Interrupt):
        run_task.run(toy_cfg(tmp_path, checkpoint), out_dir=tmp_path / "run")
    CALLS.update(n=0, fail_on=None)
    resumed = run_task.run(toy_cfg(tmp_path, checkpoint, "resume=true"), out_dir=tmp_path / "run")
    assert CALLS["n"] == 2  # batch 0 came from its chunk, with its diagnostics
    for name in ("per_sample.csv", "summary.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(resumed / name), pd.read_csv(reference / name))


def test_diagnostics_must_be_one_value_per_image(tmp_path, checkpoint):
    CALLS.update(shape=(4, 2))
    with pytest.raises(XattrError, match=r"diagnostic bad of shape \(4, 2\).*one value per image"):
        run_task.run(toy_cfg(tmp_path, checkpoint), out_dir=tmp_path / "r")
