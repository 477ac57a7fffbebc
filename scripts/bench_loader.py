"""Benchmark of the run task's batch loading (``xattr.data.loader``) against collating in the main process.

The run loop used to build each batch as ``collate([dataset[i] for i in rows])``; it now iterates a
``torch.utils.data.DataLoader`` over the same rows. Side by side, per image (and the batches copied to
``--device``, pinned when it is CUDA):

1. the embedded ``shapes`` dataset (rendered in memory): list collate vs DataLoader with 0 and 2 workers;
2. an image folder (JPEG files written to a temporary folder, decoded and resized per sample, as ImageNet is):
   the same three.

Prints ms/image and each loader's ratio to the list collate (> 1: faster). The default ``loader.num_workers=0``
must cost no more than the list collate (ratio near 1); workers pay off where a sample costs more than
shipping it between processes. Run: ``PYTHONPATH=. python scripts/bench_loader.py --quick``.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from pathlib import Path

import numpy as np
import torch
from _timing import add_device_argument, bench_device, best_time
from PIL import Image

from xattr.data import FolderDataset, ShapesDataset, collate
from xattr.data.loader import batch_loader

print = functools.partial(print, flush=True)  # noqa: A001  (progress visible when piped)


def write_folder(root: Path, n_images: int, size: int = 256) -> None:
    """``n_images`` random JPEGs of ``size``² in two class folders (``<root>/<class>/<i>.jpg``)."""
    generator = np.random.default_rng(0)
    for index in range(n_images):
        folder = root / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = generator.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:04d}.jpg", quality=90)


def consume(batches, device: str) -> int:
    """Copy every batch's images to ``device`` (as the run loop does); the number of images."""
    count = 0
    for batch in batches:
        x = batch["image"].to(device, non_blocking=True)
        count += x.shape[0]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return count


def compare(name: str, dataset, batch_size: int, device: str, repeats: int) -> None:
    rows = [list(range(start, min(start + batch_size, len(dataset)))) for start in range(0, len(dataset), batch_size)]
    n = len(dataset)
    listed, _ = best_time(lambda: consume((collate([dataset[i] for i in r]) for r in rows), device), repeats)
    print(f"{name}: {n} images, batches of {batch_size}, device {device}")
    print(f"  list collate (before)      {listed * 1e3 / n:7.2f} ms/img")
    for workers in (0, 2):
        seconds, _ = best_time(lambda w=workers: consume(batch_loader(dataset, rows, num_workers=w, device=device),
                                                          device), repeats)
        print(f"  DataLoader num_workers={workers}   {seconds * 1e3 / n:7.2f} ms/img   "
              f"ratio {listed / seconds:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images (CI-sized)")
    add_device_argument(parser)
    args = parser.parse_args()
    device = str(bench_device(args.device))
    torch.set_num_threads(1)
    n_shapes, n_files, repeats = (128, 64, 2) if args.quick else (1024, 512, 3)
    compare("shapes (embedded, 64 px)", ShapesDataset(split="test", n_samples=n_shapes), 16, device, repeats)
    with tempfile.TemporaryDirectory() as root:
        write_folder(Path(root), n_files)
        folder = FolderDataset(root, split="test", image_size=224)
        compare("image folder (256 px JPEG -> 224 px)", folder, 16, device, repeats)


if __name__ == "__main__":
    main()
