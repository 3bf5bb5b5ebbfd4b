#!/usr/bin/env python3
"""Requests per server CPU-second of ``twistd sepgw`` under the V2G-AC periodic mix, against
a bare Twisted TLS server (the ceiling) and a minimal aiohttp server (a reference point), in
one run; p99 latency, idle CPU and RSS per session; and the PEVs one server core can serve.

The mix, per emulated PEV, over one persistent mutual-TLS connection (its own certificate):
every second PUT DERStatus, GET DefaultDERControl, GET DERControlList; every 15 s also PUT
PowerStatus (PEVInfo), PUT DERAvailability and 4 MirrorMeterReading POSTs: 3.4 requests/s.

Scenarios (``--scenario``, repeatable; default authorized, then churn):

* authorized (N = 200): every PEV posts the Responses received and started to its
  DERControls, subscribes to its DERControlList and DefaultDERControl with a notification
  server of its own (mutual TLS) and answers every new control (site sharing's
  opModMaxLimW) as it appears; the simulated meters sample every 0.1 s (as shipped);
* churn (N = 100 connected): the same, while --churn-rate (10) times a second the
  longest-connected PEV leaves (its port's link cycled down and up by the bench-link transport,
  benchmarks/_bench_link.py, so the EVSE ends its session) and another arrives and does the
  whole setup; RSS sampled every second. ``--long``: the 10-minute run of issue 12's target,
  sepgw alone;
* polling (N = 50): the mix alone, no PEV authorized (the scenario before issue 12).

For each N and round: a PKI with the PEV certificates (cached), a config with N ports
(``[server]``, ``[site]``, ``[management]``, ``[safety]`` of etc/sepgw.toml), ``twistd -n sepgw``
pinned to CPU 0; load generator process(es) (benchmarks/_server_load.py) pinned to the other
CPU do the setup (not measured), then run the mix for ``--warmup`` + ``--seconds``. The
server's CPU time (utime+stime from /proc/<pid>/stat) and the requests completed are taken
over the window. Then the same PEVs and mix against benchmarks/_ceiling_server.py (sepgw's
own Site, channel and request factory, trivial resource) and benchmarks/_aiohttp_ceiling.py
(if aiohttp is importable). ``--rounds`` (2) rounds interleave them (A, B, C, A, B, C) so the
drift of a loaded machine falls on all alike. Targets: sepgw at least 60 % of the ceiling;
p99 under 100 ms; at least 500 PEVs per server core; churn without RSS growth.

    .venv/bin/python benchmarks/server.py                  # authorized N=200, churn N=100
    .venv/bin/python benchmarks/server.py --scenario authorized --pevs 500
    .venv/bin/python benchmarks/server.py --long           # churn 10/s for 10 minutes
    .venv/bin/python benchmarks/server.py --scenario polling --full   # N = 100, 250, 500
    .venv/bin/python benchmarks/server.py --profile --profile-references  # + py-spy

Figures, method and hotspots: docs/benchmarks.md.

Exit status: 0 when the measurements ran (targets missed are reported, not errors), 1 on a
setup failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PY = sys.executable
TWISTD = str(Path(PY).parent / "twistd")
PYSPY = str(Path(PY).parent / "py-spy")
HERE = Path(__file__).resolve().parent
MIX_RATE = 3 + 6 / 15          # requests per PEV per second
TARGET_RATIO = 0.60
TARGET_PEVS_PER_CORE = 500
TARGET_P99_MS = 100.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: ``sitecustomize`` put on the server's PYTHONPATH by --gc-probe: logs every garbage
#: collection pause of 2 ms or more (time, generation, duration) to $SEPGW_BENCH_GC_LOG.
#: Instrumentation of the benchmark only; sepgw is not changed.
GC_PROBE = """
import gc, os, time
_log = open(os.environ["SEPGW_BENCH_GC_LOG"], "a", buffering=1)
_t = [0.0]
def _cb(phase, info):
    if phase == "start":
        _t[0] = time.perf_counter()
    else:
        d = time.perf_counter() - _t[0]
        if d >= 0.002:
            _log.write(f"{time.time():.3f} {info['generation']} {d * 1000:.1f}\\n")
gc.callbacks.append(_cb)
if os.environ.get("SEPGW_BENCH_GC_FREEZE"):
    import signal
    signal.signal(signal.SIGUSR1, lambda *_: (gc.collect(), gc.freeze()))
if os.environ.get("SEPGW_BENCH_GC_THRESHOLD"):
    gc.set_threshold(*map(int, os.environ["SEPGW_BENCH_GC_THRESHOLD"].split(",")))
