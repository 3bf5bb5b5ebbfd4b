"""``make demo``: an EVSE and a PEV emulator on simulated hardware, on this machine.

Creates the test PKI in ``run/pki`` if missing, starts ``twistd -n sepgw --config
etc/sepgw.toml`` and ``twistd -n sepgw-pev --config etc/pev.toml`` on the simulated
electrical link, shows both logs with a prefix; once the PEV is authorized, asks (as the
local operator, ``sepgw ctl``) for 50 % discharge with opModFixedW, lets it discharge for
``--seconds``, stops both with SIGTERM and prints what the session reached and what the
EVSE's own meter measured.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TWISTD = Path(sys.executable).parent / "twistd"

MILESTONES = [
    ("evse", r"sepgw EVSE serving", "EVSE serving HTTPS with mutual TLS"),
    ("pev", r"established \(TLSv1\.2 ECDHE-ECDSA-AES128-CCM8\)",
     "PEV connected: TLS 1.2, ECDHE-ECDSA-AES128-CCM8, EVSE identified by LFDI"),
    ("evse", r"TLS session with .* established",
     "EVSE identified the PEV by LFDI/SFDI/HardwareModuleName"),
    ("pev", r"step 3: management information", "PEV exchanged information and got the "
     "management information, following links only"),
    ("evse", r"port1: not authorized -> authorized", "EVSE authorized the PEV to discharge "
     "(j3072 policy: certified, approved ISM, quadrants, site limits, responses)"),
    ("pev", r"opModEnergize True", "PEV observed opModEnergize true"),
    ("pev", r"Inverter: discharge allowed, opModFixedW 50 %", "operator asked for 50 % "
     "discharge (sepgw ctl fixed-w port1 50): PEV discharging per opModFixedW"),
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


def wait_for(child: Child, pattern: str, seconds: float, *others: Child) -> bool:
    """Wait until ``child`` logs ``pattern`` (False if it or another child ended)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.seen(pattern):
            return True
        if any(c.proc.poll() is not None for c in (child, *others)):
            return False
        time.sleep(0.05)
    return False


def ctl(*words: str) -> Any:
    """An operator command to the EVSE (as `sepgw ctl` sends it); its answer or None."""
    import io

    from sepgw.cli import control

    out, err = io.StringIO(), io.StringIO()
    print(f"[demo] sepgw ctl --socket run/sepgw.sock {' '.join(words)}", flush=True)
    if control(ROOT / "run" / "sepgw.sock", list(words), out, err) != 0:
        print(f"[demo] {err.getvalue().strip()}", flush=True)
        return None
    return json.loads(out.getvalue())


CONSOLE = "\n# make demo: the web console on loopback (docs/console.md)\n[console]\n" \
          "enabled = true\nport = {port}\n"


def console_configs() -> tuple[Path, Path]:
    """The default configurations with ``[console]`` enabled on loopback (EVSE 8470, PEV
    8471), written to run/ (their relative paths stay valid there: run/ is etc/'s sibling)."""
    run = ROOT / "run"
    run.mkdir(exist_ok=True)
    evse = (ROOT / "etc" / "sepgw.toml").read_text().replace(
        'approved_list = "approved-pevs.txt"', 'approved_list = "../etc/approved-pevs.txt"')
    pev = (ROOT / "etc" / "pev.toml").read_text()
    (run / "demo-sepgw.toml").write_text(evse + CONSOLE.format(port=8470))
    (run / "demo-pev.toml").write_text(pev + CONSOLE.format(port=8471))
    return run / "demo-sepgw.toml", run / "demo-pev.toml"


def show_console_urls(*children: Child) -> None:
    """Print each role's console URL once it logged it."""
    for child in children:
        if wait_for(child, r"sepgw console at", 10):
            url = next(m.group(1) for line in list(child.lines)
                       if (m := re.search(r"sepgw console at (\S+)", line)))
            print(f"[demo] {child.tag.upper()} console: {url}  (open it in a browser; "
                  f"--seconds 600 keeps the demo running longer)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sepgw.demo", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="how long to let the PEV discharge before stopping both "
                             "(default 6)")
    parser.add_argument("--no-console", action="store_true",
                        help="do not enable the web consoles (docs/console.md)")
    args = parser.parse_args(argv)

    pki = ROOT / "run" / "pki"
    if not (pki / "serca.pem").exists():
        from sepgw.security.pki_cli import main as pki_main

        if pki_main(["init", str(pki)]) != 0:
            return 1

    evse_config, pev_config = ROOT / "etc" / "sepgw.toml", ROOT / "etc" / "pev.toml"
    if not args.no_console:
        evse_config, pev_config = console_configs()
    evse = Child("evse", [str(TWISTD), "-n", "--pidfile=", "sepgw", "--config",
                          str(evse_config)])
    deadline = time.monotonic() + 15
    while not evse.seen(MILESTONES[0][1]) and evse.proc.poll() is None and (
            time.monotonic() < deadline):
        time.sleep(0.05)
    if not evse.seen(MILESTONES[0][1]):
        evse.stop()
        print("demo: the EVSE did not start; see its log above", file=sys.stderr)
        return 1
    pev = Child("pev", [str(TWISTD), "-n", "--pidfile=", "sepgw-pev", "--config",
                        str(pev_config)])
    if not args.no_console:
        show_console_urls(evse, pev)
    measured = None
    try:
        if wait_for(pev, r"opModEnergize True", 20, evse):
            ctl("fixed-w", "port1", "50")
            end = time.monotonic() + args.seconds
            while time.monotonic() < end and evse.proc.poll() is None \
                    and pev.proc.poll() is None:
                time.sleep(0.1)
            status = ctl("status")
            if status:
                measured = status["ports"][0]
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
    if measured is not None and measured.get("meter"):
        m = measured["meter"]
        print(f"  EVSE meter on the simulated link: {m['w']:.0f} W, {m['var']:.0f} var, "
              f"{m['v']:.0f} V, {m['hz']:.2f} Hz (positive W = PEV discharging to the grid)")
    print("  contactor left open on stop: "
          f"{'yes' if evse.seen(r'contactor open') else 'NO'}")
    return 0 if reached == len(MILESTONES) else 1


if __name__ == "__main__":
    raise SystemExit(main())
