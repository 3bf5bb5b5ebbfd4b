"""An HTTPS listener: a twisted.web Site behind sepgw's mutual-TLS server creator.

Plain HTTP is never served (V2G-4.1.3-3): every listening socket is wrapped in TLS. With
:class:`ConnectionLimits`, a connection beyond the overall or the per-peer-address cap is
closed as soon as it is accepted (no TLS handshake spent on it) and logged once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, gatherResults, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol


@dataclass(frozen=True)
class ConnectionLimits:
    """Caps on concurrent connections (``[server] max_connections``,
    ``max_connections_per_peer``)."""

    total: int = 256
    per_peer: int = 8


class _CountedTLSProtocol(TLSMemoryBIOProtocol):
    """Tells its gate when the connection ends."""

    peer_key: str = ""
    _counted = False

    def connectionLost(self, reason: Any = None) -> None:
        try:
            super().connectionLost(reason)
        finally:
            gate = self.factory
            if self._counted and isinstance(gate, GatedTLSFactory):
                self._counted = False  # once, even if called again
                gate.released(self.peer_key)


class GatedTLSFactory(TLSMemoryBIOFactory):
    """A TLS server factory that counts its open connections and refuses (returns no
    protocol, so the socket is closed at once) those over :class:`ConnectionLimits`."""

    protocol = _CountedTLSProtocol
    log = Logger()

    def __init__(self, creator: Any, wrapped: Any, limits: ConnectionLimits) -> None:
        super().__init__(creator, False, wrapped)
        self.limits = limits
        self.open: Counter[str] = Counter()
        self.total = 0
        self.refused = 0

    def buildProtocol(self, addr: Any) -> Any:
        host = str(getattr(addr, "host", addr))
        if self.total >= self.limits.total:
            return self._refuse(addr, f"{self.total} connections open, the limit")
        if self.open[host] >= self.limits.per_peer:
            return self._refuse(addr, f"{self.open[host]} connections open from this "
                                      "address, the limit")
        protocol: _CountedTLSProtocol = super().buildProtocol(addr)  # type: ignore[assignment]
        protocol.peer_key = host
        protocol._counted = True
        self.open[host] += 1
        self.total += 1
        return protocol

    def released(self, host: str) -> None:
        self.total -= 1
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]

    def _refuse(self, addr: Any, why: str) -> None:
        self.refused += 1
        host, port = getattr(addr, "host", addr), getattr(addr, "port", "?")
        shown = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        self.log.warn("Refused connection from {peer}: {reason}", peer=shown, reason=why)
        return None


class HTTPSService(Service):
    """Listens with TLS on each address; ``ports`` holds the listening ports once started."""

    log = Logger()

    def __init__(self, reactor: Any, addresses: Sequence[str], port: int, creator: Any,
                 factory: Any, limits: ConnectionLimits | None = None) -> None:
        self.setName("https")
        self._reactor = reactor
        self._addresses = tuple(addresses)
        self._port = port
        self._factory: TLSMemoryBIOFactory = (
            TLSMemoryBIOFactory(creator, False, factory) if limits is None
            else GatedTLSFactory(creator, factory, limits))
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
