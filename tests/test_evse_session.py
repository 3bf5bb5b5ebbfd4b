"""Session control and safety of the EVSE (sepgw.evse.controller, heartbeat, gatekeeper),
in memory on a fake clock with the bundled simulated contactor and meter."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from sepgw.config import load
from sepgw.evse.controller import PortController, PortState, SiteCoordinator, share
from sepgw.evse.tree import EVSEResources
from sepgw.interfaces import (
    BuildContext,
    ContactorState,
    Decision,
    IAuthorizationPolicy,
    LinkPeer,
)
from sepgw.model import parse
from sepgw.model.paging import ListQuery
from sepgw.registry import PluginRegistry, bundled_plugin_dir
from tests import scripted_pev as script
from tests.helpers import ETC
from tests.test_evse_server import T0, identities

SAFETY = {"discharge_threshold_w": 100.0, "limit_tolerance_pct": 5.0, "meter_timeout_s": None,
          "reevaluate_s": 5.0}


@implementer(IAuthorizationPolicy)
class FakePolicy:
    """A policy whose verdict the test sets; records the facts it was given."""

    def __init__(self) -> None:
        self.decision = Decision(True)
        self.facts: list[Any] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def evaluate(self, facts: Any) -> Decision:
        self.facts.append(facts)
        return self.decision


def build(kind: str, name: str, clock: Clock, **options: Any) -> Any:
    info = PluginRegistry.discover([bundled_plugin_dir()]).find(kind, name)
    config, problems = info.factory.options.validate(options)
    assert not problems, problems
    return info.factory.build(config, BuildContext(reactor=clock, name=f"test.{kind}"))


class Site:
    """An EVSE with ``ports`` ports, their controllers, contactors and meters."""

    def __init__(self, ports: int = 1, site_max_w: float | None = None,
                 contactor: dict[str, Any] | None = None,
                 safety: dict[str, Any] | None = None) -> None:
        config = load(ETC / "sepgw.toml", "evse")
        self.clock = Clock()
        self.clock.advance(T0)
        site = dict(config["site"])
        if site_max_w is not None:
            site["max_w"] = site_max_w
        self.site = site
        counter = iter(range(1, 1_000_000))
        self.resources = EVSEResources(
            server=config["server"], site=site, management=config["management"],
            ports=[f"port{i + 1}" for i in range(ports)], clock=self.clock,
            mrid=lambda: next(counter).to_bytes(16, "big"))
        self.policy = FakePolicy()
        self.coordinator = SiteCoordinator(site["max_w"])
        self.contactors = [build("contactor", "simulated", self.clock, **(contactor or {}))
                           for _ in range(ports)]
        self.meters = [build("meter", "simulated", self.clock, interval=0.1)
                       for _ in range(ports)]
        self.ports = []
        for i in range(ports):
            port = PortController(
                index=i, name=f"port{i + 1}", clock=self.clock, resources=self.resources,
                contactor=self.contactors[i], policy=self.policy, site=site,
                safety={**SAFETY, **(safety or {})},
                meter_timeout=0.5, coordinator=self.coordinator)
            self.meters[i].add_listener(port)
            self.meters[i].start()
            port.start()
            self.ports.append(port)
        self.ids = identities()

    def connect(self, i: int = 0, client: str = "pev", max_w: int = 6500) -> Any:
        """Link up, attach a session and run the information exchange (4.6) by PUTs."""
        port = self.ports[i]
        port.link_up(LinkPeer(address="::1"))
        ident = self.ids[client]
        session = self.resources.attach(ident, i)
        edev = session.edev
        now = int(self.clock.seconds())
        for href, body in ((f"{edev}/di", script.device_information(ident.lfdi)),
                           (f"{edev}/ps", script.power_status(now)),
                           (f"{edev}/der/1/dercap", script.DER_CAPABILITY),
                           (f"{edev}/der/1/ders", script.der_settings(now, max_w)),
                           (f"{edev}/der/1/dera", script.der_availability(now))):
            self.resources.put(href, parse(body), ident)
        self.heartbeat(i, client, status=3)
        self.clock.advance(0)  # the next reactor turn: the site shares are served
        return session

    def heartbeat(self, i: int = 0, client: str = "pev", status: int = 0) -> None:
        session = self.resources.sessions[i]
        self.resources.put(f"{session.edev}/der/1/dstat",
                           parse(script.der_status(int(self.clock.seconds()), status)),
                           self.ids[client])

    def energize(self, i: int = 0) -> bool:
        session = self.resources.sessions[i]
        dderc = self.resources.get(f"{session.edev}/derp/1/dderc", ListQuery(),
                                   session.identity)
        return bool(dderc.DERControlBase.opModEnergize)

    def run(self, seconds: float, beat: bool = True, i: int = 0) -> None:
        """Advance the clock, the PEV sending its heartbeat every second if ``beat``."""
        for _ in range(round(seconds * 10)):
            self.clock.advance(0.1)
            if beat and round(self.clock.seconds() * 10) % 10 == 0:
                self.heartbeat(i)


class AuthorizationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Site()
        self.port = self.s.ports[0]

    def test_grant_when_everything_holds(self) -> None:
        """With the information exchange done and the policy granting, opModEnergize turns
        true and the contactor closes. V2G-4.6.4-1 V2G-4.6.4-2"""
        self.s.connect()
        self.assertIs(self.port.state, PortState.authorized)
        self.assertTrue(self.s.energize())
        self.s.clock.advance(0.1)
        self.assertIs(self.s.contactors[0].state, ContactorState.closed)

    def test_not_before_information_exchange(self) -> None:
        """Before step 2 is complete the PEV is not authorized, whatever the policy says."""
        self.port.link_up(LinkPeer())
        self.s.resources.attach(self.s.ids["pev"], 0)
        self.assertIs(self.port.state, PortState.exchanging)
        self.assertFalse(self.s.energize())
        self.assertIn("information exchange incomplete", self.port.reasons[0])

    def test_policy_denial_with_reasons(self) -> None:
        """A denying policy keeps opModEnergize false and its reasons are recorded; the
        session stays and is re-evaluated when facts change. V2G-4.6.4-3"""
        self.s.policy.decision = Decision(False, ("ISM 'X' is not on the approved list",))
        self.s.connect()
        self.assertIs(self.port.state, PortState.not_authorized)
        self.assertFalse(self.s.energize())
        self.assertEqual(self.port.reasons, ("ISM 'X' is not on the approved list",))
        self.s.policy.decision = Decision(True)
        self.s.run(5.1)
        self.assertIs(self.port.state, PortState.authorized)

    def test_no_policy_never_authorizes(self) -> None:
        """Without an authorization policy no PEV is authorized."""
        self.port.policy = None
        self.s.connect()
        self.assertFalse(self.s.energize())
        self.assertEqual(self.port.reasons, ("no authorization policy configured",))

    def test_policy_sees_the_facts(self) -> None:
        """The policy gets the PEV's identity, reported resources, site and responses."""
        session = self.s.connect()
        facts = self.s.policy.facts[-1]
        self.assertEqual(facts.lfdi, session.lfdi)
        self.assertIsNotNone(facts.der_settings.setMaxWh)
        self.assertEqual(len(facts.controls), len(self.s.resources.management(session)
                                                  .current()))
        self.assertEqual(facts.site["max_w"], self.s.site["max_w"])


class HeartbeatTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Site()
        self.port = self.s.ports[0]
        self.s.connect()
        self.s.run(3)

    def test_ten_missed_heartbeats_revoke(self) -> None:
        """Ten consecutive missed heartbeats revoke the authorization at 10 s.
        V2G-4.8.1.1-2 V2G-4.8.1.1-3"""
        last = self.s.clock.seconds()
        self.s.run(9.9, beat=False)
        self.assertTrue(self.s.energize())
        self.s.clock.advance(last + 10.0 - self.s.clock.seconds())
        self.assertFalse(self.s.energize())
        self.assertIn("loss of communications", self.port.reasons)

    def test_three_heartbeats_restore(self) -> None:
        """After a loss, three consecutive heartbeats restore the authorization if the
        policy still grants. V2G-4.8.1.1-4"""
        self.s.run(11, beat=False)
        self.assertFalse(self.s.energize())
        self.s.heartbeat()
        self.s.clock.advance(1)
        self.s.heartbeat()
        self.assertFalse(self.s.energize())
        self.s.clock.advance(1)
        self.s.heartbeat()
        self.assertTrue(self.s.energize())

    def test_restore_needs_policy(self) -> None:
        """Restored communications do not authorize a PEV the policy no longer grants."""
        self.s.run(11, beat=False)
        self.s.policy.decision = Decision(False, ("settings above the site limits",))
        self.s.run(3)
        self.assertFalse(self.s.energize())


class SleepTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Site()
        self.port = self.s.ports[0]
        self.s.connect()

    def test_sleep_revokes_and_wake_reauthorizes(self) -> None:
        """inverterStatus 2 revokes; no heartbeats while asleep is not a loss; inverterStatus
        0 after waking lets the policy authorize again. V2G-4.8.3-1 V2G-4.8.3-3 V2G-4.8.3-5"""
        self.s.heartbeat(status=2)
        self.assertIs(self.port.state, PortState.sleeping)
        self.assertFalse(self.s.energize())
        self.s.run(60, beat=False)
        self.assertTrue(self.port.heartbeat.ok)
        self.s.heartbeat(status=0)
        self.assertIs(self.port.state, PortState.authorized)
        self.assertTrue(self.s.energize())


class GatekeeperTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Site()
        self.port = self.s.ports[0]
        self.contactor = self.s.contactors[0]
        self.meter = self.s.meters[0]

    def test_discharge_before_authorization_opens_at_once(self) -> None:
        """A PEV discharging before it is authorized has the contactor opened in the same
        reactor turn as the meter sample, and it stays open. V2G-4.8.1.2-1 V2G-4.8.1.2-2"""
        self.s.policy.decision = Decision(False, ("not yet",))
        self.s.connect()
        self.s.clock.advance(0.1)
        self.assertIs(self.contactor.state, ContactorState.closed)
        self.meter.power = (3000.0, 0.0)
        self.meter.sample()
        self.assertIs(self.contactor.state, ContactorState.open)
        self.assertFalse(self.contactor.allowed)
        self.s.policy.decision = Decision(True)
        self.s.run(6)
        self.assertFalse(self.s.energize())
        self.assertIs(self.contactor.state, ContactorState.open)

    def test_over_limit_revokes_then_opens_after_three_seconds(self) -> None:
        """Discharging above the authorized limit revokes within 1 s and opens the contactor
        if it goes on past the 3 s the PEV has to stop. V2G-4.8.1.2-1 V2G-4.8.1.2-3"""
        self.s.connect(max_w=6500)
        self.s.clock.advance(0.1)
        self.meter.power = (9000.0, 0.0)
        self.s.clock.advance(0.1)
        self.assertFalse(self.s.energize())
        self.assertIs(self.contactor.state, ContactorState.closed)
        self.s.run(2.8)
        self.assertIs(self.contactor.state, ContactorState.closed)
        self.s.run(0.5)
        self.assertIs(self.contactor.state, ContactorState.open)

    def test_stopping_within_grace_keeps_contactor(self) -> None:
        """A PEV that stops within 3 s of the revocation keeps its contactor closed."""
        self.s.connect(max_w=6500)
        self.meter.power = (9000.0, 0.0)
        self.s.clock.advance(0.1)
        self.assertFalse(self.s.energize())
        self.s.run(2.0)
        self.meter.power = (0.0, 0.0)
        self.s.run(5)
        self.assertIs(self.contactor.state, ContactorState.closed)

    def test_meter_silent_opens_and_revokes(self) -> None:
        """A meter silent past its timeout opens the contactor and revokes."""
        self.s.connect()
        self.s.clock.advance(0.1)
        self.meter.silent = True
        self.s.run(0.7)
        self.assertIs(self.contactor.state, ContactorState.open)
        self.assertFalse(self.s.energize())
        self.meter.silent = False
        self.s.run(3)
        self.assertIs(self.contactor.state, ContactorState.closed)

    def test_meter_error_opens_and_revokes(self) -> None:
        """A meter error opens the contactor and revokes."""
        self.s.connect()
        self.s.clock.advance(0.1)
        self.meter.fail("CRC error")
        self.assertIs(self.contactor.state, ContactorState.open)
        self.assertFalse(self.s.energize())
        self.assertIn("gatekeeper: meter error: CRC error", self.port.reasons)

    def test_link_down_opens_and_ends_session(self) -> None:
        """A lost link opens the contactor, revokes and ends the session."""
        self.s.connect()
        self.s.clock.advance(0.1)
        self.port.link_down("cable unplugged")
        self.assertIs(self.contactor.state, ContactorState.open)
        self.assertIs(self.port.state, PortState.idle)
        self.assertEqual(self.s.resources.sessions, {})

    def test_stop_opens(self) -> None:
        """A stop of the service leaves the contactor open and the authorization revoked."""
        session = self.s.connect()
        self.s.clock.advance(0.1)
        self.port.stop()
        self.assertIs(self.contactor.state, ContactorState.open)
        self.assertFalse(session.energize)

    def test_contactor_plugin_exception_trips(self) -> None:
        """A contactor plugin raising while asked to close trips the gatekeeper."""
        def broken() -> None:
            raise OSError("relay driver gone")
        self.contactor.close = broken
        self.s.connect()
        self.assertIn("contactor plugin failed: OSError: relay driver gone",
                      self.port.gatekeeper.violation or "")
        self.assertFalse(self.s.energize())


