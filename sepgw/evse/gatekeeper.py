"""The EVSE gatekeeper (profile 4.8.1.2): the one owner of "may the contactor be closed".

On every meter sample it checks what actually flows (DER sign convention: positive active
power is the PEV discharging into the grid):

* discharge while not authorized opens the contactor at once, in the same reactor turn
  (V2G-4.8.1.2-1/-2), except during the 3 s a PEV has to stop after a revocation
  (V2G-4.8.1.2-3);
* discharge beyond the authorized limit revokes the authorization at once (within 1 s), and
  opens the contactor if the discharge goes on past those 3 s;
* a meter error, or a meter silent past its timeout, opens the contactor and revokes.

A trip latches: a discharge violation until the PEV leaves (link down), a meter fault
until the meter delivers a good sample again. While tripped, or while the port has no PEV,
the contactor is forbidden to close, whatever anyone else asks.

Every open that may move the contacts is verified within ``open_deadline`` seconds: by the
contactor's auxiliary contact (:class:`IContactorFeedback`) where it has one, else by the
meter (current still flowing after the deadline). A failure to open is a contactor fault
(welded contacts): logged as critical, latched until an operator clears it
(:meth:`Gatekeeper.clear_fault`, which needs the contacts sensed open), and while it stands
the port grants nothing and never closes. The log says "opened" only for a confirmed open.

Pure: clock and contactor are injected, decisions are reported through callbacks.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from twisted.logger import Logger
from zope.interface.verify import verifyObject

from sepgw.interfaces import ContactorState, IContactor, IContactorFeedback, MeterSample

STOP_GRACE_S = 3.0
"""V2G-4.8.1.2-3: a PEV must stop discharging within 3 s of a revocation."""

OPEN_DEADLINE_S = 1.0
"""Default time an open has to be confirmed before it counts as a failure to open."""


class FaultNotCleared(ValueError):
    """The operator asked to clear a contactor fault that cannot be cleared now."""


class Gatekeeper:
    """Safety decisions for one port."""

    log = Logger()

    def __init__(self, clock: Any, contactor: IContactor, *, port: str,
                 on_revoke: Callable[[str], None], meter_timeout: float,
                 discharge_threshold_w: float = 100.0, limit_tolerance_pct: float = 5.0,
                 open_deadline_s: float = OPEN_DEADLINE_S) -> None:
        self._clock = clock
        self.contactor = contactor
        self._has_feedback = IContactorFeedback.providedBy(contactor)
        self._sensor: Any = contactor
        if self._has_feedback:
            verifyObject(IContactorFeedback, contactor)  # a clear error at start-up
        self.open_deadline = open_deadline_s
        self.contactor_fault: str | None = None
        """Why the contacts failed to open (latched until an operator clears it)."""
        self.contactor_fault_kind: str | None = None
        """"welded" (sensed closed, or current flowing) or "unknown" (position unsure)."""
        self._opening: tuple[float, str] | None = None
        """An open being verified: when it was commanded, and why."""
        self._opening_samples: list[MeterSample] = []
        self._deadline: Any = None
        self._forbidden_since: float | None = None
        self.port = port
        self._on_revoke = on_revoke
        self.meter_timeout = meter_timeout
        self.threshold_w = discharge_threshold_w
        self.tolerance = limit_tolerance_pct / 100.0
        self.authorized = False
        self.limit_w: float | None = None
        self._previous_limit: float | None = None
        self._previous_until = 0.0
        self.revoked_at: float | None = None
        self.present = False
        self.violation: str | None = None
        self.meter_fault: str | None = None
        self.revocation: str | None = None
        """Why the gatekeeper revoked the authorization of a PEV discharging beyond its
        limit; it stands until the PEV leaves."""
        self.last_sample: MeterSample | None = None
        self.last_sample_at: float | None = None
        """When (gateway clock) the last sample arrived."""
        self._watchdog: Any = None

    # -- what the port controller tells it ---------------------------------------------

    @property
    def may_close(self) -> bool:
        """Whether the contactor may be closed now (never while an open is unverified)."""
        return (self.present and self.violation is None and self.meter_fault is None
                and self.contactor_fault is None and self._opening is None)

    @property
    def feedback(self) -> bool:
        """Whether the contactor senses its contacts (auxiliary contact) now."""
        if not self._has_feedback:
            return False
        try:
            return bool(self._sensor.feedback)
        except Exception:
            return False

    @property
    def sensed(self) -> ContactorState | None:
        """The contacts' sensed position; None without feedback."""
        if not self.feedback:
            return None
        try:
            return ContactorState(self._sensor.sensed)
        except Exception:
            return ContactorState.unknown

    @property
    def opening(self) -> bool:
        """Whether an open is being verified."""
        return self._opening is not None

    def meter_age(self) -> float | None:
        """Seconds since the last meter sample arrived; None before the first."""
        if self.last_sample_at is None:
            return None
        return float(self._clock.seconds() - self.last_sample_at)

    def contactor_status(self) -> str:
        """What the operator sees of the contactor: "welded"/"fault", else its state."""
        if self.contactor_fault is not None:
            return "welded" if self.contactor_fault_kind == "welded" else "fault"
        try:
            return str(ContactorState(self.contactor.state).value)
        except Exception:
            return ContactorState.unknown.value

    def pev_present(self, present: bool) -> None:
        """A PEV arrived (link up) or left (link down: violations are forgotten)."""
        self.present = present
        if not present:
            self.violation = None
            self.revocation = None
            self.authorized = False
            self.revoked_at = None
            self._forbid("PEV left the link", error=False)

    def set_authorized(self, authorized: bool, limit_w: float | None = None) -> None:
        """The authorization to discharge changed (limit: the most the PEV may discharge)."""
        if self.authorized and not authorized:
            self.revoked_at = self._clock.seconds()
        self.authorized = authorized
        self.set_limit(limit_w)

    def set_limit(self, limit_w: float | None) -> None:
        """A new authorized limit. A lower one applies after the 3 s a PEV has to follow
        (V2G-4.8.1.2-3); a higher one at once."""
        old = self._effective_limit()
        self.limit_w = limit_w
        if old is not None and (limit_w is None or limit_w < old):
            self._previous_limit = old
            self._previous_until = self._clock.seconds() + STOP_GRACE_S
        else:
            self._previous_limit = None

    def _effective_limit(self) -> float | None:
        if self._previous_limit is not None and self._clock.seconds() < self._previous_until:
            return self._previous_limit if self.limit_w is None else max(
                self.limit_w, self._previous_limit)
        return self.limit_w

    def start(self) -> None:
        """Start the meter watchdog; verify the contacts are open (they may be welded from
        before)."""
        self._arm_watchdog()
        self._forbid("port start", error=False)

    def stop(self) -> None:
        """Service stop: forbid and open, stop watching."""
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        self.present = False
        self._forbid("service stopping", error=False)
        self._end_opening()

    # -- opening and its verification ------------------------------------------------------

    def forbid(self, why: str) -> None:
        """Forbid closing and open; an open that may move the contacts is logged as
        commanded and verified. The contactor's own exception propagates."""
        maybe_closed = self._maybe_closed()
        self.contactor.set_allowed(False)
        self._after_forbid(why, maybe_closed, error=False)

    def _forbid(self, why: str, error: bool = True) -> None:
        """:meth:`forbid` for trips (logged at error level); plugin failures are logged."""
        maybe_closed = self._maybe_closed()
        try:
            self.contactor.set_allowed(False)
        except Exception:
            self.log.failure("{port}: contactor failed to open", port=self.port)
        self._after_forbid(why, maybe_closed, error=error)

    def _maybe_closed(self) -> bool:
        try:
            if self.contactor.allowed or self.contactor.state is not ContactorState.open:
                return True
        except Exception:
            return True
        sensed = self.sensed
        return sensed is not None and sensed is not ContactorState.open

    def _after_forbid(self, why: str, maybe_closed: bool, error: bool) -> None:
        now = self._clock.seconds()
        if maybe_closed or self._forbidden_since is None:
            self._forbidden_since = now
        log = self.log.error if error else self.log.info
        if self.contactor_fault is not None or self._opening is not None:
            if error:
                log("{port}: {why} (contactor open already commanded)", port=self.port,
                    why=why)
            return
        if not maybe_closed:
            if error:
                log("{port}: {why}; the contactor stays open", port=self.port, why=why)
            return
        log("{port}: contactor open commanded: {why}", port=self.port, why=why)
        self._opening = (now, why)
        self._opening_samples = []
        self._deadline = self._clock.callLater(self.open_deadline, self._open_deadline)
        self._check_open()

    def _check_open(self) -> None:
        """Confirm a pending open from the auxiliary contact or, without, the meter."""
        if self._opening is None:
            return
        commanded, why = self._opening
        ms = (self._clock.seconds() - commanded) * 1000
        sensed = self.sensed
        if sensed is not None:
            if sensed is ContactorState.open:
                self._end_opening()
                self.log.info("{port}: contactor opened (confirmed by the auxiliary contact "
                              "{ms:.0f} ms after the command)", port=self.port, ms=ms)
            return
        if self._opening_samples and not self._flowing(self._opening_samples[-1]):
            self._end_opening()
            self.log.info("{port}: no current after the open command ({ms:.0f} ms; no "
                          "auxiliary contact: the meter is the only check)", port=self.port,
                          ms=ms)

    def _open_deadline(self) -> None:
        self._deadline = None
        if self._opening is None:
            return
        self._check_open()
        if self._opening is None:
            return
        commanded, why = self._opening
        sensed = self.sensed
        if sensed is not None:
            kind = "welded" if sensed is ContactorState.closed else "unknown"
            self._contactor_failed(kind, f"contacts still sensed {sensed.value} "
                                         f"{self.open_deadline:g} s after the open command "
                                         f"({why})")
        elif self._opening_samples:
            self._contactor_failed("welded", f"current still flowing "
                                             f"({self._power(self._opening_samples[-1])}) "
                                             f"{self.open_deadline:g} s after the open "
                                             f"command ({why})")
        else:
            self.log.warn("{port}: contactor open unconfirmed {deadline:g} s after the "
                          "command: no auxiliary contact and no meter sample since; the "
                          "meter's next sample decides", port=self.port,
                          deadline=self.open_deadline)

    def _end_opening(self) -> None:
        self._opening = None
        self._opening_samples = []
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _flowing(self, sample: MeterSample) -> bool:
        """Whether current flows: apparent power above the threshold, either direction."""
        return math.hypot(sample.active_power_w, sample.reactive_power_var) > self.threshold_w

    @staticmethod
    def _power(sample: MeterSample) -> str:
        return f"{sample.active_power_w:.0f} W, {sample.reactive_power_var:.0f} var"

    def _meter_verifies(self, sample: MeterSample) -> None:
        """Without feedback, a sample decides a pending open after its deadline and flags
        current through contacts forbidden for longer than the deadline."""
        if self.feedback or self.contactor_fault is not None:
            return
        now = self._clock.seconds()
        if self._opening is not None:
            self._opening_samples.append(sample)
            del self._opening_samples[:-1]
            if self._deadline is None:  # past the deadline: this sample decides
                commanded, why = self._opening
                if self._flowing(sample):
                    self._contactor_failed("welded", f"current flowing ({self._power(sample)})"
                                                     f" {now - commanded:.1f} s after the "
                                                     f"open command ({why})")
                else:
                    self._check_open()
            else:
                self._check_open()
            return
        try:
            allowed = bool(self.contactor.allowed)
        except Exception:
            allowed = True
        since = self._forbidden_since
        if (not allowed and since is not None and now - since >= self.open_deadline
                and self._flowing(sample)):
            self._contactor_failed("welded", f"current flowing ({self._power(sample)}) "
                                             f"{now - since:.1f} s after the contactor was "
                                             "forbidden to close")

    def _contactor_failed(self, kind: str, reason: str) -> None:
        """A failure to open: latch, alarm, revoke."""
        self._end_opening()
        self.contactor_fault = reason
        self.contactor_fault_kind = kind
        self.log.critical(
            "{port}: CONTACTOR {what}: {reason}. The port grants nothing and keeps no "
            "contactor closed until an operator clears it (sepgw ctl clear-fault {port})",
            port=self.port, what="WELDED" if kind == "welded" else "FAULT", reason=reason)
        try:
            self.contactor.set_allowed(False)
        except Exception:
            self.log.failure("{port}: contactor failed to open", port=self.port)
        self._revoke(f"contactor {'welded' if kind == 'welded' else 'fault'}: {reason}")

    def clear_fault(self) -> str:
        """The operator clears a contactor fault; only when the contacts are sensed open
        (without feedback: the meter is healthy and measures no current). Returns what was
        cleared; raises :class:`FaultNotCleared` otherwise."""
        fault = self.contactor_fault
        if fault is None:
            raise FaultNotCleared(f"{self.port}: no contactor fault to clear")
        sensed = self.sensed
        if sensed is not None:
            if sensed is not ContactorState.open:
                raise FaultNotCleared(f"{self.port}: contacts still sensed {sensed.value}: "
                                      "the contactor fault stays")
            how = "contacts sensed open"
        else:
            sample = self.last_sample
            if self.meter_fault is not None or sample is None:
                raise FaultNotCleared(f"{self.port}: no auxiliary contact and the meter "
                                      f"cannot tell ({self.meter_fault or 'no sample'}): "
                                      "the contactor fault stays")
            if self._flowing(sample):
                raise FaultNotCleared(f"{self.port}: current still flowing "
                                      f"({self._power(sample)}): the contactor fault stays")
            how = "no auxiliary contact; the meter measures no current"
        self.contactor_fault = None
        self.contactor_fault_kind = None
        self._forbidden_since = self._clock.seconds()
        self.log.warn("{port}: contactor fault cleared by the operator ({how}); it was: "
                      "{fault}", port=self.port, how=how, fault=fault)
        return how

    # -- what the meter tells it ---------------------------------------------------------

    def meter_sample(self, sample: MeterSample) -> None:
        self.last_sample = sample
        self.last_sample_at = self._clock.seconds()
        self._arm_watchdog()
        if self.meter_fault is not None:
            self.log.info("{port}: meter healthy again", port=self.port)
            self.meter_fault = None
        opening = self._opening
        self._police(sample)  # first: a forbidden discharge is cut before anything else
        if self._opening is not opening:
            return  # this sample started the open: it cannot verify it
        if opening is not None and self.feedback:
            self._check_open()
        self._meter_verifies(sample)

    def _police(self, sample: MeterSample) -> None:
        p = sample.active_power_w
        if p <= self.threshold_w:
            return
        now = self._clock.seconds()
        if self.authorized:
            limit = self._effective_limit()
            if limit is not None and p > limit * (1 + self.tolerance) + self.threshold_w:
                self.authorized = False
                self.revoked_at = now
                self.revocation = f"discharged {p:.0f} W, above the authorized {limit:.0f} W"
                self.log.warn("{port}: authorization revoked: {reason}", port=self.port,
                              reason=self.revocation)
                self._on_revoke(self.revocation)
            return
        if self.revoked_at is not None and now - self.revoked_at <= STOP_GRACE_S:
            return  # the PEV still has time to stop (V2G-4.8.1.2-3)
        reason = (f"discharging {p:.0f} W without authorization" if self.revoked_at is None
                  else f"still discharging {p:.0f} W {now - self.revoked_at:.1f} s after "
                       "the authorization was revoked")
        self.trip(reason)

    def meter_error(self, reason: str) -> None:
        self._fault(f"meter error: {reason}")

    # -- trips ---------------------------------------------------------------------------

    def trip(self, reason: str) -> None:
        """A discharge violation or a failure: open now, revoke, latch until the PEV
        leaves."""
        first = self.violation is None
        self.violation = self.violation or reason
        if first:
            self._forbid(reason)
        else:
            self._quiet_forbid()
        self._revoke(reason)

    def _fault(self, reason: str) -> None:
        first = self.meter_fault is None
        self.meter_fault = reason
        if first:
            self._forbid(reason)
        else:
            self._quiet_forbid()
        self._revoke(reason)

    def _quiet_forbid(self) -> None:
        """Forbid again, for a trip already logged."""
        try:
            self.contactor.set_allowed(False)
        except Exception:
            self.log.failure("{port}: contactor failed to open", port=self.port)

    def _revoke(self, reason: str) -> None:
        if self.authorized:
            self.authorized = False
            self.revoked_at = self._clock.seconds()
        self._on_revoke(reason)

    def _arm_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.reset(self.meter_timeout)
        else:
            self._watchdog = self._clock.callLater(self.meter_timeout, self._silent)

    def _silent(self) -> None:
        self._watchdog = None
        self._fault(f"meter silent for {self.meter_timeout:g} s")
