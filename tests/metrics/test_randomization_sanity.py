"""Model-parameter randomisation (Adebayo et al. 2018): which layers each checkpoint randomises, the checkpoints,
the map normalisation and SSIM against scikit-image called directly, and the report's table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from skimage.metrics import structural_similarity

from xattr.errors import XattrError
from xattr.metrics.randomization_sanity import (
    RandomizationSanity,
    map_ssim,
    normalise_map,
    randomisable_layers,
    write_randomization_report,
)

LAYERS = ["4", "2", "0"]          # top first: the Linear, the second conv, the first conv


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 5), nn.Softmax(dim=1)).eval()


class ChangedLayers:
    """A method whose "map" is the input, recording which layers of its model differ from ``reference``."""

    def __init__(self, reference: nn.Module, record: list):
        self.reference, self.record = reference, record

    def __call__(self, model: nn.Module) -> ChangedLayers:
        original = dict(self.reference.named_parameters())
        self.record.append({name.rsplit(".", 1)[0] for name, p in model.named_parameters()
                            if not torch.equal(p, original[name])})
        return self

    def attribute(self, x, target):
        return x.clone()


def run(mode: str, **options):
    model, record = small_model(), []
    x, target = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1])
    out = RandomizationSanity(mode=mode, **options)(model, x, x.clone(), target,
                                                    method_factory=ChangedLayers(model, record))
    return out, record


def test_cascading_randomises_every_layer_from_the_top_and_independent_one_layer():
    assert randomisable_layers(small_model()) == LAYERS
    with_norms = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.LayerNorm(4), nn.Linear(4, 2))
    assert randomisable_layers(with_norms) == ["3", "0"]     # weights, but not Conv/Linear: left alone
    out, record = run("cascading")
    assert list(out) == [f"cascading/{n}" for n in LAYERS]
    assert record == [{"4"}, {"4", "2"}, {"4", "2", "0"}]
    out, record = run("independent")
    assert list(out) == [f"independent/{n}" for n in LAYERS]
    assert record == [{"4"}, {"2"}, {"0"}]
    out, record = run("both")
    assert len(out) == 6 and record[:3] == [{"4"}, {"4", "2"}, {"4", "2", "0"}]


def test_a_layer_is_reinitialised_the_same_way_in_every_checkpoint_and_mode():
    """Seeded per (seed, layer name): cascading's and independent's copies of a layer agree, another seed
    differs, and the global RNG is left where it was."""
    metric, model = RandomizationSanity(seed=3), small_model()
    state = torch.random.get_rng_state()
    one = metric.randomised_copy(model, ["2"]).get_submodule("2").weight
    both = metric.randomised_copy(model, ["4", "2"]).get_submodule("2").weight
    assert torch.equal(one, both)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not torch.equal(one, RandomizationSanity(seed=4).randomised_copy(model, ["2"]).get_submodule("2").weight)
    assert not torch.equal(metric.randomised_copy(model, ["0"]).get_submodule("0").weight,
                           model.get_submodule("0").weight)


def test_checkpoints_named_layers_every_layer_or_evenly_spaced_ones():
    model = small_model()
    assert RandomizationSanity(layers=["0", "4"]).checkpoints(model) == (LAYERS, [0, 2])
    assert RandomizationSanity(max_layers=3).checkpoints(model)[1] == [0, 1, 2]
    assert RandomizationSanity(max_layers=2).checkpoints(model)[1] == [0, 2]     # top and bottom
    assert RandomizationSanity(max_layers=1).checkpoints(model)[1] == [0]
    assert RandomizationSanity(layers=[]).checkpoints(model)[1] == [0, 1, 2]   # an empty list = no choice
    with pytest.raises(XattrError, match=r"layers \['1'\] are not Conv/Linear"):
        RandomizationSanity(layers=["0", "1"]).checkpoints(model)
    with pytest.raises(XattrError, match="max_layers=0"):
        RandomizationSanity(max_layers=0)
    with pytest.raises(XattrError, match="mode"):
        RandomizationSanity(mode="cascade")


def test_normalise_map_sums_absolute_values_over_channels_and_scales_to_the_unit_range():
    attribution = np.array([[[1.0, -2.0], [0.0, 3.0]], [[-1.0, 0.0], [2.0, 1.0]]])   # [C=2, 2, 2]
    np.testing.assert_allclose(normalise_map(attribution), [[0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(normalise_map(attribution + 5.0), [[1 / 3, 0.0], [2 / 3, 1.0]])
    assert normalise_map(np.ones((2, 3, 3))).tolist() == np.zeros((3, 3)).tolist()


@pytest.mark.parametrize("side, window", [(12, 7), (6, 5), (5, 5), (4, 3)])
def test_map_ssim_is_scikit_images_on_the_normalised_maps_with_the_largest_odd_window_up_to_seven(side, window):
    generator = torch.Generator().manual_seed(side)
    a, b = torch.rand(2, 3, side, side, generator=generator), torch.rand(2, 3, side, side, generator=generator)
    expected = [structural_similarity(normalise_map(p.numpy()), normalise_map(q.numpy()), data_range=1.0,
                                      win_size=window) for p, q in zip(a, b)]
    np.testing.assert_allclose(map_ssim(a, b).numpy(), expected, rtol=1e-5)
    assert map_ssim(a, a).tolist() == pytest.approx([1.0, 1.0])


def test_report_counts_the_depth_within_each_mode(tmp_path):
    scores = {"cascading/4": [0.9, 0.7], "cascading/2": [0.5, 0.3], "cascading/0": [0.2, 0.0],
              "independent/4": [1.0, 0.8]}
    out_dir = tmp_path / "nested" / "report"
    table = write_randomization_report(scores, out_dir, title="tiny")
    written = pd.read_csv(out_dir / "randomization.csv")
    assert list(written.columns) == ["mode", "layer", "order", "ssim_mean", "ssim_std", "n"]
    assert written["order"].tolist() == [0, 1, 2, 0]
    assert written["layer"].astype(str).tolist() == ["4", "2", "0", "4"]
    assert written["ssim_mean"].tolist() == pytest.approx([0.8, 0.4, 0.1, 0.9])
    assert written["ssim_std"].tolist() == pytest.approx([0.1] * 4) and written["n"].tolist() == [2] * 4
    assert len(table) == 4 and (out_dir / "randomization.png").is_file()
