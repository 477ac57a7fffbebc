"""Benchmark of the gradient baselines: cost per image relative to the passes each method must make.

For every method, on ``tiny_cnn`` (64×64, random init) and ``resnet50`` (224×224, random init), CPU:
- ``passes``: forward-backward passes per image the algorithm needs (IG: n_steps; SmoothGrad: n_samples;
  DeepLIFT: 2 (input and baseline go through together); DeepLIFT-SHAP: 2 per reference; others 1);
- ``s/img``: seconds per image after a one-image warm-up (best of 3 calls where a call is cheap, else one;
  the baseline forward-backward is the best of 3);
- ``bound``: time / (passes × one forward-backward of the same batch with input gradients only)
  — 1.0 means no overhead beyond the passes themselves;
- ``vs captum``: our wrapper / the bare Captum call on the same model and batch, for the one-pass
  methods (``fails`` where bare Captum raises, e.g. DeepLIFT on torchvision ResNet's reused ReLU);
  IG and SmoothGrad are the bare Captum loops plus argument handling, so they are not run twice.

Expensive defaults are scaled down for resnet50 (and for everything with ``--quick``); the ratio to the
bound is what carries over. Run: ``python scripts/bench_methods.py [--quick] [--device cuda]`` (``--device``:
every side on that device, synchronised before each timer read).
"""

from __future__ import annotations

import argparse
import time
import warnings

import captum.attr
import torch
from _timing import add_device_argument, bench_device, best_time, device_label  # noqa: E402

from xattr.methods.deeplift import DeepLift
from xattr.methods.deepliftshap import DeepLiftShap
from xattr.methods.gradcam import GradCAM
from xattr.methods.guided_backprop import GuidedBackprop
from xattr.methods.integrated_gradients import IntegratedGradients
from xattr.methods.saliency import Saliency
from xattr.methods.smoothgrad import SmoothGrad
from xattr.models import build_model
from xattr.utils.hooks import frozen


def settings(model_name: str, quick: bool) -> dict:
    small = quick or model_name != "tiny_cnn"
    return {
        "ig_steps": (4 if quick else 16) if small else 200,
        "sg_samples": (2 if quick else 8) if small else 50,
        "shap_noise": 1 if small else 3,
    }


def methods(model, s: dict) -> list[tuple[str, object, float, object]]:
    """(name, our method, passes per image, bare Captum callable or None)."""
    shap = DeepLiftShap(model, n_noise=s["shap_noise"])
    n_refs = len(shap.references) - 1 + s["shap_noise"]
    layer = model.get_layer("gradcam")
    return [
        ("saliency", Saliency(model), 1,
         lambda x, t: captum.attr.Saliency(model).attribute(x.clone(), target=t, abs=True)),
        ("integrated_gradients", IntegratedGradients(model, n_steps=s["ig_steps"]), s["ig_steps"], None),
        ("guided_backprop", GuidedBackprop(model), 1,
         lambda x, t: captum.attr.GuidedBackprop(model).attribute(x.clone(), target=t)),
        ("deeplift", DeepLift(model), 2,
         lambda x, t: captum.attr.DeepLift(model).attribute(x.clone(), baselines=0 * x, target=t)),
        (f"deepliftshap(K={n_refs})", shap, 2 * n_refs, None),
        ("smoothgrad", SmoothGrad(model, n_samples=s["sg_samples"]), s["sg_samples"], None),
        ("gradcam", GradCAM(model), 1,
         lambda x, t: captum.attr.LayerGradCam(model, layer).attribute(x.clone(), target=t, relu_attributions=True)),
    ]


DEVICE = torch.device("cpu")  # set from --device in main()


def shortest_time(fn, repeats: int = 1) -> float:
    return best_time(fn, repeats, device=DEVICE)[0]


def forward_backward(model, x, target):
    with frozen(model), torch.enable_grad():
        x = x.clone().requires_grad_(True)
        logits = model(x)
        torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)


def bench(model_name: str, size: int, batch: int, quick: bool) -> None:
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=1000 if model_name == "resnet50" else 6, image_size=size).to(DEVICE)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    target = (torch.arange(batch) % model.spec.num_classes).to(DEVICE)
    forward_backward(model, x, target)  # warm-up
    one = shortest_time(lambda: forward_backward(model, x, target), 3)
    s = settings(model_name, quick)
    print(f"\n{model_name} {size}x{size}, batch {batch}, {device_label(DEVICE)}, 1 forward-backward = {one / batch * 1e3:.1f} ms/img "
          f"(settings: IG n_steps={s['ig_steps']}, SmoothGrad n_samples={s['sg_samples']})")
    print(f"{'method':26s} {'passes':>7s} {'s/img':>9s} {'bound':>7s} {'vs captum':>10s}")
    for name, method, passes, bare in methods(model, s):
        if passes <= 2 or isinstance(method, DeepLiftShap):  # one-image warm-up: torch.fx view, first hooks
            method.attribute(x[:1], target[:1])
        repeats = 3 if passes * one < 2.0 else 1  # best of 3 where cheap: the machines are shared
        ours = shortest_time(lambda m=method: m.attribute(x, target), repeats)
        versus = "n/a"
        if bare is not None:
            try:
                bare(x[:1], target[:1])
                versus = f"{ours / shortest_time(lambda b=bare: b(x, target), repeats):.2f}"
            except RuntimeError:
                versus = "fails"
        print(f"{name:26s} {passes:7.0f} {ours / batch:9.4f} {ours / (passes * one):7.2f} {versus:>10s}", flush=True)


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer IG steps / SmoothGrad samples everywhere")
    parser.add_argument("--threads", type=int, default=1)
    add_device_argument(parser)
    args = parser.parse_args()
    DEVICE = bench_device(args.device)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # Captum's hook notices
    start = time.perf_counter()
    bench("tiny_cnn", 64, 4, args.quick)
    bench("resnet50", 224, 2, args.quick)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
