"""Attention+Information (Info-Decomp, Table 3): DAAM's cross-attention aggregation over UNet calls on the real
image noised at log-SNRs drawn from the information estimator's distribution, with no DDIM inversion.

For each image, ``n_draws`` pairs ``(α_n, ε_n)``: ``α_n`` from the truncated logistic of
:class:`xattr.info.logsnr.TruncatedLogistic` (``loc``, ``scale``, ``clip``: the estimator's 1, 2, 3),
``ε_n ~ N(0, I)``; ``z_n = √σ(α_n) x + √σ(−α_n) ε_n`` (:func:`xattr.info.noise_channel`) goes through one
caption-conditioned UNet call under the cross-attention trace. The word's map is DAAM's aggregation
(:class:`xattr.methods._text_image.CrossAttentionTrace`: per (layer, head) the mean over the ``n_draws`` calls
— unweighted, the attention is not an integrand — bicubic to the latent grid, clamped ``≥ 0``, averaged over
layers and heads, mean over the word's tokens), bilinear to the image. It is not a fusion of the CMI map with
the attention map (``../shared/infodecomp-notes.md``). The draws of all images go through the UNet in
stacked calls of ``chunk_size`` rows; the mid block is left out as in DAAM (``include_mid``).
"""

from __future__ import annotations

import torch

from xattr.errors import XattrError
from xattr.info.channel import noise_channel
from xattr.info.logsnr import TruncatedLogistic
from xattr.methods._text_image import (
    CrossAttentionTrace,
    TextImageMethod,
    call_generator,
    trace_cross_attention,
    word_token_positions,
)


class AttentionInformation(TextImageMethod):
    """Attention over noised copies of the real latent ``[B,1,H,W]``: ``n_draws`` traced UNet rows per image.

    Args (see ``conf/method/attention_information.yaml``):
        model: a :class:`~xattr.models.text_to_image.TextToImageModel`.
        n_draws: noised copies (UNet calls) per image; the paper's N = 100 (as the information maps' draws).
        loc, scale, clip: the truncated logistic of the log-SNR (the information estimator's 1, 2, 3).
        include_mid: also trace the mid block's cross-attention (DAAM: no).
        chunk_size: UNet rows per call (chunking only).
        seed: mixed with the call's global seed into the draws' generator.
    """

    name = "attention_information"

    def __init__(self, model, n_draws: int = 100, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                 include_mid: bool = False, chunk_size: int = 32, seed: int = 0):
        super().__init__(model)
        if int(n_draws) < 1 or int(chunk_size) < 1:
            raise XattrError(f"method {self.name}: n_draws={n_draws} and chunk_size={chunk_size} must be >= 1 "
                             "(e.g. n_draws=100)")
        self.sampler = TruncatedLogistic(float(loc), float(scale), float(clip))
        self.n_draws, self.include_mid, self.chunk_size, self.seed = (int(n_draws), bool(include_mid),
                                                                       int(chunk_size), int(seed))

    def _attribute(self, x: torch.Tensor, prompts: list[str], words: list[str]) -> torch.Tensor:
        model = self.model
        positions = [word_token_positions(model.tokenizer, p, w, name=self.name) for p, w in zip(prompts, words, strict=True)]
        latent = model.encode_image(x)
        embeds = model.encode_prompt(prompts)
        b = latent.shape[0]
        generator = call_generator(self.seed, latent.device)
        # the draws in a fixed order (α for every (draw, image), then ε draw by draw), whatever chunk_size is
        logsnr = self.sampler.sample((self.n_draws, b), generator=generator, dtype=latent.dtype, device=latent.device)
        per_call = max(1, self.chunk_size // b)
        trace = CrossAttentionTrace(b, tuple(latent.shape[-2:]))
        rows_image = torch.arange(b, device=latent.device)
        with trace_cross_attention(model.unet, trace, self.include_mid):
            for start in range(0, self.n_draws, per_call):
                stop = min(start + per_call, self.n_draws)
                eps = torch.stack([torch.randn(latent.shape, generator=generator, dtype=latent.dtype,
                                               device=latent.device) for _ in range(start, stop)])  # [c,B,...]
                alpha = logsnr[start:stop]                                                         # [c,B]
                z = noise_channel(latent.expand_as(eps), alpha.view(*alpha.shape, 1, 1, 1), eps)
                trace.begin_call(rows_image.repeat(stop - start))
                model.eps(z.reshape(-1, *latent.shape[1:]), alpha.reshape(-1),
                          embeds.repeat(stop - start, 1, 1))
        return torch.stack([trace.word_map(i, positions[i]) for i in range(b)])[:, None]
