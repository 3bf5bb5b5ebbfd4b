"""``make demo``: an EVSE and a PEV emulator on simulated hardware, on this machine.

Creates the test PKI in ``run/pki`` if missing, starts ``twistd -n sepgw --config
etc/sepgw.toml`` and ``twistd -n sepgw-pev --config etc/pev.toml``, shows both logs with
a prefix, and stops both with SIGTERM after ``--seconds`` (or on Ctrl-C), then prints what
the session reached.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TWISTD = Path(sys.executable).parent / "twistd"

MILESTONES = [
    ("evse", r"sepgw EVSE serving", "EVSE serving HTTPS with mutual TLS"),
    ("pev", r"established \(TLSv1\.2 ECDHE-ECDSA-AES128-CCM8\)",
     "PEV connected: TLS 1.2, ECDHE-ECDSA-AES128-CCM8, EVSE identified by LFDI"),
    ("evse", r"TLS session with .* established",
     "EVSE identified the PEV by LFDI/SFDI/HardwareModuleName"),
    ("pev", r"EVSE answered \d+ for DeviceCapability", "PEV requested DeviceCapability"),
]


class Child:
    """A twistd child whose output is echoed with a prefix and kept for the summary."""

    def __init__(self, tag: str, args: list[str]) -> None:
        self.tag = tag
        self.lines: list[str] = []
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            # Drop the ISO timestamp to keep the demo readable.
            shown = re.sub(r"^\S+T\S+ ", "", line.rstrip())
            print(f"[{self.tag:4}] {shown}", flush=True)

    def seen(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in list(self.lines))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.thread.join(5)
        return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sepgw.demo", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="how long to run before stopping both (default 8)")
    args = parser.parse_args(argv)

    pki = ROOT / "run" / "pki"
    if not (pki / "serca.pem").exists():
        from sepgw.security.pki_cli import main as pki_main

        if pki_main(["init", str(pki)]) != 0:
            return 1

    evse = Child("evse", [str(TWISTD), "-n", "--pidfile=", "sepgw", "--config",
                          str(ROOT / "etc" / "sepgw.toml")])
    deadline = time.monotonic() + 15
    while not evse.seen(MILESTONES[0][1]) and evse.proc.poll() is None and (
            time.monotonic() < deadline):
        time.sleep(0.05)
    if not evse.seen(MILESTONES[0][1]):
        evse.stop()
        print("demo: the EVSE did not start; see its log above", file=sys.stderr)
        return 1
    pev = Child("pev", [str(TWISTD), "-n", "--pidfile=", "sepgw-pev", "--config",
                        str(ROOT / "etc" / "pev.toml")])
    try:
        end = time.monotonic() + args.seconds
        while time.monotonic() < end and evse.proc.poll() is None and pev.proc.poll() is None:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    pev.stop()
    evse.stop()
    children = {"evse": evse, "pev": pev}
    print("\ndemo summary:")
    reached = 0
    for tag, pattern, text in MILESTONES:
        ok = children[tag].seen(pattern)
        reached += ok
        print(f"  [{'x' if ok else ' '}] {text}")
    print("  contactor left open on stop: "
          f"{'yes' if evse.seen(r'contactor open') else 'NO'}")
    return 0 if reached == len(MILESTONES) else 1


if __name__ == "__main__":
    raise SystemExit(main())
