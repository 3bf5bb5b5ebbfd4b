"""End to end: `twistd sepgw` with the default configuration, and a scripted PEV process
(tests/scripted_pev.py) over real mutual TLS on loopback."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import shared_pki
from tests.processes import Process, free_port
from tests.test_e2e_twistd import write_configs


class ScriptedPEVTests(SynchronousTestCase):
    def test_section5_sequence_over_tls(self) -> None:
        """A scripted PEV completes the profile's section 5 sequence against the real
        server process over TLS 1.2 with ECDHE-ECDSA-AES128-CCM8 (V2G-4.1.3-2), following
        links only; the EVSE creates its EndDevice (V2G-4.5.3-2), authorizes it to discharge
        with the default j3072 policy (V2G-4.6.4-2), and stops cleanly."""
        pki = shared_pki()
        port = free_port()
        evse_cfg, _ = write_configs(Path(self.mktemp()).absolute(), port, pki)
        evse = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(evse.kill)
        evse.wait_for(r"sepgw EVSE serving")
        pev = Process([sys.executable, "-m", "tests.scripted_pev",
                       f"https://[::1]:{port}/dcap", str(pki / "pev.pem"),
                       str(pki / "pev.key"), str(pki / "serca.pem")])
        self.addCleanup(pev.kill)
        match = pev.wait_for(r"^(REPORT|FAILED) (.*)$", timeout=30)
        self.assertEqual(match.group(1), "REPORT", pev.output + evse.output)
        report = json.loads(match.group(2))
        self.assertEqual(report["steps"][-1], "periodic")
        self.assertGreaterEqual(report["controls"], 9)
        # The default policy (j3072) authorizes the scripted PEV once its responses are in.
        self.assertIs(report["energize"], True)
        evse.wait_for(r"EndDevice /edev/0 created for PEV LFDI")
        evse.wait_for(r"port1: not authorized -> authorized")
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        self.assertNotIn("Traceback", evse.output + pev.output)
