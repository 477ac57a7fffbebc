"""Failures of a sweep (``xattr run|train -m``), read from its job folders after the sweep, whichever
launcher ran the jobs (Hydra's basic launcher in this process, joblib's worker processes, submitit's local
or SLURM jobs).

A job catches its own user error (``XattrError``) so that the sweep goes on, and records the outcome in
its folder: the run task's ``status.json`` (:mod:`xattr.runs`) and, for every job, ``.hydra/xattr_job.json``
(``{"error": null | "<message>"}``, rewritten by each invocation like the rest of Hydra's ``.hydra/``). It
covers the refusals that leave a folder as it was (``already holds results``, ``in use by another
process``), whose ``status.json`` is the earlier run's. :class:`SweepCallback` (``conf/hydra/default.yaml``
``hydra.callbacks``) notes the sweep folder and its job folders before the sweep starts; after it,
:func:`failed_jobs` names each job folder this sweep wrote (new, or ``.hydra/`` rewritten) that did not
succeed: its outcome's error, else its ``status.json`` state and error, else (only Hydra's ``.hydra/``)
"never started".
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from xattr.runs.folder import why_incomplete

OUTCOME = ".hydra/xattr_job.json"
#: a job folder with only Hydra's files and no outcome: the job ended before its task function ran
NEVER_STARTED = "never started: the job ended before any work and recorded no outcome (see its log)"
HYDRA_CONFIG = ".hydra/hydra.yaml"

#: the sweep the last :class:`SweepCallback` saw start in this process: (sweep dir, job folders before it)
_started: tuple[Path, dict[Path, float]] | None = None


def _job_folders(sweep_dir: Path) -> dict[Path, float]:
    """Job folders (with Hydra's ``.hydra/hydra.yaml``) below ``sweep_dir`` → that file's mtime."""
    if not sweep_dir.is_dir():
        return {}
    return {path.parent.parent: path.stat().st_mtime for path in sweep_dir.rglob(HYDRA_CONFIG)}


class SweepCallback(Callback):
    """Notes where a sweep writes and what was there before it (in the process that launches the jobs)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        global _started
        sweep_dir = Path(str(config.hydra.sweep.dir))  # the value the launcher uses (``now`` is cached)
        _started = (sweep_dir, _job_folders(sweep_dir))


def take_started() -> tuple[Path, dict[Path, float]] | None:
    """The sweep :class:`SweepCallback` saw start (None: no sweep), forgetting it."""
    global _started
    started, _started = _started, None
    return started


def write_outcome(output_dir: str | Path, error: str | None) -> None:
    """Record a job's outcome in its folder's ``.hydra/`` (None: no user error)."""
    from xattr.utils.io import atomic_write_json

    path = Path(output_dir) / OUTCOME
    if path.parent.is_dir():
        atomic_write_json(path, {"error": error})


def _job(folder: Path) -> tuple[int, str]:
    """``(job number, "job N: overrides")`` of a job folder, from Hydra's ``.hydra/hydra.yaml`` (read once)."""
    try:
        hydra = OmegaConf.load(folder / HYDRA_CONFIG).hydra
        return int(hydra.job.num), f"job {hydra.job.num}: {' '.join(str(o) for o in hydra.overrides.task)}"
    except Exception:  # noqa: BLE001 - name the folder rather than fail while reporting
        return 1 << 30, f"job {folder.name}"


def _why(folder: Path) -> str | None:
    """Why the job in ``folder`` did not succeed; None when it did: its outcome's error, else what its run
    folder says (:func:`xattr.runs.folder.why_incomplete`)."""
    outcome = folder / OUTCOME
    # an outcome older than Hydra's .hydra/ of this invocation is an earlier invocation's (this job ended
    # before its task function began); both are written on the job's machine
    if outcome.is_file() and outcome.stat().st_mtime >= (folder / HYDRA_CONFIG).stat().st_mtime:
        try:
            return json.loads(outcome.read_text()).get("error")
        except (OSError, ValueError):
            pass
    return why_incomplete(folder, NEVER_STARTED)


def failed_jobs(sweep_dir: str | Path, before: dict[Path, float] | None = None) -> list[str]:
    """``[job N: overrides] why`` for each job folder below ``sweep_dir`` that the sweep wrote (new since
    ``before``, or its ``.hydra/`` rewritten) and that did not succeed, in job order."""
    sweep_dir = Path(sweep_dir)
    before = before or {}
    touched = [folder for folder, written in _job_folders(sweep_dir).items() if before.get(folder) != written]
    lines = []
    for (_, label), folder in sorted((_job(folder), folder) for folder in touched):
        why = _why(folder)
        if why is not None:
            lines.append(f"[{label}] {why}")
    return lines
