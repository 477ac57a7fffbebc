"""DiffIB Fig. 4: SSIM between DiffIB maps of the trained and the layer-randomised model, per layer.

``python scripts/plot_diffib_sanity.py RUN_OR_MULTIRUN_DIR`` reads every ``summary.csv`` below the folder
(metric columns ``randomization_sanity.<mode>/<layer>``) and writes ``figure_sanity.png`` next to them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def main(root: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xattr.utils.io import atomic_savefig

    frames = [pd.read_csv(p) for p in sorted(root.rglob("summary.csv"))]
    if not frames:
        raise SystemExit(f"no summary.csv under {root}; run `make figure-sanity` first")
    summary = pd.concat(frames)
    summary = summary[summary["metric"].str.startswith("randomization_sanity.")]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for (method, mode), group in summary.assign(
            mode=summary["metric"].str.split(".", n=1).str[1].str.split("/").str[0],
            layer=summary["metric"].str.split("/", n=1).str[1]).groupby(["method", "mode"]):
        ax.errorbar(range(len(group)), group["mean"], yerr=group["std"], marker="o", capsize=3,
                    label=f"{method} ({mode})")
        ax.set_xticks(range(len(group)), group["layer"], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("SSIM (original vs randomised)")
    ax.set_ylim(0, 1)
    ax.set_title("Parameter randomisation sanity check (top layer first)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = atomic_savefig(root / "figure_sanity.png", fig)
    plt.close(fig)
    print(out)
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/diffib/tiny/sanity"))
