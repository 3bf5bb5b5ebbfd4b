"""Periodic work at rates the server sets (pollRate, postRate), for every client role."""

from __future__ import annotations

import random
from typing import Any, Awaitable, Callable

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


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


class Loops:
    """Named loops on a fixed schedule (``LoopingCall``: a heartbeat every second stays on
    its second whatever a request takes). :meth:`follow` restarts a loop only when the
    server changed its rate. A run's failure goes to ``on_error(name, failure)``."""

    def __init__(self, clock: Any, on_error: Callable[[str, Any], None]) -> None:
        self._clock = clock
        self._on_error = on_error
        self._loops: dict[str, LoopingCall] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._loops

    def interval(self, name: str) -> float | None:
        loop = self._loops.get(name)
        return None if loop is None else loop.interval

    def run(self, name: str, interval: float, work: Callable[[], Any]) -> None:
        """(Re)start loop ``name``: ``work`` every ``interval`` s, the first run after one."""
        old = self._loops.pop(name, None)
        if old is not None and old.running:
            old.stop()
        loop = LoopingCall(self._tick, name, work)
        loop.clock = self._clock
        self._loops[name] = loop
        loop.start(interval, now=False)

    def follow(self, name: str, interval: float, work: Callable[[], Any]) -> None:
        """Restart ``name`` at ``interval`` if it runs at another rate (rate following)."""
        if name in self._loops and self._loops[name].interval != interval:
            self.run(name, interval, work)

    def _tick(self, name: str, work: Callable[[], Any]) -> None:
        self.guard(name, work)  # not returned: the schedule never waits for a run

    def guard(self, name: str, work: Callable[[], Any]) -> Deferred[Any]:
        """Run ``work`` once now (sync or async), its failure to ``on_error``."""
        try:
            result = work()
            d: Deferred[Any] = (ensureDeferred(result) if isinstance(result, Deferred)
                                or hasattr(result, "__await__") else succeed(result))
        except Exception:
            d = fail()
        return d.addErrback(lambda f: self._on_error(name, f))

    def stop_all(self) -> None:
        for loop in self._loops.values():
            if loop.running:
                loop.stop()
        self._loops.clear()
