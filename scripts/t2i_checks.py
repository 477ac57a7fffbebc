"""What the trained ``tiny_t2i`` learned, on held-out ``shapes_captions`` images (issue: Info-Decomp backbones).

1. **Conditional vs unconditional MMSE.** Per image, ``i^s(x; caption)`` (Eq. 5 of "Interpretable Diffusion
   via Information Decomposition") is half the log-SNR integral of ``mmse(x | "") − mmse(x | caption)``:
   its mean over images is the MMSE gap in nats (an estimate of ``I(X; caption)``). Also ``i^o`` and the
   share of images whose gap is positive.
2. **Caption retrieval.** For each image the true caption competes against one distractor of each kind:
   ``colour`` (one colour word replaced by another colour), ``shape`` (one shape noun replaced by another
   shape), ``relation`` (one relation word flipped: left↔right, above↔below) and ``other`` (the caption of
   another test image). Score ``i^o(x; candidate)`` (the paper's score) and ``i^s(x; candidate)`` (the
   log-likelihood ratio) against ``""``, all candidates on common draws; pairwise accuracy (true scores higher;
   chance 0.5) per kind, with a binomial standard error.
3. **Which object the noun's CMI map points at.** For (image, noun) samples of images with two or more objects,
   ``info_cmi``'s map density (mass per pixel) inside the named object over that inside the other objects, and
   how often the named object is the densest: a map that lights up every object scores ratio 1 and 1/n.

    python scripts/t2i_checks.py --images 100 --draws 64 --seed 0 --out outputs/t2i_checks

The model is the cached pipeline folder (``xattr train task=t2i dataset=shapes_captions``) unless ``--path``.
Writes ``checks.csv`` (one row per image) and ``checks.md``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("colour", "shape", "relation", "other")


def replace_one(words: list[str], choices: tuple[str, ...], rng: np.random.Generator) -> str | None:
    """The caption with one word of ``choices`` replaced by a different one of ``choices``; ``None`` if none."""
    spots = [i for i, w in enumerate(words) if w in choices]
    if not spots:
        return None
    at = spots[int(rng.integers(len(spots)))]
    new = list(words)
    new[at] = str(rng.choice([c for c in choices if c != words[at]]))
    return " ".join(new)


def distractors(caption: str, other: str, rng: np.random.Generator) -> dict[str, str | None]:
    from xattr.data.shapes import CLASS_NAMES
    from xattr.data.shapes_captions import COLOURS, OPPOSITE, tokenize

    words = tokenize(caption)
    flip = [i for i, w in enumerate(words) if w in OPPOSITE]
    relation = None
    if flip:
        at = flip[int(rng.integers(len(flip)))]
        relation = " ".join(OPPOSITE[w] if i == at else w for i, w in enumerate(words))
    return {"colour": replace_one(words, tuple(COLOURS), rng), "shape": replace_one(words, CLASS_NAMES, rng),
            "relation": relation, "other": other if other != caption else None}


def specificity(model, n_samples: int, draws: int, seed: int, batch: int):
    """Per (image, noun) sample of a multi-object test image: info_cmi density inside the named object / inside
    the other objects, and whether the named object is the densest (see the module docstring, 3)."""
    import pandas as pd
    from tqdm.auto import tqdm

    from xattr.data.shapes_captions import ShapesCaptionsDataset, render_scene
    from xattr.methods.info_cmi import InfoCMI

    data = ShapesCaptionsDataset(split="test", words="nouns", n_samples=None)
    picked = []
    for i in range(len(data)):
        index, word, _, objects = data.samples[data.indices[i]]
        if len(data.scenes[index].objects) >= 2:
            picked.append((i, index, word, objects[0]))
        if len(picked) == n_samples:
            break
    method = InfoCMI(model, n_draws=draws, seed=seed)
    rows = []
    for start in tqdm(range(0, len(picked), batch), desc="cmi specificity", unit="batch"):
        chunk = picked[start:start + batch]
        samples = [data[i] for i, _, _, _ in chunk]
        torch.manual_seed(seed + start)
        maps = method.attribute(torch.stack([s["image"] for s in samples]), [s["caption"] for s in samples],
                                [s["word"] for s in samples])[:, 0]
        for (_, index, word, named), heat in zip(chunk, maps):
            _, masks = render_scene(data.scenes[index])
            density = np.array([float(heat[torch.from_numpy(m)].clamp(min=0).mean()) for m in masks])
            others = np.delete(density, named)
            rows.append({"word": word, "n_objects": len(masks), "density_ratio": density[named] / others.mean(),
                         "named_densest": float(density.argmax() == named)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--draws", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--path", default=None, help="a tiny_t2i pipeline folder (default: the cached one)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default="outputs/t2i_checks")
    args = parser.parse_args()

    import pandas as pd
    from tqdm.auto import tqdm

    from xattr.data.shapes_captions import ShapesCaptionsDataset
    from xattr.info import pointwise_information_many
    from xattr.models import build_text_to_image_model
    from xattr.training.text_to_image import t2i_folder

    torch.manual_seed(args.seed)
    data = ShapesCaptionsDataset(split="test", words="caption", n_samples=args.images)
    cache_dir = args.cache_dir or os.environ.get("XATTR_CACHE", str(ROOT / ".cache"))  # conf/paths/default.yaml
    path = args.path or t2i_folder(cache_dir, "shapes_captions", data.image_size)
    model = build_text_to_image_model("tiny_t2i", path=str(path))
    rng = np.random.default_rng(args.seed)
    captions = [data[i]["caption"] for i in range(len(data))]
    generator = torch.Generator().manual_seed(args.seed)
    rows = []
    for start in tqdm(range(0, len(data), args.batch), desc="t2i checks", unit="batch"):
        idx = list(range(start, min(start + args.batch, len(data))))
        x = torch.stack([data[i]["image"] for i in idx])
        z = model.encode_image(x)
        options = [distractors(captions[i], captions[(i + 1 + int(rng.integers(len(data) - 1))) % len(data)], rng)
                   for i in idx]
        texts = [[captions[i]] + [o[k] or captions[i] for k in KINDS] for i, o in zip(idx, options)]
        conds = torch.stack([model.encode_prompt(t) for t in texts])  # [B, 1+K, L, D]
        ref = model.encode_prompt([""] * len(idx))
        out = pointwise_information_many(model.eps, z, conds, ref, n_draws=args.draws, generator=generator)
        for b, i in enumerate(idx):
            row = {"id": data[i]["id"], "caption": captions[i], "i_o": float(out["i_o"][b, 0]),
                   "i_s": float(out["i_s"][b, 0])}
            for k, kind in enumerate(KINDS, start=1):
                for score in ("i_o", "i_s"):
                    correct = float(out[score][b, 0] > out[score][b, k])
                    row[f"{kind}_correct_{score}"] = math.nan if options[b][kind] is None else correct
            rows.append(row)
    frame = pd.DataFrame(rows)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "checks.csv", index=False)
    n = len(frame)
    lines = [f"# tiny_t2i checks ({datetime.date.today()}, seed {args.seed}, {n} shapes_captions test images, "
             f"{args.draws} draws, model {path})", "",
             "| quantity | value |", "| --- | --- |",
             f"| MMSE gap = mean i^s(x; caption), nats | {frame.i_s.mean():.3f} ± {frame.i_s.sem():.3f} "
             f"(positive on {(frame.i_s > 0).mean():.0%}) |",
             f"| mean i^o(x; caption), nats | {frame.i_o.mean():.3f} ± {frame.i_o.sem():.3f} |"]
    for kind in KINDS:
        cells = []
        for score in ("i_o", "i_s"):
            hits = frame[f"{kind}_correct_{score}"].dropna()
            p = hits.mean() if len(hits) else math.nan
            se = math.sqrt(p * (1 - p) / len(hits)) if len(hits) else math.nan
            cells.append(f"{score} {p:.3f} ± {se:.3f}")
        lines.append(f"| retrieval vs {kind} distractor (chance 0.5), n = {len(hits)} | {'; '.join(cells)} |")
    spec = specificity(model, args.images, args.draws, args.seed, args.batch)
    spec.to_csv(out_dir / "specificity.csv", index=False)
    ratio = np.log(spec.density_ratio)
    lines.append(f"| info_cmi density, named object / other objects (geometric mean), n = {len(spec)} | "
                 f"{math.exp(ratio.mean()):.2f} (×/÷ {math.exp(ratio.sem()):.2f}); named object densest on "
                 f"{spec.named_densest.mean():.0%} (chance {(1 / spec.n_objects).mean():.0%}) |")
    text = "\n".join(lines) + "\n"
    (out_dir / "checks.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
