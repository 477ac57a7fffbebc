"""Benchmark of the metrics suite against reference implementations, side by side in one process (CPU).

1. insertion + deletion (batched, chunked) vs a one-step-at-a-time loop as in RISE's evaluation.py;
2. ROAD vs the ``grad-cam`` package's ROAD (and Quantus' ROAD where installed), noise 0 for values and
   the default noise 0.01 for time;
3. MNIM forward passes per image vs a linear scan.

Models: tiny_cnn 64x64 and resnet50 224x224, random init (no weights offline), one thread. Maps are
plain gradient saliency of the predicted class. ``--quick`` uses fewer images and coarser steps.
Run: ``PYTHONPATH=. python scripts/bench_metrics.py --quick [--device cuda]`` (``--device``: models, images and
every side on that device, synchronised before each timer read; grad-cam's imputer solves on the CPU either way).
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import numpy as np
import torch
from _timing import add_device_argument, bench_device, device_label, synchronize  # noqa: E402

from xattr.metrics import MNIM, ROAD, Deletion, Insertion
from xattr.metrics._perturb import blur, rank_units, step_counts
from xattr.models import build_model

print = functools.partial(print, flush=True)  # noqa: A001  (progress visible when piped)


def saliency_for(model, x, target):
    x = x.clone().requires_grad_(True)
    model(x).gather(1, target[:, None]).sum().backward()
    return x.grad.abs().detach(), target


def saliency(model, x):
    with torch.no_grad():
        target = model(x).argmax(-1)
    return saliency_for(model, x, target)


DEVICE = torch.device("cpu")  # set from --device in main()


def images(size, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 8, size // 8, generator=g)
    x = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.to(DEVICE)


def timed(fn):
    synchronize(DEVICE)
    start = time.perf_counter()
    out = fn()
    synchronize(DEVICE)
    return out, time.perf_counter() - start


@torch.no_grad()
def one_forward_time(model, x, repeats=3):
    model(x[:1])
    synchronize(DEVICE)
    start = time.perf_counter()
    for _ in range(repeats):
        model(x[:1])
    synchronize(DEVICE)
    return (time.perf_counter() - start) / repeats


@torch.no_grad()
def rise_loop(model, x, maps, target, step, insert):
    """RISE's CausalMetric.single_run, one image and one step at a time (pixel maps [1,H,W])."""
    aucs, curves = [], []
    for b in range(x.shape[0]):
        units = maps[b].numel()
        order = np.argsort(-maps[b].cpu().numpy().reshape(-1), kind="stable")
        per_step = max(1, int(round(step * units)))
        n_steps = math.ceil(units / per_step)
        if insert:
            start, finish = blur(x[b:b + 1])[0].clone(), x[b]
        else:
            start, finish = x[b].clone(), torch.zeros_like(x[b])
        start_flat, finish_flat = start.view(3, -1), finish.reshape(3, -1)
        scores = np.empty(n_steps + 1)
        for i in range(n_steps + 1):
            scores[i] = model(start[None]).softmax(-1)[0, target[b]].item()
            if i < n_steps:
                coords = torch.as_tensor(order[per_step * i: per_step * (i + 1)], device=x.device)
                start_flat[:, coords] = finish_flat[:, coords]
        curves.append(scores)
        aucs.append((scores.sum() - scores[0] / 2 - scores[-1] / 2) / (len(scores) - 1))
    return np.array(aucs), np.stack(curves)


def bench_insdel(name, model, x, step):
    maps, target = saliency(model, x)
    maps = maps.sum(1, keepdim=True)  # per-pixel maps, as RISE ranks pixels
    ins, deletion = Insertion(step=step, return_curves=True), Deletion(step=step, return_curves=True)
    (ours_i, ours_d), t_ours = timed(lambda: (ins(model, x, maps, target), deletion(model, x, maps, target)))
    (ref_i, ref_d), t_ref = timed(lambda: (rise_loop(model, x, maps, target, step, True),
                                           rise_loop(model, x, maps, target, step, False)))
    diff = max(np.abs(ours_i["auc"].cpu().numpy() - ref_i[0]).max(), np.abs(ours_d["auc"].cpu().numpy() - ref_d[0]).max())
    diff_curve = max(np.abs(ours_i["curve"].cpu().numpy() - ref_i[1]).max(),
                     np.abs(ours_d["curve"].cpu().numpy() - ref_d[1]).max())
    passes = 2 * len(step_counts(maps[0].numel(), step))
    bound = passes * one_forward_time(model, x)
    print(f"  {name:9s} {x.shape[0]} img, step {step}: ours {t_ours / x.shape[0]:.3f} s/img, RISE loop "
          f"{t_ref / x.shape[0]:.3f} s/img -> {t_ref / t_ours:.1f}x faster; max |dAUC| {diff:.2e}, "
          f"max |dcurve| {diff_curve:.2e}; {passes} forwards/img, ours/(passes x batch-1 forward) "
          f"{t_ours / x.shape[0] / bound:.2f}")
    return t_ref / t_ours


