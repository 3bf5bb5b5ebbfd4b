#!/usr/bin/env python3
"""Memory probe of the ``twistd sepgw`` server for benchmarks/server.py ``--memprobe`` (not
sepgw code).

In the server (imported by a ``sitecustomize`` that benchmarks/server.py puts on the server's
PYTHONPATH, configured by environment variables), :func:`install` probes every
``SEPGW_BENCH_MEMPROBE_EVERY`` seconds (``setitimer``, SIGALRM: no thread, so no extra malloc
arena; the first ``SEPGW_BENCH_MEMPROBE_START`` seconds after the process started, once the
server is up) and on SIGUSR2. Each probe writes one JSON line to
``$SEPGW_BENCH_MEMPROBE_DIR/probe.jsonl``: RSS; glibc's ``mallinfo2`` (in use, free, arena,
mmapped); pymalloc's arenas and blocks (``sys._debugmallocstats``); object counts by type
from ``gc.get_objects()`` (objects frozen at start-up are not in it), after a
``gc.collect()`` unless ``SEPGW_BENCH_MEMPROBE_COLLECT=0``, so that garbage awaiting a
collection is neither counted nor traced; and the duration and RSS before and after of each
periodic trim of the gateway's ``HeapTrimmer`` since the last probe (its trim function is
wrapped at the first probe).

``tracemalloc`` (``SEPGW_BENCH_MEMPROBE_FRAMES`` frames, default 16; 0: off) starts at probe
number ``SEPGW_BENCH_MEMPROBE_TRACE_FROM`` (default 0): tracing slows the server a lot, so a
long run traces only its last probes, and never the start-up. From then on each probe also
dumps ``snap-<k>.tm``; tracebacks are formatted later, in the analysing process, so the
server never reads source files through linecache. Only allocations made after tracing
started are traced: the growth between two later snapshots is what retention looks like.

With ``SEPGW_BENCH_MEMPROBE_TRIM=1`` each probe then also calls ``malloc_trim(0)`` and
records its duration and the RSS after it (a what-if: that changes the run).

Offline::

    .venv/bin/python benchmarks/_memprobe.py DIR [--from T0] [--to T1]

prints the series and compares the first and last snapshot in [T0, T1] (epoch seconds) by
traceback and by line, and the object types that grew.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import time
from pathlib import Path
from typing import Any


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def mallinfo() -> dict[str, float]:
    """glibc's mallinfo2 in KiB (all arenas): in use (uordblks + hblkhd), free, arena, mmap."""
    libc = _libc()
    try:
        f = libc.mallinfo2
    except AttributeError:
        return {}
    f.restype = MallInfo2
    i = f()
    return {"in_use_kib": (i.uordblks + i.hblkhd) / 1024, "free_kib": i.fordblks / 1024,
            "arena_kib": i.arena / 1024, "mmap_kib": i.hblkhd / 1024,
            "top_kib": i.keepcost / 1024, "free_chunks": i.ordblks}


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pymalloc() -> dict[str, float]:
    """pymalloc's arenas (1 MiB each, mmap'd: not in mallinfo2), bytes in allocated blocks,
    in free blocks and in unused pools, KiB, from ``sys._debugmallocstats()`` (written to fd 2,
    redirected to a file meanwhile); empty while tracemalloc traces (its hooks replace
    pymalloc as the allocator CPython reports on)."""
    import sys
    import tempfile

    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode("ascii", "replace")
    out: dict[str, float] = {}
    for line in text.splitlines():
        left, _, right = line.partition("=")
        value = right.strip().replace(",", "")
        if not value.isdigit():
            continue
        if left.startswith("# arenas allocated current"):
            out["pymalloc_arenas"] = int(value)
        elif left.startswith("# bytes in allocated blocks"):
            out["pymalloc_used_kib"] = int(value) / 1024
        elif left.startswith("# bytes in available blocks"):
            out["pymalloc_free_kib"] = int(value) / 1024
        elif "unused pools" in left:
            out["pymalloc_unused_pools_kib"] = int(value) / 1024
    return out


