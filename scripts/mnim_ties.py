"""MNIM ties at N = 0: how often the noise image alone already reaches the confidence threshold.

DiffIB's MNIM inserts an image's most important values into "a fully noise-filled image". With one noise
image shared by all images (``substrate=shared_noise``), a classifier that calls that image one class with
confidence >= the threshold gives N = 0 to every image of that class, whatever the map: a tie of every method.
This script measures it on the images of a DiffIB table (no attribution needed: N = 0 does not depend on the
map) for the shared field and for noise drawn per image (``substrate=noise``, the default), and writes a CSV
and a bar chart of the classes the noise images are given.

    PYTHONPATH=. python scripts/mnim_ties.py [--split test] [--n-images 100] [--seed 0] [--out outputs/diffib/tiny/ties]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
from pathlib import Path

import torch

from xattr.data import ShapesDataset, collate
from xattr.metrics._perturb import make_substrate


def noise_predictions(model, x: torch.Tensor, target: torch.Tensor, kind: str, seed: int) -> dict[str, torch.Tensor]:
    """Probability of the target, predicted class and its confidence on the substrate of every image ``[B]``."""
    with torch.no_grad():
        probs = model(make_substrate(model, x, kind, seed)).softmax(-1)
    confidence, predicted = probs.max(-1)
    return {"p_target": probs.gather(1, target[:, None])[:, 0], "predicted": predicted, "confidence": confidence}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test")
    parser.add_argument("--n-images", type=int, default=100, help="the DiffIB tiny tables' selection (100)")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0, help="the metric's noise seed (metric.mnim.seed)")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--out", default="outputs/diffib/tiny/ties")
    args = parser.parse_args()
    from xattr.training.classifier import load_trained_classifier

    model = load_trained_classifier("tiny_cnn", "shapes", 64, cache_dir=args.cache_dir).eval()
    data = ShapesDataset(args.split, n_samples=args.n_images)
    batch = collate([data[i] for i in range(len(data))])
    x, target = batch["image"], batch["label"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind in ("shared_noise", "noise"):
        pred = noise_predictions(model, x, target, kind, args.seed)
        ties = pred["p_target"] >= args.threshold
        classes = torch.bincount(pred["predicted"], minlength=int(target.max()) + 1)
        rows.append({"substrate": kind, "images": len(data), "tie_rate": ties.float().mean().item(),
                     "noise_classes": " ".join(str(int(c)) for c in classes),
                     "noise_confident": (pred["confidence"] >= args.threshold).float().mean().item(),
                     "label_share_of_tied_class": (target == pred["predicted"][0]).float().mean().item()
                     if kind == "shared_noise" else float("nan")})
    path = out / "ties.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    stamp = dt.date.today().isoformat()
    print(f"# MNIM ties at N = 0, tiny_cnn on shapes {args.split} ({len(data)} images), threshold {args.threshold}, "
          f"seed {args.seed}, {stamp}")
    for row in rows:
        print(f"{row['substrate']:>12}: tie rate {row['tie_rate']:.3f}; noise images confident (>= threshold) "
              f"{row['noise_confident']:.3f}; predicted class counts {row['noise_classes']}"
              + (f"; share of images with the shared noise's class {row['label_share_of_tied_class']:.3f}"
                 if row["substrate"] == "shared_noise" else ""))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
