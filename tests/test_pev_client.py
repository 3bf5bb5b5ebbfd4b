"""The PEV client (sepgw.pev.session) against the EVSE server in memory, on one fake clock.

The server fixture is sepgw's own EVSE (resource tree, HTTP resource, port controller, j3072
policy) with URIs that differ from every path in the profile's examples (``/edev/0``,
``/edev/0/derp/1/derc``, ``/rsps/0/rsp``...; the examples use ``/edev/1``, ``/pev/derp``,
``/rsps``), so the client can only get there by following links.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from treq.testing import RequestTraversalAgent
from twisted.web.http_headers import Headers
from zope.interface import implementer
from twisted.web.iweb import IAgent

from sepgw.config import load
from sepgw.evse.controller import PortController
from sepgw.evse.http import EVSEHTTPServer
from sepgw.evse.tree import EVSEResources
from sepgw.interfaces import InverterReading, LinkPeer
from sepgw.pev.http import SEPClient
from sepgw.pev.misbehaviour import misbehave
from sepgw.pev.session import J3072Client
from tests.helpers import ETC
from tests.test_evse_server import T0, identities
from tests.test_evse_session import SAFETY, build

BASE = "https://evse.test"
PROFILE_EXAMPLE_PATHS = ("/edev/1", "/pev/", "/sdev/der/1/derg", "/rsps/1/rsp", "/mup/1")


@implementer(IAgent)
class IdentifiedAgent:
    """Adds the test identity header the server fixture reads instead of a certificate,
    and can fail every request (a lost link) on demand."""

    def __init__(self, agent: RequestTraversalAgent, client: str) -> None:
        self.agent = agent
        self.client = client
        self.down = False
        self.paths: list[str] = []

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: Any = None) -> Any:
        from twisted.internet.defer import fail

        self.paths.append(uri.decode().removeprefix(BASE))
        if self.down:
            return fail(ConnectionRefusedError("link down"))
        headers = headers or Headers()
        headers.setRawHeaders(b"X-Test-Client", [self.client.encode()])
        return self.agent.request(method, uri, headers, bodyProducer)


class RecordingInverter:
    """The PEV's inverter: records what it was told; ``alarms`` are its DERAlarm bits."""

    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []
        self.alarms = 0
        self.power_w = 0.0

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def apply(self, controls: Any) -> None:
        self.applied.append(dict(controls))

    def reading(self) -> InverterReading:
        return InverterReading(0.0, self.power_w, 0.0, 240.0, 60.0, 80.0, self.alarms)

    @property
    def energized(self) -> bool:
        return bool(self.applied and self.applied[-1].get("opModEnergize"))


class World:
    """One EVSE port (real policy) and one PEV client on one fake clock."""

    def __init__(self, **behaviour: bool) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.ids = identities()
        self.build_evse()
        self.agent = IdentifiedAgent(self.traversal, "pev")
        self.inverter = RecordingInverter()
        vehicle = load(ETC / "pev.toml", "pev")["vehicle"]
        base = {"discharge_before_authorization": False, "exceed_limit": False,
                "stop_heartbeats": False, "skip_responses": False, "invalid_bodies": False,
                "report": None}
        base.update(behaviour)
        # Misbehaviour wraps the client's HTTP and inverter from outside, as the service does.
        http, inverter = misbehave(base, SEPClient(self.agent, BASE), self.inverter, vehicle)
        self.client = J3072Client(clock=self.clock, http=http,
                                  lfdi=self.ids["pev"].lfdi, dcap="/dcap", vehicle=vehicle,
                                  inverter=inverter)

    def build_evse(self) -> None:
        """A fresh EVSE (resource tree, port controller, policy, HTTP server) on the clock:
        at start, and as a restarted EVSE process."""
        config = load(ETC / "sepgw.toml", "evse")
        self.resources = EVSEResources(
            server=config["server"], site=config["site"], management=config["management"],
            ports=["port1"], clock=self.clock)
        policy = build("policy", "j3072", self.clock,
                       approved_list=str(ETC / "approved-pevs.txt"))
        self.contactor = build("contactor", "simulated", self.clock)
        self.meter = build("meter", "simulated", self.clock, interval=0.1)
        self.port = PortController(index=0, name="port1", clock=self.clock,
                                   resources=self.resources, contactor=self.contactor,
                                   policy=policy, site=config["site"], safety=SAFETY,
                                   meter_timeout=0.5)
        self.meter.add_listener(self.port)
        self.meter.start()
        self.port.start()
        self.port.link_up(LinkPeer(address="::1"))
        server = EVSEHTTPServer(self.resources, identify=self._identify)
        self.traversal = RequestTraversalAgent(server.resource())

    def _identify(self, request: Any) -> Any:
        name = request.getHeader(b"x-test-client")
        return self.ids.get(name.decode()) if name else None

    def flush(self) -> None:
        for _ in range(20):
            self.traversal.flush()

    def run(self, seconds: float) -> None:
        for _ in range(int(seconds * 10)):
            self.clock.advance(0.1)
            self.flush()

    def start(self) -> None:
        d = self.client.start()
        self.flush()
        self.started = d


class SequenceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World()
        self.w.start()

    def test_whole_sequence_by_links(self) -> None:
        """The client runs discovery, step 1, step 2, step 3 and metrology by following
        links only (no path of the profile's examples exists here), then periodic
        operations: it uses DeviceCapability, Time, SelfDevice:DER, DeviceInformation,
        PowerStatus:PEVInfo, EndDevice:DER, FunctionSetAssignments, MirrorUsagePoint and
        the DER programs. V2G-4.1.1-2 V2G-4.5.1-5 V2G-4.5.3-3 V2G-4.5.3-5 V2G-4.6-1
        V2G-4.6.1-2 V2G-4.1.1-5 V2G-4.1.1-7 V2G-4.1.1-9 V2G-4.1.1-11 V2G-4.1.1-13
        V2G-4.1.1-15 V2G-4.1.1-17 V2G-4.1.1-19 V2G-4.1.1-21"""
        report = self.w.client.report
        self.assertEqual([s.name for s in report.steps][:5], [
            "resource discovery", "step 1: site limits", "step 2: configuration sent",
            "step 3: management information", "metrology set up"])
        self.assertTrue(all(s.passed for s in report.steps), report.text())
        self.assertEqual(self.w.client.state, "periodic")
        for path in self.w.agent.paths:
            self.assertFalse(path.startswith(PROFILE_EXAMPLE_PATHS), path)
        site_get = self.w.agent.paths.index("/sdev/der/1/ders")
        first_put = next(i for i, p in enumerate(self.w.agent.paths) if p.endswith("/di"))
        self.assertLess(site_get, first_put)

    def test_information_sent(self) -> None:
        """DeviceInformation, PowerStatus/PEVInfo, DERCapability, DERSettings with setMaxWh
        adjusted to the site, DERAvailability and DERStatus reach the EVSE.
        V2G-4.6.2.1-1 V2G-4.6.2.1-2 V2G-4.6.2.2-1 V2G-4.6.2.3-1 V2G-4.6.2.4-1
        V2G-4.6.2.5-1 V2G-4.9.4-1 V2G-4.5.3.4-2 V2G-4.5.3.4-3 V2G-4.5.3.4-4 V2G-4.5.3.1-1
        V2G-4.5.3.2-1"""
        session = self.w.resources.sessions[0]
        self.assertEqual(set(session.written), {"di", "ps", "dercap", "ders", "dera", "dstat"})
        settings = session.written["ders"].resource
        self.assertIsNotNone(settings.setMaxWh)
        site_max = self.w.resources.site_settings.setMaxW
        self.assertLessEqual(settings.setMaxW.value * 10 ** settings.setMaxW.multiplier,
                             site_max.value * 10 ** site_max.multiplier)

    def test_responses_and_authorization(self) -> None:
        """Every DERControl gets Received and Started responses, the EVSE then authorizes,
        and the PEV tells its inverter it may discharge. V2G-4.6.3-9 V2G-4.5.3.5-11
        V2G-4.7.1-2 V2G-4.1.1-23"""
        session = self.w.resources.sessions[0]
        for control in self.w.resources.management(session).current():
            self.assertEqual(session.statuses(bytes(control.mRID)), {1, 2})
        self.w.run(1.1)
        self.assertTrue(self.w.port.granted)
        self.assertTrue(self.w.client.energize)
        self.assertTrue(self.w.inverter.energized)

    def test_heartbeat_every_second_with_inverter_status(self) -> None:
        """DERStatus is PUT every second; inverterStatus 0 once authorized, 3 before.
        V2G-4.8.1.1-1 V2G-4.7.2-1 V2G-4.7.2-3 V2G-4.7.2-5 V2G-4.5.3.4-5 V2G-4.5.3.4-6"""
        session = self.w.resources.sessions[0]
        self.assertEqual(int(session.written["dstat"].resource.inverterStatus.value), 3)
        before = self.w.agent.paths.count("/edev/0/der/1/dstat")
        self.w.run(5.15)
        self.assertEqual(self.w.agent.paths.count("/edev/0/der/1/dstat") - before, 5)
        self.assertEqual(int(session.written["dstat"].resource.inverterStatus.value), 0)

    def test_alarm_status_set_and_cleared(self) -> None:
        """An inverter alarm reaches the EVSE in the next DERStatus, and its clearing too;
        with no alarm the alarmStatus is 0. V2G-4.7.2-18 V2G-4.7.2-19"""
        session = self.w.resources.sessions[0]
        self.w.run(1.1)
        self.assertEqual(int(session.written["dstat"].resource.alarmStatus), 0)
        self.w.inverter.alarms = 2  # over-voltage
        self.w.run(1.1)
        self.assertEqual(int(session.written["dstat"].resource.alarmStatus), 2)
        self.w.inverter.alarms = 0
        self.w.run(1.1)
        self.assertEqual(int(session.written["dstat"].resource.alarmStatus), 0)
        names = [s.name for s in self.w.client.report.steps]
        self.assertIn("alarmStatus 02 (set)", names)
        self.assertIn("alarmStatus 00 (cleared)", names)

    def test_readings_in_der_frame(self) -> None:
        """Discharging shows as positive active power in the posted reading (DER reference
        frame), with flowDirection 19 (reverse) in its ReadingType as normative Table 6 has
        it (the section 5 example's 1 is wrong). V2G-4.7.2-29 V2G-4.7.2-30 V2G-4.7.2-27"""
        self.w.inverter.power_w = 3000.0
        self.w.run(15.1)
        session = self.w.resources.sessions[0]
        assert session.mirror is not None
        watts = next(m for m in session.mirror.meters.values()
                     if int(m.reading.ReadingType.uom) == 38)
        self.assertEqual(watts.history[-1][1].value, 3000)
        self.assertEqual(int(watts.reading.ReadingType.flowDirection), 19)

    def test_follows_post_rate_changes(self) -> None:
        """The PEV polls its EndDevice and MirrorUsagePoint at the lists' pollRate and
        follows a postRate change; at a postRate of 1 s it sends PEVInfo and DERAvailability
        every second. V2G-4.7.2-13 V2G-4.7.2-12"""
        self.w.resources._server = dict(self.w.resources._server, post_rate=1)
        self.w.run(15.1)
        self.assertEqual(self.w.client.rates["edev_post"], 1)
        before = self.w.agent.paths.count("/edev/0/ps")
        self.w.run(5.05)
        self.assertGreaterEqual(self.w.agent.paths.count("/edev/0/ps") - before, 4)

    def test_metrology(self) -> None:
        """The MirrorUsagePoint (isPEV) and its four MirrorMeterReadings exist; readings are
        posted at the MUP postRate while authorized. V2G-4.7.2-21 V2G-4.7.2-22
        V2G-4.7.2-27 V2G-4.7.2-6 V2G-4.7.2-8"""
        session = self.w.resources.sessions[0]
        assert session.mirror is not None
        self.assertEqual(len(session.mirror.meters), 4)
        self.w.run(15.1)
        for meter in session.mirror.meters.values():
            self.assertGreaterEqual(len(meter.history), 1)

    def test_revocation_stops_discharge(self) -> None:
        """When the EVSE revokes, the PEV stops discharging at its next poll, within the
        3 s it has. V2G-4.8.1.2-3 V2G-4.6.4-3"""
        self.w.run(1.1)
        self.assertTrue(self.w.inverter.energized)
        session = self.w.resources.sessions[0]
        self.w.port.gatekeeper.trip("test revocation")
        self.assertFalse(session.energize)
        self.w.run(1.1)
        self.assertFalse(self.w.inverter.energized)

    def test_fixed_w_followed(self) -> None:
        """An opModFixedW DERControl reaches the inverter as a percentage, and gets its
        responses. V2G-4.8.2-2"""
        self.w.run(1.1)
        self.w.port.set_fixed_w(40.0)
        self.w.run(1.1)
        self.assertEqual(self.w.inverter.applied[-1]["opModFixedW"], 40.0)
        extra = self.w.resources.management(self.w.resources.sessions[0]).extras()[0]
        self.assertEqual(self.w.resources.sessions[0].statuses(bytes(extra.mRID)), {1, 2})

    def test_superseding_control_followed(self) -> None:
        """A changed management function supersedes the old DERControl; the PEV answers
        Superseded for the old and Received/Started for the new, and uses the new one.
        V2G-4.7.1-3"""
        import copy

        self.w.run(1.1)
        session = self.w.resources.sessions[0]
        management = copy.deepcopy(load(ETC / "sepgw.toml", "evse")["management"])
        management["limit_active_power"] = {"max_w_pct": 60.0}
        self.w.run(5)
        self.w.resources.update_management(management)
        self.w.run(1.1)
        self.assertEqual(self.w.inverter.applied[-1]["opModMaxLimW"], 60.0)
        management["limit_active_power"] = {"max_w_pct": 30.0}
        self.w.run(5)
        self.w.resources.update_management(management)
        self.w.run(1.1)
        self.assertEqual(self.w.inverter.applied[-1]["opModMaxLimW"], 30.0)
        old = [c for c in self.w.resources.management(session).controls
               if c.DERControlBase.opModMaxLimW == 6000]
        self.assertIn(7, session.statuses(bytes(old[0].mRID)))

    def test_loss_of_communications(self) -> None:
        """Ten failed heartbeats make the PEV cease discharging; three successes let it
        resume. V2G-4.8.1.1-5"""
        self.w.run(1.1)
        self.assertTrue(self.w.inverter.energized)
        self.w.agent.down = True
        self.w.run(9.0)
        self.assertTrue(self.w.inverter.energized)
        self.w.run(1.05)
        self.assertFalse(self.w.inverter.energized)
        self.w.agent.down = False
        self.w.run(3.05)
        self.assertTrue(self.w.inverter.energized)

    def test_sleep_and_wake(self) -> None:
        """Sleep posts inverterStatus 2 then sends nothing; waking re-acquires the
        management information and posts 0; the EVSE revokes then re-authorizes.
        V2G-4.8.3-1 V2G-4.8.3-2 V2G-4.8.3-4 V2G-4.8.3-5 V2G-4.7.2-4 V2G-4.7.2-7"""
        from twisted.internet.defer import ensureDeferred

        self.w.run(1.1)
        ensureDeferred(self.w.client.sleep())
        self.w.flush()
        self.assertFalse(self.w.port.granted)
        self.assertFalse(self.w.inverter.energized)
        count = len(self.w.agent.paths)
        self.w.run(20)
        self.assertEqual(len(self.w.agent.paths), count)
        ensureDeferred(self.w.client.wake())
        self.w.flush()
        woke = self.w.agent.paths[count:]
        self.assertIn("/edev/0/derp/1/derc?s=0&l=50", woke)
        self.assertEqual(woke[-1], "/edev/0/der/1/dstat")
        self.w.run(1.1)
        self.assertTrue(self.w.port.granted)
        self.assertTrue(self.w.inverter.energized)


