"""Stable-Diffusion-size UNet calls per second: fp32 vs fp16, and how throughput scales with the batch.

``diffusers.UNet2DConditionModel`` built from the UNet config of Stable Diffusion 2.1-base (random init: the
cost of a call does not depend on the weights, so nothing is downloaded), on a 4x64x64 latent with a 77x1024
text context, at batch 1, 8 and 32. Each batch runs three ways, all under ``torch.inference_mode``:

* fp32 (on a GPU with torch's defaults: cuDNN convolutions in TF32, matrix products in full fp32; printed);
* fp16 autocast (``torch.autocast``, fp32 weights: what ``precision=fp16`` of ``xattr run`` means);
* fp16 weights (``.half()`` of the model and the inputs: how Stable Diffusion pipelines usually run).

Prints calls/s and images/s for each, the fp16/fp32 ratios, and images/s at batch B over batch 1 (batch
scaling). It competes against nothing external: the ratios are the result.

    PYTHONPATH=. python scripts/bench_unet.py [--quick] [--device cuda] [--batches 1,8,32]

``--quick``: a width-reduced UNet (block_out_channels (32, 64), two levels, cross-attention dim 64) on
16x16 latents, batch 1 and 4, which runs in seconds on a CPU; its header says which size ran.
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import add_device_argument, bench_device, device_label, synchronize  # noqa: E402

#: The architecture fields of ``unet/config.json`` of ``stabilityai/stable-diffusion-2-1-base`` (Hugging Face
#: Hub), as copied with ``_name_or_path`` pointing at that repository in the ``unet/config.json`` of
#: ``MirageML/ScoobyDoo`` and of ``sd-dreambooth-library/glitched`` (both agree; the original repository was
#: not reachable offline). ``_class_name``/``_diffusers_version``/``_name_or_path`` are dropped; the fields it
#: does not name take diffusers' defaults (mid block ``UNetMidBlock2DCrossAttn``, one transformer per block).
SD21_BASE_UNET = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": False,
    "use_linear_projection": True,
}
SD21_TEXT_TOKENS = 77  # the OpenCLIP ViT-H text encoder's context: 77 tokens x 1024 (= cross_attention_dim)

#: ``--quick``: the same block types at two levels and a fraction of the width, 16x16 latents
QUICK_UNET = {
    **SD21_BASE_UNET,
    "attention_head_dim": [2, 4],
    "block_out_channels": [32, 64],
    "cross_attention_dim": 64,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "sample_size": 16,
}

MODES = ("fp32", "fp16 autocast", "fp16 weights")


def build_unet(config: dict, device: torch.device) -> torch.nn.Module:
    """A random-init ``UNet2DConditionModel`` of ``config``, created directly on ``device``, in eval mode."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    with torch.device(device):
        return UNet2DConditionModel(**config).eval()


