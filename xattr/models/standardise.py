"""The standardised space ``u = (x - mean) / std`` a classifier's network computes in, given by its normalisation
constants ``mean``/``std`` (``None`` for both: the ``[0,1]`` pixel space). DiffIB's noise channel, its denoiser and
its amortized alpha-U-Net work there; :class:`~xattr.models.spec.OnStandardised` is the classifier seen from it."""

from __future__ import annotations

import hashlib

import torch

from xattr.errors import XattrError
from xattr.models.spec import IMAGENET_MEAN, IMAGENET_STD


def space_tag(mean, std) -> str:
    """Checkpoint-name suffix for the space a network was trained in: ``""`` for the ``[0,1]`` pixel space
    (``mean``/``std`` ``None``), ``"-imagenet"`` for the ImageNet constants, ``"-n<hash>"`` for others."""
    if mean is None and std is None:
        return ""
    if mean is None or std is None:
        raise XattrError("give both mean and std (the classifier's normalisation) or neither (pixel space)")
    values = tuple(round(float(v), 4) for v in (*mean, *std))
    if values == tuple(round(v, 4) for v in (*IMAGENET_MEAN, *IMAGENET_STD)):
        return "-imagenet"
    return "-n" + hashlib.sha1(repr(values).encode()).hexdigest()[:8]


def space_constants(mean, std, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` float32 ``[C]`` of the space a network trains in (zeros/ones when both are ``None``)."""
    if mean is None and std is None:
        return torch.zeros(channels), torch.ones(channels)
    m = torch.as_tensor(mean, dtype=torch.float32).flatten()
    s = torch.as_tensor(std, dtype=torch.float32).flatten()
    if m.numel() != channels or s.numel() != channels:
        raise XattrError(f"mean/std have {m.numel()}/{s.numel()} values for {channels}-channel images; "
                         f"give one per channel")
    return m, s


def standardiser(mean, std, channels: int):
    """``x -> (x - mean) / std`` for ``[B,C,H,W]`` (identity when both are ``None``)."""
    m, s = (t.reshape(1, -1, 1, 1) for t in space_constants(mean, std, channels))
    return lambda x: (x - m.to(x)) / s.to(x)


def as_list(values):
    """``mean``/``std`` as a plain list of floats (from a config list), ``None`` stays ``None``."""
    return None if values is None else [float(v) for v in values]


__all__ = ["space_tag", "space_constants", "standardiser", "as_list"]