class LimitChangeTests(SynchronousTestCase):
    def test_lower_limit_applies_after_grace(self) -> None:
        """A lowered limit (e.g. a second PEV shares the site) gives the PEV 3 s to follow
        before discharging above it revokes. V2G-4.8.1.2-3"""
        s = Site()
        s.connect(max_w=6500)
        s.meters[0].power = (6000.0, 0.0)
        s.run(1)
        s.ports[0].gatekeeper.set_limit(3000.0)
        s.run(2.5)
        self.assertTrue(s.energize())
        s.run(1)
        self.assertFalse(s.energize())


class SharingTests(SynchronousTestCase):
    def test_share_arithmetic(self) -> None:
        """The site limit is split equally, and what a PEV cannot use goes to the others.
        V2G-4.6.1.1-1"""
        self.assertEqual(share(7200, {"a": 6500}), {"a": 6500})
        self.assertEqual(share(7200, {"a": 6500, "b": 6500}), {"a": 3600, "b": 3600})
        self.assertEqual(share(7200, {"a": 1000, "b": 6500, "c": 6500}),
                         {"a": 1000, "b": 3100, "c": 3100})
        four = share(10000, {"a": 6500, "b": 6500, "c": 2000, "d": 6500})
        self.assertEqual(four["c"], 2000)
        self.assertLess(abs(sum(four.values()) - 10000), 1e-6)

    def test_max_lim_w_controls_for_one_to_four_ports(self) -> None:
        """With 1 to 4 authorized PEVs each gets an opModMaxLimW keeping the sum within the
        site limit; when one leaves, the others get more back."""
        from sepgw.security.pki import issue_pev
        from sepgw.security.tls import TLSSettings
        from tests.helpers import shared_pki

        pki = shared_pki()
        s = Site(ports=4, site_max_w=10000)
        for n in range(4):
            name = f"share{n}"
            if not (pki / f"{name}.pem").exists():
                issue_pev(pki, name, f"1.3.6.1.4.1.32473.2.{10 + n}")
            s.ids[name] = TLSSettings(pki / f"{name}.pem", pki / f"{name}.key",
                                      (pki / "serca.pem",)).identity

        def limits() -> list[float | None]:
            out = []
            for i, port in enumerate(s.ports):
                session = s.resources.sessions.get(i)
                if session is None or not port.granted:
                    continue
                extras = s.resources.management(session).extras()
                pct = [c.DERControlBase.opModMaxLimW for c in extras
                       if c.DERControlBase.opModMaxLimW is not None]
                out.append(pct[0] if pct else None)
            return out

        for n in range(4):
            s.connect(n, f"share{n}", max_w=6500)
            got = limits()
            if n == 0:
                self.assertEqual(got, [None])
            else:
                watts = [p * 6500 / 10000 for p in got]
                self.assertTrue(all(w <= 10000 / (n + 1) for w in watts), watts)
                self.assertLessEqual(sum(watts), 10000)
                self.assertGreater(sum(watts), 10000 - (n + 1) * 1)
        s.ports[3].link_down("unplugged")
        s.clock.advance(0)  # the next reactor turn: the site shares are served
        watts = [p * 6500 / 10000 for p in limits()]
        self.assertEqual(len(watts), 3)
        self.assertLessEqual(sum(watts), 10000)
        self.assertGreater(sum(watts), 10000 - 3)
        for port in s.ports[:3]:
            self.assertLessEqual(port.gatekeeper.limit_w, 10000 / 3 + 1)


class CoordinatedChargingTests(SynchronousTestCase):
    def test_fixed_w_issued_and_withdrawn(self) -> None:
        """The EVSE can send a DERControl opModFixedW to an authorized PEV and withdraw it.
        V2G-4.8.2-1"""
        s = Site()
        session = s.connect()
        s.ports[0].set_fixed_w(50.0)
        [control] = s.resources.management(session).extras()
        self.assertEqual(control.DERControlBase.opModFixedW, 5000)
        self.assertEqual(int(control.responseRequired), 3)
        s.ports[0].clear_fixed_w()
        self.assertEqual(s.resources.management(session).extras(), [])
        self.assertRaises(ValueError, s.ports[0].set_fixed_w, 150.0)
