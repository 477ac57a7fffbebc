"""Information-decomposition heatmaps (Info-Decomp): stacked denoiser calls, the call bound, estimator spread, and
what common random numbers save. One process, one tiny_t2i (random-init unless ``--model-path``), same draws.

Prints a dated markdown table of:
  (a) ``info_cmi`` with images, both conditions and draws stacked in calls of ``--chunk`` rows vs one UNet call
      per condition and per draw (on the batch's images), as the authors' loop runs; equal draws, equal maps
      (target >= 2x on CPU);
  (b) seconds per heatmap vs the bound: (draws x conditions x images) rows in calls of the same size, each call
      timed alone on fixed inputs (target <= 1.2);
  (c) the standard deviation of the image-level ``i^o`` and ``i^s`` over repeated draws of one fixed image at
      10 / 50 / 100 draws (seed §2.2: ``i^s`` has the higher variance);
  (d) the variance ratio of a CMI difference (word swap: ``i(x; red|c) − i(x; blue|c)`` against one context)
      with shared draws (one ``pointwise_information_many`` call) vs independent draws (two calls): the factor
      of draws common random numbers save at a fixed ranking error.
``--quick``: 16 px, fewer repeats (< 1 min on 2 CPU cores). ``--device cuda`` runs every side on the GPU.
"""

from __future__ import annotations

import argparse
import datetime
import math
import time

import torch
from _t2i_bench import add_tiny_t2i_arguments, build_tiny_t2i, call_bound  # noqa: E402
from _timing import add_device_argument, bench_device, best_time, device_label  # noqa: E402

from xattr.data.shapes_captions import ShapesCaptionsDataset
from xattr.info.channel import noise_channel
from xattr.info.logsnr import TruncatedLogistic
from xattr.info.pointwise import pixel_map, pointwise_information, pointwise_information_many
from xattr.methods.info_cmi import InfoCMI

DEVICE = torch.device("cpu")  # set from --device in main()


