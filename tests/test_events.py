"""Tests for the DERControl event engine (:mod:`sepgw.events`): IEEE 2030.5 §10.2.3 event
rules as the profile requires them (V2G-4.7.1-3), the management information a PEV gets
(profile 4.6.3, 5.7, 5.12) and what is in effect when a function is absent (4.9.1, 4.9.3)."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from twisted.internet.task import Clock
from twisted.trial import unittest

from sepgw.evse.management import DURATION_FOREVER, ManagementInformation
from sepgw.events import (
    IEEE1547_FREQ_DROOP, EffectiveControls, EventEngine, EventState, Source, control_response,
)
from sepgw.model import (
    DateTimeInterval, DefaultDERControl, DERControl, DERControlBase, DERControlResponse,
    DeviceCategory,
    EventStatus, EventStatusCode, FreqDroopType, ResponseRequired, ResponseStatus, parse,
    serialize,
)
from tests.test_evse_management import counter_mrids, etc_config
from tests.test_model_helpers import schema_errors

NOW = 1_780_272_000  # 2026-06-01 00:00:00 UTC, server time
PROG = "/pev/derp/1"
RSP = "/rsps/1/rsp"
BOTH = ResponseRequired.MESSAGE_RECEIVED | ResponseRequired.SPECIFIC_RESPONSE
LFDI = bytes.fromhex("A2038B8645F15C66D889FFBC4352AC0B8CDACBA1")

RECEIVED = ResponseStatus.EVENT_RECEIVED
STARTED = ResponseStatus.EVENT_STARTED
COMPLETED = ResponseStatus.EVENT_COMPLETED
CANCELLED = ResponseStatus.EVENT_CANCELLED
SUPERSEDED = ResponseStatus.EVENT_SUPERSEDED


def mrid(n: int) -> bytes:
    """A 16-byte mRID numbered ``n``."""
    return n.to_bytes(16, "big")


def control(n: int, *, start: int = NOW, duration: int = 3600, created: int = NOW - 60,
            status: EventStatusCode = EventStatusCode.SCHEDULED,
            required: int = BOTH, randomize_start: int | None = None,
            randomize_duration: int | None = None, category: int | None = None,
            **opmods: Any) -> DERControl:
    """A DERControl ``n`` carrying ``opmods`` (``opModMaxLimW=5000`` by default)."""
    return DERControl(
        href=f"{PROG}/derc/{n}", replyTo=RSP, responseRequired=ResponseRequired(required),
        mRID=mrid(n), creationTime=created,
        EventStatus=EventStatus(currentStatus=status, dateTime=created,
                                potentiallySuperseded=False),
        interval=DateTimeInterval(duration=duration, start=start),
        randomizeStart=randomize_start, randomizeDuration=randomize_duration,
        DERControlBase=DERControlBase(**(opmods or {"opModMaxLimW": 5000})),
        deviceCategory=None if category is None else DeviceCategory(category))


def with_status(c: DERControl, status: EventStatusCode, at: int) -> DERControl:
    """``c`` as the server serves it after marking it ``status`` at ``at``."""
    return dataclasses.replace(c, EventStatus=EventStatus(
        currentStatus=status, dateTime=at, potentiallySuperseded=False))


def default(energize: bool | None = False, **extra: Any) -> DefaultDERControl:
    """A DefaultDERControl with opModEnergize and Enter Service settings."""
    base = {k: v for k, v in extra.items() if k.startswith("opMod")}
    settings = {k: v for k, v in extra.items() if not k.startswith("opMod")}
    return DefaultDERControl(mRID=mrid(0xDD), DERControlBase=DERControlBase(
        opModEnergize=energize, **base), **settings)


class Harness:
    """An engine on a ``task.Clock``; server time = clock + ``offset``. Records every
    Response as (mRID number, status, server time) and every reported change."""

    def __init__(self, offset: float = 0.0, **kw: Any) -> None:
        self.clock = Clock()
        self.clock.advance(NOW - offset)
        self.offset = offset
        self.responses: list[tuple[int, int, float]] = []
        self.changes: list[EffectiveControls] = []
        self.engine = EventEngine(self.now, self.clock, self.changes.append, self.respond, **kw)

    def now(self) -> float:
        return self.clock.seconds() + self.offset

    def respond(self, c: DERControl, status: ResponseStatus) -> None:
        self.responses.append((int.from_bytes(c.mRID, "big"), int(status), self.now()))

    def feed(self, *controls: DERControl, dderc: DefaultDERControl | None = None,
             program: str = PROG, primacy: int = 1) -> None:
        self.engine.update_program(program, primacy, dderc, list(controls))

    @property
    def effective(self) -> EffectiveControls:
        return self.engine.effective


class LifecycleTests(unittest.TestCase):
    """Scheduled → Active → Completed, responses and responseRequired."""

    def test_scheduled_active_completed_responses_in_order(self) -> None:
        """V2G-4.7.1-3: a future DERControl is Received at once, Started at interval.start
        and Completed at start + duration, on the clock, in that order, each once; it is in
        effect only while Active."""
        h = Harness()
        h.feed(control(1, start=NOW + 100, duration=600))
        self.assertEqual(h.responses, [(1, RECEIVED, NOW)])
        self.assertEqual(h.engine.state(mrid(1)), EventState.SCHEDULED)
        self.assertFalse(h.effective.enabled("opModMaxLimW"))
        h.clock.advance(99)
        self.assertEqual(len(h.responses), 1)
        h.clock.advance(1)
        self.assertEqual(h.responses[-1], (1, STARTED, NOW + 100))
        self.assertEqual(h.engine.state(mrid(1)), EventState.ACTIVE)
        self.assertEqual(h.effective.value("opModMaxLimW"), 5000)
        self.assertEqual(h.effective.controls["opModMaxLimW"].source, Source.EVENT)
        h.clock.advance(600)
        self.assertEqual(h.responses, [(1, RECEIVED, NOW), (1, STARTED, NOW + 100),
                                       (1, COMPLETED, NOW + 700)])
        self.assertEqual(h.engine.state(mrid(1)), EventState.COMPLETED)
        self.assertFalse(h.effective.enabled("opModMaxLimW"))
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_no_responses_when_response_required_is_zero(self) -> None:
        """V2G-4.7.1-3: responseRequired 00 asks for no Response: the event still runs (in
        effect while Active) but the engine never calls respond."""
        h = Harness()
        h.feed(control(1, start=NOW + 10, duration=10, required=0))
        h.clock.advance(10)
        self.assertEqual(h.effective.value("opModMaxLimW"), 5000)
        h.clock.advance(10)
        self.assertEqual(h.responses, [])
        self.assertEqual(h.engine.state(mrid(1)), EventState.COMPLETED)

    def test_bit_0_asks_for_received_bit_1_for_progress(self) -> None:
        """V2G-4.6.3-4: bit 0 (message received) asks for the Received Response only, bit 1
        (specific response) for Started and Completed only."""
        h = Harness()
        h.feed(control(1, start=NOW + 10, duration=10,
                       required=ResponseRequired.MESSAGE_RECEIVED),
               control(2, start=NOW + 10, duration=10, opModFixedW=100,
                       required=ResponseRequired.SPECIFIC_RESPONSE))
        h.clock.advance(10)
        h.clock.advance(10)
        self.assertEqual(h.responses, [(1, RECEIVED, NOW), (2, STARTED, NOW + 10),
                                       (2, COMPLETED, NOW + 20)])

    def test_past_start_is_active_at_once(self) -> None:
        """V2G-4.6.3-5, V2G-4.6.3-6: a control whose start is now or past and whose interval
        (0xFFFFFFFF s) still runs is Active on receipt: Received then Started at once (the
        profile's 5.7 "since the event start time is in the past")."""
        h = Harness()
        h.feed(control(1, start=NOW - 500, duration=DURATION_FOREVER,
                       status=EventStatusCode.ACTIVE))
        self.assertEqual(h.responses, [(1, RECEIVED, NOW), (1, STARTED, NOW)])
        self.assertEqual(h.effective.value("opModMaxLimW"), 5000)
        # One timer, for the end in 2162.
        calls: Sequence[Any] = h.clock.getDelayedCalls()
        self.assertEqual([c.getTime() for c in calls], [NOW - 500 + DURATION_FOREVER])

    def test_event_already_over_is_only_acknowledged(self) -> None:
        """V2G-4.7.1-3: an event whose interval ended before it was seen is acknowledged
        (Received) but never executed: no Started, no Completed, never in effect."""
        h = Harness()
        h.feed(control(1, start=NOW - 1000, duration=100))
        self.assertEqual(h.responses, [(1, RECEIVED, NOW)])
        self.assertEqual(h.engine.state(mrid(1)), EventState.COMPLETED)
        self.assertFalse(h.effective.enabled("opModMaxLimW"))
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_late_timer_still_reports_started_then_completed(self) -> None:
        """V2G-4.7.1-3: when the reactor runs late past a whole event, the event still
        reports Started and then Completed (each once)."""
        h = Harness()
        h.feed(control(1, start=NOW + 10, duration=10))
        h.clock.advance(100)
        self.assertEqual([s for _, s, _ in h.responses], [RECEIVED, STARTED, COMPLETED])

    def test_randomized_start_and_duration(self) -> None:
        """V2G-4.7.1-3: randomizeStart and randomizeDuration move the effective start and
        end by an offset drawn (here deterministically) within their bounds."""
        bounds: list[int] = []

        def draw(bound: int) -> int:
            bounds.append(bound)
            return bound // 2

        h = Harness(randomize=draw)
        h.feed(control(1, start=NOW + 100, duration=600, randomize_start=60,
                       randomize_duration=-20))
        self.assertEqual(bounds, [60, -20])
        h.clock.advance(129)
        self.assertEqual(h.engine.state(mrid(1)), EventState.SCHEDULED)
        h.clock.advance(1)
        self.assertEqual(h.responses[-1], (1, STARTED, NOW + 130))
        h.clock.advance(589)
        self.assertEqual(h.engine.state(mrid(1)), EventState.ACTIVE)
        h.clock.advance(1)
        self.assertEqual(h.responses[-1], (1, COMPLETED, NOW + 130 + 600 - 10))

    def test_events_run_on_the_server_time_base(self) -> None:
        """V2G-4.5.3.5-3, V2G-4.7.1-3: events run on the EVSE server's time: with the PEV's
        clock 1000 s behind the server, an event at server time NOW+100 starts 100 s later,
        and resync() re-times the timer when the offset to the server changes."""
        h = Harness(offset=1000.0)
        h.feed(control(1, start=NOW + 100, duration=600))
        h.clock.advance(100)
        self.assertEqual(h.responses[-1], (1, STARTED, NOW + 100))
        h.offset = 1300.0  # a new Time resource: the server is 300 s further ahead
        h.engine.resync()
        calls: Sequence[Any] = h.clock.getDelayedCalls()
        self.assertEqual([c.getTime() + h.offset for c in calls], [NOW + 700])
        h.clock.advance(300)
        self.assertEqual(h.responses[-1], (1, COMPLETED, NOW + 700))


class SupersessionTests(unittest.TestCase):
    """Overlapping events: supersession and per-element precedence."""

    def test_newer_event_for_same_opmod_supersedes_at_its_start(self) -> None:
        """V2G-4.7.1-3 (profile 4.6.3's change during a session): a newer DERControl for
        the same opMod supersedes the older one when it starts: the old one gets Superseded,
        the new one Started and its value takes effect; the old one does not resume."""
        h = Harness()
        h.feed(control(1, start=NOW, duration=3600, created=NOW - 100, opModMaxLimW=8000))
        h.clock.advance(5)
        h.feed(control(1, start=NOW, duration=3600, created=NOW - 100, opModMaxLimW=8000),
               control(2, start=NOW + 10, duration=60, created=NOW + 5, opModMaxLimW=5000))
        self.assertEqual(h.effective.value("opModMaxLimW"), 8000)  # not yet
        h.clock.advance(5)
        self.assertEqual(h.responses, [
            (1, RECEIVED, NOW), (1, STARTED, NOW), (2, RECEIVED, NOW + 5),
            (1, SUPERSEDED, NOW + 10), (2, STARTED, NOW + 10)])
        self.assertEqual(h.effective.value("opModMaxLimW"), 5000)
        h.clock.advance(60)
        self.assertEqual(h.responses[-1], (2, COMPLETED, NOW + 70))
        self.assertEqual(h.engine.state(mrid(1)), EventState.SUPERSEDED)
        self.assertFalse(h.effective.enabled("opModMaxLimW"))

    def test_cancelled_before_start_supersedes_nothing(self) -> None:
        """V2G-4.7.1-3: supersession happens at the superseding event's start, so a newer
        event cancelled before it starts leaves the running one alone."""
        h = Harness()
        old = control(1, start=NOW, duration=3600, created=NOW - 100, opModMaxLimW=8000)
        new = control(2, start=NOW + 10, duration=60, created=NOW, opModMaxLimW=5000)
        h.feed(old, new)
        h.feed(old, with_status(new, EventStatusCode.CANCELLED, NOW + 1))
        h.clock.advance(100)
        self.assertEqual(h.engine.state(mrid(1)), EventState.ACTIVE)
        self.assertEqual(h.effective.value("opModMaxLimW"), 8000)
        self.assertNotIn((1, SUPERSEDED), [(m, s) for m, s, _ in h.responses])

    def test_older_event_arriving_later_is_superseded(self) -> None:
        """V2G-4.7.1-3: an overlapping event created earlier than the Active one for the same
        opMod loses: it is Received and Superseded, never Started."""
        h = Harness()
        h.feed(control(2, created=NOW - 10, opModMaxLimW=5000))
        h.feed(control(2, created=NOW - 10, opModMaxLimW=5000),
               control(1, created=NOW - 100, opModMaxLimW=8000))
        self.assertEqual(h.responses[2:], [(1, RECEIVED, NOW), (1, SUPERSEDED, NOW)])
        self.assertEqual(h.effective.value("opModMaxLimW"), 5000)

    def test_different_opmods_do_not_supersede(self) -> None:
        """V2G-4.7.1-3, V2G-4.6.3-7: overlapping one-opMod controls for different functions
        never supersede each other: both are Active and both in effect."""
        h = Harness()
        h.feed(control(1, created=NOW - 100, opModMaxLimW=8000),
               control(2, created=NOW, opModFixedW=-2500))
        self.assertEqual(h.engine.states(), {mrid(1): EventState.ACTIVE,
                                             mrid(2): EventState.ACTIVE})
        self.assertEqual(h.effective.value("opModMaxLimW"), 8000)
        self.assertEqual(h.effective.value("opModFixedW"), -2500)
        self.assertNotIn(SUPERSEDED, [s for _, s, _ in h.responses])

    def test_partly_shared_elements_take_precedence_per_element(self) -> None:
        """V2G-4.7.1-3: events sharing some but not all elements (the schema's
        potentiallySuperseded case) both stay Active; each element comes from the winning
        event that has it, and the older event's value returns when the newer one ends."""
        h = Harness()
        h.feed(control(1, duration=3600, created=NOW - 100, opModMaxLimW=8000,
                       opModFixedW=1000),
               control(2, duration=60, created=NOW, opModMaxLimW=5000))
        self.assertEqual(h.effective.value("opModMaxLimW"), 5000)
        self.assertEqual(h.effective.value("opModFixedW"), 1000)
        self.assertEqual(h.effective.controls["opModFixedW"].mrid, mrid(1))
        h.clock.advance(60)
        self.assertEqual(h.engine.state(mrid(1)), EventState.ACTIVE)
        self.assertEqual(h.effective.value("opModMaxLimW"), 8000)

    def test_primacy_between_programs(self) -> None:
        """V2G-4.7.1-3: between programs the lower primacy wins before creationTime: a newer
        event of a primacy-2 program is superseded by an older overlapping one of a
        primacy-1 program for the same opMod; other opMods of the first program still run,
        and the DefaultDERControl of the lower-primacy program comes first."""
        h = Harness()
        h.feed(control(10, created=NOW, opModMaxLimW=8000),
               control(11, created=NOW, opModFixedW=300),
               dderc=default(False, setESDelay=100), program="/derp/2", primacy=2)
        h.feed(control(1, created=NOW - 500, opModMaxLimW=4000),
               dderc=default(True, setESDelay=30000), program="/derp/1", primacy=1)
        self.assertEqual(h.engine.state(mrid(10)), EventState.SUPERSEDED)
        self.assertEqual(h.engine.state(mrid(11)), EventState.ACTIVE)
        self.assertIn((10, SUPERSEDED, NOW), h.responses)
        self.assertEqual(h.effective.value("opModMaxLimW"), 4000)
        self.assertEqual(h.effective.controls["opModMaxLimW"].program, "/derp/1")
        self.assertEqual(h.effective.value("opModFixedW"), 300)
        self.assertIs(h.effective.energize, True)
        self.assertEqual(h.effective.settings["setESDelay"], 30000)


class ServerStatusTests(unittest.TestCase):
    """Cancelled / Superseded marked by the server, and removal from the list."""

    def test_server_cancelled_active_event(self) -> None:
        """V2G-4.7.1-3: an Active event the server marks Cancelled (2) stops at once with a
        Cancelled Response, sent once however often the list is fed again."""
        h = Harness()
        c = control(1, duration=DURATION_FOREVER, status=EventStatusCode.ACTIVE)
        h.feed(c)
        h.clock.advance(30)
        for _ in range(3):
            h.feed(with_status(c, EventStatusCode.CANCELLED, NOW + 30))
        self.assertEqual(h.responses, [(1, RECEIVED, NOW), (1, STARTED, NOW),
                                       (1, CANCELLED, NOW + 30)])
        self.assertFalse(h.effective.enabled("opModMaxLimW"))
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_server_cancelled_before_start(self) -> None:
        """V2G-4.7.1-3: a Scheduled event cancelled by the server never starts: Received,
        Cancelled."""
        h = Harness()
        c = control(1, start=NOW + 100)
        h.feed(c)
        h.feed(with_status(c, EventStatusCode.CANCELLED, NOW))
        h.clock.advance(200)
        self.assertEqual(h.responses, [(1, RECEIVED, NOW), (1, CANCELLED, NOW)])

    def test_server_superseded(self) -> None:
        """V2G-4.7.1-3: an event the server marks Superseded (4) is terminated at once with a
        Superseded Response, even when the engine would not have superseded it (the
        EVSE's same-second update, see sepgw.evse.management)."""
        h = Harness()
        old = control(1, created=NOW, opModMaxLimW=8000)
        new = control(2, created=NOW, opModMaxLimW=5000)
        h.feed(old)
        h.feed(with_status(old, EventStatusCode.SUPERSEDED, NOW), new)
        self.assertEqual(h.responses, [(1, RECEIVED, NOW), (1, STARTED, NOW),
                                       (1, SUPERSEDED, NOW), (2, RECEIVED, NOW),
                                       (2, STARTED, NOW)])
        self.assertEqual(h.effective.value("opModMaxLimW"), 5000)

    def test_cancelled_with_randomization(self) -> None:
        """V2G-4.7.1-3: status 3 (Cancelled with randomization) ends an Active event after a
        random delay within the larger of |randomizeStart| and |randomizeDuration|."""
        h = Harness(randomize=lambda bound: bound)
        c = control(1, randomize_start=0, randomize_duration=-45)
        h.feed(c)
        h.feed(with_status(c, EventStatusCode.CANCELLED_WITH_RANDOMIZATION, NOW))
        h.clock.advance(44)
        self.assertEqual(h.engine.state(mrid(1)), EventState.ACTIVE)
        h.clock.advance(1)
        self.assertEqual(h.responses[-1], (1, CANCELLED, NOW + 45))

    def test_event_removed_from_list_is_cancelled(self) -> None:
        """V2G-4.7.1-3, V2G-4.6.3-9: the PEV gets the whole DERControlList; an Active event
        missing from it is Cancelled (Response 6); a Completed one that leaves the list
        gets no further Response."""
        h = Harness()
        h.feed(control(1, duration=10, opModFixedW=100), control(2, duration=3600))
        h.clock.advance(10)
        h.feed()
        self.assertEqual(h.responses, [
            (1, RECEIVED, NOW), (2, RECEIVED, NOW), (1, STARTED, NOW), (2, STARTED, NOW),
            (1, COMPLETED, NOW + 10), (2, CANCELLED, NOW + 10)])
        self.assertEqual(h.engine.state(mrid(2)), EventState.CANCELLED)

    def test_removed_program_cancels_its_events(self) -> None:
        """V2G-4.7.1-3: a program no longer assigned has its live events Cancelled and its
        DefaultDERControl no longer applies."""
        h = Harness()
        h.feed(control(1), dderc=default(True))
        h.engine.remove_program(PROG)
        self.assertEqual(h.responses[-1], (1, CANCELLED, NOW))
        self.assertIsNone(h.effective.energize)
        self.assertFalse(h.effective.enabled("opModMaxLimW"))


class IdempotenceTests(unittest.TestCase):
    """Re-feeding, edits, re-entrant callbacks, device categories, stop()."""

    def test_refeeding_the_same_list_is_idempotent(self) -> None:
        """V2G-4.1.4-5, V2G-4.7.1-3: polling the same list every second sends no duplicate
        Response, reports no change and keeps one timer."""
        h = Harness()
        cs = [control(1, start=NOW + 5, duration=100), control(2, opModFixedW=100)]
        for _ in range(10):
            h.feed(*cs, dderc=default(False))
            h.clock.advance(1)
        self.assertEqual(h.responses, [(1, RECEIVED, NOW), (2, RECEIVED, NOW),
                                       (2, STARTED, NOW), (1, STARTED, NOW + 5)])
        self.assertEqual(len(h.changes), 2)  # initial, then event 1 started
        self.assertEqual(len(h.clock.getDelayedCalls()), 1)

    def test_edits_other_than_status_are_ignored(self) -> None:
        """V2G-4.7.1-3: events may not be edited except for their status: the same mRID
        with another interval or value keeps its first schedule and value."""
        h = Harness()
        h.feed(control(1, start=NOW + 100, duration=100, opModMaxLimW=5000))
        h.feed(control(1, start=NOW + 10, duration=100, opModMaxLimW=1000))
        h.clock.advance(10)
        self.assertEqual(h.engine.state(mrid(1)), EventState.SCHEDULED)
        h.clock.advance(90)
        self.assertEqual(h.effective.value("opModMaxLimW"), 5000)

    def test_callbacks_may_reenter(self) -> None:
        """V2G-4.7.1-3: a respond callback that feeds the list again (as a client reacting to
        a notification may) causes no duplicate and keeps the order of Responses."""
        h = Harness()
        c = control(1)
        seen: list[int] = []

        def respond(ctrl: DERControl, status: ResponseStatus) -> None:
            seen.append(int(status))
            h.feed(c)

        h.engine._respond = respond  # type: ignore[attr-defined]
        h.feed(c)
        self.assertEqual(seen, [RECEIVED, STARTED])

    def test_callback_failure_is_logged_not_raised(self) -> None:
        """V2G-4.7.1-3: a failing respond callback is logged; the engine keeps its state
        and still reports the change."""
        h = Harness()

        def respond(ctrl: DERControl, status: ResponseStatus) -> None:
            raise RuntimeError("post failed")

        h.engine._respond = respond  # type: ignore[attr-defined]
        h.feed(control(1))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertEqual(h.effective.value("opModMaxLimW"), 5000)
        self.assertEqual(len(h.changes), 1)

    def test_device_category_filter(self) -> None:
        """V2G-4.7.1-3: with the client's deviceCategory set, a DERControl for other device
        categories is ignored and not responded to; one without deviceCategory applies."""
        h = Harness(device_category=DeviceCategory.SMART_INVERTER)
        h.feed(control(1, category=0x000002), control(2, category=0x010000, opModFixedW=1),
               control(3, opModConnect=True))
        self.assertEqual(sorted({m for m, _, _ in h.responses}), [2, 3])
        self.assertIsNone(h.engine.state(mrid(1)))

    def test_stop_cancels_every_timer(self) -> None:
        """V2G-4.7.1-3: stop() leaves no delayed call on the reactor and later input is
        ignored."""
        h = Harness()
        h.feed(control(1, start=NOW + 100), control(2, duration=50, opModFixedW=1))
        self.assertEqual(len(h.clock.getDelayedCalls()), 1)
        h.engine.stop()
        self.assertEqual(h.clock.getDelayedCalls(), [])
        count = len(h.responses)
        h.feed(control(3, opModConnect=True))
        h.clock.advance(1000)
        self.assertEqual(len(h.responses), count)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_control_response_is_schema_valid(self) -> None:
        """V2G-4.1.1-23: control_response builds the profile 5.7 DERControlResponse (status,
        subject = the control's mRID), a schema-valid document."""
        c = control(1)
        rsp = control_response(c, STARTED, LFDI, NOW + 0.7)
        body = serialize(rsp)
        self.assertEqual(schema_errors(body), [])
        self.assertEqual(parse(body, DERControlResponse),
                         DERControlResponse(createdDateTime=NOW, endDeviceLFDI=LFDI,
                                            status=STARTED, subject=mrid(1)))


def management(now: float = NOW, **changes: Any) -> ManagementInformation:
    """The EVSE's management information from the shipped etc/sepgw.toml."""
    config = etc_config()
    m = dict(config["management"], **changes)
    return ManagementInformation(m, config["site"], now=now,
                                 control_href=lambda i: f"{PROG}/derc/{i}",
                                 curve_href=lambda i: f"{PROG}/dc/{i}", reply_to=RSP,
                                 mrid=counter_mrids())


class ProfileTests(unittest.TestCase):
    """The management information as the EVSE (sepgw.evse.management) serves it."""

    def test_management_information_all_active_with_received_and_started(self) -> None:
        """V2G-4.6.3-9, V2G-4.6.3-4, V2G-4.6.3-8, V2G-4.6.4-1: the nine one-opMod controls
        of etc/sepgw.toml (start = now, duration 0xFFFFFFFF, responseRequired 03) all become
        Active at once; the PEV sends the nine Received Responses, then the nine Started
        ones (the order of profile 5.7), which the EVSE needs before authorizing."""
        mi = management()
        controls = mi.controls
        self.assertEqual(len(controls), 9)
        h = Harness()
        h.feed(*controls, dderc=mi.default_control(energize=False))
        ids = [int.from_bytes(c.mRID, "big") for c in controls]
        self.assertEqual(h.responses, [(i, RECEIVED, NOW) for i in ids]
                         + [(i, STARTED, NOW) for i in ids])
        opmods = {name for c in controls for name in DERControlBase.__dataclass_fields__
                  if getattr(c.DERControlBase, name) is not None}
        self.assertEqual({n for n, v in h.effective.controls.items()
                          if v.source is Source.EVENT}, opmods)
        self.assertIs(h.effective.energize, False)
        self.assertEqual(h.effective.enter_service, mi.enter_service)
        self.assertEqual(len(h.changes), 1)

    def test_management_change_supersedes_and_removal_cancels(self) -> None:
        """V2G-4.7.1-3, V2G-4.9.1-2 (profile 4.6.3, 5.12): a changed function's new control
        supersedes the old (which the EVSE marks 4): Superseded for the old, Received and
        Started for the new, the new curve in effect; a function no longer configured is
        Cancelled by the EVSE and the PEV disables it."""
        mi = management()
        h = Harness()
        h.feed(*mi.controls, dderc=mi.default_control())
        old_vw = h.effective.controls["opModVoltWatt"]
        h.clock.advance(60)
        config = etc_config()["management"]
        changed = dict(config, volt_watt={"points": [(105.0, 100.0), (110.0, 0.0)]},
                       constant_pf=None)
        changes = mi.update(changed, NOW + 60)
        before = len(h.responses)
        h.feed(*mi.controls, dderc=mi.default_control())
        [new] = changes.issued
        [superseded] = changes.superseded
        [cancelled] = changes.cancelled
        num = lambda c: int.from_bytes(c.mRID, "big")  # noqa: E731
        self.assertCountEqual(h.responses[before:], [
            (num(superseded), SUPERSEDED, NOW + 60), (num(cancelled), CANCELLED, NOW + 60),
            (num(new), RECEIVED, NOW + 60), (num(new), STARTED, NOW + 60)])
        self.assertEqual(h.effective.controls["opModVoltWatt"].mrid, new.mRID)
        self.assertNotEqual(h.effective.controls["opModVoltWatt"], old_vw)
        self.assertFalse(h.effective.enabled("opModFixedPFInjectW"))

    def test_absent_functions_disabled_freq_droop_defaults_to_ieee_1547(self) -> None:
        """V2G-4.9.1-2, V2G-4.9.3-1: without a control or default for it, a management
        function is absent (disabled), except frequency droop, which is ON with the IEEE
        1547 defaults (dead bands 0.036 Hz, droop 5 %, open loop 5 s)."""
        mi = management()
        without_droop = [c for c in mi.controls if c.DERControlBase.opModFreqDroop is None]
        h = Harness()
        h.feed(*without_droop, dderc=mi.default_control())
        for name in ("opModVoltVar", "opModWattVar", "opModFixedVar", "opModMaxLimW",
                     "opModFixedW"):
            self.assertFalse(h.effective.enabled(name), name)
            self.assertIsNone(h.effective.value(name))
        droop = h.effective.controls["opModFreqDroop"]
        self.assertEqual(droop.source, Source.FALLBACK)
        self.assertEqual(droop.value, FreqDroopType(dBOF=36, dBUF=36, kOF=50, kUF=50,
                                                    openLoopTms=500))
        self.assertEqual(droop.value, IEEE1547_FREQ_DROOP)

    def test_freq_droop_control_overrides_default(self) -> None:
        """V2G-4.9.3-1, V2G-4.7.1-4: an opModFreqDroop DERControl from the EVSE replaces the
        IEEE 1547 default while it is Active, and the default returns when it ends; with no
        fallbacks (plain 2030.5) frequency droop is simply absent."""
        h = Harness()
        droop = FreqDroopType(dBOF=17, dBUF=17, kOF=30, kUF=30, openLoopTms=100)
        h.feed(control(1, duration=60, opModFreqDroop=droop))
        self.assertEqual(h.effective.value("opModFreqDroop"), droop)
        h.clock.advance(60)
        self.assertEqual(h.effective.value("opModFreqDroop"), IEEE1547_FREQ_DROOP)
        plain = Harness(fallbacks={})
        plain.feed()
        self.assertFalse(plain.effective.enabled("opModFreqDroop"))

    def test_energize_comes_from_the_default_control(self) -> None:
        """V2G-4.6.4-2, V2G-4.6.4-3, V2G-4.7.1-2: the authorization to discharge is the
        DefaultDERControl's opModEnergize; its change is reported at once, and with it the
        Enter Service settings (V2G-4.5.3.5-8)."""
        mi = management()
        h = Harness()
        h.feed(*mi.controls, dderc=mi.default_control(energize=False))
        self.assertIs(h.effective.energize, False)
        h.feed(*mi.controls, dderc=mi.default_control(energize=True))
        self.assertIs(h.changes[-1].energize, True)
        self.assertEqual(h.changes[-1].controls["opModEnergize"].source, Source.DEFAULT)
        self.assertEqual(h.changes[-1].enter_service, mi.enter_service)
        h.feed(*mi.controls, dderc=mi.default_control(energize=False))
        self.assertIs(h.changes[-1].energize, False)
        self.assertEqual(len(h.changes), 3)

    def test_default_control_fills_in_when_no_event(self) -> None:
        """V2G-4.7.1-3: an element of the DefaultDERControl is in effect when no Active
        DERControl provides it, and an Active event's value wins over it."""
        h = Harness()
        h.feed(control(1, start=NOW + 10, duration=10, opModMaxLimW=5000),
               dderc=default(True, opModMaxLimW=10000))
        self.assertEqual(h.effective.controls["opModMaxLimW"].source, Source.DEFAULT)
        h.clock.advance(10)
        self.assertEqual(h.effective.value("opModMaxLimW"), 5000)
        h.clock.advance(10)
        self.assertEqual(h.effective.value("opModMaxLimW"), 10000)