class DefaultRateTests(SynchronousTestCase):
    def test_fifteen_seconds_without_rates(self) -> None:
        """An EVSE that gives no EndDevice or MirrorUsagePoint postRate and no list pollRate
        gets the PEV's posts and polls every 15 s. V2G-4.7.2-10 V2G-4.7.2-11 V2G-4.7.2-15
        V2G-4.7.2-16"""
        import dataclasses

        from sepgw.evse import tree

        w = World()
        real_edev = tree._SessionResources.end_device
        real_mup = tree._SessionResources.mirror_usage_point
        real_get = tree.EVSEResources._global_get

        def global_get(self: Any, kind: str, query: Any, own: Any) -> Any:
            doc = real_get(self, kind, query, own)
            if kind in ("edevl", "mup"):
                doc = dataclasses.replace(doc, pollRate=None)
            return doc

        self.patch(tree._SessionResources, "end_device",
                   lambda self: dataclasses.replace(real_edev(self), postRate=None))
        self.patch(tree._SessionResources, "mirror_usage_point",
                   lambda self: dataclasses.replace(real_mup(self), postRate=None))
        self.patch(tree.EVSEResources, "_global_get", global_get)
        w.start()
        self.assertEqual(w.client.state, "periodic")
        self.assertEqual({k: w.client.rates[k] for k in ("edev_post", "mup_post",
                                                          "edev_poll", "mup_poll")},
                         {"edev_post": 15, "mup_post": 15, "edev_poll": 15, "mup_poll": 15})


class FailureTests(SynchronousTestCase):
    def test_unknown_pev_reverts_to_non_j3072(self) -> None:
        """A PEV that cannot find its EndDevice reverts to non-J3072 mode and never
        discharges. V2G-4.5.3-4 V2G-4.5.2-4"""
        w = World()
        w.client.lfdi = "00" * 20
        w.start()
        self.assertEqual(w.client.state, "non-J3072")
        self.assertFalse(w.client.report.passed)
        self.assertFalse(w.inverter.energized)

    def test_skip_responses_is_never_authorized(self) -> None:
        """The skip-responses misbehaviour keeps the EVSE from authorizing (a check of the
        EVSE's 4.6.4 response rule)."""
        w = World(skip_responses=True)
        w.start()
        w.run(6)
        self.assertFalse(w.port.granted)
        self.assertIn("responses missing", "; ".join(w.port.reasons))
