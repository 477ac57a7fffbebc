"""DiffIB benchmark: per-sample fit batched (grouped conv / vmap) vs one image at a time, and vs amortized.

Prints time per image and ratios (one process, same images, same steps):
  * per-sample batched (grouped convs, B U-Nets at once) vs the same fit one image at a time  (target >= 3x)
  * per-sample batched vs torch.func.vmap over stacked parameters (which batching is faster on CPU)
  * amortized alpha-U-Net forward vs per-sample fit (alpha maps; target >= 100x), and with the MMSE integral
  * MNIM of per-sample and amortized maps on the same images (if xattr.metrics.mnim is installed)
Uses the trained tiny_cnn from the cache when present (``--cache``), else a random one (timings only).
``--device cuda`` runs every side on the GPU (the device synchronised before each timer read).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _timing import add_device_argument, bench_device, best_time, device_label  # noqa: E402

from xattr.data import ShapesDataset, collate
from xattr.methods.diffib import DiffIB, fit_alpha_per_sample
from xattr.models import build_model
from xattr.training.classifier import load_cached_classifier
from xattr.utils import cache as cache_file


def _classifier(cache: Path):
    path = cache / "classifiers" / "tiny_cnn-shapes-64.pt"
    if path.exists():
        width = cache_file.read(path, "classifier")["model"]["net.features.0.weight"].shape[0]  # any tiny_cnn width
        return load_cached_classifier(path, build_model("tiny_cnn", num_classes=6, width=width)).eval(), True
    torch.manual_seed(0)
    return build_model("tiny_cnn", num_classes=6).eval(), False


DEVICE = torch.device("cpu")  # set from --device in main()


def _timed(fn, repeat=1):
    best, out = best_time(fn, repeat, device=DEVICE)
    return out, best


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 images, 30 steps")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path(".cache"))
    add_device_argument(parser)
    args = parser.parse_args()
    DEVICE = bench_device(args.device)
    if args.quick:
        args.images, args.steps = 4, 30
    torch.set_num_threads(args.threads)
    model, trained = _classifier(args.cache)
    model = model.to(DEVICE)
    data = ShapesDataset(split="test", n_samples=args.images, seed=1)
    batch = collate([data[i] for i in range(len(data))])
    images, y = batch["image"].to(DEVICE), batch["label"].to(DEVICE)
    # the fit runs where DiffIB runs it: on the classifier's standardised input (method defaults: space, beta)
    method = DiffIB(model)
    classifier = method.classifier_view(images.shape[1])
    x = classifier.standardise(images)
    B = x.shape[0]
    seeds = list(range(B))
    kw = dict(steps=args.steps, patience=10**9, seeds=seeds, beta=method.beta)   # fixed step count: same work
    print(f"DiffIB bench: {B} images 64x64, {args.steps} Adam steps, tiny_cnn ({'trained' if trained else 'random'}), "
          f"{args.threads} thread(s), {device_label(DEVICE)}")

    alpha_grouped, t_grouped = _timed(lambda: fit_alpha_per_sample(classifier, x, y, batching="grouped", **kw))
    alpha_vmap, t_vmap = _timed(lambda: fit_alpha_per_sample(classifier, x, y, batching="vmap", **kw))

    def one_at_a_time():
        return torch.cat([fit_alpha_per_sample(classifier, x[i:i + 1], y[i:i + 1], **{**kw, "seeds": [seeds[i]]})
                          for i in range(B)])

    alpha_single, t_single = _timed(one_at_a_time)
    print(f"per-sample batched (grouped conv): {t_grouped / B * 1e3:9.1f} ms/image")
    print(f"per-sample batched (vmap):         {t_vmap / B * 1e3:9.1f} ms/image")
    print(f"per-sample one image at a time:    {t_single / B * 1e3:9.1f} ms/image")
    print(f"  ratio one-at-a-time / grouped = {t_single / t_grouped:.2f}x (target >= 3x); "
          f"vmap / grouped = {t_vmap / t_grouped:.2f}x; max |alpha batched - single| = "
          f"{(alpha_grouped - alpha_single).abs().max():.2e}")

    # amortized: one U-Net trained over the training split (training time excluded, reported)
    from xattr.training.alpha_unet import train_alpha_unet

    train = ShapesDataset(split="train", n_samples=256 if args.quick else 1000)
    net, t_train = _timed(lambda: train_alpha_unet(model, train, steps=40 if args.quick else 200, batch_size=8,
                                                   beta=method.beta, train_size=None, progress=False))
    with torch.no_grad():
        net(x)  # warm-up
        alpha_amortized, t_amortized = _timed(lambda: net(x), repeat=5)
    print(f"amortized alpha-U-Net forward:      {t_amortized / B * 1e3:9.3f} ms/image "
          f"(training {t_train:.1f} s, excluded)")
    print(f"  ratio per-sample (batched) / amortized = {t_grouped / t_amortized:.0f}x (target >= 100x)")

    from xattr.info import mmse_integral
    from xattr.nets.unet import Denoiser

    denoiser = Denoiser(3, 16, 3, seed=0).to(DEVICE).eval()   # cost only: an untrained denoiser of the default size
    g = torch.Generator(device=DEVICE).manual_seed(0)
    _, t_integral = _timed(lambda: mmse_integral(denoiser, x, alpha_grouped, n_points=17, n_noise=2, generator=g))
    print(f"MMSE integral (17 points x 2 draws, default denoiser size): {t_integral / B * 1e3:9.1f} ms/image")
    print(f"  end-to-end ratio per-sample / amortized (both + integral) = "
          f"{(t_grouped + t_integral) / (t_amortized + t_integral):.1f}x")

    try:
        from xattr.metrics.mnim import MNIM
    except ImportError:
        print("MNIM: xattr.metrics.mnim not installed; time only")
        return
    # relative threshold (0.9 x p(full image)): the small tiny_cnn is rarely 90% confident on the full image
    for relative in (False, True):
        metric = MNIM(relative=relative)
        for name, maps in [("per-sample", alpha_grouped), ("amortized", alpha_amortized)]:
            out = metric(model, images, maps, y)
            value = out["mnim"] if isinstance(out, dict) else out
            print(f"MNIM ({name} alpha maps, relative={relative}): {value.mean():.3f} +- {value.std():.3f}")


if __name__ == "__main__":
    main()
