"""The package's import structure: no import cycles, and imports point down the layers of docs/architecture.md.

Every module of ``xattr`` is read with ``ast`` (nothing is imported or run); every ``import`` counts,
including those inside functions and ``if TYPE_CHECKING:`` blocks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xattr"
DOC = ROOT / "docs" / "architecture.md"

# The layer map; docs/architecture.md has the same table (test_doc_lists_the_same_layers keeps the two equal:
# change both together). Layer 0 is the top; a module may import modules of its own package and of packages
# on lower layers (a larger number), never upwards nor sideways into another package of its own layer.
LAYERS: dict[str, int] = {
    "cli": 0,
    "tasks": 1,
    "runs": 2,
    "training": 2,
    "methods": 2,
    "metrics": 2,
    "models": 3,
    "nets": 3,
    "info": 3,
    "paths": 3,
    "data": 3,
    "utils": 4,
}
#: importable from every layer (and importing nothing of the package itself)
ANYWHERE = {"errors"}
#: the one allowed sideways edge: a method may train what it needs on first use (DiffIB's denoiser)
SIDEWAYS = {("methods", "training")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """``(imported xattr module, line)`` for every import in the module (function bodies included).

    ``from a.b import c`` counts as an import of ``a.b.c`` where that is a module, else of ``a.b``; the
    package ``__init__`` modules that Python runs on the way are not counted as separate imports.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((candidate if candidate in known else base, node.lineno))
    return [(target, line) for target, line in found if target == "xattr" or target.startswith("xattr.")]


def graph() -> dict[str, list[tuple[str, int]]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def group(module: str) -> str:
    """The top-level part of the package a module belongs to (``xattr.methods.iba`` -> ``methods``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layering_violations(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    problems = []
    for source, targets in edges.items():
        src = group(source)
        if src and src not in LAYERS and src not in ANYWHERE:
            problems.append(f"{source}: package xattr.{src} has no layer; add it to LAYERS and docs/architecture.md")
            continue
        for target, line in targets:
            dst = group(target)
            if dst == src or dst in ANYWHERE:
                continue
            where = f"{source} (line {line}) imports {target}"
            if src in ANYWHERE:
                problems.append(f"{where}: xattr.{src} is importable from anywhere and must import nothing of xattr")
            elif src == "":  # xattr/__init__.py runs on every import of the package
                problems.append(f"{where}: the package root may only import {sorted(ANYWHERE)}")
            elif dst == "" or dst not in LAYERS:
                problems.append(f"{where}: xattr.{dst or '__init__'} has no layer")
            elif (src, dst) in SIDEWAYS:
                continue
            elif LAYERS[dst] < LAYERS[src]:
                problems.append(f"{where}: upward ({src} is layer {LAYERS[src]}, {dst} layer {LAYERS[dst]})")
            elif LAYERS[dst] == LAYERS[src]:
                problems.append(f"{where}: sideways between packages of layer {LAYERS[src]} ({src} -> {dst})")
    return problems


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself), Tarjan."""
    succ = {name: sorted({t for t, _ in targets if t in edges}) for name, targets in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in succ[v]:
                found.append(sorted(component))

    for name in sorted(succ):
        if name not in index:
            visit(name)
    return found


def test_every_module_parses_and_the_walk_sees_the_package():
    edges = graph()
    assert "xattr.cli" in edges and "xattr.methods.diffib" in edges
    assert any(target.startswith("xattr.") for targets in edges.values() for target, _ in targets)


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_point_down_the_layers():
    problems = layering_violations(graph())
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_are_for():
    """The two checks on a made-up graph: an upward import, a sideways one, the allowed edge, a cycle."""
    edges = {
        "xattr.info.a": [("xattr.data.base", 3)],            # sideways on layer 3
        "xattr.utils.b": [("xattr.models.spec", 4)],          # upward
        "xattr.methods.c": [("xattr.training.d", 5), ("xattr.errors", 6)],  # allowed
        "xattr.training.d": [("xattr.methods.c", 7)],         # sideways the wrong way (a trainer imports a method)
        "xattr.data.base": [], "xattr.models.spec": [], "xattr.errors": [],
    }
    problems = layering_violations(edges)
    assert len(problems) == 3 and any("sideways" in p and "info -> data" in p for p in problems)
    assert any("xattr.utils.b" in p and "upward" in p for p in problems)
    assert any("xattr.training.d" in p and "training -> methods" in p for p in problems)
    assert cycles(edges) == [["xattr.methods.c", "xattr.training.d"]]


def _doc_layers() -> dict[str, int]:
    """``{package: layer}`` from the layer table of docs/architecture.md (rows ``| <layer> | `pkg`, ... |``)."""
    layers = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if match:
            for package in re.findall(r"`([a-z_]+)/?`", match.group(2)):
                layers[package] = int(match.group(1))
    return layers


def test_doc_lists_the_same_layers():
    assert DOC.is_file(), "docs/architecture.md is missing"
    assert _doc_layers() == LAYERS, "the layer table of docs/architecture.md and LAYERS differ; change both"
    text = DOC.read_text()
    for src, dst in SIDEWAYS:
        assert re.search(rf"`{src}`\s*→\s*`{dst}`", text), f"docs/architecture.md must name the edge {src} → {dst}"


@pytest.mark.parametrize("package", sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()))
def test_every_package_has_a_layer(package):
    assert package in LAYERS or package in ANYWHERE, f"xattr.{package} has no layer in LAYERS"


def test_tests_mirror_the_package():
    """Each folder of ``tests/`` is named after a package of ``xattr/`` (package-wide tests stay at the top)."""
    folders = [p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    strays = [name for name in folders if not (PACKAGE / name / "__init__.py").is_file()]
    assert folders and not strays, f"tests/{strays} mirror no package of xattr/; name test folders after packages"
