"""The PEV's J3072 sequence as explicit state machines, pure (no I/O, no clock).

:class:`SequenceMachine` is where the PEV is in the J3072 sequence (profile 4.5-4.9); its
transition table maps ``(state, input)`` to ``(new state, outputs)``.
:class:`HeartbeatMachine` is the loss and restoration of communications (V2G-4.8.1.1-5).
:class:`sepgw.pev.session.J3072Client` feeds them what happened (a step done, the EVSE
unreachable, the session lost, opModEnergize changed...) and performs the outputs (the
requests, the inverter, the report). Unit tests feed input sequences and assert the exact
outputs (``tests/test_pev_machine.py``)::

    idle ─start─▶ discovering ─▶ site_limits ─▶ exchanging ─▶ management ─▶ metrology
                                (step_done each)                             │ done_*
                       ┌─────────────── deenergized ◀──┐                     ▼
                not_authorized ──── energized ─────▶ authorized ◀── (authorized or not)
                       └──sleep──▶ sleeping ─wake─▶ waking ─done_*─▶ (authorized or not)
    any running state ─session_lost─▶ resyncing ─(sequence redone)─done_*─▶ ...
    sleeping/waking ─session_lost─▶ sleeping_resync ─wake─▶ resyncing
    a sequence state ─unreachable/refused─▶ non_j3072;  resyncing ─unreachable─▶ retry
    any ─stop─▶ stopped
"""

from __future__ import annotations

import enum

__all__ = ["State", "Input", "Output", "NoTransition", "SequenceMachine", "TRANSITIONS",
           "Beat", "CommsOutput", "HeartbeatMachine", "FAILURES_FOR_LOSS",
           "SUCCESSES_FOR_RESTORE"]


class State(str, enum.Enum):
    idle = "idle"
    discovering = "discovering"
    """DeviceCapability, Time, the PEV's EndDevice (V2G-4.5.3-3)."""
    site_limits = "site_limits"
    """Step 1: SelfDevice → DER → DERSettings (V2G-4.6-1)."""
    exchanging = "exchanging"
    """Step 2: the PEV's documents PUT (4.6.2)."""
    management = "management"
    """Step 3: FunctionSetAssignments → DERProgram → controls (4.6.3)."""
    metrology = "metrology"
    """The MirrorUsagePoint and its readings (4.7.2)."""
    not_authorized = "not_authorized"
    """Periodic operations; opModEnergize false in effect."""
    authorized = "authorized"
    """Periodic operations; opModEnergize true read in this session."""
    sleeping = "sleeping"
    """inverterStatus 2 posted, nothing sent (4.8.3)."""
    waking = "waking"
    """Re-reading the management information before posting inverterStatus 0 (4.8.3)."""
    sleeping_resync = "sleeping_resync"
    """Asleep, and the session was lost: the sequence is redone on waking."""
    resyncing = "resyncing"
    """The session may be gone: authorization void, the sequence redone from discovery."""
    non_j3072 = "non-J3072"
    """The sequence cannot go on (V2G-4.5.2-4): no discharge, no requests."""
    stopped = "stopped"
    """The PEV left (service stop)."""


class Input(str, enum.Enum):
    start = "start"
    step_done = "step_done"
    """A step of the sequence passed (discovery, step 1, step 2, step 3)."""
    done_authorized = "done_authorized"
    """The sequence (or the re-read on waking) ended, opModEnergize true in effect."""
    done_not_authorized = "done_not_authorized"
    """The sequence (or the re-read on waking) ended, opModEnergize false."""
    unreachable = "unreachable"
    """A step got no answer from the EVSE (connection refused, timeout)."""
    refused = "refused"
    """A step failed otherwise (an error status, a missing link, a bad document)."""
    session_lost = "session_lost"
    """The session the authorization was read in may be gone (TLS session ended, 404 on a
    session-static resource, changed links, a stall)."""
    energized = "energized"
    deenergized = "deenergized"
    controls_changed = "controls_changed"
    """What the inverter is told changed otherwise (controls, comms)."""
    sleep = "sleep"
    wake = "wake"
    stop = "stop"


class Output(str, enum.Enum):
    start_watch = "start_watch"
    """Start the stall check."""
    run_sequence = "run_sequence"
    void_session = "void_session"
    """Withdraw the authorization and forget the session (a fresh event engine)."""
    rerun_soon = "rerun_soon"
    """Redo the sequence from discovery, from the reactor (not within the caller)."""
    rerun_now = "rerun_now"
    retry_later = "retry_later"
    """The EVSE was not reachable during a resynchronisation: try again shortly."""
    record_resynchronised = "record_resynchronised"
    apply_inverter = "apply_inverter"
    start_periodic = "start_periodic"
    stop_all = "stop_all"
    """Stop the periodic operations, the event engine and the stall check."""
    record_non_j3072 = "record_non_j3072"
    post_sleeping = "post_sleeping"
    """DERStatus inverterStatus 2 (V2G-4.8.3-1)."""
    reread_management = "reread_management"
    """Step 3 again (waking, V2G-4.8.3-4)."""
    post_awake = "post_awake"
    """DERStatus inverterStatus 0 (V2G-4.8.3-5)."""


S, I, O = State, Input, Output
SEQUENCE = (S.discovering, S.site_limits, S.exchanging, S.management, S.metrology)
RUNNING = (S.not_authorized, S.authorized)
ASLEEP = (S.sleeping, S.waking, S.sleeping_resync)

Transition = tuple[State, tuple[Output, ...]]


