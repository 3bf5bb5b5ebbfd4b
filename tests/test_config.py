"""Tests for configuration loading and validation (sepgw.config)."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from sepgw.config import ConfigError, load
from sepgw.config.loader import ResolvedPlugin
from sepgw.registry import bundled_plugin_dir
from tests.helpers import ETC, evse_config


class DefaultConfigTests(SynchronousTestCase):
    def test_embedded_defaults_are_valid(self) -> None:
        """etc/sepgw.toml and etc/pev.toml validate, with every plugin resolved."""
        evse = load(ETC / "sepgw.toml", "evse")
        pev = load(ETC / "pev.toml", "pev")
        self.assertIsInstance(evse["ports"][0]["meter"], ResolvedPlugin)
        self.assertEqual(evse["ports"][0]["meter"].info.name, "simulated")
        self.assertEqual(pev["evse"]["url"], "https://[::1]:8443/dcap")

    def test_relative_paths_resolve_against_config_directory(self) -> None:
        """Relative paths in a config are anchored at the config file's directory."""
        config = load(ETC / "sepgw.toml", "evse")
        self.assertEqual(config["tls"]["cert"].resolve(),
                         (ETC.parent / "run" / "pki" / "evse.pem").resolve())

    def test_defaults_filled_in(self) -> None:
        """Keys left out get their documented defaults: postRate and pollRate 15 s.
        V2G-4.7.2-9 V2G-4.7.2-14"""
        config = load(evse_config(Path(self.mktemp())), "evse")
        self.assertEqual(config["server"]["post_rate"], 15)
        self.assertEqual(config["server"]["poll_rate"], 15)
        self.assertEqual(config["tls"]["ciphers"], "ECDHE-ECDSA-AES128-CCM8")
        self.assertIsNone(config["policy"])
        self.assertEqual(config["management"]["enter_service"]["delay_s"], 300.0)


