"""Prompt intervention (Info-Decomp §3.3, Fig. 3 / Table 4): does a word's CMI predict what omitting it changes?

For each (image, caption, word) sample, with ``S`` = :func:`xattr.info.ode.karras_sigmas` (``n`` = 100, ρ = 7,
the model's σ range) and the Heun solver of :mod:`xattr.info.ode` (Karras et al. 2022, Alg. 1, no guidance):

1. ``x_max = invert(z₀ | caption)``: the clean latent (``encode_image``) up to ``s_max`` under its caption;
2. regenerate down from the same ``x_max`` under (a) the caption, (b) the caption with the word omitted (deleted
   as a whole word — the CMI's own context ``c``; the authors' intervention script writes ``_`` instead:
   ``omit="underscore"``), (c) the word swapped (:data:`PAPER_SWAPS` at paper scale, :func:`shapes_swap` at
   tiny scale); images without a swap partner get no (c);
3. reconstruction PSNR of (a) against ``z₀``, both decoded (``decode_latent``, [0,1]; the ODE's error, not the
   VAE's); change map ``Δ_j = Σ_channels (a − b)²_j`` on the latent grid (64×64 for SD 2.1);
4. the word's CMI ``i(x; y|c)`` (:class:`xattr.methods.info_cmi.InfoCMI`: image-level ``i^s`` and ``i^o``, the
   pixel map of its ``estimator``) and its attention: DAAM's aggregation (:class:`~xattr.methods._text_image.
   CrossAttentionTrace`) traced during regeneration (a), "the attention corresponding to a certain word during
   generation" (§3.3), on the latent grid; for swaps the difference of CMIs ``i(x; y|c) − i(x; y'|c)`` on common
   draws (the same generator seed; the context of both is ``c``).

Table 4: **image level** Pearson r across samples between ``ΣΔ`` and the CMI (the authors: ``i^s``; ``i^o`` too)
or ``Σ attention``; **pixel level** Pearson r per sample between ``Δ`` and the CMI / attention map, averaged
(samples whose maps are constant are left out and counted). Error bars: the std over ``bootstrap`` = 100 seeded
resamples of ``fraction`` = 90% of the samples without replacement (the authors' protocol, notes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from xattr.errors import XattrError
from xattr.info.ode import generate, invert, karras_sigmas, sigma_range
from xattr.info.pointwise import pixel_map
from xattr.methods._text_image import CrossAttentionTrace, trace_cross_attention, word_token_positions
from xattr.utils.seed import make_generator
from xattr.utils.text import contains_word, remove_word, replace_word

#: the paper's swap dictionary (§3.3 / App. C.5 and the authors' script), both directions, with plurals
_PAIRS = [("dog", "cat"), ("zebra", "horse"), ("bed", "table"), ("bear", "elephant"), ("airplane", "kite"),
          ("person", "monkey"), ("teddy bear", "robot"), ("dogs", "cats"), ("zebras", "horses"), ("beds", "tables"),
          ("bears", "elephants"), ("airplanes", "kites"), ("people", "monkeys"), ("persons", "monkeys"),
          ("teddy bears", "robots")]
PAPER_SWAPS: dict[str, str] = {**{a: b for a, b in _PAIRS}, **{b: a for a, b in _PAIRS if b != "monkeys"},
                               "monkeys": "people"}
OMIT = ("delete", "underscore")
#: Table 4's metrics, as written to summary.csv and xattr/paper/infodecomp.csv
IMAGE_METRIC, PIXEL_METRIC = "image_pearson", "pixel_pearson"


@dataclass(frozen=True)
class InterventionSettings:
    """The protocol's knobs (defaults: the paper's, module docstring)."""

    n: int = 100                 # Karras noise levels (Heun steps per direction: n − 1)
    rho: float = 7.0
    omit: str = "delete"         # delete | underscore (the authors' intervention script)
    include_mid: bool = False    # DAAM skips the mid block's cross-attention
    bootstrap: int = 100
    fraction: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if self.omit not in OMIT:
            raise XattrError(f"omit={self.omit!r} is not one of {', '.join(OMIT)}")
        if int(self.n) < 2:
            raise XattrError(f"n={self.n} noise levels; needs at least 2 (the paper: 100)")
        if not 0 < self.fraction <= 1 or int(self.bootstrap) < 1:
            raise XattrError(f"bootstrap={self.bootstrap}, fraction={self.fraction}: need >= 1 resamples and a "
                             "fraction in (0, 1] (the authors: 100 and 0.9)")


# --------------------------------------------------------------------------- prompts

def omitted_caption(caption: str, word: str, omit: str = "delete") -> str:
    """(b): the caption without ``word`` (whole word): deleted (= the CMI's context) or replaced by ``_``."""
    return remove_word(caption, word) if omit == "delete" else replace_word(caption, word, "_")


def paper_swap(caption: str, word: str) -> str | None:
    """The partner of ``word`` in :data:`PAPER_SWAPS` (``None``: none, or it already occurs in the caption)."""
    new = PAPER_SWAPS.get(word.lower())
    return None if new is None or contains_word(caption, new) else new


def shapes_swap(caption: str, word: str) -> str | None:
    """Tiny scale: a shape noun → the next shape of ``CLASS_NAMES`` (cyclic) not in the caption; a colour → the
    next colour not in it; other words (size, relation) → ``None``."""
    from xattr.data.shapes_captions import CLASS_NAMES, COLOURS

    for group in (tuple(CLASS_NAMES), tuple(COLOURS)):
        if word in group:
            at = group.index(word)
            for k in range(1, len(group)):
                new = group[(at + k) % len(group)]
                if not contains_word(caption, new):
                    return new
    return None


# --------------------------------------------------------------------------- one batch

def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [0,1], ``[B]``."""
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-20)
    return -10 * torch.log10(mse)


@torch.no_grad()
def intervene(model, cmi, x: torch.Tensor, captions: Sequence[str], words: Sequence[str],
              swaps: Sequence[str | None], settings: InterventionSettings = InterventionSettings(),
              generator_seed: int = 0) -> dict[str, torch.Tensor | list]:
    """Steps 1–4 of the module docstring for a batch of ``B`` samples.

    Args:
        model: a :class:`~xattr.models.text_to_image.TextToImageModel`.
        cmi: an :class:`~xattr.methods.info_cmi.InfoCMI` on ``model`` (its draws, log-SNR law and estimator).
        x: ``[B,3,H,W]`` in [0,1]; ``captions``, ``words``: ``B`` strings; ``swaps``: ``B`` partners or ``None``.
        generator_seed: seeds the CMI draws (the same for the word and its swap: common random numbers).

    Returns (CPU, float32): ``z0``, ``reconstruction``, ``omitted``, ``swapped`` ``[B,*latent]`` (``swapped`` rows
    without a swap equal the reconstruction); ``change``, ``swap_change``, ``cmi_map``, ``swap_cmi_map`` (``y``'s
    map minus ``y'``'s), ``attention`` ``[B,h,w]``; ``psnr``, ``cmi_i_s``, ``cmi_i_o``, ``swap_i_s``, ``swap_i_o``
    ``[B]`` (``nan`` without a swap); the prompts ``omitted_captions``, ``swapped_captions``.
    """
    b = x.shape[0]
    captions, words, swaps = list(captions), list(words), list(swaps)
    omitted = [omitted_caption(c, w, settings.omit) for c, w in zip(captions, words, strict=True)]
    swapped = [replace_word(c, w, s) if s else c for c, w, s in zip(captions, words, swaps, strict=True)]
    positions = [word_token_positions(model.tokenizer, c, w, name="intervention") for c, w in zip(captions, words)]
    sigmas = karras_sigmas(settings.n, *sigma_range(model.logsnr_range), rho=settings.rho)

    z0 = model.encode_image(x)
    embeds = model.encode_prompt(captions + omitted + swapped)
    caption_embeds, edit_embeds = embeds[:b], embeds[b:]
    x_max = invert(z0, lambda z, a: model.eps(z, a, caption_embeds), sigmas)

    trace = CrossAttentionTrace(b, tuple(z0.shape[-2:]))

    def traced_eps(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        trace.begin_call()
        return model.eps(z, a, caption_embeds)

    with trace_cross_attention(model.unet, trace, settings.include_mid):
        reconstruction = generate(x_max, traced_eps, sigmas)                              # (a)
    edits = generate(torch.cat([x_max, x_max]), lambda z, a: model.eps(z, a, edit_embeds), sigmas)
    omitted_z, swapped_z = edits[:b], edits[b:]                                            # (b), (c)
    attention = torch.stack([trace.word_map(i, positions[i]) for i in range(b)])

    has_swap = torch.tensor([s is not None for s in swaps])
    info = cmi.information(x, captions, words, generator=make_generator(generator_seed, z0.device))
    estimator = cmi.estimator
    swap_i = {key: torch.full((b,), math.nan) for key in ("i_s", "i_o")}
    swap_map = torch.zeros(b, *z0.shape[-2:])
    if bool(has_swap.any()):  # every row, on the same draws as the word's (rows without a swap are dropped)
        other = cmi.information(x, swapped, [s or w for s, w in zip(swaps, words)],
                                generator=make_generator(generator_seed, z0.device))
        rows = has_swap.to(z0.device)
        for key in ("i_s", "i_o"):
            swap_i[key] = torch.where(rows, info[key] - other[key], torch.nan).float().cpu()
        difference = pixel_map(info[f"{estimator}_map"]) - pixel_map(other[f"{estimator}_map"])
        swap_map = (difference[:, 0] * rows[:, None, None]).float().cpu()

    decoded_rec, decoded_z0 = model.decode_latent(reconstruction), model.decode_latent(z0)
    cpu = {"z0": z0, "reconstruction": reconstruction, "omitted": omitted_z, "swapped": swapped_z,
           "change": ((reconstruction - omitted_z) ** 2).sum(1),
           "swap_change": ((reconstruction - swapped_z) ** 2).sum(1) * has_swap.to(z0.device)[:, None, None],
           "cmi_map": pixel_map(info[f"{estimator}_map"])[:, 0], "attention": attention,
           "psnr": _psnr(decoded_rec, decoded_z0),
           "cmi_i_s": info["i_s"], "cmi_i_o": info["i_o"]}
    out: dict[str, torch.Tensor | list] = {k: v.detach().float().cpu() for k, v in cpu.items()}
    out.update(swap_i_s=swap_i["i_s"], swap_i_o=swap_i["i_o"], swap_cmi_map=swap_map,
               omitted_captions=omitted, swapped_captions=[s if w else None for s, w in zip(swapped, swaps)])
    return out


# --------------------------------------------------------------------------- statistics

def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two flat arrays; ``nan`` when either is constant or there are fewer than 2 finite pairs."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 2:
        return math.nan
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else math.nan


def pixel_pearsons(change: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Per sample Pearson r between ``change`` and ``maps`` (``[N,h,w]`` each), ``[N]`` (``nan``: constant map)."""
    return np.array([pearson(c, m) for c, m in zip(change, maps, strict=True)])


def bootstrap_resamples(n: int, settings: InterventionSettings) -> list[np.ndarray]:
    """``bootstrap`` index sets of ``round(fraction·n)`` samples drawn without replacement (seeded)."""
    rng = np.random.default_rng(settings.seed)
    size = max(2, int(round(settings.fraction * n)))
    return [np.sort(rng.choice(n, size=min(size, n), replace=False)) for _ in range(settings.bootstrap)]


def image_level(change_sum: np.ndarray, score: np.ndarray, settings: InterventionSettings) -> tuple[float, float, int]:
    """(r over all samples, std of r over the resamples, samples used) between two ``[N]`` arrays."""
    keep = np.isfinite(change_sum) & np.isfinite(score)
    a, b = change_sum[keep], score[keep]
    values = [pearson(a[i], b[i]) for i in bootstrap_resamples(a.size, settings)] if a.size >= 2 else [math.nan]
    return pearson(a, b), float(np.nanstd(values)), int(a.size)


def pixel_level(per_sample: np.ndarray, settings: InterventionSettings) -> tuple[float, float, int]:
    """(mean of the finite per-sample r, std of that mean over the resamples, samples used)."""
    finite = per_sample[np.isfinite(per_sample)]
    if not finite.size:
        return math.nan, math.nan, 0
    values = [float(finite[i].mean()) for i in bootstrap_resamples(finite.size, settings)]
    return float(finite.mean()), float(np.std(values)), int(finite.size)


def table4(per_image, settings: InterventionSettings) -> list[dict]:
    """Rows ``method, metric, mean, std, n`` from the per-sample frame (:func:`per_image_frame`'s columns)."""
    rows = []
    change = per_image["change_sum"].to_numpy()
    swap_change = per_image["swap_change_sum"].to_numpy()
    entries = [("info_cmi", IMAGE_METRIC, image_level(change, per_image["cmi_i_s"].to_numpy(), settings)),
               ("info_cmi", f"{IMAGE_METRIC}_i_o", image_level(change, per_image["cmi_i_o"].to_numpy(), settings)),
               ("info_cmi", PIXEL_METRIC, pixel_level(per_image["pixel_r_cmi"].to_numpy(), settings)),
               ("attention", IMAGE_METRIC, image_level(change, per_image["attention_sum"].to_numpy(), settings)),
               ("attention", PIXEL_METRIC, pixel_level(per_image["pixel_r_attention"].to_numpy(), settings)),
               ("info_cmi", f"swap_{IMAGE_METRIC}", image_level(swap_change, per_image["swap_i_s"].to_numpy(), settings)),
               ("info_cmi", f"swap_{IMAGE_METRIC}_i_o",
                image_level(swap_change, per_image["swap_i_o"].to_numpy(), settings)),
               ("info_cmi", f"swap_{PIXEL_METRIC}", pixel_level(per_image["swap_pixel_r_cmi"].to_numpy(), settings)),
               ("attention", f"swap_{IMAGE_METRIC}",
                image_level(swap_change, np.where(np.isfinite(per_image["swap_i_s"].to_numpy()),
                                                  per_image["attention_sum"].to_numpy(), np.nan), settings)),
               ("attention", f"swap_{PIXEL_METRIC}", pixel_level(per_image["swap_pixel_r_attention"].to_numpy(),
                                                                 settings)),
               ("reconstruction", "psnr", (float(per_image["psnr"].mean()), float(per_image["psnr"].std(ddof=0)),
                                           int(per_image["psnr"].notna().sum())))]
    for method, metric, (mean, std, n) in entries:
        rows.append({"method": method, "metric": metric, "mean": mean, "std": std, "n": n})
    return rows


def per_image_rows(batch: dict, ids: Sequence[str], captions: Sequence[str], words: Sequence[str],
                   swaps: Sequence[str | None]) -> list[dict]:
    """One dict per sample of a batch from :func:`intervene`'s output (the columns of ``per_image.csv``)."""
    change, attention, cmi_map = batch["change"].numpy(), batch["attention"].numpy(), batch["cmi_map"].numpy()
    swap_change, swap_map = batch["swap_change"].numpy(), batch["swap_cmi_map"].numpy()
    rows = []
    for i, sample_id in enumerate(ids):
        has_swap = swaps[i] is not None
        rows.append({
            "id": sample_id, "caption": captions[i], "word": words[i], "omitted_caption": batch["omitted_captions"][i],
            "swap": swaps[i] or "", "swapped_caption": batch["swapped_captions"][i] or "",
            "psnr": float(batch["psnr"][i]), "change_sum": float(change[i].sum()),
            "swap_change_sum": float(swap_change[i].sum()) if has_swap else math.nan,
            "cmi_i_s": float(batch["cmi_i_s"][i]), "cmi_i_o": float(batch["cmi_i_o"][i]),
            "swap_i_s": float(batch["swap_i_s"][i]), "swap_i_o": float(batch["swap_i_o"][i]),
            "attention_sum": float(attention[i].sum()),
            "pixel_r_cmi": pearson(change[i], cmi_map[i]), "pixel_r_attention": pearson(change[i], attention[i]),
            "swap_pixel_r_cmi": pearson(swap_change[i], swap_map[i]) if has_swap else math.nan,
            "swap_pixel_r_attention": pearson(swap_change[i], attention[i]) if has_swap else math.nan})
    return rows


# --------------------------------------------------------------------------- the experiment and its files

def _heat(array: np.ndarray) -> np.ndarray:
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def intervention_figure(images: np.ndarray, omitted: np.ndarray, change: np.ndarray, cmi: np.ndarray,
                        attention: np.ndarray, titles: Sequence[str]):
    """Fig. 3: rows = samples; columns original, regenerated with the word omitted, change map, CMI, attention
    (maps min–max normalised per panel). ``images``/``omitted`` ``[K,H,W,3]`` in [0,1], maps ``[K,h,w]``."""
    from xattr.utils.figures import agg_figure

    k = len(images)
    figure = agg_figure(figsize=(10, 2.2 * k + 0.3))
    names = ["original", "word omitted", "change Σ(a−b)²", "CMI i(x;y|c)", "attention (DAAM)"]
    for row in range(k):
        panels = [images[row], omitted[row], _heat(change[row]), _heat(cmi[row]), _heat(attention[row])]
        for col, panel in enumerate(panels):
            axis = figure.add_subplot(k, 5, row * 5 + col + 1)
            axis.imshow(panel, cmap=None if panel.ndim == 3 else "inferno", interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(names[col], fontsize=8)
            if col == 0:
                axis.set_xlabel(titles[row][:48], fontsize=6)
    figure.tight_layout()
    return figure


def run_intervention(model, cmi, dataset, out_dir, *, settings: InterventionSettings = InterventionSettings(),
                     swap: str = "shapes", names: dict[str, str] | None = None, batch_size: int = 10,
                     n_figure: int = 4, config: dict | None = None, paper_rows=None, progress: bool = True):
    """The experiment on every sample of ``dataset`` (``image``, ``caption``, ``word``, ``id``); writes into
    ``out_dir``: ``per_image.csv``, ``maps.npz`` (the latent-grid maps), ``figures/intervention.png``,
    ``table4.csv`` / ``intervention.md`` (with ``paper_rows``: the paper's ``method, metric, mean`` side by
    side), and one run folder per method (``info_cmi/``, ``attention/``, ``reconstruction/``: ``summary.csv``
    with the bootstrap std as ``std``, ``manifest.json``, ``DONE``) for ``xattr report``. Returns the Table 4
    frame (``method, metric, mean, std, n``)."""
    from pathlib import Path

    import pandas as pd
    from tqdm.auto import tqdm

    from xattr.utils.io import (
        atomic_save_dataframe,
        atomic_save_npz,
        atomic_savefig,
    )

    if swap not in ("shapes", "paper", "none"):
        raise XattrError(f"swap={swap!r} is not one of shapes, paper, none")
    swap_of = {"shapes": shapes_swap, "paper": paper_swap, "none": lambda caption, word: None}[swap]
    names = dict(names or {"model": getattr(model.spec, "name", "model"), "dataset": "dataset"})
    out = Path(out_dir)
    n = len(dataset)
    if n < 3:
        raise XattrError(f"prompt intervention on {n} samples: correlations need at least 3; raise the sample count")
    rows, stored, figure_rows = [], {k: [] for k in ("change", "cmi_map", "attention", "swap_change", "swap_cmi_map")}, []
    for start in tqdm(range(0, n, batch_size), desc="intervention", unit="batch", disable=not progress):
        samples = [dataset[i] for i in range(start, min(start + batch_size, n))]
        x = torch.stack([s["image"] for s in samples])
        captions, words = [s["caption"] for s in samples], [s["word"] for s in samples]
        empty = [c for c, w in zip(captions, words) if not w]
        if empty:
            raise XattrError(f"sample with caption {empty[0]!r} has no word; use dataset.words=nouns (or adjectives)")
        swaps = [swap_of(c, w) for c, w in zip(captions, words)]
        batch = intervene(model, cmi, x, captions, words, swaps, settings, generator_seed=settings.seed + start)
        rows += per_image_rows(batch, [str(s["id"]) for s in samples], captions, words, swaps)
        for key in stored:
            stored[key].append(batch[key].numpy())
        for i in range(len(samples)):
            if len(figure_rows) < n_figure:
                decoded = model.decode_latent(torch.stack([batch["z0"][i], batch["omitted"][i]]))
                figure_rows.append((decoded[0].permute(1, 2, 0).numpy(), decoded[1].permute(1, 2, 0).numpy(),
                                    batch["change"][i].numpy(), batch["cmi_map"][i].numpy(),
                                    batch["attention"][i].numpy(), f"{words[i]}: {captions[i]}"))
    per_image = pd.DataFrame(rows)
    atomic_save_dataframe(out / "per_image.csv", per_image)
    atomic_save_npz(out / "maps.npz", {**{k: np.concatenate(v) for k, v in stored.items()},
                                       "ids": per_image["id"].to_numpy(dtype=str)})
    if figure_rows:
        columns = list(zip(*figure_rows))
        figure = intervention_figure(*(np.stack(c) for c in columns[:5]), columns[5])
        atomic_savefig(out / "figures" / "intervention.png", figure, dpi=120)

    recorded = {"config": {**(config or {}), "settings": asdict(settings), "swap": swap, "names": names},
                "dataset": {"name": names["dataset"], "n": n}, "selection": per_image["id"].tolist()}
    return write_intervention_report(out, per_image, settings, names, recorded, paper_rows)


def write_intervention_report(out_dir, per_image, settings: InterventionSettings, names: dict[str, str],
                              recorded: dict, paper_rows=None):
    """Table 4 from the per-sample frame (``per_image.csv``'s columns) into ``out_dir``: ``table4.csv``,
    ``table4_paired.csv`` (:func:`paired_differences`), ``intervention.md`` and one run folder per method
    (``recorded`` goes to each ``manifest.json``). Returns the Table 4 frame. ``scripts/infodecomp_intervention.py
    --report-only`` re-runs this on a finished run's ``per_image.csv``."""
    import datetime
    from pathlib import Path

    import pandas as pd

    from xattr.runs.writers import SUMMARY_COLUMNS, markdown_table
    from xattr.utils.io import atomic_save_dataframe, atomic_write_json, atomic_write_text

    out = Path(out_dir)
    table = pd.DataFrame(table4(per_image, settings))
    table.insert(1, "model", names["model"])
    table.insert(2, "dataset", names["dataset"])
    paired = pd.DataFrame(paired_differences(per_image, settings))
    atomic_save_dataframe(out / "table4.csv", table)
    atomic_save_dataframe(out / "table4_paired.csv", paired)
    for method, part in table.groupby("method", sort=False):
        folder = out / str(method)
        summary = part[SUMMARY_COLUMNS]
        atomic_save_dataframe(folder / "summary.csv", summary)
        atomic_write_text(folder / "summary.md", f"# {method}: prompt intervention (Info-Decomp Table 4)\n\n"
                          "std: over the bootstrap resamples (not over samples)\n\n" + markdown_table(summary, 4))
        atomic_write_json(folder / "manifest.json", recorded)
        atomic_write_text(folder / "DONE", "complete\n")
    atomic_write_text(out / "intervention.md", intervention_markdown(table, paper_rows, settings, names, len(per_image),
                                                                     datetime.date.today().isoformat(), paired))
    return table


def paired_differences(per_image, settings: InterventionSettings, resamples: int = 1000) -> list[dict]:
    """CMI − attention on the same samples: image level ``r(ΣΔ, CMI) − r(ΣΔ, Σ attention)`` (CMI by ``i^s`` and
    by ``i^o``) with the std over ``resamples`` bootstrap resamples **with** replacement (seed ``settings.seed``;
    the standard error of the difference, unlike the authors' 90% subsamples, whose std is about a third of it),
    and pixel level the mean of the per-sample ``r_cmi − r_attention`` ± its standard error. Rows
    ``comparison, metric, difference, se, share_positive, n``."""
    change = per_image["change_sum"].to_numpy(dtype=np.float64)
    attention = per_image["attention_sum"].to_numpy(dtype=np.float64)
    rng = np.random.default_rng(settings.seed)
    rows = []
    for metric, column in ((IMAGE_METRIC, "cmi_i_s"), (f"{IMAGE_METRIC}_i_o", "cmi_i_o")):
        score = per_image[column].to_numpy(dtype=np.float64)
        keep = np.isfinite(change) & np.isfinite(score) & np.isfinite(attention)
        a, b, c = change[keep], score[keep], attention[keep]
        if a.size < 3:
            continue
        draws = [rng.integers(0, a.size, a.size) for _ in range(resamples)]
        values = np.array([pearson(a[i], b[i]) - pearson(a[i], c[i]) for i in draws])
        rows.append({"comparison": "info_cmi − attention", "metric": metric,
                     "difference": pearson(a, b) - pearson(a, c), "se": float(np.nanstd(values)),
                     "share_positive": float(np.nanmean(values > 0)), "n": int(a.size)})
    d = (per_image["pixel_r_cmi"] - per_image["pixel_r_attention"]).to_numpy(dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size >= 2:
        rows.append({"comparison": "info_cmi − attention", "metric": PIXEL_METRIC, "difference": float(d.mean()),
                     "se": float(d.std(ddof=1) / np.sqrt(d.size)), "share_positive": float(np.mean(d > 0)),
                     "n": int(d.size)})
    return rows


def intervention_markdown(table, paper_rows, settings: InterventionSettings, names: dict[str, str], n: int,
                          date: str, paired=None) -> str:
    """The report: Table 4 (ours ± bootstrap std, the paper's value), the swap rows, the PSNR and (``paired``,
    :func:`paired_differences`' frame) CMI − attention on the same samples."""
    paper = {}
    if paper_rows is not None:  # xattr.tasks.report.load_paper's frame (paper_mean) or a raw paper CSV (mean)
        column = "paper_mean" if "paper_mean" in paper_rows.columns else "mean"
        paper = {(m, k): float(v) for m, k, v in zip(paper_rows["method"], paper_rows["metric"], paper_rows[column])}

    def cell(mean: float, std: float) -> str:
        return "—" if not math.isfinite(mean) else f"{mean:.3f} ± {std:.3f}" if math.isfinite(std) else f"{mean:.3f}"

    lines = [f"# Prompt intervention (Info-Decomp Fig. 3 / Table 4) — {names['model']} on {names['dataset']}", "",
             f"{date}; N = {n} samples; Heun n = {settings.n} levels, ρ = {settings.rho}, omission = "
             f"{settings.omit}; ± = std over {settings.bootstrap} resamples of {settings.fraction:.0%} of the samples "
             f"(seed {settings.seed}); the paper's values are SD 2.1 on COCO100-IT.", "",
             "| method | metric | ours | n | paper (SD 2.1) |", "| --- | --- | --- | --- | --- |"]
    for row in table.itertuples():
        value = paper.get((row.method, row.metric))
        lines.append(f"| {row.method} | {row.metric} | {cell(row.mean, row.std)} | {row.n} | "
                     f"{'—' if value is None or not math.isfinite(value) else f'{value:.2f}'} |")
    lines += ["", "image_pearson: Pearson r across samples between the change's sum and the CMI (i^s; _i_o: i^o) or "
              "the attention's sum; pixel_pearson: per-sample r between the change map and the map, averaged; "
              "swap_*: the same for the word swapped (CMI: i(x;y|c) − i(x;y'|c)); psnr: the reconstruction "
              "(regenerated under the caption vs the clean latent, decoded), dB, ± std over samples."]
    if paired is not None and len(paired):
        lines += ["", "Paired CMI − attention on the same samples (image level: ± std over bootstrap resamples with "
                  "replacement, the standard error; pixel level: ± standard error of the per-sample difference):", "",
                  "| metric | CMI − attention | share of resamples / samples > 0 | n |", "| --- | --- | --- | --- |"]
        for row in paired.itertuples():
            lines.append(f"| {row.metric} | {row.difference:+.3f} ± {row.se:.3f} | {row.share_positive:.0%} | {row.n} |")
    return "\n".join(lines) + "\n"


__all__ = ["InterventionSettings", "PAPER_SWAPS", "OMIT", "omitted_caption", "paper_swap", "shapes_swap",
           "intervene", "pearson", "pixel_pearsons", "bootstrap_resamples", "image_level", "pixel_level", "table4",
           "paired_differences", "write_intervention_report",
           "per_image_rows", "intervention_figure", "run_intervention", "intervention_markdown"]
