"""Shared parts of the text-to-image benchmarks (``scripts/`` is on ``sys.path`` when a script runs)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _timing import best_time

from xattr.data.shapes_captions import VOCABULARY
from xattr.models.text_to_image import TextToImageModel, load_pipeline_folder
from xattr.models.tiny_t2i import build_tiny_t2i_pipeline


def add_tiny_t2i_arguments(parser: argparse.ArgumentParser) -> None:
    """``--size``, ``--threads``, ``--model-path``: the model of a text-to-image benchmark."""
    parser.add_argument("--size", type=int, default=32, help="image side of the random-init tiny_t2i")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-path", type=Path, default=None, help="a trained tiny_t2i pipeline folder")


def build_tiny_t2i(size: int, path: Path | None, device: torch.device) -> tuple[TextToImageModel, str]:
    """A trained tiny_t2i from its pipeline folder ``path``, else a random-init one at ``size`` px; and its label."""
    if path is not None:
        return TextToImageModel(load_pipeline_folder(path, device=device), name="tiny_t2i").eval(), f"trained ({path})"
    pipeline = build_tiny_t2i_pipeline(VOCABULARY, image_size=size, seed=0)
    pipeline.unet.to(device)
    pipeline.text_encoder.to(device)
    return TextToImageModel(pipeline, name="tiny_t2i"), "random-init"


def call_bound(model: TextToImageModel, rows_per_call: list[int], embed: torch.Tensor, device) -> float:
    """Seconds (CPU time; wall time on a GPU) of ``model.eps`` calls of the given row counts, each size timed
    alone on fixed inputs (best of 3): what the calls alone cost, the bound a method's time is compared with."""
    biggest = max(rows_per_call)
    z = torch.randn(biggest, *model.latent_shape, device=device)
    e = embed[:1].expand(biggest, *embed.shape[1:]).contiguous()
    a = torch.zeros(biggest, device=device)
    total = 0.0
    with torch.no_grad():
        for n_rows in sorted(set(rows_per_call)):
            t_call, _ = best_time(lambda n=n_rows: model.eps(z[:n], a[:n], e[:n]), 3, clock=time.process_time,
                                  warmup=True, device=device)
            total += t_call * rows_per_call.count(n_rows)
    return total
