#!/usr/bin/env python3
"""Start-up time and idle memory of ``twistd sepgw`` with the default configuration.

Measures, over several runs, the time from process start to the "serving" log line and the
resident memory after the process has idled for a moment; as the baseline in the same run,
the same for a bare ``twistd web`` serving a directory. Targets: serving under 1.5 s, idle
RSS under 60 MiB.

    .venv/bin/python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TWISTD = str(Path(sys.executable).parent / "twistd")
TARGET_S = 1.5
TARGET_MIB = 60.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def measure(args: list[str], ready: str, idle_s: float) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if ready in line:
                elapsed = time.perf_counter() - start
                break
        else:
            raise RuntimeError(f"{' '.join(args)} ended before {ready!r}")
        time.sleep(idle_s)
        rss = rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    return elapsed, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before RSS")
    args = parser.parse_args()
    if not (ROOT / "run" / "pki" / "serca.pem").exists():
        subprocess.run([str(Path(sys.executable).parent / "sepgw"), "pki", "init",
                        str(ROOT / "run" / "pki")], check=True, stdout=subprocess.DEVNULL)
    sepgw = [TWISTD, "-n", "--pidfile=", "sepgw", "--config", str(ROOT / "etc" / "sepgw.toml")]
    web = [TWISTD, "-n", "--pidfile=", "web", "--listen", "tcp:0:interface=127.0.0.1",
           "--path", str(ROOT / "docs")]
    results = {"sepgw": [], "twistd web (baseline)": []}
    for _ in range(args.runs):
        results["sepgw"].append(measure(sepgw, "sepgw EVSE serving", args.idle))
        results["twistd web (baseline)"].append(measure(web, "Starting factory", args.idle))
    print(f"startup benchmark, {args.runs} runs each, median (min-max)")
    medians = {}
    for name, runs in results.items():
        times = [t for t, _ in runs]
        rss = [r for _, r in runs]
        medians[name] = (statistics.median(times), statistics.median(rss))
        print(f"  {name:22} serving after {medians[name][0]:.3f} s ({min(times):.3f}-"
              f"{max(times):.3f})   idle RSS {medians[name][1]:.1f} MiB ({min(rss):.1f}-"
              f"{max(rss):.1f})")
    t, r = medians["sepgw"]
    bt, br = medians["twistd web (baseline)"]
    print(f"  ratio sepgw / baseline: time {t / bt:.2f}x, RSS {r / br:.2f}x")
    ok = t < TARGET_S and r < TARGET_MIB
    print(f"  targets: serving < {TARGET_S} s, RSS < {TARGET_MIB:.0f} MiB: "
          f"{'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
