"""End to end on the simulated electrical link: `twistd sepgw` and `twistd sepgw-pev`
with the default configurations, real TLS on loopback and real UDP link frames."""

from __future__ import annotations

import io
import json
import signal
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from sepgw.cli import control
from tests.helpers import shared_pki
from tests.processes import Process, free_port
from tests.test_e2e_twistd import write_configs


def operator_socket(config: Path) -> Path:
    for line in config.read_text().splitlines():
        if line.startswith("socket = "):
            return Path(line.split("=", 1)[1].strip().strip('"'))
    raise AssertionError("no operator socket in the configuration")


def ctl(sock: Path, *words: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    assert control(sock, list(words), out, err) == 0, err.getvalue()
    return json.loads(out.getvalue())


class SimulatedLinkTests(SynchronousTestCase):
    def start(self, *pev_args: str) -> tuple[Process, Process, Path, Path]:
        directory = Path(self.mktemp()).absolute()
        evse_cfg, pev_cfg = write_configs(directory, free_port(), shared_pki())
        evse = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(evse.kill)
        evse.wait_for(r"sepgw EVSE serving")
        pev = Process.twistd("sepgw-pev", pev_cfg, *pev_args)
        self.addCleanup(pev.kill)
        return evse, pev, operator_socket(evse_cfg), directory

    def test_honest_pev_authorized_and_discharges(self) -> None:
        """The emulated PEV completes the J3072 sequence, is authorized, and discharges per
        the operator's opModFixedW: the EVSE's own meter measures it on the link. The PEV
        reaches the EVSE at its configured URL (out-of-band discovery). V2G-4.8.2-1
        V2G-4.8.2-2 V2G-4.6.4-2 V2G-4.3-4"""
        report_path = Path(self.mktemp()).absolute()
        evse, pev, sock, _ = self.start("--report", str(report_path))
        evse.wait_for(r"port1: not authorized -> authorized", timeout=30)
        pev.wait_for(r"opModEnergize True")
        self.assertEqual(ctl(sock, "fixed-w", "port1", "50"), {"ok": True})
        pev.wait_for(r"Inverter: discharge allowed, opModFixedW 50 %")
        status: dict = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # polling the operator status, as a user would
            status = ctl(sock, "status")["ports"][0]
            if status["meter"] and status["meter"]["w"] > 3000:
                break
            time.sleep(0.1)
        self.assertEqual(status["state"], "authorized")
        self.assertEqual(status["contactor"], "closed")
        self.assertEqual(status["meter"]["w"], 3250.0)
        self.assertEqual(pev.terminate(), -signal.SIGTERM, pev.output)
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        self.assertNotIn("Traceback", evse.output + pev.output)
        report = json.loads(report_path.read_text())
        self.assertTrue(report["passed"], report)
        names = [step["name"] for step in report["steps"]]
        self.assertIn("authorized to discharge (opModEnergize true)", names)

    def test_rogue_pev_cut_off(self) -> None:
        """A PEV discharging before it is authorized has the contactor opened by the EVSE
        gatekeeper, and the contactor stays open. V2G-4.8.1.2-1 V2G-4.8.1.2-2"""
        evse, pev, sock, _ = self.start("--misbehave", "discharge_before_authorization,"
                                        "skip_responses")
        evse.wait_for(r"contactor open commanded: discharging \d+ W without authorization",
                      timeout=30)
        evse.wait_for(r"port1: contactor opened \(confirmed by the auxiliary contact")
        pev.wait_for(r"grid lost")
        status = ctl(sock, "status")["ports"][0]
        self.assertEqual(status["contactor"], "open")
        self.assertFalse(status["contactor_allowed"])
        self.assertFalse(status["authorized"])
        self.assertIn("without authorization", status["violation"])
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        pev.terminate()

    def test_sleep_and_wake_on_command(self) -> None:
        """`sepgw ctl ... sleep` makes the PEV post inverterStatus 2 and the EVSE revoke;
        `wake` re-acquires the management information and the EVSE authorizes again.
        V2G-4.8.3-1 V2G-4.8.3-3 V2G-4.8.3-4 V2G-4.8.3-5"""
        evse, pev, sock, _ = self.start()
        evse.wait_for(r"port1: not authorized -> authorized", timeout=30)
        pev_sock = sock.parent / "pev.sock"
        self.assertEqual(ctl(pev_sock, "sleep"), {"ok": True})
        evse.wait_for(r"port1: authorized -> sleeping")
        self.assertTrue(ctl(pev_sock, "status")["sleeping"])
        self.assertEqual(ctl(pev_sock, "wake"), {"ok": True})
        evse.wait_for(r"port1: sleeping -> authorized")
        self.assertFalse(ctl(pev_sock, "status")["sleeping"])
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        pev.terminate()

    def test_pev_stops_quickly_when_evse_is_gone(self) -> None:
        """An authorized, subscribed PEV whose EVSE stops answering (the EVSE process frozen:
        connections stay open, nothing answers, as after an unplug without RST) exits within
        a few seconds of SIGTERM, logging what it abandons. The PEV logs heartbeats left
        unanswered (V2G-4.8.1.1-1: one every second, whatever the EVSE does)."""
        evse, pev, _, _ = self.start()
        evse.wait_for(r"port1: not authorized -> authorized", timeout=30)
        pev.wait_for(r"opModEnergize True")
        evse.popen.send_signal(signal.SIGSTOP)
        self.addCleanup(lambda: evse.popen.poll() is None
                        and evse.popen.send_signal(signal.SIGCONT))
        # The PEV notices: a heartbeat is due while the previous one is still unanswered.
        pev.wait_for(r"Heartbeat unanswered: \d+ DERStatus PUT\(s\) pending, the oldest for "
                     r"[\d.]+ s", timeout=10)
        began = time.monotonic()
        self.assertEqual(pev.terminate(timeout=15), -signal.SIGTERM, pev.output)
        self.assertLess(time.monotonic() - began, 6.0, pev.output)
        self.assertIn("Stopping: ", pev.output)
        self.assertNotIn("Traceback", pev.output)
        evse.popen.send_signal(signal.SIGCONT)
