"""ROAD (imputer vs dense solve, metric vs loop), MNIM (vs linear scan), ratios, sanity check, difficulty."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.metrics import MNIM, ROAD, BoxRatio, RandomizationSanity, SegRatio, write_randomization_report
from xattr.metrics._perturb import make_substrate, rank_units
from xattr.metrics.road import NEIGHBOUR_WEIGHTS, impute_linear
from xattr.tasks.difficulty import difficulty_breakdown
from xattr.utils.hooks import count_hooks


def small_model(num_classes=5, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(24, num_classes)).eval()


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- ROAD imputer


def dense_impute(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Obviously-correct: one equation per removed pixel, x_i * sum(w) - sum(w x_j) = 0, dense solve."""
    height, width = removed.shape
    unknown = [(r, c) for r in range(height) for c in range(width) if removed[r, c]]
    where = {p: i for i, p in enumerate(unknown)}
    a = np.zeros((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), image.shape[0]))
    for i, (r, c) in enumerate(unknown):
        for dy, dx, w in NEIGHBOUR_WEIGHTS:
            rr, cc = r + dy, c + dx
            if not (0 <= rr < height and 0 <= cc < width):
                continue
            a[i, i] += w
            if removed[rr, cc]:
                a[i, where[(rr, cc)]] -= w
            else:
                b[i] += w * image[:, rr, cc]
    out = image.copy()
    solution = np.linalg.solve(a, b)
    for i, (r, c) in enumerate(unknown):
        out[:, r, c] = solution[i]
    return out


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_imputer_matches_dense_solve(share):
    rng = np.random.default_rng(3)
    image = rng.random((3, 9, 11))
    removed = rng.random((9, 11)) < share
    removed[0, 0] = False
    ours = impute_linear(image, removed)
    np.testing.assert_allclose(ours, dense_impute(image, removed), atol=1e-10)
    np.testing.assert_array_equal(ours[:, ~removed], image[:, ~removed])
    # every imputed pixel is the renormalised weighted mean of its in-image neighbours
    r, c = np.argwhere(removed)[0]
    total, acc = 0.0, np.zeros(3)
    for dy, dx, w in NEIGHBOUR_WEIGHTS:
        if 0 <= r + dy < 9 and 0 <= c + dx < 11:
            total += w
            acc += w * ours[:, r + dy, c + dx]
    np.testing.assert_allclose(ours[:, r, c], acc / total, atol=1e-10)


def test_imputer_rejects_everything_removed():
    with pytest.raises(XattrError, match="every pixel"):
        impute_linear(np.zeros((3, 4, 4)), np.ones((4, 4), dtype=bool))


def loop_road(model, x, maps, target, fractions, order):
    """Per image and fraction: numpy ranking, dense-solve imputation, one forward."""
    probs = np.zeros((x.shape[0], len(fractions)))
    acc = np.zeros_like(probs)
    for b in range(x.shape[0]):
        values = maps[b].double().numpy().reshape(-1)
        order_idx = np.argsort(-values, kind="stable")
        for f, fraction in enumerate(fractions):
            count = math.floor(fraction * values.size + 1e-9)
            chosen = order_idx[:count] if order == "morf" else order_idx[values.size - count:]
            removed = np.zeros(values.size, dtype=bool)
            removed[chosen] = True
            removed = removed.reshape(maps[b].shape)
            image = x[b].double().numpy()
            if removed.shape[0] == 1:
                imputed = dense_impute(image, removed[0])
            else:
                imputed = np.stack([dense_impute(image[c:c + 1], removed[c])[0] for c in range(3)])
            with torch.no_grad():
                logits = model(torch.from_numpy(imputed).float()[None])
            probs[b, f] = logits.softmax(-1)[0, target[b]].item()
            acc[b, f] = float(logits.argmax(-1).item() == target[b].item())
    return probs, acc


