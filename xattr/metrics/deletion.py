"""Deletion AUC (Petsiuk et al. 2018, RISE): replace the most important units by a substrate first.

The curve is the target's softmax probability after ``0, s, 2s, ..., all`` units of the image are
replaced by the substrate (``s = round(step * units)``; units are pixel-channel values for
``[B,C,H,W]`` maps, pixels for ``[B,1,H,W]`` maps); the score is its trapezoid area over an x axis
normalised to ``[0,1]``. Lower is better. Batched in chunks of ``max_batch`` images.
"""

from __future__ import annotations

from xattr.metrics._perturb import BLUR_KERNEL_SIZE, BLUR_SIGMA, CausalAUC


class Deletion(CausalAUC):
    """``Deletion(step=0.01, substrate='zero')(model, x, maps, target)`` -> AUC ``[B]``.

    ``substrate``: ``zero`` (RISE), ``noise`` (DiffIB: seeded per image), ``shared_noise`` (one field for
    all images), ``blur`` (``blur_kernel``, ``blur_sigma``) or ``mean``. ``return_curves=True`` returns
    ``{'auc': [B], 'curve': [B,T]}`` instead.
    """

    insert = False

    def __init__(self, step: float = 0.01, substrate: str = "zero", seed: int = 0, max_batch: int = 16,
                 return_curves: bool = False, blur_kernel: int = BLUR_KERNEL_SIZE, blur_sigma: float = BLUR_SIGMA):
        super().__init__(step, substrate, seed, max_batch, return_curves, blur_kernel, blur_sigma)
