"""The EVSE's 2030.5 server over HTTP(S): one twisted.web leaf resource in front of
:class:`EVSEResources`.

Every request goes to :meth:`EVSEHTTPServer.dispatch`, and the resource tree finds the
resource in an exact-match dictionary (the URIs are fixed per session, V2G-4.1.2-1). A
routing framework adds nothing to one catch-all route: Klein's routing cost about a sixth
of the server's time under the periodic load of ``benchmarks/server.py``, so it is not
used here. Errors are mapped in one place: a client mistake gets its 4xx status and a
one-line reason in a text/plain body, and nothing is changed; a server fault gets 500 and
a logged traceback.

Every parse bound is explicit and answered (:class:`HTTPLimits`, :class:`LimitedHTTPChannel`):
a request line over ``max_line`` gets 414, a head over ``max_header_bytes`` or with more than
``max_headers`` fields 431, a declared or chunked body over ``max_body`` 413 as soon as it is
announced (nothing buffered), a head or body not complete within its deadline 408; each
refusal closes the connection (aborted ``close_grace`` s later if the peer does not let it
close) and is logged once with the peer. An idle connection is closed after
``idle_timeout``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from twisted.logger import Logger
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from sepgw.evse.tree import EVSEResources, HTTPError
from sepgw.model import MEDIA_TYPE, Deviation, ModelError, parse
from sepgw.model.paging import parse_query
from sepgw.security.identity import PeerIdentity, peer_identity

_MEDIA = MEDIA_TYPE.encode("ascii")


@dataclass(frozen=True)
class HTTPLimits:
    """The bounds of one HTTP/1.1 connection (``[server]`` keys of the same names)."""

    max_body: int = 65536
    """Largest request body, bytes (413 once announced, by Content-Length or chunk size)."""
    max_line: int = 8192
    """Longest request line, bytes (414)."""
    max_header_bytes: int = 16384
    """Largest request head (request line and header fields), bytes (431)."""
    max_headers: int = 64
    """Most header fields in a request (431)."""
    head_timeout: float = 10.0
    """Seconds from a request's first byte to the end of its head (408)."""
    body_timeout: float = 30.0
    """Seconds from the end of the head to the end of the body (408)."""
    idle_timeout: float = 60.0
    """Seconds without a byte between requests (or during the TLS handshake): closed."""
    close_grace: float = 5.0
    """Seconds a closing connection may take before it is aborted."""

    @classmethod
    def from_config(cls, server: Mapping[str, Any]) -> "HTTPLimits":
        """The limits of a ``[server]`` section (``max_body_bytes`` and the ``*_s`` keys)."""
        return cls(max_body=server["max_body_bytes"], max_line=server["max_line_bytes"],
                   max_header_bytes=server["max_header_bytes"],
                   max_headers=server["max_headers"],
                   head_timeout=float(server["head_timeout_s"]),
                   body_timeout=float(server["body_timeout_s"]),
                   idle_timeout=float(server["idle_timeout_s"]))


class _BodyTooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


class _BoundedChunkedDecoder(http._ChunkedTransferDecoder):
    """A chunked-body decoder that refuses, when a chunk size is read, a body that would
    exceed ``limit`` (a huge chunk size is refused before any of it is awaited)."""

    def __init__(self, limit: int, *args: Any) -> None:
        super().__init__(*args)
        self.limit = limit
        self.announced = 0

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        if self._buffer.find(b"\r\n", self._start) > 32:
            # More than 16 hex digits plus extensions: no size sepgw would accept.
            raise http._MalformedChunkedDataError("chunk size line too long")
        done = super()._dataReceived_CHUNK_LENGTH()
        if done:
            self.announced += self.length
            if self.announced > self.limit:
                raise _BodyTooLarge(self.announced)
        return done


