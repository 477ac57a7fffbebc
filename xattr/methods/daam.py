"""DAAM — Diffusion Attentive Attribution Maps (Tang et al., ACL 2023 / arXiv 2210.04885): the word's
cross-attention, aggregated over the UNet's cross-attention layers, heads and timesteps; the "Attention"
baseline of Info-Decomp (Table 3), traced on a DDIM reconstruction of the real image.

**Which calls are traced.** The real latent ``x`` is DDIM-inverted under its caption over ``steps`` timesteps
(the paper's 50 / 100 / 200), then reconstructed with DDIM under the caption; the ``steps`` UNet calls of the
reconstruction are traced (``../shared/infodecomp-notes.md``: "DDIM inversion of the real latent, then DAAM
traced during reconstruction"). No classifier-free guidance (the information maps use none either). The
timesteps are DDIM's ``leading`` spacing, ``t_k = k·(T // steps) + steps_offset`` (what
``DDIMScheduler.set_timesteps`` gives SD 2.1's scheduler config). Written in the log-SNR ``α_k = logit ᾱ_{t_k}``
of :meth:`TextToImageModel.eps`, with ``x̂ = (z − √σ(−α) ε̂)/√σ(α)`` the DDIM (η = 0) step from ``α`` to ``α'``
is ``z' = √σ(α') x̂ + √σ(−α') ε̂``:

- inversion, ``k = 0 … steps−1``: ``ε̂ = ε̂(z, α_k | caption)`` (evaluated at the *target* level, as in
  ``DDIMInverseScheduler`` / null-text inversion), step from ``α_{k−1}`` to ``α_k`` (``α_{−1}`` = clean, σ = 1);
- reconstruction, ``k = steps−1 … 0``: ``ε̂ = ε̂(z, α_k | caption)`` *traced*, step from ``α_k`` to ``α_{k−1}``.

Every image of the batch goes through each step in one UNet call; the map is deterministic (no random draw).

**Aggregation** (DAAM's ``compute_global_heat_map``): per traced layer and head the attention on each token,
averaged over the traced calls (DAAM sums; the mean only rescales), upsampled bicubic to the latent grid
(64×64 for SD), clamped ``≥ 0``, averaged over all (layer, head) maps; the word's map is the mean over its
tokens (every token of every occurrence, the start token offset included). **Mid block**: DAAM skips maps at
factor 8 (8×8 in SD's 64×64 latent), which in SD is exactly the mid block's cross-attention; here the choice
is by name, ``include_mid: false`` by default (on ``tiny_t2i`` the mid block sits at 8×8 of its 32×32 image, factor 4, which a factor rule would keep).
Unlike ``daam`` 0.2.0 no half of the batch×heads axis is dropped. The map is bilinear to the image's size.
"""

from __future__ import annotations

import torch

from xattr.errors import XattrError
from xattr.methods._text_image import (
    CrossAttentionTrace,
    TextImageMethod,
    trace_cross_attention,
    word_token_positions,
)


def ddim_timesteps(num_train_timesteps: int, steps: int, steps_offset: int = 0) -> list[int]:
    """DDIM's ``leading`` timesteps, ascending: ``k·(T // steps) + steps_offset``, ``k = 0 … steps−1``."""
    if not 1 <= steps <= num_train_timesteps:
        raise XattrError(f"method daam: steps={steps} must be in [1, {num_train_timesteps}] (the paper: 50, 100, 200)")
    ratio = num_train_timesteps // steps
    return [min(k * ratio + int(steps_offset), num_train_timesteps - 1) for k in range(steps)]


def ddim_step(z: torch.Tensor, eps: torch.Tensor, logsnr_from: float | None, logsnr_to: float | None) -> torch.Tensor:
    """The deterministic DDIM update of ``z`` ``[N,...]`` with prediction ``eps`` from log-SNR ``logsnr_from``
    to ``logsnr_to`` (``None`` = clean, σ(α) = 1)."""
    def parts(alpha):
        if alpha is None:
            return 1.0, 0.0
        a = torch.tensor(float(alpha), dtype=torch.float64)
        return float(torch.sigmoid(a).sqrt()), float(torch.sigmoid(-a).sqrt())

    s_from, n_from = parts(logsnr_from)
    s_to, n_to = parts(logsnr_to)
    x_hat = (z - n_from * eps) / s_from
    return s_to * x_hat + n_to * eps


class DAAM(TextImageMethod):
    """DAAM on a DDIM reconstruction ``[B,1,H,W]``: ``2·steps`` UNet calls per batch (half of them traced).

    Args (see ``conf/method/daam.yaml``):
        model: a :class:`~xattr.models.text_to_image.TextToImageModel`.
        steps: DDIM inversion / reconstruction steps (Info-Decomp's Table 3: 50, 100, 200).
        include_mid: also trace the mid block's cross-attention (DAAM: no).
    """

    name = "daam"

    def __init__(self, model, steps: int = 50, include_mid: bool = False):
        super().__init__(model)
        self.steps, self.include_mid = int(steps), bool(include_mid)
        config = model.scheduler.config
        self.timesteps = ddim_timesteps(int(model.spec.num_train_timesteps), self.steps,
                                        int(getattr(config, "steps_offset", 0) or 0))
        table = model._table  # logit(ᾱ_t), float64 [T]
        self.logsnrs = [float(table[t]) for t in self.timesteps]

    def _attribute(self, x: torch.Tensor, prompts: list[str], words: list[str]) -> torch.Tensor:
        model = self.model
        positions = [word_token_positions(model.tokenizer, p, w, name=self.name) for p, w in zip(prompts, words, strict=True)]
        z = model.encode_image(x)
        embeds = model.encode_prompt(prompts)
        b = z.shape[0]
        previous: float | None = None
        for alpha in self.logsnrs:                                   # inversion: clean → the noisiest step
            z = ddim_step(z, model.eps(z, torch.full((b,), alpha), embeds), previous, alpha)
            previous = alpha
        trace = CrossAttentionTrace(b, tuple(z.shape[-2:]))
        with trace_cross_attention(model.unet, trace, self.include_mid):
            for k in reversed(range(len(self.logsnrs))):             # reconstruction, traced
                alpha = self.logsnrs[k]
                trace.begin_call()
                eps = model.eps(z, torch.full((b,), alpha), embeds)
                z = ddim_step(z, eps, alpha, self.logsnrs[k - 1] if k else None)
        return torch.stack([trace.word_map(i, positions[i]) for i in range(b)])[:, None]
