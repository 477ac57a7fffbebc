"""xattr.runs.writers: maps.npz stores only float dtypes (an integer dtype would round maps in [0,1] to zeros)."""

from __future__ import annotations

import numpy as np
import pytest

from xattr.errors import XattrError
from xattr.runs.writers import MAPS_DTYPES, write_maps


@pytest.mark.parametrize("dtype", ["int8", "uint8", "foo", "float64"])
def test_write_maps_refuses_other_dtypes(dtype, tmp_path):
    with pytest.raises(XattrError, match=f"maps_dtype={dtype} is not an option; use maps_dtype=float32 or "):
        write_maps(tmp_path, np.full((2, 1, 4, 4), 0.25, np.float32), np.array(["a", "b"]), {}, dtype)
    assert not (tmp_path / "maps.npz").exists()


@pytest.mark.parametrize("dtype", MAPS_DTYPES)
def test_write_maps_keeps_small_values(dtype, tmp_path):
    write_maps(tmp_path, np.full((2, 1, 4, 4), 0.25, np.float32), np.array(["a", "b"]), {}, dtype)
    stored = np.load(tmp_path / "maps.npz")["maps"]
    assert stored.dtype == np.dtype(dtype) and np.all(stored == 0.25)