class LimitedHTTPChannel(http.HTTPChannel):
    """An HTTP/1.1 channel enforcing its site's :class:`HTTPLimits`: every refusal is an
    answer (400, 408, 413, 414, 431 with a one-line reason) and a close, never a traceback
    or a connection left waiting."""

    log = Logger()
    limits = HTTPLimits()
    _refused = False
    _head_lines = 0
    _head_bytes = 0
    _head_call: Any = None
    _body_call: Any = None
    _head_armed = False
    _body_armed = False
    _idle_paused = False
    _lost = False
    _bad_reason = "malformed request"
    peer_identity: PeerIdentity | None = None
    """The client certificate's identity, once the first request has looked it up."""

    def connectionMade(self) -> None:
        limits = getattr(self.site, "limits", None)  # type: ignore[attr-defined]
        if limits is not None:
            self.limits = limits
        self.timeOut = self.limits.idle_timeout  # type: ignore[assignment]
        self.abortTimeout = self.limits.close_grace  # type: ignore[assignment]
        # twisted's own checks stay as a second line, above ours.
        self.MAX_LENGTH = max(self.limits.max_line, self.limits.max_header_bytes)
        self.totalHeadersSize = self.limits.max_header_bytes + self.limits.max_line + 1
        self.maxHeaders = self.limits.max_headers + 1
        super().connectionMade()

    def _peer(self) -> str:
        try:
            peer = self.transport.getPeer()  # type: ignore[union-attr]
        except Exception:
            return "?"
        host, port = getattr(peer, "host", None), getattr(peer, "port", None)
        if host is None:
            return str(peer)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _refuse(self, code: int, reason: str) -> None:
        """Answer ``code`` with ``reason``, close, and ignore everything that follows."""
        if self._refused:
            return
        self._refused = True
        self._cancel_deadlines()
        self.clearLineBuffer()
        self.log.info("Refused HTTP request from {peer}: {code} {reason}", peer=self._peer(),
                      code=code, reason=reason)
        body = (reason + "\n").encode("utf-8")
        phrase = http.RESPONSES.get(code, b"Error")
        self.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (code, phrase, len(body), body))
        self.setTimeout(None)
        self._abortingCall = self.callLater(self.limits.close_grace, self.forceAbortClient)
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        self._refuse(400, self._bad_reason)

    # -- deadlines ---------------------------------------------------------------------------

    # Each deadline keeps one DelayedCall per connection, moved later by reset() for each
    # request and left pending (disarmed) between requests: moving a call later costs the
    # reactor nothing until it comes due, where a new callLater per request costs a push
    # and a pop in its timer heap (hundreds of connections, several requests a second each).

    def _arm(self, name: str, seconds: float, late: Callable[[], None]) -> None:
        call = getattr(self, name)
        if call is not None and call.active():
            if call.getTime() <= call.seconds() + seconds:
                call.reset(seconds)
                return
            call.cancel()  # sooner than pending: a new call (never with fixed timeouts)
        setattr(self, name, self.callLater(seconds, late))

    def setTimeout(self, period: float | None) -> float | None:  # type: ignore[override]
        """Twisted pauses the idle timeout for each request (``setTimeout(None)``) and
        starts it again after, a new timer each time; here the pause keeps the pending
        timer (:meth:`timeoutConnection` ignores it if it comes due while paused) and the
        restart moves it later. Only the connection's end really cancels it."""
        if period is None and not self._lost:
            self._idle_paused = True
            prev, self.timeOut = self.timeOut, None  # resetTimeout() does nothing meanwhile
            return prev  # type: ignore[return-value]
        self._idle_paused = False
        prev_timeout: float | None = super().setTimeout(period)
        return prev_timeout

    def _cancel_deadlines(self) -> None:
        self._head_armed = self._body_armed = False
        for name in ("_head_call", "_body_call"):
            call = getattr(self, name)
            if call is not None:
                setattr(self, name, None)
                if call.active():
                    call.cancel()

    def _head_late(self) -> None:
        self._head_call = None
        if self._head_armed:
            self._head_armed = False
            self._refuse(408, f"request head not complete within "
                              f"{self.limits.head_timeout:g} s")

    def _body_late(self) -> None:
        self._body_call = None
        if self._body_armed:
            self._body_armed = False
            self._refuse(408, f"request body not complete within "
                              f"{self.limits.body_timeout:g} s")

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if (not self._head_armed and not self._body_armed and self.line_mode
                and not self._handlingRequest and data):
            self._head_armed = True
            self._arm("_head_call", self.limits.head_timeout, self._head_late)
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        limits = self.limits
        if self._head_lines == 0:
            self._bad_reason = "malformed request line"
            if not line and not self.requests:
                return super().lineReceived(line)  # an empty line before a request
            if len(line) > limits.max_line:
                return self._refuse(414, f"request line longer than {limits.max_line} bytes")
        else:
            self._bad_reason = "malformed header field"
            if line and self._head_lines > limits.max_headers:
                return self._refuse(431, f"more than {limits.max_headers} header fields")
        self._head_lines += 1
        self._head_bytes += len(line) + 2
        if self._head_bytes > limits.max_header_bytes:
            return self._refuse(431, f"request head larger than {limits.max_header_bytes} "
                                     "bytes")
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._head_lines == 0:
            self._refuse(414, f"request line longer than {self.limits.max_line} bytes")
        else:
            self._refuse(431, f"request head larger than {self.limits.max_header_bytes} "
                              "bytes")

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        limit = self.limits.max_body
        if header == b"Content-Length":
            if not (data.isdigit() and data.isascii()):
                self._bad_reason = "Content-Length is not a decimal number"
                return self._failChooseTransferDecoder()
            if len(data) > 20 or int(data) > limit:  # digits bounded before int()
                size = f"{len(data)} digits" if len(data) > 20 else f"{int(data)} bytes"
                self._refuse(413, f"request body of {size} is larger than {limit} bytes")
                self.length = None
                return False
        elif header == b"Transfer-Encoding" and data.lower() == b"chunked":
            if self._transferDecoder is not None:
                self._bad_reason = "both Content-Length and Transfer-Encoding"
                return self._failChooseTransferDecoder()
            self.length = None
            self._transferDecoder = _BoundedChunkedDecoder(
                limit, self.requests[-1].handleContentChunk, self._finishRequestBody)
            return True
        elif header == b"Transfer-Encoding" and data.lower() != b"identity":
            self._bad_reason = f"Transfer-Encoding {data[:40]!r} is not supported"
        if header in (b"Content-Length", b"Transfer-Encoding"):
            if self._transferDecoder is not None:
                self._bad_reason = "both Content-Length and Transfer-Encoding"
        ok: bool = super()._maybeChooseTransferDecoder(header, data)
        return ok

    def allHeadersReceived(self) -> None:
        if self._refused:
            return
        self._head_armed = False
        if self.length != 0:
            self._body_armed = True
            self._arm("_body_call", self.limits.body_timeout, self._body_late)
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        if self._refused:
            return
        self._head_armed = self._body_armed = False
        self._head_lines = 0
        self._head_bytes = 0
        super().allContentReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        try:
            super().rawDataReceived(data)
        except _BodyTooLarge as e:
            self._refuse(413, f"chunked request body of at least {e.size} bytes is larger "
                              f"than {self.limits.max_body} bytes")

    def timeoutConnection(self) -> None:
        if self._idle_paused:
            return  # a request is being answered (Twisted would have cancelled the timer)
        if self._head_armed or self._body_armed:
            return  # within a request its own deadline governs (and answers 408)
        self.log.info("Closing idle connection from {peer} (nothing received for {t:g} s)",
                      peer=self._peer(), t=self.limits.idle_timeout)
        self._refused = True
        self._cancel_deadlines()
        self._abortingCall = self.callLater(self.limits.close_grace, self.forceAbortClient)
        self.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self._lost = True
        self._cancel_deadlines()
        super().connectionLost(reason)


