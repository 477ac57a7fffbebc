"""Prompt intervention (xattr.tasks.intervention): prompts, statistics, one batch on a random-init 16 px tiny_t2i,
and the experiment's files read back by `xattr report --paper infodecomp`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from xattr.errors import XattrError
from xattr.tasks.intervention import (
    InterventionSettings,
    image_level,
    intervene,
    omitted_caption,
    paper_swap,
    pearson,
    pixel_level,
    run_intervention,
    shapes_swap,
)


def test_prompts():
    assert omitted_caption("a red star to the left of a blue ring", "star") == "a red to the left of a blue ring"
    assert omitted_caption("a red star", "star", "underscore") == "a red _"
    assert paper_swap("a dog on a bed", "dog") == "cat" and paper_swap("two dogs", "dogs") == "cats"
    assert paper_swap("a teddy bear", "teddy bear") == "robot" and paper_swap("a person", "person") == "monkey"
    assert paper_swap("a dog and a cat", "dog") is None       # the partner is already there
    assert paper_swap("a giraffe", "giraffe") is None
    assert shapes_swap("a red circle", "circle") not in (None, "circle")
    new = shapes_swap("a red circle above a blue square", "red")
    assert new not in (None, "red", "blue")
    assert shapes_swap("a small red circle", "small") is None
    with pytest.raises(XattrError, match="omit='blank'"):
        InterventionSettings(omit="blank")


def test_statistics():
    a = np.arange(10.0)
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0) and pearson(a, -a) == pytest.approx(-1.0)
    assert math.isnan(pearson(a, np.ones(10))) and math.isnan(pearson([1.0], [2.0]))
    settings = InterventionSettings(bootstrap=20, fraction=0.9, seed=0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    r, std, n = image_level(x, y, settings)
    assert r == pytest.approx(pearson(x, y)) and 0 < std < 0.2 and n == 50
    assert image_level(x, y, settings) == (r, std, n)                       # seeded
    y[3] = np.nan
    assert image_level(x, y, settings)[2] == 49
    mean, std, n = pixel_level(np.array([0.2, 0.4, np.nan, 0.6, 0.1, 0.5, 0.3, 0.2, 0.9, 0.4, 0.4]), settings)
    assert mean == pytest.approx(0.4) and n == 10 and 0 < std < 0.1   # resamples of 9 of the 10 finite values


@pytest.fixture(scope="module")
def tiny():
    from xattr.data.shapes_captions import VOCABULARY
    from xattr.methods.info_cmi import InfoCMI
    from xattr.models import TextToImageModel, build_tiny_t2i_pipeline

    torch.manual_seed(0)
    model = TextToImageModel(build_tiny_t2i_pipeline(list(VOCABULARY), image_size=16), name="tiny_t2i")
    return model, InfoCMI(model, n_draws=2, chunk_size=64)


def test_one_batch(tiny):
    model, cmi = tiny
    before = dict(model.unet.attn_processors)
    x = torch.rand(2, 3, 16, 16)
    captions, words = ["a red star above a blue ring", "a green circle"], ["star", "green"]
    settings = InterventionSettings(n=3)
    out = intervene(model, cmi, x, captions, words, ["square", None], settings)
    assert dict(model.unet.attn_processors) == before                       # trace removed
    for key in ("change", "swap_change", "cmi_map", "swap_cmi_map", "attention"):
        assert out[key].shape == (2, 16, 16) and torch.isfinite(out[key]).all(), key
    assert torch.allclose(out["change"], ((out["reconstruction"] - out["omitted"]) ** 2).sum(1))
    assert (out["attention"] >= 0).all() and (out["change"] >= 0).all()
    assert out["omitted_captions"] == ["a red above a blue ring", "a circle"]
    assert out["swapped_captions"] == ["a red square above a blue ring", None]
    assert math.isfinite(float(out["swap_i_s"][0])) and math.isnan(float(out["swap_i_s"][1]))
    assert float(out["swap_change"][1].abs().sum()) == 0
    # the CMI is the method's own, on the same seed: same image-level values and map
    from xattr.info.pointwise import pixel_map
    from xattr.utils.seed import make_generator

    info = cmi.information(x, captions, words, generator=make_generator(0))
    assert torch.allclose(out["cmi_i_o"], info["i_o"].float()) and torch.allclose(out["cmi_map"], pixel_map(info["i_o_map"])[:, 0])


def test_run_writes_tables_runs_and_figure(tiny, tmp_path):
    from xattr.data.shapes_captions import ShapesCaptionsDataset
    from xattr.tasks.report import load_paper, report

    model, cmi = tiny
    data = ShapesCaptionsDataset(split="test", image_size=16, words="nouns", n_samples=4)
    table = run_intervention(model, cmi, data, tmp_path, settings=InterventionSettings(n=3, bootstrap=5),
                             names={"model": "tiny_t2i", "dataset": "shapes_captions"}, batch_size=2, n_figure=2,
                             paper_rows=load_paper(["infodecomp"], "table4"), progress=False)
    assert {"info_cmi", "attention", "reconstruction"} == set(table["method"])
    for name in ("per_image.csv", "maps.npz", "table4.csv", "intervention.md", "figures/intervention.png"):
        assert (tmp_path / name).is_file(), name
    assert len(pd.read_csv(tmp_path / "per_image.csv")) == 4
    assert "| info_cmi | image_pearson |" in (tmp_path / "intervention.md").read_text()
    assert "0.34" in (tmp_path / "intervention.md").read_text()
    long = report([tmp_path], paper=["infodecomp"], paper_table="table4", echo=False)
    assert {"info_cmi", "attention", "reconstruction"} == set(long["method"])
    assert "Paired CMI − attention" in (tmp_path / "intervention.md").read_text()
    # --report-only rebuilds the same tables from per_image.csv and the recorded settings
    import subprocess
    import sys
    from pathlib import Path

    before = pd.read_csv(tmp_path / "table4.csv")
    (tmp_path / "table4.csv").unlink()
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "scripts" /
                                               "infodecomp_intervention.py"), "--report-only", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "table4.csv"), before)


def test_paired_differences_against_a_hand_computed_case():
    from xattr.tasks.intervention import paired_differences

    rng = np.random.default_rng(0)
    change = rng.random(40)
    frame = pd.DataFrame({"change_sum": change, "cmi_i_s": change + 0.1 * rng.random(40),   # tracks the change
                          "cmi_i_o": rng.random(40), "attention_sum": rng.random(40),
                          "pixel_r_cmi": np.full(40, 0.5), "pixel_r_attention": np.linspace(0.0, 0.2, 40)})
    rows = {r["metric"]: r for r in paired_differences(frame, InterventionSettings(), resamples=200)}
    image = rows["image_pearson"]
    expected = np.corrcoef(change, frame["cmi_i_s"])[0, 1] - np.corrcoef(change, frame["attention_sum"])[0, 1]
    assert image["difference"] == pytest.approx(expected) and image["difference"] > 0.5
    assert 0 < image["se"] < 0.5 and image["share_positive"] == 1.0 and image["n"] == 40
    pixel = rows["pixel_pearson"]
    assert pixel["difference"] == pytest.approx(0.4) and pixel["se"] == pytest.approx(
        np.linspace(0.0, 0.2, 40).std(ddof=1) / np.sqrt(40))


def test_too_few_samples_is_one_line(tiny, tmp_path):
    from xattr.data.shapes_captions import ShapesCaptionsDataset

    model, cmi = tiny
    data = ShapesCaptionsDataset(split="test", image_size=16, words="nouns", n_samples=2)
    with pytest.raises(XattrError, match="at least 3") as info:
        run_intervention(model, cmi, data, tmp_path, progress=False)
    assert "\n" not in str(info.value)


def test_script_at_paper_scale_offline_is_one_line_and_exit_code_2(tmp_path):
    """`make infodecomp-intervention SCALE=paper` without COCO: one line naming the missing files, exit code 2,
    nothing written that looks complete."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "intervention"
    done = subprocess.run([sys.executable, str(root / "scripts" / "infodecomp_intervention.py"), "--scale", "paper",
                           "--out", str(out), f"paths.data_dir={tmp_path / 'no_data'}"],
                          capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: dataset coco100_it: missing") and "paths.data_dir" in lines[0]
    assert not (out / "intervention.md").exists() and not (out / "table4.csv").exists()