def per_call_cmi(model, latent, cond, ref, n_draws, generator, sampler):
    """The authors' loop: for each draw, one UNet call per condition on the batch's images; the same draws
    (α for every (draw, image) first, then ε draw by draw) as :func:`pointwise_information`. ``[B,C,h,w]``."""
    b = latent.shape[0]
    logsnr = sampler.sample((n_draws, b), generator=generator, dtype=latent.dtype, device=latent.device)
    weight = sampler.importance_weight(logsnr) / n_draws
    i_o = torch.zeros_like(latent)
    for n in range(n_draws):
        eps = torch.randn(latent.shape, generator=generator, dtype=latent.dtype, device=latent.device)
        alpha = logsnr[n]
        z = noise_channel(latent, alpha.view(b, 1, 1, 1), eps)
        hat_cond = model.eps(z, alpha, cond)
        hat_ref = model.eps(z, alpha, ref)
        i_o += weight[n].view(b, 1, 1, 1) * (hat_cond - hat_ref).pow(2)
    return 0.5 * i_o


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 px, 20 draws in (a)/(b), 8 repeats in (c)/(d)")
    parser.add_argument("--images", type=int, default=4, help="images per heatmap batch in (a)/(b)")
    parser.add_argument("--draws", type=int, default=100, help="draws per image in (a)/(b) (the authors' 100)")
    parser.add_argument("--chunk", type=int, default=32, help="rows per stacked UNet call (info_cmi's default)")
    parser.add_argument("--repeats", type=int, default=20, help="repeated estimates in (c)/(d)")
    add_tiny_t2i_arguments(parser)
    add_device_argument(parser)
    args = parser.parse_args()
    DEVICE = bench_device(args.device)
    if args.quick:
        args.size, args.draws, args.repeats = 16, 20, 8
    torch.set_num_threads(args.threads)
    model, kind = build_tiny_t2i(args.size, args.model_path, DEVICE)
    size = model.image_size[0]
    data = ShapesCaptionsDataset("test", n_samples=args.images, image_size=size, words="nouns")
    samples = [data[i] for i in range(args.images)]
    x = torch.stack([s["image"] for s in samples]).to(DEVICE)
    prompts, words = [s["caption"] for s in samples], [s["word"] for s in samples]
    b, n_draws = x.shape[0], args.draws
    rows = []
    print(f"bench_infodecomp: tiny_t2i {kind} {size}px, {b} images x {n_draws} draws x 2 conditions, chunk "
          f"{args.chunk} rows, {args.threads} thread(s), {device_label(DEVICE)}")

    # (a) stacked vs one call per condition and draw, same draws, same maps
    method = InfoCMI(model, n_draws=n_draws, chunk_size=args.chunk, seed=0)
    with torch.no_grad():
        latent = model.encode_image(x)
        cond, ref = method.conditions(prompts, words)
        embeds = model.encode_prompt(cond + ref)
    cond_e, ref_e = embeds[:b], embeds[b:]

    def stacked():
        torch.manual_seed(0)
        return method.attribute(x, prompts, words)

    def looped():
        with torch.no_grad():
            torch.manual_seed(0)
            generator = torch.Generator(device=DEVICE).manual_seed(0)
            return pixel_map(per_call_cmi(model, latent, cond_e, ref_e, n_draws, generator, TruncatedLogistic()))

    with torch.no_grad():  # the same draws on both sides: the maps agree
        g1 = torch.Generator(device=DEVICE).manual_seed(5)
        g2 = torch.Generator(device=DEVICE).manual_seed(5)
        ours = pixel_map(pointwise_information(model.eps, latent, cond_e, ref_e, n_draws=n_draws, generator=g1,
                                               chunk_size=args.chunk)["i_o_map"])
        theirs = pixel_map(per_call_cmi(model, latent, cond_e, ref_e, n_draws, g2, TruncatedLogistic()))
    agree = float((ours - theirs).abs().max() / theirs.abs().max())
    t_stacked, _ = best_time(stacked, 2, clock=time.process_time, warmup=True, device=DEVICE)
    t_looped, _ = best_time(looped, 2, clock=time.process_time, warmup=False, device=DEVICE)
    rows.append(("(a) one call per condition and draw / stacked", f"{t_looped / t_stacked:.2f}x", ">= 2x",
                 f"{t_stacked / b:.3f} vs {t_looped / b:.3f} s/heatmap; maps agree to {agree:.1e} (relative)"))

    # (b) seconds per heatmap vs the bound: the same rows in calls of the same size, each call alone
    total = b * 2 * n_draws
    per_call = max(1, args.chunk // (2 * b)) * 2 * b      # pointwise rounds a chunk down to whole draws
    calls = [per_call] * (total // per_call) + ([total % per_call] if total % per_call else [])
    bound = call_bound(model, calls, embeds, DEVICE)
    rows.append(("(b) s/heatmap / bound (draws x conditions denoiser rows)", f"{t_stacked / bound:.2f}",
                 "<= 1.2", f"{t_stacked / b:.3f} s/heatmap vs {bound / b:.3f} s bound ({len(calls)} calls of "
                 f"<= {per_call} rows)"))

    # (c) i^o vs i^s spread on one fixed image
    x0, p0, w0 = x[:1], prompts[:1], words[:1]
    for draws in (10, 50, 100):
        values = {"i_o": [], "i_s": []}
        spread = InfoCMI(model, n_draws=draws, chunk_size=args.chunk)
        for r in range(args.repeats):
            torch.manual_seed(1000 + r)
            spread.attribute(x0, p0, w0)
            for key in values:
                values[key].append(float(spread.diagnostics()[key][0]))
        sd = {key: torch.tensor(v).std().item() for key, v in values.items()}
        mean = {key: torch.tensor(v).mean().item() for key, v in values.items()}
        rows.append((f"(c) sd(i^s) / sd(i^o), {draws} draws", f"{sd['i_s'] / sd['i_o']:.1f}", "> 1",
                     f"i^o {mean['i_o']:.3f} +- {sd['i_o']:.3f}, i^s {mean['i_s']:.3f} +- {sd['i_s']:.3f} nats "
                     f"({args.repeats} repeats)"))

    # (d) common random numbers: variance of a word-swap CMI difference, shared vs independent draws
    caption = prompts[0]
    colour = next((c for c in ("red", "green", "blue", "yellow", "purple", "white") if f" {c} " in f" {caption} "),
                  None)
    if colour is None:
        caption, colour = "a red star", "red"
    other = "blue" if colour != "blue" else "red"
    swapped = f" {caption} ".replace(f" {colour} ", f" {other} ", 1).strip()
    context = method.conditions([caption], [colour])[1][0]
    draws_d = 20 if args.quick else 50
    with torch.no_grad():
        e = model.encode_prompt([caption, swapped, context])
        conds, ctx = torch.stack([e[0], e[1]])[None], e[2:3]
        shared, independent = [], []
        for r in range(args.repeats):
            g = torch.Generator(device=DEVICE).manual_seed(2000 + r)
            out = pointwise_information_many(model.eps, latent[:1], conds, ctx, n_draws=draws_d, generator=g,
                                             chunk_size=args.chunk)["i_o"][0]
            shared.append(float(out[0] - out[1]))
            ga = torch.Generator(device=DEVICE).manual_seed(3000 + r)
            gb = torch.Generator(device=DEVICE).manual_seed(4000 + r)
            first = pointwise_information(model.eps, latent[:1], e[0:1], ctx, n_draws=draws_d, generator=ga)["i_o"]
            second = pointwise_information(model.eps, latent[:1], e[1:2], ctx, n_draws=draws_d, generator=gb)["i_o"]
            independent.append(float(first - second))
    var_shared, var_indep = torch.tensor(shared).var().item(), torch.tensor(independent).var().item()
    ratio = var_indep / var_shared if var_shared > 0 else math.inf
    rows.append(("(d) var(independent) / var(shared) of a CMI difference", f"{ratio:.1f}", "> 1",
                 f"i(x;{colour}|c) - i(x;{other}|c), {draws_d} draws, {args.repeats} repeats: the factor of draws "
                 "shared draws save at equal error"))

    print(f"\n### bench_infodecomp ({datetime.date.today().isoformat()}, {kind} {size}px, {device_label(DEVICE)})\n")
    print("| measure | value | target | detail |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
