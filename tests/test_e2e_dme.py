"""End to end with real processes on loopback: the lab DME (`twistd sepgw-dme`), the EVSE
(`twistd sepgw` with the `ieee2030_5` uplink) and the PEV (`twistd sepgw-pev`), the DME with a
utility PKI of its own. Controls are given with `sepgw ctl`; waits are on log lines and ctl
answers, each with a bounded timeout."""

from __future__ import annotations

import io
import json
import signal
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from sepgw.cli import control
from sepgw.dme.store import request_digest
from sepgw.security.pki import PKIPaths, init_pki
from sepgw.security.tls import TLSSettings
from tests.helpers import shared_pki
from tests.processes import Process, free_port
from tests.test_e2e_twistd import write_configs

PEV_MAX_W = 6500.0
"""etc/pev.toml [vehicle] max_w: the PEV's setMaxW, what its percentages are of."""
SITE_MAX_W = 7200.0
"""etc/sepgw.toml [site] max_w: the site DER's setMaxW, what the DME's percentages are of."""

# 2030.5 Table 27 Response status values, written out.
RECEIVED, STARTED, CANCELLED, SUPERSEDED = 1, 2, 6, 7


def dme_config(directory: Path, utility: PKIPaths, port: int, socket: Path, *,
               rate: int = 1) -> Path:
    path = directory / "dme.toml"
    path.write_text(f'''
[dme]
state_dir = "{directory / 'dme-state'}"
[tls]
cert = "{utility.evse}"
key = "{utility.evse_key}"
ca = ["{utility.serca}"]
[server]
port = {port}
poll_rate_s = {rate}
post_rate_s = {rate}
[operator]
socket = "{socket}"
''')
    return path


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Ask ``check`` until it returns something true (bounded); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class DMEWorld(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.evse_cfg, self.pev_cfg = write_configs(self.directory, free_port(), shared_pki())
        self.utility = init_pki(self.directory / "utility")  # not the vehicle PKI
        self.socket = Path(tempfile.mkdtemp(prefix="dme-")) / "dme.sock"
        self.dme_port = free_port()
        self.dme_cfg = dme_config(self.directory, self.utility, self.dme_port, self.socket)
        self.queue_path = self.directory / "uplink.sqlite"
        self.dme = self.start_dme()
        self.evse_lfdi = TLSSettings(self.utility.pev, self.utility.pev_key,
                                     (self.utility.serca,)).identity.lfdi

    def uplink(self, extra: str = "") -> None:
        # The EVSE hands the uplink its telemetry at its own postRate: 1 s here.
        self.evse_cfg.write_text(self.evse_cfg.read_text().replace("post_rate = 15",
                                                                   "post_rate = 1"))
        with self.evse_cfg.open("a") as f:
            f.write(f'''
[uplink]
plugin = "ieee2030_5"
dcap_url = "https://[::1]:{self.dme_port}/dcap"
cert = "{self.utility.pev}"
key = "{self.utility.pev_key}"
ca = ["{self.utility.serca}"]
queue_path = "{self.queue_path}"
timeout_s = 2
{extra}''')

    def start_dme(self) -> Process:
        dme = Process.twistd("sepgw-dme", self.dme_cfg)
        self.addCleanup(dme.kill)
        dme.wait_for(r"sepgw DME serving")
        return dme

    def start(self, role: str, config: Path, ready: str) -> Process:
        process = Process.twistd(role, config)
        self.addCleanup(process.kill)
        process.wait_for(ready)
        return process

    def ctl(self, *words: str) -> Any:
        out, err = io.StringIO(), io.StringIO()
        code = control(self.socket, list(words), out, err)
        self.assertEqual(code, 0, err.getvalue())
        return json.loads(out.getvalue())

    def responses(self, mrid: str) -> list[int]:
        return next(c["responses"] for c in self.ctl("controls")["controls"]
                    if c["mrid"] == mrid)


class LabDMEEndToEndTests(DMEWorld):
    def test_discovery_controls_stored_event_responses_readings(self) -> None:
        """The EVSE discovers the lab DME from its DeviceCapability URL, registers its
        EndDevice by LFDI (POST) and its MirrorUsagePoints; a utility opModFixedW of 25 % of
        the site given while no PEV is there is stored and relayed to the PEV that arrives
        later (1800 W of its 6500 W), answered Received, and Started once the PEV runs it; a
        supersede moves the PEV to 50 % of the site (3600 W) and the old control is answered
        Superseded; a
        cancel is answered Cancelled and leaves the PEV without opModFixedW. The EVSE's
        meter readings of the port reach the DME with the PEV's power. V2G-4.8.2-2"""
        self.uplink()
        evse = self.start("sepgw", self.evse_cfg, r"sepgw EVSE serving")
        self.dme.wait_for(rf"DME: registered EndDevice {self.evse_lfdi} at /edev/1")
        self.dme.wait_for(r"DME: MirrorUsagePoint port1 at /mup/2")
        devices = self.ctl("devices")["devices"]
        self.assertEqual([d["lfdi"] for d in devices], [self.evse_lfdi])

        added = self.ctl("add", "opModFixedW=2500", "duration=600")
        first = added["mrid"]
        evse.wait_for(r"uplink: DME controls in effect: .*opModFixedW", timeout=20)
        wait_until("Received from the EVSE", lambda: RECEIVED in self.responses(first))

        pev = self.start("sepgw-pev", self.pev_cfg, r"opModEnergize True")
        m = pev.wait_for(r"Inverter: discharge allowed, opModFixedW ([\d.]+) %", timeout=30)
        self.assertLess(abs(float(m.group(1)) / 100 * PEV_MAX_W - 0.25 * SITE_MAX_W), 1)
        wait_until("Started once the PEV runs it", lambda: STARTED in self.responses(first))

        second = self.ctl("supersede", first, "opModFixedW=5000")["mrid"]
        m = pev.wait_for(r"Inverter: discharge allowed, opModFixedW (5[\d.]+) %", timeout=30)
        self.assertLess(abs(float(m.group(1)) / 100 * PEV_MAX_W - 0.5 * SITE_MAX_W), 1)
        wait_until("Superseded for the first control",
                   lambda: SUPERSEDED in self.responses(first))
        wait_until("Started for the second", lambda: STARTED in self.responses(second))

        # The EVSE's meter on the port sees the PEV discharge 3600 W; its readings arrive.
        def port_power() -> bool:
            rows = self.ctl("readings", "50", "/mup/2")["readings"]
            return any(r["description"] == "Active Power"
                       and abs(r["value"] - 0.5 * SITE_MAX_W) < 0.05 * SITE_MAX_W for r in rows)
        wait_until("a port1 reading near 3600 W at the DME", port_power)

        self.ctl("cancel", second)
        wait_until("Cancelled for the second control",
                   lambda: CANCELLED in self.responses(second))
        pev.wait_for(r"Inverter: discharge allowed, opModFixedW (None|-|off)", timeout=30)
        counts = self.ctl("status")["received"]
        self.assertGreater(counts["reading"]["distinct"], 0)
        self.assertNotIn("Traceback", evse.output + self.dme.output)


class LabDMEFaultTests(DMEWorld):
    def queue(self) -> tuple[dict[str, int], list[tuple[str, str]]]:
        """The EVSE queue's counters and its items (kind, digest), read from its file."""
        db = sqlite3.connect(f"file:{self.queue_path}?mode=ro", uri=True)
        try:
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            items = [(kind, request_digest(method, bytes(body))) for kind, method, body in
                     db.execute("SELECT kind, method, body FROM items ORDER BY id")]
        finally:
            db.close()
        return counters, items

    def dme_digests(self) -> tuple[set[str], int]:
        """The distinct requests the DME took, and how many it received in all."""
        db = sqlite3.connect(f"file:{self.directory / 'dme-state' / 'dme.sqlite'}?mode=ro",
                             uri=True)
        try:
            # Only what goes through the queue (DeviceInformation, DERCapability and
            # DERSettings are PUT directly when the EVSE presents itself).
            where = "WHERE kind IN ('reading', 'response', 'dstat', 'dera')"
            return ({r[0] for r in db.execute(f"SELECT sha FROM posts {where}")},
                    int(db.execute(f"SELECT COUNT(*) FROM posts {where}").fetchone()[0]))
        finally:
            db.close()

    def test_dme_down_restarted_and_evse_killed_nothing_lost_but_documented_drops(
            self) -> None:
        """Readings (1 s) and status flow to the DME; the DME is stopped while the EVSE
        keeps measuring, so its queue fills past its bound (20: the oldest are dropped,
        counted); the EVSE is killed with SIGKILL holding a full queue; the DME and then the
        EVSE are restarted. Every item the killed EVSE held reaches the DME; in the end what
        the EVSE queued = delivered + counted drops + still queued, and the DME received
        exactly the delivered items plus at most one re-send per interruption (a lost
        acknowledgement), which it counts as a duplicate and does not take twice."""
        self.uplink("queue_max_items = 20\n")
        evse = self.start("sepgw", self.evse_cfg, r"sepgw EVSE serving")
        wait_until("readings at the DME", lambda: self.ctl("status")["received"].get(
            "reading", {}).get("distinct", 0) >= 4)

        self.assertEqual(self.dme.terminate(), -signal.SIGTERM)
        evse.wait_for(r"uplink: delivery failed", timeout=20)
        wait_until("the EVSE queue past its bound", lambda: self.queue()[0].get(
            "dropped", 0) >= 5, timeout=40)
        evse.kill()  # SIGKILL
        counters, held = self.queue()
        self.assertEqual(len(held), 20)
        self.assertIn("reading", {kind for kind, _ in held})

        self.dme = self.start_dme()
        evse = self.start("sepgw", self.evse_cfg, r"sepgw EVSE serving")
        evse.wait_for(r"queue .* holds 20 items")
        wait_until("every item the killed EVSE held at the DME",
                   lambda: {d for _, d in held} <= self.dme_digests()[0], timeout=60)
        self.assertEqual(evse.terminate(), -signal.SIGTERM)

        counters, left = self.queue()
        _, received = self.dme_digests()
        self.assertGreater(counters["dropped"], 0)
        self.assertEqual(counters.get("poisoned", 0), 0)
        # The EVSE's own books: everything queued was delivered, dropped (counted) or is
        # still queued.
        self.assertEqual(counters["put"], counters["delivered"] + counters["dropped"]
                         + len(left))
        # The DME received every delivered item, plus at most one re-send per interruption
        # (the item in flight at the SIGKILL and at the SIGTERM: its acknowledgement was
        # lost); re-sends are counted by the DME as duplicates, not taken twice.
        surplus = received - counters["delivered"]
        self.assertTrue(0 <= surplus <= 2, (received, counters))
        counts = self.ctl("status")["received"]
        duplicates = sum(counts[k]["duplicates"] for k in ("reading", "response", "dstat",
                                                            "dera") if k in counts)
        self.assertGreaterEqual(duplicates, surplus - len(left))
        self.assertNotIn("Traceback", evse.output + self.dme.output)