@pytest.mark.parametrize("order", ["morf", "lerf"])
@pytest.mark.parametrize("channels", [1, 3])
def test_road_matches_loop_with_noise_zero(order, channels):
    model = small_model()
    x = rand(3, 3, 10, 10, seed=1)
    maps = randn(3, channels, 10, 10, seed=2)
    target = torch.tensor([0, 1, 4])
    fractions = (0.2, 0.5, 0.8)
    out = ROAD(fractions=fractions, order=order, noise=0.0, max_batch=4, return_curves=True)(model, x, maps, target)
    probs, acc = loop_road(model, x, maps, target, fractions, order)
    np.testing.assert_allclose(out["curve"].numpy(), probs, atol=1e-5)
    for f, fraction in enumerate(fractions):
        np.testing.assert_allclose(out[f"prob@{fraction:g}"].numpy(), probs[:, f], atol=1e-5)
        np.testing.assert_array_equal(out[f"acc@{fraction:g}"].numpy(), acc[:, f])
    np.testing.assert_allclose(out["prob"].numpy(), probs.mean(1), atol=1e-5)
    assert count_hooks(model) == 0


def test_road_fraction_is_share_removed_and_noise_only_on_removed():
    x = rand(1, 3, 12, 12, seed=4)
    maps = torch.arange(144.0).view(1, 1, 12, 12)  # pixel 143 most relevant
    clean_morf = ROAD(fractions=(0.25,), order="morf", noise=0.0).impute(x, maps)[0, 0]
    clean_lerf = ROAD(fractions=(0.25,), order="lerf", noise=0.0).impute(x, maps)[0, 0]
    changed_morf = (clean_morf != x[0]).any(0).view(-1)
    changed_lerf = (clean_lerf != x[0]).any(0).view(-1)
    assert changed_morf.sum() <= 36 and changed_morf[:108].sum() == 0   # only the top 36 may change
    assert changed_lerf.sum() <= 36 and changed_lerf[36:].sum() == 0    # only the bottom 36 may change
    noisy = ROAD(fractions=(0.25,), order="morf", noise=0.01, seed=1).impute(x, maps)[0, 0]
    diff = (noisy - clean_morf).view(3, -1)
    assert diff[:, :108].abs().max() == 0
    assert 0.005 < diff[:, 108:].std().item() < 0.02
    again = ROAD(fractions=(0.25,), order="morf", noise=0.01, seed=1).impute(x, maps)[0, 0]
    assert torch.equal(noisy, again)


def test_road_matches_grad_cam_package_with_noise_zero():
    gradcam_road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveMostRelevantFirst

    x = rand(1, 3, 12, 12, seed=5)
    cam = rand(12, 12, seed=6)
    theirs = RemoveMostRelevantFirst(50, gradcam_road.NoisyLinearImputer(noise=0.0))(x[0], cam)  # keeps 50%
    ours = ROAD(fractions=(0.5,), order="morf", noise=0.0).impute(x, cam[None, None])[0, 0]
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_road_options_are_checked():
    with pytest.raises(XattrError, match="fractions"):
        ROAD(fractions=(0.5, 1.0))
    with pytest.raises(XattrError, match="order"):
        ROAD(order="random")


# ----------------------------------------------------------------------------- MNIM


