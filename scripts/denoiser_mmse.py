"""The denoiser behind DiffIB's Eq. 14, measured: its eps-MMSE over log-SNR against ground truth and bounds.

DiffIB's map (Eq. 14) is ``A_i = 1/2 int mmse_eps_i dalpha`` with the MMSE of a *trained* eps-denoiser; an
under-trained denoiser has a larger error and inflates every A_i. Two checks, both at one log-SNR ``alpha`` for
every coordinate (the I-MMSE curve ``dI/dalpha = 1/2 tr mmse_eps``):

(a) Gaussian ground truth. A circularly stationary Gaussian field of the shapes size (3x64x64; channel c is white
    noise filtered to the power-law spectrum ``(1 + |k|^2/k_c^2)^-p``, unit variance per pixel), whose covariance
    is diagonal in the 2-D DFT basis with the spectrum as eigenvalues. The project's trainer
    (:class:`~xattr.training.denoiser.DenoiserTrainer`, ``conf/task/denoiser.yaml`` defaults) fits a denoiser on
    ``train_size`` draws (given in pixel space ``mean + std * u`` so that its standardisation returns ``u``);
    its Monte-Carlo eps-MMSE on fresh draws is compared with ``sum_k sigmoid(alpha + log lam_k)``, and the
    information the code computes (:func:`xattr.info.mmse_integral`, DiffIB's defaults) with
    ``1/2 sum_k log(1 + e^alpha lam_k)``. The exact (DFT Wiener) denoiser through the same code is the control.
(b) shapes. The cached shapes denoiser(s) on held-out val images, next to the MMSE of a Gaussian with the data's
    covariance (estimated from ``cov_images`` training images; ``--cov-half``: also from the first half of them, to
    show the estimation bias), which upper-bounds the MMSE of any law with that covariance; the per-pixel (diagonal)
    Gaussian bound and the trivial bound ``min(1, e^alpha var_i)``.

Writes ``denoiser_mmse.csv`` and ``denoiser_mmse.png`` (both panels) to ``--out``; prints a summary.

    PYTHONPATH=. python scripts/denoiser_mmse.py [--quick] [--seed 0] [--cache-dir .cache]
        [--denoiser PATH ...] [--out outputs/diffib/tiny/denoiser_mmse]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from xattr.info import (
    gaussian_mmse_eps_eigen,
    gaussian_mutual_information_eigen,
    mmse_integral,
    noise_channel,
    stationary_eps_denoiser,
    stationary_gaussian,
)
from xattr.utils.cache import read as read_cache
from xattr.utils.io import atomic_savefig, atomic_torch_save, atomic_write_text

COLUMNS = ("panel", "quantity", "curve", "alpha", "value", "stderr")


@dataclass(frozen=True)
class Settings:
    """What one invocation measures; :data:`FULL` is the default, :data:`QUICK` (``--quick``) a smoke test."""

    image_size: int = 64
    alphas: tuple[float, ...] = tuple(float(a) for a in range(-10, 11))
    eval_images: int = 64              # fresh draws / val images per MMSE point
    noise_draws: int = 1               # eps draws per image and alpha (each averages C*H*W coordinates)
    info_images: int = 32              # images for the Eq. 14 integral (DiffIB's n_points / n_noise / alpha_min)
    info_ends: tuple[float, ...] = (0.0, 5.0, 10.0)
    n_points: int = 17
    n_noise: int = 2
    alpha_min: float = -10.0
    corners: tuple[float, ...] = (2.0, 4.0, 8.0)   # k_c per channel, cycles per image
    exponent: float = 1.5
    cov_images: int = 20_000           # > d = 12,288 for 3x64x64: a full-rank estimate (d/N = 0.61)
    cov_half: bool = False             # also the estimate from the first half (one more d^3 eigendecomposition)
    var_images: int = 2_000            # training images for the per-pixel variances when cov_images = 0
    trainer: dict = field(default_factory=dict)    # overrides of conf/task/denoiser.yaml (none at full settings)
    batch_size: int = 32


FULL = Settings()
QUICK = Settings(image_size=16, alphas=(-8.0, -2.0, 0.0, 2.0, 8.0), eval_images=4, info_images=2,
                 info_ends=(5.0,), n_points=5, n_noise=1, cov_images=1600, cov_half=True, var_images=64, batch_size=4,
                 trainer={"steps": 3, "batch_size": 4, "train_size": 16, "width": 4, "depth": 2, "save_every": 10})


# ------------------------------------------------------------------------------------------ measurements


def power_law_spectrum(size: int, corners: tuple[float, ...], exponent: float) -> torch.Tensor:
    """Eigenvalues ``[C,H,W]`` (float64) of the stationary field: ``lam_c(k) = (1 + |k|^2 / k_c^2)^-p`` at the DFT
    frequencies ``k`` (cycles per image), scaled to mean 1 per channel (unit variance per pixel). Even in ``k``
    and unchanged by a horizontal flip, so the trainer's flip augmentation keeps the law."""
    k = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64)
    radius2 = k[:, None] ** 2 + k[None, :] ** 2
    spectrum = torch.stack([(1 + radius2 / corner**2) ** -exponent for corner in corners])
    return spectrum / spectrum.mean(dim=(1, 2), keepdim=True)


