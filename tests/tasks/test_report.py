"""`xattr report --paired`: paired differences against a reference method on the same images."""

from __future__ import annotations

import pandas as pd
import pytest

from xattr.errors import XattrError
from xattr.tasks.report import paired_differences, paired_table


def _per_sample(values: dict[str, list[float]], metric: str = "mnim.mnim") -> pd.DataFrame:
    rows = [{"model": "tiny_cnn", "dataset": "shapes", "metric": metric, "id": f"img-{i}", "method": method,
             "value": v} for method, vs in values.items() for i, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_paired_differences_match_by_image_and_give_standard_errors():
    frame = _per_sample({"diffib": [0.1, 0.2, 0.4, 0.5], "saliency": [0.9, 0.3, 0.4, 0.8]})
    frame = frame.sample(frac=1.0, random_state=0)  # order must not matter: rows are matched by id
    out = paired_differences(frame, "diffib").set_index("method").loc["saliency"]
    d = pd.Series([0.1 - 0.9, 0.2 - 0.3, 0.0, 0.5 - 0.8])
    assert out["n"] == 4
    assert out["diff"] == pytest.approx(d.mean())
    assert out["sem"] == pytest.approx(d.std(ddof=1) / 2)
    assert out["lower"] == pytest.approx(0.75) and out["higher"] == 0.0
    table = paired_table(paired_differences(frame, "diffib"))
    assert list(table["method"]) == ["saliency"] and "(0% / 75%)" in table["mnim.mnim"].iloc[0]


def test_paired_differences_skip_unmatched_images_and_name_a_bad_reference():
    frame = _per_sample({"diffib": [0.1, 0.2], "iba": [0.3]})
    assert int(paired_differences(frame, "diffib")["n"].iloc[0]) == 1
    with pytest.raises(XattrError, match="--paired bogus"):
        paired_differences(frame, "bogus")
