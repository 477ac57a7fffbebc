"""Insertion / deletion / DAUC against slow, obviously-correct loops (RISE's one-step-at-a-time scheme)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.metrics import DAUC, Deletion, Insertion
from xattr.metrics._perturb import (
    blur,
    gaussian_kernel,
    make_substrate,
    noise_field,
    rank_units,
    step_counts,
    tie_permutation,
    trapezoid_auc,
)
from xattr.utils.hooks import count_hooks


def small_model(num_classes: int = 5, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(24, num_classes)).eval()


def images(batch=3, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g)


def maps_like(x, channels, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(x.shape[0], channels, *x.shape[2:], generator=g)


def loop_curve(model, image, attribution, target, start, finish, step, order=None):
    """RISE-style loop: one image, one step at a time, numpy argsort ranking."""
    c_img = image.shape[0]
    units_shape = attribution.shape  # [C,H,W] or [1,H,W]
    units = attribution.numel()
    if order is None:
        order = np.argsort(-attribution.double().numpy().reshape(-1), kind="stable")
    per_step = max(1, int(round(step * units)))
    n_steps = int(np.ceil(units / per_step))
    current = start.clone()
    scores = []
    for i in range(n_steps + 1):
        with torch.no_grad():
            scores.append(model(current[None]).softmax(-1)[0, target].item())
        if i < n_steps:
            coords = order[per_step * i: per_step * (i + 1)]
            flat_mask = torch.zeros(units, dtype=torch.bool)
            flat_mask[torch.as_tensor(coords)] = True
            mask = flat_mask.view(units_shape).expand(c_img, -1, -1) if units_shape[0] == 1 else flat_mask.view(units_shape)
            current[mask] = finish[mask]
    scores = np.array(scores)
    return scores, np.trapezoid(scores, dx=1.0 / (len(scores) - 1))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("step", [0.05, 0.013])
def test_insertion_deletion_match_loop(channels, step):
    model = small_model()
    x = images()
    maps = maps_like(x, channels)
    target = torch.tensor([0, 3, 4])
    ins = Insertion(step=step, substrate="blur", max_batch=7, return_curves=True)(model, x, maps, target)
    dele = Deletion(step=step, substrate="zero", max_batch=5, return_curves=True)(model, x, maps, target)
    base = blur(x)
    for b in range(x.shape[0]):
        curve, auc = loop_curve(model, x[b], maps[b], target[b], base[b], x[b], step)
        np.testing.assert_allclose(ins["curve"][b].numpy(), curve, atol=1e-5)
        assert abs(ins["auc"][b].item() - auc) < 1e-5
        curve, auc = loop_curve(model, x[b], maps[b], target[b], x[b], torch.zeros_like(x[b]), step)
        np.testing.assert_allclose(dele["curve"][b].numpy(), curve, atol=1e-5)
        assert abs(dele["auc"][b].item() - auc) < 1e-5
    # endpoints: insertion ends at the full image, deletion starts there
    with torch.no_grad():
        full = model(x).softmax(-1).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(ins["curve"][:, -1], full, atol=1e-6, rtol=0)
    torch.testing.assert_close(dele["curve"][:, 0], full, atol=1e-6, rtol=0)
    assert count_hooks(model) == 0


def test_auc_matches_numpy_trapezoid():
    curve = torch.rand(4, 17, dtype=torch.float64)
    expected = np.trapezoid(curve.numpy(), x=np.linspace(0, 1, 17), axis=1)
    np.testing.assert_allclose(trapezoid_auc(curve).numpy(), expected, atol=1e-12)


def test_step_counts_cover_all_units():
    assert step_counts(10, 0.3) == [0, 3, 6, 9, 10]
    assert step_counts(100, 0.01)[-1] == 100 and len(step_counts(100, 0.01)) == 101
    assert step_counts(5, 1e-6) == [0, 1, 2, 3, 4, 5]


def test_blur_kernel_is_normalised_gaussian():
    k = gaussian_kernel()
    assert k.shape == (11, 11) and abs(k.sum().item() - 1) < 1e-6
    assert k[5, 5] == k.max() and torch.allclose(k, k.T)


def test_ties_are_broken_by_seeded_order_and_batch_invariant():
    maps = torch.zeros(2, 1, 4, 4)
    maps[:, :, 0, 0] = 1.0  # one clear winner, the rest tie
    rank = rank_units(maps, seed=3)
    assert (rank[:, 0, 0, 0] == 0).all()
    assert torch.equal(rank[0], rank[1])
    assert torch.equal(rank_units(maps[:1], seed=3)[0], rank[0])  # batch of one gives the same ranking
    perm = tie_permutation(16, 3)
    tied_order = [u for u in perm.tolist() if u != 0]
    assert rank[0].view(-1)[tied_order].tolist() == list(range(1, 16))
    assert not torch.equal(rank_units(maps, seed=4), rank)  # another seed, another tie order
    # distinct values are never reordered by the tie-break
    distinct = torch.arange(16.0).view(1, 1, 4, 4)
    assert rank_units(distinct, seed=5).view(-1).tolist() == list(range(15, -1, -1))


def test_constant_maps_follow_the_tie_order():
    model = small_model()
    x = images(batch=2)
    maps = torch.full((2, 1, 16, 16), 0.5)
    target = torch.tensor([1, 2])
    out = Deletion(step=0.1, return_curves=True)(model, x, maps, target)
    order = tie_permutation(256, 0).numpy()
    for b in range(2):
        curve, _ = loop_curve(model, x[b], maps[b], target[b], x[b], torch.zeros_like(x[b]), 0.1, order=order)
        np.testing.assert_allclose(out["curve"][b].numpy(), curve, atol=1e-5)


def test_nan_maps_and_bad_options_raise_one_line_errors():
    model = small_model()
    x = images(batch=1)
    maps = maps_like(x, 3)
    maps[0, 0, 0, 0] = float("nan")
    with pytest.raises(XattrError, match="NaN"):
        Insertion()(model, x, maps, torch.tensor([0]))
    with pytest.raises(XattrError, match="substrate"):
        Insertion(substrate="gray")
    with pytest.raises(XattrError, match="step"):
        Deletion(step=0.0)
    with pytest.raises(XattrError, match="out of range|target"):
        Insertion()(model, x, maps_like(x, 3), torch.tensor([7]))


def test_all_zero_image_batch_of_one_and_dauc():
    model = small_model()
    x = torch.zeros(1, 3, 16, 16)
    maps = maps_like(x, 3)
    target = torch.tensor([2])
    out = DAUC(step=0.1, deletion_substrate="zero")(model, x, maps, target)
    # zero image, zero substrate: deletion curve is flat at p(zero image)
    with torch.no_grad():
        p0 = model(x).softmax(-1)[0, 2].item()
    assert abs(out["deletion"].item() - p0) < 1e-6
    # the blur of a zero image is zero too: insertion is flat at the same value
    assert abs(out["insertion"].item() - p0) < 1e-6
    assert abs(out["dauc"].item()) < 1e-6


def test_dauc_sign_on_a_known_answer():
    """A model whose target probability rises with one box's brightness, and a map that ranks the box first:
    inserting the box first brings the probability up at once (insertion AUC high), deleting it first takes it
    away at once (deletion AUC low), so DAUC = insertion - deletion is clearly positive, and equals the two
    metrics' own values; the map that ranks the box last scores the opposite."""
    from box_helpers import BoxReader, box_images, box_mask

    model = BoxReader().eval()
    x, target = box_images(2, channels=3), torch.zeros(2, dtype=torch.long)
    first = box_mask().float().expand(2, 1, -1, -1) + 0.01 * maps_like(x, 1)   # box first, the rest in noise order
    last = 1.0 - first
    out = DAUC(step=0.05)(model, x, first, target)
    ins = Insertion(step=0.05, substrate="blur", blur_kernel=9)(model, x, first, target)
    dele = Deletion(step=0.05, substrate="noise")(model, x, first, target)
    torch.testing.assert_close(out["insertion"], ins, rtol=0, atol=0)
    torch.testing.assert_close(out["deletion"], dele, rtol=0, atol=0)
    torch.testing.assert_close(out["dauc"], ins - dele, rtol=0, atol=0)
    assert (ins > 0.8).all() and (dele < 0.3).all() and (out["dauc"] > 0.6).all(), out  # noise keeps some brightness
    wrong = DAUC(step=0.05)(model, x, last, target)
    assert (wrong["dauc"] < -0.6).all(), wrong


