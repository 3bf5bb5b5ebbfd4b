#!/usr/bin/env python3
"""Link-up to first HTTPS request: how long a plugged-in PEV needs to reach the EVSE's
2030.5 server through the network plane (Router Advertisement, SLAAC with duplicate address
detection, mDNS discovery, TLS), in two network namespaces joined by a veth pair (root only).

For each run, the EVSE (`twistd sepgw`, Ethernet transport, [network] enabled) and the PEV
(`twistd sepgw-pev`, no URL) start with the PEV's end of the veth pair down; the link is
then brought up, and the time from that moment to the PEV's first established TLS session
is measured from both processes' JSON logs. Reports the median and the spread; the parts
(link up -> ULA address, -> EVSE found by mDNS, -> TLS) are shown too. SLAC matching time
is measured by benchmarks/slac.py.

Two cases: "replug" (the pair was up once, so the EVSE's link-local address exists and
stays valid across the carrier loss) and "first carrier" (the EVSE's end has never had a
carrier: its link-local address is made, tentative, at plug-in, and its Router
Advertisements must wait for it, RFC 4861 §4.2).

    sudo .venv/bin/python benchmarks/link.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import shared_pki  # noqa: E402
from tests.netns import Netns, available  # noqa: E402
from tests.processes import TWISTD, Process  # noqa: E402
from tests.test_e2e_netns import evse_config, pev_config  # noqa: E402


class Cleanups:
    """What Netns needs of a test case."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def addCleanup(self, f, *args, **kwargs) -> None:  # noqa: N802 - TestCase's name
        self.calls.append((f, args, kwargs))

    def run(self) -> None:
        for f, args, kwargs in reversed(self.calls):
            try:
                f(*args, **kwargs)
            except Exception:
                pass
        self.calls.clear()


def json_logs(path: Path) -> Path:
    text = path.read_text()
    text = text.replace('[logging]\nlevel = "info"\nformat = "text"',
                        '[logging]\nlevel = "info"\nformat = "json"')
    path.write_text(text)
    return path


def event_time(proc: Process, needle: str, timeout: float = 60) -> float:
    line = proc.wait_for(needle, timeout=timeout).string
    return float(json.loads(line)["time"])


def veth_pev_end_down(net: Netns, evse_ns: str, pev_ns: str) -> None:
    """evse0 (up, no carrier yet) and pev0 (down, never up)."""
    tmp_a, tmp_b = f"la{net.tag}", f"lb{net.tag}"
    subprocess.run(["ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b],
                   check=True)
    for tmp, name, ns in ((tmp_a, "evse0", evse_ns), (tmp_b, "pev0", pev_ns)):
        subprocess.run(["ip", "link", "set", tmp, "netns", ns], check=True)
        net.run(ns, "ip", "link", "set", tmp, "name", name)
    net.run(evse_ns, "ip", "link", "set", "evse0", "up")


def one_run(pki: Path, first_carrier: bool = False) -> dict[str, float]:
    cleanups = Cleanups()
    try:
        net = Netns(cleanups)
        evse_ns, pev_ns = net.namespace("evse"), net.namespace("pev")
        if first_carrier:
            veth_pev_end_down(net, evse_ns, pev_ns)
        else:
            net.veth("evse0", evse_ns, "pev0", pev_ns)
            net.run(pev_ns, "ip", "link", "set", "pev0", "down")
        directory = Path(tempfile.mkdtemp(prefix="sepgw-link-"))
        cleanups.addCleanup(shutil.rmtree, directory, True)
        (directory / "evse").mkdir()
        (directory / "pev").mkdir()
        evse = Process(["ip", "netns", "exec", evse_ns, TWISTD, "-n", "--pidfile=", "sepgw",
                        "--config", str(json_logs(evse_config(directory / "evse", pki)))])
        cleanups.addCleanup(evse.kill)
        evse.wait_for("sepgw EVSE serving", timeout=30)
        evse.wait_for("routing locked out", timeout=30)
        pev = Process(["ip", "netns", "exec", pev_ns, TWISTD, "-n", "--pidfile=", "sepgw-pev",
                       "--config", str(json_logs(pev_config(directory / "pev", pki)))])
        cleanups.addCleanup(pev.kill)
        pev.wait_for("Looking for the EVSE by mDNS", timeout=30)
        up = time.time()
        net.run(pev_ns, "ip", "link", "set", "pev0", "up")
        found = event_time(pev, "Found the EVSE by mDNS")
        tls = event_time(pev, "TLS session with .* established")
        granted = event_time(evse, "not authorized -> authorized")
        return {"found": found - up, "tls": tls - up, "authorized": granted - up}
    finally:
        cleanups.run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    reason = available()
    if reason is not None:
        print(f"link benchmark skipped: {reason}")
        return 0
    pki = shared_pki()
    print(f"link benchmark: {args.runs} runs per case, veth pair between two namespaces, "
          "seconds from link up (median, min-max)")
    for first_carrier, case in ((False, "replug"), (True, "first carrier")):
        runs = [one_run(pki, first_carrier) for _ in range(args.runs)]
        print(f" {case}:")
        for key, label in (("found", "EVSE found by mDNS (RA + SLAAC/DAD + mDNS)"),
                           ("tls", "first HTTPS request (TLS session established)"),
                           ("authorized", "PEV authorized to discharge")):
            values = [r[key] for r in runs]
            print(f"  {label:48} {statistics.median(values):6.3f} s "
                  f"({min(values):.3f}-{max(values):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