@torch.no_grad()
def mmse_curve(eps_fn, u: torch.Tensor, alphas, *, noise_draws: int, batch_size: int, generator: torch.Generator,
               desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte-Carlo eps-MMSE per coordinate, ``mean_i E (eps_i - eps_hat_i(z, alpha))^2``, of ``eps_fn`` on images
    ``u`` ``[N,C,H,W]`` (standardised space) at each scalar log-SNR in ``alphas`` ``[K]``; ``z = noise_channel(u,
    alpha, eps)``. Returns ``(mean [K], stderr [K])``, the standard error over the N images."""
    means, errors = [], []
    for alpha in tqdm(list(alphas), desc=desc, leave=False):
        per_image = torch.zeros(u.shape[0], dtype=torch.float64)
        for start in range(0, u.shape[0], batch_size):
            x = u[start:start + batch_size]
            a = torch.full_like(x, float(alpha))
            for _ in range(noise_draws):
                eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
                err = (eps - eps_fn(noise_channel(x, a, eps), a).to(x.dtype)).pow(2)
                per_image[start:start + x.shape[0]] += err.flatten(1).double().mean(1) / noise_draws
        means.append(per_image.mean())
        errors.append(per_image.std() / math.sqrt(len(per_image)) if len(per_image) > 1 else torch.tensor(0.0))
    return torch.stack(means), torch.stack(errors).double()


def eq14_information(eps_fn, u: torch.Tensor, ends, settings: Settings, generator: torch.Generator,
                     desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_i A_i`` of :func:`xattr.info.mmse_integral` (Eq. 14, DiffIB's ``alpha_min``/``n_points``/``n_noise``)
    for a constant log-SNR field ``alpha = end``, averaged over the images ``u``: the code's ``I(X; Z_end) -
    I(X; Z_alpha_min)``. Returns ``(mean [E], stderr [E])`` in nats."""
    means, errors = [], []
    for end in tqdm(list(ends), desc=desc, leave=False):
        totals = []
        for start in range(0, u.shape[0], settings.batch_size):
            x = u[start:start + settings.batch_size]
            maps = mmse_integral(eps_fn, x, torch.full_like(x, float(end)), alpha_min=settings.alpha_min,
                                 n_points=settings.n_points, n_noise=settings.n_noise, chunk_size=64,
                                 generator=generator)
            totals.append(maps.flatten(1).double().sum(1))
        totals = torch.cat(totals)
        means.append(totals.mean())
        errors.append(totals.std() / math.sqrt(len(totals)) if len(totals) > 1 else torch.tensor(0.0))
    return torch.stack(means), torch.stack(errors).double()


def curve_information(alphas, per_coordinate_mmse: torch.Tensor, d: int, alpha_min: float) -> torch.Tensor:
    """``1/2 int_{alpha_min}^{alpha} d * mmse dalpha'`` by the trapezoid rule on the grid ``alphas`` (from its point
    ``alpha_min`` on), in nats ``[K]`` (NaN below ``alpha_min``): the information a curve integrates to."""
    alphas = torch.as_tensor(alphas, dtype=torch.float64)
    trace = per_coordinate_mmse.double() * d
    steps = 0.25 * (trace[1:] + trace[:-1]) * (alphas[1:] - alphas[:-1])
    cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), steps.cumsum(0)])
    start = int(torch.argmin((alphas - alpha_min).abs()))
    out = cumulative - cumulative[start]
    out[:start] = float("nan")
    return out


