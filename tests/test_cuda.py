"""`xattr run device=cuda` against the same run on the CPU, and `precision=bf16` against fp32 (marked ``cuda``).

Skipped where ``torch.cuda.is_available()`` is false (tests/conftest.py); ``scripts/gpu_check.sh`` runs them
on a machine with a GPU (``pytest -m cuda``). ``XATTR_CUDA_TEST_DEVICE=cpu`` runs them with the CPU in place
of the GPU, which checks the tests themselves (every comparison is then CPU against CPU).

Every run is ``debug=smoke`` (4 shapes images, one batch) with a random-init model from a checkpoint file, so
nothing is trained but DiffIB's small denoiser. Two models, because they answer "equal to what tolerance"
differently (measured on the CPU by emulating the GPU's arithmetic, see each test):

* ``tiny_vit`` (GELU, softmax, LayerNorm: the input gradient is a smooth function of every activation):
  1-ulp noise on every layer's output moves saliency / IG maps by <= 9e-7 of their largest value, so its
  CPU and GPU maps must agree elementwise (TF32 off).
* ``tiny_cnn`` (ReLU + max-pool; its BatchNorm statistics set from 64 training images and its head scaled
  x10, else a random tiny_cnn's logits hardly depend on the image): flat regions of the shapes images give
  exact ties in the first max-pool (1.5% of its windows), and rounding-level differences send the gradient
  down the other branch. 1-ulp noise on every convolution moved saliency maps by up to 55% of their largest
  value at a few pixels (Pearson 0.969-0.991), so its maps are compared by correlation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from xattr.cli import main
from xattr.data import ShapesDataset, collate
from xattr.models import build_model

pytestmark = pytest.mark.cuda

#: small settings per method (``method.<key>=``): seconds per run on the CPU
SETTINGS = {
    "saliency": [],
    "integrated_gradients": ["method.n_steps=16"],
    "iba": ["method.n_samples=64", "method.batch_size=40", "method.progress=false"],
    "diffib": ["method.steps=10", "method.patience=1000", "method.n_points=5", "method.denoiser.steps=20",
               "method.denoiser.train_size=64"],
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """``{"tiny_cnn": path, "tiny_vit": path}``: random-init state dicts for ``model.checkpoint=``."""
    folder = tmp_path_factory.mktemp("cuda-ckpt")
    torch.manual_seed(0)
    vit = build_model("tiny_vit", num_classes=6)
    torch.save(vit.net.state_dict(), folder / "tiny_vit.pt")
    torch.save(sharp_tiny_cnn().net.state_dict(), folder / "tiny_cnn.pt")
    return {"tiny_cnn": folder / "tiny_cnn.pt", "tiny_vit": folder / "tiny_vit.pt"}


def sharp_tiny_cnn() -> torch.nn.Module:
    """A random tiny_cnn whose logits depend on the image: BatchNorm statistics of 64 training images, head x10."""
    torch.manual_seed(0)
    model = build_model("tiny_cnn", num_classes=6)
    train = ShapesDataset("train", n_samples=64)
    batch = collate([train[i] for i in range(len(train))])
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: the statistics of this one batch
    with torch.no_grad():
        model.train()(batch["image"])
    for norm in norms:
        norm.momentum = 0.1
    model.net.classifier[-1].weight.data *= 10
    return model.eval()


@pytest.fixture()
def strict_fp32():
    """TF32 off for the test (on Ampere/Hopper torch runs cuDNN convolutions in TF32 by default)."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    yield
    conv.fp32_precision, matmul.fp32_precision = saved


