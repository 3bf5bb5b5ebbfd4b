"""Hostile input and connection abuse against the EVSE's HTTP server (issue 11).

In memory: raw bytes into the real :class:`LimitedHTTPChannel` of ``EVSEHTTPServer.site()``
over a ``StringTransport``, deadlines on a ``task.Clock``. Over real sockets: mutual TLS on
loopback against ``HTTPSService`` (tests at the end). What is right is written out here:
RFC 9110/9112 status codes (400 malformed, 408 too slow, 413 body too large, 414 request
line too long, 431 header fields too large) and the limits chosen in this test.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.address import IPv6Address
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from treq.testing import StubTreq

from sepgw.config import load
from sepgw.evse.http import EVSEHTTPServer, HTTPLimits
from sepgw.model import ResponseList, parse
from sepgw.service.https import ConnectionLimits, GatedTLSFactory
from tests import scripted_pev as script
from tests.helpers import ETC
from tests.test_evse_server import ServerFixture

#: The limits these tests use, chosen here (not read from the code).
LIMITS = HTTPLimits(max_body=4096, max_line=8192, max_header_bytes=16384, max_headers=64,
                    head_timeout=10.0, body_timeout=30.0, idle_timeout=60.0, close_grace=5.0)
PEER = IPv6Address("TCP", "fd00::2", 49152)


class _Transport(StringTransport):
    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnecting = True


class StringTCPTransport(StringTransport):
    """A StringTransport that takes TCP options (twisted.web sets TCP_NODELAY)."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


class LogWatch:
    """Every log event while active; ``failures`` are the ones carrying a traceback."""

    def __init__(self, case: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self._seen)
        case.addCleanup(globalLogPublisher.removeObserver, self._seen)

    def _seen(self, event: dict[str, Any]) -> None:
        if len(self.events) < 10_000:
            self.events.append(event)
        if "log_failure" in event:
            self.failures.append(event)

    def refusals(self) -> list[dict[str, Any]]:
        return [e for e in self.events if "Refused HTTP request" in e.get("log_format", "")]


class Connection:
    """One connection to the real site, bytes in and out."""

    def __init__(self, f: ServerFixture, limits: HTTPLimits = LIMITS, site: Any = None) -> None:
        if site is None:
            site = EVSEHTTPServer(f.resources, identify=f._identify, limits=limits,
                                  clock=f.clock).site()
        self.site = site
        self.clock = f.clock
        self.proto = self.site.buildProtocol(PEER)
        self.transport = _Transport(peerAddress=PEER)
        self.proto.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def answer(self) -> bytes:
        return self.transport.value()

    def status(self) -> int | None:
        """The status of the (final, not 1xx) answer, None when there is none."""
        answer = self.answer()
        while answer.startswith(b"HTTP/1.1 1"):
            answer = answer.split(b"\r\n\r\n", 1)[-1]
        head = answer.split(b"\r\n", 1)[0].split(b" ")
        return int(head[1]) if len(head) > 1 and head[1].isdigit() else None

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)


