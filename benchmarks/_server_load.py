"""Load generator process for benchmarks/server.py (not meant to be run by hand).

One process emulates a range of PEVs. Each PEV has its own certificate, its own
``HTTPConnectionPool`` (persistent, ``maxPersistentPerHost=1``) and ``Agent``, so it keeps one
mutual-TLS connection for the whole run, and it sends its requests one after another on it.

Protocol with the parent (lines on stdin/stdout):

* setup runs at once: against sepgw (``--target sepgw``) each PEV discovers its hrefs by
  links and creates what the periodic mix updates (DeviceInformation, PowerStatus, DER*
  resources, its MirrorUsagePoint and 4 MirrorMeterReadings); against the ceiling server it
  opens its connection with one GET. Then ``READY {json}`` is printed (the plan: hrefs per
  PEV, and the bodies sepgw answered for the two periodic GETs, which the ceiling serves);
* the parent writes ``GO <start> <measure_from> <measure_to>`` (Unix times);
* every PEV runs the periodic mix from ``start + offset``; requests that start inside the
  measuring window are recorded; after ``measure_to`` the process prints ``RESULT {json}``
  and exits.

The periodic mix, per PEV (SunSpec V2G-AC: pollRate/postRate): every second PUT DERStatus,
GET DefaultDERControl, GET DERControlList; every 15 s (each PEV in its own second of the 15)
also PUT PowerStatus (PEVInfo), PUT DERAvailability and 4 MirrorMeterReading POSTs.

With ``--authorize`` each PEV also does what gets it authorized (profile 5.7, 5.9): it POSTs
the Responses received (1) and started (2) to every DERControl of its list, runs its own
notification server (mutual TLS with its own certificate, as the EVSE pins the subscriber's
LFDI) and subscribes to its DERControlList and DefaultDERControl; in the mix, whenever the
DERControlList it polls changed, it responds to the controls it has not answered yet.

With ``--churn RATE`` (one process only) the first ``--active`` PEVs are set up and the rest
are spares; from ``start`` on, RATE times a second the longest-connected PEV leaves (its mix
stopped after its request in flight, its connection and notification server closed, and, for
sepgw, the datagram ``cycle port<p>`` to ``--link-control``: the bench-link transport takes
its port's link down and up, so the EVSE ends the session) and, 50 ms later, a spare arrives
and does the whole setup (requests counted as kind "setup"), then joins the mix. Against the
reference servers an arrival is a new connection replaying the first PEV's setup requests.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any, Generator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, reactor as _reactor  # noqa: E402
from twisted.internet.defer import Deferred, inlineCallbacks, succeed  # noqa: E402
from twisted.internet.protocol import Protocol  # noqa: E402
from twisted.internet.stdio import StandardIO  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402
from twisted.web.client import Agent, HTTPConnectionPool, readBody  # noqa: E402
from twisted.web.http_headers import Headers  # noqa: E402
from twisted.web.iweb import IBodyProducer  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from twisted.web.server import Site  # noqa: E402
from zope.interface import implementer  # noqa: E402

from sepgw.model import (  # noqa: E402
    DERControlList, DERList, DERProgramList, DeviceCapability, EndDevice, EndDeviceList,
    FunctionSetAssignmentsList, parse,
)
from sepgw.security.tls import TLSSettings, client_policy, server_connection_creator  # noqa: E402
from tests.scripted_pev import (  # noqa: E402
    DER_CAPABILITY, METERS, der_availability, der_settings, der_status, device_information,
    mirror_meter_reading, mirror_usage_point, power_status, reading, response, subscription,
)

reactor: Any = _reactor
MEDIA = b"application/sep+xml"
SLOW_PERIOD = 15          # postRate / pollRate of the slow part of the mix, seconds
MAX_BACKLOG_S = 1.0       # a PEV more than this behind its schedule skips ticks


@implementer(IBodyProducer)
class BytesProducer:
    """A request body written at once (FileBodyProducer goes through a Cooperator)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class Failed(Exception):
    pass