def run_maps(root: Path, name: str, checkpoint: Path, method: str, *overrides: str, cache: str = "cache") -> np.ndarray:
    """The maps ``[4,C,H,W]`` of ``xattr run debug=smoke method=<method> <overrides>`` (in-process), run folder
    ``root/name``; the run must exit 0."""
    model = checkpoint.stem
    folder = root / name
    code = main(["run", "debug=smoke", f"model={model}", f"model.checkpoint={checkpoint}", f"method={method}",
                 "metric=[deletion]", "metric.deletion.step=0.25", f"paths.root_dir={root}",
                 f"paths.cache_dir={root / cache}", f"hydra.run.dir={folder}", *SETTINGS[method], *overrides])
    assert code == 0, f"xattr run method={method} {' '.join(overrides)} exited {code}"
    maps = np.load(folder / "maps.npz")["maps"]
    assert maps.shape[0] == 4 and np.isfinite(maps).all(), f"{name}: maps {maps.shape}, finite {np.isfinite(maps).all()}"
    return maps


def max_relative_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image: ``max |a - b| / max |a|``."""
    axes = tuple(range(1, a.ndim))
    return np.abs(a - b).max(axes) / np.abs(a).max(axes)


def correlations(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: (Pearson, Spearman) of the flattened maps."""
    pearson = np.array([np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b)])
    spearman = np.array([spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a, b)])
    return pearson, spearman


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_gradient_maps_equal_the_cpu_run(method, tmp_path, checkpoints, cuda_device, strict_fp32):
    """tiny_vit, TF32 off: max |GPU - CPU| <= 1e-3 of the CPU map's largest value, per image.

    Both sides are float32 and differ only in the order of their sums: 1-ulp noise on every layer moved these
    maps by <= 9e-7 of their maximum on the CPU (1,000x margin). TF32, torch's default for cuDNN convolutions,
    is off here: emulated, it moved them by up to 28% at single pixels (Pearson >= 0.995)."""
    cpu = run_maps(tmp_path, "cpu", checkpoints["tiny_vit"], method, "device=cpu")
    gpu = run_maps(tmp_path, "gpu", checkpoints["tiny_vit"], method, f"device={cuda_device}")
    difference = max_relative_difference(cpu, gpu)
    assert (difference <= 1e-3).all(), f"{method}: max |GPU - CPU| / max |CPU| per image {difference}"


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_cnn_gradient_maps_correlate_with_the_cpu_run(method, tmp_path, checkpoints, cuda_device):
    """tiny_cnn with torch's defaults (TF32 convolutions): Pearson >= 0.95 per image.

    Max-pool ties make these maps jump under rounding-level changes (module doc): emulated on the CPU, 1-ulp
    noise gave Pearson 0.969-0.991 (saliency) / 0.989-0.991 (IG), TF32 rounding 0.968-0.985 / 0.987-0.994."""
    cpu = run_maps(tmp_path, "cpu", checkpoints["tiny_cnn"], method, "device=cpu")
    gpu = run_maps(tmp_path, "gpu", checkpoints["tiny_cnn"], method, f"device={cuda_device}")
    pearson, _ = correlations(cpu, gpu)
    assert (pearson >= 0.95).all(), f"{method}: Pearson(GPU, CPU) per image {pearson}"


def test_iba_matches_the_cpu_run_up_to_its_noise(tmp_path, checkpoints, cuda_device):
    """IBA (tiny_cnn, 40 draws): Pearson and Spearman >= 0.95 per image.

    IBA draws its noise from a generator on the run's device, and CUDA's generator is not the CPU's: the GPU
    map is another sample of the estimator. On the CPU two seeds (two noise streams) gave Pearson >= 0.988,
    Spearman >= 0.984; TF32 rounding, emulated, >= 0.999. Each device computes its own feature statistics."""
    cpu = run_maps(tmp_path, "cpu", checkpoints["tiny_cnn"], "iba", "device=cpu", cache="cache-cpu")
    gpu = run_maps(tmp_path, "gpu", checkpoints["tiny_cnn"], "iba", f"device={cuda_device}", cache="cache-gpu")
    pearson, spearman = correlations(cpu, gpu)
    assert (pearson >= 0.95).all() and (spearman >= 0.95).all(), \
        f"iba: Pearson(GPU, CPU) {pearson}, Spearman {spearman}"


