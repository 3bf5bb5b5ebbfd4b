"""End to end: real twistd processes, real TLS on loopback sockets."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from sepgw.security.tls import TLSSettings
from tests.helpers import ETC, shared_pki
from tests.processes import REPO, TWISTD, Process, free_port


def write_configs(directory: Path, port: int, pki: Path) -> tuple[Path, Path]:
    """The default configs, pointed at a test PKI, a free port and a temporary state dir."""
    import tempfile

    directory.mkdir(parents=True, exist_ok=True)
    # UNIX socket paths are limited to ~100 bytes: keep the operator socket short.
    sock = Path(tempfile.mkdtemp(prefix="sepgw-")) / "op.sock"
    evse = (ETC / "sepgw.toml").read_text().replace("../run/pki", str(pki)).replace(
        "port = 8443", f"port = {port}").replace('"../run/sepgw.sock"', f'"{sock}"').replace(
        "../run/", "")
    pev = (ETC / "pev.toml").read_text().replace("../run/pki", str(pki)).replace(
        ":8443/", f":{port}/").replace('"../run/pev.sock"', f'"{sock.parent / "pev.sock"}"'
                                       ).replace("../run/", "")
    # The simulated electrical link: free UDP ports, so tests can run side by side.
    for fixed in ("47101", "47102"):
        udp = str(free_port("127.0.0.1", socket.SOCK_DGRAM))
        evse, pev = evse.replace(fixed, udp), pev.replace(fixed, udp)
    (directory / "sepgw.toml").write_text(evse)
    (directory / "approved-pevs.txt").write_text((ETC / "approved-pevs.txt").read_text())
    (directory / "pev.toml").write_text(pev)
    return directory / "sepgw.toml", directory / "pev.toml"


class TwistdTests(SynchronousTestCase):
    def test_twistd_lists_both_service_makers(self) -> None:
        """`twistd --help` lists sepgw and sepgw-pev after installation."""
        out = subprocess.run([TWISTD, "--help"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
        self.assertRegex(out, r"\n\s+sepgw\s+IEEE 2030\.5 V2G-AC")
        self.assertRegex(out, r"\n\s+sepgw-pev\s+IEEE 2030\.5 V2G-AC")

    def test_evse_and_pev_over_mutual_tls(self) -> None:
        """`twistd sepgw` and `twistd sepgw-pev` start with the default configs, talk over
        mutual TLS with the 2030.5 suite (V2G-4.1.3-2), each identifying the other by LFDI,
        and stop cleanly on SIGTERM with the contactor left open."""
        pki = shared_pki()
        evse_cfg, pev_cfg = write_configs(Path(self.mktemp()).absolute(), free_port(), pki)
        evse = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(evse.kill)
        evse.wait_for(r"sepgw EVSE serving: DeviceCapability at https://\[::1\]:\d+/dcap")
        pev = Process.twistd("sepgw-pev", pev_cfg)
        self.addCleanup(pev.kill)
        pev_lfdi = TLSSettings(pki / "pev.pem", pki / "pev.key", (pki / "serca.pem",)).identity.lfdi
        evse_lfdi = TLSSettings(pki / "evse.pem", pki / "evse.key",
                                (pki / "serca.pem",)).identity.lfdi
        evse.wait_for(rf"TLS session with .* established \(TLSv1\.2 ECDHE-ECDSA-AES128-CCM8\);"
                      rf" peer LFDI={pev_lfdi}")
        pev.wait_for(rf"established \(TLSv1\.2 ECDHE-ECDSA-AES128-CCM8\); peer LFDI={evse_lfdi}")
        pev.wait_for(r"opModEnergize True")
        # twistd re-raises the signal it stopped on, so a clean stop exits by SIGTERM.
        self.assertEqual(pev.terminate(), -signal.SIGTERM, pev.output)
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        self.assertIn("contactor open", evse.output)
        self.assertIn("Server Shut Down.", evse.output)
        self.assertNotIn("Traceback", evse.output + pev.output)

    def test_bad_config_stops_startup(self) -> None:
        """A configuration with problems stops twistd before anything starts, listing them."""
        directory = Path(self.mktemp()).absolute()
        evse_cfg, _ = write_configs(directory, free_port(), shared_pki())
        evse_cfg.write_text(evse_cfg.read_text().replace('plugin = "simulated", interval',
                                                         'plugin = "modbus", interval'))
        proc = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(proc.kill)
        self.assertNotEqual(proc.finish(), 0)
        self.assertIn("ports[0].meter: meter plugin 'modbus' not found in", proc.output)
        self.assertNotIn("serving", proc.output)

    def test_unreadable_tls_material_stops_startup(self) -> None:
        """Missing TLS files stop start-up with a message naming the file."""
        directory = Path(self.mktemp()).absolute()
        evse_cfg, _ = write_configs(directory, free_port(), directory / "no-pki")
        proc = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(proc.kill)
        self.assertEqual(proc.finish(), 1)
        self.assertRegex(proc.output, r"tls: .*no-pki/evse\.pem")
        self.assertNotIn("Traceback", proc.output)
