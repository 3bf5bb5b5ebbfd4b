"""Fault tests with real processes: `twistd sepgw` and `twistd sepgw-pev` with the default
configurations, real TLS on loopback and the simulated electrical link (real UDP frames; the
EVSE's meter measures only what the PEV's inverter really puts on the link while the
contactor is closed). Faults: kill -9 of either process (the EVSE restarted), a stalled PEV
(SIGSTOP/SIGCONT), the meter silent or in error (CONTROL frames, ``plugins/sim_link.py``).

Every wait is on a log line or on the operator status; each test asserts when the
authorization is revoked, what the contactor does, what the PEV does, and that no power flows
without a current grant: the EVSE's gatekeeper checks every meter sample and logs
"discharging N W without authorization" for any discharge it measures without one.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import shared_pki
from tests.processes import REPO, Process, free_port
from tests.test_e2e_session import ctl, operator_socket
from tests.test_e2e_twistd import write_configs

UNAUTHORIZED = "without authorization"
"""The gatekeeper's words for discharge it measured without a grant."""
HEARTBEAT_LOSS_S = 10.0
"""Profile 4.8.1.1: ten missed one-second heartbeats are a loss of communications."""


def inject(link: str, *words: str) -> None:
    """One fault-injection CONTROL frame to the EVSE side of the link."""
    subprocess.run([sys.executable, str(REPO / "plugins" / "sim_link.py"), link, *words],
                   check=True, capture_output=True)


def wait_status(sock: Path, ok: Callable[[dict], bool], what: str,
                timeout: float = 10.0) -> dict:
    """Poll the operator status (as a user would) until ``ok`` holds for port1."""
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        status = ctl(sock, "status")["ports"][0]
        if ok(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"{what} not seen within {timeout} s; last status {status}")


