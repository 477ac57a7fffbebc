"""DiffIG controllability, measured (issue 15): tiny_cnn (trained, cached) on shapes test images, seeded.

- ``region``: guidance on the object mask (``early``, ``late``) and on the background (``early``) — the share of
  attribution mass ``Σ|A|·mask / Σ|A|`` inside the object mask (per pixel, channels summed);
- ``smoothness``: weights 0 / 0.1 / 0.3 — total variation of the normalised pixel map ``|A| / Σ|A|``;
- ``faithfulness``: weights 0 / 0.1 / 0.3 — insertion AUC (blur substrate, 5 % steps) and DiffID.

Two columns measure the sampled paths themselves, before any gradient: ``path_contrast`` (mean ``S`` inside the
object mask minus outside, over ``k``: what ``region`` pushes up for ``early``) and ``path_tv`` (the schedules' total
variation over the grid: what ``smoothness`` pushes down). They tell whether guidance did what it was asked on
the path, apart from whether the path's change shows in the map.

Each guided setting is compared with the unguided one on the same images: mean ± standard error of the paired
difference. Cheap settings (``--n-paths 2 --n-steps 64 --sampling-steps 10``) keep it under 5 minutes on 2 CPU cores.

    PYTHONPATH=. OMP_NUM_THREADS=2 python scripts/diffig_controllability.py [--n-images 16] [--out outputs/diffig/controllability]
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch

from xattr.data import ShapesDataset
from xattr.methods.diffig import DiffIG, region_energy, smoothness_energy
from xattr.metrics.diffid import DiffID
from xattr.metrics.insertion import Insertion
from xattr.training.classifier import load_trained_classifier
from xattr.training.path_diffusion import load_or_train_path_model

SETTINGS = {
    "unguided": {},
    "region early on object": {"region": {"weight": 0.3, "mode": "early"}},
    "region late on object": {"region": {"weight": 0.3, "mode": "late"}},
    "region early on object, weight 1": {"region": {"weight": 1.0, "mode": "early"}},
    "region late on object, weight 1": {"region": {"weight": 1.0, "mode": "late"}},
    "region early on background": {"region": {"weight": 0.3, "mode": "early", "background": True}},
    "smoothness 0.1": {"smoothness": {"weight": 0.1}},
    "smoothness 0.3": {"smoothness": {"weight": 0.3}},
    "smoothness 1": {"smoothness": {"weight": 1.0}},
    "faithfulness 0.1": {"faithfulness": {"weight": 0.1}},
    "faithfulness 0.3": {"faithfulness": {"weight": 0.3}},
}


def mask_share(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Σ|A|·mask / Σ|A|`` per image ``[B]`` (maps ``[B,C,H,W]``, mask ``[B,1,H,W]``)."""
    mass = maps.abs().sum(1, keepdim=True)
    return (mass * mask).flatten(1).sum(1) / mass.flatten(1).sum(1).clamp_min(1e-30)


def map_tv(maps: torch.Tensor) -> torch.Tensor:
    """Total variation of ``|A| / Σ|A|`` (pixel map) per image ``[B]``."""
    mass = maps.abs().sum(1)
    mass = mass / mass.flatten(1).sum(1).clamp_min(1e-30).view(-1, 1, 1)
    return (mass.diff(dim=1).abs().flatten(1).sum(1) + mass.diff(dim=2).abs().flatten(1).sum(1))


