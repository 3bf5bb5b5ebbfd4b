"""The stable plugin API (``sepgw.plugin``): what it exports, that importing it stays light,
that the bundled plugins import nothing else of sepgw, and that the PEV role imports no EVSE
module."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import sepgw.plugin
from sepgw.registry import bundled_plugin_dir

ROOT = Path(__file__).resolve().parent.parent

#: The stable API, written out: changing sepgw.plugin.__all__ must change this list too.
STABLE_API = [
    # contracts
    "PluginKind", "BuildContext", "IPluginFactory", "IComponent",
    "ITransport", "ILinkListener", "LinkPeer",
    "IContactor", "IContactorFeedback", "ContactorState", "ContactorRefused",
    "IMeter", "IMeterListener", "MeterSample",
    "IInverter", "InverterReading",
    "IAuthorizationPolicy", "Decision",
    "IUplink",
    # declaring a plugin
    "PluginFactory", "Section", "Key", "ArrayOf", "require_module", "MissingDependency",
    # units and values
    "real_value", "show", "power_of_ten", "fixed", "INT16", "UINT16", "INT32", "UINT32",
    # authorization policies
    "PolicyFacts", "REACTIVE_MODES", "REACTIVE_RATINGS", "REQUIRED_RESPONSES",
    "is_four_quadrant", "reactive_modes", "reactive_ratings", "rating_text",
    "missing_responses", "mrid_text", "status_text", "normalize_lfdi", "HardwareModuleName",
    # hardware authors
    "modbus", "sunspec",
    # transport authors
    "NetlinkEvents", "build_plc_transport", "PLC_OPTIONS",
    # logging, helper modules
    "Logger", "dropin_module",
]

#: Imports of sepgw other than sepgw.plugin that a bundled plugin may make, with the reason.
EXCEPTIONS = {
    ("ieee2030_5_uplink.py", "sepgw.uplink.component"):
        "a thin declaration of sepgw's own uplink component (docs/uplink.md), imported in "
        "build() only; it is sepgw's internal code, not something a drop-in reuses",
}

#: Heavy modules that ``import sepgw.plugin`` must not load (they are lazy attributes).
HEAVY = ["sepgw.slac", "sepgw.net.ipv6", "sepgw.evse", "sepgw.security", "sepgw.hw",
         "sepgw.model", "cryptography", "OpenSSL", "pyroute2", "lxml"]


def sepgw_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of sepgw in ``path``, at any depth; relative imports
    are reported as ``.module`` (a plugin has no package to be relative to)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names
                      if a.name == "sepgw" or a.name.startswith("sepgw.")]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if node.level or module == "sepgw" or module.startswith("sepgw."):
                if module == "sepgw":  # from sepgw import x: x is the module imported
                    found += [(node.lineno, f"sepgw.{a.name}") for a in node.names]
                else:
                    found.append((node.lineno, module))
    return found


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    if result.returncode:
        raise AssertionError(result.stderr)
    return result.stdout


class StableAPITests(SynchronousTestCase):
    def test_all_is_pinned(self) -> None:
        """sepgw.plugin.__all__ is exactly the list written in this test (a change to the
        stable API is deliberate), without duplicates."""
        self.assertEqual(len(set(sepgw.plugin.__all__)), len(sepgw.plugin.__all__))
        self.assertEqual(sorted(sepgw.plugin.__all__), sorted(STABLE_API))

    def test_every_name_resolves(self) -> None:
        """Every name of __all__ is an attribute (lazy ones imported on access), and
        ``from sepgw.plugin import *`` binds them all."""
        for name in STABLE_API:
            self.assertIsNotNone(getattr(sepgw.plugin, name), name)
        namespace: dict[str, object] = {}
        exec("from sepgw.plugin import *", namespace)
        self.assertTrue(set(STABLE_API) <= set(namespace))

    def test_names_are_the_implementations(self) -> None:
        """The re-exports are the objects sepgw itself uses, not copies: a component built
        with sepgw.plugin.IMeter is an IMeter to the service tree, and so on."""
        import sepgw.evse.policy_facts as facts
        import sepgw.hw.modbus as modbus
        import sepgw.interfaces as interfaces
        import sepgw.security.identity as identity

        self.assertIs(sepgw.plugin.IMeter, interfaces.IMeter)
        self.assertIs(sepgw.plugin.ContactorState, interfaces.ContactorState)
        self.assertIs(sepgw.plugin.PolicyFacts, facts.PolicyFacts)
        self.assertIs(sepgw.plugin.normalize_lfdi, identity.normalize_lfdi)
        self.assertIs(sepgw.plugin.modbus, modbus)

    def test_unknown_name(self) -> None:
        """An unknown attribute is an AttributeError naming it (not a lazy import attempt)."""
        with self.assertRaises(AttributeError) as cm:
            sepgw.plugin.no_such_helper  # noqa: B018
        self.assertIn("'no_such_helper'", str(cm.exception))

    def test_value_helpers(self) -> None:
        """The units helpers compute 2030.5 quantities: 91.7 V is 917 × 10^-1, 72000 W in an
        Int16 is 7200 × 10^1, 60.1 Hz in hundredths is 6010, and ActivePower{value=-33,
        multiplier=2} is -3300 W."""
        self.assertEqual(sepgw.plugin.power_of_ten([91.7]), (-1, [917]))
        self.assertEqual(sepgw.plugin.power_of_ten([72000], sepgw.plugin.INT16), (1, [7200]))
        self.assertEqual(sepgw.plugin.fixed(60.1, 2, sepgw.plugin.UINT16), 6010)

        class Quantity:
            value, multiplier = -33, 2
        self.assertEqual(sepgw.plugin.show(sepgw.plugin.real_value(Quantity())), "-3300")

    def test_require_module(self) -> None:
        """require_module returns the module, or raises MissingDependency naming the module,
        what needs it and the install command."""
        self.assertIs(sepgw.plugin.require_module("json", "pip install x", "y"), json)
        with self.assertRaises(sepgw.plugin.MissingDependency) as cm:
            sepgw.plugin.require_module("sepgw_no_such_lib", "pip install sepgw[lab]",
                                        "the lab meter")
        message = str(cm.exception)
        self.assertTrue(message.startswith("the lab meter needs the Python module "
                                           "'sepgw_no_such_lib'"), message)
        self.assertTrue(message.endswith(": pip install sepgw[lab]"), message)

    def test_dropin_module(self) -> None:
        """dropin_module returns the helper module discovery imported (shared state), and
        refuses a name that is not a module file name."""
        from sepgw.registry import PluginRegistry

        PluginRegistry.discover([bundled_plugin_dir()])
        self.assertIs(sepgw.plugin.dropin_module("sim_link"),
                      sys.modules["sepgw.dropins.sim_link"])
        self.assertRaises(ValueError, sepgw.plugin.dropin_module, "../sim_link")

    def test_import_is_light(self) -> None:
        """``import sepgw.plugin`` loads none of the heavy modules (idle RSS); accessing a
        lazy name loads only what it needs."""
        loaded = json.loads(run_python(
            "import json, sys, sepgw.plugin\n"
            f"heavy = {HEAVY!r}\n"
            "before = [m for m in sys.modules if any(m == h or m.startswith(h + '.') "
            "for h in heavy)]\n"
            "sepgw.plugin.NetlinkEvents\n"
            "print(json.dumps([before, 'sepgw.net.ipv6' in sys.modules, "
            "'sepgw.slac' in sys.modules]))\n"))
        self.assertEqual(loaded, [[], True, False])


class BundledPluginImportTests(SynchronousTestCase):
    def test_plugins_import_only_stable_api(self) -> None:
        """Every bundled plugin imports nothing of sepgw but sepgw.plugin (at module level or
        inside functions), except the documented EXCEPTIONS."""
        files = sorted(bundled_plugin_dir().glob("*.py"))
        self.assertGreater(len(files), 10)
        offending = [f"{f.name}:{line}: {module}" for f in files
                     for line, module in sepgw_imports(f)
                     if module != "sepgw.plugin" and (f.name, module) not in EXCEPTIONS]
        self.assertEqual(offending, [])

    def test_exceptions_are_current(self) -> None:
        """Each documented exception is still made (a stale exception would hide a new one)."""
        for name, module in EXCEPTIONS:
            imports = [m for _, m in sepgw_imports(bundled_plugin_dir() / name)]
            self.assertIn(module, imports, name)

    def test_checker_sees_every_form(self) -> None:
        """The import checker catches ``import sepgw.x``, ``from sepgw.x import y``,
        ``from sepgw import x``, relative and function-level imports."""
        source = Path(self.mktemp())
        source.write_text("import sepgw.evse.site\nfrom sepgw.hw import modbus\n"
                          "from sepgw import slac\nfrom . import sim_link\n"
                          "def f():\n    from sepgw.net.ipv6 import NetlinkEvents\n"
                          "from sepgw.plugin import Key\nimport sepgwish\n")
        self.assertEqual(sorted(sepgw_imports(source)),
                         [(1, "sepgw.evse.site"), (2, "sepgw.hw"), (3, "sepgw.slac"),
                          (4, "."), (6, "sepgw.net.ipv6"), (7, "sepgw.plugin")])


class RoleSeparationTests(SynchronousTestCase):
    def test_pev_sources_do_not_import_evse(self) -> None:
        """No module under sepgw/pev imports sepgw.evse (what both roles need is in
        sepgw.common)."""
        pev = ROOT / "sepgw" / "pev"
        files = sorted(pev.rglob("*.py"))
        self.assertTrue(files)
        offending = []
        for f in files:
            for line, module in sepgw_imports(f):
                relative_evse = module.startswith("..evse") or module == ".."
                if module == "sepgw.evse" or module.startswith("sepgw.evse.") or relative_evse:
                    offending.append(f"{f.relative_to(ROOT)}:{line}: {module}")
        self.assertEqual(offending, [])

    def test_pev_import_graph_has_no_evse(self) -> None:
        """Importing every module of sepgw.pev, transitively, loads no sepgw.evse module."""
        loaded = json.loads(run_python(
            "import importlib, json, pkgutil, sys, sepgw.pev\n"
            "for m in pkgutil.walk_packages(sepgw.pev.__path__, 'sepgw.pev.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m == 'sepgw.evse' "
            "or m.startswith('sepgw.evse.'))))\n"))
        self.assertEqual(loaded, [])

    def test_evse_keeps_its_names(self) -> None:
        """EVSE code keeps importing the moved helpers from sepgw.evse.site and
        sepgw.evse.policy_facts: the same objects as sepgw.common.quantities'."""
        from sepgw.common import quantities
        from sepgw.evse import policy_facts, site

        for name in ("INT16", "UINT16", "INT32", "UINT32", "power_of_ten", "fixed"):
            self.assertIs(getattr(site, name), getattr(quantities, name), name)
        self.assertIs(policy_facts.real_value, quantities.real_value)
        self.assertIs(policy_facts.show, quantities.show)
