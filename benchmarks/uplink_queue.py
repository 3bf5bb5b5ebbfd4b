#!/usr/bin/env python3
"""The uplink's store-and-forward queue: CPU per reading queued and delivered, RSS with a
day of queue, and the time to drain a one-hour outage of 8 ports at 1 s readings against the
lab DME (``twistd sepgw-dme``) on loopback over mutual TLS (CCM8).

* **queued**: a MirrorMeterReadingList (W, var, V, Hz, Wh) built, serialized and put in the
  durable queue (SQLite WAL, one commit each), as the uplink does for each MirrorUsagePoint
  at each postRate; CPU time per reading.
* **a day of queue**: 8 ports and the site at 1 s for 24 h is 777,600 items, above the
  queue's documented bound (``queue_max_items``, 100,000): the queue is filled to the bound
  and the process's RSS and the file size are read.
* **drain**: the queue holds one hour of 8 ports + site at 1 s (32,400 readings) while the
  DME is unreachable; then the real :class:`sepgw.uplink.client.UplinkClient` discovers,
  registers and delivers them all, one at a time in order as it always does. Wall time to
  empty, and the client's CPU per reading delivered.

    .venv/bin/python benchmarks/uplink_queue.py             # full (about 2 minutes)
    .venv/bin/python benchmarks/uplink_queue.py --minutes 5 # a shorter outage

Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sepgw.model import serialize  # noqa: E402
from sepgw.uplink import docs  # noqa: E402
from sepgw.uplink.queue import DurableQueue  # noqa: E402

LFDI = "A2038B8645F15C66D889FFBC4352AC0B8CDACBA1"
PORTS = [f"port{i}" for i in range(1, 9)]
VALUES = {"w": 3600.0, "var": 12.0, "v": 240.1, "hz": 60.01, "wh": 1234.5}


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def put_readings(queue: DurableQueue, seconds: int, t0: int = 1_700_000_000) -> None:
    for s in range(seconds):
        for name in ["site", *PORTS]:
            doc = docs.readings(LFDI, name, VALUES, t0 + s)
            assert doc is not None
            queue.put("POST", f"@mup/{name}", serialize(doc), "reading", created=t0 + s)


def bench_queued(directory: Path) -> float:
    queue = DurableQueue(directory / "q1.sqlite", max_items=1_000_000)
    start = time.process_time()
    put_readings(queue, 600)  # 5400 readings
    cpu = time.process_time() - start
    queue.close()
    return cpu / 5400


def bench_day(directory: Path) -> tuple[int, int, int, float]:
    before = rss_kib()
    queue = DurableQueue(directory / "day.sqlite")  # the documented default bound
    seconds = 86400
    bound_seconds = queue.max_items // 9 + 1
    put_readings(queue, min(seconds, bound_seconds))
    after = rss_kib()
    size = sum(p.stat().st_size for p in directory.glob("day.sqlite*"))
    n = len(queue)
    queue.close()
    return n, before, after, size / 1e6


def dme_process(directory: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    from sepgw.security.pki import init_pki

    pki = init_pki(directory / "utility")
    config = directory / "dme.toml"
    config.write_text(f'''
[dme]
state_dir = "{directory / 'dme'}"
[tls]
cert = "{pki.evse}"
key = "{pki.evse_key}"
ca = ["{pki.serca}"]
[server]
port = {port}
poll_rate_s = 3600
post_rate_s = 3600
log_readings = false
[logging]
level = "warn"
''')
    twistd = Path(sys.executable).parent / "twistd"
    proc = subprocess.Popen([str(twistd), "-n", "--pidfile=", "sepgw-dme", "--config",
                             str(config)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, pki.directory


def bench_drain(directory: Path, minutes: float) -> dict[str, float]:
    import socket

    from twisted.internet import defer, task
    from twisted.web.client import Agent, HTTPConnectionPool

    from sepgw.pev.http import SEPClient
    from sepgw.security.pki import PKIPaths
    from sepgw.security.tls import TLSSettings, client_policy
    from sepgw.uplink.client import UplinkClient

    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    queue = DurableQueue(directory / "outage.sqlite", max_items=1_000_000)
    put_readings(queue, int(minutes * 60))  # the outage: nothing delivered yet
    items = len(queue)
    proc, pki_dir = dme_process(directory, port)
    pki = PKIPaths(pki_dir)
    result: dict[str, float] = {"items": items}

    async def run(reactor: object) -> None:
        # Wait (bounded) until the DME accepts connections.
        for _ in range(200):
            with socket.socket(socket.AF_INET6) as s:
                if s.connect_ex(("::1", port)) == 0:
                    break
            await task.deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]
        tls = TLSSettings(cert=pki.pev, key=pki.pev_key, ca=(pki.serca,))
        agent = Agent(reactor, contextFactory=client_policy(tls),
                      pool=HTTPConnectionPool(reactor, persistent=True))
        http = SEPClient(agent, f"https://[::1]:{port}", clock=reactor, timeout_s=30)
        client = UplinkClient(http=http, clock=reactor, lfdi=tls.identity.lfdi,
                              sfdi=tls.identity.sfdi, dcap="/dcap", site={"max_w": 7200.0},
                              ports=PORTS, queue=queue, post_rate_s=3600)
        wall, cpu = time.monotonic(), time.process_time()
        client.start()
        while len(queue):
            await task.deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]
        result["wall_s"] = time.monotonic() - wall
        result["cpu_per_item_us"] = (time.process_time() - cpu) / items * 1e6
        client.stop()

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    except SystemExit:
        pass
    finally:
        proc.terminate()
        proc.wait(10)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="length of the outage to drain (default 60)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        per_put = bench_queued(directory)
        print(f"queued: {per_put * 1e6:.0f} us CPU per reading (build, serialize, commit)")
        n, before, after, size = bench_day(directory)
        print(f"a day of queue (8 ports + site at 1 s = 777600 readings; bound "
              f"{n} items kept): RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, "
              f"file {size:.0f} MB; peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
        r = bench_drain(directory, args.minutes)
        if "wall_s" in r:
            print(f"drain: {r['items']:.0f} readings ({args.minutes:g} min outage of 8 ports "
                  f"+ site at 1 s) delivered to the lab DME in {r['wall_s']:.1f} s "
                  f"({r['items'] / r['wall_s']:.0f}/s), client CPU "
                  f"{r['cpu_per_item_us']:.0f} us per reading delivered")
        else:
            print("drain: did not complete", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