def request(method: str, path: str, body: bytes | None = None, client: str = "pev",
            extra: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: evse\r\nX-Test-Client: {client}\r\n".encode()
    if body is not None:
        head += b"Content-Type: application/sep+xml\r\nContent-Length: %d\r\n" % len(body)
    return head + extra + b"\r\n" + (body or b"")


class ParseBoundTests(SynchronousTestCase):
    """Every parse bound answered with its status, a reason, a close, and no traceback."""

    def setUp(self) -> None:
        self.f = ServerFixture()
        self.log = LogWatch(self)
        self.c = Connection(self.f)

    def assertRefused(self, code: int, words: bytes) -> None:
        self.assertEqual(self.c.status(), code, self.c.answer()[:200])
        self.assertIn(words, self.c.answer())
        self.assertIn(b"Connection: close", self.c.answer())
        self.assertTrue(self.c.closing)
        self.assertEqual(self.log.failures, [])
        self.assertEqual(len(self.log.refusals()), 1)
        self.assertIn("fd00::2", self.log.refusals()[0]["peer"])

    def test_content_length_of_5000_digits(self) -> None:
        """A Content-Length of 5,000 digits (beyond Python's int() digit limit) is 413,
        not an exception inside twisted.web."""
        self.c.send(b"PUT /edev/0/der/1/ders HTTP/1.1\r\nContent-Length: " + b"9" * 5000
                    + b"\r\n\r\n")
        self.assertRefused(413, b"5000 digits")

    def test_content_length_2_64_without_body(self) -> None:
        """Content-Length 2^64 with no body is refused at once (413), not awaited."""
        self.c.send(b"PUT /edev/0/der/1/ders HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % 2**64)
        self.assertRefused(413, b"larger than 4096 bytes")

    def test_non_numeric_content_length(self) -> None:
        """A Content-Length that is not a number is 400 saying so."""
        self.c.send(b"PUT /x HTTP/1.1\r\nContent-Length: 12a\r\n\r\n")
        self.assertRefused(400, b"Content-Length")

    def test_huge_chunk_size(self) -> None:
        """A chunk announcing more than the body limit is 413 when its size is read."""
        self.c.send(b"PUT /edev/0/der/1/ders HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"FFFFFFFFFFFFFFFF\r\nabc")
        self.assertRefused(413, b"larger than 4096 bytes")

    def test_chunks_adding_up_over_the_limit(self) -> None:
        """Small chunks whose sum passes the body limit are 413."""
        self.c.send(b"PUT /edev/0/der/1/ders HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n"
                    + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n"
                    + b"1\r\nx\r\n")
        self.assertRefused(413, b"larger than 4096 bytes")

    def test_request_line_over_limit(self) -> None:
        """A request line longer than the limit (here 8 KiB; 16 KiB+ in the report) is 414,
        whether or not its end has arrived."""
        self.c.send(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
        self.assertRefused(414, b"request line longer than 8192 bytes")
        c2 = Connection(self.f)
        c2.send(b"GET /" + b"a" * 20000)
        self.assertEqual(c2.status(), 414)
        self.assertTrue(c2.closing)

    def test_cookie_of_100_kb(self) -> None:
        """A 100 KB Cookie header is 431."""
        self.c.send(b"GET /dcap HTTP/1.1\r\nCookie: a=" + b"b" * 100_000 + b"\r\n\r\n")
        self.assertRefused(431, b"request head larger than 16384 bytes")

    def test_content_type_with_10000_parameters(self) -> None:
        """A Content-Type with 10,000 parameters is 431."""
        params = b"".join(b"; p%d=v" % i for i in range(10_000))
        self.c.send(b"PUT /edev/0/di HTTP/1.1\r\nContent-Type: application/sep+xml" + params
                    + b"\r\nContent-Length: 0\r\n\r\n")
        self.assertRefused(431, b"request head larger than 16384 bytes")

    def test_many_small_headers_over_total(self) -> None:
        """Header fields each short but together over the head limit are 431."""
        lines = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 500) for i in range(40))
        self.c.send(b"GET /dcap HTTP/1.1\r\n" + lines + b"\r\n")
        self.assertRefused(431, b"request head larger than 16384 bytes")

    def test_too_many_header_fields(self) -> None:
        """More than 64 header fields is 431."""
        lines = b"".join(b"X-H%d: v\r\n" % i for i in range(65))
        self.c.send(b"GET /dcap HTTP/1.1\r\n" + lines + b"\r\n")
        self.assertRefused(431, b"more than 64 header fields")

    def test_10000_bare_crlfs(self) -> None:
        """10,000 bare CRLFs get one 400 and a close, and no AttributeError traceback."""
        self.c.send(b"\r\n" * 10_000)
        self.assertRefused(400, b"malformed request line")
        self.assertEqual(self.c.answer().count(b"HTTP/1.1"), 1)

    def test_bytes_after_a_refusal_are_ignored(self) -> None:
        """Whatever follows a refusal on the connection is dropped: one answer only."""
        self.c.send(b"BAD\r\n\r\n")
        self.c.send(request("GET", "/dcap"))
        self.assertRefused(400, b"malformed request line")
        self.assertEqual(self.c.answer().count(b"HTTP/1.1"), 1)

    def test_refused_connection_aborted_after_grace(self) -> None:
        """A refused connection whose peer never lets it close is aborted after the grace
        period (5 s here)."""
        self.c.send(b"\r\n\r\n")
        self.c.clock.advance(4.9)
        self.assertFalse(self.c.transport.aborted)
        self.c.clock.advance(0.2)
        self.assertTrue(self.c.transport.aborted)


class DeadlineTests(SynchronousTestCase):
    """Head and body deadlines, idle timeout, on the fake clock."""

    def setUp(self) -> None:
        self.f = ServerFixture()
        self.log = LogWatch(self)
        self.c = Connection(self.f)

    def test_missing_last_chunk_gets_408(self) -> None:
        """A chunked body whose last chunk never comes: 408 at the body deadline (30 s after
        the head), and not before."""
        self.c.send(b"PUT /edev/0/di HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        self.c.clock.advance(29.9)
        self.assertEqual(self.c.answer(), b"")
        self.c.clock.advance(0.2)
        self.assertEqual(self.c.status(), 408)
        self.assertIn(b"request body not complete within 30 s", self.c.answer())
        self.assertTrue(self.c.closing)
        self.assertEqual(self.log.failures, [])

    def test_body_shorter_than_content_length_gets_408(self) -> None:
        """A body that stops short of its Content-Length: 408 at the body deadline."""
        self.c.send(request("PUT", "/edev/0/di", b"<x/>")[:-2])
        self.c.clock.advance(30.1)
        self.assertEqual(self.c.status(), 408)

    def test_trickled_head_gets_408(self) -> None:
        """One byte every 5 s keeps the idle timer alive but not the head deadline: 408
        10 s after the first byte."""
        line = request("GET", "/dcap")
        for i in range(2):
            self.c.send(line[i:i + 1])
            self.c.clock.advance(5)
        self.c.clock.advance(0.01)
        self.assertEqual(self.c.status(), 408)
        self.assertIn(b"request head not complete within 10 s", self.c.answer())
        self.assertTrue(self.c.closing)

    def test_idle_connection_closed(self) -> None:
        """A connection with nothing received for 60 s is closed (and not before), and this
        is logged once with the peer."""
        self.c.clock.advance(59.9)
        self.assertFalse(self.c.closing)
        self.c.clock.advance(0.2)
        self.assertTrue(self.c.closing)
        closed = [e for e in self.log.events if "idle" in e.get("log_format", "")]
        self.assertEqual(len(closed), 1)
        self.assertIn("fd00::2", closed[0]["peer"])

    def test_well_behaved_keep_alive_not_disturbed(self) -> None:
        """Requests one after another on a persistent connection are all answered and no
        deadline fires between them (every timer is cancelled when a request completes)."""
        answers = 0
        for _ in range(5):
            self.c.send(request("GET", "/dcap"))
            self.c.clock.advance(50)
            answers = self.c.answer().count(b"HTTP/1.1 200")
        self.assertEqual(answers, 5)
        self.assertFalse(self.c.closing)
        self.assertNotIn(b" 408 ", self.c.answer())

    def test_deadline_reused_after_a_request_still_fires_on_time(self) -> None:
        """After a complete request, a head started 9 s later that never ends gets its 408
        10 s after its own first byte (not at the first request's deadline), and not
        before: a connection's deadline timer, reused, is re-armed for each request."""
        self.c.send(request("GET", "/dcap"))
        self.c.clock.advance(9)
        self.c.send(b"GET /dc")
        self.c.clock.advance(9.9)
        self.assertEqual(self.c.answer().count(b"HTTP/1.1 "), 1)
        self.c.clock.advance(0.2)
        self.assertIn(b"HTTP/1.1 408 ", self.c.answer())
        self.assertIn(b"request head not complete within 10 s", self.c.answer())

    def test_idle_after_requests_closed_60_s_after_the_last(self) -> None:
        """After requests 30 s apart, the connection is closed 60 s after the last one was
        answered, not before (the idle timer, kept through each request, restarts after)."""
        for _ in range(3):
            self.c.send(request("GET", "/dcap"))
            self.c.clock.advance(30)
        self.c.clock.advance(29.9)
        self.assertFalse(self.c.closing)
        self.c.clock.advance(0.2)
        self.assertTrue(self.c.closing)
        self.assertEqual(self.c.answer().count(b"HTTP/1.1 200"), 3)

    def test_keep_alive_requests_schedule_no_timer_each(self) -> None:
        """100 GETs and 100 PUTs on one keep-alive connection schedule a bounded number of
        timers between them, not one or two per request (each a push and a pop in the
        reactor's timer heap, per request of every PEV), and all are answered."""
        scheduled = []
        call_later = self.c.proto.callLater

        def counting(*args: Any, **kw: Any) -> Any:
            scheduled.append(args[1])
            return call_later(*args, **kw)

        self.c.proto.callLater = counting
        for _ in range(100):
            self.c.send(request("GET", "/dcap"))
            self.c.send(request("PUT", "/edev/0/di", b"<x/>"))
            self.c.clock.advance(0.5)
        self.assertEqual(self.c.answer().count(b"HTTP/1.1 "), 200)
        self.assertLessEqual(len(scheduled), 4, scheduled[:8])


class ValueBoundTests(SynchronousTestCase):
    """Integers over Python's 4,300-digit int() limit in bodies and queries are 400 naming
    the field, and change nothing."""

    def setUp(self) -> None:
        self.f = ServerFixture()
        # the default 64 KiB body limit, so that 5,000 digits reach the parser
        self.f.server = EVSEHTTPServer(self.f.resources, identify=self.f._identify)
        self.f.stub = StubTreq(self.f.server.resource())
        self.log = LogWatch(self)

    def test_body_integer_of_5000_digits(self) -> None:
        """<setESDelay> with 5,000 ones is 400 naming DERSettings/setESDelay; the stored
        DERSettings is unchanged."""
        good = script.der_settings(1_790_000_000, 7000)
        self.assertEqual(self.f.call("PUT", "/edev/0/der/1/ders", good)[0], 204)
        before = self.f.resources.sessions[0].written["ders"].resource
        body = good.replace(
            b"<setGradW>", b"<setESDelay>" + b"1" * 5000 + b"</setESDelay><setGradW>")
        code, _, data = self.f.call("PUT", "/edev/0/der/1/ders", body)
        self.assertEqual(code, 400, data)
        self.assertIn(b"setESDelay", data)
        self.assertLess(len(data), 300)
        self.assertIs(self.f.resources.sessions[0].written["ders"].resource, before)
        self.assertEqual(self.log.failures, [])

    def test_query_integer_of_5000_digits(self) -> None:
        """?l= with 5,000 digits is 400 naming query/l."""
        for name in ("l", "s", "a"):
            code, _, data = self.f.call("GET", f"/edev/0/derp/1/derc?{name}=" + "7" * 5000)
            self.assertEqual(code, 400, data)
            self.assertIn(f"query/{name}".encode(), data)
        self.assertEqual(self.log.failures, [])


class SessionBoundTests(SynchronousTestCase):
    """Per-session collections are bounded with the documented behaviour at the limit."""

    def setUp(self) -> None:
        self.f = ServerFixture()
        self.assertEqual(self.f.call("GET", "/dcap")[0], 200)  # attaches the session
        self.session = self.f.resources.sessions[0]
        self.controls = [bytes(c.mRID).hex().upper()
                         for c in self.f.resources.management(self.session).all_controls()]

    def test_response_list_keeps_the_newest_64(self) -> None:
        """2,000 Responses are all accepted (201); the ResponseList serves the newest 64
        (oldest first dropped: their hrefs 404), and the latest status of each control is
        still known to the policy."""
        lfdi = self.f.ids["pev"].lfdi
        subject = self.controls[0]
        first = None
        for i in range(2_000):
            status = 1 + i % 3  # received, started, completed
            code, headers, _ = self.f.call("POST", "/rsps/0/rsp",
                                           script.response(lfdi, subject, status, i))
            self.assertEqual(code, 201)
            first = first or headers["location"]
        self.assertLessEqual(len(self.session.response_order), 64)
        self.assertLessEqual(len(self.session.responses), 256)
        code, _, data = self.f.call("GET", "/rsps/0/rsp?l=100")
        listing = parse(data)
        assert isinstance(listing, ResponseList)
        self.assertEqual(listing.all, 64)
        self.assertEqual(self.f.call("GET", first)[0], 404)
        self.assertEqual(self.session.statuses(bytes.fromhex(subject)), {1, 2, 3})
        last = self.f.call("GET", f"/rsps/0/rsp/{self.session.responses_received - 1}")
        self.assertEqual(last[0], 200)

    def test_mirror_meter_readings_capped_at_16(self) -> None:
        """A 17th MirrorMeterReading (new mRID) is refused with 400 naming the limit, and the
        MirrorUsagePoint keeps the 16 it had."""
        lfdi = self.f.ids["pev"].lfdi
        self.assertEqual(self.f.call("POST", "/mup", script.mirror_usage_point(lfdi))[0], 201)
        mirror = self.session.mirror
        assert mirror is not None
        i = 0
        while len(mirror.meters) < 16:
            body = script.mirror_meter_reading(f"{i:02X}", f"Voltage {i}", 29, -2, None)
            code, _, data = self.f.call("POST", mirror.href, body)
            self.assertIn(code, (201, 204), data)
            i += 1
        body = script.mirror_meter_reading("FF", "Voltage 17", 29, -2, None)
        code, _, data = self.f.call("POST", mirror.href, body)
        self.assertEqual(code, 400)
        self.assertIn(b"at most 16 MirrorMeterReadings", data)
        self.assertEqual(len(mirror.meters), 16)


class ConnectionCapTests(SynchronousTestCase):
    """The overall and per-peer connection caps of the TLS listener."""

    def setUp(self) -> None:
        self.f = ServerFixture()
        self.log = LogWatch(self)
        from sepgw.security.tls import server_connection_creator, TLSSettings
        from tests.helpers import shared_pki

        pki = shared_pki()
        tls = TLSSettings(pki / "evse.pem", pki / "evse.key", (pki / "serca.pem",))
        site = EVSEHTTPServer(self.f.resources, clock=self.f.clock).site()
        self.gate = GatedTLSFactory(server_connection_creator(tls), site,
                                    ConnectionLimits(total=5, per_peer=2))

    def connect(self, host: str) -> Any:
        address = IPv6Address("TCP", host, 40000)
        p = self.gate.buildProtocol(address)
        if p is not None:
            p.makeConnection(StringTCPTransport(peerAddress=address))
        return p

    def test_per_peer_cap(self) -> None:
        """A third connection from one address is refused (no protocol: the socket is
        closed before TLS) and logged once with the peer; other addresses still get in."""
        a = [self.connect("fd00::2") for _ in range(3)]
        self.assertIsNotNone(a[0])
        self.assertIsNotNone(a[1])
        self.assertIsNone(a[2])
        self.assertIsNotNone(self.connect("fd00::3"))
        refused = [e for e in self.log.events if "Refused connection" in e.get("log_format", "")]
        self.assertEqual(len(refused), 1)
        self.assertIn("fd00::2", refused[0]["peer"])

    def test_overall_cap_and_release(self) -> None:
        """At 5 open connections the next is refused; when one closes a new one is served."""
        opened = [self.connect(f"fd00::{i}") for i in range(1, 6)]
        self.assertTrue(all(p is not None for p in opened))
        self.assertIsNone(self.connect("fd00::9"))
        opened[0].connectionLost(protocol.connectionDone)
        self.assertIsNotNone(self.connect("fd00::9"))
        self.assertIsNone(self.connect("fd00::a"))
        self.assertEqual(self.gate.total, 5)


class ConfigTests(SynchronousTestCase):
    """The limits are ``[server]`` keys with the documented defaults."""

    def test_defaults(self) -> None:
        """The sample config's [server] gives the defaults docs/security.md lists."""
        server = load(ETC / "sepgw.toml", "evse")["server"]
        self.assertEqual(HTTPLimits.from_config(server),
                         HTTPLimits(max_body=65536, max_line=8192, max_header_bytes=16384,
                                    max_headers=64, head_timeout=10.0, body_timeout=30.0,
                                    idle_timeout=60.0))
        self.assertEqual((server["max_connections"], server["max_connections_per_peer"]),
                         (256, 8))


class _Client(protocol.Protocol):
    """Collects what the server sends; ``lost`` fires with it when the connection ends."""

    def __init__(self, send: bytes = b"") -> None:
        self.to_send = send
        self.received = b""
        self.lost: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        if self.to_send:
            self.transport.write(self.to_send)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(self.received)


class RealSocketTests(TestCase):
    """Mutual TLS on loopback against the real HTTPSService: every abuse gets its answer
    and the connection really closes (no sleeps: each test waits for the close)."""

    timeout = 20

    def setUp(self) -> Any:
        from sepgw.security.tls import TLSSettings, server_connection_creator
        from sepgw.service.https import HTTPSService
        from tests.helpers import shared_pki

        pki = shared_pki()
        ca = (pki / "serca.pem",)
        self.pev_tls = TLSSettings(pki / "pev.pem", pki / "pev.key", ca)
        evse_tls = TLSSettings(pki / "evse.pem", pki / "evse.key", ca)
        self.f = ServerFixture()
        limits = HTTPLimits(max_body=4096, head_timeout=0.5, body_timeout=0.5,
                            idle_timeout=0.5, close_grace=0.5)
        server = EVSEHTTPServer(self.f.resources, limits=limits, clock=reactor)
        self.service = HTTPSService(reactor, ["::1"], 0, server_connection_creator(evse_tls),
                                    server.site(), limits=ConnectionLimits(16, 2))
        self.log = LogWatch(self)
        d = self.service.startService()
        self.addCleanup(self.service.stopService)
        return d

    def connect(self, send: bytes = b"", tls: bool = True) -> defer.Deferred[bytes]:
        from twisted.internet.endpoints import TCP6ClientEndpoint, connectProtocol, wrapClientTLS

        from sepgw.security.tls import client_connection_creator

        port = self.service.ports[0].getHost().port
        endpoint: Any = TCP6ClientEndpoint(reactor, "::1", port)
        if tls:
            endpoint = wrapClientTLS(client_connection_creator(self.pev_tls), endpoint)
        client = _Client(send)
        self.clients = getattr(self, "clients", [])
        self.clients.append(client)
        return connectProtocol(endpoint, client).addCallback(lambda _: client.lost)

    @defer.inlineCallbacks
    def test_long_request_line_answered_and_closed(self) -> Any:
        """A 20 KB request line over TLS gets 414 and the connection closes (it used to
        stay open: twisted's line-length close waits for a producer that never leaves)."""
        answer = yield self.connect(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 414 "), answer[:80])
        self.assertEqual(self.log.failures, [])

    @defer.inlineCallbacks
    def test_content_length_huge_answered_and_closed(self) -> Any:
        """Content-Length 2^64 and no body: 413 at once and closed."""
        answer = yield self.connect(b"PUT /edev/0/di HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
                                    % 2**64)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:80])

    @defer.inlineCallbacks
    def test_unfinished_head_gets_408(self) -> Any:
        """A head that never ends: 408 at the head deadline, then closed."""
        answer = yield self.connect(b"GET /dcap HTTP/1.1\r\nHost: evse\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:80])
        self.assertIn(b"request head not complete", answer)

    @defer.inlineCallbacks
    def test_missing_last_chunk_gets_408(self) -> Any:
        """A chunked body without its last chunk: 408 at the body deadline, then closed."""
        answer = yield self.connect(b"PUT /edev/0/di HTTP/1.1\r\nTransfer-Encoding: chunked"
                                    b"\r\n\r\n3\r\nabc\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:80])

    @defer.inlineCallbacks
    def test_silent_tcp_client_closed(self) -> Any:
        """A TCP client that never starts TLS is closed at the idle timeout."""
        answer = yield self.connect(b"", tls=False)
        self.assertEqual(answer, b"")
        idle = [e for e in self.log.events if "idle" in e.get("log_format", "")]
        self.assertEqual(len(idle), 1)

    @defer.inlineCallbacks
    def test_per_peer_cap_on_real_sockets(self) -> Any:
        """With two connections from ::1 open, a third is closed at once and logged; the
        first two are served (each then closes at its idle timeout)."""
        first = [self.connect(b"") for _ in range(2)]
        yield defer.DeferredList([defer.succeed(None)])
        while self.service._factory.total < 2:  # type: ignore[attr-defined]
            yield _tick()
        third = yield self.connect(b"GET /dcap HTTP/1.1\r\n\r\n")
        self.assertEqual(third, b"")
        yield defer.gatherResults(first)
        refused = [e for e in self.log.events if "Refused connection" in e.get("log_format", "")]
        self.assertEqual(len(refused), 1)


def _tick() -> defer.Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(reactor, 0.01, lambda: None)