def test_diffib_runs_on_the_gpu_with_the_cpu_trained_denoiser(tmp_path, checkpoints, cuda_device):
    """DiffIB (tiny_cnn, MMSE integral) on the GPU with the denoiser the CPU run trained and cached: exit 0,
    finite maps of the CPU run's shape, no second denoiser.

    The maps' values are not compared: the per-sample fit draws its noise on the run's device, and on these
    random models a different noise stream gives a different map (two CPU noise streams: Pearson -0.54 to
    0.94 per image). The next test checks the GPU fit itself."""
    cpu = run_maps(tmp_path, "cpu", checkpoints["tiny_cnn"], "diffib", "device=cpu")
    gpu = run_maps(tmp_path, "gpu", checkpoints["tiny_cnn"], "diffib", f"device={cuda_device}")
    assert gpu.shape == cpu.shape
    denoisers = [p.name for p in (tmp_path / "cache" / "denoisers").glob("*.pt") if not p.name.endswith(".partial.pt")]
    assert len(denoisers) == 1, f"the GPU run trained its own denoiser: {denoisers}"


def test_diffib_batched_fit_on_the_gpu_equals_one_image_at_a_time(tmp_path, checkpoints, cuda_device, strict_fp32):
    """DiffIB's alpha maps (tiny_vit, 10 Adam steps, TF32 off), 4 images per batch vs 1: max |diff| <= 1e-3
    (alpha is a log-SNR in [-10, 10]). The same device draws the same noise per image whatever the batch;
    on the CPU, with 1-ulp noise on every layer of the single-image runs, the two differed by <= 5e-6."""
    overrides = [f"device={cuda_device}", "method.output=alpha"]
    batched = run_maps(tmp_path, "batched", checkpoints["tiny_vit"], "diffib", *overrides)
    single = run_maps(tmp_path, "single", checkpoints["tiny_vit"], "diffib", *overrides, "batch_size=1")
    assert np.abs(batched - 5.0).max() > 0.1, "the fit did not move alpha from its initial value"
    difference = np.abs(batched - single).max()
    assert difference <= 1e-3, f"diffib alpha: max |batched - one at a time| = {difference:.2e}"


@pytest.mark.parametrize(("model", "method", "bound"), [
    ("tiny_vit", "saliency", 0.98),
    ("tiny_vit", "integrated_gradients", 0.98),
    ("tiny_cnn", "saliency", 0.8),
    ("tiny_cnn", "iba", 0.95),
])
def test_bf16_maps_correlate_with_fp32(model, method, bound, tmp_path, checkpoints, cuda_device):
    """``precision=bf16`` vs ``precision=fp32`` on the same device: Pearson >= ``bound`` per image.

    The bounds come from the same runs under CPU bf16 autocast (the whole method, IBA's capacity included):
    tiny_vit saliency >= 0.993, IG >= 0.9997; tiny_cnn saliency 0.873-0.890 (max-pool ties again), IBA >= 0.993.
    DiffIB is left out: its per-sample fit amplifies rounding (bf16 vs fp32 on the CPU: Pearson -0.10 to 0.94).
    Identical maps would mean autocast never reached the method: that fails too."""
    fp32 = run_maps(tmp_path, "fp32", checkpoints[model], method, f"device={cuda_device}", "precision=fp32")
    bf16 = run_maps(tmp_path, "bf16", checkpoints[model], method, f"device={cuda_device}", "precision=bf16")
    assert not np.array_equal(fp32, bf16), f"precision=bf16 gave the fp32 maps bit for bit ({model} {method})"
    pearson, spearman = correlations(fp32, bf16)
    assert (pearson >= bound).all(), f"{model} {method}: Pearson(bf16, fp32) {pearson} (Spearman {spearman})"
