"""The gatekeeper's discharge limit from the PEV's DERSettings (issue 10 item 6): a
setMaxDischargeRateW of 0 is a value (no discharge), not "absent". In memory on a fake clock
with the bundled simulated contactor and meter, as tests/test_evse_session.py drives them."""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from sepgw.interfaces import ContactorState, LinkPeer
from sepgw.model import ActivePower, DERSettings, parse
from sepgw.security.pki import issue_pev
from sepgw.security.tls import TLSSettings
from tests import scripted_pev as script
from tests.helpers import shared_pki
from tests.test_evse_session import Site


def connect(s: Site, i: int, client: str, discharge_w: int | None, max_w: int = 6500) -> None:
    """Run the information exchange with DERSettings setMaxW ``max_w`` and
    setMaxDischargeRateW ``discharge_w`` (None: not reported)."""
    s.connect(i, client, max_w=max_w)
    settings = parse(script.der_settings(int(s.clock.seconds()), max_w), DERSettings)
    rate = None if discharge_w is None else ActivePower(multiplier=0, value=discharge_w)
    session = s.resources.sessions[i]
    s.resources.put(f"{session.edev}/der/1/ders",
                    dataclasses.replace(settings, setMaxDischargeRateW=rate), s.ids[client])
    s.clock.advance(0)  # the next reactor turn: the site shares are served


class DischargeLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Site()
        self.port = self.s.ports[0]

    def test_zero_discharge_rate_is_the_limit(self) -> None:
        """V2G-4.8.1.2-1: a PEV declaring setMaxDischargeRateW 0 (and setMaxW 6500) has a
        discharge limit of 0 W, not 6500 W: discharging 3000 W revokes its authorization at
        once. Before the fix it got its setMaxW as the limit and 3000 W passed. (The PEV first
        declares 6500 W and then 0 W while authorized: the limit follows new DERSettings.)"""
        connect(self.s, 0, "pev", discharge_w=0)
        self.assertTrue(self.s.energize())
        self.assertEqual(self.port.pev_max_w(), 0.0)
        self.s.clock.advance(3.1)  # past the grace of the limit set on the first grant
        self.assertEqual(self.port.gatekeeper.limit_w, 0.0)
        self.s.meters[0].power = (3000.0, 0.0)
        self.s.clock.advance(0.1)
        self.assertFalse(self.s.energize())
        self.assertIn("above the authorized 0 W", self.port.gatekeeper.revocation or "")

    def test_discharge_rate_absent_falls_back_to_set_max_w(self) -> None:
        """V2G-4.8.1.2-1: without setMaxDischargeRateW the limit is setMaxW; with one, that
        value (lower or higher) is the limit."""
        connect(self.s, 0, "pev", discharge_w=None, max_w=5000)
        self.assertEqual(self.port.pev_max_w(), 5000.0)
        connect(self.s, 0, "pev", discharge_w=4000, max_w=5000)
        self.assertEqual(self.port.pev_max_w(), 4000.0)

    def test_no_der_settings_no_limit(self) -> None:
        """Before the PEV sent DERSettings there is no PEV limit (None)."""
        self.port.link_up(LinkPeer())
        self.s.resources.attach(self.s.ids["pev"], 0)
        self.assertIsNone(self.port.pev_max_w())


class SharedZeroLimitTests(SynchronousTestCase):
    def test_zero_discharge_pev_gets_no_share(self) -> None:
        """V2G-4.6.1.1-1: sharing a 7200 W site between a PEV declaring setMaxDischargeRateW
        0 and one declaring 6500 W gives the first 0 W (opModMaxLimW 0, gatekeeper limit 0)
        and the second its full 6500 W (opModMaxLimW 10000), without dividing by zero.
        Before the fix the first was counted as wanting the whole site (3600 W each)."""
        pki = shared_pki()
        s = Site(ports=2, site_max_w=7200)
        for n in range(2):
            name = f"share{n}"
            if not (pki / f"{name}.pem").exists():
                issue_pev(pki, name, f"1.3.6.1.4.1.32473.2.{10 + n}")
            s.ids[name] = TLSSettings(pki / f"{name}.pem", pki / f"{name}.key",
                                      (pki / "serca.pem",)).identity
        connect(s, 0, "share0", discharge_w=0)
        connect(s, 1, "share1", discharge_w=6500)
        self.assertEqual(s.coordinator.allocation, {"port1": 0.0, "port2": 6500.0})
        limits = []
        for i in range(2):
            controls = s.resources.management(s.resources.sessions[i]).extras()
            limits.append([c.DERControlBase.opModMaxLimW for c in controls
                           if c.DERControlBase.opModMaxLimW is not None])
        self.assertEqual(limits, [[0], [10000]])
        s.clock.advance(3.1)
        self.assertEqual(s.ports[0].gatekeeper.limit_w, 0.0)
        self.assertEqual(s.ports[1].gatekeeper.limit_w, 6500.0)
        self.assertIs(s.contactors[1].state, ContactorState.closed)