class ProblemTests(SynchronousTestCase):
    def problems(self, extra: str = "", **kw: object) -> list[str]:
        path = evse_config(Path(self.mktemp()), extra, **kw)  # type: ignore[arg-type]
        with self.assertRaises(ConfigError) as cm:
            load(path, "evse")
        return [str(p) for p in cm.exception.problems]

    def test_unknown_key_is_an_error(self) -> None:
        """A misspelt key is reported with its path and a suggestion, never ignored."""
        problems = self.problems("[logging]\nlevle = 'debug'\n")
        self.assertEqual(problems, [
            "logging.levle: unknown key (did you mean 'level'?); allowed keys: file, format, "
            "level"])

    def test_wrong_type(self) -> None:
        """A value of the wrong type names the key, what was expected and what was given."""
        path = evse_config(Path(self.mktemp()))
        path.write_text(path.read_text().replace("port = 8443", 'port = "8443"'))
        with self.assertRaises(ConfigError) as cm:
            load(path, "evse")
        self.assertEqual([str(p) for p in cm.exception.problems],
                         ["server.port: expected an integer, got a string '8443'"])

    def test_every_problem_reported_at_once(self) -> None:
        """Validation lists all problems of all sections and plugins together."""
        path = evse_config(Path(self.mktemp()), meter='{ plugin = "modbus" }')
        text = path.read_text().replace("max_w = 7200.0", "max_w = -1.0").replace(
            'name = "port1"', 'name = "port1"\ncolour = "red"')
        path.write_text(text + "\n[gateway2]\n")
        with self.assertRaises(ConfigError) as cm:
            load(path, "evse")
        messages = [str(p) for p in cm.exception.problems]
        self.assertEqual(len(messages), 4, messages)
        self.assertIn("site.max_w: -1.0 is below the minimum 0", messages)
        self.assertTrue(any(m.startswith("gateway2: unknown key") for m in messages))
        self.assertTrue(any(m.startswith("ports[0].colour: unknown key") for m in messages))
        self.assertIn(f"ports[0].meter: meter plugin 'modbus' not found in "
                      f"{bundled_plugin_dir()}", messages)

    def test_missing_required_key(self) -> None:
        """A required key that is absent is named with its type."""
        path = evse_config(Path(self.mktemp()))
        path.write_text(path.read_text().replace("v_ref = 240.0\n", ""))
        with self.assertRaises(ConfigError) as cm:
            load(path, "evse")
        self.assertEqual([str(p) for p in cm.exception.problems],
                         ["site.v_ref: required number is missing"])

    def test_site_limits_consistent(self) -> None:
        """Site voltage limits must be ordered (min_v < v_ref <= max_v)."""
        path = evse_config(Path(self.mktemp()))
        path.write_text(path.read_text().replace("min_v = 211.0", "min_v = 250.0"))
        with self.assertRaises(ConfigError) as cm:
            load(path, "evse")
        self.assertEqual([str(p) for p in cm.exception.problems],
                         ["site.v_ref: must not be below min_v (250 V)"])

    def test_one_reactive_power_function(self) -> None:
        """Enabling two reactive-power functions is refused. V2G-4.9.7-1"""
        problems = self.problems("[management.constant_pf]\npf = 0.95\n"
                                 "[management.volt_var]\npoints = [[92.0, 44.0], [108.0, -44.0]]\n")
        self.assertEqual(problems, [
            "management: at most one reactive-power function may be enabled (V2G-4.9.7-1), "
            "found constant_pf, volt_var"])

    def test_curve_points_checked(self) -> None:
        """Curves need 1 to 10 [x, y] points with x rising."""
        problems = self.problems("[management.volt_watt]\npoints = [[110.0, 20.0], [106.0, 100.0]]\n")
        self.assertEqual(problems, [
            "management.volt_watt.points: x values must increase strictly from point to point"])

    def test_plugin_option_errors_have_plugin_path(self) -> None:
        """A plugin's own options are validated against what the plugin declares."""
        problems = self.problems(meter='{ plugin = "simulated", interval = "fast", speed = 2 }')
        self.assertEqual(len(problems), 2, problems)
        self.assertEqual(sorted(problems)[0],
                         "ports[0].meter.interval: expected a number, got a string 'fast'")
        self.assertRegex(sorted(problems)[1], r"^ports\[0\]\.meter\.speed: unknown key; "
                                              r"allowed keys: .*\binterval\b")

    def test_plugin_of_wrong_kind(self) -> None:
        """Naming a plugin of another kind says which kind it is."""
        problems = self.problems(meter='{ plugin = "loopback" }')
        self.assertEqual(len(problems), 1)
        self.assertRegex(problems[0], r"^ports\[0\]\.meter: plugin 'loopback' in .*"
                                      r"loopback_transport\.py is a transport plugin, not a "
                                      r"meter plugin$")

    def test_duplicate_port_names(self) -> None:
        """Two ports cannot share a name."""
        extra = ('\n[[ports]]\nname = "port1"\ntransport = "loopback"\n'
                 'contactor = "simulated"\nmeter = "simulated"\n')
        self.assertEqual(self.problems(extra),
                         ["ports[1].name: 'port1' is already the name of ports[0]"])

    def test_missing_plugin_dir(self) -> None:
        """A configured drop-in directory that does not exist is a problem."""
        problems = self.problems(plugin_dirs=["/nonexistent/sepgw-plugins"])
        self.assertEqual(problems, ["gateway.plugin_dirs[0]: /nonexistent/sepgw-plugins does "
                                    "not exist or is not a directory"])

    def test_bad_timezone_and_url(self) -> None:
        """Time zones must be IANA names; the PEV's EVSE URL must be https (V2G-4.1.3-3)."""
        self.assertEqual(self.problems(port="8443\ntimezone = 'Mars/Olympus'"), [
            "server.timezone: 'Mars/Olympus' is not a known IANA time zone (e.g. 'UTC', "
            "'America/Los_Angeles')"])
        path = Path(self.mktemp())
        path.mkdir()
        pev = path / "pev.toml"
        pev.write_text((ETC / "pev.toml").read_text().replace("https://", "http://"))
        with self.assertRaises(ConfigError) as cm:
            load(pev, "pev")
        problems = [str(p) for p in cm.exception.problems]
        self.assertEqual(len(problems), 1)
        self.assertIn("evse.url: 'http://[::1]:8443/dcap' is not an https:// URL", problems[0])


class FileTests(SynchronousTestCase):
    def test_file_not_found(self) -> None:
        """A missing file is one clear problem naming the file."""
        with self.assertRaises(ConfigError) as cm:
            load(Path("/nonexistent/sepgw.toml"), "evse")
        self.assertEqual(str(cm.exception),
                         "/nonexistent/sepgw.toml: 1 configuration problem(s):\n"
                         "  file not found")

    def test_invalid_toml(self) -> None:
        """TOML syntax errors report the line."""
        path = Path(self.mktemp())
        path.write_text("[gateway\nname = 1\n")
        with self.assertRaises(ConfigError) as cm:
            load(path, "evse")
        self.assertIn("invalid TOML", str(cm.exception))
        self.assertIn("line 1", str(cm.exception))
