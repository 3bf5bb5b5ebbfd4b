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
from zope.interface import implementer  # noqa: E402

from sepgw.model import (  # noqa: E402
    DERList, DERProgramList, DeviceCapability, EndDevice, EndDeviceList,
    FunctionSetAssignmentsList, parse,
)
from sepgw.security.tls import TLSSettings, client_policy  # noqa: E402
from tests.scripted_pev import (  # noqa: E402
    DER_CAPABILITY, METERS, der_availability, der_settings, der_status, device_information,
    mirror_meter_reading, mirror_usage_point, power_status, reading,
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
        self.hrefs: dict[str, Any] = {}
        self.bodies: dict[str, bytes] = {}
        self.stopping = False

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
        # What sepgw answers to the periodic GETs (the ceiling server serves these bytes).
        for kind in ("dderc", "derc"):
            _, _, self.bodies[kind] = yield self.http("GET", self.hrefs[kind])

    @inlineCallbacks
    def setup_ceiling(self) -> Generator[Any, Any, None]:
        yield self.http("GET", self.hrefs["dderc"])

    # -- the periodic mix -------------------------------------------------------------

    def start(self, first: float, slow_phase: int, stop_at: float) -> None:
        self.n = 0
        self.first = first
        self.slow_phase = slow_phase
        self.stop_at = stop_at
        reactor.callLater(max(0.0, first - time.time()), self.tick)

    def tick(self) -> None:
        scheduled = self.first + self.n
        if scheduled >= self.stop_at:
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
        d = self.run_mix(int(scheduled), slow)
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
        yield self.http("GET", h["dderc"], None, (200,), kind="GET DefaultDERControl")
        yield self.http("GET", h["derc"], None, (200,), kind="GET DERControlList")
        if slow:
            yield self.http("PUT", h["ps"], power_status(now), (204,), kind="PUT PowerStatus")
            yield self.http("PUT", h["dera"], der_availability(now), (204,),
                            kind="PUT DERAvailability")
            for suffix, description, _, _, _, value in METERS:
                yield self.http("POST", h["mup"], reading(suffix, description, now, value),
                                (201, 204), kind="POST MirrorMeterReading")


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
    plan: dict[str, Any] = json.loads(Path(args.plan).read_text()) if args.target == "ceiling" \
        else {}
    sem = defer.DeferredSemaphore(args.setup_concurrency)
    t0 = time.time()
    try:
        if args.target == "sepgw":
            yield defer.gatherResults([sem.run(p.setup_sepgw, args.dcap) for p in pevs],
                                      consumeErrors=True)
        else:
            for p in pevs:
                p.hrefs = plan["pevs"][p.name]
            yield defer.gatherResults([sem.run(p.setup_ceiling) for p in pevs],
                                      consumeErrors=True)
    except defer.FirstError as e:
        emit("SETUPFAILED", {"error": e.subFailure.getErrorMessage()})
        return
    except Exception as e:
        emit("SETUPFAILED", {"error": repr(e)})
        return
    ready: dict[str, Any] = {"pevs": {p.name: p.hrefs for p in pevs}, "setup_s": time.time() - t0}
    if pevs and pevs[0].bodies:
        ready["bodies"] = {k: v.decode() for k, v in pevs[0].bodies.items()}
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
    }
    # (stdout is non-blocking once StandardIO runs: big payloads go through a file)
    Path(args.out).write_text(json.dumps(result))
    emit("RESULT", {"file": args.out})
    for p in pevs:
        p.stopping = True
        yield p.pool.closeCachedConnections()


def deferLater(delay: float) -> Deferred:
    from twisted.internet.task import deferLater as dl
    return dl(reactor, max(0.0, delay), lambda: None)


def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", choices=("sepgw", "ceiling"), required=True)
    ap.add_argument("--base", required=True, help="https://host:port")
    ap.add_argument("--dcap", default="/dcap")
    ap.add_argument("--pki", required=True)
    ap.add_argument("--first", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--plan", help="READY payload of the sepgw run (ceiling target)")
    ap.add_argument("--out", required=True, help="file for the READY and RESULT payloads")
    ap.add_argument("--setup-concurrency", type=int, default=16)
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
