"""The console's HTTP(S) listener (twisted.web): static page, JSON state, Server-Sent Events,
actions.

Routes:

``GET /``, ``GET /static/NAME``       the page (package data; no credential: it holds no data)
``GET /api/state``                    the snapshot (:meth:`Model.snapshot`) and the CSRF token
``GET /api/events``                   ``text/event-stream``: ``state`` (a snapshot) first, then
                                      ``update`` events (status, new timeline events, new meter
                                      samples) at most every ``push_interval_s``, only after a
                                      change; a ``: keepalive`` comment every 15 s
``POST /api/action``                  ``{"action": ..., "port": ..., "percent": ...}``

Credentials (:class:`Guard`): a bearer token (``Authorization: Bearer``), a client
certificate (mutual TLS), or, only when neither is configured, being a loopback peer that
names a loopback host (DNS rebinding defence). Every ``/api/`` request needs one (401
otherwise). An action also needs ``X-Sepgw-CSRF`` equal to the token ``/api/state`` gives, a
JSON body, and no foreign ``Origin`` (403 otherwise): no cookies are ever used, so another
site's page can neither read the CSRF token nor send the header.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, cast
from urllib.parse import urlsplit

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger, globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from sepgw.console.bus import EventBus
from sepgw.console.model import ActionError

__all__ = ["ConsoleService", "Guard", "StreamResource", "console_root", "is_loopback"]

STATIC = {"index.html": "text/html; charset=utf-8", "console.js": "text/javascript",
          "console.css": "text/css"}
HEADERS = {
    b"content-security-policy": b"default-src 'self'; img-src 'self' data:; "
                                b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    b"x-content-type-options": b"nosniff", b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY", b"cache-control": b"no-store",
}
MAX_STREAMS = 16
MAX_BODY = 4096
KEEPALIVE_S = 15.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is this machine."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def _host_of(header: str | None) -> str:
    if not header:
        return ""
    return urlsplit("//" + header).hostname or ""


class Guard:
    """Who is asking: a credential id, or None when the request must be refused."""

    def __init__(self, token: str | None = None, mtls: bool = False,
                 csrf: str | None = None) -> None:
        self.token = token
        self.mtls = mtls
        self.csrf = csrf or secrets.token_urlsafe(24)
        self.token_id = None if token is None else (
            "token:" + hashlib.sha256(token.encode()).hexdigest()[:8])

    @property
    def open_on_loopback(self) -> bool:
        return self.token is None and not self.mtls

    def identify(self, request: Any) -> str | None:
        if self.mtls:
            cert = _peer_certificate(request)
            if cert is not None:
                return cert
        header = request.getHeader("authorization") or ""
        if self.token is not None and header.startswith("Bearer "):
            offered = header[7:].strip().encode()
            if hmac.compare_digest(offered, self.token.encode()):
                return self.token_id
            return None
        if self.open_on_loopback and is_loopback(_peer(request)) \
                and is_loopback(_host_of(request.getHeader("host"))):
            return "loopback"
        return None

    def csrf_ok(self, request: Any) -> str | None:
        """Why a state-changing request is refused, None when it may go on."""
        offered = (request.getHeader("x-sepgw-csrf") or "").encode()
        if not hmac.compare_digest(offered, self.csrf.encode()):
            return "missing or wrong X-Sepgw-CSRF header (take it from /api/state)"
        ctype = (request.getHeader("content-type") or "").split(";")[0].strip()
        if ctype != "application/json":
            return "the body must be application/json"
        origin = request.getHeader("origin")
        if origin is not None and origin != "null":
            host = request.getHeader("host") or ""
            if urlsplit(origin).netloc != host:
                return f"cross-origin request from {origin} refused"
        elif origin == "null":
            return "cross-origin request from an opaque origin refused"
        return None


def _peer(request: Any) -> str:
    address = request.getClientAddress()
    return str(getattr(address, "host", "") or "")


def _peer_certificate(request: Any) -> str | None:
    transport = getattr(request.channel, "transport", None)
    get = getattr(transport, "getPeerCertificate", None)
    cert = get() if get is not None else None
    if cert is None:
        return None
    cn = cert.get_subject().commonName
    digest = cert.digest("sha256").decode().replace(":", "").lower()[:16]
    return f"cert:{cn or '-'}:{digest}"


def _json(request: Any, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return (json.dumps(body) + "\n").encode()


class _Base(Resource):
    isLeaf = True

    def render(self, request: Any) -> Any:
        for k, v in HEADERS.items():
            request.setHeader(k, v)
        return super().render(request)


class StaticResource(_Base):
    """The page and its assets, from the package (no CDN)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.body = resources.files("sepgw.console").joinpath("static", name).read_bytes()

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", STATIC[self.name].encode())
        return self.body


