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

With ``--pev`` a cycle is instead what a PEV of ``benchmarks/server.py --scenario churn`` does
(the load generator's own ``PEV``: discovery, DeviceInformation, PowerStatus, DER resources,
MirrorUsagePoint and readings, Responses, two subscriptions with its own notification server),
then its departure (link down and up, its pool and notification server closed); ``--resident
R`` PEVs stay connected on ports of their own, polling and answering the controls the site
sharing sends them. Object counts by type, glibc's bytes in use, RSS (with and without
``malloc_trim``) and, with ``--trace``, tracemalloc by traceback are compared after N and 2N
cycles (N = cycles / 2); containers and types growing in both halves are traced to their holders.

    .venv/bin/python benchmarks/churn.py [--cycles 10000] [--abuse 200]
    .venv/bin/python benchmarks/churn.py --pev --cycles 3000 --resident 5 [--trace]
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
    ap.add_argument("--pev", action="store_true",
                    help="full PEV cycles (see full_pev_cycles): exchange, Responses, "
                         "subscriptions with a notification server; measured at N and 2N")
    ap.add_argument("--identities", type=int, default=80,
                    help="--pev: PEV certificates used in turn (over 64 evicts notifier agents)")
    ap.add_argument("--resident", type=int, default=0,
                    help="--pev: PEVs connected throughout on ports of their own (authorized, "
                         "subscribed, a DERStatus every second), notified as the others churn")
    args = ap.parse_args()
    if args.pev:
        return full_pev_cycles(args)

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


def malloc_in_use_kib() -> float:
    """glibc's bytes in use by malloc (mallinfo2 uordblks: OpenSSL, buffers, big objects),
    KiB; -1 where mallinfo2 is missing."""
    import ctypes
    import ctypes.util

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    name = ctypes.util.find_library("c")
    try:
        f = ctypes.CDLL(name).mallinfo2
    except (OSError, AttributeError, TypeError):
        return -1.0
    f.restype = MallInfo2
    info = f()
    return (info.uordblks + info.hblkhd) / 1024.0


def type_counts() -> dict[str, int]:
    from collections import Counter

    return dict(Counter(type(o).__qualname__ for o in gc.get_objects()))


def full_pev_cycles(args: argparse.Namespace) -> int:
    """What a PEV of benchmarks/server.py's churn scenario does, ``--cycles`` times after a
    warm-up, in one process over real mutual TLS on loopback: the gateway as that scenario
    configures it (j3072 policy with etc/approved-pevs.txt, GatedTLSFactory), the load
    generator's own ``PEV`` (its Agent and HTTPConnectionPool, its notification server) doing
    the whole setup with ``authorize`` (exchange, MirrorUsagePoint and readings, Responses,
    two subscriptions), then the departure: the port's link taken down and up (as
    _bench_link.py does), the PEV's pool and notification server closed. PEV identities are
    used in turn (``--identities``). Object counts by type, tracemalloc (``--trace``) and RSS
    are taken after the warm-up (0), after N and after 2N cycles (N = cycles / 2)."""
    from twisted.internet import reactor

    run, ctx = pev_churn(args, quiet_log=True)
    marks, recorder, problems, live_sessions, half = (
        ctx.marks, ctx.recorder, ctx.problems, ctx.live_sessions, ctx.half)
    failure: list[Any] = []

    def done(result: Any) -> None:
        if hasattr(result, "getTraceback"):
            failure.append(result.getTraceback())
        reactor.stop()

    reactor.callWhenRunning(lambda: run().addBoth(done))
    reactor.run()
    if failure:
        print(failure[0])
        print("\n".join(problems))
        return 1
    m0, mn, m2 = marks
    kept = {t: m2["types"].get(t, 0) for t in ("PEVSession", "DERControlResponse", "DERControl",
                                               "Subscriptions", "_Delivery")}
    print(f"  at 2N: {kept}; responses stored by live sessions: "
          f"{sum(len(s.response_order) for s in live_sessions())}")
    print(f"cycles per mark N={half} (warm-up {args.warmup}, {args.identities} identities, "
          f"{args.resident} resident PEVs), "
          f"{m2['seconds']:.1f} s for 2N; notifications received {recorder.notifications}")
    for m in marks:
        print(f"  at {m['label']:>2} ({m['cycles']} cycles): rss {m['rss']:.2f} MiB "
              f"(before malloc_trim {m['rss_untrimmed']:.2f}), fds "
              f"{m['fds']}, sessions {m['sessions']}, Responses of no live session "
              f"{m['orphan_responses']}, gc objects {m['objects']}, malloc in use {m['malloc_kib']:.0f} KiB, "
              f"Python blocks {m['pyblocks']}"
              + (f", traced {m['traced'] / 1024:.1f} KiB" if "traced" in m else ""))
    print(f"  growth 0->N: rss {mn['rss'] - m0['rss']:+.2f} MiB, objects "
          f"{mn['objects'] - m0['objects']:+d}; N->2N: rss {m2['rss'] - mn['rss']:+.2f} MiB, "
          f"objects {m2['objects'] - mn['objects']:+d}")
    grew = {t: (mn["types"].get(t, 0) - m0["types"].get(t, 0),
                m2["types"].get(t, 0) - mn["types"].get(t, 0))
            for t in set(m2["types"]) | set(m0["types"])}
    print("  object types by growth (0->N, N->2N):")
    for t, (a, b) in sorted(grew.items(), key=lambda kv: -abs(kv[1][1]))[:15]:
        print(f"    {t}: {a:+d}, {b:+d}")
    if args.trace:
        for a, b in ((m0, mn), (mn, m2)):
            print(f"  tracemalloc {a['label']}->{b['label']}: "
                  f"{(b['traced'] - a['traced']) / 1024:+.1f} KiB; top by traceback:")
            for stat in b["snap"].compare_to(a["snap"], "traceback")[:6]:
                print(f"    {stat.size_diff / 1024:+.1f} KiB {stat.count_diff:+d} blocks")
                for line in stat.traceback.format(limit=6):
                    print("      ", line)
    grown = [i for i, n in m2["sizes"].items()
             if mn["sizes"].get(i, 0) > m0["sizes"].get(i, 0) and n > mn["sizes"].get(i, 0)]
    print(f"  containers (len >= 20) longer at N than at 0 and at 2N than at N: {len(grown)}")
    if grown:
        wanted = set(grown)
        by_id = {id(c): c for o in gc.get_objects() for c in [o] + gc.get_referents(o)
                 if id(c) in wanted}
        for i in grown[:5]:
            o = by_id.get(i)
            if o is None:
                continue
            print(f"    {type(o).__qualname__} len {m0['sizes'].get(i, 0)} -> {mn['sizes'][i]} -> "
                  f"{m2['sizes'][i]}: {repr(o)[:120]}")
            show_referrers(o, 2, "      ")
        del by_id
    steady = [t for t, (a, b) in grew.items() if a > 0 and b > 0 and b >= a * 0.5]
    if steady:
        print("  holders of the types growing in both halves (gc.get_referrers, 3 levels):")
        for t in sorted(steady, key=lambda t: -grew[t][1])[:3]:
            last = None
            for o in gc.get_objects():
                if type(o).__qualname__ == t:
                    last = o
            print(f"    {t}: {repr(last)[:100]}")
            show_referrers(last, 3, "      ")
            del last
    if problems:
        print("warnings logged (first ones):\n  " + "\n  ".join(problems[:8]))
    return 0


