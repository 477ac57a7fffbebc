"""One run folder on disk: its lifecycle (lock, open, manifest, status, chunks, ``DONE``) and reading it back.

A run goes ``lock`` → ``open`` → ``start`` → ``save_chunk`` per batch → (writers) → ``complete``;
``recording`` keeps ``status.json`` honest around it. The format is described in :mod:`xattr.runs`.

Whose folder it is: the process holding ``lock`` (a second one is refused before it writes anything), and
among runs the one whose results it holds: ``manifest.json`` (the resume fingerprint and the composed
config, written once by the first run) says which. ``status.json`` is written only by the run that owns
the folder: one that found it empty, or a resume whose fingerprint matched (:meth:`RunFolder.start`); a
refused run leaves the folder as it was. ``.hydra/`` is Hydra's log of the last invocation (Hydra writes
it before the task runs, also for a refused one); it is read only for folders older than ``manifest.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from xattr.errors import XattrError, find_xattr_error
from xattr.runs.provenance import describe_running, differences, process_fields, provenance
from xattr.utils.io import atomic_save_npz, atomic_write_json, atomic_write_text
from xattr.utils.locks import exclusive

log = logging.getLogger(__name__)

PARTIAL = "partial"
DONE = "DONE"
STATUS = "status.json"
MANIFEST = "manifest.json"
#: where runs before ``manifest.json`` kept the fingerprint (without the config); read when resuming them
LEGACY_MANIFEST = f"{PARTIAL}/{MANIFEST}"
CONFIG = ".hydra/config.yaml"
#: the manifest's entry holding the composed config
MANIFEST_CONFIG = "config"
#: the manifest's entry recording the software and host of the folder's first run (:func:`provenance`)
MANIFEST_PROVENANCE = "provenance"
#: the manifest's entries that are not the fingerprint (never compared on resume)
NOT_FINGERPRINT = (MANIFEST_CONFIG, MANIFEST_PROVENANCE)
PER_SAMPLE = "per_sample.csv"
SUMMARY = "summary.csv"


def is_complete(run_dir: str | Path) -> bool:
    """A run folder is complete when its ``DONE`` marker exists (written after every other file)."""
    return (Path(run_dir) / DONE).is_file()


def manifest(cfg: DictConfig, selection: list[int], names: dict[str, str]) -> dict:
    """``manifest.json``: the fingerprint (:func:`fingerprint`), under ``config`` the composed config
    (resolved where it resolves) with the labels the run uses, and under ``provenance`` package versions,
    Python, host and the xattr checkout's git commit (:func:`xattr.runs.provenance.provenance`)."""
    return {**fingerprint(cfg, selection, names), MANIFEST_CONFIG: _container(cfg),
            MANIFEST_PROVENANCE: provenance()}


def _container(cfg: DictConfig) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside Hydra: keep the interpolation as written
        return OmegaConf.to_container(cfg, resolve=False)


def fingerprint(cfg: DictConfig, selection: list[int], names: dict[str, str]) -> dict:
    """What must not change between an interrupted run and its resumption."""
    container = OmegaConf.to_container
    return {
        "dataset": container(cfg.dataset, resolve=True),
        "selection": selection,
        "batch_size": int(cfg.batch_size),
        "target": str(cfg.target),
        "seed": int(cfg.seed),
        "names": names,
        "method": container(cfg.method, resolve=True),
        "metric": container(cfg.metric, resolve=True) if cfg.get("metric") is not None else {},
        "model": {k: v for k, v in container(cfg.model, resolve=True).items() if k != "device"},
        # autocast changes the numbers; fp32 leaves the key out (fingerprints of runs before the option)
        **({"precision": str(cfg.precision)} if cfg.get("precision", "fp32") != "fp32" else {}),
    }


