"""Package list for setuptools (everything else is in pyproject.toml).

``xattr`` and its sub-packages, plus the top-level ``conf/`` tree as ``xattr.conf`` with one package per
config group (``package-dir`` in pyproject.toml maps ``xattr.conf`` to ``conf``; ``*.yaml`` is package data).
"""

from setuptools import find_namespace_packages, setup

CONF_PACKAGES = ["xattr.conf", *(f"xattr.conf.{group}" for group in find_namespace_packages(where="conf"))]

setup(packages=[*find_namespace_packages(include=["xattr", "xattr.*"]), *CONF_PACKAGES])