def wait_after(process: Process, mark: int, pattern: str, timeout: float = 20.0) -> int:
    """Wait for a line matching ``pattern`` among the lines after the first ``mark`` ones;
    return its index (the next mark)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    index = mark
    while True:
        while index < len(process.lines):
            if regex.search(process.lines[index]):
                return index + 1
            index += 1
        left = deadline - time.monotonic()
        if left <= 0 or process._read_line(left) in ("", None):
            raise AssertionError(f"no line matching {pattern!r} after line {mark} within "
                                 f"{timeout} s; output:\n{process.output}")


def discharging(w: float) -> Callable[[dict], bool]:
    return lambda s: bool(s["meter"]) and s["meter"]["w"] >= w


class FaultTests(SynchronousTestCase):
    def start(self) -> tuple[Process, Process, Path, Path, str]:
        """Both roles up, the PEV authorized and discharging 3,250 W (opModFixedW 50 %),
        measured by the EVSE's meter."""
        directory = Path(self.mktemp()).absolute()
        evse_cfg, pev_cfg = write_configs(directory, free_port(), shared_pki())
        evse = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(evse.kill)
        evse.wait_for(r"sepgw EVSE serving")
        pev = Process.twistd("sepgw-pev", pev_cfg)
        self.addCleanup(pev.kill)
        self.addCleanup(lambda: pev.popen.poll() is None
                        and pev.popen.send_signal(signal.SIGCONT))
        evse.wait_for(r"port1: not authorized -> authorized", timeout=30)
        sock = operator_socket(evse_cfg)
        self.assertEqual(ctl(sock, "fixed-w", "port1", "50"), {"ok": True})
        pev.wait_for(r"Inverter: discharge allowed, opModFixedW 50 %")
        wait_status(sock, discharging(3000), "the PEV discharging")
        link = re.search(r'link = "([^"]+)"', evse_cfg.read_text())
        assert link is not None
        return evse, pev, sock, evse_cfg, link.group(1)

    def test_pev_killed(self) -> None:
        """kill -9 of the PEV: its inverter stops with it, the EVSE's meter measures 0 W, and
        the EVSE revokes the authorization for loss of communications about ten heartbeats
        after the last one; the contactor stays closed since nothing is discharging
        (profile 3.5.1: the EVSE opens it only for discharge without authorization).
        V2G-4.8.1.1-2 V2G-4.8.1.1-3"""
        evse, pev, sock, _, _ = self.start()
        pev.popen.kill()
        killed = time.monotonic()
        evse.wait_for(r"port1: authorized -> not authorized .*loss of communications",
                      timeout=HEARTBEAT_LOSS_S + 5)
        revoked = time.monotonic() - killed
        self.assertGreater(revoked, HEARTBEAT_LOSS_S - 2.0)
        self.assertLess(revoked, HEARTBEAT_LOSS_S + 2.5)
        status = ctl(sock, "status")["ports"][0]
        self.assertFalse(status["authorized"])
        self.assertEqual(status["meter"]["w"], 0.0)
        self.assertEqual(status["contactor"], "closed")
        self.assertIsNone(status["violation"])
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        self.assertNotIn(UNAUTHORIZED, evse.output)
        self.assertNotIn("Traceback", evse.output)

    def test_evse_killed_and_restarted(self) -> None:
        """kill -9 of the EVSE, then a new EVSE process: the PEV stops discharging as soon as
        its TLS session ends, redoes the J3072 sequence from discovery with the new EVSE,
        and the new EVSE's meter measures no discharge before its grant (its gatekeeper
        never sees discharge without authorization); after the grant the PEV discharges
        per the new EVSE's controls. V2G-4.5.2-4 V2G-4.6.4-2 V2G-4.8.1.2-1"""
        evse, pev, _, evse_cfg, _ = self.start()
        mark = len(pev.lines)
        evse.popen.kill()
        wait_after(pev, mark, r"Resynchronising with the EVSE \(TLS session ended: connection #")
        first = wait_after(pev, mark, r"Inverter: discharge (allowed|forbidden)", timeout=1)
        self.assertIn("forbidden", pev.lines[first - 1])
        evse.kill()
        again = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(again.kill)
        sock = operator_socket(evse_cfg)
        again.wait_for(r"sepgw EVSE serving")
        again.wait_for(r"port1: EndDevice /edev/0 created")
        resynced = wait_after(pev, mark, r"Resynchronised with the EVSE: J3072 sequence redone")
        again.wait_for(r"port1: not authorized -> authorized", timeout=20)
        granted = wait_after(pev, mark, r"opModEnergize True")
        allowed = wait_after(pev, mark, r"Inverter: discharge allowed")
        # The grant may be read before the run ends; discharge comes after both.
        self.assertLess(resynced, allowed)
        self.assertLess(granted, allowed)
        # The new EVSE's controls: opModFixedW 50 % again, measured on the link.
        self.assertEqual(ctl(sock, "fixed-w", "port1", "50"), {"ok": True})
        wait_status(sock, discharging(3000), "discharge after the new grant")
        self.assertEqual(again.terminate(), -signal.SIGTERM, again.output)
        self.assertNotIn(UNAUTHORIZED, again.output)
        self.assertNotIn("Traceback", again.output + pev.output)

    def test_stalled_pev(self) -> None:
        """A PEV frozen (SIGSTOP) past the heartbeat loss: the EVSE revokes; on SIGCONT the
        PEV finds the stall before acting on its stale authorization, stops discharging,
        redoes the sequence, and discharges again only after the EVSE authorized it anew
        (3 heartbeats, V2G-4.8.1.1-4); the EVSE's meter never measures discharge without
        authorization. V2G-4.8.1.1-3 V2G-4.8.1.1-4 V2G-4.6.4-3"""
        evse, pev, sock, _, _ = self.start()
        pev.popen.send_signal(signal.SIGSTOP)
        evse.wait_for(r"port1: authorized -> not authorized .*loss of communications",
                      timeout=HEARTBEAT_LOSS_S + 5)
        self.assertEqual(ctl(sock, "status")["ports"][0]["meter"]["w"], 0.0)
        mark = len(pev.lines)
        evse_mark = len(evse.lines)
        pev.popen.send_signal(signal.SIGCONT)
        wait_after(pev, mark, r"Resynchronising with the EVSE \(the PEV stalled")
        first = wait_after(pev, mark, r"Inverter: discharge (allowed|forbidden)")
        self.assertIn("forbidden", pev.lines[first - 1])
        resynced = wait_after(pev, mark, r"Resynchronised with the EVSE: J3072 sequence redone")
        wait_after(evse, evse_mark, r"port1: not authorized -> authorized")
        granted = wait_after(pev, mark, r"opModEnergize True")
        allowed = wait_after(pev, mark, r"Inverter: discharge allowed")
        self.assertLess(resynced, allowed)
        self.assertLess(granted, allowed)
        wait_status(sock, discharging(3000), "discharge after the new grant")
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        self.assertNotIn(UNAUTHORIZED, evse.output)
        self.assertNotIn("Traceback", evse.output + pev.output)

    def test_meter_silent_then_meter_error(self) -> None:
        """The meter falls silent, then (after recovering) reports an error: each time the
        gatekeeper commands the contactor open at once (confirmed by the auxiliary contact),
        the authorization is revoked, the PEV is told opModEnergize false and sees the grid
        go; the meter healthy again, the contactor closes and the PEV is authorized again.
        V2G-4.8.1.2-1 V2G-4.6.4-3"""
        evse, pev, sock, _, link = self.start()
        for fault, clear, words in (
                ("meter-silent", ("meter-silent", "1"), r"meter silent for [\d.]+ s"),
                ("meter-error", ("meter-error", "0", "CT disconnected"),
                 r"meter error: CT disconnected")):
            mark, pev_mark = len(evse.lines), len(pev.lines)
            inject(link, *clear)
            began = time.monotonic()
            wait_after(evse, mark, rf"port1: contactor open commanded: {words}", timeout=5)
            wait_after(evse, mark, r"port1: contactor opened \(confirmed by the auxiliary")
            wait_after(evse, mark, rf"port1: authorized -> not authorized .*{words}")
            self.assertLess(time.monotonic() - began, 2.0, fault)
            status = ctl(sock, "status")["ports"][0]
            self.assertFalse(status["authorized"])
            self.assertEqual(status["contactor"], "open")
            self.assertEqual(status["contactor_sensed"], "open")
            self.assertRegex(status["meter_fault"], words)
            wait_after(pev, pev_mark, r"opModEnergize False", timeout=5)
            wait_after(pev, pev_mark, r"Inverter: discharge forbidden", timeout=5)
            wait_after(pev, pev_mark, r"grid lost", timeout=5)
            if fault == "meter-silent":
                inject(link, "meter-silent", "0")
            else:
                inject(link, "meter-clear")
            wait_after(evse, mark, r"port1: meter healthy again", timeout=5)
            wait_after(evse, mark, r"port1: not authorized -> authorized", timeout=15)
            wait_after(pev, pev_mark, r"Inverter: discharge allowed")
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        self.assertNotIn(UNAUTHORIZED, evse.output)
        self.assertNotIn("Traceback", evse.output + pev.output)

