"""``tiny_t2i``: the construction of a small pixel-space text-to-image pipeline, saved as a diffusers folder.

The folder has Stable Diffusion's layout (``model_index.json`` of a ``StableDiffusionPipeline`` with
``"vae": [null, null]``), so :func:`xattr.models.text_to_image.load_pipeline_folder` reads it exactly as it
reads SD 2.1. Its parts, all from configs (nothing is downloaded):

- a ``UNet2DConditionModel`` of about 1M parameters on 3×32×32 images: widths 32/48/48, one ResNet per
  level, cross-attention at 16×16 and 8×8 (and the 8×8 mid block) only — a transformer block at 32×32 would
  cost about 6× per step on CPU;
- a 2-layer ``CLIPTextModel`` (width 64) from ``CLIPTextConfig``;
- a ``CLIPTokenizer`` built from a word list (:func:`build_word_tokenizer`): every word is one token, a word
  outside the list falls apart into letters;
- a ``DDPMScheduler`` with the linear β schedule (1e-4 … 0.02 over 1000 steps: log-SNR ≈ [−10.1, 9.2], which
  suits pixel space), ε-prediction.

Training it is :mod:`xattr.training.text_to_image`'s job; the vocabulary comes from the caption grammar
(``xattr.data.shapes_captions.VOCABULARY``), handed in as an argument.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from xattr.errors import XattrError

#: CLIP's special tokens (the same strings as OpenAI's tokenizer: the pipeline code knows them)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: the end-of-word marker of CLIP's BPE
END = "</w>"
#: the letters every word of the vocabulary is made of (after lower-casing)
WORD = re.compile(r"[a-z]+")


def _bpe_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """Byte-pair merges that turn every word of ``words`` into one symbol: BPE training on the word list
    (each word counted once; most frequent pair first, ties broken by the pair's text, so it is deterministic).
    Applying the merges in this order (what the tokenizer does) re-enacts the training, word by word."""
    pieces = {word: [*word[:-1], word[-1] + END] for word in words}
    merges: list[tuple[str, str]] = []
    while True:
        counts: Counter[tuple[str, str]] = Counter()
        for symbols in pieces.values():
            counts.update(zip(symbols[:-1], symbols[1:], strict=True))
        if not counts:
            return merges
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges.append(pair)
        for word, symbols in pieces.items():
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            pieces[word] = merged


def build_word_tokenizer(vocabulary: Sequence[str], *, max_length: int = 32):
    """A ``CLIPTokenizer`` (transformers) in which every word of ``vocabulary`` is exactly one token.

    The vocabulary is the special tokens, the 26 letters (alone and word-final) and every merge product of
    :func:`_bpe_merges`; it is passed as ``vocab=``/``merges=`` (with transformers 5 a ``vocab_file=`` is
    silently ignored and leaves a 3-token vocabulary). ``max_length`` is ``model_max_length``: prompts are
    padded/truncated to it, as SD's 77.
    """
    from transformers import CLIPTokenizer

    words = sorted({str(word).lower() for word in vocabulary})
    bad = [word for word in words if not WORD.fullmatch(word)]
    if not words or bad:
        raise XattrError(f"tiny_t2i vocabulary: {bad or 'an empty list'} are not words of letters a-z; "
                         "pass the caption grammar's words (e.g. xattr.data.shapes_captions.VOCABULARY)")
    merges = _bpe_merges(words)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = [BOS, EOS, *letters, *(letter + END for letter in letters), *("".join(pair) for pair in merges)]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=max_length)
    split = [word for word in words if len(tokenizer(word, add_special_tokens=False)["input_ids"]) != 1]
    if split:  # the property the whole model relies on: a word's attention is one token's
        raise XattrError(f"tiny_t2i tokenizer: the words {split[:5]} are not single tokens; report this as a bug")
    return tokenizer


def tiny_unet_config(image_size: int = 32, cross_attention_dim: int = 64) -> dict:
    """The ``UNet2DConditionModel`` config of ``tiny_t2i`` (≈1.0M parameters at the defaults)."""
    return dict(sample_size=image_size, in_channels=3, out_channels=3, layers_per_block=1,
                block_out_channels=(32, 48, 48),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=8)


def tiny_text_config(tokenizer, *, width: int = 64, layers: int = 2, heads: int = 2) -> dict:
    """The ``CLIPTextConfig`` keywords of ``tiny_t2i``'s text encoder for ``tokenizer``."""
    return dict(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
                num_hidden_layers=layers, num_attention_heads=heads,
                max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def build_tiny_t2i_pipeline(vocabulary: Sequence[str], *, image_size: int = 32, seed: int = 0,
                            text_width: int = 64, max_length: int = 32, num_train_timesteps: int = 1000,
                            beta_start: float = 1e-4, beta_end: float = 0.02):
    """A randomly initialised pixel-space ``StableDiffusionPipeline`` (``vae=None``) for ``vocabulary``.

    Args:
        vocabulary: the words captions are made of (lower-case letters); each becomes one token.
        image_size: side of the square RGB images the UNet denoises (pixel space, ``[-1,1]``).
        seed: torch seed of the initialisation (the construction is deterministic given it).
        text_width: width of the CLIP text model = the UNet's ``cross_attention_dim``.
        max_length: tokens per prompt (padding included), the text model's positions.
        num_train_timesteps, beta_start, beta_end: the linear-β ``DDPMScheduler``.
    """
    from diffusers import DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if image_size % 4 or image_size < 8:
        raise XattrError(f"tiny_t2i image_size={image_size}: needs a multiple of 4, at least 8 (two downsamplings)")
    tokenizer = build_word_tokenizer(vocabulary, max_length=max_length)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(**tiny_text_config(tokenizer, width=text_width)))
        unet = UNet2DConditionModel(**tiny_unet_config(image_size, text_width))
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="linear",
                              beta_start=beta_start, beta_end=beta_end, prediction_type="epsilon", steps_offset=1,
                              clip_sample=False)
    return StableDiffusionPipeline(vae=None, text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                                   unet=unet.eval(), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def save_pipeline_folder(pipeline, path: str | os.PathLike) -> Path:
    """``pipeline.save_pretrained`` into ``path`` atomically: written to a temporary sibling folder, then
    renamed, so a folder that exists is complete (an existing ``path`` is replaced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        pipeline.save_pretrained(tmp, safe_serialization=True)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path
