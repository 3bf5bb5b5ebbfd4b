"""The DME uplink's client walk, event rules and responses, in memory on task.Clock against
tests/dme_server.py (the test head-end)."""

from __future__ import annotations

from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from zope.interface import implementer

from sepgw.model import DERControlBase, FixedVar
from sepgw.pev.http import SEPClient
from sepgw.uplink.client import State, UplinkClient
from sepgw.uplink.queue import DurableQueue
from tests.dme_server import DMEServer

BASE = "https://dme.test"
T0 = 1_700_000_000
LFDI = "A2038B8645F15C66D889FFBC4352AC0B8CDACBA1"
SFDI = 434902610920
SITE = {"max_w": 10000.0, "max_charge_rate_w": 10000.0, "max_discharge_rate_w": 10000.0}


@implementer(IAgent)
class SwitchableAgent:
    """Passes requests to the in-memory server, or fails them all while ``down``."""

    def __init__(self, agent: RequestTraversalAgent) -> None:
        self.agent = agent
        self.down = False

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: Any = None) -> Any:
        if self.down:
            return fail(ConnectionRefusedError("DME unreachable"))
        return self.agent.request(method, uri, headers, bodyProducer)


class World:
    """The uplink against the test DME. With ``pev`` (default) the sink stands for an EVSE
    with one PEV that starts every DME control relayed to it (it answers Started at once,
    as the PEV role does for an active control)."""

    def __init__(self, *, registration: bool = True, pin: int | None = None,
                 time_offset: float = 0.0, queue: DurableQueue | None = None,
                 pev: bool = True, **client: Any) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.dme = DMEServer(self.clock, registration=registration, poll_rate=10,
                             post_rate=30, time_offset=time_offset)
        self.traversal = RequestTraversalAgent(self.dme.resource())
        self.agent = SwitchableAgent(self.traversal)
        self.sink: list[dict[str, Any]] = []
        self.pev = pev
        self.queue = queue or DurableQueue(":memory:")
        self.client = UplinkClient(
            http=SEPClient(self.agent, BASE), clock=self.clock, lfdi=LFDI, sfdi=SFDI,
            dcap="/dcap", site=SITE, ports=["port1", "port2"], queue=self.queue,
            sink=self._sink, register=registration, pin=pin, randomize=lambda b: 0,
            **client)

    def _sink(self, control: dict[str, Any]) -> None:
        self.sink.append(control)
        if self.pev:
            for mrid in control["site"]["sources"].values():
                if mrid:
                    self.client.pev_response(bytes.fromhex(mrid), "port1", 2)

    def flush(self) -> None:
        for _ in range(30):
            self.traversal.flush()

    def run(self, seconds: float, step: float = 0.5) -> None:
        for _ in range(int(seconds / step)):
            self.clock.advance(step)
            self.flush()

    def start(self) -> None:
        self.client.start()
        self.run(1)

    @property
    def site(self) -> dict[str, Any]:
        return self.sink[-1]["site"] if self.sink else {}


def telemetry(w1: float, w2: float | None = None) -> dict[str, Any]:
    ports = [{"port": "port1", "lfdi": "AA" * 20, "authorized": True, "pev_max_w": 7000.0,
              "meter": {"w": w1, "var": 0.0, "v": 240.0, "hz": 60.0}}]
    if w2 is not None:
        ports.append({"port": "port2", "lfdi": None, "authorized": False, "pev_max_w": None,
                      "meter": {"w": w2, "var": 100.0, "v": 242.0, "hz": 60.0}})
    return {"ports": ports}


