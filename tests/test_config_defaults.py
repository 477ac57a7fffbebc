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
from xattr.errors import XattrError

#: (group, config) -> keys that config sets on purpose to a value other than the class default
VARIANT_KEYS = {("metric", "road_lerf"): {"order"}}


def target_configs() -> dict[Path, dict]:
    """Every method and metric YAML with a ``_target_``, parsed once."""
    paths = sorted((CONF_DIR / "method").glob("*.yaml")) + sorted((CONF_DIR / "metric").glob("*.yaml"))
    configs = {p: yaml.safe_load(p.read_text()) or {} for p in paths}
    return {p: c for p, c in configs.items() if "_target_" in c}


CONFIGS = target_configs()
IDS = [f"{p.parent.name}/{p.stem}" for p in CONFIGS]


def comparable(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def target_class(config: dict):
    module, _, name = config["_target_"].rpartition(".")
    return getattr(importlib.import_module(module), name)


def stated_settings(path: Path, config: dict, *, nulls: bool = True) -> dict:
    """The YAML's own values: not ``_target_``/private keys, not a variant's deliberate changes, not nested option
    groups (dicts: null = the task's own config), not Hydra interpolations (e.g. the cache directory), and with
    ``nulls=False`` not nulls (an instance resolves them, e.g. to the model's default layer)."""
    skip = VARIANT_KEYS.get((path.parent.name, path.stem), set())
    return {key: value for key, value in config.items()
            if not key.startswith("_") and key not in skip and not isinstance(value, dict)
            and (nulls or value is not None) and not (isinstance(value, str) and value.startswith("${"))}


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_yaml_values_equal_the_targets_defaults(path):
    cls = target_class(CONFIGS[path])
    parameters = inspect.signature(cls).parameters
    drift = {key: (value, parameters[key].default) for key, value in stated_settings(path, CONFIGS[path]).items()
             if key in parameters and parameters[key].default is not inspect.Parameter.empty
             and comparable(parameters[key].default) != comparable(value)}
    assert not drift, f"{path.name}: YAML value vs {cls.__name__} default: {drift}"


def test_the_target_configs_cover_every_mutated_metric_and_diffib():
    """The check reaches the classes mutation testing mutates (their defaults are otherwise untested)."""
    targets = {config["_target_"] for config in CONFIGS.values()}
    for expected in ("xattr.metrics.mnim.MNIM", "xattr.metrics.road.ROAD", "xattr.metrics.dauc.DAUC",
                     "xattr.metrics.insertion.Insertion", "xattr.metrics.deletion.Deletion",
                     "xattr.methods.diffib.DiffIB"):
        assert expected in targets


def bare_instance(path: Path, config: dict, request):
    """The ``_target_`` built with nothing but its required model (metrics need none; methods get the conftest's
    ``tiny_cnn``, else ``tiny_vit``), or None where the class needs a text-to-image model."""
    cls = target_class(config)
    if path.parent.name == "metric":
        return cls()
    for fixture in ("tiny_cnn", "tiny_vit"):
        try:
            return cls(request.getfixturevalue(fixture))
        except XattrError:
            continue
    return None


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_a_bare_instance_stores_the_yamls_values(path, request):
    """What the constructor *does* with its defaults (the stored settings), not only its signature: built with no
    settings, every setting the instance keeps under the YAML key's name equals the YAML value."""
    instance = bare_instance(path, CONFIGS[path], request)
    if instance is None:
        pytest.skip(f"{path.stem} needs a text-to-image model")
    stored = {key: getattr(instance, key) for key in stated_settings(path, CONFIGS[path], nulls=False)
              if hasattr(instance, key) and not callable(getattr(instance, key))}  # callable: a method, not a setting
    drift = {key: (CONFIGS[path][key], value) for key, value in stored.items()
             if comparable(value) != comparable(CONFIGS[path][key])}
    assert not drift, f"{path.name}: YAML value vs what {type(instance).__name__}() stores: {drift}"
