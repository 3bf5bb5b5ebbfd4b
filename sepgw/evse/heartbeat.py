"""Loss of communications (profile 4.8.1.1): the PEV's DERStatus heartbeat.

The PEV PUTs its DERStatus every second. Ten consecutive missed heartbeats (ten periods
without one) are a loss of communications; after a loss, three consecutive heartbeats (each
within two periods of the previous one) restore communications. Pure: the clock is
injected, the outcome is reported through callbacks.
"""

from __future__ import annotations

from typing import Any, Callable

MISSES_FOR_LOSS = 10
"""V2G-4.8.1.1-3: ten consecutive missed heartbeats are a loss of communications."""
RECEIVED_FOR_RESTORE = 3
"""V2G-4.8.1.1-4: three consecutive heartbeats restore communications."""
PERIOD_S = 1.0
"""V2G-4.8.1.1-1: the PEV sends a heartbeat every second."""


class HeartbeatMonitor:
    """Watches one PEV's heartbeats; ``ok`` says whether communications stand."""

    def __init__(self, clock: Any, on_lost: Callable[[], None],
                 on_restored: Callable[[], None], period: float = PERIOD_S) -> None:
        self._clock = clock
        self._on_lost = on_lost
        self._on_restored = on_restored
        self.period = period
        self.ok = True
        self.last: float | None = None
        self.consecutive = 0
        self._deadline: Any = None
        self.running = False

    def start(self) -> None:
        """Begin watching (communications count as standing until ten periods pass)."""
        self.running = True
        self.ok = True
        self.consecutive = 0
        self._arm()

    def stop(self) -> None:
        """Stop watching (session ended, or the PEV sleeps and sends nothing, 4.8.3)."""
        self.running = False
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def heartbeat(self) -> None:
        """A DERStatus arrived."""
        now = self._clock.seconds()
        if not self.running:
            self.last = now
            return
        if self.ok:
            self._arm()
        else:
            in_a_row = self.last is not None and now - self.last <= 2 * self.period
            self.consecutive = self.consecutive + 1 if in_a_row else 1
            if self.consecutive >= RECEIVED_FOR_RESTORE:
                self.ok = True
                self.consecutive = 0
                self._arm()
                self._on_restored()
        self.last = now

    def _arm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.reset(self.period * MISSES_FOR_LOSS)
        else:
            self._deadline = self._clock.callLater(self.period * MISSES_FOR_LOSS, self._lost)

    def _lost(self) -> None:
        self._deadline = None
        self.ok = False
        self.consecutive = 0
        self._on_lost()
