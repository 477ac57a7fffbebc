"""Pixel-wise conditional mutual information of a word, ``i^o_j(x; y*|c)`` (Info-Decomp, Eq. 6 with §2.2's
conditioning; Kong et al., ICLR 2024, §3.2).

For an image ``x`` (the denoiser's latent ``4×64×64`` for Stable Diffusion, the ``[-1,1]`` image for pixel-space
``tiny_t2i``), its caption ``y = {y*, c}`` and the explained word ``y*``::

    i^o_j(x; y*|c) = ½ ∫ E_ε[ (ε̂_α(x_α | caption) − ε̂_α(x_α | context))_j² ] dα          (Eq. 6, second line)
    i^s_j(x; y*|c) = ½ ∫ E_ε[ (ε − ε̂_α(x_α | context))_j² − (ε − ε̂_α(x_α | caption))_j² ] dα   (first line)

summed over the latent's channels (§2.3), with the context ``c`` = the caption with the word removed as a whole
word (:func:`xattr.utils.text.remove_word`; the authors' substring replace leaves double spaces and hits parts
of other words). The integral is :func:`xattr.info.pointwise_information` (truncated-logistic importance
sampling, §2.4, or Gauss–Legendre quadrature): every image's two conditions share its ``(α, ε)`` draws (common
random numbers) and all images and both conditions go through the UNet in stacked calls of ``chunk_size``
rows. The map is on the latent grid, bilinear to the image (§3: "we use bilinear interpolation when visualizing
heat maps at the higher resolution"). Units: nats per pixel; not normalised.

Diagnostics (``per_sample.csv``): the image-level ``i_o`` and ``i_s`` (the maps' sums over the latent, Eq. 5)
of the same draws, in nats.
"""

from __future__ import annotations

import torch

from xattr.errors import XattrError
from xattr.info.logsnr import INTEGRATIONS, TruncatedLogistic
from xattr.info.pointwise import pixel_map, pointwise_information
from xattr.methods._text_image import TextImageMethod, call_generator
from xattr.utils.text import remove_word

ESTIMATORS = ("i_o", "i_s")


class InfoCMI(TextImageMethod):
    """``i^o_j(x; y*|c)`` (or ``i^s_j``) ``[B,1,H,W]``: ``2·n_draws`` UNet rows per image.

    Args (see ``conf/method/info_cmi.yaml``):
        model: a :class:`~xattr.models.text_to_image.TextToImageModel`.
        n_draws: ``(α, ε)`` draws (or quadrature nodes) per image; the authors' 100.
        loc, scale, clip: the truncated logistic over the log-SNR (the authors' CLI defaults 1, 2, 3).
        estimator: ``i_o`` (the paper's maps, always ≥ 0) or ``i_s`` (standard, higher variance, signed).
        integration: ``sample`` (importance sampling, the authors') or ``quadrature``.
        chunk_size: UNet rows per call (images × conditions × draws; chunking only, the map does not depend on it).
        seed: mixed with the call's global seed into the draws' generator (``_text_image`` docstring).
    """

    name = "info_cmi"

    def __init__(self, model, n_draws: int = 100, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                 estimator: str = "i_o", integration: str = "sample", chunk_size: int = 32, seed: int = 0):
        super().__init__(model)
        if estimator not in ESTIMATORS:
            raise XattrError(f"method {self.name}: estimator={estimator!r} is not one of {', '.join(ESTIMATORS)}")
        if integration not in INTEGRATIONS:
            raise XattrError(f"method {self.name}: integration={integration!r} is not one of "
                             f"{', '.join(INTEGRATIONS)}")
        if int(n_draws) < 1 or int(chunk_size) < 1:
            raise XattrError(f"method {self.name}: n_draws={n_draws} and chunk_size={chunk_size} must be >= 1 "
                             "(e.g. n_draws=100)")
        TruncatedLogistic(float(loc), float(scale), float(clip))  # checks the range (one-line errors)
        self.n_draws, self.loc, self.scale, self.clip = int(n_draws), float(loc), float(scale), float(clip)
        self.estimator, self.integration, self.chunk_size, self.seed = estimator, integration, int(chunk_size), int(seed)

    def conditions(self, prompts: list[str], words: list[str]) -> tuple[list[str], list[str]]:
        """``(cond, ref)`` prompts per image: the caption, and the caption without the word (the context)."""
        refs = []
        for prompt, word in zip(prompts, words, strict=True):
            try:
                context = remove_word(prompt, word)
            except XattrError:
                raise XattrError(f"method {self.name}: word {word!r} does not occur as a whole word in caption "
                                 f"{prompt!r}, so the context equals the caption; explain a word of the caption") from None
            if context == prompt:  # defensive: remove_word found the word, so this cannot happen
                raise XattrError(f"method {self.name}: removing {word!r} leaves caption {prompt!r} unchanged")
            refs.append(context)
        return list(prompts), refs

    def information(self, x: torch.Tensor, prompts: list[str], words: list[str],
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """:func:`~xattr.info.pointwise_information` of the two conditions on the latent of ``x``: ``i_o``,
        ``i_s`` ``[B]`` and ``i_o_map``, ``i_s_map`` ``[B,*latent_shape]`` (nats). ``generator``: default a fresh
        one from ``seed`` and the call's global seed."""
        model = self.model
        cond, ref = self.conditions(prompts, words)
        latent = model.encode_image(x)
        if generator is None:
            generator = call_generator(self.seed, latent.device)
        embeds = model.encode_prompt(cond + ref)
        b = latent.shape[0]
        return pointwise_information(model.eps, latent, embeds[:b], embeds[b:], n_draws=self.n_draws, loc=self.loc,
                                     scale=self.scale, clip=self.clip, generator=generator,
                                     integration=self.integration, chunk_size=self.chunk_size)

    def _attribute(self, x: torch.Tensor, prompts: list[str], words: list[str]) -> torch.Tensor:
        out = self.information(x, prompts, words)
        self._diagnostics = {"i_o": out["i_o"].detach().float().cpu(), "i_s": out["i_s"].detach().float().cpu()}
        return pixel_map(out[f"{self.estimator}_map"])