def monotone_model(x, substrate):
    """Two-class linear model whose class-1 logit grows with every inserted unit of ``x`` (w*(x-s) >= 0)."""
    units = x[0].numel()
    sign = torch.sign(x[0] - substrate[0]).reshape(-1)
    w = sign * (0.02 + rand(units, seed=9)) * 40.0 / units ** 0.5
    model = nn.Sequential(nn.Flatten(), nn.Linear(units, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([-w, w]) / 2)
        model[1].bias.copy_(torch.tensor([1.5, -1.5]))
    maps = (w.view_as(x[0]) * (x[0] - substrate[0]))[None]
    return model.eval(), maps


def linear_scan(model, x, rank, substrate, target, threshold):
    units = rank.numel()
    for k in range(units + 1):
        image = torch.where(rank < k, x, substrate)
        with torch.no_grad():
            p = model(image[None]).softmax(-1)[0, target].item()
        if p >= threshold:
            return k
    return None


@pytest.mark.parametrize("substrate", ["zero", "noise"])
def test_mnim_equals_linear_scan_on_monotone_curves(substrate):
    x = rand(1, 3, 8, 8, seed=7)
    base = make_substrate(nn.Identity(), x, substrate, seed=0)
    model, maps = monotone_model(x, base)
    metric = MNIM(threshold=0.9, substrate=substrate, grid=8)
    out = metric(model, x, maps, torch.tensor([1]))
    rank = rank_units(maps, 0)[0]
    expected = linear_scan(model, x[0], rank, base[0], 1, 0.9)
    assert expected is not None and 0 < expected < 192
    assert out["n"].item() == expected and out["reached"].item() == 1.0
    assert abs(out["mnim"].item() - expected / 192) < 1e-9
    assert out["passes"].item() <= 8 + 1 + math.ceil(math.log2(192 / 8))


def test_mnim_finds_an_exact_crossing_on_random_models_c1_and_c3():
    model = small_model(num_classes=3, seed=3)
    x = rand(4, 3, 12, 12, seed=8)
    for channels in (1, 3):
        maps = randn(4, channels, 12, 12, seed=channels)
        target = torch.tensor([0, 1, 2, 0])
        out = MNIM(threshold=0.4, relative=False, substrate="noise", grid=4)(model, x, maps, target)
        rank = rank_units(maps, 0)
        base = make_substrate(model, x, "noise", 0)
        for b in range(4):
            n = int(out["n"][b])
            def p(k, b=b, rank=rank, base=base, target=target):
                with torch.no_grad():
                    image = torch.where(rank[b] < k, x[b], base[b])[None]
                    return model(image).softmax(-1)[0, target[b]].item()
            if out["reached"][b]:
                assert p(n) >= 0.4 and (n == 0 or p(n - 1) < 0.4)
            else:
                assert n == rank[b].numel() and out["mnim"][b] == 1.0


def test_mnim_never_reached_relative_and_batch_of_one():
    x = rand(2, 3, 8, 8, seed=11)
    base = make_substrate(nn.Identity(), x, "zero", 0)
    model, maps = monotone_model(x[:1], base[:1])
    maps2 = maps.expand(2, -1, -1, -1)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(192, 2))
    nn.init.zeros_(flat[1].weight), nn.init.zeros_(flat[1].bias)  # p = 0.5 whatever is inserted
    out = MNIM(threshold=0.9, substrate="zero")(flat, x, maps2, torch.tensor([1, 1]))
    assert out["reached"].tolist() == [0.0, 0.0] and out["mnim"].tolist() == [1.0, 1.0]
    rel = MNIM(threshold=0.9, relative=True, substrate="zero", grid=8)(model, x[:1], maps, torch.tensor([1]))
    with torch.no_grad():
        full = model(x[:1]).softmax(-1)[0, 1].item()
    rank = rank_units(maps, 0)[0]
    assert rel["n"].item() == linear_scan(model, x[0], rank, base[0], 1, 0.9 * full)
    # all-zero image with the zero substrate: every step is the same image
    zero = torch.zeros(1, 3, 8, 8)
    out = MNIM(threshold=0.5, substrate="zero")(model, zero, maps, torch.tensor([0]))
    with torch.no_grad():
        p0 = model(zero).softmax(-1)[0, 0].item()
    assert out["n"].item() == (0 if p0 >= 0.5 else 192)
    assert out["at_start"].item() == (1.0 if p0 >= 0.5 else 0.0)


def test_mnim_at_start_marks_the_images_whose_substrate_alone_reaches_the_threshold():
    """``at_start`` is 1 exactly where N = 0 (the noise image alone is confident: a tie of every map)."""
    x = rand(1, 3, 8, 8, seed=11)
    base = make_substrate(nn.Identity(), x, "zero", 0)
    model, maps = monotone_model(x, base)
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([-5.0, 5.0]))  # class 1 at p > 0.99 from the substrate on
    out = MNIM(threshold=0.9, substrate="zero")(model, x.expand(2, -1, -1, -1), maps.expand(2, -1, -1, -1),
                                                torch.tensor([1, 0]))
    assert out["at_start"].tolist() == [1.0, 0.0] and out["n"][0].item() == 0 and out["n"][1].item() > 0


def test_mnim_nan_maps_raise():
    maps = torch.zeros(1, 1, 8, 8)
    maps[..., 3, 3] = float("nan")
    with pytest.raises(XattrError, match="NaN"):
        MNIM()(small_model(), rand(1, 3, 8, 8), maps, torch.tensor([0]))


# ----------------------------------------------------------------------------- ratios


