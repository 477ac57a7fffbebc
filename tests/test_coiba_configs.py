"""CoIBA's experiment configs: the authors' insertion substrate (blur kernel 51, sigma 50) and ``map_layers``."""

from __future__ import annotations

import pytest
import torch
from coiba_helpers import layer_statistics
from hydra.utils import instantiate
from test_configs import compose_cfg

from xattr.cli import CONF_DIR

COIBA_EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("coiba_*.yaml"))


def test_table1_experiments_exist():
    assert {"coiba_table1_tiny", "coiba_table1_paper"} <= set(COIBA_EXPERIMENTS)


@pytest.mark.parametrize("name", COIBA_EXPERIMENTS)
def test_insertion_blurs_as_the_authors_code(name, tmp_path):
    """Authors' insdel.py: insertion from gaussian_blur2d(kernel 51, sigma 50), deletion to zeros, 3.5% steps."""
    cfg = compose_cfg("run", [f"experiment={name}"], tmp_path)
    if "insertion" not in cfg.metric:
        assert "deletion" not in cfg.metric  # table2: ROAD only
        return
    for key in ("insertion", "deletion"):
        metric = cfg.metric[key]
        assert (metric.blur_kernel, metric.blur_sigma, metric.step) == (51, 50.0, 0.035), (name, key)
    assert cfg.metric.insertion.substrate == "blur" and cfg.metric.deletion.substrate == "zero"
    insertion = instantiate(cfg.metric.insertion)
    assert (insertion.blur_kernel, insertion.blur_sigma) == (51, 50.0)


def test_map_layers_reaches_the_method(tmp_path, tiny_vit):
    """``method.map_layers=all`` is passed through and changes the map (fails if the option is ignored)."""
    torch.manual_seed(3)
    stats_x, x = torch.rand(16, 3, 64, 64), torch.rand(2, 3, 64, 64)
    y = torch.tensor([0, 1])
    maps = {}
    for choice in ("first", "all"):
        cfg = compose_cfg("run", ["experiment=coiba_table1_tiny", f"method.map_layers={choice}", "method.steps=2",
                           "method.draws=2"], tmp_path)
        method = instantiate(cfg.method, model=tiny_vit)
        assert method.map_layers == choice
        method.set_statistics(layer_statistics(tiny_vit, method.layer_names, stats_x))
        maps[choice] = method.attribute(x, y)
    assert compose_cfg("run", ["method=coiba"], tmp_path).method.map_layers == "first"  # the authors' map by default
    assert (maps["all"] - maps["first"]).abs().max() > 1e-4
