"""Benchmark: CoIBA's cost against single-layer IBA and IBA*, and images/s of every transformer method.

Side by side in one process, CPU, one thread, random-init transformers (timing does not depend on the
weights). Prints ratios:

- CoIBA / IBA (target <= 1.5x): both make `steps` forward-backward passes over `B x draws` images;
  CoIBA adds noise at L layers instead of 1.
- CoIBA / IBA* (IBA* runs IBA once per layer, so about 1/L).
- each method's time / physical bound, the bound being its forward-backward passes
  (IB methods: steps x one forward-backward of B x draws images; the bound's backward runs down to the
  input, the bottlenecks' only down to their first hooked layer, so values below 1 are possible).
- images per second of every transformer method with a conf/method/<name>.yaml.

    python scripts/bench_coiba.py [--quick] [--device cuda]

``--device``: the model, the images and every method on that device (synchronised before each timer read).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _timing import add_device_argument, bench_device, best_time, device_label  # noqa: E402

from xattr.methods.coiba import CoIBA  # noqa: E402
from xattr.methods.iba_star import IBAStar  # noqa: E402
from xattr.methods.iba_vit import IBATransformer  # noqa: E402
from xattr.models import build_model  # noqa: E402
from xattr.utils.hooks import forward_hooks  # noqa: E402

TRANSFORMER_METHODS = ["coiba", "iba_vit", "iba_star", "rollout", "generic_attention", "chefer_lrp",
                       "beyond_intuition", "vit_cx", "iia", "gradcam"]


def statistics(model, names, x):
    """Per-token mean/std of each named layer over the batch ``x`` (one forward pass)."""
    outputs = {}
    pairs = [(model.net.get_submodule(name), lambda m, i, o, n=name: outputs.__setitem__(n, o.detach()))
             for name in names]
    with forward_hooks(pairs), torch.no_grad():
        model(x)
    return {n: (v.mean(0), v.std(0)) for n, v in outputs.items()}


DEVICE = torch.device("cpu")  # set from --device in main()


def timed(fn, repeats: int) -> float:
    return best_time(fn, repeats, warmup=True, device=DEVICE)[0]


def forward_backward(model, x, target):
    x = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny_vit depth 6, 2 images (about a minute)")
    add_device_argument(parser)
    args = parser.parse_args()
    DEVICE = bench_device(args.device)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.quick:
        model = build_model("tiny_vit", num_classes=6)
        batch, repeats = 2, 1
    else:  # a 12-block model so the layer range is ViT-B's 4..12 (L = 8)
        model = build_model("tiny_vit", num_classes=6, depth=12, dim=192, heads=4)
        batch, repeats = 4, 2
    model = model.to(DEVICE)
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, 3, 64, 64).to(DEVICE)
    target = torch.randint(0, 6, (batch,)).to(DEVICE)
    stats_x = torch.rand(32, 3, 64, 64).to(DEVICE)

    coiba = CoIBA(model)
    iba_uniform = IBATransformer(model, layer=coiba.layer_names[0], channel_uniform=True, beta=1.0)
    iba = IBATransformer(model)
    star = IBAStar(model)
    for method in (coiba, iba_uniform, iba, star):
        method.set_statistics(statistics(model, method.layer_names, stats_x))
    L = len(coiba.layer_names)
    draws, steps = coiba.draws, coiba.steps
    xb = x.repeat_interleave(draws, 0)
    tb_ = target.repeat_interleave(draws)
    one_fb = timed(lambda: forward_backward(model, xb, tb_), max(repeats, 2))
    bound = steps * one_fb

    times = {
        "coiba": timed(lambda: coiba.attribute(x, target), repeats),
        "iba (same first layer, channel-uniform)": timed(lambda: iba_uniform.attribute(x, target), repeats),
        "iba_vit (default layer, per element)": timed(lambda: iba.attribute(x, target), repeats),
        "iba_star": timed(lambda: star.attribute(x, target), repeats),
    }
    print(f"model: tiny_vit depth {len(model.net.blocks)}, CoIBA layers {coiba.layer_names[0]}..{coiba.layer_names[-1]}"
          f" (L={L}), {batch} images, {steps} steps x {draws} draws, 1 thread, {device_label(DEVICE)}")
    print(f"one forward-backward of {batch * draws} images: {one_fb * 1e3:.1f} ms; "
          f"IB physical bound ({steps} of them): {bound:.3f} s")
    for name, seconds in times.items():
        print(f"  {name:42s} {seconds:7.3f} s   {batch / seconds:7.2f} img/s   {seconds / bound:5.2f}x bound")
    ratio_iba = times["coiba"] / times["iba (same first layer, channel-uniform)"]
    ratio_star = times["coiba"] / times["iba_star"]
    print(f"CoIBA / IBA  = {ratio_iba:.2f}x (target <= 1.5x)  [{'OK' if ratio_iba <= 1.5 else 'ABOVE TARGET'}]")
    print(f"CoIBA / IBA* = {ratio_star:.3f}x (IBA* ~ L x IBA, L = {L}: expected about {1 / L:.3f})")
    print(f"IBA* / IBA   = {times['iba_star'] / times['iba (same first layer, channel-uniform)']:.2f}x (L = {L})")

    # every other transformer method that exists in this checkout
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from xattr.data import ShapesDataset
    from xattr.methods.base import RunContext

    print("\nimages per second of the transformer methods present (conf/method/<name>.yaml):")
    with tempfile.TemporaryDirectory() as cache:
        context = RunContext(train_dataset=ShapesDataset(split="train", n_samples=32), cache_dir=Path(cache),
                             model_name="bench", dataset_name="shapes", device=str(DEVICE))
        for name in TRANSFORMER_METHODS[3:]:
            path = ROOT / "conf" / "method" / f"{name}.yaml"
            if not path.is_file():
                print(f"  {name:20s} (not on this branch)")
                continue
            try:
                method = instantiate(OmegaConf.load(path), model=model)
                method.prepare(context)
                seconds = timed(lambda m=method: m.attribute(x, target), repeats)
                print(f"  {name:20s} {batch / seconds:8.2f} img/s   ({seconds / one_fb * draws:6.1f} "
                      f"single-image forward-backwards per image)")
            except Exception as error:  # report and go on: one broken method must not hide the others
                print(f"  {name:20s} failed: {type(error).__name__}: {str(error).splitlines()[0][:100]}")
    for name, seconds in times.items():
        if name in ("coiba", "iba_star"):
            print(f"  {name:20s} {batch / seconds:8.2f} img/s")
    print(f"  {'iba_vit':20s} {batch / times['iba_vit (default layer, per element)']:8.2f} img/s")


if __name__ == "__main__":
    main()
