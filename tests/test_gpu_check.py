"""scripts/gpu_check.sh and the benchmarks' ``--device``: the skip line without a GPU, the forced CPU pass end to
end (slow), and every ``scripts/bench_*.py`` taking ``--device``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
BENCHES = sorted((REPO / "scripts").glob("bench_*.py"))


def gpu_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """scripts/gpu_check.sh with this interpreter, output folder ``tmp_path/out``, and ``env`` added."""
    full = {key: value for key, value in os.environ.items() if key != "XATTR_GPU_CHECK_FORCE"}
    full.update({"XATTR_PYTHON": sys.executable, "OUT": str(tmp_path / "out"), **env})
    return subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=full, capture_output=True, text=True,
                          timeout=1800)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here: the script would run in full")
def test_without_a_gpu_it_skips_with_one_line(tmp_path):
    done = gpu_check(tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "no CUDA GPU here: skipping\n", "")
    assert not (tmp_path / "out").exists()


def test_a_python_without_torch_is_one_line_and_fails(tmp_path):
    done = gpu_check(tmp_path, XATTR_PYTHON="false")
    assert done.returncode == 1 and done.stdout.startswith("error: false cannot import torch")
    assert len(done.stdout.splitlines()) == 1


@pytest.mark.parametrize("script", BENCHES, ids=lambda p: p.stem)
def test_every_benchmark_takes_device(script):
    source = script.read_text()
    assert "add_device_argument(parser)" in source and "bench_device(args.device)" in source, \
        f"{script.name} has no --device (scripts/_timing.py: add_device_argument, bench_device)"


def test_a_missing_device_is_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_unet.py"), "--quick", "--device", "cuda"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert re.fullmatch(r"error: device=cuda but this machine has no CUDA GPU .*\n", done.stderr)


@pytest.mark.slow  # every benchmark at --quick on the CPU: about 3.5 minutes on 2 cores
def test_forced_cpu_pass_runs_every_step_and_writes_the_summary(tmp_path):
    done = gpu_check(tmp_path, XATTR_GPU_CHECK_FORCE="1", OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    assert done.returncode == 0, done.stdout[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["env.txt", "logs.tar.gz", "steps.log", "summary.md"]
    summary, steps_log = (out / "summary.md").read_text(), (out / "steps.log").read_text()
    with tarfile.open(out / "logs.tar.gz") as archive:
        logs = set(archive.getnames())
    for step in ["tests", *(p.stem for p in BENCHES)]:
        assert re.search(rf"^\| {step} \| ok \| \d+ \|$", summary, re.M), f"{step} not ok in summary.md:\n{summary}"
        assert f"===== {step}: ok" in steps_log and f"logs/{step}.log" in logs
    assert "(not found" not in summary and "(not run" not in summary, summary
    assert "SUMMARY unet QUICK" in summary and f"xattr from {REPO}" in (out / "env.txt").read_text()
    assert "needs a CUDA GPU (scripts/gpu_check.sh)" in steps_log