def test_noise_substrate_is_drawn_per_image_and_does_not_depend_on_the_batch():
    """DiffIB's noise image is drawn for each image (seeded by the seed and the image's bytes): an image gets the
    same noise alone, at another position or in another batch; different images get different noise; the seed
    changes it; ``shared_noise`` is one field for every image."""
    model = small_model()
    x = images(batch=3)
    noise = make_substrate(model, x, "noise", seed=0)
    alone = make_substrate(model, x[2:3], "noise", seed=0)
    swapped = make_substrate(model, x.flip(0), "noise", seed=0)
    torch.testing.assert_close(noise[2:3], alone, rtol=0, atol=0)
    torch.testing.assert_close(noise.flip(0), swapped, rtol=0, atol=0)
    assert (noise[0] - noise[1]).abs().mean() > 0.1
    assert (make_substrate(model, x, "noise", seed=1) - noise).abs().mean() > 0.1
    shared = make_substrate(model, x, "shared_noise", seed=0)
    torch.testing.assert_close(shared[0], shared[1], rtol=0, atol=0)
    torch.testing.assert_close(shared[0], noise_field(model, tuple(x.shape[1:]), 0, "cpu"), rtol=0, atol=0)
    assert noise.min() >= 0 and noise.max() <= 1


def test_blur_substrate_takes_the_kernel_and_sigma():
    """CoIBA's evaluation code blurs with kernel 51, sigma 50; RISE with 11 / 5: the substrate follows the
    options, and bad values are one-line errors naming them."""
    x = images(batch=1, size=32)
    wide = make_substrate(small_model(), x, "blur", blur_kernel=51, blur_sigma=50.0)
    torch.testing.assert_close(wide, blur(x, 51, 50.0), rtol=0, atol=0)
    assert (wide - make_substrate(small_model(), x, "blur")).abs().max() > 0.01
    with pytest.raises(XattrError, match="blur_kernel=10"):
        Insertion(blur_kernel=10)
    with pytest.raises(XattrError, match="blur_sigma=0"):
        Deletion(blur_sigma=0)


