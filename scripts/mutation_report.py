"""Per-module mutation score from mutmut 3's ``mutants/`` folder, as a markdown table (``make mutants``).

mutmut 3 (>= 3.8) keeps, next to every mutated copy ``mutants/<path>.py``:

- ``<path>.py.meta`` (JSON): ``exit_code_by_key`` maps each mutant (``xattr.info.channel.x_noise_channel__mutmut_3``)
  to the exit code of its test run (``null`` until it has run), ``durations_by_key`` the seconds it took;
- ``<path>.py.spans`` (JSON): the lines of the mutated file each generated function occupies, the original
  (``..__mutmut_orig``) and every mutant, which is how the mutation itself is shown here without mutmut.

Exit codes are read as mutmut reads them (``mutmut.stats.status_by_exit_code``). The score is (killed + timeout) / tested, tested = every mutant that ran (not ``not checked``,
not ``skipped``); ``no tests`` (no selected test reaches the function) counts against it, as in mutmut's badge.

Usage::

    python scripts/mutation_report.py                         # every mutated module, survivors listed
    python scripts/mutation_report.py --paths xattr/info/channel.py --out mutants/report.md
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code  # the table counts as mutmut counts (mutmut is in the dev extra)


def status_of(code: int | None) -> str:
    return status_by_exit_code.get(code, "suspicious")


COLUMNS = ("killed", "survived", "timeout", "no tests", "suspicious", "segfault", "not checked")
MUTANT_SUFFIX = re.compile(r"__mutmut_(\d+)$")
# What a surviving mutation touches, by a heuristic on its diff (a hint for triage, not a verdict):
KINDS = ("logic", "string", "message", "display", "dtype/device")
_STRING = re.compile(r"""[rbf]?("[^"]*"|'[^']*')""")
_DTYPE_DEVICE = re.compile(r"\b(dtype|device)=[^,)]*|\.to\([^()]*\)|[\w.]+\.(dtype|device)\b|\bNone\b|[, ]")


def meta_files(mutants: Path, paths: list[str]) -> list[Path]:
    """The ``.py.meta`` files under ``mutants/`` for the source paths asked for (files or folders)."""
    found = sorted(mutants.rglob("*.py.meta"))
    if not paths:
        return found
    wanted = [Path(p.rstrip("/")) for p in paths]
    return [m for m in found
            if any(_source(mutants, m) == w or w in _source(mutants, m).parents for w in wanted)]


def _source(mutants: Path, meta: Path) -> Path:
    return meta.relative_to(mutants).with_suffix("")  # xattr/info/channel.py


def function_name(local_key: str) -> str:
    """``x_noise_channel`` -> ``noise_channel``; ``xǁDiffIBǁprepare`` -> ``DiffIB.prepare``."""
    if "ǁ" in local_key:
        _, cls, func = local_key.split("ǁ")
        return f"{cls}.{func}"
    return local_key[2:] if local_key.startswith("x_") else local_key


def _function_lines(mutated_file: list[str], span: list[int]) -> list[str]:
    start, end = span
    return mutated_file[start - 1:end]


def kind_of(removed: str, added: str) -> str:
    """``message`` (an error's text), ``display`` (progress bar / log), ``dtype/device`` (a dtype or device
    argument dropped or set to None), ``string`` (only a string literal differs: a mode, a key, a label),
    else ``logic``."""
    if "raise " in removed or "Error(" in removed or "warn(" in removed:
        return "message"
    if re.search(r"\btqdm\(|\blog\.|\bbar\.|\bdesc=", removed):
        return "display"
    if _DTYPE_DEVICE.sub("", removed) == _DTYPE_DEVICE.sub("", added) and re.search(r"dtype|device|\.to\(", removed):
        return "dtype/device"
    if _STRING.sub('""', removed) == _STRING.sub('""', added):
        return "string"
    return "logic"


