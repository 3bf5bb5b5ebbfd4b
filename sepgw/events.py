"""The DERControl event engine: IEEE 2030.5-2018 §10.2.3 event rules for every client role.

Pure logic: no I/O, the server time base and the reactor are injected. A client (the PEV
first, later the DME uplink client) feeds each DERProgram's DefaultDERControl and full
DERControlList with :meth:`EventEngine.update_program`; the engine tracks every event by
mRID, schedules its start and end on the reactor, posts nothing itself but calls
``respond(control, status)`` for each Response the rules require, and
``on_change(EffectiveControls)`` whenever what is in effect changes.

The rules as implemented, and their sources, are in ``docs/events.md``. In short:

* An event is Scheduled until its *effective start* (``interval.start`` plus a random offset
  within ``randomizeStart``), Active until its *effective end* (effective start +
  ``interval.duration`` plus a random offset within ``randomizeDuration``), then Completed.
  An event whose effective start is already past on receipt is Active at once (profile 4.6.3:
  start = now, duration 0xFFFFFFFF). An event already over on receipt is only acknowledged.
* Terminal states: Completed, Cancelled (server status 2, or 3 after a random delay, or the
  event left the list), Superseded (server status 4, or an overlapping Active event with the
  *exact same set* of DERControlBase elements wins on primacy, then creationTime).
* Responses: 1 Received (responseRequired bit 0); 2 Started, 3 Completed, 6 Cancelled,
  7 Superseded (bit 1). Each status at most once per event; none when the bit is clear.
* In effect, per DERControlBase element: the Active event that wins for it (lowest primacy,
  then latest creationTime), else the DefaultDERControl (of the program with the lowest
  primacy that has it), else a fallback (profile 4.9.3: opModFreqDroop with the IEEE 1547
  defaults), else absent = disabled (profile 4.9.1).
"""

from __future__ import annotations

import dataclasses
import enum
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from twisted.logger import Logger

from sepgw.model import (
    DefaultDERControl, DERControl, DERControlBase, DERControlResponse, EventStatusCode,
    FreqDroopType, ResponseRequired, ResponseStatus,
)

__all__ = [
    "BASE_ELEMENTS", "IEEE1547_FREQ_DROOP", "PROFILE_FALLBACKS", "SETTINGS",
    "EffectiveControls", "EffectiveValue", "EventEngine", "EventState", "Source",
    "control_response", "required_bit",
]

IEEE1547_FREQ_DROOP = FreqDroopType(dBOF=36, dBUF=36, kOF=50, kUF=50, openLoopTms=500)
"""IEEE 1547-2018 default frequency-droop settings in 2030.5 units: dead bands 0.036 Hz
(thousandths of Hz), droop 5 % = 0.05 per unit (thousandths), open-loop response time 5 s
(hundredths of a second). The same values as the ``[management.freq_droop]`` defaults."""

PROFILE_FALLBACKS: Mapping[str, Any] = {"opModFreqDroop": IEEE1547_FREQ_DROOP}
"""What the V2G-AC profile puts in effect when no DERControl or DefaultDERControl provides
a function: frequency droop ON with IEEE 1547 defaults (V2G-4.9.3-1); every other function
is disabled (V2G-4.9.1-2). Pass ``fallbacks={}`` for plain 2030.5 (device defaults)."""

BASE_ELEMENTS: tuple[str, ...] = tuple(
    name for name in DERControlBase.__dataclass_fields__ if name != "rampTms")
"""The DERControlBase elements that are controls (every opMod…). ``rampTms`` is a modifier of
the control that carries it, reported with each :class:`EffectiveValue`."""

SETTINGS: tuple[str, ...] = ("setESDelay", "setESHighFreq", "setESHighVolt", "setESLowFreq",
                             "setESLowVolt", "setESRampTms", "setESRandomDelay", "setGradW",
                             "setSoftGradW")
"""The DefaultDERControl elements outside DERControlBase (Enter Service and gradients)."""

_SPECIFIC = frozenset({ResponseStatus.EVENT_STARTED, ResponseStatus.EVENT_COMPLETED,
                       ResponseStatus.EVENT_CANCELLED, ResponseStatus.EVENT_SUPERSEDED})


