"""Images per second of the transformer baselines, batched vs one image at a time (CPU, 1 thread).

Side by side in one process, on random-init tiny_vit (64 px, 8x8 tokens, 6 blocks) and optionally
vit_b16 (224 px, batch 2, ``--vit-b16``). For each method prints images/s batched, images/s one by
one, their ratio, and the cost in units of one batched forward+backward of the model ("fb"), next to
the passes the algorithm must make (the physical bound).

    python scripts/bench_vitxai.py --quick [--device cuda]

``--device``: the model, the images and every method on that device (synchronised before each timer read).
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import add_device_argument, bench_device, device_label, synchronize  # noqa: E402

from xattr.methods.beyond_intuition import BeyondIntuition
from xattr.methods.chefer_lrp import CheferLRP
from xattr.methods.generic_attention import GenericAttention
from xattr.methods.iia import IteratedIntegratedAttributions
from xattr.methods.rollout import AttentionRollout
from xattr.methods.vit_cx import ViTCX
from xattr.models import build_model


def _methods(model):
    return {
        # name: (method, nominal passes in forward+backward units per batch)
        "rollout": (AttentionRollout(model), "1 fwd"),
        "generic_attention": (GenericAttention(model), "1 fb"),
        "chefer_lrp": (CheferLRP(model), "1 fb + relprop"),
        "beyond_intuition": (BeyondIntuition(model), "21 fb"),
        "iia": (IteratedIntegratedAttributions(model), "6 fwd + 6 fb of 6B"),
        "vit_cx": (ViTCX(model), "1 fwd + 2N fwd (N clusters)"),
    }


DEVICE = torch.device("cpu")  # set from --device in main()


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (imports, allocator)
    synchronize(DEVICE)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(DEVICE)
    return (time.perf_counter() - start) / repeats


def bench(model_name: str, batch: int, repeats: int, one_by_one: bool, skip: tuple[str, ...] = ()) -> None:
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=6 if model_name == "tiny_vit" else 1000).to(DEVICE)
    size = model.spec.input_size
    x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    target = (torch.arange(batch) % model.spec.num_classes).to(DEVICE)

    def forward_backward():
        xx = x.clone().requires_grad_(True)
        model(xx).gather(1, target[:, None]).sum().backward()

    fb = _time(forward_backward, repeats)
    print(f"\n{model_name}: batch {batch}, {device_label(DEVICE)}, one batched forward+backward = {fb * 1000:.1f} ms")
    print(f"{'method':<18} {'img/s batched':>13} {'img/s 1-by-1':>13} {'batched/1x1':>11} {'cost (fb)':>10}  passes")
    for name, (method, passes) in _methods(model).items():
        if name in skip:
            print(f"{name:<18} {'skipped':>13}")
            continue
        t_batch = _time(lambda m=method: m.attribute(x, target), repeats)
        if one_by_one:
            t_single = _time(lambda m=method: [m.attribute(x[i:i + 1], target[i:i + 1]) for i in range(batch)],
                             repeats)
            single_ips, ratio = f"{batch / t_single:13.2f}", f"{t_single / t_batch:11.2f}"
        else:
            single_ips, ratio = f"{'-':>13}", f"{'-':>11}"
        print(f"{name:<18} {batch / t_batch:13.2f} {single_ips} {ratio} {t_batch / fb:10.1f}  {passes}")


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny_vit only, batch 8, 1 repeat")
    parser.add_argument("--vit-b16", action="store_true", help="also vit_b16 (random init, batch 2, batched only)")
    parser.add_argument("--threads", type=int, default=1)
    add_device_argument(parser)
    args = parser.parse_args()
    DEVICE = bench_device(args.device)
    torch.set_num_threads(args.threads)
    bench("tiny_vit", batch=8, repeats=1 if args.quick else 3, one_by_one=True)
    if args.vit_b16:
        # ViT-CX on a random-init ViT-B yields hundreds of clusters (x2 forwards each): minutes per image
        bench("vit_b16", batch=2, repeats=1, one_by_one=False, skip=("vit_cx",))


if __name__ == "__main__":
    main()