class WalkTests(SynchronousTestCase):
    def test_registers_by_post_and_presents_the_site(self) -> None:
        """An unknown EVSE POSTs its EndDevice (its LFDI and SFDI) to the EndDeviceList, then
        PUTs DeviceInformation, DERCapability and DERSettings on its DER and creates one
        MirrorUsagePoint for the site and one per port; it follows only links and reaches
        running."""
        w = World()
        w.start()
        self.assertEqual(w.client.state, State.running)
        device = w.dme.devices[LFDI]
        self.assertEqual(device.doc.sFDI, SFDI)
        self.assertEqual(set(device.resources), {"di", "dercap", "ders"})
        self.assertEqual(float(device.resources["ders"].setMaxW.value)
                         * 10 ** device.resources["ders"].setMaxW.multiplier, 10000.0)
        self.assertEqual(sorted(m.description for m in w.dme.mups.values()),
                         ["port1", "port2", "site"])
        # The site's rates come from the server: EndDevice postRate, MUP postRate, pollRate.
        self.assertEqual((w.client.post_rate_s, w.client.mup_post_rate_s, w.client.poll_s),
                         (30.0, 30.0, 10.0))

    def test_pre_registered_device_found_by_lfdi_without_post(self) -> None:
        """With registration by POST off, an EndDevice registered out of band is found in the
        EndDeviceList by its LFDI; an unknown one is an error and the client backs off."""
        w = World(registration=False)
        w.start()
        self.assertEqual(w.client.state, State.backoff)
        self.assertIn("not registered", w.client.error or "")
        w.dme.pre_register(LFDI, SFDI)
        w.run(400)
        self.assertEqual(w.client.state, State.running)
        self.assertEqual(list(w.dme.devices), [LFDI])

    def test_registration_pin_checked(self) -> None:
        """A configured Registration PIN that differs from the one the DME holds stops the
        client short of presenting anything (it is not this utility's registration); the
        right PIN lets it through."""
        w = World(pin=123455)
        w.start()
        self.assertEqual(w.client.state, State.backoff)
        self.assertIn("PIN mismatch", w.client.error or "")
        self.assertEqual(w.dme.devices[LFDI].resources, {})
        ok = World(pin=111115)
        ok.start()
        self.assertEqual(ok.client.state, State.running)

    def test_list_paging_follows_all(self) -> None:
        """A DERControlList longer than one page is read to its end (s/l paging until
        ``all``): all 60 events are tracked."""
        w = World()
        for i in range(60):
            w.dme.add_control(DERControlBase(opModMaxLimW=5000), start=T0 + 3600 + i * 700,
                              duration=600)
        w.start()
        self.assertEqual(len(w.client.engine.states()), 60)

    def test_server_time_base(self) -> None:
        """Events run on the server's clock, not the EVSE's: with the DME 1000 s ahead, an
        event starting at server time T0+1010 is active 10 s after start-up."""
        w = World(time_offset=1000)
        control = w.dme.add_control(DERControlBase(opModMaxLimW=4000), start=T0 + 1010,
                                    duration=600)
        w.start()
        self.assertIsNone(w.site.get("opModMaxLimW"))
        w.run(10)
        self.assertEqual(w.site["opModMaxLimW"], 4000)
        self.assertEqual(w.dme.responses_for(control.mRID), [1, 2])


class ControlTests(SynchronousTestCase):
    def test_event_rules_supersession_and_completion(self) -> None:
        """Two overlapping opModMaxLimW events of one program: the later creationTime
        supersedes the earlier (§10.2.3); Received, Started, Superseded and Completed go to
        replyTo; when the event ends the limit is withdrawn."""
        w = World()
        first = w.dme.add_control(DERControlBase(opModMaxLimW=6000), duration=100,
                                  creation=T0 - 10)
        w.start()
        self.assertEqual(w.site["opModMaxLimW"], 6000)
        second = w.dme.add_control(DERControlBase(opModMaxLimW=3000), duration=50,
                                   creation=T0 + 1)
        w.run(12)
        self.assertEqual(w.site["opModMaxLimW"], 3000)
        w.run(60)
        self.assertIsNone(w.site["opModMaxLimW"])
        self.assertEqual(w.dme.responses_for(first.mRID), [1, 2, 7])
        self.assertEqual(w.dme.responses_for(second.mRID), [1, 2, 3])

    def test_energize_false_is_a_site_control(self) -> None:
        """A DefaultDERControl opModEnergize false reaches the sink as the site's
        opModEnergize false; an opModConnect false event likewise while it is active."""
        w = World()
        w.dme.set_default(DERControlBase(opModEnergize=False))
        w.start()
        self.assertIs(w.site["opModEnergize"], False)
        w.dme.set_default(None)
        w.dme.add_control(DERControlBase(opModConnect=False), duration=30)
        w.run(12)
        self.assertIsNone(w.site["opModEnergize"])
        self.assertIs(w.site["opModConnect"], False)

    def test_unsupported_function_rejected_252(self) -> None:
        """A DERControl with a function the site cannot apply (opModFixedVar) is answered
        with status 252 ("Rejected - control parameter not applicable", 2030.5-2018 Table 27)
        once, and is never put in effect; a supported one beside it runs normally."""
        w = World()
        bad = w.dme.add_control(DERControlBase(opModFixedVar=FixedVar(refType=1, value=100)))
        good = w.dme.add_control(DERControlBase(opModFixedW=2500))
        w.start()
        w.run(30)
        self.assertEqual(w.dme.responses_for(bad.mRID), [252])
        self.assertEqual(w.dme.responses_for(good.mRID), [1, 2])
        self.assertNotIn("opModFixedVar", w.client.effective.controls)
        self.assertEqual(w.site["opModFixedW"], 2500)

    def test_losing_the_dme_keeps_events_running(self) -> None:
        """With the DME unreachable the client backs off and says so; the event already
        received still completes on its schedule and its Completed response is delivered
        once the DME is back (queued meanwhile)."""
        w = World()
        control = w.dme.add_control(DERControlBase(opModMaxLimW=5000), duration=60)
        w.start()
        w.agent.down = True
        w.run(20)
        self.assertEqual(w.client.state, State.backoff)
        self.assertIsNotNone(w.client.lost_since)
        self.assertEqual(w.site["opModMaxLimW"], 5000)
        w.run(50)
        self.assertIsNone(w.site["opModMaxLimW"])
        self.assertEqual(w.dme.responses_for(control.mRID), [1, 2])
        w.agent.down = False
        w.run(700)
        self.assertEqual(w.client.state, State.running)
        self.assertEqual(w.dme.responses_for(control.mRID), [1, 2, 3])


