#!/usr/bin/env python3
"""Session churn: memory and file descriptors of the EVSE gateway over many PEV sessions.

In one process: the real ``EVSEGateway`` (default-like config, loopback transport,
simulated contactor and meter, test PKI) on the real reactor, and a PEV client over real
mutual TLS on loopback. One cycle = link up, a TLS connection, GET /dcap (the session is
attached), PUT DERStatus, the connection closed, link down (the session detached). RSS and
open fds are taken after a warm-up of ``--warmup`` cycles and after ``--cycles`` more;
targets: growth under 1 MiB and 0 fds for 10,000 cycles. Also the objects a full
collection finds unreachable (the garbage a per-attach ``gc.freeze()`` used to pin).

With ``--abuse N`` it then measures the well-behaved PEV's request latency (p50/p99 of a
GET on a persistent connection) alone and while N abusive connections (slow heads, idle
TLS, unfinished chunked bodies) are open.

    .venv/bin/python benchmarks/churn.py [--cycles 10000] [--abuse 200]
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_MIB = 1.0


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def trim() -> None:
    """Hand freed heap back to the OS (glibc), as the service does once at start-up, so
    that RSS shows memory in use rather than the allocator's free lists."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


CONFIG = """
[gateway]
state_dir = "{d}/state"
[tls]
cert = "{pki}/evse.pem"
key = "{pki}/evse.key"
ca = ["{pki}/serca.pem"]
[server]
addresses = ["::1"]
port = {port}
[site]
max_w = 7200.0
max_var = 3600.0
max_var_neg = 3600.0
max_v = 264.0
min_v = 211.0
v_ref = 240.0
max_charge_rate_w = 7200.0
max_discharge_rate_w = 7200.0
[[ports]]
name = "port1"
transport = {{ plugin = "loopback" }}
contactor = {{ plugin = "simulated" }}
meter = {{ plugin = "simulated" }}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--abuse", type=int, default=0,
                    help="abusive connections for the latency measurement (0: skip)")
    ap.add_argument("--trace", action="store_true", help="tracemalloc: where memory grew")
    args = ap.parse_args()

    from twisted.internet import defer, protocol, reactor
    from twisted.internet.endpoints import TCP6ClientEndpoint, connectProtocol, wrapClientTLS

    from sepgw.config import load
    from sepgw.interfaces import LinkPeer
    from sepgw.security.pki import init_pki
    from sepgw.security.tls import TLSSettings, client_connection_creator
    from sepgw.service.evse import EVSEGateway

    top = Path(tempfile.mkdtemp(prefix="sepgw-churn-"))
    init_pki(top / "pki")
    pki = top / "pki"
    port = free_port()
    (top / "sepgw.toml").write_text(CONFIG.format(d=top, pki=pki, port=port))
    gateway = EVSEGateway(load(top / "sepgw.toml", "evse"), reactor)
    pev = TLSSettings(pki / "pev.pem", pki / "pev.key", (pki / "serca.pem",))
    creator = client_connection_creator(pev)
    controller = gateway.ports[0].controller
    lfdi = pev.identity.lfdi
    now = int(time.time())
    dstat = (f'<DERStatus xmlns="urn:ieee:std:2030.5:ns"><genConnectStatus><dateTime>{now}'
             f'</dateTime><value>02</value></genConnectStatus><inverterStatus><dateTime>{now}'
             f'</dateTime><value>4</value></inverterStatus><readingTime>{now}</readingTime>'
             '</DERStatus>').encode()
    figures: dict[str, Any] = {}

    class Client(protocol.Protocol):
        def __init__(self, data: bytes) -> None:
            self.data = data
            self.received = b""
            self.done: defer.Deferred[bytes] = defer.Deferred()

        def connectionMade(self) -> None:
            self.transport.write(self.data)  # type: ignore[union-attr]

        def dataReceived(self, data: bytes) -> None:
            self.received += data

        def connectionLost(self, reason: Any = None) -> None:
            self.done.callback(self.received)

    def endpoint() -> Any:
        return wrapClientTLS(creator, TCP6ClientEndpoint(reactor, "::1", port))

    @defer.inlineCallbacks
    def one_cycle() -> Any:
        controller.link_up(LinkPeer(address="::1"))
        request = (b"GET /dcap HTTP/1.1\r\nHost: evse\r\n\r\n"
                   b"PUT /edev/0/der/1/dstat HTTP/1.1\r\nHost: evse\r\n"
                   b"Content-Type: application/sep+xml\r\nContent-Length: %d\r\n"
                   b"Connection: close\r\n\r\n%s" % (len(dstat), dstat))
        client = Client(request)
        yield connectProtocol(endpoint(), client)
        answer = yield client.done
        if answer.count(b"HTTP/1.1 2") != 2:
            raise RuntimeError(f"unexpected answer: {answer[:300]!r}")
        if not gateway.resources.sessions:
            raise RuntimeError("no session attached")
        controller.link_down("churn")

    @defer.inlineCallbacks
    def latency(samples: int) -> Any:
        """p50/p99 ms of GET /edev/0/derp/1/dderc on one persistent connection."""
        controller.link_up(LinkPeer(address="::1"))
        got: list[float] = []

        class Persistent(protocol.Protocol):
            waiting: defer.Deferred[None] | None = None
            buf = b""

            def dataReceived(self, data: bytes) -> None:
                self.buf += data
                if b"\r\n\r\n" in self.buf:
                    head, _, rest = self.buf.partition(b"\r\n\r\n")
                    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    if len(rest) >= length and self.waiting is not None:
                        self.buf = rest[length:]
                        d, self.waiting = self.waiting, None
                        d.callback(None)

        p = Persistent()
        yield connectProtocol(endpoint(), p)
        for i in range(samples + 5):
            p.waiting = defer.Deferred()
            t0 = time.perf_counter()
            p.transport.write(b"GET /edev/0/derp/1/dderc HTTP/1.1\r\nHost: evse\r\n\r\n")
            yield p.waiting
            if i >= 5:
                got.append((time.perf_counter() - t0) * 1000)
            d: defer.Deferred[None] = defer.Deferred()
            reactor.callLater(0.01, d.callback, None)
            yield d
        p.transport.loseConnection()
        got.sort()
        return statistics.median(got), got[int(len(got) * 0.99) - 1]

    @defer.inlineCallbacks
    def abuse(n: int) -> Any:
        """n abusive connections from many loopback addresses would need aliases; here they
        come from ::1, so the per-peer cap is raised for the measurement."""
        gate = gateway.https._factory
        gate.limits = type(gate.limits)(total=n + 16, per_peer=n + 16)
        kinds = [b"GET /dcap HTTP/1.1\r\nHost: ev",  # head never finished
                 b"PUT /edev/0/di HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                 b""]  # TLS then silence
        clients = []
        for i in range(n):
            c = Client(kinds[i % 3])
            if i % 3 == 2:
                clients.append(connectProtocol(endpoint(), protocol.Protocol()))
            else:
                clients.append(connectProtocol(endpoint(), c))
        yield defer.gatherResults(clients)
        return gate.total

    @defer.inlineCallbacks
    def run() -> Any:
        yield gateway.startService()
        yield gateway.started if hasattr(gateway, "started") else None
        for _ in range(args.warmup):
            yield one_cycle()
        gc.collect()
        objects_before = len(gc.get_objects())
        if args.trace:
            import tracemalloc

            tracemalloc.start(8)
            snap0 = tracemalloc.take_snapshot()
        trim()
        before = (rss_mib(), open_fds())
        t0 = time.perf_counter()
        for _ in range(args.cycles):
            yield one_cycle()
        elapsed = time.perf_counter() - t0
        unreachable = gc.collect()
        d: defer.Deferred[None] = defer.Deferred()
        reactor.callLater(0.5, d.callback, None)  # let closing sockets go
        yield d
        gc.collect()
        trim()
        after = (rss_mib(), open_fds())
        figures["objects_growth"] = len(gc.get_objects()) - objects_before
        if args.trace:
            snap1 = tracemalloc.take_snapshot()
            for stat in snap1.compare_to(snap0, "traceback")[:8]:
                print(stat)
                for line in stat.traceback.format()[-6:]:
                    print("   ", line)
        figures.update(cycles=args.cycles, seconds=round(elapsed, 1),
                       rss_before_mib=round(before[0], 2), rss_after_mib=round(after[0], 2),
                       rss_growth_mib=round(after[0] - before[0], 2), fds_before=before[1],
                       fds_after=after[1], unreachable_after_collect=unreachable)
        if args.abuse:
            figures["latency_alone_ms"] = [round(x, 2) for x in (yield latency(200))]
            figures["abusive_open"] = yield abuse(args.abuse)
            figures["latency_under_abuse_ms"] = [round(x, 2) for x in (yield latency(200))]
        yield gateway.stopService()

    def done(result: Any) -> None:
        if isinstance(result, Exception) or hasattr(result, "getTraceback"):
            print(result.getTraceback() if hasattr(result, "getTraceback") else result)
            figures["error"] = True
        reactor.stop()

    reactor.callWhenRunning(lambda: run().addBoth(done))
    reactor.run()
    for k, v in figures.items():
        print(f"{k}: {v}")
    if "error" in figures:
        return 1
    ok = figures["rss_growth_mib"] < TARGET_MIB and figures["fds_after"] <= figures["fds_before"]
    print(f"target (growth < {TARGET_MIB} MiB, 0 fds): {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
