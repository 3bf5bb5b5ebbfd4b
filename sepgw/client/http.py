"""The client layer's HTTP client (both client roles): typed 2030.5 GET, PUT, POST and
DELETE over an IAgent, with per-request timeouts, :meth:`SEPClient.cancel_all` and TLS
connection tracking.

Built on ``twisted.web.client.Agent`` (mutual TLS through sepgw's client policy) rather than
treq, whose URL handling cannot carry the IPv6 literal hosts the profile uses. Hrefs from
links are resolved against the server's base URL; every body is a schema-valid document
of the expected type, or the request fails with :class:`SEPError`.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar
from urllib.parse import urljoin

from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IConsumer, IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web.client import (Agent, HTTPConnectionPool, ResponseFailed,
                                ResponseNeverReceived, readBody)
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from sepgw.model import MEDIA_TYPE, Model, ModelError, parse, serialize

M = TypeVar("M", bound=Model)
_MEDIA = MEDIA_TYPE.encode("ascii")


class SEPError(Exception):
    """A request the server refused or answered with something unusable."""

    def __init__(self, method: str, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{method} {url}: {reason}")
        self.method = method
        self.url = url
        self.status = status
        self.reason = reason


@implementer(IBodyProducer)
class _Bytes:
    """A body from bytes, without the global reactor FileBodyProducer would use."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body) if body is not None else UNKNOWN_LENGTH

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


BytesBody = _Bytes
"""A request body from bytes (the EVSE's notifications use it too)."""


class ConnectionTracker:
    """The TLS connections an Agent has open to the server (the EVSE, the DME), numbered
    in the order they were made (``#1``, ``#2``...).

    A connection is *established* once it has carried data from the server (the TLS
    handshake succeeded and the server answered). Observers are called with
    ``(event, number)``: ``"made"`` when a connection is up (before any request is written
    on it), ``"established"`` at its first data, ``"ended"`` when an established one closes
    and ``"lost"`` when one that never was closes, whoever closed it. :attr:`established`
    is the set of established connections still open. :attr:`server_closes` is set once
    the server answers with ``Connection: close`` (it ends connections on purpose)."""

    def __init__(self) -> None:
        self.made = 0
        self.open: set[int] = set()
        self.established: set[int] = set()
        self.server_closes = False
        self.observers: list[Callable[[str, int], None]] = []

    def _notify(self, event: str, number: int) -> None:
        for observer in list(self.observers):
            observer(event, number)

    def connection_made(self) -> int:
        self.made += 1
        self.open.add(self.made)
        self._notify("made", self.made)
        return self.made

    def connection_established(self, number: int) -> None:
        if number in self.open and number not in self.established:
            self.established.add(number)
            self._notify("established", number)

    def connection_lost(self, number: int) -> None:
        if number not in self.open:
            return
        self.open.discard(number)
        ended = number in self.established
        self.established.discard(number)
        self._notify("ended" if ended else "lost", number)

    def watch(self, protocol: Any) -> Any:
        """Count ``protocol`` (just connected) and follow its first data and its loss. The
        protocol object stays the one the pool gets; only these two methods are wrapped."""
        number = self.connection_made()
        received, lost = protocol.dataReceived, protocol.connectionLost

        def data_received(data: bytes) -> None:
            self.connection_established(number)
            received(data)

        def connection_lost(reason: Any = None) -> None:
            try:
                lost(reason)
            finally:
                self.connection_lost(number)
        protocol.dataReceived = data_received
        protocol.connectionLost = connection_lost
        return protocol


@implementer(IStreamClientEndpoint)
class TrackedEndpoint:
    """An endpoint whose connections are counted by a :class:`ConnectionTracker`."""

    def __init__(self, endpoint: Any, tracker: ConnectionTracker) -> None:
        self._endpoint = endpoint
        self._tracker = tracker

    def connect(self, factory: Any) -> Deferred[Any]:
        d: Deferred[Any] = self._endpoint.connect(factory)
        return d.addCallback(self._tracker.watch)


@implementer(IAgentEndpointFactory)
class TrackingEndpointFactory:
    """HTTPS endpoints (TCP, then TLS with ``policy``) counted by ``tracker``: what Agent
    builds by default, plus the count."""

    def __init__(self, reactor: Any, policy: Any, tracker: ConnectionTracker,
                 timeout: float | None = None) -> None:
        self._reactor = reactor
        self._policy = policy
        self.tracker = tracker
        self._timeout = timeout

    def endpointForURI(self, uri: Any) -> TrackedEndpoint:
        if uri.scheme != b"https":
            raise ValueError(f"only https is used with a 2030.5 server, not {uri.scheme!r}")
        host = uri.host.decode("ascii")
        tcp = (HostnameEndpoint(self._reactor, host, uri.port) if self._timeout is None
               else HostnameEndpoint(self._reactor, host, uri.port, timeout=self._timeout))
        return TrackedEndpoint(wrapClientTLS(self._policy.creatorForNetloc(uri.host,
                                                                           uri.port), tcp),
                               self.tracker)


