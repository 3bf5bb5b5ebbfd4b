"""Tests for the ``sepgw`` command (:func:`sepgw.cli.main`): check-config, plugins, pki."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO
from pathlib import Path

from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

from sepgw.cli import main
from sepgw.registry import bundled_plugin_dir
from sepgw.security.identity import lfdi_from_certificate, sfdi_from_lfdi
from tests.helpers import ETC, GOOD_METER, evse_config, shared_pki, write_plugin

SEPGW = Path(sys.executable).parent / "sepgw"


class CLITestCase(SynchronousTestCase):
    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        """Run ``sepgw ARGV`` in process; return the exit status, stdout and stderr."""
        out, err = StringIO(), StringIO()
        status = main(list(argv), out, err)
        return status, out.getvalue(), err.getvalue()


class CheckConfigTests(CLITestCase):
    def test_embedded_evse_config_valid(self) -> None:
        """check-config on etc/sepgw.toml exits 0 with one line saying it is a valid EVSE
        configuration and how many plugins it configures."""
        path = ETC / "sepgw.toml"
        status, out, err = self.run_cli("check-config", str(path))
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, f"{path}: valid EVSE configuration (4 plugin(s) configured)\n")

    def test_embedded_pev_config_valid(self) -> None:
        """check-config on etc/pev.toml recognises the PEV role by its [pev] table and exits
        0 with the valid line."""
        path = ETC / "pev.toml"
        status, out, err = self.run_cli("check-config", str(path))
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, f"{path}: valid PEV configuration (2 plugin(s) configured)\n")

    def test_broken_config_lists_every_problem(self) -> None:
        """A configuration with several mistakes exits 1 and lists every problem, each with
        its key path, sorted, on stderr; nothing goes to stdout."""
        directory = Path(self.mktemp())
        path = evse_config(directory, port=0, meter='{ plugin = "simulated", interval = "fast" }',
                           extra='[logging]\nlevel = "verbose"\ncolour = true\n')
        text = path.read_text().replace('contactor = { plugin = "simulated" }',
                                        'contactor = { plugin = "relay-board" }')
        path.write_text(text.replace("max_v = 264.0", "max_v = 264.0\nmax_vv = 1"))
        status, out, err = self.run_cli("check-config", str(path))
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err.splitlines(), [
            f"{path}: 6 configuration problem(s):",
            "  logging.colour: unknown key; allowed keys: file, format, level",
            "  logging.level: 'verbose' is not one of 'debug', 'info', 'warn', 'error', "
            "'critical'",
            f"  ports[0].contactor: contactor plugin 'relay-board' not found in "
            f"{bundled_plugin_dir()}",
            "  ports[0].meter.interval: expected a number, got a string 'fast'",
            "  server.port: 0 is below the minimum 1",
            "  site.max_vv: unknown key (did you mean 'max_v'?); allowed keys: max_charge_rate_w, "
            "max_discharge_rate_w, max_v, max_var, max_var_neg, max_w, min_v, quadrants, v_ref",
        ])

    def test_missing_file(self) -> None:
        """check-config on a file that does not exist exits 1 saying so."""
        path = Path(self.mktemp()) / "absent.toml"
        status, out, err = self.run_cli("check-config", str(path))
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, f"{path}: 1 configuration problem(s):\n  file not found\n")

    def test_explicit_role_overrides_guess(self) -> None:
        """--role evse on a PEV file validates it as an EVSE configuration (and fails on
        the PEV tables); --role pev on it succeeds."""
        path = ETC / "pev.toml"
        status, out, err = self.run_cli("check-config", str(path), "--role", "evse")
        self.assertEqual((status, out), (1, ""))
        self.assertRegex(err, r"  pev: unknown key; allowed keys: [^\n]*\bgateway, ")
        self.assertIn("  ports: required array of tables is missing", err)
        status, out, err = self.run_cli("check-config", "--role", "pev", str(path))
        self.assertEqual((status, err), (0, ""))
        self.assertIn("valid PEV configuration", out)

    def test_role_guessed_evse_without_pev_table(self) -> None:
        """A file without a [pev] table is checked as an EVSE configuration: an empty file
        reports the EVSE's required tables."""
        path = Path(self.mktemp())
        path.write_text("")
        status, _, err = self.run_cli("check-config", str(path))
        self.assertEqual(status, 1)
        self.assertIn("  ports: required array of tables is missing", err)
        self.assertIn("  site: required table is missing", err)
        self.assertNotIn("inverter", err)

    def test_role_guessed_pev_from_pev_table(self) -> None:
        """A file with a [pev] table is checked as a PEV configuration: the PEV's required
        keys are reported, not the EVSE's."""
        path = Path(self.mktemp())
        path.write_text('[pev]\nname = "car"\n')
        status, _, err = self.run_cli("check-config", str(path))
        self.assertEqual(status, 1)
        self.assertIn("  inverter: required table selecting a", err)
        self.assertNotIn("ports", err)

    def test_unknown_role_is_usage_error(self) -> None:
        """--role with another value is refused by the argument parser with status 2."""
        self.patch(sys, "stderr", StringIO())
        status, out, _ = self.run_cli("check-config", str(ETC / "sepgw.toml"), "--role", "dme")
        self.assertEqual((status, out), (2, ""))


