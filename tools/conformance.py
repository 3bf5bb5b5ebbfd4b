#!/usr/bin/env python3
"""Generate (or check) docs/conformance.md, the V2G-AC profile conformance matrix.

A requirement of the catalogue (sepgw/conformance/requirements.toml) counts as proven when a
test cites its ID (``V2G-<section>-<n>``) in the test's docstring. Tests are found by parsing
``tests/**/*.py`` with ``ast``: functions named ``test*`` at module level or in classes. The
tests are never imported, and only the standard library is used, so this runs in well under a
second from a bare checkout.

    .venv/bin/python tools/conformance.py            # rewrite docs/conformance.md
    .venv/bin/python tools/conformance.py --check    # exit 1 if it is stale

Exit status: 0 success, 1 stale file (``--check``), 2 a test cites an unknown ID.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT: Path = Path(__file__).resolve().parents[1]
REGENERATE: str = ".venv/bin/python tools/conformance.py"
CITATION: re.Pattern[str] = re.compile(r"V2G-[0-9.]+-[0-9]+")
ROLES: tuple[str, ...] = ("EVSE", "PEV", "both")
NORMATIVE_LEVELS: tuple[str, ...] = ("mandatory", "recommended", "optional")


def _load_catalogue_module() -> ModuleType:
    """Load sepgw/conformance/catalogue.py by path, without importing the sepgw package."""
    name = "_sepgw_conformance_catalogue"
    if name in sys.modules:
        return sys.modules[name]
    path = REPO_ROOT / "sepgw" / "conformance" / "catalogue.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


catalogue: ModuleType = _load_catalogue_module()


@dataclass(frozen=True, order=True)
class Citation:
    """A test citing a requirement ID in its docstring."""

    requirement_id: str
    test: str  # "tests/test_x.py::Class.test_name"
    path: str
    line: int


@dataclass(frozen=True, order=True)
class ScanError:
    """A problem found while scanning, reported as ``path:line: message``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _test_functions(
    body: Iterable[ast.stmt], prefix: str = ""
) -> Iterable[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Yield (qualified name, node) for test functions at this level and in nested classes."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("test"):
                yield prefix + node.name, node
        elif isinstance(node, ast.ClassDef):
            yield from _test_functions(node.body, f"{prefix}{node.name}.")


def scan_source(
    source: str, relpath: str, known: Collection[str]
) -> tuple[list[Citation], list[ScanError]]:
    """Find the requirement IDs cited in the docstrings of the test functions of one file."""
    citations: list[Citation] = []
    errors: list[ScanError] = []
    if "V2G-" not in source:  # fast path: nothing can be cited
        return citations, errors
    try:
        tree = ast.parse(source, filename=relpath)
    except SyntaxError as e:
        return citations, [ScanError(relpath, e.lineno or 0, f"cannot parse: {e.msg}")]
    for qualname, node in _test_functions(tree.body):
        if not node.body:
            continue
        first = node.body[0]
        if not (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            continue
        doc: str = first.value.value
        test = f"{relpath}::{qualname}"
        seen: set[str] = set()
        for m in CITATION.finditer(doc):
            line = first.value.lineno + doc.count("\n", 0, m.start())
            rid = m.group(0)
            if rid not in known:
                errors.append(ScanError(relpath, line, f"{test} cites unknown requirement ID {rid}"))
            elif rid not in seen:
                seen.add(rid)
                citations.append(Citation(rid, test, relpath, line))
    return citations, errors


def scan_tests(
    root: Path, known: Collection[str], tests_dir: str = "tests"
) -> tuple[list[Citation], list[ScanError]]:
    """Scan ``<root>/<tests_dir>/**/*.py``; paths in the results are relative to root."""
    citations: list[Citation] = []
    errors: list[ScanError] = []
    for path in sorted((root / tests_dir).glob("**/*.py")):
        relpath = path.relative_to(root).as_posix()
        found, problems = scan_source(path.read_text(encoding="utf-8"), relpath, known)
        citations.extend(found)
        errors.extend(problems)
    return sorted(citations), sorted(errors)


def proofs(citations: Iterable[Citation]) -> dict[str, list[str]]:
    """Map each cited requirement ID to the sorted, distinct tests citing it."""
    result: dict[str, set[str]] = {}
    for c in citations:
        result.setdefault(c.requirement_id, set()).add(c.test)
    return {rid: sorted(tests) for rid, tests in result.items()}


def coverage(
    requirements: Sequence[Any], proven: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, tuple[int, int]]]:
    """Per role (and "all"), per normative level (and "normative"): (proven, total).

    Informative catalogue lines are never counted.
    """
    table = {
        role: {level: (0, 0) for level in NORMATIVE_LEVELS + ("normative",)}
        for role in ROLES + ("all",)
    }
    for r in requirements:
        if r.level not in NORMATIVE_LEVELS:
            continue
        done = 1 if proven.get(r.id) else 0
        for role in (r.role, "all"):
            for level in (r.level, "normative"):
                p, t = table[role][level]
                table[role][level] = (p + done, t + 1)
    return table


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _ratio(pt: tuple[int, int], percent: bool = False) -> str:
    p, t = pt
    if not percent:
        return f"{p}/{t}"
    return f"{p}/{t} ({100 * p // t if t else 0} %)"


def render(
    requirements: Sequence[Any],
    titles: Mapping[str, str],
    proven: Mapping[str, Sequence[str]],
) -> str:
    """The Markdown text of the matrix: deterministic for the same inputs."""
    reqs = sorted(requirements, key=lambda r: catalogue.id_sort_key(r.id))
    cov = coverage(reqs, proven)
    out = [
        "# Conformance matrix: SunSpec IEEE 2030.5 V2G-AC profile (SAE J3072), section 4",
        "",
        "<!-- Generated file: do not edit by hand. -->",
        "",
        "This file is **generated** by `tools/conformance.py` from the requirement catalogue",
        "(`sepgw/conformance/requirements.toml`) and the docstrings of the tests",
        "(`tests/**/*.py`). Regenerate it from the repository root with:",
        "",
        "    " + REGENERATE,
        "",
        "`make test` runs the same command with `--check` and fails when this file is stale.",
        "",
        "A requirement is *proven* when at least one test cites its ID in the test's docstring.",
        "Paraphrases are the project's short wording; the profile text is authoritative.",
        "Levels: mandatory = MUST/SHALL, recommended = SHOULD, optional = MAY; informative",
        "lines (keyword conventions) are listed but never counted.",
        "",
        "## Summary",
        "",
        "| Role | Mandatory | Recommended | Optional | All normative |",
        "|---|---|---|---|---|",
    ]
    for role in ROLES + ("all",):
        row = cov[role]
        label = "**Total**" if role == "all" else role
        out.append(
            f"| {label} | {_ratio(row['mandatory'])} | {_ratio(row['recommended'])} "
            f"| {_ratio(row['optional'])} | {_ratio(row['normative'], percent=True)} |"
        )
    sections: dict[str, list[Any]] = {}
    for r in reqs:
        sections.setdefault(r.section, []).append(r)
    for section, members in sections.items():  # reqs are sorted, so sections are too
        title = titles.get(section, "")
        out += [
            "",
            f"## {section} {title}".rstrip(),
            "",
            "| ID | Role | Level | Requirement (paraphrase) | Proven by |",
            "|---|---|---|---|---|",
        ]
        for r in members:
            tests = proven.get(r.id, ())
            by = "<br>".join(f"`{t}`" for t in tests) if tests else "—"
            out.append(
                f"| {r.id} | {r.role} | {r.level} | {_cell(r.summary)} | {by} |"
            )
    return "\n".join(out) + "\n"


def generate(
    root: Path, catalogue_path: Path | None = None
) -> tuple[str, list[ScanError]]:
    """Scan root's tests against the catalogue; return (Markdown, errors)."""
    path = catalogue_path or root / "sepgw" / "conformance" / "requirements.toml"
    requirements = catalogue.load_catalogue(path)
    titles = catalogue.load_section_titles(path)
    citations, errors = scan_tests(root, {r.id for r in requirements})
    return render(requirements, titles, proofs(citations)), errors


def _display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true",
        help="do not write; exit 1 if the output file differs from what would be generated",
    )
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    parser.add_argument("--catalogue", type=Path, default=None,
                        help="requirements TOML (default: <root>/sepgw/conformance/requirements.toml)")
    parser.add_argument("--output", type=Path, default=None,
                        help="output file (default: <root>/docs/conformance.md)")
    args = parser.parse_args(argv)
    root: Path = args.root
    output: Path = args.output or root / "docs" / "conformance.md"
    try:
        text, errors = generate(root, args.catalogue)
    except (OSError, ValueError) as exc:  # CatalogueError and TOML errors are ValueErrors
        print(f"conformance: cannot read the catalogue: {exc}", file=sys.stderr)
        return 2
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        print(f"conformance: {len(errors)} error(s); {_display(output, root)} not "
              f"{'checked' if args.check else 'written'}", file=sys.stderr)
        return 2
    shown = _display(output, root)
    if args.check:
        try:
            current = output.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            state = "missing" if current is None else "stale"
            print(f"conformance: {shown} is {state}; regenerate it with: {REGENERATE}",
                  file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"conformance: wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
