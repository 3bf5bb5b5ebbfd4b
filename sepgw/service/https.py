"""An HTTPS listener: a twisted.web Site behind sepgw's mutual-TLS server creator.

Plain HTTP is never served (V2G-4.1.3-3): every listening socket is wrapped in TLS.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, gatherResults, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory


class HTTPSService(Service):
    """Listens with TLS on each address; ``ports`` holds the listening ports once started."""

    log = Logger()

    def __init__(self, reactor: Any, addresses: Sequence[str], port: int, creator: Any,
                 factory: Any) -> None:
        self.setName("https")
        self._reactor = reactor
        self._addresses = tuple(addresses)
        self._port = port
        self._factory = TLSMemoryBIOFactory(creator, False, factory)
        self.ports: list[Any] = []

    def _endpoint(self, address: str) -> Any:
        if ":" in address:
            return TCP6ServerEndpoint(self._reactor, self._port, interface=address)
        return TCP4ServerEndpoint(self._reactor, self._port, interface=address)

    def startService(self) -> Deferred[Any]:  # type: ignore[override]
        Service.startService(self)
        listening = [self._endpoint(a).listen(self._factory) for a in self._addresses]
        return gatherResults(listening, consumeErrors=True).addCallback(self._listening)

    def _listening(self, ports: list[Any]) -> None:
        self.ports = ports
        for p in ports:
            host = p.getHost()
            shown = f"[{host.host}]" if ":" in host.host else host.host
            self.log.info("HTTPS (mutual TLS) listening on {address}",
                          address=f"{shown}:{host.port}")

    def stopService(self) -> Deferred[Any]:  # type: ignore[override]
        Service.stopService(self)
        ports, self.ports = self.ports, []
        return DeferredList([maybeDeferred(p.stopListening) for p in ports])