class PluginsTests(CLITestCase):
    def test_lists_bundled_plugins(self) -> None:
        """plugins lists each bundled plugin with its kind, name and source file, then its
        description on the next line, sorted by kind; exit 0 and nothing on stderr."""
        status, out, err = self.run_cli("plugins")
        self.assertEqual((status, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["KIND", "NAME", "SOURCE"])
        bundled = bundled_plugin_dir()
        rows = [line.split() for line in lines[1::2]]
        for row in (["contactor", "simulated", str(bundled / "sim_contactor.py")],
                    ["inverter", "simulated", str(bundled / "sim_inverter.py")],
                    ["meter", "simulated", str(bundled / "sim_meter.py")],
                    ["policy", "j3072", str(bundled / "j3072_policy.py")],
                    ["transport", "loopback", str(bundled / "loopback_transport.py")]):
            self.assertIn(row, rows)
        self.assertEqual(rows, sorted(rows, key=lambda r: (r[0], r[1])))
        descriptions = [line.strip() for line in lines[2::2]]
        self.assertEqual(len(descriptions), len(rows))
        self.assertTrue(all(descriptions), descriptions)

    def test_config_adds_drop_in_directory(self) -> None:
        """plugins --config FILE also lists the plugins of the file's plugin_dirs, with the
        drop-in file as source."""
        directory = Path(self.mktemp()).absolute()
        source = write_plugin(directory / "dropins", "lab_meter", GOOD_METER.format(name="lab"))
        path = evse_config(directory, plugin_dirs=["dropins"])
        status, out, err = self.run_cli("plugins", "--config", str(path))
        self.assertEqual((status, err), (0, ""))
        self.assertIn(["meter", "lab", str(source)], [line.split() for line in out.splitlines()])
        self.assertIn("A drop-in meter for tests.", out)
        self.assertIn(str(bundled_plugin_dir() / "sim_meter.py"), out)

    def test_without_config_drop_ins_not_listed(self) -> None:
        """Without --config only the bundled directory is searched."""
        status, out, _ = self.run_cli("plugins")
        self.assertEqual(status, 0)
        self.assertNotIn("A drop-in meter for tests.", out)

    def test_keys_show_options(self) -> None:
        """plugins --keys shows, under each plugin, one line per option: name, type,
        default (or required) and its description."""
        directory = Path(self.mktemp()).absolute()
        write_plugin(directory / "dropins", "lab_meter", GOOD_METER.format(name="lab"))
        path = evse_config(directory, plugin_dirs=["dropins"])
        status, out, _ = self.run_cli("plugins", "--config", str(path), "--keys")
        self.assertEqual(status, 0)
        stripped = [line.strip() for line in out.splitlines()]
        self.assertIn("scale (number, default 1.0): Scale factor.", stripped)
        self.assertIn("delay (number, default 0.05): Seconds until a close is confirmed.",
                      stripped)
        self.assertIn("interface (string, default 'lo'): Network interface name reported to "
                      "the server.", stripped)
        status, plain, _ = self.run_cli("plugins")
        self.assertNotIn("delay (number", plain)

    def test_keys_show_required_options(self) -> None:
        """An option without a default is shown as required."""
        directory = Path(self.mktemp()).absolute()
        write_plugin(directory / "dropins", "port_meter", '''
            from sepgw.plugin import Key, PluginFactory, Section
            meter = PluginFactory(kind="meter", name="needs-port", description="Needs a port.",
                                  options=Section({"port": Key("int", doc="UDP port.")}),
                                  build=lambda config, context: None)
        ''')
        path = evse_config(directory, plugin_dirs=["dropins"])
        _, out, _ = self.run_cli("plugins", "--config", str(path), "--keys")
        self.assertIn("port (integer, required): UDP port.", [s.strip() for s in out.splitlines()])

    def test_broken_drop_in_reported(self) -> None:
        """A drop-in module that fails to import is reported on stderr with its file and the
        reason; the others are still listed and the status is 0."""
        directory = Path(self.mktemp()).absolute()
        broken = write_plugin(directory / "dropins", "relay", "import sepgw_no_such_module\n")
        path = evse_config(directory, plugin_dirs=["dropins"])
        status, out, err = self.run_cli("plugins", "--config", str(path))
        self.assertEqual(status, 0)
        self.assertEqual(err, f"unusable: {broken}: failed to import: ModuleNotFoundError: "
                              f"No module named 'sepgw_no_such_module'\n")
        self.assertIn("loopback", out)

    def test_missing_drop_in_directory_reported(self) -> None:
        """A plugin_dirs entry that does not exist is reported on stderr."""
        directory = Path(self.mktemp()).absolute()
        path = evse_config(directory, plugin_dirs=["nowhere"])
        status, _, err = self.run_cli("plugins", "--config", str(path))
        self.assertEqual(status, 0)
        self.assertEqual(err, f"unusable: {directory / 'nowhere'}: plugin directory does not "
                              f"exist\n")

    def test_unreadable_config(self) -> None:
        """plugins --config on a missing file exits 1 naming the file."""
        path = Path(self.mktemp()) / "absent.toml"
        status, out, err = self.run_cli("plugins", "--config", str(path))
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, f"{path}: 1 configuration problem(s):\n  file not found\n")


