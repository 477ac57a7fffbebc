"""Shared by the CoIBA tests: slow, obvious reference statistics of token layers."""

from __future__ import annotations

import torch


def layer_statistics(model, names, x):
    """Per-layer ``(mean, std)`` over the batch of one forward pass over ``x``, per token and channel (std 1 for a
    batch of one)."""
    outputs = {}
    handles = [model.net.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: outputs.__setitem__(n, o.detach())) for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return {n: (v.mean(0), v.std(0) if len(v) > 1 else torch.ones_like(v[0])) for n, v in outputs.items()}