# ------------------------------------------------------------------------------------------ (a) Gaussian


def train_or_load(trainer, images: torch.Tensor, checkpoint: Path, seed: int, meta: dict):
    """The project's trainer ``trainer.fit`` on ``images`` (resumable at ``checkpoint``), or the finished checkpoint."""
    from xattr.training.denoiser import load_denoiser

    if checkpoint.exists():
        print(f"loading {checkpoint} (delete it to retrain)")
        return load_denoiser(checkpoint)
    trainer.fit(images, seed=seed, checkpoint=checkpoint, meta=meta)
    return load_denoiser(checkpoint)


def gaussian_panel(settings: Settings, seed: int, out: Path, checkpoint: str | None = None) -> tuple[list[dict], dict]:
    """(a): train on the stationary field (or take ``checkpoint``, e.g. a ``.partial.pt`` of that training), compare
    the MMSE curve and the Eq. 14 information with the closed forms."""
    from xattr.training.denoiser import DenoiserTrainer

    trainer = DenoiserTrainer.from_conf(**settings.trainer).filled()
    spectrum = power_law_spectrum(settings.image_size, settings.corners, settings.exponent)
    d = spectrum.numel()
    train_u = stationary_gaussian(spectrum, trainer.train_size, generator=torch.Generator().manual_seed(seed))
    mean = torch.tensor(trainer.mean).view(1, -1, 1, 1)
    std = torch.tensor(trainer.std).view(1, -1, 1, 1)
    label = f"{trainer.steps} steps"
    if checkpoint is None:
        denoiser = train_or_load(trainer, mean + std * train_u,
                                 out / f"gaussian-denoiser-{settings.image_size}-s{trainer.steps}-seed{seed}.pt", seed,
                                 {"dataset": "stationary-gaussian", "corners": list(settings.corners),
                                  "exponent": settings.exponent})
    else:
        label, denoiser = load_any_denoiser(checkpoint, trainer)
        label = label.removeprefix("denoiser, ")
    eval_u = stationary_gaussian(spectrum, settings.eval_images, generator=torch.Generator().manual_seed(seed + 1))
    exact_fn = stationary_eps_denoiser(spectrum)
    alphas = torch.tensor(settings.alphas, dtype=torch.float64)
    analytic = gaussian_mmse_eps_eigen(spectrum, alphas) / d
    # the per-pixel (diagonal) Gaussian bound sum_i sigmoid(alpha + log var_i) = sigmoid(alpha) for unit variances;
    # it is also the error of the untrained output v_hat = 0 (eps_hat = b z): a^4 + a^2 b^2 var_i summed
    pixel_variance = spectrum.mean(dim=(1, 2))                          # [C], 1 by construction
    diagonal = torch.sigmoid(alphas[:, None] + pixel_variance.log()[None]).mean(1)
    curves = {"analytic": (analytic, torch.zeros_like(analytic)),
              "diagonal bound (= v_hat = 0)": (diagonal, torch.zeros_like(diagonal))}
    for name, fn in (("denoiser", denoiser), ("exact denoiser (MC)", exact_fn)):
        curves[name] = mmse_curve(fn, eval_u, settings.alphas, noise_draws=settings.noise_draws,
                                  batch_size=settings.batch_size, generator=torch.Generator().manual_seed(seed + 2),
                                  desc=f"gaussian mmse: {name}")
    rows = [_row("gaussian", "mmse_eps", name, a, m, s) for name, (mean_, se) in curves.items()
            for a, m, s in zip(settings.alphas, mean_, se)]
    relative = curves["denoiser"][0] / analytic - 1
    rows += [_row("gaussian", "mmse_relative_error", "denoiser", a, r, s / m)
             for a, r, s, m in zip(settings.alphas, relative, curves["denoiser"][1], analytic)]
    info_u = eval_u[:settings.info_images]
    ends = torch.tensor(settings.info_ends, dtype=torch.float64)
    exact_info = gaussian_mutual_information_eigen(spectrum, ends)
    floor = gaussian_mutual_information_eigen(spectrum, torch.tensor([settings.alpha_min]))[0]
    info = {"exact I(alpha)": (exact_info, torch.zeros_like(exact_info)),
            "exact I(alpha) - I(alpha_min)": (exact_info - floor, torch.zeros_like(exact_info))}
    for name, fn in (("eq14 denoiser", denoiser), ("eq14 exact denoiser", exact_fn)):
        info[name] = eq14_information(fn, info_u, settings.info_ends, settings,
                                      torch.Generator().manual_seed(seed + 3), f"eq14 info: {name}")
    rows += [_row("gaussian", "info_nats", name, a, m, s) for name, (mean_, se) in info.items()
             for a, m, s in zip(settings.info_ends, mean_, se)]
    summary = {"alphas": settings.alphas, "relative": relative, "ends": settings.info_ends, "info": info,
               "steps": label, "train_size": trainer.train_size, "curves": curves, "d": d}
    return rows, summary


