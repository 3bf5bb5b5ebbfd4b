"""``make demo``: a utility's lab DME, an EVSE and a PEV emulator on simulated hardware, on
this machine.

Creates the vehicle test PKI in ``run/pki`` and a separate utility PKI in
``run/utility-pki`` if missing, starts ``twistd -n sepgw-dme`` (etc/dme.toml at 1 s rates),
``twistd -n sepgw`` (etc/sepgw.toml with the ``ieee2030_5`` uplink pointed at the DME) and
``twistd -n sepgw-pev`` (etc/pev.toml) on the simulated electrical link, shows the logs
with a prefix; once the PEV is authorized, the utility asks (``sepgw ctl`` to the DME) for an
opModFixedW of 50 % of the site, which the EVSE relays to the PEV; lets it discharge for
``--seconds``, stops all three with SIGTERM and prints what the session reached, what the
EVSE's own meter measured and the readings that arrived at the DME.
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
    ("dme", r"DME: registered EndDevice", "EVSE registered at the utility's DME (its own "
     "utility certificate, EndDevice by LFDI) and posted its MirrorUsagePoints"),
    ("pev", r"Inverter: discharge allowed, opModFixedW 55\.\d+ %", "utility asked for 50 % "
     "of the site (sepgw ctl ... add opModFixedW=5000 to the DME): the EVSE relayed it, PEV "
     "discharging 3600 W of its 6500 W per opModFixedW"),
    ("dme", r"DME: Response 2 for", "DME got the EVSE's Started response"),
    ("dme", r"DME: reading Active Power [1-9]\d* at /mup/2", "DME received the EVSE's meter "
     "readings of the PEV's discharge"),
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


def ctl(*words: str, socket: str = "sepgw.sock") -> Any:
    """An operator command to the EVSE (or the DME, ``socket="dme.sock"``), as `sepgw ctl`
    sends it; its answer or None."""
    import io

    from sepgw.cli import control

    out, err = io.StringIO(), io.StringIO()
    print(f"[demo] sepgw ctl --socket run/{socket} {' '.join(words)}", flush=True)
    if control(ROOT / "run" / socket, list(words), out, err) != 0:
        print(f"[demo] {err.getvalue().strip()}", flush=True)
        return None
    return json.loads(out.getvalue())


CONSOLE = "\n# make demo: the web console on loopback (docs/console.md)\n[console]\n" \
          "enabled = true\nport = {port}\n"


UPLINK = """
# make demo: the DME uplink to the lab DME, with the utility PKI (docs/uplink.md)
[uplink]
plugin = "ieee2030_5"
dcap_url = "https://[::1]:8446/dcap"
cert = "utility-pki/charger.pem"
key = "utility-pki/charger.key"
ca = ["utility-pki/serca.pem"]
"""


def utility_pki() -> Path:
    """The utility's test PKI in run/utility-pki (separate from the vehicle PKI): a root,
    the DME's certificate and the charger's uplink certificate."""
    from sepgw.security.pki import DEFAULT_EVSE_HW_TYPE, init_pki, issue_device

    directory = ROOT / "run" / "utility-pki"
    if not (directory / "charger.pem").exists():
        init_pki(directory, force=True)
        issue_device(directory, "dme", DEFAULT_EVSE_HW_TYPE, force=True)
        issue_device(directory, "charger", DEFAULT_EVSE_HW_TYPE, force=True)
    return directory


def demo_configs(console: bool) -> tuple[Path, Path, Path]:
    """The default configurations written to run/ (their relative paths stay valid there:
    run/ is etc/'s sibling): the DME at 1 s rates, the EVSE with the uplink to it, and with
    ``console`` the web consoles on loopback (EVSE 8470, PEV 8471)."""
    run = ROOT / "run"
    run.mkdir(exist_ok=True)
    # Each demo starts afresh: no controls of an earlier run, nothing queued.
    for stale in [*run.glob("dme-state/dme.sqlite*"),
                  *run.glob("evse-state/uplink-queue.sqlite*")]:
        stale.unlink()
    # post_rate 2: the EVSE hands the uplink its telemetry at its postRate, so that the
    # DME sees the discharge within the demo's few seconds.
    evse = (ROOT / "etc" / "sepgw.toml").read_text().replace(
        'approved_list = "approved-pevs.txt"', 'approved_list = "../etc/approved-pevs.txt"'
    ).replace("post_rate = 15", "post_rate = 2")
    pev = (ROOT / "etc" / "pev.toml").read_text()
    dme = (ROOT / "etc" / "dme.toml").read_text().replace(
        "poll_rate_s = 5", "poll_rate_s = 1").replace("post_rate_s = 5", "post_rate_s = 1")
    (run / "demo-dme.toml").write_text(dme)
    (run / "demo-sepgw.toml").write_text(evse + UPLINK + (CONSOLE.format(port=8470)
                                                          if console else ""))
    (run / "demo-pev.toml").write_text(pev + (CONSOLE.format(port=8471) if console else ""))
    return run / "demo-dme.toml", run / "demo-sepgw.toml", run / "demo-pev.toml"


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

    utility_pki()
    dme_config, evse_config, pev_config = demo_configs(not args.no_console)
    dme = Child("dme", [str(TWISTD), "-n", "--pidfile=", "sepgw-dme", "--config",
                        str(dme_config)])
    if not wait_for(dme, r"sepgw DME serving", 15):
        dme.stop()
        print("demo: the DME did not start; see its log above", file=sys.stderr)
        return 1
    evse = Child("evse", [str(TWISTD), "-n", "--pidfile=", "sepgw", "--config",
                          str(evse_config)])
    if not wait_for(evse, MILESTONES[0][1], 15):
        evse.stop()
        dme.stop()
        print("demo: the EVSE did not start; see its log above", file=sys.stderr)
        return 1
    pev = Child("pev", [str(TWISTD), "-n", "--pidfile=", "sepgw-pev", "--config",
                        str(pev_config)])
    if not args.no_console:
        show_console_urls(evse, pev)
    measured = received = None
    try:
        if wait_for(pev, r"opModEnergize True", 20, evse):
            ctl("add", "opModFixedW=5000", "duration=600", socket="dme.sock")
            end = time.monotonic() + args.seconds
            while time.monotonic() < end and evse.proc.poll() is None \
                    and pev.proc.poll() is None:
                time.sleep(0.1)
            status = ctl("status")
            if status:
                measured = status["ports"][0]
            received = ctl("readings", "50", "/mup/2", socket="dme.sock")
    except KeyboardInterrupt:
        pass
    pev.stop()
    evse.stop()
    dme.stop()
    children = {"evse": evse, "pev": pev, "dme": dme}
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
    if received:
        power = [r["value"] for r in received["readings"]
                 if r["description"] == "Active Power"]
        count = received["received"].get("reading", {})
        print(f"  DME received {count.get('distinct', 0)} reading posts "
              f"({count.get('duplicates', 0)} duplicates); port1 Active Power, latest first: "
              f"{', '.join(f'{w} W' for w in power[:5])}")
    print("  contactor left open on stop: "
          f"{'yes' if evse.seen(r'contactor open') else 'NO'}")
    return 0 if reached == len(MILESTONES) else 1


if __name__ == "__main__":
    raise SystemExit(main())