class _Api(_Base):
    log = Logger()

    def __init__(self, console: "Console") -> None:
        super().__init__()
        self.console = console

    def render(self, request: Any) -> Any:
        who = self.console.guard.identify(request)
        if who is None:
            for k, v in HEADERS.items():
                request.setHeader(k, v)
            request.setHeader(b"www-authenticate", b'Bearer realm="sepgw console"')
            self.log.warn("console: {method} {path} from {peer} refused: no valid credential",
                          method=request.method.decode("latin-1"),
                          path=request.path.decode("latin-1"), peer=_peer(request))
            return _json(request, 401, {"error": "a credential is required: "
                                                 "Authorization: Bearer TOKEN, or a client "
                                                 "certificate"})
        request.console_who = who
        return super().render(request)


class StateResource(_Api):
    def render_GET(self, request: Any) -> bytes:
        body = self.console.model.snapshot()
        body["csrf"] = self.console.guard.csrf
        body["you"] = request.console_who
        return _json(request, 200, body)


class ActionResource(_Api):
    def render_POST(self, request: Any) -> Any:
        who = f"{request.console_who} from {_peer(request)}"
        refused = self.console.guard.csrf_ok(request)
        if refused is not None:
            self.log.warn("console: action by {who} refused: {why}", who=who, why=refused)
            return _json(request, 403, {"error": refused})
        raw = request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return _json(request, 413, {"error": f"body over {MAX_BODY} bytes"})
        try:
            action = json.loads(raw)
        except ValueError as e:
            return _json(request, 400, {"error": f"body is not JSON: {e}"})
        if not isinstance(action, dict):
            return _json(request, 400, {"error": "body must be a JSON object"})
        try:
            d = self.console.model.act(action, who)
        except ActionError as e:
            self.log.warn("console: {action} asked by {who} refused: {error}",
                          action=action, who=who, error=str(e))
            return _json(request, e.status, {"error": str(e)})
        self.log.info("console: {action} asked by {who}", action=action, who=who)

        def done(result: Any) -> None:
            if not request.finished and not getattr(request, "_gone", False):
                request.write(_json(request, 200, result))
                request.finish()

        def failed(failure: Any) -> None:
            error = failure.value
            status = error.status if isinstance(error, ActionError) else 500
            self.log.warn("console: {action} by {who} failed: {error}", action=action,
                          who=who, error=failure.getErrorMessage())
            done_body = _json(request, status, {"error": failure.getErrorMessage()})
            if not request.finished and not getattr(request, "_gone", False):
                request.write(done_body)
                request.finish()

        request.notifyFinish().addErrback(lambda _: setattr(request, "_gone", True))
        d.addCallbacks(done, failed)
        return NOT_DONE_YET


class _Stream:
    """One SSE subscriber: a snapshot, then coalesced, rate-limited updates."""

    def __init__(self, console: "Console", request: Any) -> None:
        self.console = console
        self.request = request
        model = console.model
        self.cursor = model.bus.cursor
        snapshot = model.snapshot()
        self.cursor = tuple(snapshot["cursor"])  # type: ignore[assignment]
        self._send("state", snapshot)
        self.last = console.clock.seconds()
        self.pending: Any = None
        self.unsubscribe = model.bus.subscribe(self.changed)
        self.keepalive = LoopingCall(self._keepalive)
        self.keepalive.clock = console.clock
        self.keepalive.start(KEEPALIVE_S, now=False)

    def _send(self, event: str, body: Any) -> None:
        self.request.write(f"event: {event}\ndata: {json.dumps(body)}\n\n".encode())

    def _keepalive(self) -> None:
        self.request.write(b": keepalive\n\n")

    def changed(self) -> None:
        if self.pending is None:
            wait = max(0.0, self.last + self.console.interval - self.console.clock.seconds())
            self.pending = self.console.clock.callLater(wait, self.flush)

    def flush(self) -> None:
        self.pending = None
        self.last = self.console.clock.seconds()
        body, self.cursor = self.console.model.update(self.cursor)
        self._send("update", body)

    def close(self) -> None:
        self.unsubscribe()
        if self.pending is not None and self.pending.active():
            self.pending.cancel()
        self.pending = None
        if self.keepalive.running:
            self.keepalive.stop()


class StreamResource(_Api):
    def render_GET(self, request: Any) -> Any:
        console = self.console
        if len(console.streams) >= MAX_STREAMS:
            return _json(request, 503, {"error": f"at most {MAX_STREAMS} live views"})
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"x-accel-buffering", b"no")
        stream = _Stream(console, request)
        console.add_stream(stream)
        request.notifyFinish().addBoth(lambda _: console.remove_stream(stream))
        return NOT_DONE_YET


class Console:
    """What the resources share: the model, the guard, the clock, the live streams."""

    def __init__(self, model: Any, guard: Guard, clock: Any, interval: float = 0.5) -> None:
        self.model = model
        self.guard = guard
        self.clock = clock
        self.interval = interval
        self.streams: list[_Stream] = []

    def add_stream(self, stream: _Stream) -> None:
        self.streams.append(stream)
        if len(self.streams) == 1:
            self.model.watched(True)

    def remove_stream(self, stream: _Stream) -> None:
        stream.close()
        if stream in self.streams:
            self.streams.remove(stream)
            if not self.streams:
                self.model.watched(False)

    def close(self) -> None:
        for stream in list(self.streams):
            self.remove_stream(stream)
            if not stream.request.finished:
                stream.request.finish()