def mutation_diff(mutated_file: list[str], spans: dict, local_name: str) -> tuple[str, str]:
    """``(old, new)``: the lines the mutant changes, from the spans mutmut wrote (empty if unknown)."""
    base = MUTANT_SUFFIX.sub("", local_name)
    orig, mutant = spans.get(base + "__mutmut_orig"), spans.get(local_name)
    if orig is None or mutant is None:
        return "", ""
    plain = function_name(base).rpartition(".")[2]  # the name the def line has in the source
    a = [line.replace(base + "__mutmut_orig", plain) for line in _function_lines(mutated_file, orig)]
    b = [line.replace(local_name, plain) for line in _function_lines(mutated_file, mutant)]
    removed, added = [], []
    for line in difflib.unified_diff(a, b, lineterm="", n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        (removed if line.startswith("-") else added).append(" ".join(line[1:].split()))
    return " / ".join(removed), " / ".join(added)


def collect(mutants: Path, paths: list[str]) -> list[dict]:
    rows = []
    for meta_path in meta_files(mutants, paths):
        meta = json.loads(meta_path.read_text())
        codes: dict[str, int | None] = meta["exit_code_by_key"]
        if not codes:
            continue
        source = _source(mutants, meta_path)
        spans_path = meta_path.with_suffix(".spans")
        spans = json.loads(spans_path.read_text())["spans"] if spans_path.exists() else {}
        mutated = (mutants / source).read_text().splitlines() if (mutants / source).exists() else []
        counts = Counter(status_of(code) for code in codes.values())
        survivors = []
        for key, code in sorted(codes.items(), key=lambda kv: _key_order(kv[0])):
            status = status_of(code)
            if status in ("survived", "no tests", "suspicious"):
                local = key.rsplit(".", 1)[1]
                old, new = mutation_diff(mutated, spans, local) if mutated else ("", "")
                survivors.append({"key": key, "status": status, "function": function_name(MUTANT_SUFFIX.sub("", local)),
                                  "old": old, "new": new, "kind": kind_of(old, new)})
        durations = [d for k, d in meta.get("durations_by_key", {}).items() if codes.get(k) is not None and d]
        rows.append({"module": str(source), "total": len(codes), "counts": counts, "survivors": survivors,
                     "seconds": sum(durations), "timed": len(durations)})
    return rows


def _key_order(key: str) -> tuple[str, int]:
    m = MUTANT_SUFFIX.search(key)
    return (key[:m.start()] if m else key, int(m.group(1)) if m else 0)


def score(counts: Counter, total: int) -> str:
    tested = total - counts["not checked"] - counts["skipped"]
    if tested <= 0:
        return "–"
    return f"{100 * (counts['killed'] + counts['timeout']) / tested:.1f}%"


def markdown(rows: list[dict], survivors: bool, kinds: tuple[str, ...] = KINDS) -> str:
    head = ["module", "mutants", *COLUMNS, "score"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    total = Counter()
    n_total = 0
    for row in rows:
        c = row["counts"]
        total.update(c)
        n_total += row["total"]
        out.append("| " + " | ".join([f"`{row['module']}`", str(row["total"]), *(str(c[k]) for k in COLUMNS),
                                      score(c, row["total"])]) + " |")
    out.append("| " + " | ".join(["**all**", str(n_total), *(str(total[k]) for k in COLUMNS),
                                  score(total, n_total)]) + " |")
    timed = sum(r["timed"] for r in rows)
    if timed:
        seconds = sum(r["seconds"] for r in rows)
        out.append(f"\n{timed} mutants timed by mutmut: {seconds:.0f} s of worker time, {seconds / timed:.2f} s a mutant "
                   "(one worker; the wall time divides by the workers).")
    if survivors:
        for row in rows:
            if not row["survivors"]:
                continue
            by_kind = Counter(s["kind"] for s in row["survivors"])
            split = ", ".join(f"{by_kind[k]} {k}" for k in KINDS if by_kind[k])
            listed = "" if set(kinds) == set(KINDS) else f"; listed: {', '.join(kinds)}"
            out.append(f"\n### `{row['module']}`: {len(row['survivors'])} not killed ({split}{listed})\n")
            for s in row["survivors"]:
                if s["kind"] not in kinds:
                    continue
                tag = "" if s["status"] == "survived" else f" ({s['status']})"
                change = f"`{s['old']}` -> `{s['new'] or '(line removed)'}`" if s["old"] or s["new"] else ""
                out.append(f"- `{s['key'].rsplit('.', 1)[1]}`{tag} in `{s['function']}` [{s['kind']}]: {change}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's folder (default mutants/)")
    parser.add_argument("--paths", nargs="*", default=[], help="source files / folders to report (default: all)")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument("--no-survivors", action="store_true", help="only the table")
    parser.add_argument("--kinds", nargs="*", choices=KINDS, default=list(KINDS),
                        help="list only survivors of these kinds (a heuristic on the diff; default: all)")
    args = parser.parse_args(argv)
    if not args.mutants.is_dir():
        print(f"no {args.mutants}/ folder: run `make mutants` (mutmut run) first", file=sys.stderr)
        return 1
    rows = collect(args.mutants, args.paths)
    if not rows:
        print(f"no mutants recorded under {args.mutants}/ for {args.paths or 'any path'}", file=sys.stderr)
        return 1
    text = markdown(rows, survivors=not args.no_survivors, kinds=tuple(args.kinds))
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
