"""utils.locks: an exclusive lock refuses a second holder with one line; a waiting lock serialises."""

from __future__ import annotations

import threading
import time

import pytest

from xattr.errors import XattrError
from xattr.utils.locks import exclusive, lock_path, waiting


def test_exclusive_refuses_a_second_holder_and_frees_on_exit(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    assert lock_path(folder) == folder / ".lock"
    with exclusive(folder, "run folder x"):
        with pytest.raises(XattrError, match="run folder x is in use by another process"):
            with exclusive(folder, "run folder x"):
                pass
    with exclusive(folder, "run folder x"):  # released: can be taken again
        pass


def test_waiting_lock_serialises_two_holders(tmp_path):
    target = tmp_path / "cache" / "entry.pt"
    assert lock_path(target) == tmp_path / "cache" / "entry.pt.lock"
    order = []

    def hold(name, seconds):
        with waiting(target):
            order.append(f"{name} in")
            time.sleep(seconds)
            order.append(f"{name} out")

    first = threading.Thread(target=hold, args=("a", 0.3))
    first.start()
    time.sleep(0.1)
    hold("b", 0)
    first.join()
    assert order == ["a in", "a out", "b in", "b out"]
