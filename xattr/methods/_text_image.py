"""Shared parts of the text-image methods: the base class, seeding, the word's token positions, and the
cross-attention trace (a diffusers attention processor that records what the default one computes).

**Contract.** ``Method(model, **hparams).attribute(x, prompts, words) -> [B,1,H,W]`` with ``model`` a
:class:`xattr.models.text_to_image.TextToImageModel`, ``x`` ``[B,3,H,W]`` in ``[0,1]``, ``prompts`` the ``B``
captions and ``words`` the ``B`` words to explain (one per image). The map is float32 on ``x``'s device at
``x``'s resolution (bilinear from the denoiser's latent ``h×w``, identity where the two agree, e.g. pixel-space
``tiny_t2i``), not normalised.

**Seeding.** A stochastic method draws from a ``torch.Generator`` seeded with a mix of its ``seed``
hyper-parameter and the global seed of the call (:func:`torch.initial_seed`, which the run loop sets per batch
with ``torch.manual_seed(seed + batch_index)``): the same call under the same seed gives the same map, each
batch of a run gets its own draws, and the global RNG is neither read nor advanced.

**Cross-attention trace** (DAAM, Tang et al. 2022; written here, not the ``daam`` package: 0.2.0 pins diffusers
0.21.2 / transformers 4.30.2 and keeps only ``map_[map_.size(0) // 2:]`` of the batch×heads axis, which
without classifier-free guidance drops half the heads or images). :func:`trace_cross_attention` sets a
:class:`CrossAttentionRecorder` on every ``attn2`` (cross-attention) processor of the UNet's down and up
blocks (``include_mid`` adds the mid block's), keeps every ``attn1`` (self-attention) processor as it was,
and restores the original processors — the very objects — in ``finally``. The recorder computes exactly what
``diffusers.models.attention_processor.AttnProcessor`` computes (so its output equals the default processor's
to float round-off) and adds the probabilities ``softmax(QKᵀ/√d)`` ``[B,heads,hw,L]`` of each call into a
per-layer sum per image (:class:`CrossAttentionTrace`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from xattr.errors import XattrError
from xattr.methods.base import AttributionMethod
from xattr.utils.seed import make_generator
from xattr.utils.validate import check_images

# --------------------------------------------------------------------------- base class

class TextImageMethod(AttributionMethod):
    """Base of the text-image methods: checks the model and the inputs, then ``_attribute(x, prompts, words)``
    returns a map ``[B,1,h,w]`` on the denoiser's grid, which :meth:`attribute` resizes to ``x``'s ``H×W``.

    ``kind = "text_image"`` tells it from a classifier method; ``supports_cnn``/``supports_transformers`` are
    false, so the classifier contract tests (and the classifier run kind) leave it alone.
    """

    kind = "text_image"
    supports_cnn = False
    supports_transformers = False
    #: the name in messages (the config's file stem)
    name = "text_image"

    def __init__(self, model):
        from xattr.models.text_to_image import TextToImageModel

        if not isinstance(model, TextToImageModel):
            spec_name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
            raise XattrError(f"method {self.name} explains text-to-image diffusion models, not {spec_name}; use "
                             "model=tiny_t2i, model=sd21 or model=sd15")
        super().__init__(model)
        self._diagnostics: dict[str, torch.Tensor] = {}

    @property
    def num_classes(self) -> None:
        return None

    def attribute(self, x: torch.Tensor, prompts: Sequence[str], words: Sequence[str]) -> torch.Tensor:  # type: ignore[override]
        """``[B,1,H,W]`` float32 on ``x``'s device: the map of ``words[b]`` in image ``x[b]`` captioned
        ``prompts[b]``."""
        check_images(x)
        prompts, words = check_texts(self.name, prompts, words, x.shape[0])
        self._diagnostics = {}
        with torch.no_grad():
            maps = self._attribute(x, prompts, words)
        return to_image_grid(maps, tuple(x.shape[-2:])).detach().float().to(x.device)

    def _attribute(self, x: torch.Tensor, prompts: list[str], words: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def diagnostics(self) -> dict[str, torch.Tensor]:
        return dict(self._diagnostics)

    def __call__(self, x: torch.Tensor, prompts: Sequence[str], words: Sequence[str]) -> torch.Tensor:  # type: ignore[override]
        return self.attribute(x, prompts, words)


def check_texts(name: str, prompts, words, batch: int) -> tuple[list[str], list[str]]:
    """``prompts`` and ``words``: ``batch`` strings each (one caption and one word per image)."""
    for label, texts in (("prompts", prompts), ("words", words)):
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts) or len(texts) != batch:
            raise XattrError(f"method {name}: {label} must be a list of {batch} strings (one per image), got "
                             f"{texts!r:.80}")
    empty = [i for i, word in enumerate(words) if not word.strip()]
    if empty:
        raise XattrError(f"method {name}: words[{empty[0]}] is empty (caption {prompts[empty[0]]!r}); name the word "
                         "to explain (dataset.words=nouns|adjectives|relations|all, not caption)")
    return list(prompts), list(words)


def to_image_grid(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``maps`` ``[B,1,h,w]`` on the denoiser's grid → ``[B,1,*size]``: bilinear (``align_corners=False``, as
    the authors' ``F.interpolate`` to 512×512) when the grids differ, else unchanged."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)


def call_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A generator for one ``attribute`` call, seeded from ``seed`` and :func:`torch.initial_seed` (module
    docstring): blake2b of both, so nearby seeds give unrelated streams."""
    key = f"{int(seed)}:{torch.initial_seed()}".encode()
    mixed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % (2**63 - 1)
    return make_generator(mixed, device)


