"""The 2030.5 client layer shared by the client roles (the DME uplink now; the PEV role is
to move onto it): the server's time base, link following with list paging, periodic work at
a rate the server sets (pollRate, postRate), and the Registration resource.

Nothing here knows a role. HTTP goes through :class:`sepgw.pev.http.SEPClient` (mutual TLS
through sepgw's client policy); time through an injected ``IReactorTime``, so every piece
runs on ``twisted.internet.task.Clock`` in tests. See ``docs/uplink.md``.
"""

from __future__ import annotations

import random
from typing import Any, Awaitable, Callable, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from sepgw.model import Model, Time, next_start, query_string
from sepgw.model.base import PollRateT, Resource
from sepgw.model.codec import resource
from sepgw.model.types import TimeT, UInt32T

__all__ = ["DEFAULT_POLL_S", "Registration", "ServerTime", "Periodic", "fetch_all",
           "list_items", "Backoff"]

DEFAULT_POLL_S = 900
"""pollRate when a resource gives none (2030.5 default, seconds)."""

M = TypeVar("M", bound=Model)


@resource
class Registration(Resource):
    """2030.5 Registration (EndDevice RegistrationLink): the PIN a server holds for the
    device, checked by the client against the one it was given out of band."""
    pollRate: PollRateT = None
    dateTimeRegistered: TimeT
    pIN: UInt32T


class ServerTime:
    """The server's time base: local clock plus the offset to the last Time resource read
    (2030.5 TimeType is Unix seconds). ``now()`` is what events are scheduled on."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self.offset = 0.0
        self.synced = False

    def now(self) -> float:
        return float(self._clock.seconds()) + self.offset

    def update(self, time: Time) -> float:
        """Take the offset from a Time just read; return how far it moved (seconds)."""
        new = float(time.currentTime) - float(self._clock.seconds())
        moved = new - self.offset if self.synced else 0.0
        self.offset, self.synced = new, True
        return moved


def list_items(lst: Model) -> list[Any]:
    """The entries of a 2030.5 list resource (its one list-valued field)."""
    import dataclasses

    for name in (f.name for f in dataclasses.fields(lst)):  # type: ignore[arg-type]
        value = getattr(lst, name)
        if isinstance(value, list):
            return value
    return []


async def fetch_all(http: Any, href: str, cls: type[M], page_size: int = 50,
                    max_items: int = 10000) -> tuple[M, list[Any]]:
    """GET every page of the list at ``href`` (``s``/``l`` paging until ``all``); return
    the first page (for its pollRate and attributes) and every entry in list order."""
    first: M | None = None
    items: list[Any] = []
    start: int | None = 0
    while start is not None and len(items) < max_items:
        page = await http.get(href, cls, query_string(start, page_size) or f"?l={page_size}")
        if first is None:
            first = page
        entries = list_items(page)
        items.extend(entries)
        start = next_start(page, start) if entries else None
    assert first is not None
    return first, items


class Backoff:
    """Exponential backoff with full jitter: ``next()`` is a delay in [0.5, 1] × the
    current step, the step doubling from ``first`` up to ``cap``; ``reset()`` after a
    success."""

    def __init__(self, first: float = 1.0, cap: float = 300.0,
                 rng: Callable[[], float] = random.random) -> None:
        self.first, self.cap, self._rng = first, cap, rng
        self._step = first

    def next(self) -> float:
        delay = self._step * (0.5 + 0.5 * self._rng())
        self._step = min(self.cap, self._step * 2)
        return delay

    def reset(self) -> None:
        self._step = self.first


class Periodic:
    """Runs ``work()`` (sync or async) every ``rate()`` seconds, the rate read again after
    each run (a server may change pollRate or postRate); never two runs at once; errors
    are logged and the next run still happens."""

    log = Logger()

    def __init__(self, clock: Any, rate: Callable[[], float],
                 work: Callable[[], Awaitable[Any] | Any], name: str) -> None:
        self._clock, self._rate, self._work, self.name = clock, rate, work, name
        self._call: Any = None
        self._running = False
        self.runs = 0

    def start(self, now: bool = True) -> None:
        self._running = True
        self._schedule(0 if now else None)

    def stop(self) -> None:
        self._running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def kick(self) -> None:
        """Run as soon as possible (e.g. after a notification or a state change)."""
        if self._running:
            self._schedule(0)

    def _schedule(self, delay: float | None) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        wait = max(0.5, float(self._rate())) if delay is None else delay
        self._call = self._clock.callLater(wait, self._fire)

    def _fire(self) -> None:
        self._call = None
        d = Deferred.fromCoroutine(self._run())
        d.addErrback(lambda f: self.log.failure("{name} failed", f, name=self.name))

    async def _run(self) -> None:
        try:
            result = self._work()
            if isinstance(result, Deferred) or hasattr(result, "__await__"):
                await result
            self.runs += 1
        except Exception as e:
            self.log.warn("{name}: {error}", name=self.name, error=f"{type(e).__name__}: {e}")
        finally:
            if self._running and self._call is None:
                self._schedule(None)