def test_box_and_seg_ratio_match_loop():
    model = small_model()
    x = rand(2, 3, 10, 10, seed=12)
    maps = randn(2, 3, 10, 10, seed=13)
    target = torch.tensor([1, 2])
    boxes = [torch.tensor([[1.0, 2.0, 6.0, 7.0]]), torch.tensor([[0.0, 0.0, 3.0, 3.0], [5.0, 5.0, 10.0, 9.0]])]
    mask = torch.zeros(2, 10, 10, dtype=torch.bool)
    mask[0, 2:7, 1:6] = True
    mask[1, 0:3, 0:3] = True
    mask[1, 5:9, 5:10] = True
    n = torch.tensor([17.0, 120.0])
    box = BoxRatio()(model, x, maps, target, boxes=boxes, mnim_n=n, label=target)
    seg = SegRatio()(model, x, maps, target, mask=mask, mnim_n=n)
    for b in range(2):
        order = np.argsort(-maps[b].numpy().reshape(-1), kind="stable")[: int(n[b])]
        c, r, col = np.unravel_index(order, (3, 10, 10))
        expected = mask[b].numpy()[r, col].mean()
        assert abs(box["ratio"][b].item() - expected) < 1e-6
        assert abs(seg["ratio"][b].item() - expected) < 1e-6
        pos = maps[b].clamp(min=0).sum(0).numpy()
        assert abs(seg["energy"][b].item() - pos[mask[b].numpy()].sum() / pos.sum()) < 1e-5
    # without mnim_n the ratios run MNIM themselves and report its N
    own = SegRatio(threshold=0.3)(model, x, maps, target, mask=mask)
    found = MNIM(threshold=0.3)(model, x, maps, target)
    assert torch.equal(own["n"], found["n"])
    with pytest.raises(XattrError, match="boxes"):
        BoxRatio()(model, x, maps, target)
    with pytest.raises(XattrError, match="mask"):
        SegRatio()(model, x, maps, target)


def test_constant_map_energy_is_area_share():
    model = small_model()
    x = rand(1, 3, 10, 10)
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, :5] = True
    out = SegRatio()(model, x, torch.zeros(1, 1, 10, 10), torch.tensor([0]), mask=mask, mnim_n=torch.tensor([10.0]))
    assert abs(out["energy"].item() - 0.5) < 1e-6


# ----------------------------------------------------------------------------- randomisation sanity


class GradSaliency:
    def __init__(self, model):
        self.model = model

    def attribute(self, x, target):
        x = x.clone().requires_grad_(True)
        self.model(x).gather(1, target[:, None]).sum().backward()
        return x.grad.abs()


class ImageEcho:
    def __init__(self, model):
        self.model = model

    def attribute(self, x, target):
        return x.clone()


def test_randomization_sanity(tmp_path):
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = rand(2, 3, 12, 12, seed=14)
    target = torch.tensor([0, 3])
    maps = GradSaliency(model).attribute(x, target)
    out = RandomizationSanity(mode="both")(model, x, maps, target, method_factory=GradSaliency)
    assert list(out) == ["cascading/4", "cascading/0", "independent/4", "independent/0"]
    assert all(v.shape == (2,) and (v <= 1.0 + 1e-6).all() for v in out.values())
    assert out["cascading/0"].mean() < 0.99  # fully randomised model gives different saliency
    echo = RandomizationSanity(mode="cascading")(model, x, x.clone(), target, method_factory=ImageEcho)
    assert all(torch.allclose(v, torch.ones(2)) for v in echo.values())  # model-independent maps: SSIM 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and count_hooks(model) == 0
    table = write_randomization_report(out, tmp_path)
    assert (tmp_path / "randomization.csv").is_file() and (tmp_path / "randomization.png").is_file()
    assert len(table) == 4
    with pytest.raises(XattrError, match="method_factory"):
        RandomizationSanity()(model, x, maps, target)


# ----------------------------------------------------------------------------- difficulty


