"""Similarity of single-layer IBA maps across transformer layers (CoIBA, Figs. 1 and 10(b)).

For N images, IBA is run separately at every block output ``blocks.{i}`` (Fig. 1(a): maps of different
layers disagree), then

- SSIM (skimage) between the maps of every pair of layers, averaged over images (Fig. 1(a), right);
- linear CKA (Kornblith et al. 2019) between the layers' maps, images as examples, token-grid cells as
  features;
- linear CKA between CoIBA's map (Eq. 8, ``bound=first``; and Eq. 4, ``bound=sum``) and each layer's
  channel-uniform IBA map on CoIBA's layers — the IBA* of Fig. 10(b).

Writes ``similarity.csv`` (kind, a, b, ssim, cka) and ``similarity.png`` into ``--out``.

    python scripts/layer_similarity.py --scale tiny --out outputs/coiba/tiny/similarity [--n 16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xattr.errors import XattrError  # noqa: E402


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of ``x`` [n, p] and ``y`` [n, q] (rows = examples): ||YᵀX||²_F / (||XᵀX||_F ||YᵀY||_F)."""
    x = x - x.mean(0, keepdims=True)
    y = y - y.mean(0, keepdims=True)
    cross = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else float("nan")


def mean_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of min-max normalised maps ``a``/``b`` [n, H, W], averaged over the n images."""
    from skimage.metrics import structural_similarity

    def norm(m):
        lo, hi = m.min(), m.max()
        return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)

    return float(np.mean([structural_similarity(norm(p), norm(q), data_range=1.0) for p, q in zip(a, b)]))


def load_setup(scale: str, n: int, cache_dir: Path):
    """Model, images, targets, training dataset for the statistics."""
    from xattr.data import ShapesDataset, collate

    if scale == "tiny":
        try:
            from xattr.training.classifier import load_trained_classifier

            model = load_trained_classifier("tiny_vit", "shapes", 64, cache_dir=str(cache_dir))
        except ImportError:
            from xattr.models import build_model

            print("warning: xattr.training.classifier missing; using a random-init tiny_vit", file=sys.stderr)
            torch.manual_seed(0)
            model = build_model("tiny_vit", num_classes=6)
        test = ShapesDataset(split="test", n_samples=n)
        train = ShapesDataset(split="train", n_samples=512)
    else:
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        from xattr.models import build_model

        model = build_model("vit_b16", pretrained=True)  # offline: one-line XattrError
        path = ROOT / "conf" / "dataset" / "imagenet.yaml"
        if not path.is_file():
            raise XattrError("paper scale needs conf/dataset/imagenet.yaml (ImageNet under paths.data_dir)")
        config = OmegaConf.load(path)
        test = instantiate(config, split="val", n_samples=n)
        train = instantiate(config, split="train", n_samples=10000)
    batch = collate([test[i] for i in range(min(n, len(test)))])
    return model.eval(), batch["image"], batch["label"], train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--n", type=int, default=16, help="images (tiny: shapes test split)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", default="outputs/coiba/tiny/similarity")
    parser.add_argument("--cache-dir", default=str(ROOT / ".cache"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        run(args)
    except XattrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def attribute_all(method, x, y, batch):
    return torch.cat([method.attribute(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)])


def run(args) -> None:
    from xattr.methods.base import RunContext
    from xattr.methods.coiba import CoIBA
    from xattr.methods.iba_vit import IBATransformer
    from xattr.utils.io import atomic_save_dataframe, atomic_savefig

    out = Path(args.out)
    model, x, y, train = load_setup(args.scale, args.n, Path(args.cache_dir))
    context = RunContext(train_dataset=train, cache_dir=Path(args.cache_dir), model_name=model.spec.name,
                         dataset_name="shapes" if args.scale == "tiny" else "imagenet")
    depth = len(model.net.blocks)
    grid = model.spec.token_grid

    def to_grid(maps):  # [N,1,H,W] → token grid [N, h, w] (average over each patch)
        pooled = torch.nn.functional.adaptive_avg_pool2d(maps, grid)
        return pooled[:, 0].numpy()

    # Fig. 1: standard IBA (per-element λ, β = 10) at every block output
    block_maps = {}
    for i in range(depth):
        method = IBATransformer(model, layer=f"blocks.{i}")
        method.prepare(context)
        block_maps[f"blocks.{i}"] = attribute_all(method, x, y, args.batch)
        print(f"IBA at blocks.{i}: done", flush=True)
    # Fig. 10(b): CoIBA (Eq. 8 and Eq. 4) vs channel-uniform IBA on CoIBA's layers
    coiba = CoIBA(model)
    coiba.prepare(context)
    coiba_maps = {"coiba (Eq. 8)": attribute_all(coiba, x, y, args.batch)}
    coiba_sum = CoIBA(model, bound="sum")
    coiba_sum.statistics = coiba.statistics
    coiba_maps["coiba (Eq. 4)"] = attribute_all(coiba_sum, x, y, args.batch)
    star_maps = {}
    for name in coiba.layer_names:
        method = IBATransformer(model, layer=name, channel_uniform=True)
        method.statistics = coiba.statistics
        star_maps[name] = attribute_all(method, x, y, args.batch)
        print(f"channel-uniform IBA at {name}: done", flush=True)

    rows = []
    names = list(block_maps)
    for a in names:
        for b in names:
            rows.append({"kind": "iba_layers", "a": a, "b": b,
                         "ssim": mean_ssim(block_maps[a][:, 0].numpy(), block_maps[b][:, 0].numpy()),
                         "cka": linear_cka(to_grid(block_maps[a]).reshape(len(x), -1),
                                           to_grid(block_maps[b]).reshape(len(x), -1))})
    for c, cmap in coiba_maps.items():
        for name, smap in star_maps.items():
            rows.append({"kind": "coiba_vs_iba_star", "a": c, "b": name,
                         "ssim": mean_ssim(cmap[:, 0].numpy(), smap[:, 0].numpy()),
                         "cka": linear_cka(to_grid(cmap).reshape(len(x), -1), to_grid(smap).reshape(len(x), -1))})
    frame = pd.DataFrame(rows)
    atomic_save_dataframe(out / "similarity.csv", frame)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, key in zip(axes[:2], ("ssim", "cka")):
        mat = frame[frame.kind == "iba_layers"].pivot(index="a", columns="b", values=key).loc[names, names]
        im = ax.imshow(mat.values, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(depth), [n.split(".")[1] for n in names])
        ax.set_yticks(range(depth), [n.split(".")[1] for n in names])
        ax.set_xlabel("IBA layer (blocks.i)")
        ax.set_title(f"{key.upper()} of single-layer IBA maps")
        fig.colorbar(im, ax=ax, fraction=0.046)
    sub = frame[frame.kind == "coiba_vs_iba_star"]
    for c in coiba_maps:
        part = sub[sub.a == c]
        axes[2].plot([b.split(".")[1] for b in part.b], part.cka, marker="o", label=c)
    axes[2].set_xlabel("layer of channel-uniform IBA (IBA*)")
    axes[2].set_ylabel("linear CKA with CoIBA")
    axes[2].set_ylim(0, 1)
    axes[2].legend()
    axes[2].set_title("CoIBA vs per-layer IBA (Fig. 10b)")
    fig.suptitle(f"{model.spec.name}, {len(x)} images")
    fig.tight_layout()
    atomic_savefig(out / "similarity.png", fig)
    plt.close(fig)
    off = frame[(frame.kind == "iba_layers") & (frame.a != frame.b)]
    print(f"mean off-diagonal SSIM {off.ssim.mean():.3f}, CKA {off.cka.mean():.3f}")
    print(sub.groupby("a")[["ssim", "cka"]].mean().round(3).to_string())
    print(f"wrote {out / 'similarity.csv'} and {out / 'similarity.png'}")


if __name__ == "__main__":
    raise SystemExit(main())
