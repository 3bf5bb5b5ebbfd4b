"""Tests for plugin discovery (sepgw.registry) and fail-loud plugin use."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from sepgw.config import ConfigError, load
from sepgw.interfaces import BuildContext, PluginKind
from sepgw.registry import PluginLookupError, PluginRegistry, bundled_plugin_dir
from sepgw.service.components import ComponentError, build_component
from tests.helpers import GOOD_METER, evse_config, write_plugin


class DiscoveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()

    def test_bundled_plugins(self) -> None:
        """The bundled directory provides the simulated hardware, the transports, the J3072
        policy and the hardware drivers (SunSpec meter and inverter, Modbus relay and GPIO
        contactors), all usable without their optional libraries installed."""
        registry = PluginRegistry.discover([bundled_plugin_dir()])
        names = {(p.kind, p.name) for p in registry.plugins}
        self.assertTrue({(PluginKind.transport, "loopback"), (PluginKind.contactor, "simulated"),
                         (PluginKind.meter, "simulated"),
                         (PluginKind.inverter, "simulated"), (PluginKind.transport, "ethernet"),
                         (PluginKind.transport, "plc"), (PluginKind.policy, "j3072"),
                         (PluginKind.meter, "sunspec-modbus"),
                         (PluginKind.inverter, "sunspec-modbus"),
                         (PluginKind.contactor, "modbus-relay"),
                         (PluginKind.contactor, "gpio")} <= names)
        self.assertEqual(registry.broken, [])

    def test_discovery_without_gpiod(self) -> None:
        """The GPIO contactor is discovered and its options listed when gpiod is not
        installed: gpiod is imported only when the plugin is built."""
        import subprocess
        import sys

        code = ("import json, sys; sys.modules['gpiod'] = None\n"
                "from sepgw.registry import PluginRegistry, bundled_plugin_dir\n"
                "r = PluginRegistry.discover([bundled_plugin_dir()])\n"
                "f = r.find('contactor', 'gpio').factory\n"
                "print(json.dumps([sorted(f.options.keys), [str(b) for b in r.broken]]))\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parent.parent).stdout
        import json

        self.assertEqual(json.loads(out), [sorted(["chip", "coil", "coil_active_low", "aux",
                                                   "aux_active_low", "aux_bias", "interval",
                                                   "confirm_s"]), []])

    def test_keys_list_gpio_contactor(self) -> None:
        """`sepgw plugins --keys` lists the GPIO contactor with its keys (coil required)."""
        from io import StringIO

        from sepgw.cli import main

        out, err = StringIO(), StringIO()
        self.assertEqual(main(["plugins", "--keys"], out, err), 0)
        lines = [line.split() for line in out.getvalue().splitlines()]
        self.assertIn(["contactor", "gpio", str(bundled_plugin_dir() / "gpio_contactor.py")],
                      lines)
        text = out.getvalue()
        self.assertIn("coil (integer, required): Line offset of the output", text)
        for key in ("chip (string, default '/dev/gpiochip0')", "coil_active_low (boolean",
                    "aux (integer, default -1)", "aux_active_low (boolean", "aux_bias (",
                    "interval (number, default 0.05)", "confirm_s (number, default 0.5)"):
            self.assertIn(key, text)

    def test_drop_in_discovered_and_used(self) -> None:
        """A plugin file in a configured drop-in directory is found, configured and built."""
        source = write_plugin(self.dir / "dropins", "lab_meter", GOOD_METER.format(name="lab"))
        path = evse_config(self.dir, meter='{ plugin = "lab", scale = 2.5 }',
                           plugin_dirs=["dropins"])
        config = load(path, "evse")
        meter_ref = config["ports"][0]["meter"]
        self.assertEqual(meter_ref.info.source, source)
        self.assertEqual(meter_ref.options, {"scale": 2.5})
        component = build_component(meter_ref, BuildContext(reactor=Clock(), name="m"))
        self.assertEqual(component.scale, 2.5)

    def test_import_error_names_file(self) -> None:
        """A configured plugin whose module fails to import stops start-up naming the file."""
        broken = write_plugin(self.dir / "dropins", "lab",
                              "import sepgw_nonexistent_dependency\n")
        path = evse_config(self.dir, meter='{ plugin = "lab" }', plugin_dirs=["dropins"])
        with self.assertRaises(ConfigError) as cm:
            load(path, "evse")
        [problem] = cm.exception.problems
        self.assertEqual(problem.path, "ports[0].meter")
        self.assertEqual(
            problem.reason,
            f"meter plugin 'lab' not found in {bundled_plugin_dir()}, {self.dir / 'dropins'}; "
            f"unusable plugin modules: {broken}: failed to import: ModuleNotFoundError: No "
            f"module named 'sepgw_nonexistent_dependency'")

    def test_syntax_error_names_file(self) -> None:
        """A syntax error in a drop-in is attributed to its file."""
        broken = write_plugin(self.dir, "oops", "def (:\n")
        registry = PluginRegistry.discover([self.dir])
        [b] = registry.broken
        self.assertEqual(b.source, broken)
        self.assertTrue(b.reason.startswith("failed to import: SyntaxError"), b.reason)

    def test_wrong_interface_names_plugin_and_file(self) -> None:
        """A factory that does not verify against IPluginFactory is refused with its file."""
        source = write_plugin(self.dir, "half", '''
            from zope.interface import directlyProvides
            from sepgw.interfaces import IPluginFactory
            class Half:
                kind = "meter"
                name = "half"
            half = Half()
            directlyProvides(half, IPluginFactory)
        ''')
        registry = PluginRegistry.discover([self.dir])
        with self.assertRaises(PluginLookupError) as cm:
            registry.find("meter", "half")
        message = str(cm.exception)
        self.assertIn(f"{source}: plugin 'half' does not provide IPluginFactory:", message)
        self.assertIn("description", message)

    def test_component_must_provide_kind_interface(self) -> None:
        """A built component that does not provide its kind's interface stops start-up."""
        source = write_plugin(self.dir / "dropins", "liar", '''
            from sepgw.plugin import PluginFactory
            meter = PluginFactory(kind="meter", name="liar", description="Not a meter.",
                                  build=lambda config, context: object())
        ''')
        path = evse_config(self.dir, meter='{ plugin = "liar" }', plugin_dirs=["dropins"])
        ref = load(path, "evse")["ports"][0]["meter"]
        with self.assertRaises(ComponentError) as cm:
            build_component(ref, BuildContext(reactor=Clock(), name="ports[0].meter"))
        self.assertIn(f"ports[0].meter: meter plugin 'liar' ({source}) built <object object",
                      str(cm.exception))
        self.assertIn("which does not provide IMeter", str(cm.exception))

    def test_build_failure_names_plugin(self) -> None:
        """An exception while building is reported with the plugin and its file."""
        source = write_plugin(self.dir, "crash", '''
            from sepgw.plugin import PluginFactory
            def build(config, context):
                raise OSError("no such device /dev/ttyUSB7")
            meter = PluginFactory(kind="meter", name="crash", description="Crashes.",
                                  build=build)
        ''')
        info = PluginRegistry.discover([self.dir]).find("meter", "crash")
        from sepgw.config.loader import ResolvedPlugin

        with self.assertRaises(ComponentError) as cm:
            build_component(ResolvedPlugin("ports[0].meter", info, {}),
                            BuildContext(reactor=Clock(), name="x"))
        self.assertEqual(str(cm.exception),
                         f"ports[0].meter: meter plugin 'crash' ({source}) failed to build: "
                         "OSError: no such device /dev/ttyUSB7")

    def test_duplicate_names_refused(self) -> None:
        """Two factories of one kind and name cannot be told apart: both files are named."""
        a = write_plugin(self.dir / "a", "meter_a", GOOD_METER.format(name="twin"))
        b = write_plugin(self.dir / "b", "meter_b", GOOD_METER.format(name="twin"))
        registry = PluginRegistry.discover([self.dir / "a", self.dir / "b"])
        with self.assertRaises(PluginLookupError) as cm:
            registry.find("meter", "twin")
        self.assertEqual(str(cm.exception),
                         f"meter plugin 'twin' is defined more than once: {a}, {b}")

    def test_module_name_clash(self) -> None:
        """Modules with the same file name in two directories are reported."""
        write_plugin(self.dir / "a", "same", GOOD_METER.format(name="one"))
        second = write_plugin(self.dir / "b", "same", GOOD_METER.format(name="two"))
        registry = PluginRegistry.discover([self.dir / "a", self.dir / "b"])
        self.assertEqual([b.source for b in registry.broken], [second])
        self.assertIn("module name 'same' is also used by", registry.broken[0].reason)

    def test_edits_are_seen(self) -> None:
        """Rediscovery sees a changed drop-in (no stale dropin.cache hides it)."""
        write_plugin(self.dir, "evolving", GOOD_METER.format(name="before"))
        PluginRegistry.discover([self.dir]).find("meter", "before")
        path = write_plugin(self.dir, "evolving", GOOD_METER.format(name="after"))
        import os

        os.utime(path, (path.stat().st_atime + 5, path.stat().st_mtime + 5))
        registry = PluginRegistry.discover([self.dir])
        registry.find("meter", "after")
        self.assertRaises(PluginLookupError, registry.find, "meter", "before")