# --------------------------------------------------------------------------- the word's tokens

def prompt_token_ids(tokenizer, prompt: str) -> list[int]:
    """The token ids of ``prompt`` as the pipeline's ``encode_prompt`` sees them: start token, the prompt's
    tokens, end/padding up to ``model_max_length``, truncated there."""
    return list(tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length,
                          truncation=True)["input_ids"])


def word_token_positions(tokenizer, prompt: str, word: str, *, name: str = "daam") -> list[int]:
    """Positions in the encoded prompt (index into ``encode_prompt``'s ``L`` axis) of every token of every
    occurrence of ``word`` (a word or phrase, possibly several tokens) — DAAM's ``compute_token_merge_indices``
    with its offset of 1 for the start token included (position 0 is the start token here).

    Raises a one-line :class:`XattrError` naming the word and the caption when the word's tokens do not occur
    (also when the caption was truncated before the word).
    """
    ids = prompt_token_ids(tokenizer, prompt)
    target = list(tokenizer(word, add_special_tokens=False)["input_ids"])
    if not target:
        raise XattrError(f"method {name}: word {word!r} has no tokens; name a word of the caption {prompt!r}")
    n = len(target)
    starts = [i for i in range(len(ids) - n + 1) if ids[i:i + n] == target]
    if not starts:
        raise XattrError(f"method {name}: the tokens of word {word!r} do not occur in caption {prompt!r} (as "
                         f"tokenized, truncated to {len(ids)} tokens); explain a word of the caption")
    return [start + k for start in starts for k in range(n)]


# --------------------------------------------------------------------------- the cross-attention trace

