"""Text-image methods: contract tests over every ``conf/method/*.yaml`` whose ``_target_`` is a
:class:`~xattr.methods._text_image.TextImageMethod` (globbed, so a new one is covered as it lands), on a
random-init 16 px ``tiny_t2i`` built in memory — shape, dtype, finiteness, determinism under a seed, each image
of a batch with its own prompt and word, no attention processor or hook left after success or an exception —
and behavioural tests of the information maps, the cross-attention recorder and DAAM's aggregation.

Cheap settings per method live in ``FAST_OVERRIDES`` (a handful of draws / DDIM steps).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from xattr.data.shapes_captions import VOCABULARY
from xattr.errors import XattrError, find_xattr_error
from xattr.info.pointwise import pixel_map, pointwise_information
from xattr.methods._text_image import (
    CrossAttentionRecorder,
    CrossAttentionTrace,
    TextImageMethod,
    call_generator,
    trace_cross_attention,
    traced_layers,
    word_token_positions,
)
from xattr.methods.daam import DAAM, ddim_step, ddim_timesteps
from xattr.methods.info_cmi import InfoCMI
from xattr.methods.info_mi import InfoMI
from xattr.models.text_to_image import TextToImageModel
from xattr.models.tiny_t2i import build_tiny_t2i_pipeline
from xattr.utils.hooks import count_hooks

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "method"
TEXT_IMAGE_FILES = [p for p in sorted(CONF_DIR.glob("*.yaml"))
                    if issubclass(hydra.utils.get_class(OmegaConf.load(p)["_target_"]), TextImageMethod)]
#: cheap hyper-parameters per method (yaml stem -> overrides)
FAST_OVERRIDES: dict[str, dict] = {
    "info_cmi": {"n_draws": 3},
    "info_mi": {"n_draws": 3},
    "daam": {"steps": 3},
    "attention_information": {"n_draws": 3},
}
#: methods without random draws (the same map under any seed)
DETERMINISTIC = {"daam"}
PROMPTS = ["a red star to the left of a blue ring", "a small green circle above a large yellow square"]
WORDS = ["star", "green"]


def test_every_text_image_config_is_covered():
    stems = {p.stem for p in TEXT_IMAGE_FILES}
    assert {"info_cmi", "info_mi", "daam", "attention_information"} <= stems
    assert stems <= set(FAST_OVERRIDES), f"add cheap settings for {stems - set(FAST_OVERRIDES)} to FAST_OVERRIDES"


@pytest.fixture(scope="module")
def model() -> TextToImageModel:
    return TextToImageModel(build_tiny_t2i_pipeline(VOCABULARY, image_size=16, seed=0), name="tiny_t2i")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def make_method(path: Path, model, **overrides):
    cfg = OmegaConf.load(path)
    for key, value in {**FAST_OVERRIDES.get(path.stem, {}), **overrides}.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return hydra.utils.instantiate(cfg, model=model)


def seeded(method, x, prompts, words, seed=0):
    torch.manual_seed(seed)
    return method.attribute(x, prompts, words)


def processor_state(model):
    return [(name, id(proc), type(proc)) for name, proc in model.unet.attn_processors.items()]


def nothing_left(model):
    return processor_state(model), count_hooks(model.unet) + count_hooks(model.text_encoder)


CASES = [pytest.param(p, id=p.stem) for p in TEXT_IMAGE_FILES]


# --------------------------------------------------------------------------- contract

@pytest.mark.parametrize("path", CASES)
def test_text_image_contract(path, model, images):
    before = nothing_left(model)
    method = make_method(path, model)
    maps = seeded(method, images, PROMPTS, WORDS)
    assert maps.shape == (2, 1, 16, 16) and maps.dtype == torch.float32 and maps.device == images.device
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0
    assert torch.equal(maps, seeded(method, images, PROMPTS, WORDS)), "not deterministic under a seed"
    other = seeded(method, images, PROMPTS, WORDS, seed=1)
    if path.stem in DETERMINISTIC:
        assert torch.allclose(other, maps, rtol=1e-5, atol=1e-7)
    else:
        assert not torch.equal(other, maps), "the batch seed does not reach the draws"
    assert nothing_left(model) == before
    # a bigger image: the map comes back at the image's resolution
    big = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    assert seeded(method, big, PROMPTS, WORDS).shape == (2, 1, 32, 32)


@pytest.mark.parametrize("path", CASES)
def test_each_image_gets_its_own_map(path, model, images):
    """Changing image 1's picture, prompt and word leaves image 0's map as it was and changes image 1's."""
    method = make_method(path, model)
    maps = seeded(method, images, PROMPTS, WORDS)
    changed = torch.stack([images[0], images[1].flip(-1)])
    other = seeded(method, changed, [PROMPTS[0], "a large white ring below a purple star"], [WORDS[0], "ring"])
    assert torch.allclose(other[0], maps[0], rtol=1e-5, atol=1e-7)
    assert not torch.allclose(other[1], maps[1], rtol=1e-3, atol=1e-6)
    if path.stem in DETERMINISTIC:  # no draws: a batch equals its images one at a time
        single = torch.cat([seeded(method, images[i:i + 1], PROMPTS[i:i + 1], WORDS[i:i + 1]) for i in range(2)])
        assert torch.allclose(single, maps, rtol=1e-4, atol=1e-6)