def test_difficulty_breakdown(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    conf = rng.random(50)
    values = {m: rng.random(50) for m in ("insertion", "deletion", "road_morf.prob", "road_lerf.prob", "mnim.mnim")}
    for i in range(50):
        for metric, v in values.items():
            rows.append({"method": "saliency", "model": "tiny_cnn", "dataset": "shapes", "id": f"s{i}", "target": 1,
                         "confidence": conf[i], "metric": metric, "value": v[i]})
    table = difficulty_breakdown(pd.DataFrame(rows), tmp_path, n_bins=20)
    bins = np.minimum((conf * 20).astype(int), 19)
    for _, row in table.iterrows():
        sel = bins == row["bin"]
        assert row["n"] == sel.sum()
        assert abs(row["dauc"] - (values["insertion"][sel] - values["deletion"][sel]).mean()) < 1e-12
        assert abs(row["delta_road"] - (values["road_lerf.prob"][sel] - values["road_morf.prob"][sel]).mean()) < 1e-12
        assert row["conf_low"] == row["bin"] / 20
    assert table["n"].sum() == 50
    assert (tmp_path / "difficulty.csv").is_file() and (tmp_path / "difficulty.png").is_file()
    with pytest.raises(XattrError, match="insertion"):
        difficulty_breakdown(pd.DataFrame([r for r in rows if r["metric"] == "mnim.mnim"]), tmp_path)


def test_road_all_zero_image_constant_map_batch_of_one():
    model = small_model()
    x = torch.zeros(1, 3, 10, 10)
    maps = torch.ones(1, 1, 10, 10)  # all ties: removal follows the seeded tie order
    road = ROAD(fractions=(0.3,), order="morf", noise=0.0)
    imputed = road.impute(x, maps)
    assert torch.equal(imputed[0, 0], x[0])  # neighbours of zeros are zeros
    out = road(model, x, maps, torch.tensor([2]))
    with torch.no_grad():
        p = model(x).softmax(-1)[0, 2].item()
    assert abs(out["prob"].item() - p) < 1e-6
    assert set(out) == {"prob@0.3", "acc@0.3", "prob", "acc"}


def test_no_hooks_or_mode_change_after_errors():
    model = small_model().train()
    x = rand(1, 3, 8, 8)
    with pytest.raises(XattrError):
        MNIM()(model, x, torch.zeros(1, 2, 8, 8), torch.tensor([0]))  # 2-channel maps are invalid
    with pytest.raises(XattrError):
        ROAD()(model, x, torch.zeros(1, 1, 8, 8), torch.tensor([9]))  # 5 classes
    assert model.training and count_hooks(model) == 0
    MNIM(threshold=0.5)(model, x, randn(1, 1, 8, 8), torch.tensor([0]))
    assert model.training  # eval only while scoring, then restored


def test_road_reads_nothing_back_per_evaluation_chunk():
    """ROAD's evaluation loop keeps probabilities on the device: more chunks (smaller ``max_batch``) read no
    more values back to the host (:mod:`sync_helpers`)."""
    from sync_helpers import HostReads

    model, x, maps = small_model(), rand(3, 3, 10, 10, seed=1), randn(3, 1, 10, 10, seed=2)
    target = torch.tensor([0, 1, 4])
    counts = []
    for max_batch in (12, 2):
        metric = ROAD(fractions=(0.2, 0.5, 0.8, 0.9), noise=0.0, max_batch=max_batch)
        with HostReads() as reads:
            metric(model, x, maps, target)
        counts.append(reads.counts)
    assert counts[0] == counts[1], f"{dict(counts[0])} with one chunk vs {dict(counts[1])} with six"


def test_mnim_relative_threshold_is_a_share_of_the_full_images_probability():
    """``relative=True`` searches for ``threshold * p(full image)``, not ``threshold``: with p(full) ~ 0.8 the
    absolute 0.9 is never reached while the relative one (0.72) is, at the linear scan's crossing."""
    x = rand(1, 3, 8, 8, seed=11)
    base = make_substrate(nn.Identity(), x, "zero", 0)
    model, maps = monotone_model(x, base)
    with torch.no_grad():
        full_logit_gap = model(x).diff(dim=-1)[0, 0].item()
        model[1].bias.add_(torch.tensor([1.0, -1.0]) * (full_logit_gap - math.log(4.0)) / 2)  # p(full) = 0.8
        full = model(x).softmax(-1)[0, 1].item()
    assert full == pytest.approx(0.8, abs=1e-4)
    rank = rank_units(maps, 0)[0]
    absolute = MNIM(threshold=0.9, relative=False, substrate="zero", grid=8)(model, x, maps, torch.tensor([1]))
    relative = MNIM(threshold=0.9, relative=True, substrate="zero", grid=8)(model, x, maps, torch.tensor([1]))
    assert absolute["reached"].item() == 0.0 and absolute["mnim"].item() == 1.0
    assert relative["reached"].item() == 1.0
    assert relative["n"].item() == linear_scan(model, x[0], rank, base[0], 1, 0.9 * full) < 192
