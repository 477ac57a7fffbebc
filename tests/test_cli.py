"""`xattr run|train|report` end to end: run folders, sweeps, reports, and one-line user errors.

Most cases call ``xattr.cli.main`` in-process (same code path as the console script, minus the
interpreter start); two cases run the real command in a subprocess to check exit codes and stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xattr.cli import main

REPO = Path(__file__).resolve().parents[1]
# one fast metric keeps each run at a few seconds; deletion with 4 steps is still a real curve
FAST = ["debug=smoke", "method=saliency", "metric=[deletion]", "metric.deletion.step=0.25"]


def common(tmp_path: Path, checkpoint: Path) -> list[str]:
    return [*FAST, f"model.checkpoint={checkpoint}", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]


def xattr_subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "xattr.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_run_writes_complete_run_folder_subprocess(tmp_path, checkpoint):
    run_dir = tmp_path / "run"
    done = xattr_subprocess("run", *common(tmp_path, checkpoint), "metric=[deletion,insertion]",
                            "metric.insertion.step=0.25", "metric.deletion.return_curves=true",
                            f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("DONE", "status.json", "maps.npz", "per_sample.csv", "summary.csv", "summary.md", "curves.npz",
                 "figures/overview.png", ".hydra/config.yaml", ".hydra/overrides.yaml"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "partial").exists()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "complete"

    maps = np.load(run_dir / "maps.npz")
    assert maps["maps"].shape == (4, 3, 64, 64) and maps["maps"].dtype == np.float32
    assert np.isfinite(maps["maps"]).all() and np.abs(maps["maps"]).sum() > 0
    assert len(maps["ids"]) == 4 and maps["targets"].shape == (4,)

    per_sample = pd.read_csv(run_dir / "per_sample.csv")
    assert {"id", "target", "confidence", "metric", "value"} <= set(per_sample.columns)
    assert sorted(per_sample["metric"].unique()) == ["deletion.auc", "insertion"]
    assert len(per_sample) == 8 and not per_sample.duplicated(["id", "metric"]).any()
    assert per_sample["confidence"].between(0, 1).all()
    assert list(per_sample["id"].unique()) == list(maps["ids"])

    curves = np.load(run_dir / "curves.npz")
    assert curves["deletion.curve"].shape[0] == 4 and curves["deletion.curve"].shape[1] >= 2

    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary.columns) == ["method", "model", "dataset", "metric", "mean", "std", "n"]
    assert set(summary["method"]) == {"saliency"} and set(summary["model"]) == {"tiny_cnn"}
    assert set(summary["dataset"]) == {"shapes"} and set(summary["n"]) == {4}
    expected = per_sample.groupby("metric")["value"].mean()
    for row in summary.itertuples():
        assert row.mean == pytest.approx(expected[row.metric], rel=1e-5)
    assert (run_dir / "figures/overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = (run_dir / ".hydra/config.yaml").read_text()  # chosen names recorded in the saved config
    assert "names:\n  method: saliency\n  model: tiny_cnn\n  dataset: shapes" in saved


def test_unknown_option_subprocess_one_line(tmp_path):
    done = xattr_subprocess("run", "method=no_such_method", f"paths.root_dir={tmp_path}", cwd=tmp_path)
    assert done.returncode == 2
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: unknown method option 'no_such_method'")
    assert "saliency" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "outputs").exists()


def test_help_and_cfg(tmp_path, capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(word in text for word in ("run [hydra overrides]", "train [hydra overrides]", "report RUN_DIR"))
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    assert "== Configuration groups ==" in text and "method:" in text and "model:" in text
    assert main(["run", "--cfg", "job", "method=saliency", "seed=7", f"paths.root_dir={tmp_path}"]) == 0
    text = capsys.readouterr().out
    assert "seed: 7" in text and "_target_: xattr.methods.saliency.Saliency" in text
    assert not (tmp_path / "outputs").exists()
    assert main(["report", "--help"]) == 0
    assert "--by KEY" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "error: unknown command 'frobnicate'; choose one of run, train, report (see `xattr --help`)"]


def test_multirun_and_report_by_key(tmp_path, checkpoint, capsys):
    sweep = tmp_path / "sweep"
    assert main(["run", "-m", *common(tmp_path, checkpoint), "dataset.seed=0,1", f"hydra.sweep.dir={sweep}"]) == 0
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in runs] == ["0-saliency", "1-saliency"]
    assert all((p / "DONE").is_file() for p in runs)
    capsys.readouterr()

    paper = tmp_path / "paper.csv"
    paper.write_text("table,model,method,metric,mean,std\nT1,tiny_cnn,saliency,deletion,0.5,0.1\n")
    assert main(["report", str(sweep), "--by", "dataset.seed", "--paper", str(paper)]) == 0
    printed = capsys.readouterr().out
    long = pd.read_csv(sweep / "report.csv")
    assert (sweep / "report.md").is_file() and (sweep / "report.tex").is_file()
    # one row per dataset.seed (different samples), 4 samples each
    assert sorted(long["dataset.seed"]) == [0, 1] and set(long["n"]) == {4} and set(long["n_runs"]) == {1}
    assert set(long["paper_mean"]) == {0.5}
    for run_dir, row in zip(runs, long.sort_values("dataset.seed").itertuples()):
        assert row.mean == pytest.approx(pd.read_csv(run_dir / "summary.csv")["mean"].iloc[0])
    assert "| dataset.seed | method | deletion | deletion (paper) |" in printed
    assert "0.500 ± 0.100" in printed and r"\pm" in (sweep / "report.tex").read_text()

    # without --by the two runs share a row: pooled over all 8 samples (population std)
    out = tmp_path / "rep"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    pooled = pd.read_csv(out / "report.csv")
    values = pd.concat(pd.read_csv(p / "per_sample.csv") for p in runs)["value"]
    assert pooled["n_runs"].tolist() == [2] and pooled["n"].tolist() == [8]
    assert pooled["mean"].iloc[0] == pytest.approx(values.mean(), rel=1e-5)
    assert pooled["std"].iloc[0] == pytest.approx(values.std(ddof=0), rel=1e-4, abs=1e-7)
    # --by a name column keeps that column even when constant
    assert main(["report", str(sweep), "--by", "dataset", "--out", str(tmp_path / "rep2")]) == 0
    assert "| method | dataset | deletion |" in (tmp_path / "rep2" / "report.md").read_text()
    assert main(["report", str(sweep), "--by", "method.no_such_key"]) == 2
    assert main(["report", str(tmp_path / "nothing")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 2 and "method.no_such_key" in lines[0] and "does not exist" in lines[1]


def _nan_images(monkeypatch):
    from xattr.data.shapes import ShapesDataset

    load = ShapesDataset._load

    def nan_load(self, index):
        sample = load(self, index)
        sample["image"][0, 0, 0] = float("nan")
        return sample

    monkeypatch.setattr(ShapesDataset, "_load", nan_load)


BAD_INPUTS = {
    "unknown_option": (["model=no_such_model"], "unknown model option 'no_such_model'"),
    "unknown_metric": (["metric=[no_such_metric]"], "unknown metric option 'no_such_metric'"),
    "image_size": (["model.image_size=32"], "set dataset.image_size=32"),
    "empty_dataset": (["dataset.length=0"], "has no samples"),
    "target_range": (["dataset=digits"], "out of range for model tiny_cnn with 6 classes"),
    "bad_checkpoint": (["model.checkpoint={garbage}"], "is unreadable"),
    "bad_target_mode": (["target=both"], "target=label or target=pred"),
    "nan_images": ([], "contain NaN or inf"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_never_complete(case, tmp_path, checkpoint, capsys, monkeypatch):
    overrides, expected = BAD_INPUTS[case]
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    if case == "nan_images":
        _nan_images(monkeypatch)
    run_dir = tmp_path / "run"
    args = ["run", *common(tmp_path, checkpoint), f"hydra.run.dir={run_dir}",
            *[o.format(garbage=garbage) for o in overrides]]
    assert main(args) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert not (run_dir / "DONE").exists() and not (run_dir / "summary.csv").exists()
    if (run_dir / "status.json").exists():
        assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"


def test_train_unknown_task_one_line(tmp_path, capsys):
    assert main(["train", "task=no_such_task", f"paths.root_dir={tmp_path}"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: unknown task option 'no_such_task'")


def _denoiser_entry(cache: Path) -> Path:
    from xattr.training.denoiser import DenoiserTrainer

    return DenoiserTrainer.from_conf().filled().checkpoint(cache, "shapes", 64)


# a bad file where `xattr run` reads a cache entry (or the user's model.checkpoint): (method and model
# overrides, where the file lies given the cache folder and tmp_path, its fault, the advice the line gives)
CACHE_FAULTS = {
    "cached_classifier_garbage": (["method=saliency"], lambda cache, tmp: cache / "classifiers/tiny_cnn-shapes-64.pt",
                                  "garbage", "delete it"),
    "cached_classifier_code": (["method=saliency"], lambda cache, tmp: cache / "classifiers/tiny_cnn-shapes-64.pt",
                               "code", "delete it"),
    "cached_denoiser_code": (["method=diffib", "model.checkpoint={checkpoint}"], lambda cache, tmp: _denoiser_entry(cache),
                             "code", "delete it"),
    "user_checkpoint_code": (["method=saliency", "model.checkpoint={planted}"], lambda cache, tmp: tmp / "mine.pt",
                             "code", "pass a state dict"),
}


@pytest.mark.parametrize("case", list(CACHE_FAULTS))
def test_a_bad_cache_file_is_one_line_runs_nothing_and_stays(case, tmp_path, checkpoint, capsys):
    from cache_helpers import plant

    overrides, where, fault, advice = CACHE_FAULTS[case]
    cache, marker, run_dir = tmp_path / "cache", tmp_path / "payload-ran", tmp_path / "run"
    planted = where(cache, tmp_path)
    content = plant(planted, fault, marker)
    args = ["run", "debug=smoke", "metric=[deletion]", "metric.deletion.step=0.25", f"paths.root_dir={tmp_path}",
            f"paths.cache_dir={cache}", f"hydra.run.dir={run_dir}",
            *[o.format(checkpoint=checkpoint, planted=planted) for o in overrides]]
    assert main(args) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(planted) in lines[0], lines
    assert advice in lines[0], lines
    assert not marker.exists() and planted.read_bytes() == content
    assert not (run_dir / "DONE").exists()


def test_an_in_process_command_leaves_no_hydra_job_behind(tmp_path):
    """After ``main`` returns, a plain ``run(cfg)`` must not pick up that job's config names (``run_names``)."""
    from hydra.core.hydra_config import HydraConfig

    assert main(["run", "--cfg", "job", "method=saliency", f"paths.root_dir={tmp_path}"]) == 0
    assert not HydraConfig.initialized()