class DelayedCall(Protocol):
    """What the engine uses of ``twisted.internet.interfaces.IDelayedCall``."""

    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class ReactorTime(Protocol):
    """What the engine uses of ``twisted.internet.interfaces.IReactorTime`` (a reactor or
    ``twisted.internet.task.Clock``)."""

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any,
                  **kw: Any) -> Any: ...


def required_bit(status: ResponseStatus) -> ResponseRequired:
    """The responseRequired bit that asks for a Response of ``status``: bit 0 "message
    received" for Received, bit 1 "specific response" for the event's progress (Started,
    Completed, Cancelled, Superseded), bit 2 "end user response" for opt-in/out."""
    if status == ResponseStatus.EVENT_RECEIVED:
        return ResponseRequired.MESSAGE_RECEIVED
    if status in _SPECIFIC:
        return ResponseRequired.SPECIFIC_RESPONSE
    return ResponseRequired.RESPONSE_REQUIRED


def control_response(control: DERControl, status: ResponseStatus, lfdi: bytes,
                     now: float) -> DERControlResponse:
    """The DERControlResponse a client posts to ``control.replyTo`` (profile 5.7)."""
    return DERControlResponse(createdDateTime=int(now), endDeviceLFDI=lfdi, status=status,
                              subject=control.mRID)


class EventState(enum.Enum):
    """A tracked event's state on the client (2030.5 §10.2.3)."""
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"

    @property
    def live(self) -> bool:
        """Not yet over (Scheduled or Active)."""
        return self in (EventState.SCHEDULED, EventState.ACTIVE)


class Source(enum.Enum):
    """Where a value in effect comes from."""
    EVENT = "event"
    DEFAULT = "default"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class EffectiveValue:
    """One DERControlBase element in effect."""
    value: Any
    source: Source
    mrid: bytes | None = None
    """The DERControl's (or DefaultDERControl's) mRID; None for a fallback."""
    program: str | None = None
    """The DERProgram href it came from; None for a fallback."""
    ramp_tms: int | None = None
    """rampTms of the DERControlBase it came from (hundredths of a second)."""


@dataclass(frozen=True)
class EffectiveControls:
    """What is in effect now.

    ``controls`` has an entry for every DERControlBase element in effect; an element that is
    absent is disabled (V2G-4.9.1-2). ``energize`` is the DefaultDERControl's opModEnergize,
    the profile's authorization to discharge (V2G-4.6.4-2/-3), None when no default has one.
    ``settings`` holds the DefaultDERControl's setES* (Enter Service) and setGradW /
    setSoftGradW values that are present.
    """
    controls: Mapping[str, EffectiveValue] = field(default_factory=dict)
    energize: bool | None = None
    settings: Mapping[str, int] = field(default_factory=dict)

    def value(self, name: str, default: Any = None) -> Any:
        """The value of element ``name`` in effect, or ``default`` when it is disabled."""
        found = self.controls.get(name)
        return default if found is None else found.value

    def enabled(self, name: str) -> bool:
        """Whether element ``name`` is in effect (absent means disabled, V2G-4.9.1-2)."""
        return name in self.controls

    @property
    def enter_service(self) -> dict[str, int]:
        """The Enter Service settings (setES*) in effect."""
        return {k: v for k, v in self.settings.items() if k.startswith("setES")}


def _present(base: DERControlBase) -> dict[str, Any]:
    return {name: getattr(base, name) for name in BASE_ELEMENTS
            if getattr(base, name) is not None}


def _default_random(bound: int) -> int:
    return random.randint(min(0, bound), max(0, bound))


@dataclass
class _Program:
    href: str
    primacy: int
    default: DefaultDERControl | None = None
    mrids: set[bytes] = field(default_factory=set)


