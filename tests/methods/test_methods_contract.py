"""Contract tests over every method config in ``conf/method/`` (globbed, so new methods are covered as
they land): instantiate with ``model=tiny_cnn`` (and ``tiny_vit`` for methods declaring
``supports_transformers = True``), ``prepare`` on a small shapes train split, then check shape, dtype,
finiteness, per-image targets in a batch, determinism under a seed, and that no hook, ``requires_grad``
or train/eval change is left behind — after success and after a forward pass that raised.

Expensive methods get cheap settings in ``FAST_OVERRIDES`` (extend it for your method).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from xattr.data import ShapesDataset
from xattr.methods.base import RunContext
from xattr.models import build_model
from xattr.utils.hooks import count_hooks

#: cheap hyper-parameters per method (yaml stem -> overrides), so the whole file stays fast
FAST_OVERRIDES: dict[str, dict] = {
    "integrated_gradients": {"n_steps": 8},
    "blur_ig": {"n_steps": 4},
    "guided_ig": {"n_steps": 4},
    "expected_gradients": {"n_samples": 4, "reference_bank": 8},
    "ig2": {"steps": 3, "n_references": 2, "reference_bank": 8},
    "spi": {"n_paths": 1, "n_steps": 4, "n_breaks": 50},
    # a 2-step path model (trained in prepare) on a 4x4 grid with K = 4; faithfulness guidance on, so the
    # classifier also runs inside the sampler
    "diffig": {"n_paths": 2, "n_steps": 4, "sampling_steps": 2, "energies": {"faithfulness": {"weight": 0.1}},
               "path_model": {"steps": 2, "batch_size": 2, "train_size": 4, "grid": 4, "n_steps": 4, "n_breaks": 20,
                              "width": 8}},
    "smoothgrad": {"n_samples": 4},
    "deepliftshap": {"n_noise": 1},
    "beyond_intuition": {"steps": 4},
    "iia": {"steps": 2},
    # random-init logits hardly depend on the input: a small β lets the target show within a few steps
    "iba": {"n_samples": 32, "optimization_steps": 2, "batch_size": 2, "beta": 0.001, "progress": False},
    "input_iba": {"n_samples": 32, "feat_steps": 2, "feat_batch_size": 2, "gan_dataset_size": 8,
                  "gan_sub_dataset_size": 4, "gan_batch_size": 4, "gan_epochs": 1, "gan_critic_iter": 1,
                  "input_steps": 2, "input_batch_size": 2, "progress": False},
    "hsic": {"n_masks": 32, "batch_size": 32, "progress": False},
    "rise": {"n_masks": 32, "batch_size": 32, "progress": False},
    # a random-init classifier ignores its input, so a long fit drives every alpha to the floor (all-zero
    # maps, correctly); 4 steps keep alpha near its start, and a 5-step denoiser keeps prepare() cheap
    "diffib": {"steps": 4, "n_points": 5, "n_noise": 1,
               "denoiser": {"steps": 5, "batch_size": 4, "train_size": 16, "width": 8}},
}

#: methods whose map for an image depends on its position in the batch (e.g. noise drawn per batch)
#: diffib: the MMSE integral draws its noise per batch, and batched Adam fits drift by float round-off
BATCH_DEPENDENT: set[str] = {"smoothgrad", "diffib"}

#: batch-vs-single tolerance relative to the map's maximum (default 1e-5); LRP's stabilised divisions
#: amplify the float round-off of batched matrix products (measured 5e-4 on tiny_vit)
BATCH_RTOL: dict[str, float] = {"chefer_lrp": 2e-3}

#: methods whose maps do not depend on the target class (or set ``target_agnostic = True`` on the class)
TARGET_AGNOSTIC: set[str] = {"rollout"}

#: methods that never call the model (a control map), so no forward pass can raise inside them
MODEL_FREE: set[str] = {"random_map"}

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "method"
METHOD_FILES = sorted(CONF_DIR.glob("*.yaml"))
TARGETS = torch.tensor([0, 2, 5])


def method_class(path: Path) -> type:
    return hydra.utils.get_class(OmegaConf.load(path)["_target_"])


def applies(path: Path, family: str) -> bool:
    cls = method_class(path)
    if family == "cnn":
        return getattr(cls, "supports_cnn", True)
    return getattr(cls, "supports_transformers", False)


CASES = [pytest.param(p, "tiny_cnn", id=f"{p.stem}-tiny_cnn") for p in METHOD_FILES if applies(p, "cnn")]
CASES += [pytest.param(p, "tiny_vit", id=f"{p.stem}-tiny_vit") for p in METHOD_FILES if applies(p, "vit")]


@pytest.fixture(scope="module")
def train_dataset():
    return ShapesDataset("train", n_samples=64)


@pytest.fixture(scope="module")
def images():
    dataset = ShapesDataset("test", n_samples=3, seed=5)
    return torch.stack([dataset[i]["image"] for i in range(3)])


def build(model_name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(model_name, num_classes=6).eval()


class Explode:
    """Forward hook that raises while ``armed``: placed on a deep layer (tiny_cnn's Grad-CAM conv,
    tiny_vit's last block), so it fires mid-forward, after the method registered its own hooks.
    Hooks on shared modules also fire inside model views (e.g. DeepLIFT's torch.fx view)."""

    def __init__(self):
        self.armed = False

    def __call__(self, module, inputs, output):
        if self.armed:
            raise RuntimeError("boom: raised mid-forward by the contract test")


def explode_layers(model: nn.Module) -> list[nn.Module]:
    """tiny_cnn's Grad-CAM conv; every module of tiny_vit's last block (methods that re-run the blocks
    op by op, like LRP, still call some of them)."""
    return [model.net.features[24]] if model.spec.family == "cnn" else list(model.net.blocks[-1].modules())


def make_method(path: Path, model: nn.Module, tmp_path: Path, train_dataset, **overrides):
    cfg = OmegaConf.create({
        "method": OmegaConf.load(path),
        "paths": {"data_dir": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache"),
                  "output_dir": str(tmp_path / "out"), "root_dir": str(tmp_path)},
        "model": {"name": model.spec.name, "num_classes": 6, "image_size": 64},
        "dataset": {"name": "shapes", "image_size": 64, "split": "test", "seed": 0},
        "seed": 0, "device": "cpu",
    })
    for key, value in {**FAST_OVERRIDES.get(path.stem, {}), **overrides}.items():
        OmegaConf.update(cfg, f"method.{key}", value, force_add=True)
    method = hydra.utils.instantiate(cfg.method, model=model)
    method.prepare(RunContext(train_dataset=train_dataset, cache_dir=tmp_path / "cache", model_name=model.spec.name,
                              dataset_name="shapes", device="cpu", seed=0))
    return method


def seeded(method, x, target, seed=0):
    torch.manual_seed(seed)
    return method.attribute(x, target)


def model_state(model: nn.Module):
    return model.training, [p.requires_grad for p in model.parameters()], count_hooks(model)


@pytest.mark.parametrize(("path", "model_name"), CASES)
def test_method_contract(path, model_name, images, train_dataset, tmp_path):
    model = build(model_name)
    method = make_method(path, model, tmp_path, train_dataset)
    with torch.no_grad():
        reference_logits = model(images)
    state = model_state(model)
    assert state[2] == 0

    maps = seeded(method, images, TARGETS)
    assert maps.dtype == torch.float32 and maps.device == images.device
    assert maps.dim() == 4 and maps.shape[0] == 3 and maps.shape[-2:] == images.shape[-2:]
    assert maps.shape[1] in (1, images.shape[1])
    assert torch.isfinite(maps).all()
    assert maps.abs().sum() > 0, "all-zero maps"
    assert model_state(model) == state, "hooks, requires_grad or train/eval flag left changed"
    with torch.no_grad():
        assert torch.equal(model(images), reference_logits), "model outputs changed"

    # determinism under a seed
    torch.testing.assert_close(seeded(method, images, TARGETS), maps)

    # per-image targets inside one batch
    if path.stem not in BATCH_DEPENDENT:
        single = seeded(method, images[2:], TARGETS[2:])  # the last image alone gives its map in the batch
        scale = BATCH_RTOL.get(path.stem, 1e-5) * float(maps[2].abs().max())
        torch.testing.assert_close(single[0], maps[2], rtol=1e-4, atol=scale + 1e-8)
    if path.stem not in TARGET_AGNOSTIC and not getattr(type(method), "target_agnostic", False):
        other = seeded(method, images, TARGETS.roll(1))
        assert not torch.equal(other, maps), "maps ignore the target"  # exact: cheap settings move maps little


@pytest.mark.parametrize(("path", "model_name"), CASES)
def test_method_leaves_nothing_after_exception(path, model_name, images, train_dataset, tmp_path):
    if path.stem in MODEL_FREE:
        pytest.skip(f"{path.stem} never calls the model")
    model = build(model_name)
    method = make_method(path, model, tmp_path, train_dataset)
    explode = Explode()
    handles = [layer.register_forward_hook(explode) for layer in explode_layers(model)]
    try:
        state = model_state(model)  # counts our one hook
        before = seeded(method, images[:2], TARGETS[:2])  # builds any cached views first
        explode.armed = True
        with pytest.raises(Exception, match="boom"):
            method.attribute(images[:2], TARGETS[:2])
        explode.armed = False
        assert model_state(model) == state, "hooks, requires_grad or train/eval flag left after an exception"
        torch.testing.assert_close(seeded(method, images[:2], TARGETS[:2]), before)  # still works, same maps
    finally:
        for handle in handles:
            handle.remove()
    assert count_hooks(model) == 0


#: (method, the key that sets its number of iterations, a small and a larger value) for the host-sync check
ITERATION_KEYS = {
    "integrated_gradients": ("n_steps", 4, 8),
    "smoothgrad": ("n_samples", 2, 4),
    "deepliftshap": ("n_noise", 1, 2),
    "beyond_intuition": ("steps", 2, 4),
    "iia": ("steps", 2, 3),
    "iba": ("optimization_steps", 2, 4),
    "iba_star": ("steps", 2, 4),
    "iba_vit": ("steps", 2, 4),
    "coiba": ("steps", 2, 4),
    "input_iba": ("input_steps", 2, 4),
    "diffib": ("steps", 2, 4),
    "diffig": ("sampling_steps", 2, 4),
    "hsic": ("n_masks", 32, 64),
    "rise": ("n_masks", 32, 64),
}
#: host reads a method makes per iteration by design (method -> {call: reads per iteration}, with the reason)
#: diffib: Algorithm 1 fits "until converged": each step reads which images still fit (their own noise streams
#: and Adam states; stopped images leave the forward pass)
READS_PER_ITERATION: dict[str, dict[str, int]] = {"diffib": {"tolist": 1}}
SYNC_CASES = [case for case in CASES if case.values[0].stem in ITERATION_KEYS]


@pytest.mark.parametrize(("path", "model_name"), SYNC_CASES)
def test_host_reads_do_not_grow_with_the_iteration_count(path, model_name, images, train_dataset, tmp_path):
    """A method's hot loop keeps its tensors on the device: the number of values it reads back to the host
    (``item``, ``cpu``, ``bool(tensor)``, …; :mod:`sync_helpers`) is the same for more iterations. On a GPU each
    read stalls the device; this check runs on CPU because the calls are counted, not timed."""
    from sync_helpers import HostReads

    key, small, large = ITERATION_KEYS[path.stem]
    counts = []
    for value in (small, large):
        method = make_method(path, build(model_name), tmp_path / f"{key}{value}", train_dataset, **{key: value})
        with HostReads() as reads:
            seeded(method, images, TARGETS)
        counts.append(reads.counts)
    allowed = READS_PER_ITERATION.get(path.stem, {})
    counts[1].subtract({name: reads * (large - small) for name, reads in allowed.items()})
    assert counts[1] == counts[0], f"{path.stem}: host reads {dict(counts[0])} at {key}={small}, " \
                                   f"{dict(counts[1])} at {key}={large}"