"""


class SetupError(Exception):
    pass


# -- processes -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (whole process), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pin(pid: int, cpus: set[int] | None) -> None:
    if cpus:
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:
            pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_line(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SetupError(f"no {text!r} in {path} within {timeout} s; output:\n"
                     + (path.read_text(errors="replace")[-3000:] if path.exists() else ""))


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LoadGen:
    """One load generator process, its output lines read by a thread."""

    def __init__(self, args: list[str], stderr: Path, cpus: set[int] | None) -> None:
        self.stderr = stderr
        out = stderr.with_suffix(".json")
        self.proc = subprocess.Popen([PY, str(HERE / "_server_load.py"), *args,
                                      "--out", str(out)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr.open("wb"), bufsize=0)
        pin(self.proc.pid, cpus)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.put(line.decode())
        self.lines.put("")

    def expect(self, tag: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise SetupError(f"load generator: no {tag} within {timeout:.0f} s") from None
            if line == "":
                raise SetupError("load generator ended early:\n"
                                 + self.stderr.read_text(errors="replace")[-3000:])
            word, _, payload = line.partition(" ")
            if word == "SETUPFAILED":
                raise SetupError(f"load generator setup failed: {json.loads(payload)['error']}")
            if word == tag:
                return json.loads(Path(json.loads(payload)["file"]).read_text())

    def go(self, start: float, frm: float, to: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"GO {start} {frm} {to}\n".encode())
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.proc.wait(5)  # it exits by itself after RESULT
        except subprocess.TimeoutExpired:
            stop(self.proc, 5)


# -- PKI and config --------------------------------------------------------------------------


def ensure_pki(directory: Path, n: int) -> Path:
    """A test PKI with PEV certificates pev0..pev<n-1> (kept between runs)."""
    from sepgw.security.pki import DEFAULT_PEV_HW_TYPE, PKIPaths, init_pki, issue_pev

    if not PKIPaths(directory).serca.exists():
        init_pki(directory)
    for i in range(n):
        if not (directory / f"pev{i}.key").exists():
            issue_pev(directory, f"pev{i}", DEFAULT_PEV_HW_TYPE, force=True)
    return directory


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def _toml_table(name: str, table: dict[str, Any]) -> str:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    out = f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in scalars.items())
    for k, v in table.items():
        if isinstance(v, dict):
            out += "\n" + _toml_table(f"{name}.{k}", v)
    return out + "\n"


def write_config(directory: Path, pki: Path, port: int, n: int, log_level: str,
                 meter_interval: float = 0.1, link_control: int | None = None) -> Path:
    """A config of its own: [server], [site], [management], [safety] as in etc/sepgw.toml
    (so the same management information is served), the j3072 policy with
    etc/approved-pevs.txt, HTTPS on 127.0.0.1, and N ports with the loopback transport, a
    simulated contactor and a simulated meter sampling every ``meter_interval`` seconds (the
    shipped 0.1 s by default). With ``link_control`` the ports use the bench-link transport
    (benchmarks/_bench_link.py, copied to a plugin directory of the run) whose links the load
    generator cycles through that UDP port."""
    import tomllib

    default = tomllib.loads((ROOT / "etc" / "sepgw.toml").read_text())
    server = dict(default.get("server", {}), addresses=["127.0.0.1"], port=port,
                  # every emulated PEV connects from 127.0.0.1
                  max_connections=max(256, 2 * n), max_connections_per_peer=max(8, 2 * n))
    plugin_dirs = []
    transport = '{ plugin = "loopback" }'
    if link_control is not None:
        plugins = directory / "plugins"
        plugins.mkdir(exist_ok=True)
        shutil.copy(HERE / "_bench_link.py", plugins / "bench_link.py")
        plugin_dirs.append(str(plugins))
    text = _toml_table("gateway", {"name": "sepgw-bench", "state_dir": str(directory / "state"),
                                   "plugin_dirs": plugin_dirs})
    text += _toml_table("tls", {"cert": str(pki / "evse.pem"), "key": str(pki / "evse.key"),
                                "ca": [str(pki / "serca.pem")]})
    text += _toml_table("server", server)
    for name in ("site", "management", "safety"):
        if name in default:
            text += _toml_table(name, default[name])
    approved = ROOT / "etc" / "approved-pevs.txt"
    if approved.exists():
        text += _toml_table("policy", {"plugin": "j3072", "approved_list": str(approved)})
    for i in range(n):
        if link_control is not None:
            transport = (f'{{ plugin = "bench-link", port_name = "port{i}", '
                         f'control = {link_control} }}')
        text += (f'[[ports]]\nname = "port{i}"\ntransport = {transport}\n'
                 f'contactor = {{ plugin = "simulated" }}\n'
                 f'meter = {{ plugin = "simulated", interval = {meter_interval!r}, voltage = 240.0, '
                 f'frequency = 60.0 }}\n\n')
    text += _toml_table("logging", {"level": log_level, "format": "text"})
    path = directory / "sepgw.toml"
    path.write_text(text)
    return path


# -- one measurement ---------------------------------------------------------------------------


@dataclass
class Run:
    target: str
    n: int
    seconds: float
    server_cpu: float = 0.0
    loadgen_cpu: float = 0.0
    idle_cpu: float | None = None
    completed: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    ticks: int = 0
    late: int = 0
    skipped: int = 0
    lag_p99_ms: float = 0.0
    lag_max_ms: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    setup_s: float = 0.0
    hotspots: str = ""
    per_second: list[tuple[float, float]] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 0.0)
    gc_pauses: list[tuple[int, float]] | None = None
    rss_base: float = 0.0       # MiB, server serving, no PEV
    rss_loaded: float = 0.0     # MiB, after the setup of N sessions and the idle phase
    energized: int = 0          # PEVs authorized (opModEnergize true) at the end
    notifications: int = 0      # notifications the PEVs received (whole run)
    rss_series: list[float] = field(default_factory=list)   # MiB, each second of the window
    arrived: int = 0            # churn: arrivals set up, departures, arrivals failed
    departed: int = 0
    failed_arrivals: int = 0

    @property
    def rss_per_session_kib(self) -> float:
        return (self.rss_loaded - self.rss_base) * 1024 / self.n if self.rss_loaded else 0.0

    @property
    def all_latencies(self) -> list[float]:
        return sorted(x for v in self.latencies.values() for x in v)

    def pct(self, p: float, values: list[float] | None = None) -> float:
        v = self.all_latencies if values is None else sorted(values)
        return v[min(len(v) - 1, int(p / 100 * len(v)))] if v else float("nan")

    @property
    def rps(self) -> float:
        return self.completed / self.seconds

    @property
    def offered(self) -> float:
        return self.n * MIX_RATE

    @property
    def rps_per_cpu(self) -> float:
        return self.completed / self.server_cpu if self.server_cpu else float("nan")

    @property
    def server_util(self) -> float:
        return self.server_cpu / self.seconds

    @property
    def loadgen_util(self) -> float:
        return self.loadgen_cpu / self.seconds

    @property
    def behind(self) -> bool:
        return self.skipped > 0 or self.late > 0.01 * max(1, self.ticks) \
            or self.rps < 0.97 * self.offered

    @property
    def meets_latency(self) -> bool:
        return self.pct(99) < TARGET_P99_MS and not self.behind and self.errors == 0 \
            and self.server_util < 0.95


def measure(server: subprocess.Popen, loadgens: list[LoadGen], run: Run, warmup: float,
            profile: Path | None, cpus_load: set[int] | None) -> None:
    """GO to the load generators; server and load generator CPU over the window."""
    start = time.time() + 0.5
    frm = start + warmup
    to = frm + run.seconds
    run.window = (frm, to)
    for lg in loadgens:
        lg.go(start, frm, to)
    time.sleep(max(0.0, frm - time.time()))
    s0 = cpu_seconds(server.pid)
    l0 = sum(cpu_seconds(lg.proc.pid) for lg in loadgens)
    spy = None
    if profile is not None:
        spy = subprocess.Popen([PYSPY, "record", "--pid", str(server.pid), "--format", "raw",
                                "--rate", "500", "--nonblocking", "--duration",
                                str(int(run.seconds)), "--output", str(profile)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pin(spy.pid, cpus_load)
    # Per-second CPU of both sides, to see saturated seconds an average hides.
    prev_s, prev_l = s0, l0
    while time.time() < to - 0.05:
        time.sleep(min(1.0, max(0.0, to - time.time())))
        cs = cpu_seconds(server.pid)
        cl = sum(cpu_seconds(lg.proc.pid) for lg in loadgens)
        run.per_second.append((round(cs - prev_s, 2), round(cl - prev_l, 2)))
        run.rss_series.append(rss_mib(server.pid))
        prev_s, prev_l = cs, cl
    s1 = cpu_seconds(server.pid)
    l1 = sum(cpu_seconds(lg.proc.pid) for lg in loadgens)
    run.server_cpu, run.loadgen_cpu = s1 - s0, l1 - l0
    for lg in loadgens:
        r = lg.expect("RESULT", run.seconds + 60)
        run.completed += r["completed"]
        run.errors += r["errors"]
        run.error_samples += r["error_samples"]
        run.ticks += r["ticks"]
        run.late += r["late"]
        run.skipped += r["skipped"]
        run.lag_p99_ms = max(run.lag_p99_ms, r["lag_p99_ms"])
        run.lag_max_ms = max(run.lag_max_ms, r["lag_max_ms"])
        run.notifications += r.get("notifications", 0)
        run.energized += r.get("energized", 0)
        run.arrived += r.get("arrived", 0)
        run.departed += r.get("departed", 0)
        run.failed_arrivals += r.get("failed_arrivals", 0)
        run.error_samples += r.get("failures", [])
        for k, v in r["latencies_ms"].items():
            run.latencies.setdefault(k, []).extend(v)
    if spy is not None:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
        if profile is not None and profile.exists():
            run.hotspots = hotspots(profile)


def start_loadgens(target: str, base: str, pki: Path, n: int, k: int, work: Path,
                   plan: Path | None, cpus: set[int] | None,
                   extra: list[str] | None = None) -> list[LoadGen]:
    gens = []
    share = [n // k + (1 if i < n % k else 0) for i in range(k)]
    first = 0
    for i, count in enumerate(share):
        args = ["--target", target, "--base", base, "--pki", str(pki), "--first", str(first),
                "--count", str(count)]
        if plan is not None:
            args += ["--plan", str(plan)]
        args += extra or []
        gens.append(LoadGen(args, work / f"loadgen-{target}-{i}.log", cpus))
        first += count
    return gens


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spares(args: argparse.Namespace) -> int:
    """Identities beyond the N connected PEVs, for the churn's arrivals."""
    return max(10, int(5 * args.churn_rate)) if args.scenario == "churn" else 0


