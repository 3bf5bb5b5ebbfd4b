#!/usr/bin/env python3
"""Generate (or check) docs/conformance.md, the V2G-AC profile conformance matrix.

A test *cites* a requirement of the catalogue (sepgw/conformance/requirements.toml) when its
docstring names the ID (``V2G-<section>-<n>``). A citation is a *proof* only when the test
drives the real code of the requirement's role: a PEV requirement needs a test that runs the
PEV role's code, an EVSE requirement one that runs the EVSE role's code, a "both" requirement
either. What a test drives (its *evidence*) is read from the code it uses, with ``ast``:

* the names referenced by the test function, by its class's non-test methods (``setUp``,
  helpers, base classes) and, transitively, by the module-level functions, classes and
  constants of the same file or of other ``tests/*.py`` files they reach through imports
  (type annotations are ignored);
* each name is resolved through the file's imports to a module: see ``ROLE_MODULES``;
  bundled plugins count through ``sepgw.dropins.<stem>`` or a ``find(kind, name)`` lookup
  (``PLUGINS``), real processes through ``Process.twistd("sepgw"...)`` or a ``[TWISTD, ...,
  "sepgw-pev", ...]`` command line (``TWISTD_PLUGINS``);
* ``tests/scripted_pev.py`` and other ``TEST_DOUBLES`` are not a role's real code: only the
  schema they use counts.

A test that uses only ``sepgw.model`` is *schema* evidence, never a proof. Tests are never
imported and only the standard library is used, so this runs in about a second from a bare
checkout.

    .venv/bin/python tools/conformance.py            # rewrite docs/conformance.md
    .venv/bin/python tools/conformance.py --check    # exit 1 if it is stale

Exit status: 0 success, 1 stale file (``--check``), 2 a test cites an unknown ID.
"""

from __future__ import annotations

import argparse
import ast
import functools
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

# --- What counts as a role's real code -------------------------------------------------------

#: Module prefixes (``a.b`` matches ``a.b`` and ``a.b.*``) and the evidence they give.
ROLE_MODULES: tuple[tuple[str, str], ...] = (
    ("sepgw.pev", "PEV"),
    ("sepgw.service.pev", "PEV"),
    ("sepgw.events", "PEV"),
    ("sepgw.dropins.sim_inverter", "PEV"),
    ("sepgw.dropins.sim_grid_support", "PEV"),  # the simulated inverter's functions
    ("sepgw.evse", "EVSE"),
    ("sepgw.service.evse", "EVSE"),
    ("sepgw.net", "EVSE"),
    ("sepgw.service.network", "EVSE"),
    ("sepgw.dropins.j3072_policy", "EVSE"),
    ("sepgw.timebase", "EVSE"),
    ("sepgw.service.https", "EVSE"),  # the EVSE's HTTPS listener
    # sepgw.security.tls is shared: its server side runs only in the EVSE, its client side
    # only in the PEV. (Certificates, PKI and identity parsing are neither role's behaviour.)
    ("sepgw.security.tls.TLSServerEndpoint", "EVSE"),
    ("sepgw.security.tls.ServerConnectionCreator", "EVSE"),
    ("sepgw.security.tls.server_connection_creator", "EVSE"),
    ("sepgw.security.tls.ClientConnectionCreator", "PEV"),
    ("sepgw.security.tls.client_connection_creator", "PEV"),
    ("sepgw.security.tls.ClientPolicy", "PEV"),
    ("sepgw.security.tls.client_policy", "PEV"),
    ("sepgw.model", "schema"),
)

#: Bundled plugins that are a role's code: file stem -> (kind, name, evidence). A test uses one
#: when its code imports ``sepgw.dropins.<stem>`` (or names that string), or when its code holds
#: both the kind and the name as string constants (``registry.find("policy", "j3072")``).
PLUGINS: Mapping[str, tuple[str, str, str]] = {
    "j3072_policy": ("policy", "j3072", "EVSE"),
    "sim_inverter": ("inverter", "simulated", "PEV"),
}

#: twistd plugin names of the two roles, run as real processes.
TWISTD_PLUGINS: Mapping[str, str] = {"sepgw": "EVSE", "sepgw-pev": "PEV"}

