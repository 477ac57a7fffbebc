"""The run task on a text-to-image model: one loop for both kinds (issue: Info-Decomp backbones, part 5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from xattr.cli import CONF_DIR
from xattr.errors import XattrError, find_xattr_error
from xattr.tasks import run as run_task


@pytest.fixture(scope="module")
def t2i_folder(tmp_path_factory) -> Path:
    """A random-init tiny_t2i pipeline folder (16 px) written by the same code as the trainer's."""
    from xattr.data.shapes_captions import VOCABULARY
    from xattr.models.tiny_t2i import build_tiny_t2i_pipeline, save_pipeline_folder

    folder = tmp_path_factory.mktemp("t2i") / "tiny_t2i"
    save_pipeline_folder(build_tiny_t2i_pipeline(list(VOCABULARY), image_size=16), folder)
    return folder


INFO_CMI = ("method=info_cmi", "method.n_draws=2")


def t2i_cfg(tmp_path: Path, folder: Path, *extra: str, method: tuple[str, ...] = INFO_CMI):
    overrides = ["model=tiny_t2i", f"model.path={folder}", "dataset=shapes_captions", "dataset.image_size=16",
                 "dataset.n_samples=3", "batch_size=2", "n_figure=2", *method,
                 "metric=[miou,mask_mass]", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache", *extra]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="run", overrides=overrides)


def test_info_cmi_run_writes_the_run_folder_with_captions_words_and_diagnostics(tmp_path, t2i_folder):
    out = run_task.run(t2i_cfg(tmp_path, t2i_folder), out_dir=tmp_path / "run")
    per_sample = pd.read_csv(out / "per_sample.csv")
    assert {"caption", "word"} <= set(per_sample.columns)
    assert per_sample["id"].nunique() == 3
    metrics = set(per_sample["metric"])
    assert {"mask_mass.share", "mask_mass.density_ratio", "info_cmi/i_o", "info_cmi/i_s"} <= metrics
    # the word is a whole word of its caption, and the nouns of shapes_captions are shape names
    for caption, word in per_sample[["caption", "word"]].drop_duplicates().itertuples(index=False):
        assert word in caption.split()
    maps = np.load(out / "maps.npz")
    assert maps["maps"].shape == (3, 1, 16, 16)
    assert list(maps["words"]) == list(per_sample.drop_duplicates("id")["word"])
    assert (out / "figures" / "overview.png").is_file()
    curves = list(out.glob("curves*"))
    assert curves, "the miou threshold curve is written as a curve"
    assert json.loads((out / "status.json").read_text())["state"] == "complete"


def test_resumed_text_image_run_equals_an_uninterrupted_one(tmp_path, t2i_folder, monkeypatch):
    from xattr.methods.info_cmi import InfoCMI

    reference = run_task.run(t2i_cfg(tmp_path, t2i_folder), out_dir=tmp_path / "reference")
    original, calls = InfoCMI.attribute, []

    def failing(self, x, prompts, words):
        calls.append(len(prompts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, x, prompts, words)

    monkeypatch.setattr(InfoCMI, "attribute", failing)
    with pytest.raises(KeyboardInterrupt):
        run_task.run(t2i_cfg(tmp_path, t2i_folder), out_dir=tmp_path / "resumed")
    monkeypatch.setattr(InfoCMI, "attribute", original)
    resumed = run_task.run(t2i_cfg(tmp_path, t2i_folder, "resume=true"), out_dir=tmp_path / "resumed")
    a = pd.read_csv(reference / "per_sample.csv")
    b = pd.read_csv(resumed / "per_sample.csv")
    pd.testing.assert_frame_equal(a, b)


def test_a_classifier_method_on_a_text_to_image_model_is_one_line(tmp_path, t2i_folder):
    with pytest.raises(XattrError, match="text-image method"):
        run_task.run(t2i_cfg(tmp_path, t2i_folder, "metric=[mask_mass]", method=("method=saliency",)),
                     out_dir=tmp_path / "r")


def test_a_text_image_method_on_a_classifier_is_one_line(tmp_path, checkpoint):
    overrides = ["debug=smoke", "method=info_cmi", "metric=[deletion]", "dataset.n_samples=2", "batch_size=2",
                 f"model.checkpoint={checkpoint}", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="run", overrides=overrides)
    with pytest.raises(Exception) as raised:  # Hydra wraps it; the CLI prints the XattrError inside
        run_task.run(cfg, out_dir=tmp_path / "r")
    assert "model=tiny_t2i" in str(find_xattr_error(raised.value))


def test_an_uncaptioned_dataset_with_a_text_to_image_model_is_one_line(tmp_path, t2i_folder):
    cfg = t2i_cfg(tmp_path, t2i_folder, "dataset=shapes", "metric=[mask_mass]")
    with pytest.raises(XattrError, match="caption"):
        run_task.run(cfg, out_dir=tmp_path / "r")
