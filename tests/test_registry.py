"""Registry contracts: every registered model / dataset has its ``conf/<group>/<name>.yaml`` and vice versa."""

from __future__ import annotations

import pytest
from hydra.utils import get_method
from omegaconf import OmegaConf

from xattr.models import MODEL_NAMES, OFFLINE_MODELS, build_model, list_models, model_entry, register_model
from xattr.utils.conf import conf_dir

CONF = conf_dir()


def group_files(group: str) -> dict[str, dict]:
    return {path.stem: OmegaConf.to_container(OmegaConf.load(path)) for path in sorted((CONF / group).glob("*.yaml"))}


def test_every_model_has_a_config_and_every_config_a_model():
    assert sorted(group_files("model")) == sorted(list_models())


@pytest.mark.parametrize("name", sorted(group_files("model")))
def test_model_config_targets_the_registry(name):
    node = group_files("model")[name]
    assert get_method(node["_target_"]) is build_model
    assert node["name"] == name
    assert node["pretrained"] is (not model_entry(name).offline)  # library weights by default, tiny models none


def test_model_names_and_offline_models_come_from_the_registry():
    assert MODEL_NAMES == list_models() == ("vgg16", "resnet50", "efficientnet_b0", "vit_b16", "deit_b16",
                                            "swin_b", "tiny_cnn", "tiny_vit")
    assert OFFLINE_MODELS == list_models(offline=True) == list_models(source="ours") == ("tiny_cnn", "tiny_vit")
    assert {model_entry(name).source for name in MODEL_NAMES} == {"torchvision", "timm", "ours"}


def test_register_model_refuses_duplicates_and_unknown_sources():
    with pytest.raises(ValueError, match="twice"):
        register_model("tiny_cnn", "ours")(lambda pretrained, num_classes: None)
    with pytest.raises(ValueError, match="source"):
        register_model("new_model", "somewhere")
    assert "new_model" not in list_models()
