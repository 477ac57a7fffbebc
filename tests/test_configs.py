"""Every YAML of every config group composes and instantiates offline.

Models with ``pretrained: true`` are built with ``pretrained=false`` on the meta device (the config and
the builder are exercised without paying for 100M-parameter initialisations); the offline models are
built for real. Datasets that need files are checked to fail with the one-line missing-root error.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf

from xattr.cli import CONF_DIR
from xattr.errors import XattrError
from xattr.models import OFFLINE_MODELS, TEXT_TO_IMAGE_MODELS


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose_cfg(config_name: str, overrides: list[str], tmp_path: Path, hydra: bool = False):
    base = [f"paths.root_dir={tmp_path}", f"paths.data_dir={tmp_path}/data", f"paths.cache_dir={tmp_path}/cache"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=[*base, *overrides], return_hydra_config=hydra)


def test_every_group_has_options():
    for group in ("model", "method", "dataset", "metric", "paths", "hydra", "debug", "experiment", "task"):
        assert options(group), f"conf/{group}/ is empty"


def xattr_error_of(error: BaseException) -> XattrError:
    cause = error
    while cause is not None and not isinstance(cause, XattrError):
        cause = cause.__cause__
    assert cause is not None, f"{error!r} is not a one-line XattrError"
    return cause


@pytest.mark.parametrize("name", sorted(TEXT_TO_IMAGE_MODELS))
def test_text_to_image_configs_instantiate_or_name_what_is_missing(name, tmp_path, monkeypatch):
    """Offline with an empty Hugging Face cache, a Hub model names its repository, the cache and model.path=DIR;
    tiny_t2i names model.path; a pipeline folder given as model.path builds the model for real."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose_cfg("run", [f"model={name}"], tmp_path)
    assert cfg.model.name == name
    with pytest.raises(Exception) as info:  # noqa: PT011 - instantiate wraps; the XattrError is inside
        instantiate(cfg.model)
    message = str(xattr_error_of(info.value))
    assert "\n" not in message and "model.path=DIR" in message, message
    if TEXT_TO_IMAGE_MODELS[name] == "hub":
        assert cfg.model.repo_id in message and str(tmp_path / "hub") in message
    if name == "tiny_t2i":
        from xattr.models import build_tiny_t2i_pipeline, save_pipeline_folder

        folder = save_pipeline_folder(build_tiny_t2i_pipeline(["a", "red", "star"]), tmp_path / "pipe")
        model = instantiate(compose_cfg("run", [f"model={name}", f"model.path={folder}"], tmp_path).model)
        assert model.spec.kind == "text_to_image" and model.spec.name == name and not model.training
        with torch.no_grad():
            z = model.encode_image(torch.rand(2, 3, *model.image_size))
            eps = model.eps(z, torch.zeros(2), model.encode_prompt(["a red star", ""]))
        assert eps.shape == z.shape == (2, *model.latent_shape) and torch.isfinite(eps).all()


@pytest.mark.parametrize("name", sorted(set(options("model")) - set(TEXT_TO_IMAGE_MODELS)))
def test_model_configs_instantiate(name, tmp_path):
    cfg = compose_cfg("run", [f"model={name}"], tmp_path)
    assert cfg.model.name == name
    assert cfg.model._target_ == "xattr.models.build_model"  # the classifier zoo (text-to-image: above)
    if name in OFFLINE_MODELS:
        model = instantiate(cfg.model)
        assert model.spec.input_size == (cfg.dataset.image_size,) * 2
        x = torch.rand(2, 3, *model.spec.input_size)
        assert model(x).shape == (2, cfg.model.num_classes)
    else:
        assert cfg.model.pretrained is True  # ImageNet models default to the library's weights
        with torch.device("meta"):
            model = instantiate(cfg.model, pretrained=False, device="meta")
        assert model.spec.name == name and model.spec.num_classes == cfg.model.num_classes == 1000
        assert model.spec.layers.get("bottleneck") and model.get_layer("bottleneck") is not None


@pytest.fixture(scope="module")
def tiny_t2i():
    """A random-init 16 px tiny_t2i built in memory (text-image methods are constructed on it)."""
    from xattr.data.shapes_captions import VOCABULARY
    from xattr.models import TextToImageModel, build_tiny_t2i_pipeline

    return TextToImageModel(build_tiny_t2i_pipeline(VOCABULARY, image_size=16), name="tiny_t2i")


