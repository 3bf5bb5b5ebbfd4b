"""The PEV's notification endpoint (profile 4.1.4, 5.9; V2G-4.1.4-3, V2G-4.1.1-25).

The EVSE POSTs 2030.5 ``Notification`` documents to the ``notificationURI`` the PEV gave in
its Subscriptions. This module is the receiving side:

- :class:`NotificationResource`: a twisted.web resource that accepts only ``POST`` of a
  schema-valid ``Notification`` (201), refuses anything else with a one-line reason (400,
  405, 413) and hands the parsed document to the J3072 client, which answers at once and
  does the work (paging, the event engine) afterwards;
- :func:`notification_site`: that resource at a configured path (default ``/ntfy``) in a
  quiet :class:`~twisted.web.server.Site`;
- :class:`PeerRecordingPolicy`: wraps the PEV's HTTPS client policy and remembers the LFDI
  of the EVSE the PEV talks to (learned from its TLS connections), so that
- :func:`evse_only` can pin the notification listener to that EVSE: the listener uses the
  PEV's own certificate (:func:`sepgw.security.tls.server_connection_creator`, mutual TLS,
  a client chaining to the configured SERCA), and refuses during the handshake any client
  whose LFDI is not the EVSE's, or every client before the PEV has reached its EVSE;
- :func:`advertised_host`: the host part of the ``notificationURI``.
"""

from __future__ import annotations

import socket
import weakref
from collections import deque
from typing import Any, Callable

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from sepgw.model import ModelError, Notification, parse
from sepgw.security.identity import PeerIdentity
from sepgw.security.tls import identity_for_connection

Handler = Callable[[Notification], "str | None"]
"""Called with each valid Notification; returns None to accept it (201) or a reason (400)."""

MAX_BODY = 65536


def _text(request: Any, code: int, reason: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return (reason + "\n").encode("utf-8")


class NotificationResource(Resource):
    """``POST`` a Notification: 201 when ``handler`` accepts it, else 400 with the reason."""

    isLeaf = True
    allowedMethods = (b"POST",)
    log = Logger()

    def __init__(self, handler: Handler, max_body: int = MAX_BODY) -> None:
        super().__init__()
        self.handler = handler
        self.max_body = max_body

    def render(self, request: Any) -> bytes:
        if request.method != b"POST":
            request.setHeader(b"Allow", b"POST")
            return _text(request, 405, f"{request.method.decode('ascii', 'replace')} is not "
                                       "allowed here; POST a Notification")
        return self.render_POST(request)

    def render_POST(self, request: Any) -> bytes:
        body = request.content.read(self.max_body + 1)
        if len(body) > self.max_body:
            return _text(request, 413, f"body larger than {self.max_body} bytes")
        try:
            notification = parse(body, Notification)
        except ModelError as e:
            self.log.warn("Refused a notification: {reason}", reason=str(e))
            return _text(request, 400, f"not a valid Notification: {e}")
        try:
            reason = self.handler(notification)
        except Exception:
            self.log.failure("Handling a notification for {href} failed",
                             href=notification.subscribedResource)
            reason = "the notification could not be handled"
        if reason is not None:
            self.log.warn("Refused a notification for {href}: {reason}",
                          href=notification.subscribedResource, reason=reason)
            return _text(request, 400, reason)
        request.setResponseCode(201)
        return b""


def notification_site(path: str, resource: Resource) -> Site:
    """A Site with ``resource`` at ``path`` (e.g. ``/ntfy``), no access log."""
    root = Resource()
    parent = root
    segments = [s for s in path.split("/") if s]
    for segment in segments[:-1]:
        child = Resource()
        parent.putChild(segment.encode("utf-8"), child)
        parent = child
    parent.putChild(segments[-1].encode("utf-8") if segments else b"", resource)
    site = Site(root)
    site.displayTracebacks = False
    site.log = lambda request: None  # type: ignore[method-assign]
    site.noisy = False
    return site


@implementer(IOpenSSLClientConnectionCreator)
class _RecordingCreator:
    def __init__(self, inner: Any, owner: "PeerRecordingPolicy") -> None:
        self._inner = inner
        self._owner = owner

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:
        conn = self._inner.clientConnectionForTLS(tlsProtocol)
        self._owner._connections.append(weakref.ref(conn))
        return conn


@implementer(IPolicyForHTTPS)
class PeerRecordingPolicy:
    """An ``IPolicyForHTTPS`` around ``inner`` (sepgw's client policy) that remembers the
    identity of the last server it completed a TLS handshake with."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._connections: deque[weakref.ref[Any]] = deque(maxlen=16)
        self._last: PeerIdentity | None = None

    def creatorForNetloc(self, hostname: bytes, port: int) -> _RecordingCreator:
        return _RecordingCreator(self._inner.creatorForNetloc(hostname, port), self)

    def peer(self) -> PeerIdentity | None:
        """The server's identity, from the newest established connection (remembered
        after the connection is gone)."""
        for ref in reversed(self._connections):
            conn = ref()
            identity = identity_for_connection(conn) if conn is not None else None
            if identity is not None:
                self._last = identity
                break
        return self._last


def evse_only(peer: Callable[[], PeerIdentity | None]) -> Callable[[PeerIdentity], str | None]:
    """An allow hook for :func:`~sepgw.security.tls.server_connection_creator`: only the
    EVSE the PEV is connected to (``peer()``) may deliver notifications."""

    def allow(identity: PeerIdentity) -> str | None:
        evse = peer()
        if evse is None:
            return "the PEV has not reached its EVSE yet; no notification is expected"
        if identity.lfdi.upper() != evse.lfdi.upper():
            return (f"LFDI {identity.lfdi} is not the EVSE's ({evse.lfdi}); only the EVSE "
                    "the PEV subscribed with may notify it")
        return None

    return allow


def advertised_host(listen: str, advertise: str | None, evse_host: str | None) -> str:
    """The host of the notificationURI: ``advertise`` if configured; else the listening
    address; for a wildcard listener (``::``, ``0.0.0.0``), the local address the kernel
    uses to reach ``evse_host`` (a UDP ``connect``, which sends nothing)."""
    host = advertise or listen
    if host in ("::", "0.0.0.0", "") and evse_host:
        family = socket.AF_INET6 if ":" in evse_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((evse_host, 9))
            host = s.getsockname()[0]
    return host


def uri(host: str, port: int, path: str) -> str:
    """``https://host:port/path`` with IPv6 literals bracketed."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"https://{shown}:{port}{path}"
