"""Tuning never sees a table's image: tuning experiments run on ``val`` (tiny) / ImageNet ``train`` (paper),
table experiments on ``test`` / ImageNet ``val``, and the selected images are disjoint (ids and pixels)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_configs import compose_cfg, options

from xattr.cli import CONF_DIR

TUNING = [name for name in options("experiment") if name.startswith("tune_") or "_sweep_" in name]
TABLES = [name for name in options("experiment") if name not in TUNING and name != "example"]
MAKEFILE = Path(CONF_DIR).parent / "Makefile"


def scale(name: str) -> str:
    return "paper" if name.endswith("_paper") else "tiny"


def selection(name: str, tmp_path) -> tuple[str, dict[str, str]]:
    """The experiment's split and ``{sample id: sha1 of its image}`` (tiny scale: the embedded shapes data)."""
    cfg = compose_cfg("run", [f"experiment={name}"], tmp_path)
    dataset = instantiate(cfg.dataset)
    digests = {}
    for index in range(len(dataset)):
        sample = dataset[index]
        digests[sample["id"]] = hashlib.sha1(sample["image"].numpy().tobytes()).hexdigest()
    return cfg.dataset.split, digests


def test_every_experiment_is_either_tuning_or_table():
    assert TUNING and TABLES
    assert {"diffib_sweep_beta", "tune_tiny", "tune_paper"} <= set(TUNING)
    assert {"diffib_tiny", "diffib_seg_paper", "diffib_paper"} <= set(TABLES)


@pytest.mark.parametrize("name", TUNING)
def test_tuning_runs_on_the_tuning_split(name, tmp_path):
    cfg = compose_cfg("run", [f"experiment={name}"], tmp_path)
    expected = {"tiny": "val", "paper": "train"}[scale(name)]
    assert cfg.dataset.split == expected, f"conf/experiment/{name}.yaml tunes on {cfg.dataset.split!r}"


@pytest.mark.parametrize("name", TABLES)
def test_tables_run_on_the_reported_split(name, tmp_path):
    """Tiny: the test split of an embedded dataset (shapes, shapes_captions). Paper: ImageNet val (tuning uses
    ImageNet train) or another dataset (FSS-1000, ARO, COCO)."""
    cfg = compose_cfg("run", [f"experiment={name}"], tmp_path)
    where = (cfg.dataset._target_, cfg.dataset.get("split"))
    if scale(name) == "tiny":
        assert where[0] in ("xattr.data.ShapesDataset", "xattr.data.ShapesCaptionsDataset") and where[1] == "test", \
            f"conf/experiment/{name}.yaml reports on {where}"
    else:
        tuning = compose_cfg("run", ["experiment=tune_paper"], tmp_path).dataset
        assert where != (tuning._target_, tuning.split), f"conf/experiment/{name}.yaml reports on the tuning split"


def test_tiny_tuning_and_table_images_are_disjoint(tmp_path):
    """Ids and pixels: a test image rendered again under a val id would still be caught."""
    tuned = {}
    for name in [n for n in TUNING if scale(n) == "tiny"]:
        tuned.update(selection(name, tmp_path)[1])
    assert len(tuned) >= 32
    for name in [n for n in TABLES if scale(n) == "tiny" and n.startswith("diffib")]:
        split, table = selection(name, tmp_path)
        assert split == "test" and len(table) >= 100
        assert not set(tuned) & set(table), name
        assert not set(tuned.values()) & set(table.values()), f"{name} shares an image with tuning"


def make_commands(target: str, scale_name: str) -> str:
    """What ``make -n <target> SCALE=<scale>`` would run (nothing is executed)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(["make", "-n", "-C", str(MAKEFILE.parent), target, f"SCALE={scale_name}", "VENV=/nonexistent"],
                          capture_output=True, text=True, check=True)
    return done.stdout


@pytest.mark.parametrize("scale_name", ["tiny", "paper"])
def test_make_targets_tune_and_report_on_their_experiments(scale_name):
    """``make tune-*`` runs tuning experiments only; the table targets run table experiments only."""
    for target in ("tune-diffib", "tune-baselines"):
        used = set(re.findall(r"experiment=([a-z_]+)", make_commands(target, scale_name)))
        assert used and used <= set(TUNING), (target, used)
    for target in ("table-mnim", "table-dauc", "table-box", "table-seg", "figure-sanity"):
        used = set(re.findall(r"experiment=([a-z_]+)", make_commands(target, scale_name)))
        assert used and used <= set(TABLES), (target, used)


TUNED = sorted((CONF_DIR / "tuned").glob("*.yaml"))


@pytest.mark.parametrize("path", TUNED, ids=[p.stem for p in TUNED])
def test_tuned_values_are_keys_of_their_method_and_reach_the_table_runs(path, tmp_path):
    """``conf/tuned/tiny_<method>.yaml`` only sets keys the method has; the tiny table presets apply them, the
    command line still wins, and a run without a preset keeps the method's own defaults."""
    scale_name, method = path.stem.split("_", 1)
    tuned = OmegaConf.to_container(OmegaConf.load(path))
    plain = compose_cfg("run", [f"method={method}"], tmp_path).method
    assert tuned and set(tuned) <= set(plain), f"{path.name} sets keys {set(tuned) - set(plain)} not in {method}"
    table = compose_cfg("run", [f"experiment=diffib_{scale_name}", f"method={method}"], tmp_path).method
    for key, value in tuned.items():
        assert float(table[key]) == float(value), (key, table[key], value)
    key = next(iter(tuned))
    assert compose_cfg("run", [f"experiment=diffib_{scale_name}", f"method={method}", f"method.{key}=7"],
                       tmp_path).method[key] == 7


def test_select_tuned_takes_the_lowest_mean_and_the_first_of_equal_ones(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("select_tuned", MAKEFILE.parent / "scripts" / "select_tuned.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [({"method.beta": "1"}, 0.5, 0.1, 32), ({"method.beta": "3"}, 0.4, 0.1, 32),
            ({"method.beta": "10"}, 0.4, 0.1, 32)]
    assert module.choose(rows)[0] == {"method.beta": "3"}
    assert module.choose(rows, lower_is_better=False)[0] == {"method.beta": "1"}
    assert module.yaml_value("200") == "200" and module.yaml_value("0.03") == "0.03"
