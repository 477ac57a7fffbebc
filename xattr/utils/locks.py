"""File locks (the ``filelock`` package) for what two processes must not do at once.

- :func:`exclusive` — take a lock or fail at once with a one-line :class:`~xattr.errors.XattrError` (a run folder
  that another process is writing);
- :func:`waiting` — wait for a lock (a cache entry another process is training: wait, then load its result).

The lock file is ``<target>.lock`` beside the thing it guards (for a folder: ``<folder>/.lock``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from xattr.errors import XattrError


def lock_path(target: str | Path) -> Path:
    """``<folder>/.lock`` for an existing folder, else ``<target>.lock`` beside a file."""
    target = Path(target)
    return target / ".lock" if target.is_dir() else target.with_name(target.name + ".lock")


@contextlib.contextmanager
def exclusive(target: str | Path, what: str) -> Iterator[None]:
    """Hold the lock of ``target`` for the block; if another process holds it, raise one line naming ``what``."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout as error:
        raise XattrError(f"{what} is in use by another process (lock {path}); wait for it to finish "
                         "or choose another folder") from error
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def waiting(target: str | Path, timeout: float = -1) -> Iterator[None]:
    """Hold the lock of ``target`` for the block, waiting for another process to release it first."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path, timeout=timeout):
        yield
