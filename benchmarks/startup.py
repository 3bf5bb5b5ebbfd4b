#!/usr/bin/env python3
"""Start-up time and idle memory of ``twistd sepgw`` with the shipped configuration.

Each run starts ``twistd -n sepgw`` with etc/sepgw.toml (the same sections and values; only
the HTTPS port, the simulated link's UDP port, the operator socket and the state directory
are moved to free ones in a temporary directory, so a demo running on this machine does not
interfere) and, from process start, polls it every 10 ms with a PEV: a mutual-TLS connection
with the test PKI's PEV certificate (TLS 1.2, ECDHE-ECDSA-AES128-CCM8) and ``GET /dcap``.
The time to the first 200 DeviceCapability is the start-up time (the "serving" log line is
reported too). Then the process idles ``--idle`` seconds and its resident memory is read.
Baseline in the same run, interleaved (sepgw, web, sepgw, web...): a bare ``twistd web``
serving a directory, timed to its first answered ``GET /`` (plain HTTP) and measured the same
way. Targets: first DeviceCapability under 1.5 s, idle RSS under 60 MiB.

    .venv/bin/python benchmarks/startup.py [--runs 5] [--idle 2]
"""

from __future__ import annotations

import argparse
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
TWISTD = str(Path(sys.executable).parent / "twistd")
TARGET_S = 1.5
TARGET_MIB = 60.0

from server import _toml_table, _toml_value, free_port  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shipped_config(work: Path) -> tuple[Path, int]:
    """etc/sepgw.toml with its paths made absolute and its ports and socket moved."""
    etc = ROOT / "etc"
    cfg: dict[str, Any] = tomllib.loads((etc / "sepgw.toml").read_text())
    port = free_port6()
    cfg["gateway"]["state_dir"] = str(work / "state")
    tls = cfg["tls"]
    tls["cert"], tls["key"] = str((etc / tls["cert"]).resolve()), str((etc / tls["key"]).resolve())
    tls["ca"] = [str((etc / c).resolve()) for c in tls["ca"]]
    cfg["server"]["port"] = port
    if "operator" in cfg:
        cfg["operator"]["socket"] = str(work / "sepgw.sock")
    if "approved_list" in cfg.get("policy", {}):
        cfg["policy"]["approved_list"] = str((etc / cfg["policy"]["approved_list"]).resolve())
    for p in cfg.get("ports", []):
        link = f"127.0.0.1:{free_udp_port()}"
        for part in ("contactor", "meter"):
            if isinstance(p.get(part), dict) and "link" in p[part]:
                p[part]["link"] = link
    text = ""
    for name, value in cfg.items():
        if name == "ports":
            for p in value:
                text += "[[ports]]\n" + "".join(f"{k} = {_toml_value(v)}\n"
                                                for k, v in p.items()) + "\n"
        elif isinstance(value, dict):
            text += _toml_table(name, value)
        else:
            text = f"{name} = {_toml_value(value)}\n" + text
    path = work / "sepgw.toml"
    path.write_text(text)
    return path, port


def free_port6() -> int:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            return int(s.getsockname()[1])
    except OSError:
        return free_port()


def pev_tls() -> ssl.SSLContext:
    """A PEV's client side: its certificate, the server checked against the SERCA."""
    pki = ROOT / "run" / "pki"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(str(pki / "serca.pem"))
    ctx.load_cert_chain(str(pki / "pev.pem"), str(pki / "pev.key"))
    ctx.set_ciphers("ECDHE-ECDSA-AES128-CCM8:@SECLEVEL=0")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def get(host: str, port: int, path: str, ctx: ssl.SSLContext | None) -> bytes | None:
    """One ``GET path`` on a new connection; the response, or None if not (yet) served."""
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            s: Any = ctx.wrap_socket(raw) if ctx is not None else raw
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data
    except (OSError, ssl.SSLError):
        return None


def measure(args: list[str], ready_line: str, host: str, port: int, path: str, expect: bytes,
            ctx: ssl.SSLContext | None, idle_s: float) -> tuple[float, float, float]:
    """(seconds to the log line, seconds to the first answer, idle RSS MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    logged: list[float] = []
    tail: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail[:] = (tail + [line])[-30:]
            if not logged and ready_line in line:
                logged.append(time.perf_counter() - start)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = start + 30
        while True:
            data = get(host, port, path, ctx)
            if data is not None and data.startswith(b"HTTP/1.1 200") and expect in data:
                answered = time.perf_counter() - start
                break
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"{' '.join(args)}: no answer to GET {path}:\n"
                                   + "".join(tail))
            time.sleep(0.01)
        time.sleep(idle_s)
        rss = rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
    return (logged[0] if logged else float("nan")), answered, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before RSS")
    args = parser.parse_args()
    if not (ROOT / "run" / "pki" / "serca.pem").exists():
        subprocess.run([str(Path(sys.executable).parent / "sepgw"), "pki", "init",
                        str(ROOT / "run" / "pki")], check=True, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="sepgw-startup-"))
    config, port = shipped_config(work)
    host = "::1" if "::1" in tomllib.loads(config.read_text())["server"]["addresses"] \
        else "127.0.0.1"
    ctx = pev_tls()
    sepgw = [TWISTD, "-n", "--pidfile=", "sepgw", "--config", str(config)]
    results: dict[str, list[tuple[float, float, float]]] = {
        "sepgw": [], "twistd web (baseline)": []}
    for _ in range(args.runs):  # interleaved, so drift of a loaded machine cancels
        results["sepgw"].append(measure(sepgw, "sepgw EVSE serving", host, port, "/dcap",
                                        b"<DeviceCapability", ctx, args.idle))
        wport = free_port()
        web = [TWISTD, "-n", "--pidfile=", "web", "--listen",
               f"tcp:{wport}:interface=127.0.0.1", "--path", str(ROOT / "docs")]
        results["twistd web (baseline)"].append(
            measure(web, "Starting factory", "127.0.0.1", wport, "/", b"<html", None,
                    args.idle))
    print(f"startup benchmark, {args.runs} runs each (interleaved), median (min-max); "
          f"RSS after answering and {args.idle:g} s idle")
    medians = {}
    for name, runs in results.items():
        logged = [x for x, _, _ in runs]
        answered = [a for _, a, _ in runs]
        rss = [r for _, _, r in runs]
        medians[name] = (statistics.median(answered), statistics.median(rss))
        what = "DeviceCapability (mutual TLS)" if name == "sepgw" else "GET / (plain HTTP)"
        print(f"  {name:22} first {what} after {medians[name][0]:.3f} s "
              f"({min(answered):.3f}-{max(answered):.3f}); log line after "
              f"{statistics.median(logged):.3f} s; idle RSS {medians[name][1]:.1f} MiB "
              f"({min(rss):.1f}-{max(rss):.1f})")
    t, r = medians["sepgw"]
    bt, br = medians["twistd web (baseline)"]
    print(f"  sepgw / baseline: time {t / bt:.2f}x (+{t - bt:.3f} s), RSS {r / br:.2f}x "
          f"(+{r - br:.1f} MiB)")
    ok = t < TARGET_S and r < TARGET_MIB
    print(f"  targets: first DeviceCapability < {TARGET_S} s, idle RSS < {TARGET_MIB:.0f} MiB: "
          f"{'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
