"""Bundled plugin: a simulated contactor with confirmation delay and fault injection."""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from sepgw.interfaces import BuildContext, ContactorRefused, ContactorState, IContactor
from sepgw.plugin import Key, PluginFactory, Section


@implementer(IContactor)
class SimulatedContactor:
    """A contactor in memory. Closing takes ``delay`` seconds to confirm; opening is at once.

    ``stuck`` simulates welded contacts: the contactor reports closed and cannot open (the
    gatekeeper must then revoke and alarm).
    """

    log = Logger()

    def __init__(self, clock: Any, name: str, delay: float = 0.05, stuck: bool = False) -> None:
        self._clock = clock
        self._name = name
        self._delay = delay
        self.stuck = stuck
        self.state = ContactorState.open
        self.allowed = False
        self._pending: Any = None
        self._waiting: list[Deferred[ContactorState]] = []
        self.listeners: list[Any] = []

    def start(self) -> None:
        self.log.info("{name}: simulated contactor open, closing not allowed", name=self._name)

    def stop(self) -> None:
        self.set_allowed(False)

    def set_allowed(self, allowed: bool) -> None:
        self.allowed = allowed
        if not allowed:
            self.open()

    def close(self) -> Deferred[ContactorState]:
        if not self.allowed:
            return fail(ContactorRefused(f"{self._name}: closing is not allowed"))
        if self.state is ContactorState.closed:
            return succeed(self.state)
        d: Deferred[ContactorState] = Deferred()
        self._waiting.append(d)
        if self._pending is None:
            self._pending = self._clock.callLater(self._delay, self._confirm)
        return d

    def _confirm(self) -> None:
        self._pending = None
        waiting, self._waiting = self._waiting, []
        self._set(ContactorState.closed)
        for d in waiting:
            d.callback(self.state)

    def open(self) -> Deferred[ContactorState]:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(ContactorRefused(f"{self._name}: close cancelled by an open"))
        if not self.stuck:
            self._set(ContactorState.open)
        return succeed(self.state)

    def _set(self, state: ContactorState) -> None:
        if state is not self.state:
            self.state = state
            self.log.info("{name}: contactor {state}", name=self._name, state=state.value)
            for listener in list(self.listeners):
                listener(state)


def _build(config: Mapping[str, Any], context: BuildContext) -> SimulatedContactor:
    return SimulatedContactor(context.reactor, context.name, config["delay"], config["stuck"])


contactor = PluginFactory(
    kind="contactor",
    name="simulated",
    description="Contactor in memory with a closing delay; can be stuck closed for fault tests.",
    options=Section({
        "delay": Key("float", 0.05, "Seconds until a close is confirmed.", min=0, max=10),
        "stuck": Key("bool", False, "Simulate welded contacts that never open."),
    }),
    build=_build,
)