@dataclass
class _Event:
    control: DERControl
    program: str
    primacy: int
    seq: int
    start: float
    end: float
    targets: frozenset[str]
    state: EventState = EventState.SCHEDULED
    sent: set[int] = field(default_factory=set)
    cancel_at: float | None = None

    @property
    def mrid(self) -> bytes:
        return self.control.mRID

    def precedence(self) -> tuple[int, int, float, int]:
        """Sort key, best first: lowest primacy, latest creationTime; ties broken by the
        later effective start, then the larger mRID (the 2030.5 list order)."""
        return (self.primacy, -self.control.creationTime, -self.start,
                -int.from_bytes(self.mrid, "big"))

    def beats(self, other: "_Event") -> bool:
        """Whether this event wins over ``other`` in the supersession rule: lower primacy,
        or the same primacy and a later creationTime (ties supersede neither)."""
        return (self.primacy, -self.control.creationTime) < (
            other.primacy, -other.control.creationTime)

    def overlaps(self, other: "_Event") -> bool:
        return self.start < other.end and other.start < self.end


class EventEngine:
    """Tracks the DERControls of one client's DERPrograms under the §10.2.3 event rules.

    ``now()`` is the server's time (Unix seconds: the client's clock plus its offset to the
    server's Time resource), so events run on the server time base; ``reactor`` provides
    ``callLater`` for the timers. ``respond(control, status)`` is called for each Response
    to post (build it with :func:`control_response`); ``on_change(effective)`` whenever the
    :class:`EffectiveControls` differ from the last ones reported (and once on the first
    update). Callbacks may call back into the engine; their exceptions are logged.

    ``randomize(bound)`` returns a random offset between 0 and ``bound`` (either sign) for
    randomizeStart/randomizeDuration and Cancelled-with-randomization. ``fallbacks`` are the
    values in effect when neither an event nor a default provides an element
    (:data:`PROFILE_FALLBACKS` by default). With ``device_category`` set, DERControls whose
    deviceCategory shares no bit with it are ignored without any Response.
    """

    log = Logger()

    def __init__(self, now: Callable[[], float], reactor: ReactorTime,
                 on_change: Callable[[EffectiveControls], object],
                 respond: Callable[[DERControl, ResponseStatus], object], *,
                 randomize: Callable[[int], int] = _default_random,
                 fallbacks: Mapping[str, Any] = PROFILE_FALLBACKS,
                 device_category: int | None = None) -> None:
        self._now = now
        self._reactor = reactor
        self._on_change = on_change
        self._respond = respond
        self._randomize = randomize
        self._fallbacks = dict(fallbacks)
        self._device_category = device_category
        self._programs: dict[str, _Program] = {}
        self._events: dict[bytes, _Event] = {}
        self._seq = 0
        self._timer: DelayedCall | None = None
        self._timer_at: float | None = None
        self._reported: EffectiveControls | None = None
        self._queue: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._emitting = False
        self._stopped = False

    # -- feeding -----------------------------------------------------------------------------

    def update_program(self, program_href: str, primacy: int,
                       default: DefaultDERControl | None,
                       controls: Sequence[DERControl]) -> None:
        """Feed the latest DefaultDERControl and the *whole* DERControlList of a program
        (every page: an event missing from ``controls`` is taken as removed and cancelled).
        Feeding the same documents again changes nothing and sends no Response."""
        if self._stopped:
            self.log.warn("event engine stopped: update of {program} ignored",
                          program=program_href)
            return
        t = self._now()
        program = self._programs.get(program_href)
        if program is None:
            program = self._programs[program_href] = _Program(program_href, primacy)
        program.primacy = primacy
        program.default = default
        listed: set[bytes] = set()
        for control in controls:
            if not self._applies(control):
                continue
            mrid = control.mRID
            event = self._events.get(mrid)
            if event is None:
                event = self._receive(control, program, t)
            elif event.program != program_href:
                self.log.warn("DERControl {mrid} is listed in {program} and in {other}; the "
                              "second listing is ignored", mrid=mrid.hex(),
                              program=event.program, other=program_href)
                continue
            else:
                self._check_edit(event, control)
                # Only the status may change; the rest of the event stays as first seen.
                event.control = dataclasses.replace(event.control,
                                                    EventStatus=control.EventStatus)
                event.primacy = primacy
            listed.add(mrid)
            self._server_status(event, t)
        for mrid in program.mrids - listed:
            self._finish(self._events[mrid], EventState.CANCELLED)
        program.mrids = listed
        self._run(t)

    def remove_program(self, program_href: str) -> None:
        """Forget a program (no longer assigned): its live events are Cancelled and its
        DefaultDERControl no longer applies."""
        program = self._programs.pop(program_href, None)
        if program is None or self._stopped:
            return
        for mrid in sorted(program.mrids, key=lambda m: self._events[m].seq):
            self._finish(self._events[mrid], EventState.CANCELLED)
        self._run(self._now())

    def resync(self) -> None:
        """Re-evaluate after the server time base changed (a new Time resource offset):
        transitions now due happen, and the timer is set again on the new time base."""
        if not self._stopped:
            self._cancel_timer()
            self._run(self._now())

    def stop(self) -> None:
        """Cancel every timer; the engine ignores further input."""
        self._stopped = True
        self._cancel_timer()

    # -- reading -----------------------------------------------------------------------------

    @property
    def effective(self) -> EffectiveControls:
        """The controls in effect now (as last computed)."""
        return self._reported if self._reported is not None else self._compute()

    def state(self, mrid: bytes) -> EventState | None:
        """The state of the event with this mRID, None if never seen."""
        event = self._events.get(mrid)
        return None if event is None else event.state

    def states(self) -> dict[bytes, EventState]:
        """Every tracked event's state, by mRID, in order of receipt."""
        return {e.mrid: e.state for e in sorted(self._events.values(), key=lambda e: e.seq)}

    # -- rules -------------------------------------------------------------------------------

    def _applies(self, control: DERControl) -> bool:
        if self._device_category is None or control.deviceCategory is None:
            return True
        return bool(int(control.deviceCategory) & self._device_category)

    def _receive(self, control: DERControl, program: _Program, t: float) -> _Event:
        start = float(control.interval.start)
        if control.randomizeStart:
            start += self._randomize(control.randomizeStart)
        end = start + control.interval.duration
        if control.randomizeDuration:
            end += self._randomize(control.randomizeDuration)
        self._seq += 1
        event = _Event(control, program.href, program.primacy, self._seq, start, end,
                       frozenset(_present(control.DERControlBase)))
        self._events[control.mRID] = event
        self._send(event, ResponseStatus.EVENT_RECEIVED)
        if t >= end:
            # Already over when first seen: acknowledged, never executed.
            event.state = EventState.COMPLETED
        return event

    def _check_edit(self, event: _Event, control: DERControl) -> None:
        old = event.control
        if (old.interval != control.interval or old.DERControlBase != control.DERControlBase
                or old.creationTime != control.creationTime):
            self.log.warn("DERControl {mrid} was edited; events may not be edited except for "
                          "their status, so the edit is ignored", mrid=control.mRID.hex())

    def _server_status(self, event: _Event, t: float) -> None:
        if not event.state.live:
            return
        status = event.control.EventStatus.currentStatus
        if status == EventStatusCode.CANCELLED:
            self._finish(event, EventState.CANCELLED)
        elif status == EventStatusCode.SUPERSEDED:
            self._finish(event, EventState.SUPERSEDED)
        elif status == EventStatusCode.CANCELLED_WITH_RANDOMIZATION:
            if event.state is EventState.SCHEDULED:
                self._finish(event, EventState.CANCELLED)
            elif event.cancel_at is None:
                c = event.control
                bound = max(abs(c.randomizeStart or 0), abs(c.randomizeDuration or 0))
                event.cancel_at = t + (abs(self._randomize(bound)) if bound else 0)
        # Scheduled (0) and Active (1) are the server's view; the client runs the event
        # by its interval on the server time base.

    def _step(self, t: float) -> None:
        by_seq = sorted(self._events.values(), key=lambda e: e.seq)
        for e in by_seq:
            if e.state.live and e.cancel_at is not None and t >= e.cancel_at:
                self._finish(e, EventState.CANCELLED)
        for e in by_seq:
            if e.state is EventState.ACTIVE and t >= e.end:
                self._finish(e, EventState.COMPLETED)
        # Events in effect at t (or due to start), best first: each one that is not itself
        # superseded supersedes the live events it beats that overlap it in time and target
        # exactly the same DERControlBase elements.
        candidates = sorted(
            (e for e in by_seq if e.state is EventState.ACTIVE
             or (e.state is EventState.SCHEDULED and e.start <= t)),
            key=_Event.precedence)
        for winner in candidates:
            if not winner.state.live:
                continue
            for loser in by_seq:
                if (loser is not winner and loser.state.live and loser.targets == winner.targets
                        and winner.overlaps(loser) and winner.beats(loser)):
                    self._finish(loser, EventState.SUPERSEDED)
        for e in by_seq:
            if e.state is EventState.SCHEDULED and e.start <= t:
                e.state = EventState.ACTIVE
                self._send(e, ResponseStatus.EVENT_STARTED)
                if t >= e.end:  # the timer ran late past the whole event
                    self._finish(e, EventState.COMPLETED)

    def _finish(self, event: _Event, state: EventState) -> None:
        if not event.state.live:
            return
        event.state = state
        event.cancel_at = None
        self._send(event, {
            EventState.COMPLETED: ResponseStatus.EVENT_COMPLETED,
            EventState.CANCELLED: ResponseStatus.EVENT_CANCELLED,
            EventState.SUPERSEDED: ResponseStatus.EVENT_SUPERSEDED,
        }[state])

    def _send(self, event: _Event, status: ResponseStatus) -> None:
        if status in event.sent:
            return
        event.sent.add(status)
        if int(event.control.responseRequired or 0) & required_bit(status):
            self._queue.append((self._respond, (event.control, status)))

    def _compute(self) -> EffectiveControls:
        controls: dict[str, EffectiveValue] = {}
        active = sorted((e for e in self._events.values() if e.state is EventState.ACTIVE),
                        key=_Event.precedence)
        for e in active:
            base = e.control.DERControlBase
            for name, value in _present(base).items():
                controls.setdefault(name, EffectiveValue(value, Source.EVENT, e.mrid,
                                                         e.program, base.rampTms))
        energize: bool | None = None
        settings: dict[str, int] = {}
        for program in sorted(self._programs.values(), key=lambda p: (p.primacy, p.href)):
            default = program.default
            if default is None:
                continue
            base = default.DERControlBase
            for name, value in _present(base).items():
                controls.setdefault(name, EffectiveValue(value, Source.DEFAULT, default.mRID,
                                                         program.href, base.rampTms))
            if energize is None and base.opModEnergize is not None:
                energize = bool(base.opModEnergize)
            for name in SETTINGS:
                value = getattr(default, name)
                if value is not None:
                    settings.setdefault(name, int(value))
        for name, value in self._fallbacks.items():
            controls.setdefault(name, EffectiveValue(value, Source.FALLBACK))
        return EffectiveControls(controls, energize, settings)

    # -- running -----------------------------------------------------------------------------

    def _run(self, t: float) -> None:
        self._step(t)
        effective = self._compute()
        if effective != self._reported:
            self._reported = effective
            self._queue.append((self._on_change, (effective,)))
        self._schedule()
        self._emit()

    def _emit(self) -> None:
        if self._emitting:
            return  # the outer loop delivers what a re-entrant call queued
        self._emitting = True
        try:
            while self._queue:
                fn, args = self._queue.popleft()
                try:
                    fn(*args)
                except Exception:
                    self.log.failure("event engine callback {fn!r} failed", fn=fn)
        finally:
            self._emitting = False

    def _next_time(self) -> float | None:
        times: Iterable[float] = (
            time for e in self._events.values() if e.state.live
            for time in ((e.start,) if e.state is EventState.SCHEDULED else (e.end,))
            + ((e.cancel_at,) if e.cancel_at is not None else ()))
        return min(times, default=None)

    def _schedule(self) -> None:
        at = self._next_time()
        if self._stopped or at is None:
            self._cancel_timer()
            return
        if self._timer is not None and self._timer_at == at:
            return
        self._cancel_timer()
        self._timer_at = at
        self._timer = self._reactor.callLater(max(0.0, at - self._now()), self._fire, at)

    def _fire(self, at: float) -> None:
        self._timer = None
        self._timer_at = None
        if not self._stopped:
            # Never evaluate before the instant the timer was set for (float offsets).
            self._run(max(self._now(), at))

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_at = None