def gradcam_road(model, x, cams, target, fractions, order, noise):
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in target]
    remover = RemoveMostRelevantFirst if order == "morf" else RemoveLeastRelevantFirst
    scores = []
    for fraction in fractions:  # grad-cam's percentile is the share KEPT
        metric = PerturbationConfidenceMetric(remover(100 * (1 - fraction), NoisyLinearImputer(noise=noise)))
        with torch.no_grad():
            scores.append(metric(x, cams, targets, model, return_diff=False))
    return np.stack(scores, axis=1)


def bench_road(name, model, x, fractions):
    maps, target = saliency(model, x)
    pixel_maps = maps.sum(1, keepdim=True)
    cams = pixel_maps[:, 0].cpu().numpy()
    cams = (cams - cams.min(axis=(1, 2), keepdims=True)) / np.ptp(cams, axis=(1, 2), keepdims=True)
    cams_t = torch.from_numpy(cams)[:, None].to(x.device)
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError as error:
        print(f"  {name}: grad-cam not installed ({error}); skipped (pip install grad-cam)")
        return None
    ratios = []
    for order in ("morf", "lerf"):
        ours0 = ROAD(fractions, order, noise=0.0, return_curves=True)(model, x, cams_t, target)["curve"].cpu().numpy()
        theirs0 = gradcam_road(model, x, cams, target, fractions, order, 0.0)
        ours_out, t_ours = timed(lambda order=order: ROAD(fractions, order, noise=0.01, return_curves=True)(
            model, x, cams_t, target))
        torch.manual_seed(0)
        theirs, t_ref = timed(lambda order=order: gradcam_road(model, x, cams, target, fractions, order, 0.01))
        ratios.append(t_ref / t_ours)
        print(f"  {name:9s} {order}: {x.shape[0]} img x {len(fractions)} fractions: ours {t_ours / x.shape[0]:.3f} s/img, "
              f"grad-cam {t_ref / x.shape[0]:.3f} s/img -> {t_ref / t_ours:.1f}x faster; noise 0 max |dprob| "
              f"{np.abs(ours0 - theirs0).max():.2e}; noise 0.01 max |dprob| "
              f"{np.abs(ours_out['curve'].cpu().numpy() - theirs).max():.2e}")
    try:
        import quantus

        y = target.cpu().numpy()
        metric = quantus.ROAD(percentages=[100 * f for f in fractions], noise=0.01, display_progressbar=False,
                              disable_warnings=True)
        _, t_q = timed(lambda: metric(model=model, x_batch=x.cpu().numpy(), y_batch=y, a_batch=cams[:, None],
                                      device=str(x.device), channel_first=True))
        _, t_ours = timed(lambda: ROAD(fractions, "morf", noise=0.01)(model, x, cams_t, target))
        print(f"  {name:9s} morf vs Quantus ROAD (accuracy only): ours {t_ours / x.shape[0]:.3f} s/img, "
              f"Quantus {t_q / x.shape[0]:.3f} s/img -> {t_q / t_ours:.1f}x faster")
    except Exception as error:  # Quantus is optional
        print(f"  {name}: Quantus ROAD failed, skipped: {type(error).__name__}: {str(error)[:100]} (Quantus 0.6 ranks "
              "C*H*W values but its imputer masks H*W pixels, so 3-channel images break it)")
    return min(ratios)