def inputs(config: dict, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(latents [B,4,S,S], timesteps [B], text context [B,77,D]) of the sizes ``config`` expects."""
    g = torch.Generator().manual_seed(batch)
    size = config["sample_size"]
    latents = torch.randn(batch, config["in_channels"], size, size, generator=g)
    context = torch.randn(batch, SD21_TEXT_TOKENS, config["cross_attention_dim"], generator=g)
    timesteps = torch.full((batch,), 500, dtype=torch.long)
    return latents.to(device), timesteps.to(device), context.to(device)


def calls_per_second(unet, args: tuple, mode: str, device: torch.device, calls: int) -> float:
    """UNet calls per second in ``mode`` (two untimed warm-up calls, then ``calls`` timed ones)."""
    latents, timesteps, context = args
    if mode == "fp16 weights":
        unet, latents, context = unet.half(), latents.half(), context.half()
    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=mode == "fp16 autocast")

    def call():
        with torch.inference_mode(), autocast:
            return unet(latents, timesteps, encoder_hidden_states=context).sample

    try:
        for _ in range(2):
            call()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            call()
        synchronize(device)
        return calls / (time.perf_counter() - start)
    finally:
        if mode == "fp16 weights":
            unet.float()


def fp32_note(device: torch.device) -> str:
    """What fp32 means on ``device``: TF32 use of cuDNN convolutions and matrix products on a GPU."""
    if device.type != "cuda":
        return "fp32: full fp32"
    conv = "TF32" if torch.backends.cudnn.allow_tf32 else "fp32"
    matmul = "TF32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"
    return f"fp32: cuDNN convolutions in {conv}, matrix products in {matmul} (torch's defaults)"


def bench(config: dict, batches: list[int], device: torch.device, calls: int) -> dict[int, dict[str, float]]:
    """``{batch: {mode: calls/s}}`` (``nan`` where a mode fails on this device; the error is printed)."""
    unet = build_unet(config, device)
    results: dict[int, dict[str, float]] = {}
    for batch in batches:
        args = inputs(config, batch, device)
        results[batch] = {}
        for mode in MODES:
            try:
                results[batch][mode] = calls_per_second(unet, args, mode, device, calls)
            except (RuntimeError, NotImplementedError) as error:  # e.g. an fp16 kernel missing on the CPU
                print(f"  batch {batch} {mode}: failed on {device.type}: {str(error).splitlines()[0][:120]}")
                results[batch][mode] = float("nan")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def report(results: dict[int, dict[str, float]], label: str) -> None:
    """The table of calls/s and images/s, fp16/fp32 ratios, batch scaling, and one SUMMARY line."""
    print(f"{'batch':>5} {'mode':>14} {'calls/s':>9} {'images/s':>9} {'vs fp32':>8} {'images/s vs batch 1':>20}")
    first = min(results)
    for batch, row in results.items():
        for mode in MODES:
            rate = row[mode]
            scaling = (rate * batch) / (results[first][mode] * first)
            print(f"{batch:5d} {mode:>14} {rate:9.2f} {rate * batch:9.1f} {rate / row['fp32']:7.2f}x "
                  f"{scaling:19.2f}x")
    batch = max(results)
    row = results[batch]
    best16 = max(row["fp16 autocast"], row["fp16 weights"])
    print(f"SUMMARY unet {label}, batch {batch}: fp16 weights {row['fp16 weights']:.2f} calls/s, fp16 autocast "
          f"{row['fp16 autocast']:.2f} calls/s, fp32 {row['fp32']:.2f} calls/s; best fp16/fp32 "
          f"{best16 / row['fp32']:.2f}x; fp16 weights {row['fp16 weights'] * batch:.1f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width-reduced UNet on 16x16 latents (seconds on a CPU)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,8,32; --quick 1,4)")
    parser.add_argument("--calls", type=int, default=None, help="timed calls per batch and mode (default 5; --quick 3)")
    parser.add_argument("--threads", type=int, default=1)
    add_device_argument(parser)
    args = parser.parse_args()
    device = bench_device(args.device)
    torch.set_num_threads(args.threads)
    config = QUICK_UNET if args.quick else SD21_BASE_UNET
    batches = [int(b) for b in (args.batches or ("1,4" if args.quick else "1,8,32")).split(",")]
    calls = args.calls or (3 if args.quick else 5)
    size = config["sample_size"]
    label = ("QUICK width-reduced UNet (block_out_channels (32, 64), 2 levels, cross-attention 64)" if args.quick
             else "SD 2.1-base size")
    unet_params = sum(p.numel() for p in build_unet(config, torch.device("meta")).parameters())
    print(f"UNet2DConditionModel, {label}: {unet_params / 1e6:.1f} M parameters, latent "
          f"{config['in_channels']}x{size}x{size}, text context {SD21_TEXT_TOKENS}x{config['cross_attention_dim']}; "
          f"batches {batches}, {calls} timed calls each; {device_label(device)}, {args.threads} CPU thread(s)")
    print(fp32_note(device))
    report(bench(config, batches, device, calls), label)


if __name__ == "__main__":
    main()
