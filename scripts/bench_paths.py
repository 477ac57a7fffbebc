"""Benchmark of the path methods (issue 15), side by side in one process on the CPU, one thread.

- seconds per image of each path method and the ratio to its bound = gradient calls × one forward-backward
  (tiny_cnn, random init, 64 px; the bound's forward-backward is timed on the same batch size per pass);
- ours vs PAIR ``saliency`` 0.2.1 Blur IG and Guided IG on identical float64 inputs (time ratio, max |Δ| of maps);
- DiffIG (random-init default-size path model: its cost does not depend on the weights): seconds per image of the
  path sampling (DDIM, unguided and faithfulness-guided) vs the path integral's gradient calls, and the whole
  call against its bound (classifier passes, guidance included, × one forward-backward);
- the stick-breaking sampler's peak RSS above the resting RSS (Linux VmHWM reset) against the number of breaks.

    python scripts/bench_paths.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from _timing import add_device_argument, bench_device, best_time  # noqa: E402

PEAK = """
import torch
from xattr.paths import stick_breaking_schedule
torch.set_num_threads(1)
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)) / 1024
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
rss = status("VmRSS")
stick_breaking_schedule({features}, 17, 1.0, generator=torch.Generator().manual_seed(0), n_breaks={breaks})
print(status("VmHWM") - rss)
"""


DEVICE = torch.device("cpu")


def timed(fn, repeat=1):
    """Best of ``repeat`` wall times of ``fn()`` on :data:`DEVICE` (``_timing.best_time``) and its output."""
    return best_time(fn, repeats=repeat, device=DEVICE)


def one_pass(model, batch):
    x = torch.rand(batch, 3, 64, 64, device=DEVICE, requires_grad=True)
    model(x).softmax(1)[:, 0].sum().backward()


def diffig_rows(model, x, target, steps, chunk, per_pass, images) -> None:
    """DiffIG: sampling vs gradient cost (see the module docstring)."""
    from xattr.methods.diffig import DiffIG
    from xattr.nets.path_unet import PathUNet

    net = PathUNet().to(DEVICE)  # conf/task/path_diffusion.yaml's size: K 16, 16x16 grid, width 32, depth 2
    print("diffig (2 paths, 20 DDIM steps)   sampling s/image   integral s/image   sampling/integral   "
          "total/bound")
    baseline = torch.zeros_like(x)
    for label, energies in (("unguided", {}), ("faithfulness", {"faithfulness": {"weight": 0.1}})):
        method = DiffIG(model, n_paths=2, n_steps=steps, sampling_steps=20, energies=energies, chunk=chunk)
        method.path_net = net
        sampling, _ = timed(lambda m=method: m.sample(x, baseline, target))
        total, _ = timed(lambda m=method: m.attribute(x, target))
        passes = float(method.diagnostics()["classifier_passes"][0])
        integral = total - sampling
        bound = passes * images / chunk * per_pass / images
        print(f"  {label:31s} {sampling / images:16.3f}   {integral / images:16.3f}   {sampling / integral:17.2f}   "
              f"{total / images / bound:11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    add_device_argument(parser)
    args = parser.parse_args()
    global DEVICE
    DEVICE = bench_device(args.device)
    torch.set_num_threads(1)
    from xattr.data import ShapesDataset
    from xattr.methods.base import RunContext
    from xattr.methods.blur_ig import BlurIG
    from xattr.methods.expected_gradients import ExpectedGradients
    from xattr.methods.guided_ig import GuidedIG
    from xattr.methods.ig2 import IG2
    from xattr.methods.spi import SPI
    from xattr.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny_cnn", num_classes=6, device=str(DEVICE))
    images = 2
    x = torch.stack([ShapesDataset("test", n_samples=images, seed=5)[i]["image"] for i in range(images)]).to(DEVICE)
    target = torch.tensor([0, 2], device=DEVICE)
    steps = 16 if args.quick else 64
    chunk = 32
    per_pass, _ = timed(lambda: one_pass(model, chunk), repeat=3)
    methods = {
        "blur_ig": (BlurIG(model, n_steps=steps, chunk=chunk), steps),
        "guided_ig": (GuidedIG(model, n_steps=steps), steps),  # sequential: B images per pass
        "expected_gradients": (ExpectedGradients(model, n_samples=steps, reference_bank=16, chunk=chunk), steps),
        "ig2": (IG2(model, steps=steps, n_references=1, reference_bank=16), 2 * steps),  # f_c and loss backward
        "spi": (SPI(model, n_paths=1, n_steps=steps, n_breaks=200, chunk=chunk), steps),
    }
    context = RunContext(train_dataset=ShapesDataset("train", n_samples=16))
    print(f"one forward-backward of {chunk} images: {per_pass * 1e3:.1f} ms")
    print("method               s/image   bound s/image   ratio")
    for name, (method, calls) in methods.items():
        method.prepare(context)
        seconds, _ = timed(lambda m=method: m.attribute(x, target))
        passes = calls * images / (images if name in ("guided_ig", "ig2") else chunk)
        batch = images if name in ("guided_ig", "ig2") else chunk
        bound_pass = per_pass if batch == chunk else timed(lambda b=batch: one_pass(model, b), repeat=3)[0]
        bound = passes * bound_pass / images
        print(f"{name:20s} {seconds / images:8.3f}   {bound:12.3f}   {seconds / images / bound:5.2f}")

    diffig_rows(model, x, target, steps, chunk, per_pass, images)

    try:
        import saliency.core as sc
    except ImportError:
        print("saliency not installed: skipping the PAIR comparison (pip install saliency==0.2.1)")
    else:
        quantile = np.quantile
        np.quantile = lambda a, q, interpolation=None, **kw: quantile(a, q, method=interpolation, **kw)
        net = model.cpu().double()  # PAIR's saliency is numpy: this comparison runs on the CPU
        xd, target = x.cpu().double(), target.cpu()

        def call(t):
            def f(batch, call_model_args=None, expected_keys=None):
                im = torch.tensor(batch).permute(0, 3, 1, 2).requires_grad_(True)
                (g,) = torch.autograd.grad(net(im).softmax(1)[:, t].sum(), im)
                return {sc.INPUT_OUTPUT_GRADIENTS: g.permute(0, 2, 3, 1).numpy()}
            return f

        for name, ours, theirs in (
            ("blur_ig", lambda: BlurIG(net, n_steps=steps, chunk=chunk)._attribute(xd, target),
             lambda: [sc.BlurIG().GetMask(xd[i].permute(1, 2, 0).numpy(), call(int(target[i])), steps=steps,
                                          batch_size=chunk) for i in range(images)]),
            ("guided_ig", lambda: GuidedIG(net, n_steps=steps)._attribute(xd, target),
             lambda: [sc.GuidedIG().GetMask(xd[i].permute(1, 2, 0).numpy(), call(int(target[i])), x_steps=steps)
                      for i in range(images)]),
        ):
            t_ours, a = timed(ours)
            t_pair, b = timed(theirs)
            diff = max(float(np.abs(a[i].permute(1, 2, 0).detach().numpy() - b[i]).max()) for i in range(images))
            print(f"{name}: ours {t_ours:.2f} s, PAIR {t_pair:.2f} s, ours/PAIR {t_ours / t_pair:.2f}, "
                  f"max |diff| {diff:.2e} (max |A| {max(abs(m).max() for m in b):.2e})")
        np.quantile = quantile
        model.float()

    features = 3 * 64 * 64 if args.quick else 3 * 224 * 224
    for breaks in (100, 1000) if args.quick else (100, 1000, 4000):
        out = subprocess.run([sys.executable, "-c", PEAK.format(features=features, breaks=breaks)],
                             capture_output=True, text=True, check=True, cwd=ROOT,
                             env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
        naive = features * breaks * 8 / 2**20
        print(f"stick-breaking {features} features, {breaks} breaks: peak RSS growth {float(out.stdout):.0f} MiB "
              f"(one naive features x breaks float64 tensor: {naive:.0f} MiB)")


if __name__ == "__main__":
    main()
