"""Does DiffIG's image-conditioned path model help? (issue 15; the conditioning is our guess.)

tiny_cnn (trained, cached) on shapes test images, unguided DiffIG with three path sources, paired over the same
images (mean ± standard error of the difference to the prior):

- ``prior``: the default path model (stick-breaking draws only: a learned SPI prior);
- ``image-conditioned``: the path model trained on the best of ``M`` draws per training image by the faithfulness
  energy for this classifier (``path_model.image_conditioned=true``; trained on first use, about 35 CPU minutes);
- ``best of M draws``: what that model imitates, computed directly on the test image (``M`` fresh stick-breaking
  draws per path, the one with the lowest energy), i.e. the target distribution, at ``M·K`` classifier passes.

Columns: ``path_energy`` (``−mean_k p_c(γ_k)`` over the interior waypoints of the sampled paths, lower = the
target's probability rises earlier: what the selection optimises), insertion AUC (blur substrate, 5 % steps),
DiffID, the attribution share inside the object mask.

    PYTHONPATH=. OMP_NUM_THREADS=2 python scripts/diffig_image_conditioning.py [--n-images 32] [--out outputs/diffig/image_conditioning]
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch
from diffig_controllability import mask_share, paired, recording_sampler

from xattr.data import ShapesDataset
from xattr.methods.diffig import DiffIG
from xattr.metrics.diffid import DiffID
from xattr.metrics.insertion import Insertion
from xattr.paths.energies import path_faithfulness
from xattr.training.classifier import load_trained_classifier
from xattr.training.path_diffusion import best_of_draws, draw_bank, image_source, load_or_train_path_model

COLUMNS = ["path_energy", "insertion", "diffid", "mask_share"]


@torch.no_grad()
def path_energy(model, x: torch.Tensor, target: torch.Tensor, schedules: torch.Tensor) -> torch.Tensor:
    """Faithfulness energy per image ``[B]``, mean over its paths (``schedules`` ``[B, N, K+1, C', h, w]``)."""
    b, n = schedules.shape[:2]
    xs = x.repeat_interleave(n, 0)
    energy = path_faithfulness(model, xs, torch.zeros_like(xs), target.repeat_interleave(n, 0), schedules.flatten(0, 1))
    return energy.view(b, n).mean(1)


def best_of_m_schedules(model, x: torch.Tensor, net, n_paths: int, candidates: int, seed: int) -> torch.Tensor:
    """``[B, N, K+1, C', h, w]``: per image and path the best of ``candidates`` fresh draws (a bank of 512)."""
    bank, _ = draw_bank(512, net.grid, net.n_steps, net.channels, net.alpha_range, seed=seed + 1000, progress=False)
    picks = [best_of_draws(model, x, bank, candidates, seed=seed + p, progress=False) for p in range(n_paths)]
    return torch.stack([bank[p] for p in picks], 1)


def selection_summary(model, net, count: int, candidates: int) -> str:
    """What the best-of-M selection picks on the first ``count`` training images, as the conditioned model's
    training does (the same bank and seeds as ``load_or_train_path_model`` with seed 0): the α quartiles of the
    bank and of the picks."""
    bank, alphas = draw_bank(2000, net.grid, net.n_steps, net.channels, net.alpha_range, seed=0, progress=False)
    train = ShapesDataset("train", n_samples=None)
    images = torch.stack([train[i]["image"] for i in range(count)])
    picks = best_of_draws(model, images, bank, candidates, seed=0, progress=False)
    quartiles = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    show = lambda a: " / ".join(f"{v:.3g}" for v in a.quantile(quartiles).tolist())  # noqa: E731
    return (f"alpha quartiles, bank: {show(alphas)}; best of {candidates} on {count} training images: "
            f"{show(alphas[picks])}; distinct picks: {len(set(picks.tolist()))} of {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=32)
    parser.add_argument("--n-paths", type=int, default=2)
    parser.add_argument("--n-steps", type=int, default=64)
    parser.add_argument("--sampling-steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=8, help="M (as the conditioned model's training)")
    parser.add_argument("--cache-dir", default=os.environ.get("XATTR_CACHE", ".cache"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/diffig/image_conditioning")
    parser.add_argument("--selection-images", type=int, default=200, help="training images for the α summary")
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    model = load_trained_classifier("tiny_cnn", "shapes", 64, cache_dir=args.cache_dir)
    prior = load_or_train_path_model(args.cache_dir)
    conditioned = load_or_train_path_model(args.cache_dir, classifier=model, image_conditioned=True,
                                           candidates=args.candidates, image_source=image_source("tiny_cnn", "shapes", 64),
                                           train_dataset=ShapesDataset("train", n_samples=None))
    print(selection_summary(model, prior, args.selection_images, args.candidates), flush=True)
    test = ShapesDataset("test", n_samples=args.n_images)
    x = torch.stack([test[i]["image"] for i in range(len(test))])
    mask = torch.stack([test[i]["mask"] for i in range(len(test))]).float().unsqueeze(1)
    with torch.no_grad():
        target = model(x).argmax(1)
    best = best_of_m_schedules(model, x, prior, args.n_paths, args.candidates, args.seed)
    insertion, diffid = Insertion(step=0.05), DiffID()
    scores = {}
    for name, net, fixed in (("prior", prior, None), ("image-conditioned", conditioned, None),
                             (f"best of {args.candidates} draws", prior, best)):
        start = time.perf_counter()
        method = DiffIG(model, n_paths=args.n_paths, n_steps=args.n_steps, sampling_steps=args.sampling_steps,
                        energies={}, seed=args.seed)
        method.path_net = net
        if fixed is not None:
            method.sample = lambda *_, fixed=fixed: (fixed, {"guidance": 0, "denoiser": 0})
        sampled = []
        method.sample = recording_sampler(method, sampled)
        maps = method.attribute(x, target)
        scores[name] = {"path_energy": path_energy(model, x, target, torch.cat(sampled)),
                        "insertion": insertion(model, x, maps, target),
                        "diffid": diffid(model, x, maps, target)["diffid"], "mask_share": mask_share(maps, mask)}
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    base = scores["prior"]
    lines = ["| path source | " + " | ".join(COLUMNS) + " |", "|" + " --- |" * (len(COLUMNS) + 1)]
    rows = []
    for name, score in scores.items():
        cells = [f"{float(score[k].mean()):.4f}" + ("" if name == "prior" else f" ({paired(score[k], base[k])})")
                 for k in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        rows.append({"path source": name, **{k: float(score[k].mean()) for k in COLUMNS}})
    table = "\n".join(lines)
    print(f"\n{len(x)} shapes test images, tiny_cnn, unguided, {args.n_paths} paths x {args.n_steps} steps, "
          f"{args.sampling_steps} DDIM steps; mean (paired difference to the prior ± s.e.)\n\n{table}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "image_conditioning.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path source", *COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    (out / "image_conditioning.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
