"""Word-localisation metrics: mIoU curves (Info-Decomp Table 3) and mask mass, on maps with known answers."""

import pytest
import torch

from xattr.errors import XattrError
from xattr.metrics.mask_mass import MaskMass
from xattr.metrics.miou import MIoU, iou_curve, normalise_min_max


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


def test_min_max_normalisation_ignores_offset_and_scale_and_thresholds_are_strict():
    """``(m − min)/(max − min)`` per image: a map shifted by 5 and scaled by 0.01 normalises to the same values; a
    normalised value equal to the threshold is not selected (``> t``); one-pixel unions give IoU 1 (the pixel
    found) or 0 (a pixel predicted outside an empty mask), not 1/2 or 1."""
    maps = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(normalise_min_max(5.0 + 0.01 * maps), normalise_min_max(maps), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(normalise_min_max(maps).flatten(1).amax(1), torch.ones(3, dtype=torch.float64))
    ramp = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 2, 2)
    mask = torch.tensor([[[False, False], [False, True]]])
    assert iou_curve(ramp, mask, torch.tensor([0.5])).item() == 1.0          # 0.5 itself is not above 0.5
    assert iou_curve(ramp, mask, torch.tensor([0.4])).item() == 0.5          # {0.5, 1.0} against {1.0}
    assert iou_curve(ramp, torch.zeros_like(mask), torch.tensor([0.5])).item() == 0.0


def test_mask_mass_is_per_image_and_scale_free():
    """Two images of a batch with different total mass get their own share; a map scaled by 1e-3 (total < 1)
    has the same share and ratio."""
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2] = True                                         # the top half
    maps = torch.ones(2, 1, 4, 4)
    maps[0, 0, :2] = 3.0                                       # image 0: three times denser in the mask
    maps[1] *= 10.0                                            # image 1: uniform, ten times the mass
    out = MaskMass()(None, None, maps, mask=mask)
    assert out["share"].tolist() == pytest.approx([0.75, 0.5])
    assert out["density_ratio"].tolist() == pytest.approx([3.0, 1.0])
    small = MaskMass()(None, None, maps * 1e-3, mask=mask)
    assert small["share"].tolist() == pytest.approx([0.75, 0.5])
    assert small["density_ratio"].tolist() == pytest.approx([3.0, 1.0])


def test_mask_mass_of_a_full_or_an_empty_mask_has_ratio_one():
    maps = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)) + 0.1
    masks = torch.stack([torch.ones(4, 4, dtype=torch.bool), torch.zeros(4, 4, dtype=torch.bool)])
    out = MaskMass()(None, None, maps, mask=masks)
    assert out["area"].tolist() == [1.0, 0.0]
    assert out["share"].tolist() == pytest.approx([1.0, 0.0])
    assert out["density_ratio"].tolist() == [1.0, 1.0]


def test_an_empty_mask_and_an_empty_prediction_have_iou_one():
    """A constant map selects nothing (min–max → 0): against an empty mask the union is empty, IoU 1; against a
    non-empty one, 0."""
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[1, 0, 0] = True
    curve = iou_curve(torch.ones(2, 1, 4, 4), masks, torch.tensor([0.1, 0.5]))
    assert curve.tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_a_coarse_map_is_resized_bilinearly_without_aligned_corners():
    """The map is brought to the mask's size by ``F.interpolate(bilinear, align_corners=False)``: MaskMass of a
    coarse map equals MaskMass of that interpolation (align_corners=True gives other edge values)."""
    coarse = torch.tensor([[[[0.0, 1.0, 4.0], [2.0, 0.0, 1.0], [1.0, 3.0, 0.0]]]])
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, 1:4, 2:7] = True
    reference = torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False)
    other = torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=True)
    out = MaskMass()(None, None, coarse, mask=mask)
    assert out["share"].item() == pytest.approx(MaskMass()(None, None, reference, mask=mask)["share"].item())
    assert out["share"].item() != pytest.approx(MaskMass()(None, None, other, mask=mask)["share"].item())


@pytest.mark.parametrize("metric, name", [(MIoU(), "miou"), (MaskMass(), "mask_mass")])
def test_a_mask_of_another_batch_size_is_refused_with_the_metric_name(metric, name):
    with pytest.raises(XattrError, match=rf"^{name}: maps \(2, 1, 4, 4\) and mask \(1, 4, 4\)"):
        metric(None, None, torch.ones(2, 1, 4, 4), mask=torch.ones(1, 4, 4, dtype=torch.bool))


def test_the_threshold_grid_accepts_its_closed_range_and_refuses_beyond():
    """``0 <= low <= high <= 1`` and ``n >= 1`` (a one-point grid, the edges 0 and 1 included); a fixed threshold
    in ``[0, 1]``."""
    assert MIoU(low=0.0, high=1.0, n=1).thresholds.tolist() == [0.0]
    assert MIoU(low=0.3, high=0.3, n=2).thresholds.tolist() == pytest.approx([0.3, 0.3])
    assert MIoU(threshold=0.0).threshold == 0.0 and MIoU(threshold=1.0).threshold == 1.0
    for bad in (dict(low=-0.1), dict(low=0.6, high=0.5), dict(high=1.5), dict(n=0), dict(threshold=-0.5)):
        with pytest.raises(XattrError, match="miou: thresh"):
            MIoU(**bad)


def test_a_map_without_positive_mass_counts_as_uniform():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[:, :1] = True
    out = MaskMass()(None, None, -torch.ones(1, 1, 4, 4), mask=mask)
    assert out["share"].tolist() == [0.25] and out["density_ratio"].tolist() == pytest.approx([1.0])
