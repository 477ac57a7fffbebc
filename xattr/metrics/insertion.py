"""Insertion AUC (Petsiuk et al. 2018, RISE): put the most important units back into a substrate first.

The curve is the target's softmax probability after ``0, s, 2s, ..., all`` units of the original image
are inserted into the substrate (``s = round(step * units)``; units are pixel-channel values for
``[B,C,H,W]`` maps, pixels for ``[B,1,H,W]`` maps); the score is its trapezoid area over an x axis
normalised to ``[0,1]`` (RISE's ``auc``). Higher is better. All points of all images are evaluated in
batched chunks of ``max_batch`` images. Ties in the map: seeded infinitesimal noise (see ``_perturb``).
"""

from __future__ import annotations

from xattr.metrics._perturb import BLUR_KERNEL_SIZE, BLUR_SIGMA, CausalAUC


class Insertion(CausalAUC):
    """``Insertion(step=0.01, substrate='blur')(model, x, maps, target)`` -> AUC ``[B]``.

    ``step``: fraction of the units inserted per step (DiffIB: per pixel; CoIBA: 0.035; RISE: 224 px of
    224x224 = 1/224). ``substrate``: ``blur`` (Gaussian, ``blur_kernel`` 11, ``blur_sigma`` 5 as RISE; CoIBA's
    evaluation code uses 51 / 50), ``noise`` (seeded per image), ``shared_noise``, ``zero`` or ``mean``. ``return_curves=True`` returns ``{'auc': [B], 'curve': [B,T]}`` instead.
    """

    insert = True

    def __init__(self, step: float = 0.01, substrate: str = "blur", seed: int = 0, max_batch: int = 16,
                 return_curves: bool = False, blur_kernel: int = BLUR_KERNEL_SIZE, blur_sigma: float = BLUR_SIGMA):
        super().__init__(step, substrate, seed, max_batch, return_curves, blur_kernel, blur_sigma)