def pev_churn(args: argparse.Namespace, quiet_log: bool = False) -> tuple[Any, Any]:
    """``(run, ctx)``: ``run()`` returns a Deferred that starts the gateway, does the
    cycles of :func:`full_pev_cycles` with its marks (in ``ctx.marks``) and stops it; on the
    running reactor (a trial test's, too). With ``quiet_log`` the global log keeps the
    warnings (``ctx.problems``) and drops the rest."""
    from types import SimpleNamespace

    from twisted.internet import defer, reactor
    from twisted.logger import globalLogBeginner

    from collections import deque

    import benchmarks._server_load as load_mod
    from benchmarks.server import ensure_pki, write_config
    from sepgw.config import load
    from sepgw.interfaces import LinkPeer
    from sepgw.service.evse import EVSEGateway

    problems: list[str] = []

    def observer(event: dict[str, Any]) -> None:  # keep warnings, drop the rest (no buffer)
        level = event.get("log_level")
        if level is not None and level.name in ("warn", "error", "critical") \
                and len(problems) < 20:
            from twisted.logger import formatEvent
            problems.append(formatEvent(event))
    keep: Any = observer
    if quiet_log:
        globalLogBeginner.beginLoggingTo([keep], redirectStandardIO=False)

    top = Path(tempfile.mkdtemp(prefix="sepgw-churn-pev-"))
    pki = ensure_pki(top / "pki", args.identities + args.resident)
    port = free_port4()
    gateway = EVSEGateway(load(write_config(top, pki, port, 1 + args.resident, "info"), "evse"),
                          reactor)
    recorder = load_mod.Recorder()
    everyone = [load_mod.PEV(f"pev{i}", pki, f"https://127.0.0.1:{port}", recorder)
                for i in range(args.identities + args.resident)]
    for p in everyone:
        p.authorize = True
    residents, pevs = everyone[:args.resident], everyone[args.resident:]
    half = max(1, args.cycles // 2)
    marks: list[dict[str, Any]] = []
    state = {"k": 0}

    @defer.inlineCallbacks
    def one_cycle() -> Any:
        pev = pevs[state["k"] % len(pevs)]
        state["k"] += 1
        pev.pool = load_mod.HTTPConnectionPool(reactor, persistent=True)
        pev.pool.maxPersistentPerHost = 1
        pev.pool.retryAutomatically = False
        pev.agent = load_mod.Agent(reactor, contextFactory=load_mod.client_policy(pev.settings),
                                   pool=pev.pool)
        pev.responded = set()
        pev.last_derc = b""
        yield pev.setup_sepgw("/dcap")
        if not gateway.resources.sessions:
            raise RuntimeError("no session attached")
        # the departure (the load generator's Churn.leave, then _bench_link's cycle)
        assert pev.port_index is not None
        controller = gateway.ports[pev.port_index].controller
        controller.link_down("PEV left (benchmark)")
        controller.link_up(LinkPeer(address="127.0.0.1"))
        yield pev.pool.closeCachedConnections()
        if pev.listener is not None:
            yield pev.listener.stopListening()
            pev.listener = None

    def live_sessions() -> list[Any]:
        return [o for o in gc.get_objects() if type(o).__name__ == "PEVSession"]

    def container_sizes() -> dict[int, int]:
        """len of the containers of 20 or more, the collector's and those it does not track
        (dicts of atomic values), by id."""
        sizes: dict[int, int] = {}
        for o in gc.get_objects():
            for c in [o] + [r for r in gc.get_referents(o)
                            if isinstance(r, (dict, set)) and not gc.is_tracked(r)]:
                if isinstance(c, (dict, list, set, deque)) and len(c) >= 20:
                    sizes[id(c)] = len(c)
        return sizes

    def orphan_responses() -> int:
        """DERControlResponses that no live session stores (those of ended sessions)."""
        held = {id(r) for sess in live_sessions()
                for r in list(sess.response_order) + list(sess.responses.values())}
        return sum(1 for o in gc.get_objects()
                   if type(o).__name__ == "DERControlResponse" and id(o) not in held)

    def settle() -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        reactor.callLater(0.5, d.callback, None)  # closing sockets, notifications in flight
        return d

    @defer.inlineCallbacks
    def mark(label: str) -> Any:
        yield settle()
        gc.collect()
        untrimmed = rss_mib()  # as the service runs: no malloc_trim after start-up
        trim()
        m: dict[str, Any] = {"label": label, "cycles": state["k"], "rss": rss_mib(),
                             "rss_untrimmed": untrimmed,
                             "malloc_kib": malloc_in_use_kib(),
                             "pyblocks": sys.getallocatedblocks(),
                             "fds": open_fds(), "types": type_counts(),
                             "objects": len(gc.get_objects()),
                             "sessions": len(live_sessions()),
                             "orphan_responses": orphan_responses(),
                             "sizes": container_sizes()}
        if args.trace:
            import tracemalloc

            m["snap"] = tracemalloc.take_snapshot()
            m["traced"] = tracemalloc.get_traced_memory()[0]
        marks.append(m)

    @defer.inlineCallbacks
    def run() -> Any:
        yield gateway.startService()
        from twisted.internet.task import LoopingCall

        @defer.inlineCallbacks
        def resident_tick(p: Any) -> Any:
            """The mix's part that matters here: DERStatus, then the Responses (received,
            started) to every new control of its DERControlList (the site shares)."""
            if p.busy:
                return
            p.busy = True
            try:
                now = int(time.time())
                yield p.http("PUT", p.hrefs["dstat"], load_mod.der_status(now, 3), (204,))
                _, _, data = yield p.http("GET", p.hrefs["derc"])
                yield p.respond(data, now, None)
            finally:
                p.busy = False

        @defer.inlineCallbacks
        def settle_resident(p: Any) -> Any:
            yield p.setup_sepgw("/dcap")
            p.busy = False
            p.tick = None

            def tick() -> Any:
                p.tick = resident_tick(p).addErrback(
                    lambda f: problems.append(f"resident {p.name}: {f.getErrorMessage()}"))
                return p.tick

            p.beat = LoopingCall(tick)
            p.beat.clock = reactor
            p.beat.start(1.0, now=False)

        sem = defer.DeferredSemaphore(8)
        yield defer.gatherResults([sem.run(settle_resident, p) for p in residents],
                                  consumeErrors=True)
        for _ in range(args.warmup):
            yield one_cycle()
        if args.trace:
            import tracemalloc

            tracemalloc.start(12)
        yield mark("0")
        t0 = time.perf_counter()
        for _ in range(half):
            yield one_cycle()
        yield mark("N")
        for _ in range(half):
            yield one_cycle()
        yield mark("2N")
        marks[-1]["seconds"] = time.perf_counter() - t0
        for p in residents:
            p.beat.stop()
            if p.tick is not None:
                yield p.tick  # a request in flight keeps its connection out of the cache
            yield p.pool.closeCachedConnections()
            yield p.listener.stopListening()
        yield gateway.stopService()

    return run, SimpleNamespace(marks=marks, recorder=recorder, problems=problems,
                                live_sessions=live_sessions, half=half)


def show_referrers(obj: Any, depth: int, indent: str) -> None:
    """Print who refers to ``obj`` (not frames or the lists made here), ``depth`` levels up."""
    import types

    if depth == 0:
        return
    for r in gc.get_referrers(obj)[:6]:
        if isinstance(r, (types.FrameType, list)) or r is obj:
            continue
        text = repr(r)[:140] if not isinstance(r, dict) else \
            f"dict keys {list(r)[:8]!r}"[:140]
        print(f"{indent}<- {type(r).__qualname__}: {text}")
        if not isinstance(r, (list, tuple)) or len(r) < 1000:
            show_referrers(r, depth - 1, indent + "  ")


def free_port4() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
