"""Pixel-wise mutual information of a word alone, ``i^o_j(x; y*)`` (Info-Decomp, Eq. 6; §3.2.1).

The same estimator as :mod:`xattr.methods.info_cmi` with other conditions: ``cond`` = the word by itself as the
prompt, ``ref`` = the empty prompt ``""`` (the unconditional denoiser; the authors' ``[word, ""]``). The caption
is not used (it is the context the CMI conditions on): the MI map says what the word alone tells about each
pixel, context included.
"""

from __future__ import annotations

from xattr.methods.info_cmi import InfoCMI


class InfoMI(InfoCMI):
    """``i^o_j(x; y*)`` (or ``i^s_j``) ``[B,1,H,W]``; hyper-parameters as :class:`InfoCMI`
    (``conf/method/info_mi.yaml``)."""

    name = "info_mi"

    def conditions(self, prompts: list[str], words: list[str]) -> tuple[list[str], list[str]]:
        """``(cond, ref)`` = (the word, ``""``) per image."""
        return [word.strip() for word in words], [""] * len(words)
