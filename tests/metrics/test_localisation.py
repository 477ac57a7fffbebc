"""Word-localisation metrics: mIoU curves (Info-Decomp Table 3) and mask mass, on maps with known answers."""

import pytest
import torch

from xattr.errors import XattrError
from xattr.metrics.mask_mass import MaskMass
from xattr.metrics.miou import MIoU, normalise_min_max


def _ramp(width=10):
    """A map rising linearly 0..9 along the width and a mask of its right half."""
    ramp = torch.arange(width, dtype=torch.float32).view(1, 1, 1, width).expand(1, 1, 4, width).clone()
    mask = torch.zeros(1, 4, width, dtype=torch.bool)
    mask[..., width // 2:] = True
    return ramp, mask


def test_miou_curve_on_a_ramp_equals_the_hand_count():
    ramp, mask = _ramp()
    metric = MIoU(low=0.1, high=0.5, n=5)  # t = 0.1, 0.2, 0.3, 0.4, 0.5 on values k/9
    curve = metric(None, None, ramp, mask=mask)["curve"][0]
    # predicted columns: k/9 > t; mask columns 5..9
    expected = []
    for t in torch.linspace(0.1, 0.5, 5):
        predicted = torch.arange(10) / 9 > t
        truth = torch.arange(10) >= 5
        expected.append((predicted & truth).sum().item() / (predicted | truth).sum().item())
    assert torch.allclose(curve, torch.tensor(expected), atol=1e-6)
    assert curve[-1] == pytest.approx(1.0)  # at t = 0.5 exactly the right half is kept
    assert curve[0] < curve[-1]


def test_miou_of_a_map_equal_to_its_mask_is_one_and_of_its_complement_zero():
    _, mask = _ramp()
    maps = mask[:, None].float() * 3 + 1
    out = MIoU()(None, None, torch.cat([maps, 5 - maps]), mask=torch.cat([mask, mask]))
    assert torch.allclose(out["curve"][0], torch.ones(50))
    assert torch.allclose(out["curve"][1], torch.zeros(50))


def test_miou_fixed_threshold_and_resizing_of_a_coarse_map():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :, 4:] = True
    coarse = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # 2x2 → bilinear to 8x8
    out = MIoU(threshold=0.5)(None, None, coarse, mask=mask)
    assert out["iou"].shape == (1,)
    assert out["iou"][0] == pytest.approx(1.0)


def test_min_max_normalisation_of_a_constant_map_is_zero():
    assert torch.equal(normalise_min_max(torch.full((2, 1, 3, 3), 7.0)), torch.zeros(2, 1, 3, 3))


def test_mask_mass_uniform_map_has_the_area_share_and_ratio_one():
    _, mask = _ramp()
    out = MaskMass()(None, None, torch.ones(1, 1, 4, 10), mask=mask)
    assert out["share"][0] == pytest.approx(0.5)
    assert out["area"][0] == pytest.approx(0.5)
    assert out["density_ratio"][0] == pytest.approx(1.0)


def test_mask_mass_density_ratio_of_a_map_three_times_denser_inside():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[:, :1] = True  # area 1/4
    maps = torch.where(mask, 3.0, 1.0)[:, None]
    out = MaskMass()(None, None, maps, mask=mask)
    assert out["share"][0] == pytest.approx(12 / 24)
    assert out["density_ratio"][0] == pytest.approx(3.0)
    negative = MaskMass()(None, None, maps - 2.0, mask=mask)  # negative values clipped: all mass inside
    assert negative["share"][0] == pytest.approx(1.0)


def test_localisation_metrics_refuse_a_missing_or_misshaped_mask():
    with pytest.raises(XattrError, match="mask"):
        MIoU()(None, None, torch.ones(1, 1, 4, 4))
    with pytest.raises(XattrError, match=r"\[B,1,h,w\]"):
        MaskMass()(None, None, torch.ones(1, 3, 4, 4), mask=torch.ones(1, 4, 4, dtype=torch.bool))
    with pytest.raises(XattrError, match="threshold"):
        MIoU(threshold=2.0)
