"""How much of a removal metric is the classifier's response to the removal itself (issue 15's tiny table).

DiffID (``xattr/metrics/diffid.py``) replaces the removed pixel-channel elements by the mean of the kept ones. This
script removes a *random* share of the elements of each image (no attribution at all) and reports the top-1
accuracy of the trained ``tiny_cnn`` on shapes test images: where it is near chance already at small shares, every
map's DiffID and insertion/deletion curves mostly measure that fragility, and the ``random_map`` row of the table
is the level a method has to beat.

    PYTHONPATH=. python scripts/diffid_fragility.py [--n-images 100] [--seed 0]

Prints one line per removed share: accuracy with random elements removed (DiffID's fill), with random whole pixels
removed (the same fill per channel), and with random whole pixels set to black.
"""

from __future__ import annotations

import argparse

import torch

from xattr.data import ShapesDataset, collate
from xattr.metrics.diffid import fill_with_kept_mean
from xattr.training.classifier import load_trained_classifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=".cache")
    args = parser.parse_args(argv)
    model = load_trained_classifier("tiny_cnn", "shapes", 64, cache_dir=args.cache_dir).eval()
    data = ShapesDataset("test", n_samples=args.n_images)
    batch = collate([data[i] for i in range(len(data))])
    x, y = batch["image"], batch["label"]
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
        print(f"tiny_cnn, {len(data)} shapes test images, seed {args.seed}: clean accuracy {clean:.3f} "
              f"(chance {1 / 6:.3f})")
        print("removed share | elements, kept mean | pixels, kept mean | pixels, black")
        for share in (0.01, 0.05, 0.1, 0.3, 0.5, 0.9):
            keep_elements = torch.rand(x.shape, generator=generator) >= share
            keep_pixels = (torch.rand(x.shape[0], 1, *x.shape[2:], generator=generator) >= share).expand_as(x)
            accuracy = [(model(images).argmax(1) == y).float().mean().item()
                        for images in (fill_with_kept_mean(x, keep_elements), fill_with_kept_mean(x, keep_pixels),
                                       torch.where(keep_pixels, x, torch.zeros_like(x)))]
            print(f"{share:.2f} | " + " | ".join(f"{a:.3f}" for a in accuracy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