# ------------------------------------------------------------------------------------------ (b) shapes


def standardised_shapes(split: str, count: int, size: int, mean, std, *, length: int | None = None) -> torch.Tensor:
    """``count`` shapes images of ``split`` rendered like the trainer does (uint8, then ``/255``) and standardised
    ``(x - mean) / std``: ``[N,C,H,W]`` float32."""
    from xattr.data import ShapesDataset
    from xattr.models.standardise import standardiser
    from xattr.training._loop import materialise

    data = ShapesDataset(split, image_size=size, n_samples=None, length=length)
    images = materialise(data, count, desc=f"render {split}").float() / 255.0
    return standardiser(mean, std, images.shape[1])(images)


def covariance_eigenvalues(settings: Settings, mean, std, cache: Path) -> dict[str, torch.Tensor]:
    """Eigenvalues of the covariance of ``cov_images`` standardised shapes *training* images (``full``), with
    ``cov_half`` of the first half of them (``half``), and the per-coordinate variances (``var``); cached at
    ``cache``. The sample covariance's Gaussian MMSE is biased low (the Gaussian MMSE is concave in the covariance,
    Jensen), so it flags "above the bound" too easily rather than too rarely. Second moments
    are accumulated in chunks (float32 products of chunk-centred data, float64 sums); eigenvalues in float64."""
    if cache.exists():
        return read_cache(cache, "covariance")
    n, chunk = settings.cov_images, 1024
    half = n // 2
    shift, sums, grams, counts = None, {}, {}, {}
    for start in tqdm(range(0, n, chunk), desc="shapes covariance"):
        stop = min(start + chunk, n)
        for part, (lo, hi) in (("half", (start, min(stop, half))), ("rest", (max(start, half), stop))):
            if hi <= lo:
                continue
            x = _train_images(lo, hi, settings.image_size, mean, std, n).flatten(1)
            shift = x.mean(0) if shift is None else shift
            xc = x - shift
            sums[part] = sums.get(part, 0) + xc.double().sum(0)
            grams[part] = grams.get(part, 0) + (xc.T @ xc).double()
            counts[part] = counts.get(part, 0) + xc.shape[0]
    result = {}
    for name, parts in (("half", ("half",)), ("full", ("half", "rest"))):
        if name == "half" and not settings.cov_half:
            continue
        count = sum(counts[p] for p in parts)
        s = sum(sums[p] for p in parts)
        cov = (sum(grams[p] for p in parts) - torch.outer(s, s) / count) / (count - 1)
        if name == "full":
            result["var"] = cov.diagonal().clone()
        tqdm.write(f"eigenvalues of the {name} covariance ({count} images, d = {cov.shape[0]})")
        result[name] = torch.linalg.eigvalsh(cov).clamp_min(0.0)
        del cov
    result["counts"] = torch.tensor([counts["half"], counts["half"] + counts["rest"]])
    atomic_torch_save(cache, result)
    return result


