"""The tiny_t2i trainer: a few steps on a handful of captioned images, resumed, saved as a pipeline folder
that the model loader reads; the deterministic sampler."""

from __future__ import annotations

import torch

from xattr.models import TextToImageModel, build_text_to_image_model, build_tiny_t2i_pipeline
from xattr.training.text_to_image import TextToImageTrainer, load_or_train_t2i, sample_images, t2i_folder

WORDS = ["a", "red", "blue", "star", "ring"]


def captioned(n: int = 4) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, 16, 16, generator=g), "caption": ["a red star", "a blue ring"][i % 2]}
            for i in range(n)]


def trainer(**overrides) -> TextToImageTrainer:
    values = dict(steps=2, batch_size=2, save_every=1, sample_steps=2, sample_captions=["a red star", ""])
    return TextToImageTrainer.from_conf(**{**values, **overrides})


def test_fit_saves_a_pipeline_folder_the_loader_reads(tmp_path):
    folder = tmp_path / "t2i" / "tiny_t2i-toy-16"
    model = trainer().fit(captioned(), folder=folder, progress=False)
    assert (folder / "model_index.json").is_file() and not (tmp_path / "t2i" / "tiny_t2i-toy-16.partial.pt").exists()
    assert (tmp_path / "t2i" / "tiny_t2i-toy-16.loss.png").is_file()
    assert (tmp_path / "t2i" / "tiny_t2i-toy-16.samples.png").is_file()
    loaded = build_text_to_image_model("tiny_t2i", path=str(folder))
    z, a = torch.randn(1, 3, 16, 16), torch.tensor([0.5])
    with torch.no_grad():
        assert torch.allclose(loaded.eps(z, a, loaded.encode_prompt(["a red star"])),
                              model.eps(z, a, model.encode_prompt(["a red star"])), atol=1e-6)
    assert loaded.image_size == (16, 16)


def test_resume_continues_where_it_stopped(tmp_path, monkeypatch):
    one_go = trainer(steps=2).fit(captioned(), folder=tmp_path / "one", progress=False)
    folder = tmp_path / "pipe"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # stops after step 1, before the folder is written
        patch.setattr("xattr.training.text_to_image.save_pipeline_folder", interrupted)
        try:
            trainer(steps=1).fit(captioned(), folder=folder, progress=False)
        except KeyboardInterrupt:
            pass
    assert (tmp_path / "pipe.partial.pt").is_file() and not folder.exists()
    resumed = trainer(steps=2).fit(captioned(), folder=folder, progress=False)  # continues at step 1
    assert not (tmp_path / "pipe.partial.pt").exists()
    for a, b in zip(one_go.unet.parameters(), resumed.unet.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(one_go.text_encoder.parameters(), resumed.text_encoder.parameters(), strict=True):
        assert torch.equal(a, b)


def test_load_or_train_builds_once(tmp_path):
    path = load_or_train_t2i(captioned(), tmp_path, "toy", 16, steps=1, batch_size=2, sample_steps=1)
    assert path == t2i_folder(tmp_path, "toy", 16) and (path / "model_index.json").is_file()
    again = load_or_train_t2i(None, tmp_path, "toy", 16)  # cached: no training set needed
    assert again == path


def test_sampler_is_deterministic_and_in_range():
    model = TextToImageModel(build_tiny_t2i_pipeline(WORDS, image_size=16), name="tiny_t2i")
    one = sample_images(model, ["a red star", ""], steps=3, generator=torch.Generator().manual_seed(0))
    two = sample_images(model, ["a red star", ""], steps=3, generator=torch.Generator().manual_seed(0))
    assert one.shape == (2, 3, 16, 16) and torch.equal(one, two) and 0 <= one.min() and one.max() <= 1