def tracking_agent(reactor: Any, policy: Any, timeout: float | None = None
                   ) -> tuple[Agent, ConnectionTracker]:
    """An Agent over persistent HTTPS connections whose connections are tracked."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool._factory.noisy = False  # no "Starting factory" line per connection
    tracker = ConnectionTracker()
    endpoints = TrackingEndpointFactory(reactor, policy, tracker, timeout)
    return Agent.usingEndpointFactory(reactor, endpoints, pool=pool), tracker


class SEPClient:
    """Requests to one 2030.5 server at ``base`` (``https://host:port``).

    With ``clock`` and ``timeout_s``, a request with no complete answer within ``timeout_s``
    seconds is cancelled and fails with :class:`SEPError`. Requests in flight can be
    cancelled all at once (:meth:`cancel_all`, when the client stops). ``connections``, when
    given, tracks the TLS connections ``agent`` makes (:func:`tracking_agent`). Every
    failure is handed to each of :attr:`error_observers` before it is raised."""

    def __init__(self, agent: Any, base: str, clock: Any = None,
                 timeout_s: float | None = None,
                 connections: ConnectionTracker | None = None) -> None:
        self.agent = agent
        self.base = base.rstrip("/")
        self.clock = clock
        self.timeout_s = timeout_s
        self.connections = connections
        self.error_observers: list[Callable[[SEPError], None]] = []
        self._in_flight: dict[Deferred[Any], str] = {}

    def _failed(self, error: SEPError) -> SEPError:
        for observer in list(self.error_observers):
            observer(error)
        return error

    def cancel_all(self) -> list[str]:
        """Cancel every request still waiting for the server; return ``"METHOD url"`` of
        each (they fail with :class:`SEPError`)."""
        pending = list(self._in_flight.items())
        self._in_flight.clear()
        for d, _ in pending:
            d.cancel()
        return [what for _, what in pending]

    def _exchange(self, method: str, url: str, headers: Headers,
                  body: bytes | None) -> Deferred[Any]:
        """The request and its whole body as one cancellable Deferred of
        ``(response, body)``, tracked while in flight, bounded by ``timeout_s``."""
        d = self.agent.request(method.encode("ascii"), url.encode("ascii"), headers,
                               _Bytes(body) if body is not None else None)
        d.addCallback(lambda response: readBody(response).addCallback(
            lambda data: (response, data)))
        d.addErrback(_cancelled)
        if self.clock is not None and self.timeout_s is not None:
            d.addTimeout(self.timeout_s, self.clock)
        self._in_flight[d] = f"{method} {url}"

        def done(result: Any) -> Any:
            self._in_flight.pop(d, None)
            return result
        return d.addBoth(done)

    def url(self, href: str) -> str:
        return urljoin(self.base + "/", href)

    @inlineCallbacks
    def request(self, method: str, href: str, body: bytes | None = None
                ) -> Any:
        """Send a request; return ``(status, headers, body)``."""
        url = self.url(href)
        headers = Headers({b"Accept": [_MEDIA]})
        if body is not None:
            headers.setRawHeaders(b"Content-Type", [_MEDIA])
        try:
            response, data = yield self._exchange(method, url, headers, body)
        except Exception as e:
            raise self._failed(SEPError(method, url, f"{type(e).__name__}: {e}")) from e
        if self.connections is not None and any(
                b"close" in v.lower() for v in response.headers.getRawHeaders(b"connection", [])):
            self.connections.server_closes = True
        return response.code, response.headers, data

    @inlineCallbacks
    def get(self, href: str, cls: type[M], query: str = "") -> Any:
        """GET a resource of type ``cls``."""
        status, _, data = yield self.request("GET", href + query)
        if status != 200:
            raise self._failed(SEPError("GET", self.url(href + query), _reason(status, data),
                                        status))
        try:
            return parse(data, cls)
        except ModelError as e:
            raise self._failed(SEPError("GET", self.url(href + query),
                                        f"invalid {cls.__name__}: {e}", status)) from e

    @inlineCallbacks
    def put(self, href: str, obj: Model | bytes) -> Any:
        """PUT a resource (204 expected)."""
        body = obj if isinstance(obj, bytes) else serialize(obj)
        status, _, data = yield self.request("PUT", href, body)
        if status not in (200, 204):
            raise self._failed(SEPError("PUT", self.url(href), _reason(status, data), status))
        return status

    @inlineCallbacks
    def post(self, href: str, obj: Model | bytes) -> Any:
        """POST a resource; return the Location header (or None)."""
        body = obj if isinstance(obj, bytes) else serialize(obj)
        status, headers, data = yield self.request("POST", href, body)
        if status not in (200, 201, 204):
            raise self._failed(SEPError("POST", self.url(href), _reason(status, data), status))
        location = headers.getRawHeaders(b"location")
        return location[0].decode("utf-8") if location else None

    @inlineCallbacks
    def delete(self, href: str) -> Any:
        status, _, data = yield self.request("DELETE", href)
        if status not in (200, 204):
            raise self._failed(SEPError("DELETE", self.url(href), _reason(status, data), status))
        return status


def _cancelled(failure: Failure) -> Failure:
    """A request cancelled while in flight fails as plain CancelledError, whatever layer of
    the Agent noticed (ResponseNeverReceived, ResponseFailed wrap it)."""
    reasons = getattr(failure.value, "reasons", None) or []
    if failure.check(ResponseNeverReceived, ResponseFailed) and any(
            r.check(CancelledError) for r in reasons):
        return Failure(CancelledError("cancelled before the server answered"))
    return failure


def _reason(status: int, data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip().splitlines()
    return f"{status} {text[0] if text else ''}".strip()