class RunFolder:
    """A run folder at ``path``: written by the run task, read by the report."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        #: whether this object's run owns ``status.json`` (see the module docstring)
        self._owned = False
        #: the last status this object wrote (its ``done``/``total`` survive a failure)
        self._status: dict = {}

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def partial(self) -> Path:
        return self.path / PARTIAL

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def is_complete(self) -> bool:
        return is_complete(self.path)

    def read_manifest(self) -> dict | None:
        """``manifest.json`` (or an older run's ``partial/manifest.json``); ``None`` when the folder has neither."""
        for path in (self.manifest_path, self.path / LEGACY_MANIFEST):
            if path.is_file():
                return json.loads(path.read_text())
        return None

    def holds_results(self) -> bool:
        """Whether a run has taken the folder (it has a manifest) or finished in it."""
        return self.is_complete() or self.read_manifest() is not None

    # ----------------------------------------------------------------------- writing (the run task)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``<folder>/.lock`` for the block (create the folder first); another process holding it is
        refused at once with one line (:func:`xattr.utils.locks.exclusive`), before it writes anything."""
        self.path.mkdir(parents=True, exist_ok=True)
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(exclusive(self.path, f"run folder {self.path}"))
        except XattrError as error:
            raise XattrError(f"{error}{self._holder()}") from error
        with stack:
            yield

    def _holder(self) -> str:
        """For the refusal of a locked folder: the process its ``running`` status names, if it names one."""
        try:
            status = self.status() or {}
        except (OSError, ValueError):
            return ""
        if status.get("state") != "running" or status.get("pid") is None:
            return ""
        return (f"; its status.json names process {status['pid']} on {status.get('host')}, last heartbeat "
                f"{status.get('heartbeat')}")

    def open(self, resume: bool) -> bool:
        """Take the folder for a run (call it under :meth:`lock`): create it; refuse one that holds results
        unless ``resume``. Returns ``False`` when ``resume`` finds it complete (nothing to do). A folder that
        holds no results is this run's from here on (its ``status.json`` records the run)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if resume and self.is_complete():
            return False
        if not resume and self.holds_results():
            raise XattrError(f"run folder {self.path} already holds results; pass resume=true to continue it "
                             "or choose a new hydra.run.dir")
        self._owned = not self.holds_results()
        return True

    def start(self, cfg: DictConfig, selection: list[int], names: dict[str, str], n_batches: int) -> set[int]:
        """Write ``manifest.json`` (see :func:`manifest`; once, by the folder's first run), or check the
        fingerprint against the interrupted run's when resuming (a mismatch raises and writes nothing); return
        the indices (below ``n_batches``) of the batches already finished."""
        wanted = manifest(cfg, selection, names)
        previous = self.read_manifest()
        if previous is not None:
            keys = dict.fromkeys([*wanted, *previous])  # either side: a key only one run has (precision) differs
            changed = [key for key in keys if key not in NOT_FINGERPRINT and previous.get(key) != wanted.get(key)]
            if changed:
                raise XattrError(f"cannot resume {self.path}: {', '.join(changed)} differ from the interrupted run; "
                                 "repeat its overrides or start a new hydra.run.dir")
            software = differences(previous.get(MANIFEST_PROVENANCE) or {}, wanted[MANIFEST_PROVENANCE])
            if software:  # not refused (a fixed bug, an upgrade), but the folder's batches mix the two
                log.warning("resuming %s with other software than its first run (manifest.json's provenance): %s",
                            self.path, ", ".join(software))
        if not self.manifest_path.is_file():  # a new folder, or one of a run older than manifest.json
            atomic_write_json(self.manifest_path, wanted)
        self._owned = True
        finished = {int(path.stem.split("-")[1]) for path in self.partial.glob("batch-*.npz")}
        return {index for index in finished if index < n_batches}

    def write_config(self, cfg: DictConfig) -> None:
        """``.hydra/config.yaml``: this invocation's composed config as the run uses it (Hydra's log; the
        folder's results are described by the manifest's config, :meth:`config`)."""
        atomic_write_text(self.path / CONFIG, OmegaConf.to_yaml(cfg))

    def write_status(self, **fields) -> None:
        """``status.json``: ``fields`` plus this process's ``pid``, ``host`` and a ``heartbeat`` time (UTC), so a
        ``running`` status of a killed process can be told from a live one (:func:`~xattr.runs.provenance.liveness`)."""
        self._status = fields
        atomic_write_json(self.path / STATUS, {**fields, **process_fields()})

    @contextlib.contextmanager
    def recording(self, names: dict[str, str]) -> Iterator[None]:
        """``status.json`` says ``running`` while the block runs, ``interrupted`` after Ctrl-C and ``failed``
        (with the error) if it raises otherwise before the folder is complete; SIGTERM counts as an error
        (``SystemExit: 143``). ``done``/``total`` of the last status survive. Only a run that owns the folder
        writes (:meth:`open` found it empty, or :meth:`start` matched it, possibly inside the block)."""
        if self._owned:
            self.write_status(state="running", names=names)
        try:
            with _terminate_as_exception():
                yield
        except BaseException as error:
            if self._owned and not self.is_complete():
                progress = {key: self._status[key] for key in ("done", "total") if key in self._status}
                if isinstance(error, KeyboardInterrupt):
                    self.write_status(state="interrupted", **progress, names=names)
                    kept = f"keeps {progress['done']} of {progress['total']} samples" if progress else "keeps no samples"
                    raise KeyboardInterrupt(
                        f"run folder {self.path} {kept}; continue it with `xattr run resume=true "
                        f"hydra.run.dir={self.path}` and the same overrides") from error
                else:
                    cause = find_xattr_error(error) or error  # the user error inside e.g. Hydra's wrapper
                    message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
                    self.write_status(state="failed", error=f"{type(cause).__name__}: {message}", **progress,
                                      names=names)
            raise

    def chunk_path(self, index: int) -> Path:
        return self.partial / f"batch-{index:05d}.npz"

    def save_chunk(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        atomic_save_npz(self.chunk_path(index), arrays)

    def load_chunks(self, n_batches: int) -> list[dict[str, np.ndarray]]:
        """The chunks of batches ``0 .. n_batches-1``, in order."""
        chunks = []
        for index in range(n_batches):
            with np.load(self.chunk_path(index), allow_pickle=False) as data:
                chunks.append({key: data[key] for key in data.files})
        return chunks

    def complete(self, **status) -> None:
        """Mark the run complete: ``status.json`` (``state=complete`` plus ``status``), then ``DONE``; drop
        ``partial/``. Call after every other file is written."""
        self.write_status(state="complete", **status)
        atomic_write_text(self.path / DONE, "complete\n")
        shutil.rmtree(self.partial, ignore_errors=True)

    # ----------------------------------------------------------------------- reading (the report)

    def config(self) -> DictConfig | None:
        """The composed config the folder's results were computed with: the manifest's ``config``; for a
        folder older than ``manifest.json``, its ``.hydra/config.yaml``; ``None`` when it has neither."""
        recorded = self.read_manifest()
        if recorded is not None and MANIFEST_CONFIG in recorded:
            return OmegaConf.create(recorded[MANIFEST_CONFIG])
        path = self.path / CONFIG
        return OmegaConf.load(path) if path.is_file() else None

    def images(self) -> str | None:
        """A key that two folders share exactly when they scored the same images: the manifest's ``dataset``
        config and ``selection``; for a folder older than ``manifest.json``, its config's ``dataset`` node;
        ``None`` when unknown."""
        recorded = self.read_manifest()
        if recorded is not None and "dataset" in recorded:
            return json.dumps([recorded["dataset"], recorded.get("selection")], sort_keys=True)
        config = self.config()
        if config is None or config.get("dataset") is None:
            return None
        return json.dumps([OmegaConf.to_container(config.dataset, resolve=False), None], sort_keys=True)

    def status(self) -> dict | None:
        """``status.json``; ``None`` when absent."""
        path = self.path / STATUS
        return json.loads(path.read_text()) if path.is_file() else None

    def summary(self, nrows: int | None = None):
        """``summary.csv`` as a frame (``nrows``: only the first rows)."""
        import pandas as pd

        return pd.read_csv(self.path / SUMMARY, nrows=nrows)

    def per_sample(self):
        """``per_sample.csv`` as a frame; ``None`` when the run wrote none."""
        import pandas as pd

        path = self.path / PER_SAMPLE
        return pd.read_csv(path) if path.is_file() else None


@contextlib.contextmanager
def _terminate_as_exception():
    """SIGTERM (e.g. a job scheduler's kill) raises SystemExit(143) so the run records state=failed."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: what only a run folder has (written by ``xattr run``): a folder with one of them and no ``DONE`` is incomplete
_RUN_FILES = (STATUS, MANIFEST, PARTIAL)
#: what Hydra writes into a job's folder before xattr runs: a job refused by its config leaves only this
HYDRA_DIR = ".hydra"


def scan_runs(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """``(complete, incomplete)`` run folders at or below each path, in path order (numbered multirun
    subfolders in numeric order), each once. Complete: :func:`is_complete`; incomplete: a folder the run
    task wrote to (``status.json``, ``manifest.json`` or ``partial/``) without ``DONE`` (interrupted, failed,
    killed or still running), or a job folder Hydra made (``.hydra/``) for a run refused before any work."""
    complete: list[Path] = []
    incomplete: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise XattrError(f"run folder {path} does not exist; pass run folders or multirun folders "
                             "(e.g. outputs/multirun/<time>)")
        markers = (DONE, *_RUN_FILES, HYDRA_DIR)
        folders = {path} if is_complete(path) else {p.parent for name in markers for p in path.rglob(name)}
        for candidate in sorted(folders, key=_natural_key):
            if candidate.resolve() in seen:
                continue
            if is_complete(candidate):
                complete.append(candidate)
            elif any((candidate / name).exists() for name in (*_RUN_FILES, HYDRA_DIR)):
                incomplete.append(candidate)
            else:
                continue
            seen.add(candidate.resolve())
    return complete, incomplete


#: why a folder with only Hydra's ``.hydra/`` is not complete (the job never reached the run task)
NEVER_STARTED = ("never started: xattr refused its config before any work (the command printed why; "
                 "the config is in .hydra/config.yaml)")


def why_incomplete(run_dir: str | Path, never_started: str = NEVER_STARTED) -> str | None:
    """Why the run folder ``run_dir`` is not complete, in words from its ``status.json`` (failed with its error,
    interrupted, killed or still running, with its progress); ``never_started`` for a folder the run task never
    wrote to; ``None`` when it is complete. Read by ``xattr report`` and by a sweep naming its failed jobs."""
    run_dir = Path(run_dir)
    status = RunFolder(run_dir).status()
    if status is None:
        if not any((run_dir / name).exists() for name in (PARTIAL, MANIFEST)):
            return never_started
        return "no DONE and no status.json"
    state = status.get("state")
    if state == "complete" and is_complete(run_dir):
        return None
    progress = f" at {status['done']}/{status['total']} samples" if {"done", "total"} <= set(status) else ""
    resume = f"`xattr run resume=true hydra.run.dir={run_dir}` and its overrides"
    if state == "failed":
        return f"failed{progress}: {status.get('error', 'no error recorded')}"
    if state == "interrupted":
        return f"interrupted{progress}; continue it with {resume}"
    if state == "running":  # alive, killed (same host, its PID is gone) or not checkable (another host)
        return describe_running(status, progress, f"resume it with {resume}")
    return f"state {state}{progress} but no DONE"


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Complete run folders (:func:`is_complete`) at or below each path, in path order (numbered multirun
    subfolders in numeric order), each once; the incomplete ones are :func:`scan_runs`'s second list."""
    paths = list(paths)
    found, _ = scan_runs(paths)
    if not found:
        raise no_complete_runs(paths)
    return found


def no_complete_runs(paths: Iterable[str | Path]) -> XattrError:
    """The error for paths below which no run is complete."""
    return XattrError(f"no complete runs (folders with {DONE}) under {', '.join(map(str, paths))}; "
                      f"a run writes {DONE} when it finishes (resume unfinished ones with resume=true)")


def _natural_key(path: Path) -> list:
    """Sort multirun subfolders 0-, 1-, ..., 10- numerically."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]
