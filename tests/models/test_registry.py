"""Registry contracts: every registered model / dataset has its ``conf/<group>/<name>.yaml`` and vice versa."""

from __future__ import annotations

import pytest
from hydra.utils import get_class, get_method
from omegaconf import OmegaConf

from xattr.data import BUILTIN_DATASETS, dataset_class, list_datasets, register_dataset
from xattr.errors import XattrError
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


def test_every_dataset_has_a_config_and_every_config_a_dataset():
    # imagenet_a / imagenet_r are ImageNet variants with classes and configs of their own: plain entries
    assert sorted(group_files("dataset")) == sorted(list_datasets())


@pytest.mark.parametrize("name", sorted(group_files("dataset")))
def test_dataset_config_targets_the_registered_class(name):
    cls = get_class(group_files("dataset")[name]["_target_"])
    assert cls is dataset_class(name) and cls.name == name


def test_builtin_datasets_need_no_files():
    assert BUILTIN_DATASETS == list_datasets(builtin=True) == ("digits", "shapes")
    for name in BUILTIN_DATASETS:
        dataset = dataset_class(name)(split="test", n_samples=2)
        assert len(dataset) == 2 and dataset.num_classes == len(dataset.class_names) > 1


def test_unknown_dataset_names_choices():
    with pytest.raises(XattrError, match="shapes") as info:
        dataset_class("cifar10")
    assert "\n" not in str(info.value)


def test_register_dataset_refuses_duplicates():
    class Again:
        name = "shapes"

    with pytest.raises(ValueError, match="twice"):
        register_dataset()(Again)
    assert dataset_class("shapes") is not Again