@pytest.mark.parametrize("name", options("method"))
def test_method_configs_instantiate(name, tmp_path, tiny_cnn, tiny_vit, request):
    cfg = compose_cfg("run", [f"method={name}"], tmp_path)
    assert str(cfg.method._target_).startswith(f"xattr.methods.{name}."), "one method per module, file = module"
    from hydra.utils import get_class

    from xattr.methods._text_image import TextImageMethod

    if issubclass(get_class(cfg.method._target_), TextImageMethod):  # explains text-to-image models only
        model = request.getfixturevalue("tiny_t2i")
        method = instantiate(cfg.method, model=model)
        assert callable(getattr(method, "attribute", None)) and method.model is model
        return
    errors = []
    for model in (tiny_cnn, tiny_vit):  # some methods apply only to transformers (or only to CNNs)
        try:
            method = instantiate(cfg.method, model=model)
        except Exception as error:  # noqa: BLE001 - instantiate wraps; only a one-line XattrError is acceptable
            cause = error
            while cause is not None and not isinstance(cause, XattrError):
                cause = cause.__cause__
            if cause is None:
                raise
            errors.append(str(cause))
            continue
        assert callable(getattr(method, "attribute", None)) and method.model is model
        return
    pytest.fail(f"method {name} instantiates on neither tiny_cnn nor tiny_vit: {errors}")


@pytest.mark.parametrize("name", options("dataset"))
def test_dataset_configs_instantiate_or_name_missing_root(name, tmp_path):
    cfg = compose_cfg("run", [f"dataset={name}"], tmp_path)
    try:
        dataset = instantiate(cfg.dataset)
    except Exception as error:  # noqa: BLE001 - instantiate wraps; find the XattrError
        cause = error
        while cause is not None and not isinstance(cause, XattrError):
            cause = cause.__cause__
        assert cause is not None, f"dataset {name}: {error!r} is not a one-line XattrError"
        message = str(cause)
        assert "\n" not in message and "paths.data_dir" in message, message
        return
    assert len(dataset) > 0 and dataset.num_classes > 1
    sample = dataset[0]
    assert sample["image"].shape == (3, cfg.dataset.image_size, cfg.dataset.image_size)
    assert 0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1
    assert 0 <= int(sample["label"]) < dataset.num_classes and isinstance(sample["id"], str)


@pytest.mark.parametrize("name", options("metric"))
def test_metric_configs_instantiate(name, tmp_path):
    cfg = compose_cfg("run", [f"metric=[{name}]"], tmp_path)
    # multi-select group: each file starts with `# @package metric.<name>` so selections do not merge
    assert list(cfg.metric) == [name], f"conf/metric/{name}.yaml needs the header `# @package metric.{name}`"
    metric = instantiate(cfg.metric[name])
    assert callable(metric)


def test_default_metrics_are_separate_entries(tmp_path):
    cfg = compose_cfg("run", [], tmp_path)
    assert set(cfg.metric) == {"insertion", "deletion"}
    assert all("_target_" in cfg.metric[name] for name in cfg.metric)


@pytest.mark.parametrize("name", options("task"))
def test_task_configs_compose_and_have_a_module(name, tmp_path):
    cfg = compose_cfg("train", [f"task={name}"], tmp_path)
    assert cfg.task.name == name, f"conf/task/{name}.yaml must set name: {name}"
    module = cfg.task._target_.rpartition(".")[0]
    assert importlib.util.find_spec(module) is not None, f"conf/task/{name}.yaml: _target_ module {module} missing"


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_configs_compose(name, tmp_path):
    cfg = compose_cfg("run", [f"experiment={name}"], tmp_path)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    for group in ("model", "dataset", "method"):
        assert "_target_" in cfg[group]


@pytest.mark.parametrize("name", options("debug"))
def test_debug_presets(name, tmp_path):
    cfg = compose_cfg("run", [f"debug={name}"], tmp_path)
    assert cfg.device == "cpu" and cfg.model.name in OFFLINE_MODELS and cfg.dataset.n_samples <= 8
    # the command line still wins over the preset's model choice
    assert compose_cfg("run", [f"debug={name}", "model=tiny_vit"], tmp_path).model.name == "tiny_vit"


def test_run_and_sweep_dirs(tmp_path):
    cfg = compose_cfg("run", ["method=saliency", "model=tiny_cnn", "dataset=shapes"], tmp_path, hydra=True)
    HydraConfig.instance().set_config(cfg)
    try:
        run_dir = cfg.hydra.run.dir
        sweep_dir, subdir = cfg.hydra.sweep.dir, OmegaConf.to_container(cfg.hydra.sweep)["subdir"]
    finally:
        HydraConfig.instance().cfg = None
    assert re.fullmatch(rf"{tmp_path}/outputs/run/saliency-tiny_cnn-shapes/\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d", run_dir)
    assert re.fullmatch(rf"{tmp_path}/outputs/multirun/\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d", sweep_dir)
    assert "hydra.job.num" in subdir and "runtime.choices.method" in subdir
    assert set(cfg.paths) >= {"data_dir", "cache_dir", "output_dir"}
