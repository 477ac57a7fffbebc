"""Where a run ran: the software it ran with (``manifest.json``'s ``provenance``) and which process holds it
(``status.json``'s ``pid``/``host``/``heartbeat``), so a run killed without a word (SIGKILL, a preempted node)
is told from a live one.

- :func:`provenance`: package versions (``not installed`` where missing), Python version, host, and the git
  commit of the xattr checkout (with a ``dirty`` flag) when the package is imported from one; never raises.
- :func:`process_fields`: ``pid``, ``host`` and a ``heartbeat`` time (UTC, ISO 8601) for each status write.
- :func:`liveness`: from a ``running`` status, whether its process is ``alive``, ``dead`` (same host, no
  such PID) or ``unknown`` (another host, or an older status without a PID).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

#: the packages whose versions a run records
PACKAGES = ("torch", "torchvision", "timm", "diffusers", "transformers", "captum", "xattr")
NOT_INSTALLED = "not installed"
#: the folder holding the ``xattr`` package (a git checkout's root when xattr runs from one)
CHECKOUT = Path(__file__).resolve().parents[2]


def provenance() -> dict:
    """``{"packages": {name: version}, "python", "host", "platform"}`` and, when the xattr package comes from
    a git checkout, ``"git": {"commit", "dirty"}``."""
    record = {
        "packages": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "host": host(),
        "platform": platform.platform(),
    }
    git = git_state(CHECKOUT)
    if git is not None:
        record["git"] = git
    return record


def differences(before: dict, now: dict) -> list[str]:
    """What changed in the software between two :func:`provenance` records, e.g. ``torch 2.1.0 → 2.2.0``,
    ``git commit 1a2b3c4 → 5d6e7f8``; a package or commit the older record lacks is not a change."""
    changed = []
    old_packages, new_packages = before.get("packages") or {}, now.get("packages") or {}
    for name, version in new_packages.items():
        if name in old_packages and old_packages[name] != version:
            changed.append(f"{name} {old_packages[name]} → {version}")
    old_commit, new_commit = (before.get("git") or {}).get("commit"), (now.get("git") or {}).get("commit")
    if old_commit and new_commit and old_commit != new_commit:
        changed.append(f"git commit {old_commit[:10]} → {new_commit[:10]}")
    return changed


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except Exception:  # noqa: BLE001 - missing (PackageNotFoundError), or broken metadata: must not stop a run
        return NOT_INSTALLED


def git_state(folder: Path) -> dict | None:
    """``{"commit": HEAD, "dirty": bool}`` of the git checkout at ``folder`` when it tracks the xattr package;
    ``None`` when it is no git checkout (e.g. site-packages), git is missing, or git fails or hangs."""
    tracked = _git(folder, "ls-files", "--", "xattr/__init__.py")
    if not tracked:  # not a checkout, or one that does not hold this package (e.g. a venv inside some repo)
        return None
    commit = _git(folder, "rev-parse", "HEAD")
    changes = _git(folder, "status", "--porcelain")
    if not commit or changes is None:
        return None
    return {"commit": commit, "dirty": bool(changes)}


def _git(folder: Path, *args: str) -> str | None:
    """``git -C folder args`` stdout (stripped); ``None`` when git is missing or fails."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def host() -> str:
    return socket.gethostname()


def now() -> str:
    """The current time, UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def process_fields() -> dict:
    """What every ``status.json`` write records about the process writing it: ``pid``, ``host``, ``heartbeat``
    and, on Linux, ``boot_id`` (changes when the host restarts) and ``pid_namespace`` (differs between
    containers that share a host name)."""
    fields = {"pid": os.getpid(), "host": host(), "heartbeat": now()}
    for key, value in (("boot_id", _boot_id()), ("pid_namespace", _pid_namespace())):
        if value:
            fields[key] = value
    return fields


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except (OSError, AttributeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (``os.kill(pid, 0)``; another user's process counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def liveness(status: dict) -> str:
    """For a ``running`` status: ``alive`` or ``dead`` (this host, by its PID; ``dead`` too when the host has
    restarted since, by ``boot_id``), ``unknown`` (another host or PID namespace, or no PID recorded). A
    recycled PID reads as alive: the check can miss a death, never invent one."""
    pid, where = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or not where or where != host():
        return "unknown"
    if _differs(status.get("pid_namespace"), _pid_namespace()):
        return "unknown"
    if _differs(status.get("boot_id"), _boot_id()):
        return "dead"
    return "alive" if pid_alive(pid) else "dead"


def _differs(recorded: str | None, here: str | None) -> bool:
    return bool(recorded) and bool(here) and recorded != here


def describe_process(status: dict, state: str | None = None) -> str | None:
    """The process a ``running`` status names, and whether it lives (``state``: :func:`liveness`, computed when
    not given); ``None`` when the status names none (written before ``status.json`` recorded it)."""
    pid, where, beat = status.get("pid"), status.get("host"), status.get("heartbeat")
    if not isinstance(pid, int) or not where:
        return None
    state = state or liveness(status)
    if state == "dead":
        restarted = " (the host has restarted since)" if _differs(status.get("boot_id"), _boot_id()) else ""
        return f"process {pid} on {where} is gone{restarted}"
    if state == "alive":
        return f"process {pid} on {where} is alive (last heartbeat {beat})"
    other = " in another PID namespace (container)" if where == host() else ""
    return f"process {pid} on {where}{other}, which cannot be checked from {host()}; last heartbeat {beat}"


def describe_running(status: dict, progress: str, resume_hint: str) -> str:
    """Why a ``running`` status has no ``DONE`` (``progress``: e.g. `` at 4/8 samples``): killed (its process
    is gone), running (alive), or not checkable here (another host: the last heartbeat tells)."""
    state = liveness(status)
    process = describe_process(status, state)
    if process is None:
        return f"running{progress} (still running, or killed before it could record why)"
    if state == "dead":
        return f"killed{progress}: {process}; {resume_hint}"
    if state == "alive":
        return f"running{progress}: {process}"
    return f"running{progress}: {process}; if that is long ago it was killed: {resume_hint}"


__all__ = ["NOT_INSTALLED", "PACKAGES", "describe_process", "describe_running", "differences", "git_state", "host", "liveness", "pid_alive",
           "process_fields", "provenance"]