class LimitedRequest(Request):
    """A Request that stops buffering a body larger than the site's ``max_body``."""

    too_large = False

    def gotLength(self, length: int | None) -> None:
        limit = getattr(getattr(self.channel, "site", None), "max_body", None)
        if limit is not None and length is not None and length > limit:
            self.too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.too_large:
            return
        limit = getattr(getattr(self.channel, "site", None), "max_body", None)
        content = self.content
        if limit is not None and content is not None and content.tell() + len(data) > limit:
            self.too_large = True
            content.seek(0)
            content.truncate()
            return
        super().handleContentChunk(data)


class EVSEHTTPServer:
    """The HTTP face of the EVSE's 2030.5 server."""

    log = Logger()

    def __init__(self, resources: EVSEResources, *, max_body: int | None = None,
                 identify: Callable[[Any], PeerIdentity | None] = peer_identity,
                 port_of: Callable[[str], int | None] | None = None,
                 limits: HTTPLimits | None = None, clock: Any = None) -> None:
        self.resources = resources
        if limits is None:
            limits = HTTPLimits() if max_body is None else HTTPLimits(max_body=max_body)
        elif max_body is not None and max_body != limits.max_body:
            raise ValueError("max_body and limits.max_body differ")
        self.limits = limits
        self.max_body = limits.max_body
        self.clock = clock
        """Schedules the connections' deadlines (the global reactor when None)."""
        self._identify = identify
        self.port_of = port_of
        """Which port a connection came in on, from the server address it reached (the
        network plane knows each port's prefix); None: the first free port."""

    def resource(self) -> Resource:
        """The twisted.web resource answering every path."""
        return _Root(self)

    def site(self) -> Site:
        """A twisted.web Site serving this server over :class:`LimitedHTTPChannel` (the
        limits and deadlines of :attr:`limits`), with no access log and no form decoding
        (2030.5 never posts forms)."""
        site = Site(self.resource(), parsePOSTFormSubmission=False, reactor=self.clock)
        site.protocol = LimitedHTTPChannel  # type: ignore[assignment]
        site.requestFactory = LimitedRequest
        site.max_body = self.max_body  # type: ignore[attr-defined]
        site.limits = self.limits  # type: ignore[attr-defined]
        site.timeOut = self.limits.idle_timeout
        site.log = lambda request: None  # type: ignore[method-assign]
        site.noisy = False
        return site

    def dispatch(self, request: IRequest) -> bytes:
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        try:
            return self._handle(request, method, path)
        except HTTPError as e:
            return self._error(request, e)
        except Exception:
            self.log.failure("{method} {path} failed", method=method, path=path)
            return self._error(request, HTTPError(500, "internal error"))

    def _handle(self, request: IRequest, method: str, path: str) -> bytes:
        if getattr(request, "too_large", False):
            raise HTTPError(413, f"request body larger than {self.max_body} bytes")
        channel = getattr(request, "channel", None)
        identity = getattr(channel, "peer_identity", None)
        if identity is None:
            identity = self._identify(request)
            if identity is not None and isinstance(channel, LimitedHTTPChannel):
                channel.peer_identity = identity  # a TLS connection's peer does not change
        if identity is None:
            raise HTTPError(403, "no client certificate identity")
        tree = self.resources
        if tree.session_for(identity) is None:
            index = None
            if self.port_of is not None:
                index = self.port_of(request.getHost().host)
            tree.attach(identity, index)
        if method == "GET":
            try:
                query = parse_query(request.args, max_limit=100)
            except ModelError as e:
                raise HTTPError(400, str(e))
            data = tree.render(path, query, identity)
            request.setHeader(b"Content-Type", _MEDIA)
            return data
        if method in ("PUT", "POST"):
            types = tree.body_type(path, method)
            deviations: list[Deviation] = []
            body = self._body(request, types, deviations.append)
            if deviations:  # lenient-mode deviations, a 2023 schemaVer: logged by the tree
                tree.deviations_accepted(identity, f"{method} {path}", deviations)
            if method == "PUT":
                tree.put(path, body, identity)
                request.setResponseCode(204)
                return b""
            created = tree.post(path, body, identity)
            request.setResponseCode(201 if created.new else 204)
            request.setHeader(b"Location", created.location.encode("utf-8"))
            return b""
        if method == "DELETE":
            tree.delete(path, identity)
            request.setResponseCode(204)
            return b""
        raise HTTPError(405, f"{method} is not supported", allow=tree.route(path).methods)

    def _body(self, request: IRequest, types: tuple[type, ...],
              on_deviation: Callable[[Deviation], None] | None = None) -> Any:
        ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if ctype != _MEDIA:
            shown = ctype.decode("ascii", "replace") or "none"
            raise HTTPError(415, f"Content-Type must be {MEDIA_TYPE}, got {shown}")
        data = request.content.read(self.max_body + 1)
        if len(data) > self.max_body:
            raise HTTPError(413, f"request body larger than {self.max_body} bytes")
        try:
            body = parse(data, None, max_size=self.max_body, lenient=self.resources.lenient,
                         on_deviation=on_deviation)
        except ModelError as e:
            raise HTTPError(400, str(e))
        if not isinstance(body, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise HTTPError(400, f"expected {wanted}, got {type(body).__name__}")
        return body

    def _error(self, request: IRequest, error: HTTPError) -> bytes:
        request.setResponseCode(error.code)
        if error.allow:
            request.setHeader(b"Allow", ", ".join(error.allow).encode("ascii"))
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        if error.code < 500:
            self.log.info("{method} {path}: {code} {reason}",
                          method=request.method.decode("ascii", "replace"),
                          path=request.path.decode("utf-8", "replace"), code=error.code,
                          reason=error.reason)
        return (error.reason + "\n").encode("utf-8")


class _Root(Resource):
    """A leaf resource handing every request, whatever its method, to the server."""

    isLeaf = True

    def __init__(self, server: EVSEHTTPServer) -> None:
        super().__init__()
        self._server = server

    def render(self, request: Any) -> bytes:
        return self._server.dispatch(request)