#: Test doubles: files under the tests directory that stand in for a role; only their schema
#: use counts.
TEST_DOUBLES: frozenset[str] = frozenset({"tests/scripted_pev.py"})

#: Evidence kinds in display order; the first two are a role's code.
EVIDENCE: tuple[str, ...] = ("EVSE", "PEV", "schema")


def module_evidence(dotted: str) -> str | None:
    """The evidence kind given by using the module (or attribute) ``dotted``, if any."""
    for prefix, kind in ROLE_MODULES:
        if dotted == prefix or dotted.startswith(prefix + "."):
            return kind
    return None


@functools.lru_cache(maxsize=None)
def _script_evidence(text: str) -> frozenset[str]:
    """Evidence of a string holding a Python script (run by a test in a child process): the
    modules it imports."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return frozenset()
    kinds: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{a.name}" for a in node.names]
        kinds |= {k for n in names if (k := module_evidence(n)) is not None}
    return frozenset(kinds)


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


class _SourceFile:
    """One parsed Python file: its imports (name -> dotted target) and top-level definitions."""

    def __init__(self, relpath: str, tree: ast.Module) -> None:
        self.relpath = relpath
        self.tree = tree
        parts = relpath[:-3].split("/")
        self.package = ".".join(parts[:-1])
        self.imports: dict[str, str] = {}
        self.defs: dict[str, ast.AST] = {}
        for node in ast.walk(tree):  # imports anywhere in the file, local ones too
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.imports.setdefault(a.asname, a.name)
                    else:
                        root = a.name.split(".")[0]
                        self.imports.setdefault(root, root)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = self.package.split(".") if self.package else []
                    pkg = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                    base = ".".join(pkg + ([base] if base else []))
                for a in node.names:
                    if a.name != "*":
                        self.imports.setdefault(a.asname or a.name, f"{base}.{a.name}".lstrip("."))
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defs[stmt.name] = stmt
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    for n in ast.walk(target):
                        if isinstance(n, ast.Name):
                            self.defs[n.id] = stmt
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                self.defs[stmt.target.id] = stmt


class _Refs(ast.NodeVisitor):
    """Collect what a piece of code references: dotted names, call strings, twistd plugins."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.strings: set[str] = set()
        self.twistd: set[str] = set()

    # Annotations say nothing about what runs: skip them.
    def visit_arg(self, node: ast.arg) -> None:
        pass

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for d in node.decorator_list:
            self.visit(d)
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d]:
            self.visit(default)
        for stmt in node.body:
            self.visit(stmt)

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        if node.value is not None:
            self.visit(node.value)

    def visit_Name(self, node: ast.Name) -> None:
        self.names.add(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = _dotted(node)
        if dotted is not None:
            self.names.add(dotted)
        else:
            self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self.strings.add(node.value)

    def visit_Call(self, node: ast.Call) -> None:
        func = _dotted(node.func) or ""
        if func.split(".")[-1] == "twistd":  # Process.twistd("sepgw", config, ...)
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                        and arg.value in TWISTD_PLUGINS:
                    self.twistd.add(arg.value)
        self._command_line(node.args)
        self.generic_visit(node)

    def visit_List(self, node: ast.List) -> None:
        self._command_line(node.elts)
        self.generic_visit(node)

    visit_Tuple = visit_List  # type: ignore[assignment]

    def _command_line(self, items: Sequence[ast.expr]) -> None:
        """``[TWISTD, "-n", ..., "sepgw-pev", ...]``: a twistd command line naming a role."""
        def is_twistd(e: ast.expr) -> bool:
            name = _dotted(e)
            if name is not None:
                return name.split(".")[-1].upper() == "TWISTD"
            return isinstance(e, ast.Constant) and isinstance(e.value, str) \
                and e.value.endswith("twistd")
        if any(is_twistd(e) for e in items):
            for e in items:
                if isinstance(e, ast.Constant) and isinstance(e.value, str) \
                        and e.value in TWISTD_PLUGINS:
                    self.twistd.add(e.value)


class EvidenceFinder:
    """Decide, from source alone, which role's real code each test drives."""

    def __init__(self, root: Path | None, tests_dir: str = "tests") -> None:
        self.root = root
        self.tests_dir = tests_dir
        self._files: dict[str, _SourceFile | None] = {}

    def add(self, relpath: str, tree: ast.Module) -> _SourceFile:
        """Register an already parsed file."""
        f = _SourceFile(relpath, tree)
        self._files[relpath] = f
        return f

    def _file(self, relpath: str) -> _SourceFile | None:
        if relpath not in self._files:
            self._files[relpath] = None
            if self.root is not None:
                path = self.root / relpath
                try:
                    tree = ast.parse(path.read_text(encoding="utf-8"), filename=relpath)
                except (OSError, SyntaxError, ValueError):
                    return None
                self.add(relpath, tree)
        return self._files[relpath]

    def _test_module(self, dotted: str) -> tuple[_SourceFile, list[str]] | None:
        """For ``tests.x.y.z``: the longest prefix that is a file of the tests tree, and the rest."""
        parts = dotted.split(".")
        if parts[0] != self.tests_dir.replace("/", "."):
            return None
        for i in range(len(parts), 0, -1):
            base = "/".join(parts[:i])
            for rel in (f"{base}.py", f"{base}/__init__.py"):
                if rel in self._files or (self.root is not None and (self.root / rel).is_file()):
                    f = self._file(rel)
                    if f is not None:
                        return f, parts[i:]
        return None

    def evidence(
        self, file: _SourceFile, function: ast.AST, classes: Sequence[ast.ClassDef]
    ) -> frozenset[str]:
        """The evidence kinds of one test function, given its enclosing classes (outermost first)."""
        kinds: set[str] = set()
        strings: set[str] = set()
        seen: set[tuple[str, int, bool, bool]] = set()
        work: list[tuple[_SourceFile, ast.AST, bool, bool]] = [(file, function, False, False)]
        if classes:
            work.append((file, classes[-1], True, False))
        while work:
            src, node, context_only, double = work.pop()
            key = (src.relpath, id(node), context_only, double)
            if key in seen:
                continue
            seen.add(key)
            double = double or src.relpath in TEST_DOUBLES
            refs = _Refs()
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    refs.visit(base)
                for stmt in node.body:
                    if context_only and isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                            and stmt.name.startswith("test"):
                        continue  # other tests of the class are not this test's code
                    if context_only and isinstance(stmt, ast.ClassDef):
                        continue
                    refs.visit(stmt)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                if node.value is not None:
                    refs.visit(node.value)
            else:
                refs.visit(node)
            # The test's own class and its bases: only their non-test members are its code.
            bases = {_dotted(b) for b in node.bases} \
                if context_only and isinstance(node, ast.ClassDef) else set()
            found: set[str] = set()
            strings |= refs.strings
            found |= {TWISTD_PLUGINS[t] for t in refs.twistd}
            for s in refs.strings:
                if s.startswith("sepgw.") and (k := module_evidence(s)) is not None:
                    found.add(k)  # importlib.import_module("sepgw.dropins.sim_inverter")
                elif "import" in s and "\n" in s:
                    found |= _script_evidence(s)  # a script run in a child interpreter
            for name in refs.names:
                root, _, rest = name.partition(".")
                if root in src.imports:
                    target = src.imports[root] + ("." + rest if rest else "")
                    kind = module_evidence(target)
                    if kind is not None:
                        found.add(kind)
                        continue
                    located = self._test_module(target)
                    if located is not None:
                        other, attrs = located
                        if attrs and attrs[0] in other.defs:
                            work.append((other, other.defs[attrs[0]], name in bases, double))
                elif root in src.defs:
                    work.append((src, src.defs[root], name in bases, double))
            if double:
                found &= {"schema"}
            kinds |= found
        for kind, name, role in PLUGINS.values():
            if kind in strings and name in strings:
                kinds.add(role)
        return frozenset(kinds)


def evidence_label(kinds: Collection[str]) -> str:
    """Human label of a set of evidence kinds: "EVSE + PEV code", "schema only", "no role code"."""
    roles = [k for k in EVIDENCE[:2] if k in kinds]
    if roles:
        return " + ".join(roles) + " code"
    return "schema only" if "schema" in kinds else "no role code"


def proves(role: str, kinds: Collection[str]) -> bool:
    """True if a test with these evidence kinds proves a requirement of ``role``."""
    if role == "both":
        return "EVSE" in kinds or "PEV" in kinds
    return role in kinds


# --- Scanning ---------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Citation:
    """A test citing a requirement ID in its docstring, with the evidence kinds of the test."""

    requirement_id: str
    test: str  # "tests/test_x.py::Class.test_name"
    path: str
    line: int
    evidence: tuple[str, ...] = ()  # sorted subset of EVIDENCE


@dataclass(frozen=True, order=True)
class ScanError:
    """A problem found while scanning, reported as ``path:line: message``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _test_functions(
    body: Iterable[ast.stmt], prefix: str = "", classes: tuple[ast.ClassDef, ...] = ()
) -> Iterable[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, tuple[ast.ClassDef, ...]]]:
    """Yield (qualified name, node, enclosing classes) for test functions at this level and in
    nested classes."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("test"):
                yield prefix + node.name, node, classes
        elif isinstance(node, ast.ClassDef):
            yield from _test_functions(node.body, f"{prefix}{node.name}.", classes + (node,))


def scan_source(
    source: str, relpath: str, known: Collection[str], finder: EvidenceFinder | None = None
) -> tuple[list[Citation], list[ScanError]]:
    """Find the requirement IDs cited in the docstrings of the test functions of one file, with
    each citing test's evidence (imports into other test files are followed through
    ``finder``'s root; without a finder, only this file is read)."""
    citations: list[Citation] = []
    errors: list[ScanError] = []
    if "V2G-" not in source:  # fast path: nothing can be cited
        return citations, errors
    try:
        tree = ast.parse(source, filename=relpath)
    except SyntaxError as e:
        return citations, [ScanError(relpath, e.lineno or 0, f"cannot parse: {e.msg}")]
    finder = finder or EvidenceFinder(None)
    file = finder.add(relpath, tree)
    for qualname, node, classes in _test_functions(tree.body):
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
        kinds: tuple[str, ...] | None = None
        for m in CITATION.finditer(doc):
            line = first.value.lineno + doc.count("\n", 0, m.start())
            rid = m.group(0)
            if rid not in known:
                errors.append(ScanError(relpath, line, f"{test} cites unknown requirement ID {rid}"))
            elif rid not in seen:
                seen.add(rid)
                if kinds is None:
                    found = finder.evidence(file, node, classes)
                    kinds = tuple(k for k in EVIDENCE if k in found)
                citations.append(Citation(rid, test, relpath, line, kinds))
    return citations, errors


def scan_tests(
    root: Path, known: Collection[str], tests_dir: str = "tests"
) -> tuple[list[Citation], list[ScanError]]:
    """Scan ``<root>/<tests_dir>/**/*.py``; paths in the results are relative to root."""
    citations: list[Citation] = []
    errors: list[ScanError] = []
    finder = EvidenceFinder(root, tests_dir)
    for path in sorted((root / tests_dir).glob("**/*.py")):
        relpath = path.relative_to(root).as_posix()
        found, problems = scan_source(path.read_text(encoding="utf-8"), relpath, known, finder)
        citations.extend(found)
        errors.extend(problems)
    return sorted(citations), sorted(errors)


def proofs(
    citations: Iterable[Citation], roles: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Map each requirement ID to the sorted, distinct tests that prove it: those whose
    evidence is the code of the requirement's role (``roles``: ID -> role). Without ``roles``
    every citation counts (the old, role-blind rule)."""
    result: dict[str, set[str]] = {}
    for c in citations:
        if roles is None or proves(roles[c.requirement_id], c.evidence):
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


def requirement_evidence(role: str, citing: Sequence[Citation]) -> str:
    """The evidence column of one requirement, from the citations of its tests."""
    if not citing:
        return "none"
    proving = [c for c in citing if proves(role, c.evidence)]
    if proving:
        return evidence_label({k for c in proving for k in c.evidence if k != "schema"})
    kinds = {k for c in citing for k in c.evidence}
    label = evidence_label(kinds)
    return label + " (other role)" if label.endswith(" code") and label != "no role code" else label


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
    citations: Sequence[Citation],
) -> str:
    """The Markdown text of the matrix: deterministic for the same inputs."""
    reqs = sorted(requirements, key=lambda r: catalogue.id_sort_key(r.id))
    roles = {r.id: r.role for r in reqs}
    proven = proofs(citations, roles)
    citing: dict[str, list[Citation]] = {}
    for c in sorted(citations):
        citing.setdefault(c.requirement_id, []).append(c)
    cov = coverage(reqs, proven)
    out = [
        "# Conformance matrix: SunSpec IEEE 2030.5 V2G-AC profile (SAE J3072), section 4",
        "",
        "<!-- Generated file: do not edit by hand. -->",
        "",
        "This file is **generated** by `tools/conformance.py` from the requirement catalogue",
        "(`sepgw/conformance/requirements.toml`) and the tests (`tests/**/*.py`). Regenerate it",
        "from the repository root with:",
        "",
        "    " + REGENERATE,
        "",
        "`make test` runs the same command with `--check` and fails when this file is stale.",
        "",
        "A test *cites* a requirement when its docstring names the ID. A citation *proves* the",
        "requirement only when the test drives the real code of the requirement's role: the PEV",
        "role's code (`sepgw.pev`, `sepgw.service.pev`, `sepgw.events`, the `sim_inverter`",
        "plugin, a `twistd sepgw-pev` process) for a PEV requirement, the EVSE role's code",
        "(`sepgw.evse`, `sepgw.service.evse`, `sepgw.net`, `sepgw.service.network`, the `j3072`",
        "policy, `sepgw.timebase`, a `twistd sepgw` process) for an EVSE requirement, either for",
        "a requirement of both. The tool reads what each test uses from its source (the test, its",
        "class's helpers and the helper functions they reach through imports). A test that uses",
        "only the model and codec (`sepgw.model`), or a test double such as",
        "`tests/scripted_pev.py`, is *schema* evidence and never counts as proof.",
        "",
        "Evidence: the kind of code the proving tests drive (`EVSE code`, `PEV code`); for an",
        "unproven requirement, what its citing tests drive instead (`schema only`, `no role",
        "code`, or the other role's code), or `none` when no test cites it.",
        "Paraphrases are the project's short wording; the profile text is authoritative.",
        "Levels: mandatory = MUST/SHALL, recommended = SHOULD, optional = MAY; informative",
        "lines (keyword conventions) are listed but never counted.",
        "",
        "## Summary",
        "",
        "Proven requirements per role and level:",
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
    unproven: dict[str, int] = {}
    for r in reqs:
        if r.level in NORMATIVE_LEVELS and not proven.get(r.id):
            label = requirement_evidence(r.role, citing.get(r.id, []))
            unproven[label] = unproven.get(label, 0) + 1
    if unproven:
        out += ["", "Unproven normative requirements by evidence: " + ", ".join(
            f"{label} {n}" for label, n in sorted(unproven.items())) + "."]
    sections: dict[str, list[Any]] = {}
    for r in reqs:
        sections.setdefault(r.section, []).append(r)
    for section, members in sections.items():  # reqs are sorted, so sections are too
        title = titles.get(section, "")
        out += [
            "",
            f"## {section} {title}".rstrip(),
            "",
            "| ID | Role | Level | Requirement (paraphrase) | Evidence | Proven by "
            "| Cited without proof |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in members:
            tests = proven.get(r.id, ())
            by = "<br>".join(f"`{t}`" for t in tests) if tests else "—"
            others = sorted({c.test for c in citing.get(r.id, []) if c.test not in tests})
            rest = "<br>".join(f"`{t}`" for t in others) if others else "—"
            ev = requirement_evidence(r.role, citing.get(r.id, []))
            out.append(
                f"| {r.id} | {r.role} | {r.level} | {_cell(r.summary)} | {ev} | {by} | {rest} |"
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
    return render(requirements, titles, citations), errors


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