class _Root(_Base):
    isLeaf = False

    def __init__(self) -> None:
        super().__init__()
        self.index = StaticResource("index.html")

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self.index
        return super().getChild(path, request)

    def render_GET(self, request: Any) -> bytes:
        request.redirect(b"/")
        return b""


def console_root(console: Console) -> Resource:
    """The resource tree."""
    root = _Root()
    static = Resource()
    for name in STATIC:
        static.putChild(name.encode(), StaticResource(name))
    root.putChild(b"static", static)
    api = Resource()
    api.putChild(b"state", StateResource(console))
    api.putChild(b"events", StreamResource(console))
    api.putChild(b"action", ActionResource(console))
    root.putChild(b"api", api)
    return root


def read_token(settings: Mapping[str, Any]) -> str | None:
    """The configured token (``token``, or the first line of ``token_file``); ValueError
    naming the problem."""
    if settings.get("token"):
        return str(settings["token"])
    path = settings.get("token_file")
    if path is None:
        return None
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise ValueError(f"console.token_file: cannot read {path}: {e.strerror}") from None
    token = lines[0].strip() if lines else ""
    if len(token) < 16:
        raise ValueError(f"console.token_file: {path}: the token must be at least 16 "
                         f"characters")
    return token


def _tls_options(settings: Mapping[str, Any]) -> Any:
    from twisted.internet import ssl

    try:
        pem = Path(settings["tls_cert"]).read_bytes() + b"\n" + Path(
            settings["tls_key"]).read_bytes()
        cert = ssl.PrivateCertificate.loadPEM(pem)
        cas = []
        if settings.get("client_ca") is not None:
            text = Path(settings["client_ca"]).read_text()
            end = "-----END CERTIFICATE-----"
            cas = [ssl.Certificate.loadPEM((part + end).encode()) for part in text.split(end)
                   if "BEGIN CERTIFICATE" in part]
            if not cas:
                raise ValueError(f"no certificate in {settings['client_ca']}")
    except Exception as e:  # OpenSSL, PEM and file errors alike
        raise ValueError(f"console TLS: {e}") from None
    if cas:
        return ssl.CertificateOptions(privateKey=cert.privateKey.original,
                                      certificate=cert.original, verify=True,
                                      caCerts=[c.original for c in cas],
                                      requireCertificate=True)
    return ssl.CertificateOptions(privateKey=cert.privateKey.original,
                                  certificate=cert.original)


class ConsoleService(Service):
    """Listens on ``[console] address``/``port`` and feeds the model from the log."""

    log = Logger()

    def __init__(self, reactor: Any, settings: Mapping[str, Any], model: Any) -> None:
        self.setName("console")
        self.reactor = reactor
        self.settings = settings
        self.model = model
        token = read_token(settings)
        self.tls = _tls_options(settings) if settings.get("tls_cert") is not None else None
        guard = Guard(token, mtls=settings.get("client_ca") is not None)
        self.console = Console(model, guard, reactor, float(settings["push_interval_s"]))
        self.site = Site(console_root(self.console))
        self.site.noisy = False
        self.site.displayTracebacks = False
        self.site.log = lambda request: None  # type: ignore[method-assign]  # ours is enough
        self.port: Any = None
        self.url: str | None = None

    def startService(self) -> None:
        super().startService()
        globalLogPublisher.addObserver(cast(ILogObserver, self.model.observe))
        address = self.settings["address"]
        interface = "127.0.0.1" if address == "localhost" else address
        if self.tls is not None:
            self.port = self.reactor.listenSSL(self.settings["port"], self.site, self.tls,
                                               interface=interface)
        else:
            self.port = self.reactor.listenTCP(self.settings["port"], self.site,
                                               interface=interface)
        host = self.port.getHost()
        shown = f"[{host.host}]" if ":" in host.host else host.host
        self.url = f"{'https' if self.tls else 'http'}://{shown}:{host.port}/"
        guard = self.console.guard
        how = ("open to loopback peers" if guard.open_on_loopback else
               "bearer token" + (" or client certificate" if guard.mtls else "")
               if guard.token else "client certificate")
        self.log.info("sepgw console at {url} ({how})", url=self.url, how=how)

    def stopService(self) -> Any:
        super().stopService()
        globalLogPublisher.removeObserver(cast(ILogObserver, self.model.observe))
        self.console.close()
        self.model.watched(False)
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def make_service(reactor: Any, settings: Mapping[str, Any], model_factory: Callable[
        [EventBus], Any]) -> ConsoleService:
    """A console service whose model ``model_factory(bus)`` builds on a fresh bus."""
    window = float(settings["meter_window_s"])
    bus = EventBus(meter_window_s=window, meter_size=max(64, int(window * 20)))
    return ConsoleService(reactor, settings, model_factory(bus))

