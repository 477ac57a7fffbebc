"""Provenance and preemption: ``manifest.json`` records the software and host of the folder's first run (never
compared on resume); every ``status.json`` write records its process (pid, host, heartbeat), so a run killed
without a word (SIGKILL) is told from a live one by the report, the lock refusal and resume."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import socket
import subprocess
from datetime import datetime
from importlib import metadata
from pathlib import Path

import pytest
from run_helpers import Interrupt, dead_pid, make_cfg

import xattr.runs.provenance as provenance
from xattr.cli import main
from xattr.runs import RunFolder
from xattr.runs.provenance import PACKAGES, describe_process, git_state, liveness
from xattr.utils.locks import exclusive

NAMES = {"method": "saliency", "model": "tiny_cnn", "dataset": "shapes"}
REPO = Path(__file__).resolve().parents[2]


def _taken(path: Path, checkpoint: Path, tmp_path: Path) -> RunFolder:
    folder = RunFolder(path)
    assert folder.open(resume=False)
    folder.start(make_cfg(tmp_path, checkpoint), [0, 1, 2, 3], NAMES, n_batches=1)
    return folder


def test_manifest_records_provenance_once_and_resume_does_not_compare_it(tmp_path, checkpoint, caplog):
    folder = _taken(tmp_path / "run", checkpoint, tmp_path)
    recorded = json.loads(folder.manifest_path.read_text())["provenance"]
    assert set(recorded["packages"]) == set(PACKAGES)
    for name, version in recorded["packages"].items():
        try:
            assert version == metadata.version(name)
        except metadata.PackageNotFoundError:
            assert version == "not installed"
    assert recorded["python"] == platform.python_version()
    assert recorded["host"] == socket.gethostname()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if shutil.which("git") and head.returncode == 0:  # the tests run from a checkout
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True)
        assert recorded["git"] == {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}

    # a resume with other software (an upgraded torch, another commit) is not refused, and the manifest stays
    manifest = json.loads(folder.manifest_path.read_text())
    manifest["provenance"] = {**manifest["provenance"], "packages": {"torch": "0.0.1"}, "git": {"commit": "0" * 40}}
    folder.manifest_path.write_text(json.dumps(manifest))
    written = folder.manifest_path.read_bytes()
    again = RunFolder(folder.path)
    assert again.open(resume=True)
    with caplog.at_level(logging.WARNING, logger="xattr.runs.folder"):
        assert again.start(make_cfg(tmp_path, checkpoint), [0, 1, 2, 3], NAMES, n_batches=1) == set()
    assert folder.manifest_path.read_bytes() == written
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "xattr.runs.folder"]
    assert f"with other software than its first run (manifest.json's provenance): torch 0.0.1 → " \
           f"{recorded['packages']['torch']}" in warning
    if "git" in recorded:
        assert f"git commit 0000000000 → {recorded['git']['commit'][:10]}" in warning


def test_provenance_never_fails_without_a_git_checkout_or_git(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "PACKAGES", ("torch", "surely-not-a-package-xattr"))
    monkeypatch.setattr(provenance, "CHECKOUT", tmp_path)  # e.g. site-packages: no checkout
    record = provenance.provenance()
    assert record["packages"]["surely-not-a-package-xattr"] == "not installed" and "git" not in record
    if shutil.which("git"):  # a checkout that does not hold the package (a venv inside another repo)
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
        assert git_state(tmp_path) is None
    monkeypatch.setattr(provenance, "CHECKOUT", REPO)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # git missing
    assert "git" not in provenance.provenance()


def test_every_status_write_records_the_process(tmp_path, checkpoint):
    folder = _taken(tmp_path / "run", checkpoint, tmp_path)
    folder.write_status(state="running", done=0, total=4, names=NAMES)
    status = folder.status()
    assert (status["pid"], status["host"]) == (os.getpid(), socket.gethostname())
    assert datetime.fromisoformat(status["heartbeat"]).tzinfo is not None
    assert liveness(status) == "alive"
    assert liveness({**status, "pid": dead_pid()}) == "dead"
    assert liveness({**status, "host": "node-elsewhere"}) == "unknown"
    assert liveness({"state": "running"}) == "unknown"  # an older status.json names no process
    if "boot_id" in status:  # Linux: a restarted host runs none of the processes from before
        assert liveness({**status, "boot_id": "another-boot"}) == "dead"
        assert "(the host has restarted since)" in describe_process({**status, "boot_id": "another-boot"})
    if "pid_namespace" in status:  # a container sharing the host name: its PIDs are not ours to check
        other = {**status, "pid_namespace": "pid:[1]"}
        assert liveness(other) == "unknown" and "in another PID namespace" in describe_process(other)


def _crashed(tmp_path: Path, checkpoint: Path, run_dir: Path, monkeypatch) -> list[str]:
    """A real run stopped in its second batch, its status.json left as a SIGKILL leaves it: ``running`` at the
    last finished batch (the crash handler's ``failed`` is rewritten back)."""
    from xattr.methods.saliency import Saliency

    args = ["run", "debug=smoke", "method=saliency", "metric=[deletion]", "metric.deletion.step=0.25",
            "dataset.n_samples=8", "batch_size=4", f"model.checkpoint={checkpoint}", f"paths.root_dir={tmp_path}",
            f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={run_dir}"]
    calls, original = [], Saliency._attribute

    def attribute(self, x, target):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupt("simulated crash")
        return original(self, x, target)

    with monkeypatch.context() as patch:
        patch.setattr(Saliency, "_attribute", attribute)
        with pytest.raises(Interrupt):
            main(args)
    status = json.loads((run_dir / "status.json").read_text())
    status.pop("error", None)
    (run_dir / "status.json").write_text(json.dumps({**status, "state": "running"}))
    return args


def test_resume_after_sigkill_proceeds_and_a_live_run_is_named_in_the_refusal(tmp_path, checkpoint, capsys,
                                                                              monkeypatch):
    run_dir = tmp_path / "run"
    args = _crashed(tmp_path, checkpoint, run_dir, monkeypatch)
    capsys.readouterr()
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["state"], status["done"]) == ("running", 4)

    # a live run: this process holds the lock and its status names it → refused, naming the process
    with exclusive(run_dir, "the live run"):
        assert main([*args, "resume=true"]) == 2
    err = capsys.readouterr().err
    assert "is in use by another process" in err
    assert f"its status.json names process {os.getpid()} on {socket.gethostname()}, last heartbeat " in err

    # killed: its process is gone → the report says so, and resume=true proceeds to a complete folder
    gone = dead_pid()
    (run_dir / "status.json").write_text(json.dumps({**status, "pid": gone}))
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 2  # nothing complete yet
    err = capsys.readouterr().err
    assert f"skipped {run_dir}: killed at 4/8 samples: process {gone} on {socket.gethostname()} is gone; " in err
    assert main([*args, "resume=true"]) == 0
    assert RunFolder(run_dir).is_complete() and RunFolder(run_dir).status()["state"] == "complete"
    log = (run_dir / "xattr.log").read_text()
    assert f"never recorded an end (process {gone} on {socket.gethostname()} is gone); resuming it" in log


@pytest.mark.parametrize("signal_name", ["SIGKILL"])
def test_a_sigkilled_run_process_is_reported_killed(tmp_path, checkpoint, signal_name):
    """A real ``xattr run`` process, SIGKILLed once its first batch is recorded: its status.json stays
    ``running`` with its PID, and the report (another process) calls it killed."""
    import signal
    import sys
    import time

    run_dir = tmp_path / "run"
    code = ("import sys, time\n"
            "from xattr.methods.saliency import Saliency\n"
            "original = Saliency._attribute\n"
            "calls = []\n"
            "def slow(self, x, target):\n"
            "    calls.append(1)\n"
            "    if len(calls) == 2:\n"
            "        time.sleep(60)\n"
            "    return original(self, x, target)\n"
            "Saliency._attribute = slow\n"
            "from xattr.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    args = ["run", "debug=smoke", "method=saliency", "metric=[deletion]", "metric.deletion.step=0.25",
            "dataset.n_samples=8", "batch_size=4", f"model.checkpoint={checkpoint}", f"paths.root_dir={tmp_path}",
            f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = RunFolder(run_dir).status() if (run_dir / "status.json").is_file() else None
            if status and status.get("done") == 4:
                break
            assert process.poll() is None, "the run ended before its second batch"
            time.sleep(0.2)
        else:
            pytest.fail("the run did not finish its first batch in time")
        process.send_signal(getattr(signal, signal_name))
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    status = RunFolder(run_dir).status()
    assert (status["state"], status["pid"], status["host"]) == ("running", process.pid, socket.gethostname())
    report = subprocess.run([sys.executable, "-m", "xattr.cli", "report", str(run_dir)], capture_output=True,
                            text=True)
    assert f"skipped {run_dir}: killed at 4/8 samples: process {process.pid} on " in report.stderr
