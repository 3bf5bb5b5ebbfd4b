"""Service building blocks: ordered, asynchronous start and stop; components as services."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from sepgw.interfaces import IComponent


class OrderedMultiService(MultiService):
    """A MultiService whose children start one after the other, in the order added.

    A child's ``startService`` may return a Deferred; the next child starts only when it
    fires. :attr:`started` fires when every child has started (or fails with the first
    failure, after which the children already started are stopped again). Children stop in
    reverse order, each waited for.
    """

    log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self.started: Deferred[None] = Deferred()
        self._running: list[IService] = []

    def startService(self) -> Deferred[None]:  # type: ignore[override]
        Service.startService(self)
        d: Deferred[Any] = Deferred()
        for child in list(self):
            d.addCallback(self._start_child, child)
        d.addCallbacks(self._all_started, self._start_failed)
        d.callback(None)
        return self.started

    def _start_child(self, _: Any, child: IService) -> Deferred[Any]:
        result = maybeDeferred(child.startService)
        return result.addCallback(lambda _: self._running.append(child))

    def _all_started(self, _: Any) -> None:
        self.started.callback(None)

    def _start_failed(self, failure: Failure) -> Deferred[Any]:
        d = self._stop_running()
        d.addBoth(lambda _: self.started.errback(failure))
        return d

    def _stop_running(self) -> Deferred[None]:
        d: Deferred[Any] = Deferred()
        for child in reversed(self._running):
            d.addCallback(self._stop_child, child)
        d.addCallback(lambda _: self._running.clear())
        d.callback(None)
        return d

    def _stop_child(self, _: Any, child: IService) -> Deferred[Any]:
        def failed(f: Failure) -> None:
            self.log.failure("Stopping {service} failed", f, service=child.name or repr(child))
        return maybeDeferred(child.stopService).addErrback(failed)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        Service.stopService(self)
        return self._stop_running()


class ComponentService(Service):
    """Runs an :class:`~sepgw.interfaces.IComponent` (a plugin's component) as a service."""

    def __init__(self, name: str, component: Any) -> None:
        self.setName(name)
        self.component = IComponent(component, component)

    def startService(self) -> Deferred[Any]:  # type: ignore[override]
        Service.startService(self)
        return maybeDeferred(self.component.start)

    def stopService(self) -> Deferred[Any]:  # type: ignore[override]
        Service.stopService(self)
        return maybeDeferred(self.component.stop)
