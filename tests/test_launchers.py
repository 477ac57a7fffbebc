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


#: DiffIB amortized at 16 px with networks of a few steps: a job needs the classifier, the denoiser and the
#: alpha-U-Net, and trains each one on first use (about 20 s in all here, most of it the classifier)
TINY_AMORTIZED = ["method=diffib", "method.mode=amortized", "dataset.image_size=16", "model.image_size=16",
                  "method.steps=2", "method.n_points=3", "method.n_noise=1", "method.width=4", "method.depth=2",
                  "method.denoiser.steps=4", "method.denoiser.width=4", "method.denoiser.depth=2",
                  "method.denoiser.train_size=16", "method.alpha_unet.steps=4", "method.alpha_unet.train_size=16"]
TINY_IBA = ["method=iba", "dataset.image_size=16", "model.image_size=16", "method.n_samples=32",
            "method.optimization_steps=2", "method.progress=false"]
#: what each cache entry logs when it is built (once per entry, whichever job builds it)
BUILT = {"classifier": "no trained tiny_cnn for shapes at 16 px", "denoiser": "no MMSE denoiser for shapes",
         "alpha_unet": "no amortized alpha-U-Net for tiny_cnn", "feature_stats": "estimating the feature statistics"}


def _first_use_sweep(tmp_path: Path, launcher: str, method: list[str], sweep_name: str, *extra: str) -> Path:
    """Two jobs at once (seed=0,1) that need the same cache entries, with an empty cache: both complete."""
    sweep = tmp_path / sweep_name
    code = main(["run", "-m", f"hydra/launcher={launcher}", "debug=smoke", "metric=[deletion]",
                 "metric.deletion.step=0.25", f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}", *method,
                 *extra, "seed=0,1"])
    assert code == 0
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))  # not .submitit
    assert len(jobs) == 2 and all((job / "DONE").is_file() for job in jobs), jobs
    return sweep


def _builds(tmp_path: Path) -> dict[str, int]:
    """How many times each cache entry was built, from every job's log under ``tmp_path``."""
    text = "".join(path.read_text() for path in tmp_path.rglob("*.log"))
    return {entry: text.count(line) for entry, line in BUILT.items()}


def _check_first_use(tmp_path: Path, launcher: str, *extra: str) -> None:
    _first_use_sweep(tmp_path, launcher, TINY_AMORTIZED, "amortized", *extra)
    _first_use_sweep(tmp_path, launcher, TINY_IBA, "iba", *extra)  # the classifier is cached by now
    assert _builds(tmp_path) == dict.fromkeys(BUILT, 1)
    cache = tmp_path / ".cache"
    entries = sorted(p.relative_to(cache).parts[0] for p in cache.rglob("*.pt"))
    assert entries == ["alpha_unets", "classifiers", "denoisers", "feature_stats"], entries
    assert not list(cache.rglob("*.partial.pt")) and not list(cache.rglob("*.tmp*"))


def test_concurrent_first_use_trains_each_cache_entry_once_under_joblib(tmp_path, monkeypatch):
    """Two joblib workers start with every cache empty and need the same classifier, denoiser, alpha-U-Net and
    feature statistics: each entry is built once (the other job waits on its lock, then loads it)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _check_first_use(tmp_path, "joblib", "hydra.launcher.n_jobs=2")


@pytest.mark.slow  # submitit's local executor: two fresh processes per sweep, polled (about 60 s here)
def test_concurrent_first_use_trains_each_cache_entry_once_under_submitit_local(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _check_first_use(tmp_path, "submitit_local")