def pixel_moments(settings: Settings, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coordinate means and variances ``[d]`` (float64) of ``var_images`` standardised training images."""
    x = _train_images(0, settings.var_images, settings.image_size, mean, std, settings.var_images).flatten(1)
    return x.double().mean(0), x.double().var(0)


def diagonal_wiener_denoiser(mu: torch.Tensor, var: torch.Tensor):
    """The per-pixel Wiener eps-predictor ``eps_hat_i = b (z_i - a mu_i) / (a^2 var_i + b^2)`` (the conditional mean
    if the pixels were independent Gaussians with these moments, ``[d]`` each): run on real images, its Monte-Carlo
    error is the diagonal bound measured on the same images and noise (no assumption about the law)."""
    def eps_fn(z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        m, v = (t.to(z.device, torch.float64).view(1, *z.shape[1:]) for t in (mu, var))
        a, b = torch.sigmoid(alpha.double()).sqrt(), torch.sigmoid(-alpha.double()).sqrt()
        return (b * (z.double() - a * m) / (a * a * v + b * b)).to(z.dtype)

    return eps_fn


def _train_images(lo: int, hi: int, size: int, mean, std, length: int) -> torch.Tensor:
    """Training images ``lo..hi-1`` standardised (the split extended to ``length`` images: same law, more draws)."""
    from xattr.data import ShapesDataset
    from xattr.models.standardise import standardiser

    data = ShapesDataset("train", image_size=size, n_samples=None, length=length)
    images = torch.stack([(data[i]["image"] * 255).round() / 255.0 for i in range(lo, hi)]).float()
    return standardiser(mean, std, images.shape[1])(images)


def shapes_panel(settings: Settings, seed: int, out: Path, denoisers: list[tuple[str, torch.nn.Module]],
                 mean, std) -> tuple[list[dict], dict]:
    """(b): the denoisers' MMSE on val images next to the Gaussian (full, half-sample), diagonal and trivial bounds."""
    val = standardised_shapes("val", settings.eval_images, settings.image_size, mean, std)
    d = val[0].numel()
    alphas = torch.tensor(settings.alphas, dtype=torch.float64)
    bounds = {}
    if settings.cov_images > 0:
        eig = covariance_eigenvalues(settings, mean, std,
                                     out / f"shapes-cov-eigs-{settings.image_size}-n{settings.cov_images}"
                                           f"{'-half' if settings.cov_half else ''}.pt")
        bounds[f"gaussian bound ({int(eig['counts'][1])} images)"] = gaussian_mmse_eps_eigen(eig["full"], alphas) / d
        if "half" in eig:
            bounds[f"gaussian bound ({int(eig['counts'][0])} images)"] = gaussian_mmse_eps_eigen(eig["half"],
                                                                                               alphas) / d
        var = eig["var"]
    else:   # no covariance: the per-pixel bound only (weaker: it ignores correlations between pixels)
        var = None
    pixel_mean, pixel_var = pixel_moments(settings, mean, std)
    var = pixel_var if var is None else var
    bounds |= {
        f"diagonal gaussian bound ({settings.cov_images or settings.var_images} images)":
            gaussian_mmse_eps_eigen(var, alphas) / d,
        "trivial bound min(1, e^a var)": torch.minimum(torch.ones(()), torch.exp(alphas)[:, None]
                                                       * var[None]).mean(1),
    }
    curves = {name: (value, torch.zeros_like(value)) for name, value in bounds.items()}
    wiener = "per-pixel Wiener filter (MC)"
    curves[wiener] = mmse_curve(diagonal_wiener_denoiser(pixel_mean, pixel_var), val, settings.alphas,
                                noise_draws=settings.noise_draws, batch_size=settings.batch_size,
                                generator=torch.Generator().manual_seed(seed + 4), desc=f"shapes mmse: {wiener}")
    for name, net in denoisers:
        curves[name] = mmse_curve(net, val, settings.alphas, noise_draws=settings.noise_draws,
                                  batch_size=settings.batch_size, generator=torch.Generator().manual_seed(seed + 4),
                                  desc=f"shapes mmse: {name}")
    rows = [_row("shapes", "mmse_eps", name, a, m, s) for name, (mean_, se) in curves.items()
            for a, m, s in zip(settings.alphas, mean_, se)]
    for name, (mean_, _) in curves.items():
        info = curve_information(alphas, mean_, d, settings.alpha_min)
        rows += [_row("shapes", "info_nats_curve", name, a, i, 0.0) for a, i in zip(settings.alphas, info)]
    bound = next(iter(bounds.values()))
    for name, _ in denoisers:
        mean_, se = curves[name]
        rows += [_row("shapes", "ratio_to_gaussian_bound", name, a, m / b, s / b)
                 for a, m, s, b in zip(settings.alphas, mean_, se, bound)]
    rows += [_row("shapes", "ratio_to_wiener_mc", name, a, m / w, s / w) for name, _ in denoisers
             for a, m, s, w in zip(settings.alphas, *curves[name], curves[wiener][0])]
    return rows, {"curves": curves, "bounds": list(bounds), "denoisers": [n for n, _ in denoisers], "d": d,
                  "val_images": len(val)}


def shapes_denoisers(settings: Settings, paths: list[str], cache_dir: Path, seed: int, out: Path, quick: bool):
    """``(label, network)`` per checkpoint in ``paths`` (default: the cached shapes denoiser of
    ``conf/task/denoiser.yaml``); ``--quick`` trains a tiny one instead (no cache needed)."""
    from xattr.data import ShapesDataset
    from xattr.training.denoiser import DenoiserTrainer

    trainer = DenoiserTrainer.from_conf(**settings.trainer).filled()
    if quick:
        data = ShapesDataset("train", image_size=settings.image_size, n_samples=None)
        net = train_or_load(trainer, data, out / f"shapes-denoiser-{settings.image_size}-quick.pt", seed, {})
        return [(f"denoiser, {trainer.steps} steps", net)], trainer
    paths = paths or [str(trainer.checkpoint(cache_dir, "shapes", settings.image_size))]
    return [load_any_denoiser(path, trainer) for path in paths], trainer


def load_any_denoiser(path: str | Path, trainer) -> tuple[str, torch.nn.Module]:
    """``(label, network)`` from a final checkpoint or from the ``<name>.partial.pt`` of an interrupted training
    (its EMA weights at its step; the network's size is ``trainer``'s)."""
    from xattr.nets.unet import Denoiser
    from xattr.training._loop import network_from_state

    state = read_cache(path, "denoiser")
    if "config" in state:
        return (f"denoiser, {state.get('meta', {}).get('steps', '?')} steps",
                network_from_state(state, path, Denoiser, "denoiser"))
    net = Denoiser(3, trainer.width, trainer.depth)
    net.load_state_dict(state["ema"])
    return f"denoiser, EMA at step {state['step']} (partial; its total steps are not stored)", net.eval()


# ------------------------------------------------------------------------------------------ output


def _row(panel, quantity, curve, alpha, value, stderr) -> dict:
    return {"panel": panel, "quantity": quantity, "curve": curve, "alpha": float(alpha),
            "value": float(value), "stderr": float(stderr)}


def write_csv(rows: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def plot(gaussian: dict | None, shapes: dict | None, alphas, path: Path, title: str) -> None:
    """Left: (a) analytic vs trained and exact denoisers, relative error on a second axis; right: (b) the shapes
    denoiser(s) against the bounds. Per-coordinate eps-MMSE, log scale. A part not run is an empty panel."""
    from xattr.utils.figures import agg_figure

    fig = agg_figure(figsize=(12, 4.5))
    left, right = fig.subplots(1, 2)
    alphas = list(alphas)
    if gaussian is not None:
        _plot_gaussian(left, gaussian, alphas)
    else:
        left.text(0.5, 0.5, "(a) not run (--part shapes)", ha="center", transform=left.transAxes)
    if shapes is not None:
        for i, (name, (mean_, se)) in enumerate(shapes["curves"].items()):
            if name in shapes["bounds"] or name.startswith("per-pixel Wiener"):
                right.plot(alphas, mean_.tolist(), ls=["-", ":", "--", "-."][i % 4], color="k", lw=1.2, label=name)
            else:
                right.errorbar(alphas, mean_.tolist(), yerr=se.tolist(), marker="o", ms=4, label=name)
        right.set(yscale="log", xlabel="log-SNR alpha", ylabel="eps-MMSE per coordinate",
                  title=f"(b) shapes val ({shapes['val_images']} images) vs bounds")
        right.legend(fontsize=8, loc="lower right")
    else:
        right.text(0.5, 0.5, "(b) not run (--part gaussian)", ha="center", transform=right.transAxes)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_savefig(path, fig)


def _plot_gaussian(ax, gaussian: dict, alphas: list[float]) -> None:
    styles = {"analytic": dict(color="k", lw=2), "denoiser": dict(color="C0", marker="o", ms=4),
              "exact denoiser (MC)": dict(color="C2", ls="none", marker="x"),
              "diagonal bound (= v_hat = 0)": dict(color="0.5", ls=":")}
    for name, (mean_, se) in gaussian["curves"].items():
        ax.errorbar(alphas, mean_.tolist(), yerr=se.tolist(), label=name, **styles[name])
    ax.set(yscale="log", xlabel="log-SNR alpha", ylabel="eps-MMSE per coordinate",
           title=f"(a) stationary Gaussian 3x{int(math.isqrt(gaussian['d'] // 3))}^2, "
                 f"denoiser {gaussian['steps']}")
    twin = ax.twinx()
    twin.plot(alphas, gaussian["relative"].tolist(), color="C3", ls="--", label="relative error (right)")
    twin.axhline(0, color="C3", lw=0.5)
    twin.set_ylabel("denoiser / analytic - 1", color="C3")
    lines, extra = ax.get_legend_handles_labels(), twin.get_legend_handles_labels()
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=8, loc="lower right")


def print_summary(gaussian: dict | None, shapes: dict | None, alphas, header: str) -> None:
    print(header)
    if gaussian is not None:
        print(f"(a) Gaussian: denoiser ({gaussian['steps']}, {gaussian['train_size']} draws) eps-MMSE / "
              "analytic - 1:")
        print("    " + "  ".join(f"a={a:+g}: {r:+.3f}" for a, r in zip(alphas, gaussian["relative"].tolist())))
        info = gaussian["info"]
        for k, end in enumerate(gaussian["ends"]):
            exact, floor = info["exact I(alpha)"][0][k].item(), info["exact I(alpha) - I(alpha_min)"][0][k].item()
            den, den_se = info["eq14 denoiser"][0][k].item(), info["eq14 denoiser"][1][k].item()
            ctl, ctl_se = info["eq14 exact denoiser"][0][k].item(), info["eq14 exact denoiser"][1][k].item()
            print(f"    I(X; Z) at alpha={end:+g}: exact {exact:.1f} nats (from alpha_min: {floor:.1f}); Eq. 14 code "
                  f"with the denoiser {den:.1f} ± {den_se:.1f} ({den / floor - 1:+.3f}), with the exact denoiser "
                  f"{ctl:.1f} ± {ctl_se:.1f} ({ctl / floor - 1:+.3f})")
    if shapes is not None:
        bound_name = shapes["bounds"][0]
        bound = shapes["curves"][bound_name][0]
        print(f"(b) shapes val: denoiser eps-MMSE / {bound_name} (per-coordinate means; > 1: above the bound):")
        for name in shapes["denoisers"]:
            mean_, se = shapes["curves"][name]
            ratio = (mean_ / bound).tolist()
            above = [a for a, m, sd, b in zip(alphas, mean_, se, bound) if m - 2 * sd > b]
            print(f"    {name}: " + "  ".join(f"a={a:+g}: {r:.3f}" for a, r in zip(alphas, ratio)))
            print(f"      above the bound by > 2 standard errors at alpha = {above or 'none'}")
            wiener = shapes["curves"]["per-pixel Wiener filter (MC)"][0]
            print("      / per-pixel Wiener filter on the same images and noise: "
                  + "  ".join(f"a={a:+g}: {r:.3f}" for a, r in zip(alphas, (mean_ / wiener).tolist())))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16x16 images, a 3-step denoiser, few points (a test)")
    parser.add_argument("--part", choices=("both", "gaussian", "shapes"), default="both",
                        help="run (a), (b) or both; one part writes denoiser_mmse-<part>.csv/.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=".cache", help="where the cached shapes denoiser is (paths.cache_dir)")
    parser.add_argument("--denoiser", action="append", default=[],
                        help="shapes denoiser checkpoint(s) for (b), final or .partial.pt; default: the cached one "
                             "of conf/task/denoiser.yaml")
    parser.add_argument("--gaussian-denoiser", default=None,
                        help="(a): evaluate this checkpoint (final or .partial.pt) instead of training/loading one")
    parser.add_argument("--cov-images", type=int, default=None,
                        help="(b): training images for the covariance (0: per-pixel bound only, no d^3 step)")
    parser.add_argument("--info-images", type=int, default=None, help="(a): images for the Eq. 14 integral (32)")
    parser.add_argument("--cov-half", action="store_true", help="(b): also the covariance of half the images")
    parser.add_argument("--out", default="outputs/diffib/tiny/denoiser_mmse")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    if args.cov_half:
        settings = dataclasses.replace(settings, cov_half=True)
    if args.cov_images is not None:
        settings = dataclasses.replace(settings, cov_images=args.cov_images)
    if args.info_images is not None:
        settings = dataclasses.replace(settings, info_images=args.info_images)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    rows, gaussian, shapes = [], None, None
    if args.part in ("both", "gaussian"):
        gaussian_rows, gaussian = gaussian_panel(settings, args.seed, out, args.gaussian_denoiser)
        rows += gaussian_rows
    if args.part in ("both", "shapes"):
        denoisers, trainer = shapes_denoisers(settings, args.denoiser, Path(args.cache_dir), args.seed, out,
                                              args.quick)
        shapes_rows, shapes = shapes_panel(settings, args.seed, out, denoisers, trainer.mean, trainer.std)
        rows += shapes_rows
    stem = "denoiser_mmse" if args.part == "both" else f"denoiser_mmse-{args.part}"
    write_csv(rows, out / f"{stem}.csv")
    header = (f"# denoiser eps-MMSE vs ground truth and bounds, seed {args.seed}, {dt.date.today().isoformat()}"
              f"{' (--quick)' if args.quick else ''}")
    plot(gaussian, shapes, settings.alphas, out / f"{stem}.png", header.lstrip("# "))
    print_summary(gaussian, shapes, settings.alphas, header)
    print(f"wrote {out / f'{stem}.csv'} and {out / f'{stem}.png'}")


if __name__ == "__main__":
    main()
