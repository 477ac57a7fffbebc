"""Model-parameter randomisation sanity check (Adebayo et al. 2018; DiffIB, Fig. 4).

The layers with weights (``Conv*``/``Linear``, in module registration order) are randomised on a deep
copy of the model with their own ``reset_parameters`` (seeded), from the top (logits) down:

* ``cascading``: at checkpoint ``i`` every layer from the top down to layer ``i`` is randomised;
* ``independent``: only layer ``i`` is randomised.

With more layers than ``max_layers``, checkpoints are ``max_layers`` evenly spaced layers (the cascade
still randomises every layer above a checkpoint). At each checkpoint the method is rebuilt on the
randomised copy with ``method_factory`` (a ground-truth kwarg: model -> fresh method instance) and
recomputes the maps; the score is SSIM (``skimage.metrics.structural_similarity``, ``data_range=1``)
between the original ``maps`` and the randomised ones, both reduced to ``|map|`` summed over channels
and min-max normalised to ``[0,1]`` per image. Low SSIM means the method depends on the parameters.

Returns ``{'cascading/<layer>': [B], ..., 'independent/<layer>': [B], ...}`` (top layer first).
``write_randomization_report`` turns those scores into ``randomization.csv`` and ``randomization.png``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn

from xattr.errors import XattrError
from xattr.metrics._perturb import check_choice, validate_inputs

if TYPE_CHECKING:
    import pandas

RANDOMISABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the layers with weights, top (last registered) first."""
    names = [name for name, module in model.named_modules()
             if isinstance(module, RANDOMISABLE) and getattr(module, "weight", None) is not None]
    return names[::-1]


def normalise_map(attribution: np.ndarray) -> np.ndarray:
    """``|map|`` summed over channels ``[C,H,W] -> [H,W]``, min-max scaled to ``[0,1]`` (constant -> zeros)."""
    flat = np.abs(attribution).sum(0)
    low, high = flat.min(), flat.max()
    return (flat - low) / (high - low) if high > low else np.zeros_like(flat)


def map_ssim(original: torch.Tensor, randomised: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM ``[B]`` between normalised maps."""
    from skimage.metrics import structural_similarity

    out = []
    for a, b in zip(original.detach().float().cpu().numpy(), randomised.detach().float().cpu().numpy()):
        a, b = normalise_map(a), normalise_map(b)
        side = min(a.shape)
        win = min(7, side if side % 2 else side - 1)
        out.append(structural_similarity(a, b, data_range=1.0, win_size=max(win, 3)))
    return torch.tensor(out, dtype=torch.float32)


class RandomizationSanity:
    """``RandomizationSanity(mode='both', max_layers=6)(model, x, maps, target, method_factory=...)``."""

    def __init__(self, mode: str = "both", layers: list[str] | None = None, max_layers: int = 6, seed: int = 0):
        self.mode = check_choice("mode", mode, ("cascading", "independent", "both"))
        self.layers = list(layers) if layers else None
        if int(max_layers) < 1:
            raise XattrError(f"max_layers={max_layers} must be >= 1")
        self.max_layers = int(max_layers)
        self.seed = int(seed)

    def checkpoints(self, model: nn.Module) -> tuple[list[str], list[int]]:
        """All randomisable layers (top first) and the indices at which maps are recomputed."""
        names = randomisable_layers(model)
        if self.layers is not None:
            missing = [n for n in self.layers if n not in names]
            if missing:
                raise XattrError(f"layers {missing} are not Conv/Linear layers of the model; pick from {names[:8]}...")
            picked = sorted(names.index(n) for n in self.layers)
        elif len(names) <= self.max_layers:
            picked = list(range(len(names)))
        else:
            picked = sorted({int(round(i)) for i in np.linspace(0, len(names) - 1, self.max_layers)})
        if not names:
            raise XattrError("the model has no Conv/Linear layers to randomise")
        return names, picked

    def randomised_copy(self, model: nn.Module, names: list[str]) -> nn.Module:
        """Deep copy of ``model`` with the named layers re-initialised (seeded per layer name)."""
        clone = copy.deepcopy(model)
        for name in names:
            module = clone.get_submodule(name)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + sum(map(ord, name)))
                module.reset_parameters()
        return clone

    def __call__(self, model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
                 method_factory: Callable | None = None, **ground_truth) -> dict[str, torch.Tensor]:
        target = validate_inputs(model, x, maps, target)
        if method_factory is None:
            raise XattrError("RandomizationSanity needs method_factory (model -> method); the run task passes it, "
                             "from Python pass method_factory=lambda m: MyMethod(m)")
        names, picked = self.checkpoints(model)
        modes = ("cascading", "independent") if self.mode == "both" else (self.mode,)
        result: dict[str, torch.Tensor] = {}
        for mode in modes:
            for i in picked:
                chosen = names[: i + 1] if mode == "cascading" else [names[i]]
                clone = self.randomised_copy(model, chosen)
                randomised = method_factory(clone).attribute(x, target)
                result[f"{mode}/{names[i]}"] = map_ssim(maps, randomised).to(x.device)
                del clone
        return result


def write_randomization_report(scores: dict[str, torch.Tensor], out_dir: Path, title: str = "") -> pandas.DataFrame:
    """Table (``randomization.csv``: mode, layer, depth from top, mean and std SSIM) and figure
    (``randomization.png``: mean SSIM per randomised layer, top layer first) from a
    ``RandomizationSanity`` result (or a dict of per-sample lists with the same keys)."""
    import pandas as pd

    from xattr.utils.figures import agg_figure
    from xattr.utils.io import atomic_savefig, atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    depth: dict[str, int] = {}
    for key, values in scores.items():
        mode, _, layer = key.partition("/")
        values = np.asarray(torch.as_tensor(values, dtype=torch.float32).cpu())
        depth.setdefault(mode, 0)
        rows.append({"mode": mode, "layer": layer, "order": depth[mode], "ssim_mean": float(values.mean()),
                     "ssim_std": float(values.std()), "n": int(values.size)})
        depth[mode] += 1
    table = pd.DataFrame(rows, columns=["mode", "layer", "order", "ssim_mean", "ssim_std", "n"])
    atomic_write_text(out_dir / "randomization.csv", table.to_csv(index=False))
    fig = agg_figure(figsize=(max(4, 0.6 * max(len(table) // 2, 4)), 3.2))
    ax = fig.subplots()
    for mode, part in table.groupby("mode", sort=False):
        ax.errorbar(part["order"], part["ssim_mean"], yerr=part["ssim_std"], marker="o", capsize=3, label=mode)
    layers = table.drop_duplicates("order").sort_values("order")
    ax.set_xticks(layers["order"], layers["layer"], rotation=45, ha="right", fontsize=7)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("SSIM(original, randomised)")
    ax.set_xlabel("randomised layer (top first)")
    ax.set_title(title or "parameter randomisation sanity check")
    ax.legend()
    fig.tight_layout()
    atomic_savefig(out_dir / "randomization.png", fig)
    return table