def _table() -> dict[tuple[State, Input], Transition]:
    t: dict[tuple[State, Input], Transition] = {}
    done = {I.done_authorized: S.authorized, I.done_not_authorized: S.not_authorized}
    void = (O.void_session, O.apply_inverter)
    non_j3072 = (S.non_j3072, (O.stop_all, O.apply_inverter, O.record_non_j3072))
    t[S.idle, I.start] = (S.discovering, (O.start_watch, O.run_sequence))
    for here, there in zip(SEQUENCE, SEQUENCE[1:]):
        t[here, I.step_done] = (there, ())
    for here in SEQUENCE:
        t[here, I.unreachable] = non_j3072
        t[here, I.refused] = non_j3072
    for inp, there in done.items():
        t[S.metrology, inp] = (there, (O.apply_inverter, O.start_periodic))
        t[S.resyncing, inp] = (there, (O.record_resynchronised, O.apply_inverter,
                                       O.start_periodic))
        t[S.waking, inp] = (there, (O.post_awake, O.apply_inverter))
    t[S.resyncing, I.step_done] = (S.resyncing, ())
    t[S.resyncing, I.unreachable] = (S.resyncing, (O.retry_later,))
    t[S.resyncing, I.refused] = non_j3072
    for here in SEQUENCE + RUNNING + (S.resyncing,):
        t[here, I.session_lost] = (S.resyncing, void + (O.rerun_soon,))
    for here in ASLEEP:
        t[here, I.session_lost] = (S.sleeping_resync, void)
    for here in RUNNING:
        t[here, I.sleep] = (S.sleeping, (O.apply_inverter, O.post_sleeping))
    t[S.sleeping, I.wake] = (S.waking, (O.reread_management,))
    t[S.sleeping_resync, I.wake] = (S.resyncing, (O.rerun_now,))
    t[S.waking, I.unreachable] = (S.sleeping, ())
    t[S.waking, I.refused] = (S.sleeping, ())
    for here in State:
        for inp in (I.energized, I.deenergized, I.controls_changed):
            t[here, inp] = (here, (O.apply_inverter,))
        if here is not S.stopped:
            t[here, I.stop] = (S.stopped, (O.stop_all,))
        if here in (S.idle, S.non_j3072, S.stopped):
            t[here, I.session_lost] = (here, ())  # nothing to resynchronise
    t[S.not_authorized, I.energized] = (S.authorized, (O.apply_inverter,))
    t[S.authorized, I.deenergized] = (S.not_authorized, (O.apply_inverter,))
    return t


TRANSITIONS: dict[tuple[State, Input], Transition] = _table()
"""``(state, input) -> (new state, outputs)``; a pair not in it is :class:`NoTransition`."""


class NoTransition(Exception):
    """An input the machine does not take in its state (e.g. ``sleep`` while resyncing)."""

    def __init__(self, state: State, inp: Input) -> None:
        super().__init__(f"cannot {inp.value} in state {state.value}")
        self.state, self.input = state, inp


class SequenceMachine:
    """Where the PEV is in the J3072 sequence. :meth:`feed` returns the outputs to perform,
    in order; it never performs anything."""

    def __init__(self, state: State = State.idle) -> None:
        self.state = state

    def accepts(self, inp: Input) -> bool:
        return (self.state, inp) in TRANSITIONS

    def feed(self, inp: Input) -> tuple[Output, ...]:
        try:
            new, outputs = TRANSITIONS[self.state, inp]
        except KeyError:
            raise NoTransition(self.state, inp) from None
        self.state = new
        return outputs

    @property
    def running(self) -> bool:
        """Periodic operations, awake (authorized or not)."""
        return self.state in RUNNING

    @property
    def asleep(self) -> bool:
        return self.state in ASLEEP

    @property
    def phase(self) -> str:
        """The coarse phase operators see (``sepgw ctl status``, console, D-Bus):
        ``starting``, ``periodic`` (awake or asleep), ``resync``, ``non-J3072``,
        ``stopped``."""
        if self.state in (State.idle,) + SEQUENCE:
            return "starting"
        if self.state in RUNNING or self.state in (State.sleeping, State.waking):
            return "periodic"
        if self.state in (State.resyncing, State.sleeping_resync):
            return "resync"
        return self.state.value


# -- loss of communications (4.8.1.1) -----------------------------------------------------

FAILURES_FOR_LOSS = 10
"""V2G-4.8.1.1-5: ten failed heartbeats in a row are a loss of communications."""
SUCCESSES_FOR_RESTORE = 3
"""Answered heartbeats in a row that restore communications after a loss."""


class Beat(str, enum.Enum):
    answered = "answered"
    failed = "failed"
    reset = "reset"
    """A new session: communications assumed good, counts cleared."""


class CommsOutput(str, enum.Enum):
    lost = "lost"
    restored = "restored"


class HeartbeatMachine:
    """Communications ``ok`` or lost, from the heartbeats' outcomes: lost at the
    :data:`FAILURES_FOR_LOSS`-th failure in a row, restored at the
    :data:`SUCCESSES_FOR_RESTORE`-th answer in a row after that."""

    def __init__(self, failures_for_loss: int = FAILURES_FOR_LOSS,
                 successes_for_restore: int = SUCCESSES_FOR_RESTORE) -> None:
        self.failures_for_loss = failures_for_loss
        self.successes_for_restore = successes_for_restore
        self.ok = True
        self.failures = 0
        self.successes = 0

    def feed(self, beat: Beat) -> tuple[CommsOutput, ...]:
        if beat is Beat.reset:
            self.ok, self.failures, self.successes = True, 0, 0
            return ()
        if beat is Beat.failed:
            self.failures += 1
            self.successes = 0
            if self.ok and self.failures == self.failures_for_loss:
                self.ok = False
                return (CommsOutput.lost,)
            return ()
        self.failures = 0
        self.successes += 1
        if not self.ok and self.successes >= self.successes_for_restore:
            self.ok = True
            return (CommsOutput.restored,)
        return ()