class PKITests(CLITestCase):
    def test_pki_show_dispatched(self) -> None:
        """sepgw pki show CERT prints the certificate's LFDI and SFDI."""
        cert_path = shared_pki() / "evse.pem"
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        lfdi = lfdi_from_certificate(cert)
        status, out, err = self.run_cli("pki", "show", str(cert_path))
        self.assertEqual((status, err), (0, ""))
        self.assertIn(f"LFDI:       {lfdi}\n", out)
        self.assertIn(f"SFDI:       {sfdi_from_lfdi(lfdi)}\n", out)

    def test_pki_errors_on_err(self) -> None:
        """pki failures go to the given stderr with a non-zero status."""
        status, out, err = self.run_cli("pki", "show", str(Path(self.mktemp()) / "none.pem"))
        self.assertNotEqual(status, 0)
        self.assertEqual(out, "")
        self.assertIn("sepgw pki show:", err)


class UsageTests(CLITestCase):
    def test_no_command_is_usage_error(self) -> None:
        """Without a command sepgw exits 2 (argparse's usage error status)."""
        self.patch(sys, "stderr", StringIO())
        status, out, _ = self.run_cli()
        self.assertEqual((status, out), (2, ""))

    def test_usage_written_to_given_err(self) -> None:
        """A usage error is written to the err stream main() was given."""
        self.patch(sys, "stderr", StringIO())
        _, _, err = self.run_cli("frobnicate")
        self.assertIn("usage: sepgw", err)


class ConsoleScriptTests(SynchronousTestCase):
    def test_installed_entry_point(self) -> None:
        """The installed ``sepgw`` console script runs check-config in a real process:
        exit 0 and the valid line for etc/sepgw.toml, exit 1 with the problem on stderr for
        a broken file."""
        self.assertTrue(SEPGW.exists(), f"{SEPGW} is not installed")
        path = ETC / "sepgw.toml"
        done = subprocess.run([str(SEPGW), "check-config", str(path)], capture_output=True,
                              text=True, timeout=60)
        self.assertEqual((done.returncode, done.stderr), (0, ""))
        self.assertEqual(done.stdout,
                         f"{path}: valid EVSE configuration (4 plugin(s) configured)\n")
        broken = Path(self.mktemp())
        broken.write_text("[gateway\n")
        done = subprocess.run([str(SEPGW), "check-config", str(broken)], capture_output=True,
                              text=True, timeout=60)
        self.assertEqual((done.returncode, done.stdout), (1, ""))
        self.assertIn(f"{broken}: 1 configuration problem(s):\n  invalid TOML:", done.stderr)
