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
the contactor is forbidden to close, whatever anyone else asks. Pure: clock and contactor
are injected, decisions are reported through callbacks.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.logger import Logger

from sepgw.interfaces import IContactor, MeterSample

STOP_GRACE_S = 3.0
"""V2G-4.8.1.2-3: a PEV must stop discharging within 3 s of a revocation."""


class Gatekeeper:
    """Safety decisions for one port."""

    log = Logger()

    def __init__(self, clock: Any, contactor: IContactor, *, port: str,
                 on_revoke: Callable[[str], None], meter_timeout: float,
                 discharge_threshold_w: float = 100.0, limit_tolerance_pct: float = 5.0
                 ) -> None:
        self._clock = clock
        self.contactor = contactor
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
        self._watchdog: Any = None

    # -- what the port controller tells it ---------------------------------------------

    @property
    def may_close(self) -> bool:
        """Whether the contactor may be closed now."""
        return self.present and self.violation is None and self.meter_fault is None

    def pev_present(self, present: bool) -> None:
        """A PEV arrived (link up) or left (link down: violations are forgotten)."""
        self.present = present
        if not present:
            self.violation = None
            self.revocation = None
            self.authorized = False
            self.revoked_at = None
            self._forbid()

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
        """Start the meter watchdog."""
        self._arm_watchdog()

    def stop(self) -> None:
        """Service stop: forbid and open, stop watching."""
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None
        self.present = False
        self._forbid()

    # -- what the meter tells it ---------------------------------------------------------

    def meter_sample(self, sample: MeterSample) -> None:
        self.last_sample = sample
        self._arm_watchdog()
        if self.meter_fault is not None:
            self.log.info("{port}: meter healthy again", port=self.port)
            self.meter_fault = None
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
        self._forbid()
        if first:
            self.log.error("{port}: contactor opened: {reason}", port=self.port,
                           reason=reason)
        self._revoke(reason)

    def _fault(self, reason: str) -> None:
        first = self.meter_fault is None
        self.meter_fault = reason
        self._forbid()
        if first:
            self.log.error("{port}: contactor opened: {reason}", port=self.port,
                           reason=reason)
        self._revoke(reason)

    def _revoke(self, reason: str) -> None:
        if self.authorized:
            self.authorized = False
            self.revoked_at = self._clock.seconds()
        self._on_revoke(reason)

    def _forbid(self) -> None:
        try:
            self.contactor.set_allowed(False)
        except Exception:
            self.log.failure("{port}: contactor failed to open", port=self.port)

    def _arm_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.reset(self.meter_timeout)
        else:
            self._watchdog = self._clock.callLater(self.meter_timeout, self._silent)

    def _silent(self) -> None:
        self._watchdog = None
        self._fault(f"meter silent for {self.meter_timeout:g} s")
