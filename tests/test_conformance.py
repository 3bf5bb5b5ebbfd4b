"""Tests of the requirement catalogue and of tools/conformance.py (the conformance matrix).

The scanner and generator are exercised on small synthetic test trees and catalogues in
temporary directories, so these tests do not depend on what the real tests cite.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import ModuleType

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from sepgw.conformance.catalogue import (
    CatalogueError,
    id_sort_key,
    load_catalogue,
    load_section_titles,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL_PATH = REPO_ROOT / "tools" / "conformance.py"


def _load_tool() -> ModuleType:
    name = "_sepgw_tools_conformance"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TOOL_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


tool = _load_tool()


def _spec_requirements_md() -> Path | None:
    """Locate the profile's requirements.md: $SEPGW_REQUIREMENTS_MD, ./spec, /work/shared/spec."""
    candidates = [
        os.environ.get("SEPGW_REQUIREMENTS_MD"),
        str(REPO_ROOT / "spec" / "requirements.md"),
        "/work/shared/spec/requirements.md",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


_SPEC_ROW = re.compile(r"^\| (V2G-[0-9.]+-[0-9]+) \| (\w+) \| (.*) \|\s*$", re.M)


def _spec_rows() -> dict[str, tuple[str, str]]:
    """ID -> (role, sentence) from requirements.md, or SkipTest when it is not available."""
    path = _spec_requirements_md()
    if path is None:
        raise SkipTest(
            "requirements.md of the profile not found (set SEPGW_REQUIREMENTS_MD, or provide "
            "spec/requirements.md or /work/shared/spec/requirements.md)"
        )
    return {m.group(1): (m.group(2), m.group(3)) for m in _SPEC_ROW.finditer(path.read_text("utf-8"))}


# A synthetic catalogue used by the scanner/generator tests: section 9 does not exist in the
# profile, so nothing here can be confused with the real requirements.
SYNTHETIC_TOML = """\
requirements = [
  { id = "V2G-9-1", role = "both", level = "informative", summary = "keyword line" },
  { id = "V2G-9.1-1", role = "EVSE", level = "mandatory", summary = "evse one" },
  { id = "V2G-9.1-2", role = "PEV", level = "mandatory", summary = "pev one" },
  { id = "V2G-9.1-10", role = "both", level = "mandatory", summary = "both ten | piped" },
  { id = "V2G-9.2-1", role = "EVSE", level = "recommended", summary = "evse should" },
  { id = "V2G-9.10-1", role = "PEV", level = "optional", summary = "pev may" },
]

[sections]
"9" = "Conventions"
"9.1" = "First"
"9.2" = "Second"
"9.10" = "Tenth"
"""


class _TreeTestCase(SynchronousTestCase):
    """Helpers to build a synthetic repository root with a catalogue and a tests/ tree."""

    def make_root(self, files: dict[str, str]) -> tuple[Path, Path]:
        """Create a root holding the synthetic catalogue and FILES; return (root, catalogue)."""
        root = Path(self.mktemp()).resolve()
        (root / "tests").mkdir(parents=True)
        catalogue_path = root / "requirements.toml"
        catalogue_path.write_text(SYNTHETIC_TOML, encoding="utf-8")
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        return root, catalogue_path

    def run_tool(self, *args: str) -> tuple[int, str, str]:
        """Run tool.main(ARGS) in-process; return (status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            status = tool.main(list(args))
        return status, out.getvalue(), err.getvalue()


GOOD_TESTS = '''\
"""Module docstring citing V2G-9.1-1 does not count."""

# A comment citing V2G-9.1-1 does not count.

from sepgw.evse.tree import EVSEResources
from sepgw.pev.session import J3072Client


class ThingTests:
    """A class docstring citing V2G-9.1-2 does not count."""

    def setUp(self):
        self.evse = EVSEResources()  # every test of the class drives the EVSE's code

    def test_evse(self):
        """
        Proves the EVSE part.

        Cites V2G-9.1-1 and, twice, V2G-9.1-10 (V2G-9.1-10).
        """
        note = "a string citing V2G-9.1-2 in the body does not count"

    def helper(self):
        """A helper citing V2G-9.1-2 is not a test."""

    async def test_async(self):
        """Async tests count: V2G-9.2-1."""

    class Inner:
        def test_nested(self):
            """Nested classes are qualified: V2G-9.10-1."""
            J3072Client()


def test_module_level():
    """Module-level tests count too: V2G-9.1-10."""
    J3072Client()


def test_no_docstring():
    "V2G-9.1-2" + ""


def not_a_test():
    """V2G-9.1-2 in a non-test function does not count."""
'''


class CatalogueTests(SynchronousTestCase):
    """The repository's requirement catalogue."""

    def test_ids_and_roles_match_spec(self) -> None:
        """The catalogue has exactly the IDs of requirements.md, each with the same role."""
        spec = _spec_rows()
        self.assertEqual(
            {r.id: r.role for r in load_catalogue()},
            {rid: role for rid, (role, _) in spec.items()},
        )

    def test_levels_match_spec_keywords(self) -> None:
        """Levels follow the sentence's keyword: MUST/SHALL mandatory, SHOULD recommended,
        MAY optional; only the two keyword-convention lines of section 4 are informative."""
        spec = _spec_rows()
        for r in load_catalogue():
            sentence = spec[r.id][1]
            if r.section == "4":
                expected = "informative"
            elif re.search(r"\b(MUST|SHALL|shall)\b", sentence):
                expected = "mandatory"
            elif re.search(r"\bSHOULD\b", sentence):
                expected = "recommended"
            elif re.search(r"\bMAY\b", sentence):
                expected = "optional"
            else:
                self.fail(f"{r.id}: no keyword in {sentence!r}")
            self.assertEqual(r.level, expected, r.id)

    def test_summaries_are_short_paraphrases(self) -> None:
        """Every summary is one short line of the project's own wording, not the spec's sentence."""
        spec = _spec_rows()
        for r in load_catalogue():
            self.assertLessEqual(len(r.summary), 100, r.id)
            self.assertNotEqual(r.summary.lower().strip(" ."), spec[r.id][1].lower().strip(" ."), r.id)

    def test_well_formed(self) -> None:
        """The catalogue loads without the spec: unique IDs in natural order, sections derived
        from IDs and all titled, only section 4 lines informative."""
        reqs = load_catalogue()
        ids = [r.id for r in reqs]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(ids, sorted(ids, key=id_sort_key))
        titles = load_section_titles()
        for r in reqs:
            self.assertEqual(r.section, r.id.split("-")[1])
            self.assertIn(r.section, titles)
            self.assertEqual(r.normative, r.section != "4")
        self.assertEqual({r.id for r in reqs if not r.normative}, {"V2G-4-1", "V2G-4-2"})

    def test_natural_order(self) -> None:
        """IDs sort numerically by section then number (4.9.7 before 4.10, -2 before -10)."""
        ids = ["V2G-4.10-1", "V2G-4.1.1-10", "V2G-4-2", "V2G-4.9.7-1", "V2G-4.1.1-2", "V2G-4.1-1"]
        self.assertEqual(
            sorted(ids, key=id_sort_key),
            ["V2G-4-2", "V2G-4.1-1", "V2G-4.1.1-2", "V2G-4.1.1-10", "V2G-4.9.7-1", "V2G-4.10-1"],
        )

    def test_rejects_malformed_entries(self) -> None:
        """Duplicate IDs, unknown roles or levels, and multi-line summaries are refused."""
        bad = {
            "duplicate": '{ id = "V2G-9-1", role = "EVSE", level = "mandatory", summary = "a" },\n'
            '{ id = "V2G-9-1", role = "EVSE", level = "mandatory", summary = "b" }',
            "role": '{ id = "V2G-9-1", role = "DME", level = "mandatory", summary = "a" }',
            "level": '{ id = "V2G-9-1", role = "EVSE", level = "must", summary = "a" }',
            "summary": '{ id = "V2G-9-1", role = "EVSE", level = "mandatory", summary = "a\\nb" }',
            "id": '{ id = "X-9-1", role = "EVSE", level = "mandatory", summary = "a" }',
        }
        for name, entries in bad.items():
            path = Path(self.mktemp())
            path.write_text(f"requirements = [\n{entries}\n]\n", encoding="utf-8")
            self.assertRaises(CatalogueError, load_catalogue, path)


class ScannerTests(_TreeTestCase):
    """tools/conformance.py's scanner of test docstrings."""

    def test_finds_ids_in_test_docstrings(self) -> None:
        """IDs in docstrings of test methods, async tests, nested-class and module-level test
        functions are found, named path::Class.test, once per test, sorted."""
        root, cat = self.make_root(
            {"tests/test_good.py": GOOD_TESTS, "tests/sub/test_more.py": GOOD_TESTS}
        )
        known = {r.id for r in load_catalogue(cat)}
        citations, errors = tool.scan_tests(root, known)
        self.assertEqual(errors, [])
        found = {(c.requirement_id, c.test) for c in citations}
        expected = set()
        for path in ("tests/test_good.py", "tests/sub/test_more.py"):
            expected |= {
                ("V2G-9.1-1", f"{path}::ThingTests.test_evse"),
                ("V2G-9.1-10", f"{path}::ThingTests.test_evse"),
                ("V2G-9.2-1", f"{path}::ThingTests.test_async"),
                ("V2G-9.10-1", f"{path}::ThingTests.Inner.test_nested"),
                ("V2G-9.1-10", f"{path}::test_module_level"),
            }
        self.assertEqual(found, expected)
        self.assertEqual(len(citations), len(found))  # the repeated ID counted once
        self.assertEqual(citations, sorted(citations))

    def test_ignores_ids_outside_test_docstrings(self) -> None:
        """IDs in comments, code strings, class/module docstrings and non-test functions are
        neither cited nor checked, even when unknown."""
        source = '''\
        """Module cites V2G-9.9-9."""
        # V2G-9.9-9
        class T:
            """Class cites V2G-9.9-9."""
            def test_a(self):
                x = "V2G-9.9-9"
            def helper(self):
                """V2G-9.9-9"""
        def fixture():
            """V2G-9.9-9"""
        '''
        root, cat = self.make_root({"tests/test_other.py": source})
        citations, errors = tool.scan_tests(root, {r.id for r in load_catalogue(cat)})
        self.assertEqual((citations, errors), ([], []))

    def test_rejects_unknown_id_with_file_and_line(self) -> None:
        """An unknown ID in a test docstring is an error naming file:line of the ID, and the
        tool then exits 2 without writing the matrix."""
        source = '''\
        class T:
            def test_a(self):
                """Fine: V2G-9.1-1.

                Typo: V2G-9.1-3.
                """
        '''
        root, cat = self.make_root({"tests/test_bad.py": source})
        citations, errors = tool.scan_tests(root, {r.id for r in load_catalogue(cat)})
        self.assertEqual([str(e) for e in errors],
                         ["tests/test_bad.py:5: tests/test_bad.py::T.test_a cites unknown "
                          "requirement ID V2G-9.1-3"])
        status, _, err = self.run_tool("--root", str(root), "--catalogue", str(cat))
        self.assertEqual(status, 2)
        self.assertIn("tests/test_bad.py:5:", err)
        self.assertIn("V2G-9.1-3", err)
        self.assertFalse((root / "docs" / "conformance.md").exists())

    def test_unparsable_file_reported(self) -> None:
        """A test file that does not parse is reported with file:line instead of crashing."""
        root, cat = self.make_root({"tests/test_broken.py": 'def test_x(:\n    "V2G-9.1-1"\n'})
        _, errors = tool.scan_tests(root, {"V2G-9.1-1"})
        self.assertEqual([(e.path, e.line) for e in errors], [("tests/test_broken.py", 1)])


class GeneratorTests(_TreeTestCase):
    """tools/conformance.py's counting and Markdown rendering."""

    def test_counts_only_normative_per_role(self) -> None:
        """Coverage counts proven/total per role and level; informative lines are never counted,
        even when cited, and a requirement proven by several tests counts once."""
        reqs = load_catalogue(self.make_root({})[1])
        proven = {
            "V2G-9-1": ["t::a"],
            "V2G-9.1-1": ["t::a", "t::b"],
            "V2G-9.1-10": ["t::c"],
            "V2G-9.10-1": ["t::d"],
        }
        cov = tool.coverage(reqs, proven)
        self.assertEqual(cov["EVSE"], {"mandatory": (1, 1), "recommended": (0, 1),
                                       "optional": (0, 0), "normative": (1, 2)})
        self.assertEqual(cov["PEV"], {"mandatory": (0, 1), "recommended": (0, 0),
                                      "optional": (1, 1), "normative": (1, 2)})
        self.assertEqual(cov["both"], {"mandatory": (1, 1), "recommended": (0, 0),
                                       "optional": (0, 0), "normative": (1, 1)})
        self.assertEqual(cov["all"]["normative"], (3, 5))

    def test_render_order_and_content(self) -> None:
        """The matrix has the generated-file header with the regenerate command, a summary row
        per role, sections and IDs in natural order, escaped paraphrases and citing tests."""
        root, cat = self.make_root({"tests/test_good.py": GOOD_TESTS})
        text, errors = tool.generate(root, cat)
        self.assertEqual(errors, [])
        self.assertIn("generated", text)
        self.assertIn(".venv/bin/python tools/conformance.py", text)
        self.assertIn("| EVSE | 1/1 | 1/1 | 0/0 | 2/2 (100 %) |", text)
        self.assertIn("| PEV | 0/1 | 0/0 | 1/1 | 1/2 (50 %) |", text)
        self.assertIn("| both | 1/1 | 0/0 | 0/0 | 1/1 (100 %) |", text)
        self.assertIn("| **Total** | 2/3 | 1/1 | 1/1 | 4/5 (80 %) |", text)
        headings = re.findall(r"^## (\S+)", text, re.M)
        self.assertEqual(headings, ["Summary", "9", "9.1", "9.2", "9.10"])
        rows = re.findall(r"^\| (V2G-\S+) \|", text, re.M)
        self.assertEqual(rows, ["V2G-9-1", "V2G-9.1-1", "V2G-9.1-2", "V2G-9.1-10",
                                "V2G-9.2-1", "V2G-9.10-1"])
        self.assertIn(
            "| V2G-9.1-10 | both | mandatory | both ten \\| piped | EVSE + PEV code | "
            "`tests/test_good.py::ThingTests.test_evse`<br>`tests/test_good.py::test_module_level` "
            "| — |",
            text,
        )
        self.assertIn("| V2G-9.1-2 | PEV | mandatory | pev one | none | — | — |", text)

    def test_deterministic(self) -> None:
        """Generating twice, or from files created in another order, gives identical text."""
        a, cat_a = self.make_root({"tests/test_a.py": GOOD_TESTS, "tests/test_b.py": GOOD_TESTS})
        b, cat_b = self.make_root({"tests/test_b.py": GOOD_TESTS, "tests/test_a.py": GOOD_TESTS})
        self.assertEqual(tool.generate(a, cat_a), tool.generate(a, cat_a))
        self.assertEqual(tool.generate(a, cat_a)[0], tool.generate(b, cat_b)[0])


class CheckModeTests(_TreeTestCase):
    """tools/conformance.py --check."""

    def test_check_detects_stale_and_missing_file(self) -> None:
        """--check fails with the regenerate command when the file is missing or stale, does
        not write it, and passes once it has been regenerated."""
        root, cat = self.make_root({"tests/test_good.py": GOOD_TESTS})
        out = root / "docs" / "conformance.md"
        base = ("--root", str(root), "--catalogue", str(cat))

        status, _, err = self.run_tool("--check", *base)
        self.assertEqual(status, 1)
        self.assertIn("missing", err)
        self.assertFalse(out.exists())

        self.assertEqual(self.run_tool(*base)[0], 0)
        self.assertEqual(self.run_tool("--check", *base), (0, "", ""))

        # A test starts citing another requirement: the committed matrix is now stale.
        path = root / "tests" / "test_good.py"
        path.write_text(GOOD_TESTS.replace("Module-level tests count too: V2G-9.1-10.",
                                           "Module-level tests count too: V2G-9.1-2."),
                        encoding="utf-8")
        before = out.read_text(encoding="utf-8")
        status, _, err = self.run_tool("--check", *base)
        self.assertEqual(status, 1)
        self.assertIn("docs/conformance.md is stale", err)
        self.assertIn(".venv/bin/python tools/conformance.py", err)
        self.assertEqual(out.read_text(encoding="utf-8"), before)

        self.assertEqual(self.run_tool(*base)[0], 0)
        self.assertEqual(self.run_tool("--check", *base)[0], 0)

    def test_runs_as_script_with_stdlib_only(self) -> None:
        """The tool runs as a script in a fresh interpreter without importing sepgw, Twisted or
        the tests (so the Makefile's pre-test --check stays fast and dependency-free)."""
        root, cat = self.make_root({"tests/test_good.py": GOOD_TESTS})
        probe = textwrap.dedent(f"""
            import runpy, sys
            sys.argv = ["conformance.py", "--root", {str(root)!r}, "--catalogue", {str(cat)!r}]
            try:
                runpy.run_path({str(TOOL_PATH)!r}, run_name="__main__")
            except SystemExit as e:
                assert e.code in (0, None), e.code
            bad = sorted(m for m in sys.modules
                         if m.split(".")[0] in ("sepgw", "twisted", "tests", "test_good"))
            assert not bad, bad
        """)
        result = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True,
                                text=True, cwd=str(root), timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue((root / "docs" / "conformance.md").is_file())


class EvidenceTests(_TreeTestCase):
    """tools/conformance.py decides from a test's code which role's real code it drives, and
    counts a citation as proof only for a requirement of that role."""

    def evidence(self, files: dict[str, str], test: str) -> tuple[str, ...]:
        """The evidence kinds the scanner gives TEST ("path::Qual.name") in a tree of FILES."""
        root, cat = self.make_root(files)
        citations, errors = tool.scan_tests(root, {r.id for r in load_catalogue(cat)})
        self.assertEqual(errors, [])
        found = {c.evidence for c in citations if c.test == test}
        self.assertEqual(len(found), 1, (test, citations))
        return found.pop()

    def matrix_row(self, files: dict[str, str], rid: str) -> str:
        root, cat = self.make_root(files)
        text, errors = tool.generate(root, cat)
        self.assertEqual(errors, [])
        rows = [line for line in text.splitlines() if line.startswith(f"| {rid} |")]
        self.assertEqual(len(rows), 1)
        return rows[0]

    def test_pev_requirement_needs_pev_code(self) -> None:
        """A PEV requirement cited by a test that only builds and round-trips model objects is
        schema evidence, not proven; cited by a test that drives J3072Client it is proven."""
        model_only = '''\
        from sepgw.model import MirrorMeterReading, parse, serialize
        class T:
            def test_codec(self):
                """Round trip: V2G-9.1-2."""
                parse(serialize(MirrorMeterReading(mRID="01")))
        '''
        row = self.matrix_row({"tests/test_m.py": model_only}, "V2G-9.1-2")
        self.assertEqual(row, "| V2G-9.1-2 | PEV | mandatory | pev one | schema only | — | "
                              "`tests/test_m.py::T.test_codec` |")

        pev = model_only.replace("from sepgw.model import", "from sepgw.pev.session import "
                                 "J3072Client\n        from sepgw.model import").replace(
            "parse(serialize(", "J3072Client(); parse(serialize(")
        row = self.matrix_row({"tests/test_m.py": pev}, "V2G-9.1-2")
        self.assertEqual(row, "| V2G-9.1-2 | PEV | mandatory | pev one | PEV code | "
                              "`tests/test_m.py::T.test_codec` | — |")
        root, cat = self.make_root({"tests/test_m.py": model_only, "tests/test_p.py": pev})
        text, _ = tool.generate(root, cat)
        self.assertIn("| PEV | 1/1 | 0/0 | 0/1 | 1/2 (50 %) |", text)

    def test_roles_are_not_interchangeable(self) -> None:
        """EVSE code proves EVSE and "both" requirements, not PEV ones; the matrix names the
        other role's code as what the citing test drives."""
        source = '''\
        from sepgw.evse.tree import EVSEResources
        def test_x():
            """V2G-9.1-1 V2G-9.1-2 V2G-9.1-10"""
            EVSEResources()
        '''
        files = {"tests/test_x.py": source}
        self.assertEqual(self.evidence(files, "tests/test_x.py::test_x"), ("EVSE",))
        self.assertIn("| evse one | EVSE code | `tests/test_x.py::test_x` | — |",
                      self.matrix_row(files, "V2G-9.1-1"))
        self.assertIn("| pev one | EVSE code (other role) | — | `tests/test_x.py::test_x` |",
                      self.matrix_row(files, "V2G-9.1-2"))
        self.assertIn("| EVSE code | `tests/test_x.py::test_x` | — |",
                      self.matrix_row(files, "V2G-9.1-10"))

    def test_role_modules(self) -> None:
        """Each module of a role's code gives that role's evidence; sepgw.model gives schema;
        other sepgw modules (config, PKI) give none."""
        cases = {
            "sepgw.pev.http": ("PEV",), "sepgw.service.pev": ("PEV",), "sepgw.events": ("PEV",),
            "sepgw.evse.notify": ("EVSE",), "sepgw.service.evse": ("EVSE",),
            "sepgw.net.mdns": ("EVSE",), "sepgw.service.network": ("EVSE",),
            "sepgw.timebase": ("EVSE",), "sepgw.model.der": ("schema",),
            "sepgw.config": (), "sepgw.security.pki": (),
        }
        for module, expected in cases.items():
            source = f'''\
            import {module} as m
            def test_x():
                """V2G-9.1-1"""
                m.anything()
            '''
            self.assertEqual(self.evidence({"tests/test_x.py": source}, "tests/test_x.py::test_x"),
                             expected, module)
        # "from sepgw import events" and fully dotted uses resolve the same way.
        source = '''\
        import sepgw.evse.tree
        from sepgw import events
        def test_x():
            """V2G-9.1-1"""
            sepgw.evse.tree.EVSEResources(); events.EventEngine()
        '''
        self.assertEqual(self.evidence({"tests/test_x.py": source}, "tests/test_x.py::test_x"),
                         ("EVSE", "PEV"))

    def test_only_code_the_test_reaches_counts(self) -> None:
        """The test, its class's non-test methods and bases, and module-level functions,
        classes and constants it reaches (transitively) count; imports the test never uses,
        other tests of the class and type annotations do not."""
        source = '''\
        from sepgw.evse.tree import EVSEResources
        from sepgw.pev.session import J3072Client
        from sepgw.model import Time

        def make_pev():
            return _inner()

        def _inner():
            return J3072Client()

        PEV = make_pev

        class Base:
            def setUp(self):
                self.time = Time()

        class T(Base):
            def test_model(self):
                """V2G-9.1-2"""
                self.time

            def test_other(self):
                """V2G-9.1-1"""
                EVSEResources()

            def test_annotated(self, x: J3072Client) -> J3072Client:
                """V2G-9.1-2"""
                y: EVSEResources = None

            def test_via_constant(self):
                """V2G-9.1-2"""
                PEV()

        class U:
            def setUp(self):
                self.pev = make_pev()

            def test_helper(self):
                """V2G-9.1-2"""
        '''
        files = {"tests/test_x.py": source}
        for test, expected in {
            "T.test_model": ("schema",),
            "T.test_other": ("EVSE", "schema"),
            "T.test_annotated": ("schema",),
            "T.test_via_constant": ("PEV", "schema"),
            "U.test_helper": ("PEV",),
        }.items():
            self.assertEqual(self.evidence(files, f"tests/test_x.py::{test}"), expected, test)

    def test_follows_helpers_in_other_test_files(self) -> None:
        """Names imported from other files of the tests tree (absolute or relative imports,
        module aliases, base classes) are followed into those files, transitively."""
        files = {
            "tests/__init__.py": "",
            "tests/helpers.py": '''\
            from tests.deeper import build
            def evse_site():
                return build()
            def plain():
                return 1
            ''',
            "tests/deeper.py": '''\
            from sepgw.evse.controller import PortController
            def build():
                return PortController()
            ''',
            "tests/bases.py": '''\
            from sepgw.pev.session import J3072Client
            class PEVCase:
                def setUp(self):
                    self.pev = J3072Client()
                def test_inherited(self):
                    """not this file's test"""
            ''',
            "tests/test_x.py": '''\
            from tests.helpers import evse_site, plain
            from .helpers import evse_site as relative
            from tests import helpers as h
            from tests.bases import PEVCase
            def test_abs():
                """V2G-9.1-1"""
                evse_site()
            def test_rel():
                """V2G-9.1-1"""
                relative()
            def test_alias():
                """V2G-9.1-1"""
                h.evse_site()
            def test_plain():
                """V2G-9.1-1"""
                plain()
            class T(PEVCase):
                def test_base(self):
                    """V2G-9.1-2"""
            ''',
        }
        for test, expected in {"test_abs": ("EVSE",), "test_rel": ("EVSE",),
                               "test_alias": ("EVSE",), "test_plain": (),
                               "T.test_base": ("PEV",)}.items():
            self.assertEqual(self.evidence(files, f"tests/test_x.py::{test}"), expected, test)

    def test_scripted_pev_is_a_test_double(self) -> None:
        """tests/scripted_pev.py is not the PEV's real code, even when it uses PEV modules:
        only its schema use counts."""
        files = {
            "tests/scripted_pev.py": '''\
            from sepgw.events import control_response
            from sepgw.model import Response
            def run():
                return control_response(), Response()
            ''',
            "tests/test_x.py": '''\
            from tests import scripted_pev as script
            def test_x():
                """V2G-9.1-2"""
                script.run()
            ''',
        }
        self.assertEqual(self.evidence(files, "tests/test_x.py::test_x"), ("schema",))
        self.assertIn("| schema only | — |", self.matrix_row(files, "V2G-9.1-2"))

    def test_real_processes_and_plugins(self) -> None:
        """`twistd sepgw` / `twistd sepgw-pev` processes, bundled plugins looked up by kind and
        name or imported as drop-ins, and scripts run in a child interpreter count; a scripted
        PEV process does not."""
        source = '''\
        import importlib, sys
        from tests.processes import TWISTD, Process
        from sepgw.registry import PluginRegistry
        SCRIPT = """\\
        from sepgw.net.mdns import EVSEAnnouncer
        EVSEAnnouncer()
        """
        def test_evse_process():
            """V2G-9.1-1"""
            Process.twistd("sepgw", "evse.toml")
        def test_pev_process():
            """V2G-9.1-2"""
            Process(["ip", "netns", "exec", "pev", TWISTD, "-n", "sepgw-pev", "--config", "x"])
        def test_scripted():
            """V2G-9.1-2"""
            Process([sys.executable, "-m", "tests.scripted_pev", "https://[::1]/dcap"])
        def test_policy():
            """V2G-9.1-1"""
            PluginRegistry.discover([]).find("policy", "j3072")
        def test_inverter():
            """V2G-9.1-2"""
            importlib.import_module("sepgw.dropins.sim_inverter")
        def test_other_plugin():
            """V2G-9.1-1"""
            PluginRegistry.discover([]).find("contactor", "simulated")
        def test_script():
            """V2G-9.1-1"""
            Process([sys.executable, "-c", SCRIPT])
        '''
        files = {"tests/processes.py": "TWISTD = 'twistd'\nclass Process: pass\n",
                 "tests/test_x.py": source}
        for test, expected in {"test_evse_process": ("EVSE",), "test_pev_process": ("PEV",),
                               "test_scripted": (), "test_policy": ("EVSE",),
                               "test_inverter": ("PEV",), "test_other_plugin": (),
                               "test_script": ("EVSE",)}.items():
            self.assertEqual(self.evidence(files, f"tests/test_x.py::{test}"), expected, test)

    def test_real_tree_classification(self) -> None:
        """On the repository's own tests: a codec round-trip test is schema evidence, the PEV
        client sequence test drives the PEV, the scripted-PEV end-to-end test drives only the
        EVSE."""
        citations, errors = tool.scan_tests(REPO_ROOT, {r.id for r in load_catalogue()})
        self.assertEqual(errors, [])
        by_test = {c.test: c.evidence for c in citations}
        self.assertEqual(
            by_test["tests/test_model_roundtrip.py::ProfileContentTests.test_meter_reading_sign"],
            ("schema",))
        self.assertIn("PEV", by_test["tests/test_pev_client.py::SequenceTests.test_metrology"])
        self.assertEqual(
            by_test["tests/test_e2e_evse.py::ScriptedPEVTests.test_section5_sequence_over_tls"],
            ("EVSE",))