class Recorder:
    """Latencies and outcomes of the requests started inside the measuring window."""

    def __init__(self) -> None:
        self.window = (float("inf"), float("inf"))
        self.latencies: dict[str, list[float]] = {}
        self.completed = 0          # responses completed inside the window
        self.errors = 0
        self.error_samples: list[str] = []
        self.ticks = 0              # ticks scheduled inside the window
        self.late = 0               # ...started more than 100 ms after their time
        self.skipped = 0            # ...skipped because the PEV was > 1 s behind
        self.lags: list[float] = []
        self.notifications = 0      # notifications received (whole run)

    def inside(self, t: float) -> bool:
        return self.window[0] <= t < self.window[1]

    def request(self, kind: str, started: float, latency: float, ok: bool, why: str) -> None:
        if self.inside(started):
            self.latencies.setdefault(kind, []).append(latency)
            if not ok:
                self.errors += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(why)
        if self.inside(started + latency):
            self.completed += 1

    def tick(self, scheduled: float, lag: float | None) -> None:
        if not self.inside(scheduled):
            return
        self.ticks += 1
        if lag is None:
            self.skipped += 1
            return
        self.lags.append(lag)
        if lag > 0.1:
            self.late += 1


class PEV:
    def __init__(self, name: str, pki: Path, base: str, recorder: Recorder) -> None:
        self.name = name
        self.base = base
        self.recorder = recorder
        settings = TLSSettings(pki / f"{name}.pem", pki / f"{name}.key", (pki / "serca.pem",))
        self.lfdi = settings.identity.lfdi
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 1
        self.pool.cachedConnectionTimeout = 3600
        self.pool.retryAutomatically = False
        self.agent = Agent(reactor, contextFactory=client_policy(settings), pool=self.pool)
        self.settings = settings
        self.hrefs: dict[str, Any] = {}
        self.bodies: dict[str, bytes] = {}
        self.stopping = False
        self.authorize = False
        self.responded: set[tuple[str, int]] = set()
        self.last_derc = b""
        self.energized = False
        self.count_as: str | None = None   # record the setup's requests under this kind
        self.script: list[tuple[str, str, str | None]] | None = None
        self.listener: Any = None
        self.left = False
        self.current: Deferred | None = None
        self.port_index: int | None = None
        self.beat: Any = None

    @inlineCallbacks
    def http(self, method: str, href: str, body: bytes | None = None,
             expect: tuple[int, ...] = (200,), kind: str | None = None
             ) -> Generator[Any, Any, tuple[int, Any, bytes]]:
        headers = Headers({b"Content-Type": [MEDIA]} if body is not None else {})
        producer = BytesProducer(body) if body is not None else None
        started = time.time()
        t0 = time.perf_counter()
        try:
            response = yield self.agent.request(method.encode(), (self.base + href).encode(),
                                                headers, producer)
            data = yield readBody(response)
        except Exception as e:  # connection lost, refused...
            if kind is not None:
                self.recorder.request(kind, started, time.perf_counter() - t0, False,
                                      f"{method} {href}: {e!r}")
                return 0, None, b""
            raise Failed(f"{self.name}: {method} {href}: {e!r}") from None
        latency = time.perf_counter() - t0
        ok = response.code in expect
        if self.script is not None:
            self.script.append((method, href, body.decode() if body is not None else None))
        if kind is None and self.count_as is not None:
            self.recorder.request(self.count_as, started, latency, ok,
                                  f"{method} {href}: {response.code} {data[:100]!r}")
        if kind is not None:
            self.recorder.request(kind, started, latency, ok,
                                  f"{method} {href}: {response.code} {data[:100]!r}")
        elif not ok:
            raise Failed(f"{self.name}: {method} {href}: {response.code} {data[:200]!r}")
        return response.code, response.headers, data

    @inlineCallbacks
    def setup_sepgw(self, dcap_path: str) -> Generator[Any, Any, None]:
        """Discovery by links and the writes the periodic mix then updates."""
        now = int(time.time())
        _, _, data = yield self.http("GET", dcap_path)
        dcap = parse(data, DeviceCapability)
        _, _, data = yield self.http("GET", dcap.EndDeviceListLink.href + "?s=0&l=1")
        edevs = parse(data, EndDeviceList)
        mine = [e for e in edevs.EndDevice if bytes(e.lFDI).hex().upper() == self.lfdi.upper()]
        if not mine:
            raise Failed(f"{self.name}: own EndDevice not in the EndDeviceList")
        _, _, data = yield self.http("GET", mine[0].href)
        edev = parse(data, EndDevice)
        self.port_index = int(mine[0].href.rstrip("/").rpartition("/")[2])
        yield self.http("PUT", edev.DeviceInformationLink.href, device_information(self.lfdi),
                        (204,))
        yield self.http("PUT", edev.PowerStatusLink.href, power_status(now), (204,))
        _, _, data = yield self.http("GET", edev.DERListLink.href + "?l=1")
        der = parse(data, DERList).DER[0]
        yield self.http("PUT", der.DERCapabilityLink.href, DER_CAPABILITY, (204,))
        yield self.http("PUT", der.DERSettingsLink.href, der_settings(now, 6500), (204,))
        yield self.http("PUT", der.DERAvailabilityLink.href, der_availability(now), (204,))
        yield self.http("PUT", der.DERStatusLink.href, der_status(now, 3), (204,))
        _, _, data = yield self.http("GET", edev.FunctionSetAssignmentsListLink.href + "?l=1")
        fsa = parse(data, FunctionSetAssignmentsList).FunctionSetAssignments[0]
        _, _, data = yield self.http("GET", fsa.DERProgramListLink.href + "?l=1")
        program = parse(data, DERProgramList).DERProgram[0]
        limit = max(1, int(program.DERControlListLink.all or 0))
        _, headers, location = yield self.http(
            "POST", dcap.MirrorUsagePointListLink.href, mirror_usage_point(self.lfdi), (201,))
        mup = headers.getRawHeaders(b"location")[0].decode()
        for suffix, description, uom, power, flow, _ in METERS:
            yield self.http("POST", mup, mirror_meter_reading(suffix, description, uom, power,
                                                              flow), (201,))
        self.hrefs = dict(dstat=der.DERStatusLink.href, dderc=program.DefaultDERControlLink.href,
                          derc=f"{program.DERControlListLink.href}?s=0&l={limit}",
                          ps=edev.PowerStatusLink.href, dera=der.DERAvailabilityLink.href,
                          mup=mup)
        if self.authorize:
            # Room for the site-sharing control(s) added later (the list stays bounded).
            self.hrefs["derc"] = f"{program.DERControlListLink.href}?s=0&l={limit + 8}"
            _, _, data = yield self.http("GET", self.hrefs["derc"])
            yield self.respond(data, now, None)
            port = yield notification_server(self)
            for target in (program.DERControlListLink.href, program.DefaultDERControlLink.href):
                yield self.http("POST", edev.SubscriptionListLink.href,
                                subscription(target, f"https://127.0.0.1:{port}/ntfy"), (201,))
            yield self.http("PUT", der.DERStatusLink.href, der_status(now, 3), (204,))
        # What sepgw answers to the periodic GETs (the ceiling server serves these bytes).
        for kind in ("dderc", "derc"):
            _, _, self.bodies[kind] = yield self.http("GET", self.hrefs[kind])

    @inlineCallbacks
    def respond(self, derc: bytes, now: int, kind: str | None) -> Generator[Any, Any, None]:
        """POST received (1) and started (2) for each control of ``derc`` not answered yet."""
        if derc == self.last_derc:
            return
        self.last_derc = derc
        for status in (1, 2):
            for control in parse(derc, DERControlList).DERControl:
                subject = bytes(control.mRID).hex().upper()
                if not control.replyTo or not control.responseRequired or \
                        (subject, status) in self.responded:
                    continue
                self.responded.add((subject, status))
                yield self.http("POST", control.replyTo,
                                response(self.lfdi, subject, status, now), (201, 204),
                                kind=kind)

    @inlineCallbacks
    def setup_ceiling(self) -> Generator[Any, Any, None]:
        yield self.http("GET", self.hrefs["dderc"])
        if self.authorize and self.bodies.get("derc"):
            # The ceiling answers the same list every time: nothing new to respond to.
            self.last_derc = self.bodies["derc"]

    # -- the periodic mix -------------------------------------------------------------

    def start(self, first: float, slow_phase: int, stop_at: float) -> None:
        self.n = 0
        self.first = first
        self.slow_phase = slow_phase
        self.stop_at = stop_at
        reactor.callLater(max(0.0, first - time.time()), self.tick)

    def tick(self) -> None:
        scheduled = self.first + self.n
        if scheduled >= self.stop_at or self.left:
            self.current = None
            return
        lag = time.time() - scheduled
        if lag > MAX_BACKLOG_S:
            # Too far behind: skip the ticks already missed (counted), run the current one.
            while time.time() - (self.first + self.n) > MAX_BACKLOG_S:
                self.recorder.tick(self.first + self.n, None)
                self.n += 1
            scheduled = self.first + self.n
            lag = time.time() - scheduled
        self.recorder.tick(scheduled, lag)
        slow = (self.n + self.slow_phase) % SLOW_PERIOD == 0
        self.n += 1
        d = self.current = self.run_mix(int(scheduled), slow)
        d.addErrback(lambda f: self.recorder.request("internal", time.time(), 0.0, False,
                                                     f.getErrorMessage()))
        d.addCallback(lambda _: self.next())

    def next(self) -> None:
        due = self.first + self.n
        reactor.callLater(max(0.0, due - time.time()), self.tick)

    @inlineCallbacks
    def run_mix(self, now: int, slow: bool) -> Generator[Any, Any, None]:
        h = self.hrefs
        yield self.http("PUT", h["dstat"], der_status(now, 3), (204,), kind="PUT DERStatus")
        _, _, dderc = yield self.http("GET", h["dderc"], None, (200,),
                                      kind="GET DefaultDERControl")
        self.energized = b"<opModEnergize>true</opModEnergize>" in dderc
        _, _, derc = yield self.http("GET", h["derc"], None, (200,), kind="GET DERControlList")
        if self.authorize and derc:
            yield self.respond(derc, now, "POST Response")
        if slow:
            yield self.http("PUT", h["ps"], power_status(now), (204,), kind="PUT PowerStatus")
            yield self.http("PUT", h["dera"], der_availability(now), (204,),
                            kind="PUT DERAvailability")
            for suffix, description, _, _, _, value in METERS:
                yield self.http("POST", h["mup"], reading(suffix, description, now, value),
                                (201, 204), kind="POST MirrorMeterReading")


