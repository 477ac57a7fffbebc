"""What the trained ``tiny_t2i`` learned, on held-out ``shapes_captions`` images (issue: Info-Decomp backbones).

1. **Conditional vs unconditional MMSE.** Per image, ``i^s(x; caption)`` (Eq. 5 of "Interpretable Diffusion
   via Information Decomposition") is half the log-SNR integral of ``mmse(x | "") − mmse(x | caption)``:
   its mean over images is the MMSE gap in nats (an estimate of ``I(X; caption)``). Also ``i^o`` and the
   share of images whose gap is positive.
2. **Caption retrieval.** For each image the true caption competes against one distractor of each kind:
   ``colour`` (one colour word replaced by another colour), ``shape`` (one shape noun replaced by another
   shape), ``relation`` (one relation word flipped: left↔right, above↔below) and ``other`` (the caption of
   another test image). Score ``i^o(x; candidate)`` against ``""``, all candidates on common draws; pairwise
   accuracy (true scores higher; chance 0.5) per kind, with a binomial standard error.

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
                if options[b][kind] is None:
                    row[f"{kind}_correct"] = math.nan
                else:
                    row[f"{kind}_correct"] = float(out["i_o"][b, 0] > out["i_o"][b, k])
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
        hits = frame[f"{kind}_correct"].dropna()
        p = hits.mean() if len(hits) else math.nan
        se = math.sqrt(p * (1 - p) / len(hits)) if len(hits) else math.nan
        lines.append(f"| retrieval vs {kind} distractor (chance 0.5), n = {len(hits)} | {p:.3f} ± {se:.3f} |")
    text = "\n".join(lines) + "\n"
    (out_dir / "checks.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