class Explode:
    """A forward hook on the UNet's ``conv_out`` that raises while armed: after every attention layer ran."""

    def __init__(self):
        self.armed = True

    def __call__(self, module, inputs, output):
        if self.armed:
            raise RuntimeError("boom: raised mid-UNet by the contract test")


@pytest.mark.parametrize("path", CASES)
def test_nothing_left_after_an_exception(path, model, images):
    before = nothing_left(model)
    method = make_method(path, model)
    handle = model.unet.conv_out.register_forward_hook(Explode())
    try:
        with pytest.raises(RuntimeError, match="boom"):
            seeded(method, images, PROMPTS, WORDS)
        mid_trace = processor_state(model)
    finally:
        handle.remove()
    assert mid_trace == before[0] and nothing_left(model) == before
    assert torch.isfinite(seeded(method, images, PROMPTS, WORDS)).all()  # still usable


@pytest.mark.parametrize("path", CASES)
def test_bad_inputs_are_one_line_errors(path, model, images, tiny_cnn):
    method = make_method(path, model)
    with pytest.raises(XattrError, match="list of 2 strings"):
        method.attribute(images, PROMPTS[:1], WORDS)
    with pytest.raises(XattrError, match="words\\[1\\] is empty"):
        method.attribute(images, PROMPTS, [WORDS[0], ""])
    with pytest.raises(Exception) as info:  # noqa: PT011 - instantiate wraps; the XattrError is inside
        make_method(path, tiny_cnn)
    message = str(find_xattr_error(info.value))
    assert "\n" not in message and "not tiny_cnn" in message and "model=tiny_t2i" in message


# --------------------------------------------------------------------------- information maps

def test_info_cmi_word_not_in_caption_names_word_and_caption(model, images):
    method = InfoCMI(model, n_draws=2)
    with pytest.raises(XattrError) as info:
        method.attribute(images, PROMPTS, ["star", "ring"])   # "ring" is not in the second caption
    message = str(info.value)
    assert "\n" not in message and "'ring'" in message and repr(PROMPTS[1]) in message
    with pytest.raises(XattrError, match="'sta'"):          # a part of a word is not the word
        method.attribute(images, PROMPTS, ["sta", "green"])


@pytest.mark.parametrize("estimator", ["i_o", "i_s"])
def test_info_cmi_is_pointwise_information_on_the_same_draws(model, images, estimator):
    """The map is pixel_map of pointwise_information(caption, caption without the word) on the latent, drawn
    from the same generator; the diagnostics are its image-level values."""
    method = InfoCMI(model, n_draws=4, estimator=estimator, seed=7)
    torch.manual_seed(11)
    maps = method.attribute(images, PROMPTS, WORDS)
    contexts = ["a red to the left of a blue ring", "a small circle above a large yellow square"]
    with torch.no_grad():
        torch.manual_seed(11)
        generator = call_generator(7, "cpu")
        out = pointwise_information(model.eps, model.encode_image(images), model.encode_prompt(PROMPTS),
                                    model.encode_prompt(contexts), n_draws=4, generator=generator, chunk_size=32)
    assert torch.allclose(maps, pixel_map(out[f"{estimator}_map"]), rtol=1e-5, atol=1e-7)
    diagnostics = method.diagnostics()
    assert set(diagnostics) == {"i_o", "i_s"} and diagnostics["i_o"].shape == (2,)
    assert torch.allclose(diagnostics["i_o"], out["i_o"]) and torch.allclose(diagnostics["i_s"], out["i_s"])
    if estimator == "i_o":
        assert (maps >= 0).all() and torch.allclose(maps.flatten(1).sum(1), diagnostics["i_o"], rtol=1e-4)


