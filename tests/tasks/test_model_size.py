"""A classifier trained at one image size does not silently run on images of another.

A checkpoint records the size it was trained at (``meta.image_size``; every classifier trained here writes it)
and loading it into a model built for another size is ONE line naming both sizes and the explicit way to
resize (``dataset.image_size=<trained size>``); a bare state dict records nothing and is taken as it is. A
first-use training (``model.checkpoint=null`` and nothing cached at that size) logs one line before it starts:
that it trains, which sizes are cached, and how long it will take. The ids are rows of docs/reliability.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from run_helpers import error_lines

from xattr.cli import main
from xattr.errors import XattrError
from xattr.models import build_model

FAST = ["method=saliency", "metric=[deletion]", "metric.deletion.step=0.25", "batch_size=2", "n_figure=0"]


@pytest.fixture(scope="module")
def checkpoint_64(tmp_path_factory) -> Path:
    """A tiny_cnn checkpoint as ``xattr train task=classifier`` writes it: weights + ``meta.image_size: 64``."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt64") / "tiny_cnn-shapes-64.pt"
    torch.save({"model": build_model("tiny_cnn", num_classes=6).state_dict(),
                "meta": {"model": "tiny_cnn", "dataset": "shapes", "image_size": 64}}, path)
    return path


def folder_of(root: Path, size: int, n: int = 2) -> Path:
    for index in range(n):
        (root / f"c{index}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size, size, 3), 40 * (index + 1), dtype=np.uint8)).save(root / f"c{index}" / "a.png")
    return root


def run_args(tmp_path: Path, checkpoint: Path, *extra: str) -> list[str]:
    return ["run", *FAST, f"model.checkpoint={checkpoint}", f"paths.root_dir={tmp_path}",
            f"paths.data_dir={tmp_path}/data", f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={tmp_path}/run",
            *extra]


# id: (overrides, text the one error line contains)
SIZE_CASES = {
    "folder-8px-on-64px-checkpoint": (["dataset=folder", "dataset.image_size=8", "model.num_classes=6"],
                                      "was trained on 64x64 images but the model is built for 8x8"),
    "shapes-32px-on-64px-checkpoint": (["dataset.image_size=32", "dataset.n_samples=2"],
                                       "was trained on 64x64 images but the model is built for 32x32"),
    "model-image_size-on-64px-checkpoint": (["model.image_size=32", "dataset.n_samples=2"],
                                            "was trained on 64x64 images but the model is built for 32x32"),
}


@pytest.mark.parametrize("case", list(SIZE_CASES))
def test_checkpoint_of_another_size_is_one_line(case, tmp_path, checkpoint_64, capsys):
    overrides, expected = SIZE_CASES[case]
    folder_of(tmp_path / "data" / "folder", 8)
    assert main(run_args(tmp_path, checkpoint_64, *overrides)) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and expected in lines[0] and str(checkpoint_64) in lines[0], lines
    assert "dataset.image_size=64" in lines[0]  # the explicit way to resize
    run_dir = tmp_path / "run"
    assert not (run_dir / "DONE").exists() and not (run_dir / "summary.csv").exists()
    assert not (run_dir / "partial").exists()


def test_resizing_to_the_checkpoint_size_is_the_explicit_option(tmp_path, checkpoint_64):
    """The fix the message names works: the 8 px folder resized to 64 px runs on the 64 px checkpoint."""
    folder_of(tmp_path / "data" / "folder", 8)
    assert main(run_args(tmp_path, checkpoint_64, "dataset=folder", "dataset.image_size=64",
                         "model.num_classes=6")) == 0
    assert (tmp_path / "run" / "DONE").is_file()


def test_checkpoint_size_is_read_when_loading(tmp_path, checkpoint_64, checkpoint):
    with pytest.raises(XattrError, match="trained on 64x64 images but the model is built for 32x32") as error:
        build_model("tiny_cnn", num_classes=6, image_size=32, checkpoint=str(checkpoint_64))
    assert "\n" not in str(error.value)
    assert build_model("tiny_cnn", num_classes=6, image_size=64, checkpoint=str(checkpoint_64)) is not None
    # a bare state dict records no size: taken as it is (the fixture every run test uses)
    assert build_model("tiny_cnn", num_classes=6, image_size=32, checkpoint=str(checkpoint)) is not None


def test_trained_classifier_records_its_size(tmp_path):
    from xattr.data import ShapesDataset
    from xattr.training.classifier import train_classifier

    path = tmp_path / "c.pt"
    train_classifier(build_model("tiny_cnn", num_classes=6, image_size=32), ShapesDataset("train", image_size=32,
                     length=16), ShapesDataset("test", image_size=32, length=8), epochs=1, batch_size=16, lr=1e-3,
                     weight_decay=0.0, checkpoint=path)
    assert torch.load(path, weights_only=True)["meta"]["image_size"] == 32
    with pytest.raises(XattrError, match="trained on 32x32"):
        build_model("tiny_cnn", num_classes=6, image_size=64, checkpoint=str(path))


def test_first_use_training_says_so_and_how_long_before_it_starts(tmp_path, monkeypatch, caplog):
    """``dataset.image_size=32`` with only a 64 px classifier cached: one line before the training starts names
    the new size, the cached one, the recipe and an estimate of the time."""
    from xattr.training import classifier

    cache = tmp_path / "cache"
    (cache / "classifiers").mkdir(parents=True)
    torch.save({}, cache / "classifiers" / "tiny_cnn-shapes-64.pt")
    started = []

    def train(model, train_set, test_set, *, checkpoint, meta, **hparams):  # stands for the minutes of training
        started.append([r.getMessage() for r in caplog.records])
        torch.save({"model": model.state_dict(), "meta": meta}, checkpoint)
        return {"test_accuracy": 0.0}

    monkeypatch.setattr(classifier, "train_classifier", train)
    with caplog.at_level(logging.INFO, logger="xattr"):
        model = classifier.load_trained_classifier("tiny_cnn", "shapes", 32, cache)
    assert model.spec.input_size == (32, 32)
    lines = [m for m in started[0] if "training it now" in m]
    assert len(lines) == 1, started
    line = lines[0]
    assert "no trained tiny_cnn for shapes at 32 px" in line and "cached at 64 px" in line
    assert "dataset.image_size=64" in line and "5 epochs x 5000 images x" in line and "ms/image measured" in line
    assert "about " in line and (" s " in line or " min " in line or " h " in line)
    caplog.clear()
    classifier.load_trained_classifier("tiny_cnn", "shapes", 32, cache)  # cached now: no line
    assert not [r for r in caplog.records if "training" in r.getMessage()]


def test_training_estimate_leaves_model_and_rng_alone():
    from xattr.data import ShapesDataset
    from xattr.training.classifier import estimate_training_seconds

    model = build_model("tiny_cnn", num_classes=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    seconds, recipe = estimate_training_seconds(model, ShapesDataset("train", length=64), ShapesDataset("test", length=8),
                                                epochs=3, batch_size=16, train_size=32)
    assert seconds > 0 and recipe.startswith("3 epochs x 32 images x")
    assert torch.equal(torch.get_rng_state(), state) and not model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
