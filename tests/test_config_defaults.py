"""Each method and metric YAML states its class's defaults: a value in ``conf/method/X.yaml`` or
``conf/metric/X.yaml`` equals the default of the same parameter of its ``_target_``.

The YAML is where a default cites its paper; the class default is what a user of the Python API gets. When the
two drift (a tuned value written into the YAML only), the API silently runs another method. Variants of one class
(``road_lerf`` is ROAD with ``order: lerf``) name the keys they change in ``VARIANT_KEYS``.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from xattr.cli import CONF_DIR

#: (group, config) -> keys that config sets on purpose to a value other than the class default
VARIANT_KEYS = {("metric", "road_lerf"): {"order"}}


def target_configs() -> list[Path]:
    paths = sorted((CONF_DIR / "method").glob("*.yaml")) + sorted((CONF_DIR / "metric").glob("*.yaml"))
    return [p for p in paths if "_target_" in (yaml.safe_load(p.read_text()) or {})]


def comparable(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("path", target_configs(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_yaml_values_equal_the_targets_defaults(path):
    config = yaml.safe_load(path.read_text())
    module, _, name = config["_target_"].rpartition(".")
    parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    skip = VARIANT_KEYS.get((path.parent.name, path.stem), set())
    drift = {}
    for key, value in config.items():
        if key.startswith("_") or key in skip or key not in parameters or isinstance(value, dict):
            continue  # dict values are nested option groups (null = the task's own config)
        if isinstance(value, str) and value.startswith("${"):
            continue  # an interpolation resolved by Hydra (e.g. the cache directory)
        default = parameters[key].default
        if default is not inspect.Parameter.empty and comparable(default) != comparable(value):
            drift[key] = (value, default)
    assert not drift, f"{path.name}: YAML value vs {name} default: {drift}"


def test_the_target_configs_cover_every_mutated_metric_and_diffib():
    """The check reaches the classes mutation testing mutates (their defaults are otherwise untested)."""
    targets = {yaml.safe_load(p.read_text())["_target_"] for p in target_configs()}
    for expected in ("xattr.metrics.mnim.MNIM", "xattr.metrics.road.ROAD", "xattr.metrics.dauc.DAUC",
                     "xattr.metrics.insertion.Insertion", "xattr.metrics.deletion.Deletion",
                     "xattr.methods.diffib.DiffIB"):
        assert expected in targets


def bare_instance(path: Path, config: dict):
    """The ``_target_`` built with nothing but its required model (metrics need none), or None where the class
    needs a model of another kind than the tiny classifiers (text-to-image methods)."""
    from xattr.errors import XattrError
    from xattr.models import build_model

    module, _, name = config["_target_"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if path.parent.name == "metric":
        return cls()
    for model_name in ("tiny_cnn", "tiny_vit"):
        try:
            return cls(build_model(model_name, num_classes=6))
        except XattrError:
            continue
    return None


@pytest.mark.parametrize("path", target_configs(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_bare_instance_stores_the_yamls_values(path):
    """What the constructor *does* with its defaults (the stored settings), not only its signature: built with no
    settings, every setting the instance keeps under the YAML key's name equals the YAML value."""
    config = yaml.safe_load(path.read_text())
    instance = bare_instance(path, config)
    if instance is None:
        pytest.skip(f"{path.stem} needs a text-to-image model")
    skip = VARIANT_KEYS.get((path.parent.name, path.stem), set())
    drift = {}
    for key, value in config.items():
        if key.startswith("_") or key in skip or isinstance(value, dict) or not hasattr(instance, key):
            continue
        if value is None or (isinstance(value, str) and value.startswith("${")):
            continue  # null: the class resolves it (e.g. the model's default layer); an interpolation
        stored = getattr(instance, key)
        if callable(stored):
            continue  # a method of the same name, not a stored setting
        if comparable(stored) != comparable(value):
            drift[key] = (value, stored)
    assert not drift, f"{path.name}: YAML value vs what {type(instance).__name__}() stores: {drift}"