def path_measures(schedules: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(path_contrast, path_tv)`` per image ``[B]`` of sampled schedules ``[B, N, K+1, C', h, w]`` (mask
    ``[B,1,H,W]``, averaged onto the schedule's grid), each the mean over the ``N`` paths."""
    b, n = schedules.shape[:2]
    flat = schedules.flatten(0, 1)
    grid_mask = torch.nn.functional.adaptive_avg_pool2d(mask, flat.shape[-2:]).repeat_interleave(n, 0)
    contrast = -region_energy(flat, grid_mask, "early").view(b, n).mean(1)
    return contrast, smoothness_energy(flat).view(b, n).mean(1)


def recording_sampler(method: DiffIG, into: list):
    """``method.sample`` that also appends the schedules it returns to ``into``."""
    sample = method.sample

    def recorded(*args, **kwargs):
        schedules, counts = sample(*args, **kwargs)
        into.append(schedules.detach())
        return schedules, counts

    return recorded


def paired(values: torch.Tensor, base: torch.Tensor) -> str:
    d = (values - base).double()
    sem = d.std(unbiased=True) / d.numel() ** 0.5 if d.numel() > 1 else float("nan")
    return f"{float(d.mean()):+.4f} ± {float(sem):.4f}"


def prior_check(model, path_net, x, target) -> None:
    """How well the path model learnt the prior: mean ``S_k`` of unguided samples vs stick-breaking draws (``t_k``)."""
    from xattr.training.path_diffusion import draw_bank

    method = DiffIG(model, n_paths=8, energies={})
    method.path_net = path_net
    samples = method.sample(x[:4], torch.zeros_like(x[:4]), target[:4])[0].flatten(0, 1)
    draws, _ = draw_bank(32, path_net.grid, path_net.n_steps, path_net.channels, path_net.alpha_range, seed=1,
                         progress=False)
    every = max(1, path_net.n_steps // 4)
    print("prior check, mean S_k at k =", list(range(0, path_net.n_steps + 1, every)))
    print("  path model samples:", [round(v, 3) for v in samples.mean((0, 2, 3, 4))[::every].tolist()])
    print("  stick-breaking    :", [round(v, 3) for v in draws.mean((0, 2, 3, 4))[::every].tolist()], flush=True)


@torch.no_grad()
def region_probe(model, x: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> str:
    """What the classifier reads: mean ± s.e. of the target's probability on the full image, the object alone on
    black, the background with the object blacked out, and black."""
    lines = []
    for name, z in (("full image", x), ("object on black", x * mask), ("background, object black", x * (1 - mask)),
                    ("black", torch.zeros_like(x))):
        p = model(z).softmax(1).gather(1, target[:, None]).squeeze(1)
        lines.append(f"  {name}: {float(p.mean()):.3f} ± {float(p.std() / len(p) ** 0.5):.3f}")
    return "target probability (what the classifier reads):\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=16)
    parser.add_argument("--n-paths", type=int, default=2)
    parser.add_argument("--n-steps", type=int, default=64)
    parser.add_argument("--sampling-steps", type=int, default=10)
    parser.add_argument("--cache-dir", default=os.environ.get("XATTR_CACHE", ".cache"),
                        help="trained tiny_cnn (and the path model unless --path-cache)")
    parser.add_argument("--path-cache", default=None, help="cache dir of the path model (default: --cache-dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/diffig/controllability")
    parser.add_argument("--probe-only", action="store_true", help="print the region probe and stop")
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    model = load_trained_classifier("tiny_cnn", "shapes", 64, cache_dir=args.cache_dir)
    path_net = load_or_train_path_model(args.path_cache or args.cache_dir)
    test = ShapesDataset("test", n_samples=args.n_images)
    x = torch.stack([test[i]["image"] for i in range(len(test))])
    mask = torch.stack([test[i]["mask"] for i in range(len(test))]).float().unsqueeze(1)
    with torch.no_grad():
        target = model(x).argmax(1)
    print(region_probe(model, x, mask, target), flush=True)
    if args.probe_only:
        return
    prior_check(model, path_net, x, target)
    insertion, diffid = Insertion(step=0.05), DiffID()
    rows, scores = [], {}
    for name, energies in SETTINGS.items():
        start = time.perf_counter()
        energies = {k: dict(v) for k, v in energies.items()}
        background = energies.get("region", {}).pop("background", False)
        method = DiffIG(model, n_paths=args.n_paths, n_steps=args.n_steps, sampling_steps=args.sampling_steps,
                        energies=energies, seed=args.seed)
        method.path_net = path_net
        sampled = []
        method.sample = recording_sampler(method, sampled)
        maps = torch.cat([method.attribute_with_mask(x[i:i + 4], target[i:i + 4],
                                                     (1 - mask if background else mask)[i:i + 4])
                          for i in range(0, len(x), 4)])
        contrast, tv = path_measures(torch.cat(sampled), mask)
        scores[name] = {"path_contrast": contrast, "path_tv": tv, "mask_share": mask_share(maps, mask),
                        "map_tv": map_tv(maps),
                        "insertion": insertion(model, x, maps, target),
                        "diffid": diffid(model, x, maps, target)["diffid"]}
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    base = scores["unguided"]
    header = ["setting", "path_contrast", "path_tv", "mask_share", "map_tv", "insertion", "diffid"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, score in scores.items():
        cells = [f"{float(score[k].mean()):.4f}" + ("" if name == "unguided" else f" ({paired(score[k], base[k])})")
                 for k in header[1:]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        rows.append({"setting": name, **{k: float(score[k].mean()) for k in header[1:]}})
    table = "\n".join(lines)
    print(f"\n{len(x)} shapes test images, tiny_cnn, {args.n_paths} paths x {args.n_steps} steps, "
          f"{args.sampling_steps} DDIM steps; mean (paired difference to unguided ± s.e.)\n\n{table}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "controllability.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    (out / "controllability.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
