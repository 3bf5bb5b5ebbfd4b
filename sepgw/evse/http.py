"""The EVSE's 2030.5 server over HTTP(S): one twisted.web leaf resource in front of
:class:`EVSEResources`.

Every request goes to :meth:`EVSEHTTPServer.dispatch`, and the resource tree finds the
resource in an exact-match dictionary (the URIs are fixed per session, V2G-4.1.2-1). A
routing framework adds nothing to one catch-all route: Klein's routing cost about a sixth
of the server's time under the periodic load of ``benchmarks/server.py``, so it is not
used here. Errors are mapped in one place: a client mistake gets its 4xx status and a
one-line reason in a text/plain body, and nothing is changed; a server fault gets 500 and
a logged traceback.

Bodies larger than ``max_body`` are refused with 413 while they arrive, without buffering
them (see :class:`LimitedRequest`).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from sepgw.evse.tree import EVSEResources, HTTPError
from sepgw.model import MEDIA_TYPE, ModelError, parse, serialize
from sepgw.model.paging import parse_query
from sepgw.security.identity import PeerIdentity, peer_identity

_MEDIA = MEDIA_TYPE.encode("ascii")


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

    def __init__(self, resources: EVSEResources, *, max_body: int = 65536,
                 identify: Callable[[Any], PeerIdentity | None] = peer_identity,
                 port_of: Callable[[str], int | None] | None = None) -> None:
        self.resources = resources
        self.max_body = max_body
        self._identify = identify
        self.port_of = port_of
        """Which port a connection came in on, from the server address it reached (the
        network plane knows each port's prefix); None: the first free port."""

    def resource(self) -> Resource:
        """The twisted.web resource answering every path."""
        return _Root(self)

    def site(self) -> Site:
        """A twisted.web Site serving this server, with body limits, no access log and no
        form decoding (2030.5 never posts forms)."""
        site = Site(self.resource(), parsePOSTFormSubmission=False)
        site.requestFactory = LimitedRequest
        site.max_body = self.max_body  # type: ignore[attr-defined]
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
        identity = self._identify(request)
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
            return self._document(request, tree.get(path, query, identity))
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

    @staticmethod
    def _document(request: IRequest, obj: Any) -> bytes:
        request.setHeader(b"Content-Type", _MEDIA)
        return serialize(obj)

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
