"""End to end: a real `twistd sepgw` with the `ieee2030_5` uplink against the test head-end
(tests/dme_server.py) over mutual TLS on loopback, with a utility PKI of its own, and the
real `twistd sepgw-pev` on the simulated link."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from sepgw.security.pki import init_pki
from tests.helpers import shared_pki
from tests.processes import Process, free_port
from tests.test_e2e_twistd import write_configs

PEV_MAX_W = 6500.0
"""etc/pev.toml [vehicle] max_w: the PEV's setMaxW, what its percentages are of."""
SITE_MAX_W = 7200.0
"""etc/sepgw.toml [site] max_w: the site DER's setMaxW, what the DME's percentages are of."""


class UplinkEndToEndTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = Path(self.mktemp()).absolute()
        evse_cfg, pev_cfg = write_configs(directory, free_port(), shared_pki())
        utility = init_pki(directory / "utility")  # not the vehicle PKI
        self.commands = directory / "dme-commands"
        self.commands.mkdir()
        dme_port = free_port()
        self.dme = Process([sys.executable, "-m", "tests.dme_server", "--port", str(dme_port),
                            "--cert", str(utility.evse), "--key", str(utility.evse_key),
                            "--ca", str(utility.serca), "--commands", str(self.commands)])
        self.addCleanup(self.dme.kill)
        self.dme.wait_for(r"DME serving")
        with evse_cfg.open("a") as f:
            f.write(f'''
[uplink]
plugin = "ieee2030_5"
dcap_url = "https://[::1]:{dme_port}/dcap"
cert = "{utility.pev}"
key = "{utility.pev_key}"
ca = ["{utility.serca}"]
queue_path = "{directory / 'uplink.sqlite'}"
''')
        self.evse = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(self.evse.kill)
        self.evse.wait_for(r"sepgw EVSE serving")
        self.pev = Process.twistd("sepgw-pev", pev_cfg)
        self.addCleanup(self.pev.kill)
        self.sent = 0

    def command(self, **command: object) -> None:
        self.sent += 1
        (self.commands / f"{self.sent:03d}.json").write_text(json.dumps(command))

    def test_dme_controls_reach_the_pev_and_readings_reach_the_dme(self) -> None:
        """Over mutual TLS with a utility PKI the EVSE registers at the DME (EndDevice by
        LFDI) and creates its MirrorUsagePoints. A DME opModMaxLimW of 50 % of the site
        (3600 W) reaches the authorized PEV as opModMaxLimW 3600 W / 6500 W; an opModFixedW of
        25 % of the site (1800 W) reaches it as opModFixedW 1800 W / 6500 W; the DME gets the
        EVSE's Received and Started responses; a DefaultDERControl opModEnergize false
        revokes the PEV's authorization (opModEnergize false at the PEV, the port not
        authorized), and readings arrive at the DME's MirrorUsagePoints. V2G-4.6.4-3"""
        self.dme.wait_for(r"DME: registered EndDevice [0-9A-F]{40} at /edev/1", timeout=30)
        self.dme.wait_for(r"DME: MirrorUsagePoint site at /mup/1", timeout=30)
        self.evse.wait_for(r"port1: not authorized -> authorized", timeout=40)
        self.pev.wait_for(r"opModEnergize True", timeout=20)

        self.command(op="control", base={"opModMaxLimW": 5000}, duration=600)
        m = self.pev.wait_for(r"Inverter: discharge allowed, opModFixedW \S+, opModMaxLimW "
                              r"([\d.]+) %", timeout=30)
        self.assertLess(abs(float(m.group(1)) / 100 * PEV_MAX_W - 0.5 * SITE_MAX_W), 1)
        self.dme.wait_for(r"DME: Response 2 for ", timeout=20)

        self.command(op="control", base={"opModFixedW": 2500}, duration=600)
        m = self.pev.wait_for(r"Inverter: discharge allowed, opModFixedW ([\d.]+) %",
                              timeout=30)
        self.assertLess(abs(float(m.group(1)) / 100 * PEV_MAX_W - 0.25 * SITE_MAX_W), 1)

        self.dme.wait_for(r"DME: reading Active Power -?\d+ at /mup/1", timeout=45)
        self.dme.wait_for(r"DME: reading Active Power -?\d+ at /mup/2", timeout=45)

        self.command(op="default", base={"opModEnergize": False})
        self.evse.wait_for(r"port1: authorized -> not authorized .*DME: opModEnergize false",
                           timeout=30)
        self.pev.wait_for(r"opModEnergize False", timeout=20)
        self.assertFalse(re.search(r"Traceback", self.evse.output), self.evse.output)
