"""Zoo contracts, run over every model: shape, finiteness, determinism, layers, normalisation, weights."""

from __future__ import annotations

import pytest
import torch

from xattr.errors import XattrError
from xattr.models import MODEL_NAMES, OFFLINE_MODELS, build_model

HEAVY = [name for name in MODEL_NAMES if name not in OFFLINE_MODELS]


def _build(name):
    torch.manual_seed(0)
    return build_model(name, pretrained=False, num_classes=6 if name in OFFLINE_MODELS else 1000)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zoo_contract(name):
    model = _build(name)
    spec = model.spec
    assert not model.training
    x = torch.rand(2, 3, *spec.input_size)
    with torch.no_grad():
        logits = model(x)
        again = model(x)
    assert logits.shape == (2, spec.num_classes)
    assert torch.isfinite(logits).all()
    assert torch.equal(logits, again)
    for role in ("bottleneck", "gradcam"):
        assert isinstance(model.get_layer(role), torch.nn.Module)
    if spec.family == "vit":
        assert model.get_layer("norm1", 0) is model.net.blocks[0].norm1
        assert spec.token_grid[0] * spec.token_grid[1] + spec.num_prefix_tokens == model.net.patch_embed.num_patches + 1


def test_normalisation_is_inside(tiny_cnn):
    x = torch.rand(1, 3, 64, 64)
    normalised = (x - tiny_cnn.normalize.mean) / tiny_cnn.normalize.std
    with torch.no_grad():
        assert torch.allclose(tiny_cnn(x), tiny_cnn.net(normalised))


def test_vgg16_layer_names_match_iba():
    model = _build("vgg16")
    assert model.spec.layer("bottleneck") == "features.17"
    assert model.get_layer("bottleneck") is model.net.features[17]


def test_checkpoint_roundtrip(tmp_path, tiny_cnn):
    path = tmp_path / "w.pt"
    torch.save(tiny_cnn.net.state_dict(), path)
    torch.manual_seed(1)
    other = build_model("tiny_cnn", num_classes=6, checkpoint=str(path))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(other(x), tiny_cnn(x))


def test_unreadable_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(XattrError) as info:
        build_model("tiny_cnn", num_classes=6, checkpoint=str(path))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unknown_model_names_choices():
    with pytest.raises(XattrError, match="tiny_cnn"):
        build_model("alexnet")


@pytest.mark.parametrize("name", ["vgg16", "swin_b", "resnet18", "googlenet"])
def test_pretrained_offline_is_one_line(name, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("xattr.models._timm._host_resolves", lambda host: False)
    monkeypatch.setattr("xattr.models._timm._timm_cached_file", lambda arch: None)
    try:
        build_model(name, pretrained=True)
    except XattrError as error:
        message = str(error)
        assert "\n" not in message and name in message
        assert "model.pretrained=false" in message and "model.checkpoint=PATH" in message
    else:  # weights happen to be cached on this machine
        pass


def test_classifier_training_short_runs_and_caches(tmp_path):
    """A very short training (3 optimizer steps) must not crash, and the checkpoint records accuracy."""
    from xattr.data import ShapesDataset
    from xattr.training.classifier import checkpoint_accuracy, train_classifier

    model = build_model("tiny_cnn", num_classes=6)
    path = tmp_path / "c.pt"
    result = train_classifier(model, ShapesDataset("train", length=48), ShapesDataset("test", length=16), epochs=1,
                              batch_size=16, lr=1e-3, weight_decay=0.0, checkpoint=path)
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert checkpoint_accuracy(path) == result["test_accuracy"]
    assert not path.with_suffix(".partial.pt").exists()
