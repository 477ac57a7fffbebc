"""Sweeps through Hydra's launchers (conf/hydra/launcher/): a failed job is named and the sweep exits 2,
whichever launcher ran it (xattr.tasks.sweeps reads the job folders after the sweep)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from test_cli import common, error_lines

from xattr.cli import CONF_DIR, main

NO_SAMPLES = "dataset shapes (split=test, n_samples=4) has no samples"


def _sweep(tmp_path: Path, checkpoint: Path, capsys, launcher: str, *extra: str) -> tuple[Path, list[str]]:
    """A two-job sweep (the second one refused while it runs: dataset.length=0) through ``launcher``."""
    sweep = tmp_path / "sweep"
    code = main(["run", "-m", f"hydra/launcher={launcher}", *common(tmp_path, checkpoint), *extra,
                 f"hydra.sweep.dir={sweep}", "dataset.length=4,0"])
    lines = [line for line in error_lines(capsys.readouterr().err) if line.startswith("error:")]
    assert code == 2, lines
    return sweep, lines


def _check(sweep: Path, lines: list[str]) -> None:
    good, bad = sweep / "0-saliency", sweep / "1-saliency"
    assert (good / "DONE").is_file() and json.loads((good / "status.json").read_text())["state"] == "complete"
    assert not (bad / "DONE").exists() and json.loads((bad / "status.json").read_text())["state"] == "failed"
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: [job 1: ") and "dataset.length=0]" in lines[0] and NO_SAMPLES in lines[0]


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_failed_job_is_named_and_the_sweep_exits_2(launcher, tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    _check(*_sweep(tmp_path, checkpoint, capsys, launcher, *extra))


@pytest.mark.slow  # submitit's local executor starts each job as a fresh process and polls it (8-15 s here)
def test_a_failed_job_is_named_through_submitit_local(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _check(*_sweep(tmp_path, checkpoint, capsys, "submitit_local"))


def test_a_job_refused_by_the_schema_and_a_rerun_refused_are_named(tmp_path, checkpoint, capsys):
    sweep = tmp_path / "sweep"
    args = ["run", "-m", *common(tmp_path, checkpoint), f"hydra.sweep.dir={sweep}"]
    assert main([*args, "dataset.n_samples=4,0"]) == 2  # job 1: refused before any work (only .hydra/)
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: [job 1: ") and "dataset.n_samples=0" in lines[0], lines
    assert not (sweep / "1-saliency" / "status.json").exists()
    # the same sweep again: job 0's folder holds results (refused, left as it was), job 1 refused again
    assert main([*args, "dataset.n_samples=4,0"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert [line[:14] for line in lines] == ["error: [job 0:", "error: [job 1:"], lines
    assert "already holds results" in lines[0]


def test_a_job_that_left_no_outcome_is_never_started(tmp_path):
    from xattr.tasks import sweeps

    folder = tmp_path / "sweep" / "0-saliency"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    num: 0\n  overrides:\n    task: [seed=1]\n")
    assert sweeps.failed_jobs(tmp_path / "sweep") == ["[job 0: seed=1] never started: the job ended before any "
                                                      "work and recorded no outcome (see its log)"]
    before = sweeps._job_folders(tmp_path / "sweep")
    assert sweeps.failed_jobs(tmp_path / "sweep", before) == []  # a folder an earlier sweep left


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "submitit_slurm"])
def test_presets_compose_and_a_missing_plugin_is_one_line(launcher, tmp_path, capsys, monkeypatch):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # validated against the plugin's schema of the same name
        cfg = compose("run", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    preset = OmegaConf.load(CONF_DIR / "hydra" / "launcher" / f"{launcher}.yaml")
    assert cfg.hydra.launcher._target_ == preset._target_
    assert cfg.hydra.callbacks.xattr_sweep._target_ == "xattr.tasks.sweeps.SweepCallback"
    plugin = "hydra_plugins." + ("hydra_joblib_launcher" if launcher == "joblib" else "hydra_submitit_launcher")
    for name in [m for m in sys.modules if m.startswith(plugin)] or [plugin]:
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["run", "-m", f"hydra/launcher={launcher}", f"paths.root_dir={tmp_path}", "seed=0,1"]) == 2
    distribution = plugin.split(".")[1].replace("_", "-")
    assert error_lines(capsys.readouterr().err) == [
        f"error: hydra/launcher={launcher} needs the package {distribution}, which is not installed; "
        "install the cluster extra: pip install 'xattr[cluster]'"]


def test_an_outcome_older_than_the_jobs_hydra_folder_is_not_read(tmp_path):
    import os

    from xattr.tasks import sweeps

    folder = tmp_path / "sweep" / "0-saliency"
    (folder / ".hydra").mkdir(parents=True)
    sweeps.write_outcome(folder, None)  # an earlier invocation succeeded ...
    os.utime(folder / sweeps.OUTCOME, (1, 1))
    (folder / ".hydra" / "hydra.yaml").write_text("hydra:\n  job:\n    num: 0\n  overrides:\n    task: [seed=1]\n")
    assert [line.split("]")[1][:14] for line in sweeps.failed_jobs(tmp_path / "sweep")] == [" never started"]
    os.utime(folder / sweeps.OUTCOME)  # ... this one too
    assert sweeps.failed_jobs(tmp_path / "sweep") == []