class CrossAttentionTrace:
    """Cross-attention probabilities summed over traced UNet calls, per layer and image.

    ``sums[layer]`` is ``[n_images, heads, h_l, w_l, L]`` float32 (``h_l×w_l`` the layer's grid), ``calls[b]``
    the number of traced calls of image ``b``. Before each UNet call set :attr:`rows` to the image index of
    each row of the call's batch (``LongTensor [N]``; ``None`` means row ``i`` is image ``i``).

    Args:
        n_images: images the sums are kept for.
        latent_hw: the UNet input's ``(h, w)``, to unflatten a layer's ``hw`` queries into its grid.
    """

    def __init__(self, n_images: int, latent_hw: tuple[int, int]):
        self.n_images = int(n_images)
        self.latent_hw = (int(latent_hw[0]), int(latent_hw[1]))
        self.sums: dict[str, torch.Tensor] = {}
        self.calls = torch.zeros(self.n_images, dtype=torch.long)
        self.rows: torch.Tensor | None = None

    def begin_call(self, rows: torch.Tensor | None = None) -> None:
        """Declare the next UNet call's rows (image index per row) and count it for those images."""
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)
        index = torch.arange(self.n_images) if self.rows is None else self.rows.cpu()
        self.calls.index_add_(0, index, torch.ones_like(index))

    def grid(self, queries: int) -> tuple[int, int]:
        """The ``(h_l, w_l)`` of a layer with ``queries`` spatial positions (a power-of-two downsampling)."""
        h, w = self.latent_hw
        factor = 1
        while (h // factor) * (w // factor) > queries and factor <= max(h, w):
            factor *= 2
        if (h // factor) * (w // factor) != queries:
            raise XattrError(f"cross-attention trace: a layer has {queries} queries, not a downsampling of the "
                             f"latent {h}x{w}; report this as a bug with the UNet config")
        return h // factor, w // factor

    def add(self, layer: str, probs: torch.Tensor) -> None:
        """Add probabilities ``[N, heads, hw, L]`` of one call (``N`` rows, see :attr:`rows`)."""
        n, heads, queries, length = probs.shape
        h, w = self.grid(queries)
        probs = probs.detach().float().reshape(n, heads, h, w, length)
        rows = torch.arange(n, device=probs.device) if self.rows is None else self.rows.to(probs.device)
        if rows.numel() != n or (n and int(rows.max()) >= self.n_images):
            raise XattrError(f"cross-attention trace: {n} rows in a call but rows={rows.tolist()[:8]} for "
                             f"{self.n_images} images; call begin_call(rows) before each UNet call")
        if layer not in self.sums:
            self.sums[layer] = probs.new_zeros((self.n_images, heads, h, w, length))
        self.sums[layer].index_add_(0, rows, probs)

    def token_maps(self, image: int, positions: Sequence[int], size: tuple[int, int] | None = None) -> torch.Tensor:
        """DAAM's aggregation for image ``image``: per (layer, head), the mean over traced calls of the
        attention on each token of ``positions``, upsampled bicubic (``align_corners=False``) to ``size``
        (default: the latent grid) and clamped ``≥ 0`` ("the clamping fixes undershoot"), then averaged over
        all (layer, head) maps (each head counts once, as in DAAM's ``compute_global_heat_map``).
        Returns ``[len(positions), *size]``."""
        if not self.sums:
            raise XattrError("cross-attention trace: nothing was recorded; the UNet has no traced attn2 layer "
                             "or no UNet call ran inside trace_cross_attention")
        if int(self.calls[image]) == 0:
            raise XattrError(f"cross-attention trace: image {image} had no traced UNet call")
        size = tuple(size or self.latent_hw)
        index = torch.as_tensor(list(positions), dtype=torch.long)
        total, count = None, 0
        for sums in self.sums.values():
            per_head = sums[image][..., index.to(sums.device)] / float(self.calls[image])   # [heads, h_l, w_l, T]
            heads = per_head.shape[0]
            maps = per_head.permute(0, 3, 1, 2).reshape(-1, 1, *per_head.shape[1:3])         # [heads·T, 1, h_l, w_l]
            up = F.interpolate(maps, size=size, mode="bicubic", align_corners=False).clamp_(min=0)
            up = up.reshape(heads, len(index), *size).sum(0)
            total = up if total is None else total + up
            count += heads
        return total / count

    def word_map(self, image: int, positions: Sequence[int], size: tuple[int, int] | None = None) -> torch.Tensor:
        """A word's map ``[*size]``: the mean of :meth:`token_maps` over its token positions (DAAM)."""
        return self.token_maps(image, positions, size).mean(0)


class CrossAttentionRecorder:
    """An attention processor that computes what diffusers' ``AttnProcessor`` computes — explicit
    ``softmax(QKᵀ·scale)`` (``attn.get_attention_scores``), ``scale = 1/√d`` unless the layer says otherwise —
    and adds the probabilities ``[B, heads, hw, L]`` to ``trace`` under ``layer``."""

    def __init__(self, layer: str, trace: CrossAttentionTrace):
        self.layer = layer
        self.trace = trace

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args,
                 **kwargs) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise XattrError(f"cross-attention trace: layer {self.layer} was called without encoder_hidden_states; "
                             "only cross-attention (attn2) layers can be traced")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query, key, value = attn.head_to_batch_dim(query), attn.head_to_batch_dim(key), attn.head_to_batch_dim(value)
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)
        attention_probs = attn.get_attention_scores(query, key, attention_mask)           # [B·heads, hw, L]
        self.trace.add(self.layer, attention_probs.reshape(batch_size, attn.heads, *attention_probs.shape[1:]))
        hidden_states = attn.batch_to_head_dim(torch.bmm(attention_probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))                      # linear proj, dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def traced_layers(unet, include_mid: bool = False) -> list[str]:
    """The processor names (``unet.attn_processors`` keys) of the cross-attention layers traced: every
    ``attn2`` of the down and up blocks, plus the mid block's with ``include_mid``."""
    names = [name for name in unet.attn_processors if ".attn2." in f".{name}"
             and (include_mid or not name.startswith("mid_block."))]
    if not names:
        raise XattrError("cross-attention trace: the UNet has no attn2 (cross-attention) layer"
                         f"{'' if include_mid else ' outside the mid block (try include_mid=true)'}; a text-"
                         "conditioned UNet2DConditionModel is needed")
    return names


@contextlib.contextmanager
def trace_cross_attention(unet, trace: CrossAttentionTrace, include_mid: bool = False) -> Iterator[CrossAttentionTrace]:
    """Record ``trace`` on the UNet's cross-attention layers (:func:`traced_layers`) for the block.

    ``unet.set_attn_processor`` needs a processor for every attention layer (and pops from the dict it is
    given): it gets a full dict, recorders on the traced ``attn2`` layers and the original processor
    everywhere else; the original processors (the same objects) are put back in ``finally``.
    """
    original = dict(unet.attn_processors)
    layers = set(traced_layers(unet, include_mid))
    unet.set_attn_processor({name: CrossAttentionRecorder(name, trace) if name in layers else processor
                             for name, processor in original.items()})
    try:
        yield trace
    finally:
        unet.set_attn_processor(dict(original))


__all__ = ["TextImageMethod", "CrossAttentionTrace", "CrossAttentionRecorder", "trace_cross_attention",
           "traced_layers", "word_token_positions", "prompt_token_ids", "call_generator", "check_texts",
           "to_image_grid"]