@torch.no_grad()
def linear_scan_passes(model, x, rank, start, target, threshold, chunk=64, cap=1024):
    """Forward passes a linear scan over every unit count needs to find the first crossing (stops at ``cap``)."""
    units = rank.numel()
    for lo in range(0, min(units, cap) + 1, chunk):
        counts = torch.arange(lo, min(lo + chunk, units + 1), device=x.device)
        batch = torch.where(rank[None] < counts.view(-1, 1, 1, 1), x[None], start[None])
        p = model(batch).softmax(-1)[:, target]
        hit = torch.nonzero(p >= threshold).flatten()
        if hit.numel():
            return int(counts[hit[0]]) + 1, int(counts[hit[0]])
    return (units + 1, None) if cap >= units else (None, None)


def bench_mnim(name, model, x, scan: bool, pixel_maps: bool = False):
    """Random-init models give the substrate about the image's confidence, so each image gets its own
    absolute threshold ``p(substrate) + 0.9 * (p(full) - p(substrate))`` for the class the image raises most."""
    from xattr.metrics._perturb import make_substrate

    start = make_substrate(model, x, "noise", 0)
    with torch.no_grad():
        p_full, p_sub = model(x).softmax(-1), model(start).softmax(-1)
    target = (p_full - p_sub).argmax(-1)
    maps, _ = saliency_for(model, x, target)
    if pixel_maps:
        maps = maps.sum(1, keepdim=True)
    units = maps[0].numel()
    rank = rank_units(maps, 0)
    passes, t_total, n_ours, scan_passes, same = [], 0.0, [], [], 0
    for b in range(x.shape[0]):
        lo, hi = p_sub[b, target[b]].item(), p_full[b, target[b]].item()
        threshold = lo + 0.9 * (hi - lo)
        metric, sl = MNIM(threshold=threshold, substrate="noise"), slice(b, b + 1)
        out, t = timed(lambda metric=metric, sl=sl: metric(model, x[sl], maps[sl], target[sl]))
        t_total += t
        passes.append(out["passes"].item())
        n_ours.append(out["n"].item())
        if scan and b < 2:  # the scan is slow: two images
            count, n = linear_scan_passes(model, x[b], rank[b], start[b], target[b], threshold)
            scan_passes.append(count if count is not None else float("nan"))
            same += int(n == int(out["n"].item()))
    line = (f"  {name:9s} {x.shape[0]} img, {units} units: ours {np.mean(passes):.1f} forwards/img "
            f"(max {int(max(passes))}), {t_total / x.shape[0]:.2f} s/img, mean MNIM {np.mean(n_ours) / units:.4f}")
    if scan:
        line += (f"; linear scan (2 img, capped at 1024) {scan_passes} forwards, same N for {same}/2 "
                 f"(random models' curves are not monotone); a full scan needs N+1 = {np.mean(n_ours) + 1:.0f} "
                 f"forwards/img on average")
    else:
        line += f"; a linear scan needs N+1 = {np.mean(n_ours) + 1:.0f} forwards/img (up to {units + 1})"
    print(line)


def main():
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, coarser steps (about 2-3 minutes)")
    add_device_argument(parser)
    args = parser.parse_args()
    DEVICE = bench_device(args.device)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tiny = build_model("tiny_cnn", num_classes=6).eval().to(DEVICE)
    resnet = build_model("resnet50", num_classes=1000).eval().to(DEVICE)
    n_tiny = 4 if args.quick else 6
    x_tiny, x_res = images(64, n_tiny), images(224, 1, seed=1)

    print(f"device: {device_label(DEVICE)}")
    print("insertion + deletion vs RISE-style one-step loop (target >= 10x, identical values)")
    bench_insdel("tiny_cnn", tiny, x_tiny, 0.01)
    bench_insdel("resnet50", resnet, x_res, 0.05)

    print("ROAD vs grad-cam ROAD (target >= 3x per image; fractions where both count the same pixels)")
    fractions = (0.25, 0.5, 0.75)
    bench_road("tiny_cnn", tiny, x_tiny, fractions)
    bench_road("resnet50", resnet, x_res[:1], fractions)

    print("MNIM forward passes per image (target <= 40 on 224x224), threshold 0.9 x p(full), noise substrate")
    bench_mnim("tiny_cnn", tiny, x_tiny, scan=True, pixel_maps=True)
    bench_mnim("tiny_cnn", tiny, x_tiny, scan=False)
    bench_mnim("resnet50", resnet, x_res[:1], scan=False)


if __name__ == "__main__":
    main()