def test_tiny_cnn_zoo_model_and_unknown_ground_truth_kwargs(tiny_cnn, shapes_batch):
    x = shapes_batch["image"][:2]
    maps = maps_like(x, 1)
    target = shapes_batch["label"][:2]
    out = Insertion(step=0.1)(tiny_cnn, x, maps, target, mask=shapes_batch["mask"][:2], boxes=None, whatever=1)
    assert out.shape == (2,) and torch.isfinite(out).all() and ((0 <= out) & (out <= 1)).all()
    assert count_hooks(tiny_cnn) == 0 and not tiny_cnn.training


@pytest.mark.parametrize(("metric_cls", "small", "large"), [
    (Insertion, {"step": 0.25}, {"step": 0.0625}),
    (Deletion, {"step": 0.25}, {"step": 0.0625}),
    (DAUC, {"step": 0.25}, {"step": 0.0625}),
])
def test_host_reads_do_not_grow_with_the_number_of_steps(metric_cls, small, large):
    """The perturbation curve stays on the device: the values read back to the host (``item``, ``cpu``, …;
    :mod:`sync_helpers`) do not grow with the number of steps (one read per curve, not per step)."""
    from sync_helpers import HostReads

    model, x = small_model(), images()
    maps, target = maps_like(x, 1), torch.tensor([0, 1, 2])
    counts = []
    for options in (small, large):
        metric = metric_cls(**options, max_batch=4)
        with HostReads() as reads:
            metric(model, x, maps, target)
        counts.append(reads.counts)
    assert counts[0] == counts[1], f"{metric_cls.__name__}: {dict(counts[0])} vs {dict(counts[1])}"