def loadgen_options(args: argparse.Namespace, n: int) -> list[str]:
    if args.scenario == "authorized":
        return ["--authorize"]
    if args.scenario == "churn":
        return ["--authorize", "--churn", str(args.churn_rate), "--active", str(n)]
    return []


def aiohttp_available() -> bool:
    return subprocess.run([PY, "-c", "import aiohttp"], capture_output=True).returncode == 0


def run_sepgw(args: argparse.Namespace, n: int, pki: Path, directory: Path,
              cpus_server: set[int] | None, cpus_load: set[int] | None) -> Run:
    """``twistd sepgw`` with N PEVs: setup, idle, the measuring window."""
    port = free_port()
    link_control = free_udp_port() if args.scenario == "churn" else None
    config = write_config(directory, pki, port, n, args.log_level, args.meter_interval,
                          link_control)
    log = directory / "sepgw.log"
    env = dict(os.environ)
    gc_log = directory / "gc.log"
    if args.gc_probe or args.gc_threshold or args.gc_freeze:
        probe = directory / "gcprobe"
        probe.mkdir(exist_ok=True)
        (probe / "sitecustomize.py").write_text(GC_PROBE)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(probe),
                                                         env.get("PYTHONPATH")]))
        env["SEPGW_BENCH_GC_LOG"] = str(gc_log)
        if args.gc_threshold:
            env["SEPGW_BENCH_GC_THRESHOLD"] = args.gc_threshold
        if args.gc_freeze:
            env["SEPGW_BENCH_GC_FREEZE"] = "1"
    if args.memprobe:  # benchmarks/_memprobe.py in the server (and the GC probe, if asked)
        probe = directory / "memprobe-lib"
        probe.mkdir(exist_ok=True)
        shutil.copy(HERE / "_memprobe.py", probe / "_memprobe.py")
        gc_on = args.gc_probe or args.gc_threshold or args.gc_freeze
        (probe / "sitecustomize.py").write_text((GC_PROBE if gc_on else "")
                                                + "\nimport _memprobe\n_memprobe.install()\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(probe), env.get("PYTHONPATH")]))
        memdir = directory / f"memprobe-{time.strftime('%H%M%S')}"
        env.update(SEPGW_BENCH_MEMPROBE_DIR=str(memdir),
                   SEPGW_BENCH_MEMPROBE_EVERY=str(args.memprobe),
                   SEPGW_BENCH_MEMPROBE_TRIM="1" if args.memprobe_trim else "0")
    server = subprocess.Popen([TWISTD, "-n", "--pidfile=", "sepgw", "--config", str(config)],
                              cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                              env=env)
    pin(server.pid, cpus_server)
    gens: list[LoadGen] = []
    sepgw = Run("sepgw", n, args.seconds)
    extra = loadgen_options(args, n)
    if link_control is not None:
        extra += ["--link-control", str(link_control)]
    try:
        wait_for_line(log, "sepgw EVSE serving", server, 60)
        time.sleep(0.5)
        sepgw.rss_base = rss_mib(server.pid)
        base = f"https://127.0.0.1:{port}"
        gens = start_loadgens("sepgw", base, pki, n + spares(args), args.loadgens, directory,
                              None, cpus_load, extra)
        plan: dict[str, Any] = {"pevs": {}}
        energized = 0
        for lg in gens:
            ready = lg.expect("READY", 60 + 0.3 * n)
            plan["pevs"].update(ready["pevs"])
            plan.setdefault("bodies", ready.get("bodies"))
            plan.setdefault("script", ready.get("script"))
            sepgw.setup_s = max(sepgw.setup_s, ready["setup_s"])
            energized += ready.get("energized", 0)
        if args.scenario != "polling" and energized < n:
            print(f"  note: {energized} of {n} PEVs authorized after the setup", flush=True)
        if args.gc_freeze:
            server.send_signal(signal.SIGUSR1)  # the probe: gc.collect(); gc.freeze()
            time.sleep(0.5)
        # Background cost with N sessions and N meters, no requests.
        c0 = cpu_seconds(server.pid)
        time.sleep(args.idle)
        sepgw.idle_cpu = (cpu_seconds(server.pid) - c0) / args.idle
        sepgw.rss_loaded = rss_mib(server.pid)
        measure(server, gens, sepgw, args.warmup,
                directory / "pyspy.txt" if args.profile else None, cpus_load)
        if (args.gc_probe or args.gc_threshold or args.gc_freeze) and gc_log.exists():
            frm, to = sepgw.window
            pauses = [(int(g), float(d)) for t, g, d in
                      (line.split() for line in gc_log.read_text().splitlines())
                      if frm <= float(t) < to]
            sepgw.gc_pauses = pauses
        if args.memprobe:
            from _memprobe import report as memreport

            print(memreport(memdir, *sepgw.window, root=str(ROOT)), flush=True)
    finally:
        for lg in gens:
            lg.close()
        stop(server)
    if "Traceback" in log.read_text(errors="replace"):
        print(f"  (the sepgw log {log} contains a Traceback)")
    if not (directory / "plan.json").exists():  # the first round's plan serves every round
        (directory / "plan.json").write_text(json.dumps(plan))
        (directory / "bodies.json").write_text(json.dumps(plan["bodies"]))
    return sepgw


def run_reference(args: argparse.Namespace, target: str, n: int, pki: Path, directory: Path,
                  cpus_server: set[int] | None, cpus_load: set[int] | None) -> Run:
    """The Twisted ceiling or the aiohttp reference, with the same PEVs and mix."""
    port = free_port()
    clog = directory / f"{target}.log"
    script = "_ceiling_server.py" if target == "ceiling" else "_aiohttp_ceiling.py"
    proc = subprocess.Popen(
        [PY, str(HERE / script), "--pki", str(pki), "--port", str(port),
         "--bodies", str(directory / "bodies.json")],
        cwd=ROOT, stdout=clog.open("wb"), stderr=subprocess.STDOUT)
    pin(proc.pid, cpus_server)
    gens: list[LoadGen] = []
    run = Run(target, n, args.seconds)
    extra = loadgen_options(args, n)
    try:
        wait_for_line(clog, "CEILING serving", proc, 30)
        run.rss_base = rss_mib(proc.pid)
        gens = start_loadgens(target, f"https://127.0.0.1:{port}", pki, n + spares(args),
                              args.loadgens, directory, directory / "plan.json", cpus_load,
                              extra)
        for lg in gens:
            run.setup_s = max(run.setup_s, lg.expect("READY", 60 + 0.3 * n)["setup_s"])
        measure(proc, gens, run, args.warmup,
                directory / f"pyspy-{target}.txt" if args.profile_references else None,
                cpus_load)
    finally:
        for lg in gens:
            lg.close()
        stop(proc)
    return run


def run_rounds(args: argparse.Namespace, n: int, pki: Path, work: Path,
               cpus_server: set[int] | None, cpus_load: set[int] | None) -> list[list[Run]]:
    """``--rounds`` rounds of sepgw, ceiling[, aiohttp], interleaved (A, B, C, A, B, C) so
    that the drift of a loaded machine falls on all of them alike."""
    directory = work / f"{args.scenario}-n{n}"
    directory.mkdir(parents=True, exist_ok=True)
    rounds = []
    for r in range(args.rounds):
        runs = [run_sepgw(args, n, pki, directory, cpus_server, cpus_load)]
        for target in args.references:
            runs.append(run_reference(args, target, n, pki, directory, cpus_server, cpus_load))
        rounds.append(runs)
        print(f"  round {r + 1}:\n" + "\n".join(describe(x) for x in runs), flush=True)
    return rounds


# -- profile -----------------------------------------------------------------------------------


def _frame(raw: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:123)`` -> ``func (pkg/mod.py)``."""
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def hotspots(path: Path, top: int = 20) -> str:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output;
    shares are of the samples not waiting in epoll (the server's busy time)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        if frames[-1].startswith("EPollReactor.doPoll") or frames[-1].startswith("doPoll"):
            continue  # waiting for I/O
        c = int(count)
        total += c
        own[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    if not total:
        return "  (no samples)"
    out = [f"  {total} busy samples; top self time:"]
    out += [f"    {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    out.append("  top inclusive time in sepgw and klein:")
    keep = [(f, c) for f, c in incl.most_common() if "(sepgw/" in f or "(klein/" in f]
    out += [f"    {100 * c / total:5.1f}%  {f}" for f, c in keep[:top]]
    out.append("  inclusive time of other notable callees:")
    notable = ("_parseContentType", "datetimeToString", "Logger.emit", "keycall",
               "formatEvent", "_flushReceiveBIO", "Connection.send", "Connection.recv",
               "Request.write", "Request.finish", "collect")
    out += [f"    {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common()
            if f.split(" (")[0].endswith(notable)][:12]
    return "\n".join(out)


# -- report ------------------------------------------------------------------------------------


def describe(run: Run) -> str:
    return (f"{run.target:8} {run.n:5d} {run.offered:8.0f} {run.rps:8.0f} "
            f"{run.server_util:6.2f} {run.rps_per_cpu:9.0f} {run.pct(50):7.1f} "
            f"{run.pct(99):7.1f} {run.loadgen_util:7.2f} "
            f"{'yes' if run.behind else 'no':>6} {run.errors:6d}")


HEADER = (f"{'server':8} {'PEVs':>5} {'offered':>8} {'served':>8} {'cpu':>6} {'req/cpu-s':>9} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'lg cpu':>7} {'behind':>6} {'errors':>6}")


def pooled(runs: list[Run]) -> Run:
    """One Run summing the rounds of one target (requests and CPU added, latencies pooled)."""
    p = Run(runs[0].target, runs[0].n, sum(r.seconds for r in runs))
    for r in runs:
        p.server_cpu += r.server_cpu
        p.loadgen_cpu += r.loadgen_cpu
        p.completed += r.completed
        p.errors += r.errors
        p.error_samples += r.error_samples
        p.ticks += r.ticks
        p.late += r.late
        p.skipped += r.skipped
        p.lag_p99_ms = max(p.lag_p99_ms, r.lag_p99_ms)
        p.lag_max_ms = max(p.lag_max_ms, r.lag_max_ms)
        p.notifications += r.notifications
        p.energized += r.energized
        p.per_second += r.per_second
        p.hotspots = p.hotspots or r.hotspots
        for k, v in r.latencies.items():
            p.latencies.setdefault(k, []).extend(v)
        if r.gc_pauses is not None:
            p.gc_pauses = (p.gc_pauses or []) + r.gc_pauses
    idle = [r.idle_cpu for r in runs if r.idle_cpu is not None]
    p.idle_cpu = sum(idle) / len(idle) if idle else None
    p.rss_base = sum(r.rss_base for r in runs) / len(runs)
    p.rss_loaded = sum(r.rss_loaded for r in runs) / len(runs)
    p.setup_s = max(r.setup_s for r in runs)
    p.energized = round(p.energized / len(runs))
    return p


def report(results: list[list[list[Run]]], args: argparse.Namespace) -> None:
    print()
    print(f"server benchmark, scenario {args.scenario}: {platform.node()} "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}; {args.rounds} "
          f"round(s) of {' / '.join(['sepgw'] + args.references)} interleaved, windows "
          f"{args.seconds:.0f} s after {args.warmup:.0f} s warm-up; meters every "
          f"{args.meter_interval:g} s; {args.loadgens} load generator process(es)")
    if args.gc_freeze:
        print("WHAT-IF: the sepgw server ran gc.collect(); gc.freeze() once after the setup "
              "(triggered by the benchmark's probe, not by sepgw)")
    if args.gc_threshold:
        print(f"WHAT-IF: the sepgw server ran with gc.set_threshold({args.gc_threshold}) "
              "(set by the benchmark's probe, not by sepgw)")
    print(f"mix per PEV: {MIX_RATE} req/s (PUT DERStatus, GET DefaultDERControl, GET "
          "DERControlList each second; PUT PowerStatus, PUT DERAvailability, 4 POST "
          "MirrorMeterReading every 15 s)"
          + ("; not authorized (no Responses)" if args.scenario == "polling" else
             "; authorized: Responses to every new DERControl, subscriptions to "
             "DERControlList and DefaultDERControl with a notification server per PEV")
          + (f"; churn: {args.churn_rate:g} departures and arrivals per second (their setup "
             "requests counted as kind 'setup')" if args.scenario == "churn" else ""))
    print()
    print(HEADER)
    for rounds in results:
        for runs in rounds:
            for r in runs:
                print(describe(r))
    print("  offered/served: requests/s; cpu: server CPU-seconds per second (1.00 = one core);"
          " lg cpu: load generators' CPU per second")
    pairs = []
    for rounds in results:
        by_target = {t: pooled([runs[i] for runs in rounds])
                     for i, t in enumerate(["sepgw"] + args.references)}
        s = by_target["sepgw"]
        c = by_target.get("ceiling")
        pairs.append(s)
        print()
        print(f"N = {s.n} ({args.scenario}), pooled over {args.rounds} round(s):")
        if c is not None:
            ratio = s.rps_per_cpu / c.rps_per_cpu
            per_round = [runs[0].rps_per_cpu / runs[1].rps_per_cpu for runs in rounds]
            print(f"  sepgw {s.rps_per_cpu:.0f} req/CPU-s, ceiling {c.rps_per_cpu:.0f} "
                  f"req/CPU-s, ratio {ratio:.3f} (rounds: "
                  f"{', '.join(f'{x:.3f}' for x in per_round)}; target >= {TARGET_RATIO:.2f}: "
                  f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})")
        a = by_target.get("aiohttp")
        if a is not None:
            print(f"  aiohttp reference {a.rps_per_cpu:.0f} req/CPU-s: aiohttp / sepgw "
                  f"{a.rps_per_cpu / s.rps_per_cpu:.2f}x, sepgw / aiohttp "
                  f"{s.rps_per_cpu / a.rps_per_cpu:.3f} (aim >= 0.75); aiohttp p50/p99 "
                  f"{a.pct(50):.1f}/{a.pct(99):.1f} ms")
        print(f"  sepgw p50 {s.pct(50):.1f} ms, p99 {s.pct(99):.1f} ms (target < "
              f"{TARGET_P99_MS:.0f} ms: {'met' if s.pct(99) < TARGET_P99_MS else 'NOT met'})"
              + (f"; ceiling p99 {c.pct(99):.1f} ms" if c is not None else ""))
        print(f"  sepgw idle with {s.n} sessions and meters every {args.meter_interval:g} s: "
              f"{s.idle_cpu:.3f} CPU; RSS {s.rss_base:.1f} MiB serving -> {s.rss_loaded:.1f} "
              f"MiB with {s.n} sessions = {s.rss_per_session_kib:.0f} KiB per session; setup "
              f"{s.setup_s:.1f} s")
        if args.scenario != "polling":
            print(f"  authorized (opModEnergize true) at the end: {s.energized} of {s.n}; "
                  f"notifications received by the PEVs: {s.notifications} over "
                  f"{args.rounds} run(s)")
        if args.scenario == "churn":
            for i, runs in enumerate(rounds):
                r = runs[0]
                series = r.rss_series
                if series:
                    half = series[len(series) // 2:]
                    print(f"  churn round {i + 1}: {r.departed} departures, {r.arrived} "
                          f"arrivals set up, {r.failed_arrivals} failed over warm-up and window "
                          f"({r.departed / (r.seconds + args.warmup - 1):.1f}/s); sepgw RSS "
                          f"over the window "
                          f"{series[0]:.1f} -> {series[-1]:.1f} MiB (max {max(series):.1f}; "
                          f"second half {min(half):.1f}-{max(half):.1f}), growth "
                          f"{series[-1] - series[0]:+.1f} MiB")
        print(f"  schedule: {s.ticks} ticks, {s.late} started > 100 ms late, {s.skipped} skipped;"
              f" lag p99 {s.lag_p99_ms:.0f} ms, max {s.lag_max_ms:.0f} ms")
        for kind in sorted(s.latencies):
            v = s.latencies[kind]
            print(f"  {kind:26} {len(v):6d} req  p50 {s.pct(50, v):6.1f} ms  "
                  f"p99 {s.pct(99, v):6.1f} ms")
        if s.gc_pauses is not None:
            full = [d for g, d in s.gc_pauses if g == 2]
            print(f"  sepgw garbage collection pauses >= 2 ms in the windows: "
                  f"{len(s.gc_pauses)}, {sum(d for _, d in s.gc_pauses):.0f} ms in all; "
                  f"generation 2: {len(full)}, longest {max(full, default=0):.0f} ms")
        if s.error_samples:
            print("  errors, e.g.: " + "; ".join(s.error_samples[:3]))
        if s.loadgen_util > 0.85 * args.loadgens and s.behind:
            print("  NOTE: the load generator was saturated (its CPU near one core): this N "
                  "measures the load generator, not the server")
        for t, r in by_target.items():
            if r.hotspots:
                print(f"  py-spy profile of the {t} server during the window (sampling "
                      "perturbs the figures of this run a little):")
                print(r.hotspots)
    print()
    best = max(pairs, key=lambda r: r.rps_per_cpu)
    per_core = best.rps_per_cpu / MIX_RATE
    ok = [s.n for s in pairs if s.meets_latency]
    print(f"capacity: largest N measured with p99 < {TARGET_P99_MS:.0f} ms, on schedule, no "
          f"errors, server CPU < 0.95 core: {max(ok) if ok else 'none'}")
    print(f"          extrapolated from requests per CPU-second: {best.rps_per_cpu:.0f} / "
          f"{MIX_RATE} = {per_core:.0f} PEVs per server core (target >= "
          f"{TARGET_PEVS_PER_CORE}: {'met' if per_core >= TARGET_PEVS_PER_CORE else 'NOT met'})")
    if best.n < 250:
        print("          (requests per CPU-second rise with the load, as more requests share "
              "each reactor wake-up: extrapolate from a run near the N in question)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pevs", type=int, action="append",
                    help="number of emulated PEVs (repeatable; default 200 authorized, "
                         "100 churn, 50 polling)")
    ap.add_argument("--full", action="store_true", help="capacity search: N = 100, 250, 500")
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring window")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--idle", type=float, default=3.0,
                    help="seconds of idle server CPU measured after setup")
    ap.add_argument("--log-level", default="info",
                    help="[logging] level of the sepgw config (default info, as etc/sepgw.toml)")
    ap.add_argument("--loadgens", type=int, default=1, help="load generator processes")
    ap.add_argument("--profile", action="store_true", help="py-spy the sepgw server")
    ap.add_argument("--gc-probe", action="store_true",
                    help="log the sepgw server's garbage collection pauses (sitecustomize)")
    ap.add_argument("--gc-threshold", metavar="G0,G1,G2",
                    help="what-if experiment (implies --gc-probe): run the sepgw server with "
                         "gc.set_threshold(G0, G1, G2) set by the probe; not sepgw's behaviour")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="what-if experiment (implies --gc-probe): gc.collect(); gc.freeze() "
                         "in the sepgw server once after the setup; not sepgw's behaviour")
    ap.add_argument("--scenario", choices=("authorized", "churn", "polling"),
                    action="append",
                    help="repeatable; default authorized then churn. authorized: the PEVs "
                         "post their Responses, subscribe and get notified; churn: the same "
                         "while PEVs leave and arrive --churn-rate times a second; polling: "
                         "the mix alone, no PEV authorized (the issue-12 'before' scenario)")
    ap.add_argument("--churn-rate", type=float, default=10.0,
                    help="churn: departures (each followed by an arrival) per second")
    ap.add_argument("--long", action="store_true",
                    help="churn: the 10-minute run of the target (--seconds 600, 1 round)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds of sepgw / ceiling / aiohttp, interleaved (default 2)")
    ap.add_argument("--meter-interval", type=float, default=0.1,
                    help="simulated meters' sampling interval (default 0.1 s, as shipped)")
    ap.add_argument("--no-aiohttp", action="store_true",
                    help="leave out the aiohttp reference server")
    ap.add_argument("--profile-references", action="store_true",
                    help="py-spy the ceiling and aiohttp servers too")
    ap.add_argument("--no-pin", action="store_true",
                    help="do not pin the server to CPU 0 and the load to the others")
    ap.add_argument("--memprobe", type=float, default=0.0, metavar="SECONDS",
                    help="tracemalloc, mallinfo2 and object counts in the sepgw server every "
                         "SECONDS (and on SIGUSR2), compared over the window "
                         "(benchmarks/_memprobe.py; keeps the work directory)")
    ap.add_argument("--memprobe-trim", action="store_true",
                    help="what-if with --memprobe: malloc_trim(0) after each probe")
    ap.add_argument("--pki", type=Path,
                    default=Path(tempfile.gettempdir()) / "sepgw-bench-pki",
                    help="PKI cache directory")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    scenarios = args.scenario or ["authorized", "churn"]
    if args.long:
        scenarios = ["churn"]
        args.seconds, args.rounds = 600.0, 1
    defaults = {"authorized": [200], "churn": [100], "polling": [50]}
    plans = {sc: args.pevs or ([100, 250, 500] if args.full else defaults[sc])
             for sc in scenarios}
    args.references = ["ceiling"]
    if not args.no_aiohttp:
        if aiohttp_available():
            args.references.append("aiohttp")
        else:
            print("aiohttp is not importable in this venv: the aiohttp reference is skipped "
                  f"({PY} -m pip install aiohttp to measure it; it is not a sepgw dependency)")
    if args.profile and not Path(PYSPY).exists():
        print(f"--profile needs py-spy in the venv ({PYSPY}): pip install py-spy",
              file=sys.stderr)
        return 1
    cpus = sorted(os.sched_getaffinity(0))
    cpus_server = cpus_load = None
    if not args.no_pin and len(cpus) >= 2:
        cpus_server, cpus_load = {cpus[0]}, set(cpus[1:])
    work = Path(tempfile.mkdtemp(prefix="sepgw-bench-"))
    if args.long:
        args.references = []  # the 10-minute run is about sepgw's memory
    everything: list[tuple[str, list[list[list[Run]]]]] = []
    try:
        t = time.monotonic()
        args.scenario = "churn"
        most = max(max(ns) + (spares(args) if sc == "churn" else 0)
                   for sc, ns in plans.items())
        try:
            ensure_pki(args.pki, most)
        except Exception as e:
            raise SetupError(f"PKI in {args.pki}: {e}") from None
        print(f"PKI with {most} PEV certificates in {args.pki} "
              f"({time.monotonic() - t:.1f} s); work directory {work}", flush=True)
        for scenario, ns in plans.items():
            args.scenario = scenario
            if scenario == "churn":
                args.loadgens = 1  # the churn runs in one load generator
            results: list[list[list[Run]]] = []
            for n in ns:
                print(f"{scenario}, N = {n}: {args.rounds} round(s) of "
                      f"{', '.join(['sepgw'] + args.references)} ...", flush=True)
                results.append(run_rounds(args, n, args.pki, work, cpus_server, cpus_load))
            everything.append((scenario, results))
    except SetupError as e:
        print(f"setup failed: {e}", file=sys.stderr)
        print(f"(work directory kept: {work})", file=sys.stderr)
        return 1
    for scenario, results in everything:
        args.scenario = scenario
        report(results, args)
    if args.keep or args.profile or args.memprobe:
        print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