def test_info_conditions(model):
    assert InfoCMI(model).conditions(["a red star", "a blue ring above a star"], ["red", "star"]) == \
        (["a red star", "a blue ring above a star"], ["a star", "a blue ring above a"])
    assert InfoMI(model).conditions(["a red star", "a blue ring"], ["red", "ring"]) == (["red", "ring"], ["", ""])


def test_info_cmi_map_does_not_depend_on_chunk_size(model, images):
    a = seeded(InfoCMI(model, n_draws=3, chunk_size=4), images, PROMPTS, WORDS)
    b = seeded(InfoCMI(model, n_draws=3, chunk_size=64), images, PROMPTS, WORDS)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- the cross-attention recorder

@pytest.mark.parametrize("default", ["AttnProcessor2_0", "AttnProcessor"])
def test_recorder_matches_the_default_processor_and_softmax(model, default):
    """With the trace on, the UNet's output is the default processor's (to ~1e-6), and each layer's recorded
    probabilities equal softmax(QKᵀ/√d) computed here from the layer's inputs."""
    from diffusers.models import attention_processor

    unet = model.unet
    original = dict(unet.attn_processors)
    unet.set_attn_processor(getattr(attention_processor, default)())
    try:
        z = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        embeds = model.encode_prompt(PROMPTS)
        logsnr = torch.tensor([0.5, -1.0])
        reference = model.eps(z, logsnr, embeds)
        inputs: dict[str, tuple] = {}
        layers = traced_layers(unet, include_mid=True)
        modules = {name: unet.get_submodule(name.removesuffix(".processor")) for name in layers}
        handles = [module.register_forward_pre_hook(
            lambda m, args, kwargs, name=name: inputs.__setitem__(name, (args[0], kwargs["encoder_hidden_states"])),
            with_kwargs=True) for name, module in modules.items()]
        trace = CrossAttentionTrace(2, (16, 16))
        try:
            with trace_cross_attention(unet, trace, include_mid=True):
                trace.begin_call()
                traced = model.eps(z, logsnr, embeds)
        finally:
            for handle in handles:
                handle.remove()
        assert torch.allclose(traced, reference, atol=1e-6, rtol=1e-5)
        assert set(trace.sums) == set(layers) and trace.calls.tolist() == [1, 1]
        for name, (hidden, context) in inputs.items():
            attn = modules[name]
            heads = attn.heads
            q = attn.to_q(hidden).unflatten(-1, (heads, -1)).transpose(1, 2)        # [B, heads, hw, d]
            k = attn.to_k(context).unflatten(-1, (heads, -1)).transpose(1, 2)       # [B, heads, L, d]
            probs = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
            recorded = trace.sums[name]                                            # [B, heads, h, w, L]
            assert torch.allclose(recorded.flatten(2, 3), probs, atol=1e-6), name
        assert [type(p) for p in unet.attn_processors.values()] == [getattr(attention_processor, default)] * len(original)
    finally:
        unet.set_attn_processor(dict(original))  # it pops from the dict it is given
    assert [id(p) for p in unet.attn_processors.values()] == [id(p) for p in original.values()]


def test_traced_layers_mid_block_and_attn1_untouched(model):
    unet = model.unet
    without, with_mid = traced_layers(unet), traced_layers(unet, include_mid=True)
    assert all(".attn2." in name for name in with_mid) and not any(n.startswith("mid_block.") for n in without)
    assert set(with_mid) - set(without) == {n for n in with_mid if n.startswith("mid_block.")} != set()
    before = dict(unet.attn_processors)
    trace = CrossAttentionTrace(1, (16, 16))
    with trace_cross_attention(unet, trace):
        during = unet.attn_processors
        for name, processor in during.items():
            if name in without:
                assert isinstance(processor, CrossAttentionRecorder)
            else:  # attn1 and (by default) the mid block keep their very processor objects
                assert processor is before[name]


