"""Benchmark of the information-bottleneck and perturbation baselines (IBA, HSIC, RISE).

Prints, side by side in one process:
  * IBA, B images explained jointly (ours) vs the same images one at a time (ours, B=1) and vs a
    reference-style loop (BioroboticsLab/IBA's algorithm: one image at a time, the input copied to
    10 draws and the whole model run per draw, parameters not frozen), with the ratio
    time / bound, bound = steps × one forward-backward of the model on `draws` images;
  * the same for resnet50 (random init, 224 px, small B, fewer steps);
  * HSIC and RISE images per second and time / bound (bound = n_masks forwards of one image).

    PYTHONPATH=. python scripts/bench_ib.py [--quick | --full] [--device cuda]

Default (a few minutes on one core): tiny_cnn at the paper's 10 steps x 10 draws, resnet50 at 2 steps x
4 draws (the per-step cost ratio is what batching changes), HSIC/RISE with 300/400 masks.
--quick: fewer images. --full: resnet50 10 x 10 and HSIC/RISE with the paper's 1,500/4,000 masks.
--device cuda: every side on the GPU, wall time (the CPU default counts the process's CPU time).
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import add_device_argument, bench_device, best_time, device_label  # noqa: E402

from xattr.data import ShapesDataset, collate
from xattr.info.bottleneck import SpatialGaussianSmoothing, kl_capacity
from xattr.info.feature_statistics import feature_statistics
from xattr.methods.hsic import HSIC
from xattr.methods.iba import IBA
from xattr.methods.rise import RISE
from xattr.models import build_model
from xattr.utils.hooks import forward_hook, frozen

DEVICE = torch.device("cpu")  # set from --device in main()


def timed(fn, repeat: int = 1) -> float:
    """Best CPU time of the process (one torch thread): robust on a machine shared with other jobs; on a GPU,
    the best wall time with the device synchronised."""
    return best_time(fn, repeat, clock=time.process_time, device=DEVICE)[0]


def reference_style_iba(model, layer, x1, target1, stats, steps, draws, beta=10.0, lr=1.0, min_std=0.01):
    """IBA as the reference code runs it (our re-implementation of its loop, for timing only):
    one image, input expanded to `draws`, the full model per draw, capacity over the expanded batch."""
    device = x1.device
    mean, std = stats["mean"].to(device), torch.clamp(stats["std"].to(device), min=min_std)
    active = stats["active"].to(device).float()
    alpha = torch.full(mean.shape, 5.0, device=device, requires_grad=True)
    smooth = SpatialGaussianSmoothing(1.0).to(device)
    optimizer = torch.optim.Adam([alpha], lr=lr)
    batch = x1.expand(draws, -1, -1, -1)
    buffer = {}

    def restrict(_m, _i, r):
        lam = smooth(torch.sigmoid(alpha).expand(r.shape[0], -1, -1, -1))
        buffer["cap"] = kl_capacity(r, lam, mean, std) * active
        eps = std * torch.randn_like(r) + mean
        return (lam * r + (1 - lam) * eps) * active

    with forward_hook(model.get_layer(layer), restrict):
        for _ in range(steps):
            optimizer.zero_grad()
            loss = -torch.log_softmax(model(batch), 1)[:, int(target1)].mean()
            loss = loss + beta * buffer["cap"].mean(0).mean()
            loss.backward()
            optimizer.step()
    model.zero_grad(set_to_none=True)
    return buffer["cap"].mean(0)


def forward_backward_time(model, x_draws) -> float:
    def run():
        inp = x_draws.clone().requires_grad_(True)
        model(inp).logsumexp(1).sum().backward()

    with frozen(model):
        run()
        return timed(run, repeat=2)


def bench_iba(name: str, model, images, labels, stats, steps: int, draws: int, n_reference: int = 2) -> dict:
    """Joint vs one-at-a-time on all images; the (slow) reference-style loop on the first ``n_reference``."""
    b = images.shape[0]
    iba = IBA(model, optimization_steps=steps, batch_size=draws, progress=False)
    iba.set_feature_statistics(stats)
    iba.attribute(images[:1], labels[:1])  # warm-up
    t_joint = timed(lambda: iba.attribute(images, labels))
    t_single = timed(lambda: [iba.attribute(images[i:i + 1], labels[i:i + 1]) for i in range(b)])
    n_ref = min(n_reference, b)
    t_ref = timed(lambda: [reference_style_iba(model, iba.layer, images[i:i + 1], labels[i], stats, steps, draws)
                           for i in range(n_ref)]) * b / n_ref
    t_fb = forward_backward_time(model, images[:1].expand(draws, -1, -1, -1))
    bound = steps * t_fb  # per image
    row = {"model": name, "B": b, "steps": steps, "draws": draws, "joint_s_per_img": t_joint / b,
           "single_s_per_img": t_single / b, "reference_s_per_img": t_ref / b,
           "speedup_vs_single": t_single / t_joint, "speedup_vs_reference": t_ref / t_joint,
           "joint_over_bound": (t_joint / b) / bound, "reference_over_bound": (t_ref / b) / bound}
    return row


def bench_perturbation(cls, model, images, labels, n_masks: int, batch_size: int) -> dict:
    method = cls(model, n_masks=n_masks, batch_size=batch_size, progress=False)
    method.attribute(images[:1], labels[:1])
    t = timed(lambda: method.attribute(images, labels))
    with torch.no_grad():
        t_fwd = timed(lambda: model(images[:1].expand(batch_size, -1, -1, -1)), repeat=2) / batch_size
    b = images.shape[0]
    return {"method": cls.__name__, "B": b, "n_masks": n_masks, "images_per_s": b / t,
            "forwards_per_s": b * n_masks / t, "time_over_bound": (t / b) / (n_masks * t_fwd)}


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images (about a minute of CPU time)")
    parser.add_argument("--full", action="store_true", help="paper settings everywhere (long on CPU)")
    add_device_argument(parser)
    args = parser.parse_args()
    DEVICE = bench_device(args.device)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    test = ShapesDataset("test", n_samples=4 if args.quick else 8)
    batch = collate([test[i] for i in range(len(test))])
    images, labels = batch["image"].to(DEVICE), batch["label"].to(DEVICE)
    tiny = build_model("tiny_cnn", num_classes=6).to(DEVICE)
    stats = feature_statistics(tiny, "bottleneck", ShapesDataset("train", n_samples=64), n_samples=64, progress=False,
                               device=DEVICE)

    timing = "CPU time, 1 thread" if DEVICE.type == "cpu" else f"wall time on {device_label(DEVICE)}"
    print(f"== IBA (10 steps x 10 draws, tiny_cnn 64px, B={len(test)}; {timing})")
    rows = [bench_iba("tiny_cnn", tiny, images, labels, stats, steps=10, draws=10, n_reference=1 if args.quick else 2)]

    resnet = build_model("resnet50", num_classes=1000).to(DEVICE)
    big = ShapesDataset("test", n_samples=2, image_size=224)
    big_batch = collate([big[i] for i in range(len(big))])
    r_stats = feature_statistics(resnet, "bottleneck", ShapesDataset("train", n_samples=8, image_size=224),
                                 n_samples=8, batch_size=4, progress=False, device=DEVICE)
    steps, draws = (10, 10) if args.full else (2, 4)  # default: the per-step cost ratio, fewer steps
    print(f"== IBA resnet50 random init, 224px, B=2, {steps} steps x {draws} draws")
    rows.append(bench_iba("resnet50", resnet, big_batch["image"].to(DEVICE), big_batch["label"].to(DEVICE), r_stats,
                          steps, draws,
                          n_reference=1 if args.quick else 2))
    for row in rows:
        print(f"  {row['model']:9s} B={row['B']} joint {row['joint_s_per_img']:.3f} s/img | one-at-a-time "
              f"{row['single_s_per_img']:.3f} s/img (x{row['speedup_vs_single']:.2f}) | reference-style "
              f"{row['reference_s_per_img']:.3f} s/img (x{row['speedup_vs_reference']:.2f}) | "
              f"time/bound ours {row['joint_over_bound']:.2f}, reference-style {row['reference_over_bound']:.2f}")

    n_hsic, n_rise = (1500, 4000) if args.full else (300, 400)
    n_img = 2 if args.quick else 4
    print(f"== HSIC ({n_hsic} masks) and RISE ({n_rise} masks), tiny_cnn 64px, B={n_img}")
    for cls, n in ((HSIC, n_hsic), (RISE, n_rise)):
        row = bench_perturbation(cls, tiny, images[:n_img], labels[:n_img], n, batch_size=200)
        print(f"  {row['method']:5s} {row['images_per_s']:.3f} images/s, {row['forwards_per_s']:.0f} forwards/s, "
              f"time/bound {row['time_over_bound']:.2f}")


if __name__ == "__main__":
    main()
