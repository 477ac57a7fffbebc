"""`pip install .` works: declared dependencies cover every import, and the wheel runs without a checkout.

The wheel and the editable install are built from a copy of the files a build reads (``pyproject.toml``,
``setup.py``, ``README.md``, ``xattr/``, ``conf/``) in a temporary folder, so no ``build/`` or
``*.egg-info`` lands in the checkout and no stale ``build/lib`` reaches the wheel. Offline: no build
isolation, no index, no dependencies installed (they come from the interpreter running the tests).
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "xattr", "conf")

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {canonical(re.match(r"[A-Za-z0-9._-]+", spec).group()) for spec in project["dependencies"]}


def imported_top_level_modules() -> dict[str, str]:
    """Top-level module names imported anywhere in ``xattr/`` (function-level imports too) → one importing file."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "xattr").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    return found


#: modules imported only where an optional extra is installed (inside ``try: … except ImportError`` with a one-line
#: error naming the extra) → their distribution, which must be in one of [project.optional-dependencies]
OPTIONAL_IMPORTS = {"open_clip": "open-clip-torch"}


def optional_distributions() -> set[str]:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    return {canonical(re.match(r"[A-Za-z0-9._-]+", spec).group()) for specs in extras.values() for spec in specs}


def test_optional_imports_are_in_an_extra():
    assert set(OPTIONAL_IMPORTS.values()) <= optional_distributions()


def test_every_third_party_import_is_a_declared_dependency():
    declared = declared_distributions()
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for module, where in sorted(imported_top_level_modules().items()):
        if module in sys.stdlib_module_names or module in ("xattr", "__future__") or module in OPTIONAL_IMPORTS:
            continue
        owners = {canonical(dist) for dist in distributions.get(module, [])}
        if not owners:
            problems.append(f"{module} (imported in {where}) belongs to no installed distribution")
        elif not owners & declared:
            problems.append(f"{module} (imported in {where}) comes from {'/'.join(sorted(owners))}, "
                            "which [project].dependencies does not declare")
    assert not problems, "; ".join(problems)


def _pip(*args: str, python: str = sys.executable, cwd: Path | None = None) -> None:
    done = subprocess.run([python, "-m", "pip", *args, "--no-input", "--disable-pip-version-check"], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _copy_build_inputs(target: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    target.mkdir(parents=True)
    for name in BUILD_INPUTS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    return target


def _clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from (a copy of) this checkout."""
    pytest.importorskip("setuptools")
    root = tmp_path_factory.mktemp("wheel")
    source = _copy_build_inputs(root / "src")
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "dist"), str(source))
    (found,) = (root / "dist").glob("xattr-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked into a bare folder (``pip install --target``): ``xattr/`` and ``bin/xattr``."""
    target = tmp_path_factory.mktemp("site")
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel))
    return target


def test_wheel_ships_code_configs_and_paper_tables(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"xattr/conf/{path.relative_to(REPO / 'conf').as_posix()}" for path in (REPO / "conf").rglob("*.yaml")}
    expected |= {f"xattr/{path.relative_to(REPO / 'xattr').as_posix()}"
                 for pattern in ("**/*.py", "paper/*.csv") for path in (REPO / "xattr").glob(pattern)
                 if "__pycache__" not in path.parts}
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)[:10]}"


RUN_FROM_WHEEL = """
import os, sys
from xattr.cli import CONF_DIR, main

code = main(sys.argv[1:])
def files(module):
    return [module.__file__] if getattr(module, "__file__", None) else list(getattr(module, "__path__", []))
modules = {name: files(module) for name, module in list(sys.modules.items()) if name.split(".")[0] == "xattr"}
print("XATTR", sys.modules["xattr"].__file__, "CONF", CONF_DIR)
print("OUTSIDE", sorted(name for name, paths in modules.items() if not all(p.startswith(os.environ["WHEEL_SITE"]) for p in paths)))
sys.exit(code)
"""


def _run_from_wheel(installed: Path, cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``xattr run OVERRIDES`` with only the unpacked wheel on the path; prints where xattr was imported from."""
    env = _clean_env(PYTHONPATH=str(installed), WHEEL_SITE=str(installed))
    return subprocess.run([sys.executable, "-c", RUN_FROM_WHEEL, "run", *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=3000)


def test_wheel_runs_without_a_checkout(installed, tmp_path):
    """`xattr run debug=smoke method=saliency` from the unpacked wheel, in a folder that is no checkout."""
    checkpoint = tmp_path / "tiny_cnn.pt"
    torch.manual_seed(0)
    from xattr.models import build_model

    torch.save(build_model("tiny_cnn", num_classes=6).net.state_dict(), checkpoint)
    work, run_dir = tmp_path / "work", tmp_path / "run"
    work.mkdir()
    done = _run_from_wheel(installed, work, "debug=smoke", "method=saliency", f"model.checkpoint={checkpoint}",
                           f"paths.cache_dir={tmp_path}/cache", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"XATTR {installed / 'xattr' / '__init__.py'} CONF {installed / 'xattr' / 'conf'}" in done.stdout
    assert "OUTSIDE []" in done.stdout, done.stdout[-2000:]
    assert (run_dir / "DONE").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "complete"

    usage = subprocess.run([str(installed / "bin" / "xattr"), "--help"], cwd=work, env=_clean_env(
        PYTHONPATH=str(installed)), capture_output=True, text=True, timeout=120)
    assert usage.returncode == 0 and str(installed / "xattr" / "conf") in usage.stdout


def test_editable_install_reads_the_checkout_conf(tmp_path):
    """`pip install -e .` (what `make setup` does) with the xattr.conf mapping: configs come from <repo>/conf."""
    pytest.importorskip("setuptools")
    source = _copy_build_inputs(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # inherit this interpreter's packages (pip, setuptools, torch, ...) as plain path entries
    inherited = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    Path(purelib, "inherit.pth").write_text("\n".join(dict.fromkeys(inherited)) + "\n")
    _pip("install", "-e", str(source), "--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed",
         python=python, cwd=tmp_path)
    probe = subprocess.run([python, "-c", "import xattr; from xattr.cli import CONF_DIR; print(xattr.__file__, CONF_DIR)"],
                           cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split() == [str(source / "xattr" / "__init__.py"), str(source / "conf")]


@pytest.mark.slow
def test_wheel_full_smoke_run(installed, tmp_path):
    """`xattr run debug=smoke` as the README says: trains the tiny classifier and DiffIB's denoiser (minutes)."""
    work, run_dir = tmp_path / "work", tmp_path / "run"
    work.mkdir()
    done = _run_from_wheel(installed, work, "debug=smoke", f"paths.cache_dir={tmp_path}/cache",
                           f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OUTSIDE []" in done.stdout, done.stdout[-2000:]
    assert (run_dir / "DONE").is_file()