def test_recorder_grid_on_a_hand_made_attention():
    """A one-head attention layer whose left-half pixels look at token 1 and right-half pixels at token 2 (on
    a non-square 4x8 grid): the trace's maps of tokens 1 and 2 are those halves, not transposed or shifted."""
    from diffusers.models.attention_processor import Attention

    attn = Attention(query_dim=2, cross_attention_dim=2, heads=1, dim_head=2, bias=False).eval()
    with torch.no_grad():
        attn.to_q.weight.copy_(torch.eye(2))
        attn.to_k.weight.copy_(20 * torch.eye(2))
        attn.to_v.weight.copy_(torch.eye(2))
    left = torch.zeros(4, 8, dtype=torch.bool)
    left[:, :4] = True
    hidden = torch.stack([left.flatten().float(), (~left).flatten().float()], dim=-1)[None]   # [1, 32, 2]
    tokens = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])                  # [1, L=4, 2]
    trace = CrossAttentionTrace(1, (4, 8))
    attn.set_processor(CrossAttentionRecorder("hand", trace))
    trace.begin_call()
    with torch.no_grad():
        attn(hidden, encoder_hidden_states=tokens)
    maps = trace.token_maps(0, [1, 2])
    assert maps.shape == (2, 4, 8)
    assert (maps[0][left] > 0.9).all() and (maps[0][~left] < 0.1).all()
    assert (maps[1][~left] > 0.9).all() and (maps[1][left] < 0.1).all()
    assert torch.allclose(trace.word_map(0, [1, 2]), maps.mean(0))


# --------------------------------------------------------------------------- DAAM's word tokens and aggregation

def test_word_token_positions(model):
    tokenizer = model.tokenizer
    assert word_token_positions(tokenizer, "a red star", "star") == [3]          # 0 is the start token
    assert word_token_positions(tokenizer, "a red star and a red ring", "red") == [2, 6]
    # a word outside the vocabulary falls apart into letters: every token of it counts
    assert word_token_positions(tokenizer, "a red zq star", "zq") == [3, 4]
    with pytest.raises(XattrError, match="'ring'.*'a red star'"):
        word_token_positions(tokenizer, "a red star", "ring")


def test_daam_word_map_is_the_mean_over_its_tokens(model, images):
    """A two-token word's DAAM map equals the mean of the per-token maps recorded in the same trace."""
    prompts, words = ["a red zq star", "a blue ring"], ["zq", "ring"]
    method = DAAM(model, steps=2)
    maps = method.attribute(images, prompts, words)
    captured = {}
    original = CrossAttentionTrace.word_map

    def spy(self, image, positions, size=None):
        captured[image] = self.token_maps(image, positions, size)
        return original(self, image, positions, size)

    CrossAttentionTrace.word_map = spy
    try:
        again = method.attribute(images, prompts, words)
    finally:
        CrossAttentionTrace.word_map = original
    assert torch.equal(maps, again) and captured[0].shape == (2, 16, 16) and captured[1].shape == (1, 16, 16)
    assert torch.allclose(maps[0, 0], captured[0].mean(0)) and torch.allclose(maps[1, 0], captured[1][0])
    assert (maps >= 0).all()


def test_ddim_timesteps_are_the_schedulers():
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    for steps in (3, 50):
        scheduler.set_timesteps(steps)
        assert ddim_timesteps(1000, steps, 1) == sorted(scheduler.timesteps.tolist())


def test_ddim_step_inverts_itself():
    z, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    there = ddim_step(z, eps, None, 0.5)
    assert torch.allclose(ddim_step(there, eps, 0.5, None), z, atol=1e-6)
    assert torch.allclose(ddim_step(ddim_step(z, eps, 2.0, -1.0), eps, -1.0, 2.0), z, atol=1e-5)


def test_trace_averages_calls_and_every_layer_head_map():
    """Known probabilities: layer a (4x4, 2 heads: 1 and 3), layer b (2x2, 4 heads: 5) over two calls of image 1
    (values doubled on the second call): the map is the mean over calls, then over all six (layer, head) maps —
    no head or image dropped (daam 0.2.0 keeps only the second half of the batch x heads axis)."""
    trace = CrossAttentionTrace(2, (4, 4))
    for scale in (1.0, 2.0):
        trace.begin_call(torch.tensor([1]))
        probs_a = torch.ones(1, 2, 16, 3) * torch.tensor([1.0, 3.0]).view(1, 2, 1, 1) * scale
        trace.add("a", probs_a)
        trace.add("b", torch.full((1, 4, 4, 3), 5.0 * scale))
    assert trace.calls.tolist() == [0, 2]
    maps = trace.token_maps(1, [0, 2])
    assert maps.shape == (2, 4, 4) and torch.allclose(maps, torch.full_like(maps, 1.5 * (1 + 3 + 4 * 5) / 6))
    with pytest.raises(XattrError, match="image 0 had no traced UNet call"):
        trace.token_maps(0, [0])
