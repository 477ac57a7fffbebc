"""Helpers shared by the run-task tests (importable as ``run_helpers``: pytest puts ``tests/`` on the path
for its top-level ``conftest.py``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hydra import compose, initialize_config_dir

from xattr.cli import CONF_DIR


def make_cfg(tmp_path: Path, checkpoint: Path, *extra: str):
    """A composed `conf/run.yaml`: saliency on 10 shapes images in batches of 4, one fast deletion metric."""
    overrides = ["debug=smoke", "method=saliency", "metric=[deletion]", "metric.deletion.step=0.25", "dataset.n_samples=10",
                 "batch_size=4", "n_figure=2", f"model.checkpoint={checkpoint}", f"paths.root_dir={tmp_path}",
                 f"paths.cache_dir={tmp_path}/cache", *extra]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="run", overrides=overrides)


class Interrupt(Exception):
    """A simulated crash in the middle of a run."""


def error_lines(stderr: str) -> list[str]:
    """The non-blank lines of a command's stderr (a user error is exactly one: ``error: ...``)."""
    return [line for line in stderr.splitlines() if line.strip()]


def dead_pid() -> int:
    """The PID of a process that existed on this host and is gone (started, SIGKILLed, reaped): what a
    preempted run's ``status.json`` names."""
    process = subprocess.Popen(["sleep", "10"])
    process.kill()
    process.wait()
    return process.pid
