"""The console's event bus: pure, bounded, in memory, no timers.

Each *scope* (an EVSE port's name, or ``"pev"``) keeps a ring buffer of timeline
:class:`Event` s (the newest ``timeline_size``) and of meter samples (those of the last
``meter_window_s`` seconds, at most ``meter_size``). Appending costs O(1) (amortized, old
samples leave from the left). Subscribers are told *that* something changed (a bare call);
they read what is new with the ``*_after(cursor)`` methods, so a burst of changes costs
them one read. With no subscriber a change costs nothing more than the append.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

__all__ = ["Event", "EventBus", "Sample"]

Sample = tuple[int, float, float | None, float | None, float | None, float | None]
"""(sequence number, time s, W, var, V, Hz)."""


@dataclass(frozen=True)
class Event:
    """One entry of a scope's timeline."""

    seq: int
    t: float
    scope: str
    kind: str
    """``link``, ``tls``, ``exchange``, ``response``, ``authorization``, ``state``,
    ``heartbeat``, ``gatekeeper``, ``meter``, ``operator``, ``step`` or ``log``."""
    text: str
    requirements: tuple[str, ...] = ()
    session: str | None = None
    """The PEV session it belongs to (LFDI), None outside any session."""
    level: str = "info"

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "t": self.t, "scope": self.scope, "kind": self.kind,
                "text": self.text, "requirements": list(self.requirements),
                "session": self.session, "level": self.level}


class _Scope:
    __slots__ = ("timeline", "meter")

    def __init__(self, timeline_size: int, meter_size: int) -> None:
        self.timeline: deque[Event] = deque(maxlen=timeline_size)
        self.meter: deque[Sample] = deque(maxlen=meter_size)


class EventBus:
    """Timelines and meter samples by scope, and the subscribers to their changes."""

    def __init__(self, *, timeline_size: int = 300, meter_window_s: float = 300.0,
                 meter_size: int = 3600) -> None:
        if timeline_size < 1 or meter_size < 1 or meter_window_s <= 0:
            raise ValueError("the bus needs room for at least one event and one sample")
        self.timeline_size = timeline_size
        self.meter_window_s = meter_window_s
        self.meter_size = meter_size
        self._scopes: dict[str, _Scope] = {}
        self._seq = 0
        self._sample_seq = 0
        self._subscribers: list[Callable[[], object]] = []

    # -- writing ----------------------------------------------------------------------------

    def _scope(self, name: str) -> _Scope:
        scope = self._scopes.get(name)
        if scope is None:
            scope = self._scopes[name] = _Scope(self.timeline_size, self.meter_size)
        return scope

    def add_scope(self, name: str) -> None:
        """Declare a scope (it is listed even before its first event)."""
        self._scope(name)

    def event(self, scope: str, t: float, kind: str, text: str,
              requirements: Iterable[str] = (), session: str | None = None,
              level: str = "info") -> Event:
        """Append a timeline event; the oldest one of the scope leaves when it is full."""
        self._seq += 1
        event = Event(self._seq, t, scope, kind, text, tuple(requirements), session, level)
        self._scope(scope).timeline.append(event)
        self._changed()
        return event

    def sample(self, scope: str, t: float, w: float | None, var: float | None,
               v: float | None, hz: float | None) -> None:
        """Append a meter sample; samples older than the window (or beyond the size) go."""
        self._sample_seq += 1
        meter = self._scope(scope).meter
        meter.append((self._sample_seq, t, w, var, v, hz))
        horizon = t - self.meter_window_s
        while meter[0][1] < horizon:
            meter.popleft()
        self._changed()

    # -- reading ----------------------------------------------------------------------------

    @property
    def scopes(self) -> list[str]:
        return list(self._scopes)

    @property
    def cursor(self) -> tuple[int, int]:
        """(last event seq, last sample seq): what a reader has seen after a full read."""
        return self._seq, self._sample_seq

    def timeline(self, scope: str) -> list[Event]:
        scope_ = self._scopes.get(scope)
        return list(scope_.timeline) if scope_ is not None else []

    def samples(self, scope: str) -> list[Sample]:
        scope_ = self._scopes.get(scope)
        return list(scope_.meter) if scope_ is not None else []

    def events_after(self, seq: int) -> list[Event]:
        """Every event still held with a sequence number above ``seq``, oldest first."""
        out: list[Event] = []
        for scope in self._scopes.values():
            out.extend(_newer(scope.timeline, seq))
        out.sort(key=lambda e: e.seq)
        return out

    def samples_after(self, seq: int) -> dict[str, list[Sample]]:
        """Per scope, the samples still held with a sequence number above ``seq``."""
        out: dict[str, list[Sample]] = {}
        for name, scope in self._scopes.items():
            new = _newer(scope.meter, seq)
            if new:
                out[name] = new
        return out

    # -- subscribers -------------------------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, changed: Callable[[], object]) -> Callable[[], None]:
        """Call ``changed()`` after each append; returns the function that unsubscribes."""
        self._subscribers.append(changed)

        def unsubscribe() -> None:
            if changed in self._subscribers:
                self._subscribers.remove(changed)
        return unsubscribe

    def _changed(self) -> None:
        for changed in list(self._subscribers):
            changed()


def _newer(items: deque[Any], seq: int) -> list[Any]:
    """The tail of ``items`` (sorted by their first field or ``.seq``) newer than ``seq``:
    walks from the right, so reading what is new costs what is new."""
    out: list[Any] = []
    for item in reversed(items):
        if (item.seq if isinstance(item, Event) else item[0]) <= seq:
            break
        out.append(item)
    out.reverse()
    return out