def install() -> None:
    """In the server: start tracemalloc, probe on SIGALRM (every N s) and SIGUSR2."""
    import gc
    import signal
    import tracemalloc
    from collections import Counter

    out = Path(os.environ["SEPGW_BENCH_MEMPROBE_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    frames = int(os.environ.get("SEPGW_BENCH_MEMPROBE_FRAMES", "16"))
    every = float(os.environ.get("SEPGW_BENCH_MEMPROBE_EVERY", "0"))
    do_trim = os.environ.get("SEPGW_BENCH_MEMPROBE_TRIM") == "1"
    collect = os.environ.get("SEPGW_BENCH_MEMPROBE_COLLECT", "1") == "1"
    trace_from = int(os.environ.get("SEPGW_BENCH_MEMPROBE_TRACE_FROM", "0"))
    start = float(os.environ.get("SEPGW_BENCH_MEMPROBE_START", "20"))
    log = (out / "probe.jsonl").open("a", buffering=1)
    count = [0]
    busy = [False]
    wrapped: list[Any] = []
    trims: list[tuple[float, float, int, int]] = []

    def timed(trim: Any) -> Any:
        def run() -> Any:
            before = rss_kib()
            t = time.perf_counter()
            result = trim()
            us = (time.perf_counter() - t) * 1e6
            trims.append((time.time(), us, before, rss_kib()))
            return result
        return run

    def probe(*_: Any) -> None:
        if busy[0]:
            return
        busy[0] = True
        try:
            if frames > 0 and count[0] >= trace_from and not tracemalloc.is_tracing():
                tracemalloc.start(frames)
            _probe()
        except Exception as e:  # never disturb the server
            log.write(json.dumps({"error": repr(e), "time": time.time()}) + "\n")
        finally:
            busy[0] = False

    def _name(t: type) -> str:
        return f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', '?')}"

    def _probe() -> None:
        t0 = time.perf_counter()
        k = count[0]
        count[0] += 1
        rec: dict[str, Any] = {"k": k, "time": time.time(), "rss_kib": rss_kib()}
        if collect:  # count and trace what is alive, not garbage awaiting a collection
            t = time.perf_counter()
            rec["collected"] = gc.collect()
            rec["collect_ms"] = (time.perf_counter() - t) * 1e3
        rec.update(mallinfo())
        rec.update(pymalloc())
        if tracemalloc.is_tracing():
            rec["traced_kib"] = tracemalloc.get_traced_memory()[0] / 1024
            rec["tracemalloc_overhead_kib"] = tracemalloc.get_tracemalloc_memory() / 1024
            tracemalloc.take_snapshot().dump(str(out / f"snap-{k}.tm"))
        types = Counter(_name(type(o)) for o in gc.get_objects())
        rec["objects"] = sum(types.values())
        calls: dict[str, list[float]] = {}
        now = time.time()
        for o in gc.get_objects():  # what the reactor's pending timers are for
            if type(o).__name__ == "DelayedCall" and not (o.called or o.cancelled):
                f = getattr(o.func, "__func__", o.func)
                calls.setdefault(getattr(f, "__qualname__", repr(f)), []).append(o.time - now)
        rec["delayed_calls"] = {k: [len(v), min(v), max(v)] for k, v in calls.items()}
        rec["types"] = dict(types)
        rec["gc_counts"] = gc.get_count()
        if not wrapped:  # time the gateway's own periodic trims (sepgw's HeapTrimmer)
            for o in gc.get_objects():  # the trimmer itself is frozen; its LoopingCall not
                owner = getattr(getattr(o, "f", None), "__self__", None)
                if type(o).__name__ == "LoopingCall" and type(owner).__name__ == "HeapTrimmer" \
                        and getattr(owner, "_trim", None):
                    owner._trim = timed(owner._trim)
                    wrapped.append(owner)
        rec["product_trims"], trims[:] = list(trims), []
        if do_trim:
            t1 = time.perf_counter()
            _libc().malloc_trim(0)
            rec["trim_us"] = (time.perf_counter() - t1) * 1e6
            rec["rss_trimmed_kib"] = rss_kib()
        rec["probe_s"] = time.perf_counter() - t0
        log.write(json.dumps(rec) + "\n")

    signal.signal(signal.SIGUSR2, probe)
    if every > 0:
        signal.signal(signal.SIGALRM, probe)
        signal.setitimer(signal.ITIMER_REAL, start, every)


# -- offline analysis ---------------------------------------------------------------------------


def load(directory: Path) -> list[dict[str, Any]]:
    path = directory / "probe.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if "error" not in r]


def series(records: list[dict[str, Any]]) -> str:
    """One line per probe: RSS, malloc in use and free, traced Python, objects."""
    out = [f"{'k':>3} {'t s':>6} {'RSS MiB':>8} {'malloc use':>10} {'malloc free':>11} "
           f"{'arena':>7} {'mmap':>6} {'pym ar':>6} {'pym use':>7} {'pym free':>8} "
           f"{'traced':>7} {'objects':>8} {'trim us':>8} {'RSS trim':>8}"]
    t0 = records[0]["time"] if records else 0.0
    for r in records:
        pym_free = r.get("pymalloc_free_kib", 0) + r.get("pymalloc_unused_pools_kib", 0)
        out.append(f"{r['k']:3d} {r['time'] - t0:6.0f} {r['rss_kib'] / 1024:8.1f} "
                   f"{r.get('in_use_kib', 0) / 1024:10.1f} {r.get('free_kib', 0) / 1024:11.1f} "
                   f"{r.get('arena_kib', 0) / 1024:7.1f} {r.get('mmap_kib', 0) / 1024:6.1f} "
                   f"{r.get('pymalloc_arenas', 0):6d} {r.get('pymalloc_used_kib', 0) / 1024:7.1f} "
                   f"{pym_free / 1024:8.1f} "
                   f"{r.get('traced_kib', 0) / 1024:7.1f} {r['objects']:8d} "
                   f"{r.get('trim_us', float('nan')):8.0f} "
                   f"{r.get('rss_trimmed_kib', 0) / 1024:8.1f}")
    out.append("  (MiB; malloc use = mallinfo2 uordblks + hblkhd, free = fordblks; pym ar = "
               "pymalloc's 1 MiB arenas (mmap, not in malloc), pym use / free = its bytes in "
               "allocated blocks / in free blocks and unused pools; traced = tracemalloc's Python "
               "allocations since tracing started, its own overhead excluded)")
    return "\n".join(out)


def compare(directory: Path, a: dict[str, Any], b: dict[str, Any], top: int = 12,
            root: str = "") -> str:
    """Snapshot b against a: by traceback (frames inside the repo shortened) and by line,
    and the object types that grew."""
    import tracemalloc

    out = [f"probe {a['k']} -> {b['k']} ({b['time'] - a['time']:.0f} s): RSS "
           f"{(b['rss_kib'] - a['rss_kib']) / 1024:+.2f} MiB, malloc in use "
           f"{(b.get('in_use_kib', 0) - a.get('in_use_kib', 0)) / 1024:+.2f} MiB, malloc free "
           f"{(b.get('free_kib', 0) - a.get('free_kib', 0)) / 1024:+.2f} MiB, traced Python "
           f"{(b.get('traced_kib', 0) - a.get('traced_kib', 0)) / 1024:+.2f} MiB, objects "
           f"{b['objects'] - a['objects']:+d}"]
    sa, sb = directory / f"snap-{a['k']}.tm", directory / f"snap-{b['k']}.tm"
    if sa.exists() and sb.exists():
        s0 = tracemalloc.Snapshot.load(str(sa))
        s1 = tracemalloc.Snapshot.load(str(sb))
        noise = (tracemalloc.Filter(False, tracemalloc.__file__),
                 tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
                 tracemalloc.Filter(False, "*/linecache.py"))
        s0, s1 = s0.filter_traces(noise), s1.filter_traces(noise)
        for key in ("filename", "lineno"):
            out.append(f"  grew most, by {key}:")
            for st in s1.compare_to(s0, key)[:top]:
                out.append(f"    {st.size_diff / 1024:+9.1f} KiB {st.count_diff:+7d} blocks  "
                           f"{_short(str(st.traceback[0]), root)}")
        out.append("  grew most, by traceback (innermost frame last):")
        for st in s1.compare_to(s0, "traceback")[:top]:
            out.append(f"    {st.size_diff / 1024:+9.1f} KiB {st.count_diff:+7d} blocks, "
                       f"now {st.size / 1024:.1f} KiB in {st.count} blocks")
            frames = [f for f in st.traceback.format(most_recent_first=False)
                      if f.startswith("  File")]
            for f in frames[-10:]:
                out.append("        " + _short(f.strip(), root))
    da, db = a.get("delayed_calls", {}), b.get("delayed_calls", {})
    if db:
        grew_calls = sorted(((db[f][0] - da.get(f, [0])[0], f) for f in db), reverse=True)
        out.append("  pending reactor timers that grew most (function: count, due in s):")
        out += [f"    {d:+6d}  {f} (now {db[f][0]}, due in {db[f][1]:.0f} to {db[f][2]:.0f} s)"
                for d, f in grew_calls[:6] if d > 0]
    ta, tb = a.get("types", {}), b.get("types", {})
    grew = sorted(((tb.get(t, 0) - ta.get(t, 0), t) for t in set(ta) | set(tb)), reverse=True)
    out.append("  object types that grew most (gc-tracked objects):")
    out += [f"    {d:+7d}  {t} (now {tb.get(t, 0)})" for d, t in grew[:top] if d > 0]
    return "\n".join(out)


def _short(text: str, root: str) -> str:
    """A path shortened after site-packages/, the repository or the standard library."""
    for marker in ("site-packages/", root.rstrip("/") + "/" if root else "\0",
                   "/lib/python3.11/"):
        if marker in text:
            head, _, tail = text.partition(marker)
            return ('File "' if head.startswith('File "') else "") + tail
    return text


def report(directory: Path, frm: float | None = None, to: float | None = None,
           root: str = "") -> str:
    """The series, and comparisons of the probes inside [frm, to]: first -> middle -> last."""
    records = load(directory)
    if not records:
        return f"  (no memory probe records in {directory})"
    inside = [r for r in records if (frm is None or r["time"] >= frm)
              and (to is None or r["time"] <= to)]
    parts = ["memory probe of the sepgw server (" + str(directory) + "):", series(records)]
    trims = [t for r in records for t in r.get("product_trims", [])]
    if trims:
        us = sorted(t[1] for t in trims)
        drops = [(t[2] - t[3]) / 1024 for t in trims]
        parts.append(f"  the gateway's periodic trims: {len(trims)}, {us[len(us) // 2]:.0f} us "
                     f"median, {us[-1]:.0f} us max; RSS released per trim "
                     f"{sum(drops) / len(drops):.2f} MiB mean, {max(drops):.2f} MiB max; RSS "
                     f"after each: " + ", ".join(f"{t[3] / 1024:.1f}" for t in trims))
    if len(inside) >= 2:
        a, b = inside[0], inside[-1]
        if len(inside) >= 3:
            m = inside[len(inside) // 2]
            parts.append(compare(directory, a, m, root=root))
            parts.append(compare(directory, m, b, root=root))
        parts.append(compare(directory, a, b, root=root))
    traced = [r for r in inside if (directory / f"snap-{r['k']}.tm").exists()]
    if len(traced) >= 2 and (traced[-2]["k"], traced[-1]["k"]) != (a["k"], b["k"]):
        parts.append(compare(directory, traced[-2], traced[-1], root=root))
    return "\n".join(parts)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Analyse a --memprobe directory.")
    ap.add_argument("directory", type=Path)
    ap.add_argument("--from", dest="frm", type=float)
    ap.add_argument("--to", type=float)
    ns = ap.parse_args()
    print(report(ns.directory, ns.frm, ns.to, root=str(Path(__file__).resolve().parent.parent)))
