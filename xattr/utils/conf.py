"""Where the Hydra config tree lives: ``conf/`` at the top of a checkout, ``xattr/conf/`` in an installed wheel.

The wheel ships the repository's top-level ``conf/`` as the package data folder ``xattr/conf`` (setuptools
``package-dir`` mapping in ``pyproject.toml``); a checkout or an editable install reads ``<repo>/conf``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def conf_dir() -> Path:
    """The config tree: ``xattr/conf`` when installed from a wheel, else the checkout's ``conf/``."""
    installed = _PACKAGE / "conf"
    if (installed / "run.yaml").is_file():
        return installed
    return _PACKAGE.parent / "conf"
