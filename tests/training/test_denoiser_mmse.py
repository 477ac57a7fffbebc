"""scripts/denoiser_mmse.py: its spectrum, its curve integral, and the --quick path end to end."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from xattr.info import gaussian_mmse_eps_eigen, gaussian_mutual_information_eigen

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "denoiser_mmse.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("denoiser_mmse", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_power_law_spectrum_is_a_unit_variance_flip_invariant_law(script):
    spectrum = script.power_law_spectrum(16, (2.0, 4.0, 8.0), 1.5)
    assert spectrum.shape == (3, 16, 16) and (spectrum > 0).all()
    assert torch.allclose(spectrum.mean(dim=(1, 2)), torch.ones(3, dtype=torch.float64))
    mirrored_x = torch.roll(spectrum.flip(-1), shifts=1, dims=-1)   # k_x -> -k_x: the trainer's horizontal flip
    assert torch.allclose(spectrum, mirrored_x)


def test_curve_information_integrates_half_the_mmse_trace(script):
    """The trapezoid of 1/2 tr mmse_eps over a fine alpha grid is I(alpha) - I(alpha_min) (closed form, 1e-4)."""
    lam = torch.tensor([0.01, 0.3, 1.0, 4.0, 50.0], dtype=torch.float64)
    alphas = torch.linspace(-12, 10, 2201, dtype=torch.float64)
    per_coordinate = gaussian_mmse_eps_eigen(lam, alphas) / lam.numel()
    info = script.curve_information(alphas, per_coordinate, lam.numel(), alpha_min=-10.0)
    exact = gaussian_mutual_information_eigen(lam, alphas) - gaussian_mutual_information_eigen(lam, [-10.0])
    keep = alphas >= -10.0
    assert torch.isnan(info[~keep]).all()
    assert torch.allclose(info[keep], exact[keep], rtol=1e-4, atol=1e-6)


def test_quick_run_writes_csv_and_figure_and_its_exact_control_matches(script, tmp_path):
    script.main(["--quick", "--out", str(tmp_path), "--seed", "0"])
    assert (tmp_path / "denoiser_mmse.png").stat().st_size > 10_000
    with (tmp_path / "denoiser_mmse.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == set(script.COLUMNS)
    assert {r["panel"] for r in rows} == {"gaussian", "shapes"}
    assert all(math.isfinite(float(r["value"])) for r in rows if r["quantity"] != "info_nats_curve")
    mmse = {(r["curve"], float(r["alpha"])): float(r["value"]) for r in rows
            if r["panel"] == "gaussian" and r["quantity"] == "mmse_eps"}
    for alpha in script.QUICK.alphas:   # the exact (DFT Wiener) denoiser through the script's Monte Carlo
        assert mmse[("exact denoiser (MC)", alpha)] == pytest.approx(mmse[("analytic", alpha)], rel=0.15)
    info = {r["curve"]: float(r["value"]) for r in rows if r["quantity"] == "info_nats"}
    assert info["eq14 exact denoiser"] == pytest.approx(info["exact I(alpha) - I(alpha_min)"], rel=0.05)
    shapes = [r for r in rows if r["panel"] == "shapes" and r["quantity"] == "mmse_eps"]
    assert any(r["curve"].startswith("gaussian bound") for r in shapes)
    assert all(0 < float(r["value"]) <= 1.0 + 1e-9 for r in shapes if r["curve"].startswith("trivial"))
