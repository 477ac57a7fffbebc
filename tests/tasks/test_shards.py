"""Sharded runs end to end: ``dataset.shard=0,1,2 dataset.num_shards=3`` as a sweep, merged by the report,
equal one unsharded run row for row (docs/run.md, "Sharded runs")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xattr.cli import main
from xattr.tasks.run import batch_plan

FAST = ["debug=smoke", "method=saliency", "metric=[deletion]", "metric.deletion.step=0.25"]


def _common(tmp_path: Path, checkpoint: Path) -> list[str]:
    return [*FAST, f"model.checkpoint={checkpoint}", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache",
            "n_figure=0", "save_maps=false"]


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["id", "metric"]).reset_index(drop=True)


def _sharded_equals_unsharded(tmp_path: Path, checkpoint: Path, capsys, n_samples: int, num_shards: int,
                              *extra: str) -> None:
    common = [*_common(tmp_path, checkpoint), f"dataset.n_samples={n_samples}", *extra]
    whole, sweep = tmp_path / "whole", tmp_path / "shards"
    assert main(["run", *common, f"hydra.run.dir={whole}"]) == 0
    shards = ",".join(map(str, range(num_shards)))
    assert main(["run", "-m", *common, f"dataset.num_shards={num_shards}", f"dataset.shard={shards}",
                 f"hydra.sweep.dir={sweep}"]) == 0
    folders = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(folders) == num_shards and all((p / "DONE").is_file() for p in folders)

    merged = _rows(pd.concat(pd.read_csv(p / "per_sample.csv") for p in folders))
    alone = _rows(pd.read_csv(whole / "per_sample.csv"))
    assert len(alone) == n_samples  # one metric
    pd.testing.assert_frame_equal(merged.drop(columns="value"), alone.drop(columns="value"))
    np.testing.assert_allclose(merged["value"], alone["value"], rtol=1e-6, atol=1e-7)

    capsys.readouterr()
    assert main(["report", str(sweep)]) == 0
    report = capsys.readouterr()
    assert report.err.strip() == "" and "(1 run; 3 of them shard folders, merged)" in report.out
    assert main(["report", str(whole)]) == 0
    merged_row, alone_row = pd.read_csv(sweep / "report.csv"), pd.read_csv(whole / "report.csv")
    assert merged_row[["metric", "n", "n_runs"]].values.tolist() == alone_row[["metric", "n", "n_runs"]].values.tolist()
    assert merged_row["n"].tolist() == [n_samples]
    np.testing.assert_allclose(merged_row[["mean", "std"]], alone_row[["mean", "std"]], rtol=1e-6, atol=1e-7)

    # the shards and the unsharded run scored the same images: the report refuses to pool them
    assert main(["report", str(sweep), str(whole), "--out", str(tmp_path / "both")]) == 2
    assert "scored the same images and share a row" in capsys.readouterr().err


def test_three_shards_merged_equal_one_unsharded_run(tmp_path, checkpoint, capsys):
    # 10 samples, batches of 4: shards of 4, 3, 3 start at 0, 4, 7 (7 splits global batch 1 in two)
    _sharded_equals_unsharded(tmp_path, checkpoint, capsys, 10, 3, "batch_size=4")


def test_stochastic_method_shards_on_batch_boundaries_equal_the_unsharded_run(tmp_path, checkpoint, capsys):
    # SmoothGrad's noise depends on a sample's place in its batch: equal when shards fall on batch boundaries
    _sharded_equals_unsharded(tmp_path, checkpoint, capsys, 6, 3, "batch_size=2", "method=smoothgrad",
                              "method.n_samples=2", "method.samples_batch_size=2")


@pytest.mark.parametrize("n_total, batch_size, offset, expected", [
    (10, 4, 0, [(0, range(0, 4)), (1, range(4, 8)), (2, range(8, 10))]),
    (3, 4, 4, [(1, range(0, 3))]),
    (3, 4, 7, [(1, range(0, 1)), (2, range(1, 3))]),
    (4, 2, 6, [(3, range(0, 2)), (4, range(2, 4))]),
])
def test_batch_plan_keeps_the_unsharded_grid(n_total, batch_size, offset, expected):
    assert batch_plan(n_total, batch_size, offset) == expected


def test_a_samples_batch_seed_does_not_depend_on_its_shard(tmp_path, checkpoint, monkeypatch):
    """Methods and metrics that draw from the global generator see ``seed + global batch index``."""
    from xattr.tasks import run as run_task

    seen: dict[str, int] = {}
    real = run_task._run_batch

    def record(job, batch, batch_seed, timings):
        seen.update(dict.fromkeys(batch["id"], batch_seed))
        return real(job, batch, batch_seed, timings)

    monkeypatch.setattr(run_task, "_run_batch", record)
    common = [*_common(tmp_path, checkpoint), "dataset.n_samples=10", "batch_size=4", "seed=5"]
    assert main(["run", *common, f"hydra.run.dir={tmp_path / 'whole'}"]) == 0
    alone, seen = seen, {}
    assert sorted(alone.values()) == [5] * 4 + [6] * 4 + [7] * 2
    for shard in range(3):
        assert main(["run", *common, "dataset.num_shards=3", f"dataset.shard={shard}",
                     f"hydra.run.dir={tmp_path / str(shard)}"]) == 0
    assert seen == alone


def test_a_shard_index_read_from_the_environment_is_named_as_a_string_with_the_fix(tmp_path, monkeypatch, capsys):
    """``${oc.env:SLURM_ARRAY_TASK_ID}`` resolves to a string; the error says so and how to decode it, and the
    decoded form runs."""
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    common = ["run", "debug=smoke", "method=saliency", "metric=[deletion]", "dataset.num_shards=2",
              f"paths.root_dir={tmp_path}"]
    assert main([*common, "dataset.shard=${oc.env:SLURM_ARRAY_TASK_ID}", f"hydra.run.dir={tmp_path}/a"]) == 2
    line = capsys.readouterr().err.strip()
    assert "dataset.shard=1 is not valid" in line and "it is the string '1'" in line
    assert '"${oc.decode:${oc.env:VAR}}"' in line and "\n" not in line
    assert not (tmp_path / "a" / "manifest.json").exists()