class Notified(Resource):
    """A PEV's notification endpoint: counts the notifications, answers 204."""

    isLeaf = True

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def render_POST(self, request: Any) -> bytes:
        self.recorder.notifications += 1
        request.setResponseCode(204)
        return b""


def notification_server(pev: PEV) -> Deferred:
    """Listen on 127.0.0.1 with the PEV's own certificate (``pev.listener``); fires with the
    port number."""
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.protocols.tls import TLSMemoryBIOFactory

    site = Site(Notified(pev.recorder))
    site.log = lambda request: None  # type: ignore[method-assign]
    site.noisy = False
    factory = TLSMemoryBIOFactory(server_connection_creator(pev.settings), False, site)
    d = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)

    def listening(port: Any) -> int:
        pev.listener = port
        return int(port.getHost().port)
    return d.addCallback(listening)


class Churn:
    """PEVs leaving and arriving ``rate`` times a second (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, active: list[PEV], spares: list[PEV],
                 plan: dict[str, Any]) -> None:
        self.args = args
        self.active = list(active)
        self.spares = list(spares)
        self.plan = plan
        self.arrived = 0
        self.departed = 0
        self.failed: list[str] = []
        self.control: Any = None
        if args.target == "sepgw":
            from twisted.internet.protocol import DatagramProtocol
            self.control = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")

    def start(self, start: float, stop_at: float) -> None:
        self.stop_at = stop_at
        self.k = 0
        self.first = start
        reactor.callLater(max(0.0, start - time.time()), self.step)

    def step(self) -> None:
        due = self.first + self.k / self.args.churn
        if due >= self.stop_at - 1.0:
            return
        if not self.active or not self.spares:
            # A slow server: arrivals lag the departures and no PEV is free for a moment.
            # Wait for one rather than end the churn for the rest of the run.
            reactor.callLater(0.05, self.step)
            return
        self.k += 1
        leaving = self.active.pop(0)
        arriving = self.spares.pop(0)
        self.leave(leaving).addBoth(lambda _: deferLater(0.05)).addCallback(
            lambda _: self.arrive(arriving))
        reactor.callLater(max(0.0, self.first + self.k / self.args.churn - time.time()),
                          self.step)

    @inlineCallbacks
    def leave(self, pev: PEV) -> Generator[Any, Any, None]:
        pev.left = True
        if pev.current is not None:
            yield pev.current
        if self.control is not None and pev.port_index is not None:
            port = self.args.link_control
            self.control.write(f"cycle port{pev.port_index}".encode(), ("127.0.0.1", port))
        yield pev.pool.closeCachedConnections()
        if pev.listener is not None:
            yield pev.listener.stopListening()
            pev.listener = None
        self.departed += 1
        self.spares.append(pev)

    @inlineCallbacks
    def arrive(self, pev: PEV) -> Generator[Any, Any, None]:
        pev.pool = HTTPConnectionPool(reactor, persistent=True)
        pev.pool.maxPersistentPerHost = 1
        pev.pool.cachedConnectionTimeout = 3600
        pev.pool.retryAutomatically = False
        pev.agent = Agent(reactor, contextFactory=client_policy(pev.settings), pool=pev.pool)
        pev.responded = set()
        pev.last_derc = b""
        pev.left = False
        pev.count_as = "setup"
        try:
            if self.args.target == "sepgw":
                yield pev.setup_sepgw(self.args.dcap)
            else:
                pev.hrefs = self.plan["pevs"]["pev0"]
                for method, href, body in self.plan["script"]:
                    yield pev.http(method, href, body.encode() if body is not None else None,
                                   (200, 201, 204))
                if pev.authorize:
                    pev.last_derc = pev.bodies.get("derc", b"")
        except Exception as e:
            self.failed.append(f"{pev.name}: {e}")
            pev.left = True
            self.spares.append(pev)
            return
        finally:
            pev.count_as = None
        self.arrived += 1
        self.active.append(pev)
        g = int(pev.name[3:])
        pev.start(time.time() + 0.1, g % SLOW_PERIOD, self.stop_at)


@inlineCallbacks
def set_up_and_beat(pev: PEV, dcap: str) -> Generator[Any, Any, None]:
    """The setup, then a DERStatus heartbeat every second until every PEV is set up: an
    authorized PEV silent for 10 s loses its authorization (profile 4.8.1.1), which would
    make the measured phase start with the re-authorization of the PEVs set up first."""
    from twisted.internet.task import LoopingCall

    yield pev.setup_sepgw(dcap)

    def beat() -> None:
        pev.http("PUT", pev.hrefs["dstat"], der_status(int(time.time()), 3),
                 (204,)).addErrback(lambda _: None)
    pev.beat = LoopingCall(beat)
    pev.beat.clock = reactor
    pev.beat.start(1.0, now=False)


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, on_go: Any) -> None:
        self.on_go = on_go

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        if words and words[0] == "GO":
            self.on_go(*map(float, words[1:4]))


def emit(tag: str, payload: Any) -> None:
    sys.stdout.write(f"{tag} {json.dumps(payload)}\n")
    sys.stdout.flush()


@inlineCallbacks
def main(args: argparse.Namespace) -> Generator[Any, Any, None]:
    recorder = Recorder()
    names = [f"pev{i}" for i in range(args.first, args.first + args.count)]
    pevs = [PEV(n, Path(args.pki), args.base, recorder) for n in names]
    for p in pevs:
        p.authorize = args.authorize
        if args.target != "sepgw":
            p.bodies = {}
    spares: list[PEV] = []
    if args.churn:
        pevs, spares = pevs[:args.active], pevs[args.active:]
    if args.target == "sepgw" and pevs:
        pevs[0].script = []
    plan: dict[str, Any] = json.loads(Path(args.plan).read_text()) if args.target != "sepgw" \
        else {}
    sem = defer.DeferredSemaphore(args.setup_concurrency)
    t0 = time.time()
    try:
        if args.target == "sepgw":
            yield defer.gatherResults([sem.run(set_up_and_beat, p, args.dcap) for p in pevs],
                                      consumeErrors=True)
            for p in pevs:  # (the mix takes over the heartbeat at GO, within 10 s)
                if p.beat is not None and p.beat.running:
                    p.beat.stop()
        else:
            for p in pevs:
                p.hrefs = plan["pevs"][p.name]
                p.bodies = {k: v.encode() for k, v in plan.get("bodies", {}).items()}
            yield defer.gatherResults([sem.run(p.setup_ceiling) for p in pevs],
                                      consumeErrors=True)
    except defer.FirstError as e:
        emit("SETUPFAILED", {"error": e.subFailure.getErrorMessage()})
        return
    except Exception as e:
        emit("SETUPFAILED", {"error": repr(e)})
        return
    ready: dict[str, Any] = {"pevs": {p.name: p.hrefs for p in pevs}, "setup_s": time.time() - t0}
    if args.target == "sepgw":
        for p in pevs:
            _, _, body = yield p.http("GET", p.hrefs["dderc"])
            p.energized = b"<opModEnergize>true</opModEnergize>" in body
        ready["energized"] = sum(p.energized for p in pevs)
    if pevs and pevs[0].bodies:
        ready["bodies"] = {k: v.decode() for k, v in pevs[0].bodies.items()}
    if pevs and pevs[0].script is not None:
        ready["script"] = pevs[0].script
        pevs[0].script = None
    for p in spares:
        p.bodies = {k: v.encode() for k, v in (plan.get("bodies") or {}).items()}
    # The connections, agents and pools live for the whole run: keep them out of the
    # collector's way, so the load generator's own GC pauses do not show as latency.
    gc.collect()
    gc.freeze()
    Path(args.out).write_text(json.dumps(ready))
    emit("READY", {"file": args.out})

    go: Deferred = Deferred()
    StandardIO(Control(lambda *times: go.callback(times)))
    start, measure_from, measure_to = yield go
    recorder.window = (measure_from, measure_to)
    for i, p in enumerate(pevs):
        # Spread the PEVs over the second, and their slow ticks over the 15 s.
        g = args.first + i
        offset = ((g * 0.6180339887) % 1.0)
        p.start(start + offset, g % SLOW_PERIOD, measure_to)
    churn = None
    if args.churn:
        churn = Churn(args, pevs, spares, plan)
        churn.start(start, measure_to)
    # Wait for the window to end and the last requests to come back.
    yield deferLater(measure_to - time.time() + 2.0)
    lat = recorder.latencies
    lags = sorted(recorder.lags)
    result = {
        "latencies_ms": {k: [round(x * 1000, 3) for x in v] for k, v in lat.items()},
        "completed": recorder.completed, "errors": recorder.errors,
        "error_samples": recorder.error_samples, "ticks": recorder.ticks,
        "late": recorder.late, "skipped": recorder.skipped,
        "lag_p99_ms": round(lags[int(0.99 * (len(lags) - 1))] * 1000, 1) if lags else 0.0,
        "lag_max_ms": round(lags[-1] * 1000, 1) if lags else 0.0,
        "notifications": recorder.notifications,
        "energized": sum(p.energized for p in pevs),
    }
    if churn is not None:
        result.update(arrived=churn.arrived, departed=churn.departed,
                      failed_arrivals=len(churn.failed), failures=churn.failed[:5],
                      energized=sum(p.energized and not p.left for p in churn.active))
    # (stdout is non-blocking once StandardIO runs: big payloads go through a file)
    Path(args.out).write_text(json.dumps(result))
    emit("RESULT", {"file": args.out})
    for p in pevs + spares + (churn.active if churn is not None else []):
        p.stopping = True
        yield p.pool.closeCachedConnections()


def deferLater(delay: float) -> Deferred:
    from twisted.internet.task import deferLater as dl
    return dl(reactor, max(0.0, delay), lambda: None)


def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", choices=("sepgw", "ceiling", "aiohttp"), required=True)
    ap.add_argument("--base", required=True, help="https://host:port")
    ap.add_argument("--dcap", default="/dcap")
    ap.add_argument("--pki", required=True)
    ap.add_argument("--first", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--plan", help="READY payload of the sepgw run (ceiling target)")
    ap.add_argument("--out", required=True, help="file for the READY and RESULT payloads")
    ap.add_argument("--setup-concurrency", type=int, default=16)
    ap.add_argument("--churn", type=float, default=0.0, help="departures+arrivals per second")
    ap.add_argument("--active", type=int, default=0, help="PEVs connected at once (churn)")
    ap.add_argument("--link-control", type=int, default=0,
                    help="UDP port of the bench-link transport's control (churn, sepgw)")
    ap.add_argument("--authorize", action="store_true",
                    help="post Responses, subscribe, answer notifications (see above)")
    args = ap.parse_args()

    def finished(_: Any) -> None:
        if reactor.running:
            reactor.stop()

    def failed(f: Any) -> None:
        emit("SETUPFAILED", {"error": f.getTraceback()})
        if reactor.running:
            reactor.stop()

    reactor.callWhenRunning(lambda: main(args).addCallbacks(finished, failed))
    reactor.run()


if __name__ == "__main__":
    run()
