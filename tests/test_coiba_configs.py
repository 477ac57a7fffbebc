"""CoIBA's experiment configs: the authors' insertion substrate (blur kernel 51, sigma 50) and ``map_layers``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from xattr.cli import CONF_DIR

COIBA_EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("coiba_*.yaml"))


def compose_run(overrides: list[str], tmp_path: Path):
    base = [f"paths.root_dir={tmp_path}", f"paths.data_dir={tmp_path}/data", f"paths.cache_dir={tmp_path}/cache"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="run", overrides=[*base, *overrides])


def layer_statistics(model, names, x):
    """Per-layer (mean, std) of one forward pass over ``x``, per token and channel."""
    outputs = {}
    handles = [model.net.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: outputs.__setitem__(n, o.detach())) for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return {n: (v.mean(0), v.std(0)) for n, v in outputs.items()}


def test_table1_experiments_exist():
    assert {"coiba_table1_tiny", "coiba_table1_paper"} <= set(COIBA_EXPERIMENTS)


@pytest.mark.parametrize("name", COIBA_EXPERIMENTS)
def test_insertion_blurs_as_the_authors_code(name, tmp_path):
    """Authors' insdel.py: insertion from gaussian_blur2d(kernel 51, sigma 50), deletion to zeros, 3.5% steps."""
    cfg = compose_run([f"experiment={name}"], tmp_path)
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
        cfg = compose_run(["experiment=coiba_table1_tiny", f"method.map_layers={choice}", "method.steps=2",
                           "method.draws=2"], tmp_path)
        method = instantiate(cfg.method, model=tiny_vit)
        assert method.map_layers == choice
        method.set_statistics(layer_statistics(tiny_vit, method.layer_names, stats_x))
        maps[choice] = method.attribute(x, y)
    assert compose_run(["method=coiba"], tmp_path).method.map_layers == "first"  # the authors' map by default
    assert (maps["all"] - maps["first"]).abs().max() > 1e-4