class TelemetryTests(SynchronousTestCase):
    def test_readings_at_the_mup_post_rate(self) -> None:
        """Readings of the site (sums of W and var, mean V and Hz) and of each port reach
        the MirrorUsagePoints at the server's postRate (30 s), with a cumulative energy
        register integrated from the samples."""
        w = World()
        w.start()
        w.client.publish(dict(telemetry(-3000.0, 1000.0), time=T0 + 1))
        w.client.publish(dict(telemetry(-3000.0, 1000.0), time=T0 + 3601))
        w.run(31)
        by_mup: dict[str, dict[str, int]] = {}
        for href, mmr in w.dme.readings:
            desc = w.dme.mups[href].description
            by_mup.setdefault(desc, {})[mmr.description] = mmr.Reading.value
        self.assertEqual(by_mup["site"]["Active Power"], -2000)
        self.assertEqual(by_mup["site"]["Reactive Power"], 100)
        self.assertEqual(by_mup["site"]["Voltage"], 2410)   # 241.0 V in tenths
        self.assertEqual(by_mup["site"]["Frequency"], 6000)  # 60.00 Hz in hundredths
        self.assertEqual(by_mup["site"]["Energy"], -2000)    # -2 kW for one hour
        self.assertEqual(by_mup["port1"]["Active Power"], -3000)
        self.assertEqual(by_mup["port2"]["Energy"], 1000)
        device = w.dme.devices[LFDI]
        self.assertIn("dstat", device.resources)
        self.assertIn("dera", device.resources)

    def test_readings_queued_during_outage_arrive_in_order(self) -> None:
        """Readings taken while the DME is down are kept and delivered in the order taken,
        none lost, once it is back."""
        w = World()
        w.start()
        w.agent.down = True
        for i in range(5):
            w.client.publish(dict(telemetry(float(-100 * (i + 1))), time=T0 + 30 * i))
            w.run(30)
        w.agent.down = False
        w.run(700)
        port1 = [m.Reading.value for href, m in w.dme.readings
                 if w.dme.mups[href].description == "port1" and m.description == "Active Power"]
        self.assertEqual(port1[:5], [-100, -200, -300, -400, -500])
        self.assertEqual(w.queue.stats()["dropped"], 0)
        self.assertEqual(len(w.queue), 0)

    def test_refused_item_set_aside_not_retried(self) -> None:
        """A reading the DME refuses with a 4xx (here: its MirrorUsagePoint is gone, 404) is
        set aside as poisoned with the reason, and the items behind it are still delivered."""
        w = World()
        w.start()
        w.client.publish(dict(telemetry(-100.0), time=T0 + 1))
        del w.dme.mups["/mup/2"]  # port1's
        w.run(31)
        self.assertEqual(w.queue.stats()["poisoned"], 1)
        self.assertIn("404", w.queue.poisoned()[0][3])
        self.assertEqual({w.dme.mups[h].description for h, _ in w.dme.readings}, {"site"})

    def test_response_refused_400_not_retried(self) -> None:
        """A Response the DME refuses with 400 (its replyTo does not take it) is set aside
        after one attempt, logged with the reason, never retried in the next 10 minutes,
        and the queue goes on (readings behind it delivered)."""
        w = World()
        posts: list[str] = []
        inner = w.dme.handle

        def handle(method: str, path: str, query: bytes, body: bytes, *a: Any,
                   **kw: Any) -> Any:
            if method == "POST" and path == "/rsps/1/rsp":
                posts.append(path)
                return 400, b"Response refused", None
            return inner(method, path, query, body, *a, **kw)
        w.dme.handle = handle  # type: ignore[method-assign]
        w.dme.add_control(DERControlBase(opModMaxLimW=5000), duration=60)
        w.start()
        w.client.publish(dict(telemetry(-100.0), time=T0 + 1))
        w.run(600)
        self.assertEqual(len(posts), 3)  # Received, Started, Completed: once each
        self.assertEqual(w.queue.stats()["poisoned"], 3)
        self.assertEqual(w.queue.stats()["retried"], 0)
        self.assertIn("400", w.queue.poisoned()[0][3])
        self.assertTrue(w.dme.readings)
