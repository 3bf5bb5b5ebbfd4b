"""The server's time base (2030.5 TimeType: Unix seconds), kept by every client role."""

from __future__ import annotations

from typing import Any

from sepgw.model import Time


class ServerTime:
    """The server's time base: local clock plus the offset to the last Time resource read.
    ``now()`` is what events are scheduled on.

    With ``jitter`` (seconds), a reading within that of the offset in use is the same time
    base (TimeType has whole seconds): the offset is kept and :meth:`update` returns 0."""

    def __init__(self, clock: Any, jitter: float = 0.0) -> None:
        self._clock = clock
        self.jitter = jitter
        self.offset = 0.0
        self.synced = False

    def now(self) -> float:
        return float(self._clock.seconds()) + self.offset

    def update(self, time: Time) -> float:
        """Take the offset from a Time just read; return how far it moved (seconds; 0 at
        the first reading after :meth:`reset` or within ``jitter``)."""
        new = float(time.currentTime) - float(self._clock.seconds())
        if self.synced and abs(new - self.offset) < self.jitter:
            return 0.0
        moved = new - self.offset if self.synced else 0.0
        self.offset, self.synced = new, True
        return moved

    def reset(self) -> None:
        """A new session: the next reading sets the offset without counting as a move."""
        self.synced = False
