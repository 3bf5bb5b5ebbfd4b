#!/usr/bin/env python3
"""Cost of site sharing (profile 4.6.1.1) with many authorized PEVs, in memory.

The real port controllers, 2030.5 resources and site coordinator on a fake clock
(``twisted.internet.task.Clock``), with N + 1 ports and a policy that grants: N PEVs are
authorized, then one more PEV arrives and leaves, ``--cycles`` times. Reported per N:

* arrival: CPU time (``time.process_time``, so that other processes on a loaded machine
  do not count) of the grant (the evaluation that authorizes the PEV) and of the reactor
  turns after it (where the coalesced site-sharing update runs): median in all, median and
  max of the site-sharing part; departure likewise (link down, session teardown included);
* the longest DERControlList of any PEV and the number of DERControls over all PEVs after
  building up N and after the cycles (each cycle supersedes or cancels share controls);
* the same for a site whose limit changes every PEV's share on every arrival
  (``--site-w`` = 3 kW per PEV), and for the shipped 7.2 kW site.

    .venv/bin/python benchmarks/site_sharing.py              # N = 100, 500
    .venv/bin/python benchmarks/site_sharing.py --pevs 50 --cycles 5

The PEVs' identities are made up (no certificates): the TLS layer is not what is measured.
Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet.task import Clock  # noqa: E402
from twisted.logger import globalLogBeginner, globalLogPublisher  # noqa: E402

from sepgw.config import load  # noqa: E402
from sepgw.evse.controller import PortController, SiteCoordinator  # noqa: E402
from sepgw.evse.tree import EVSEResources  # noqa: E402
from sepgw.interfaces import Decision, LinkPeer  # noqa: E402
from sepgw.model import parse  # noqa: E402
from sepgw.security.identity import PeerIdentity, sfdi_from_lfdi  # noqa: E402
from tests import scripted_pev as script  # noqa: E402

SAFETY = {"discharge_threshold_w": 100.0, "limit_tolerance_pct": 5.0, "meter_timeout_s": None,
          "reevaluate_s": 5.0}
T0 = 1_700_000_000.0


class Grant:
    """A policy that grants when ``granted`` is set."""

    granted = True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def evaluate(self, facts: Any) -> Decision:
        return Decision(True) if self.granted else Decision(False, ("held back",))


class NullContactor:
    """A contactor that does what it is told at once (no simulation timers)."""

    def __init__(self) -> None:
        from sepgw.interfaces import ContactorState
        self.state = ContactorState.open
        self.allowed = False

    def set_allowed(self, allowed: bool) -> None:
        from sepgw.interfaces import ContactorState
        self.allowed = allowed
        if not allowed:
            self.state = ContactorState.open

    def close(self) -> Any:
        from twisted.internet.defer import succeed
        from sepgw.interfaces import ContactorState
        self.state = ContactorState.closed
        return succeed(None)

    def open(self) -> Any:
        from twisted.internet.defer import succeed
        from sepgw.interfaces import ContactorState
        self.state = ContactorState.open
        return succeed(None)


def identity(i: int) -> PeerIdentity:
    lfdi = f"{0xB0000000 + i:040X}"
    return PeerIdentity(lfdi=lfdi, sfdi=sfdi_from_lfdi(lfdi), hardware_module_name=None,
                        subject="", certificate=None)  # type: ignore[arg-type]


class Bench:
    def __init__(self, n: int, site_w: float) -> None:
        config = load(ROOT / "etc" / "sepgw.toml", "evse")
        self.clock = Clock()
        self.clock.advance(T0)
        site = dict(config["site"], max_w=site_w)
        counter = iter(range(1, 1 << 40))
        self.resources = EVSEResources(
            server=config["server"], site=site, management=config["management"],
            ports=[f"port{i + 1}" for i in range(n + 1)], clock=self.clock,
            mrid=lambda: next(counter).to_bytes(16, "big"))
        self.policy = Grant()
        self.coordinator = SiteCoordinator(site_w)
        self.ports = []
        for i in range(n + 1):
            port = PortController(
                index=i, name=f"port{i + 1}", clock=self.clock, resources=self.resources,
                contactor=NullContactor(), policy=self.policy, site=site,  # type: ignore[arg-type]
                safety=SAFETY, meter_timeout=3600.0, coordinator=self.coordinator)
            port.start()
            self.ports.append(port)
        self.ids = [identity(i) for i in range(n + 1)]

    def exchange(self, i: int) -> None:
        """Link up and the information exchange, by PUTs (the policy holds back)."""
        self.ports[i].link_up(LinkPeer(address="::1"))
        ident = self.ids[i]
        session = self.resources.attach(ident, i)
        edev = session.edev
        now = int(self.clock.seconds())
        for href, body in ((f"{edev}/di", script.device_information(ident.lfdi)),
                           (f"{edev}/ps", script.power_status(now)),
                           (f"{edev}/der/1/dercap", script.DER_CAPABILITY),
                           (f"{edev}/der/1/ders", script.der_settings(now, 6500)),
                           (f"{edev}/der/1/dera", script.der_availability(now)),
                           (f"{edev}/der/1/dstat", script.der_status(now, 3))):
            self.resources.put(href, parse(body), ident)

    def turns(self, first: Any) -> tuple[float, float]:
        """Run ``first`` and then the reactor turns it causes (calls due now, a turn at a
        time: calls they schedule for now run in the next turn, as in a reactor).
        (total seconds, seconds after the first turn: the coalesced site-sharing update)."""
        t = time.process_time()
        first()
        total = time.process_time() - t
        after = 0.0
        clock = self.clock
        while True:
            now = clock.seconds()
            due = [c for c in clock.calls if c.getTime() <= now]
            if not due:
                return total, after
            for call in due:  # take them off the clock (not timed: a fake clock's cost)
                clock.calls.remove(call)
            t = time.process_time()
            for call in due:
                if not call.cancelled:
                    call.called = 1
                    call.func(*call.args, **call.kw)
            d = time.process_time() - t
            total += d
            after += d

    def grant(self, i: int) -> tuple[float, float]:
        """Authorize PEV ``i``: (seconds in all, of which site sharing)."""
        port = self.ports[i]
        self.policy.granted = True
        spent = self.turns(lambda: port._evaluate("bench: granted"))
        assert port.granted, port.reasons
        return spent

    def leave(self, i: int) -> tuple[float, float]:
        return self.turns(lambda: self.ports[i].link_down("bench: unplugged"))

    def tick(self, seconds: float) -> None:
        """Let ``seconds`` pass, every connected PEV sending its heartbeat (a DERStatus PUT
        counts as one) each 0.5 s."""
        for _ in range(max(1, round(seconds * 2))):
            self.clock.advance(min(0.5, seconds))
            for port in self.ports:
                if port.session is not None:
                    port.heartbeat.heartbeat()

    def lists(self) -> tuple[int, int]:
        """(longest DERControlList, DERControls over all sessions)."""
        sizes = [len(self.resources.management(s).controls)
                 for s in self.resources.sessions.values()]
        return max(sizes, default=0), sum(sizes)


def run(n: int, site_w: float, cycles: int) -> dict[str, Any]:
    b = Bench(n, site_w)
    for i in range(n):
        b.policy.granted = False
        b.exchange(i)
        b.grant(i)
        b.tick(0.5)  # the PEVs arrive half a second apart
    built = b.lists()
    arrive, leave = [], []
    gc.collect()
    for _ in range(cycles):
        b.policy.granted = False
        b.exchange(n)
        arrive.append(b.grant(n))
        b.tick(1.0)
        leave.append(b.leave(n))
        b.tick(1.0)
    return {"n": n, "site_w": site_w, "built": built, "after": b.lists(),
            "arrive_ms": (statistics.median(a for a, _ in arrive) * 1e3,
                          statistics.median(t for _, t in arrive) * 1e3,
                          max(t for _, t in arrive) * 1e3),
            "leave_ms": (statistics.median(a for a, _ in leave) * 1e3,
                         statistics.median(t for _, t in leave) * 1e3,
                         max(t for _, t in leave) * 1e3),
            "authorized": sum(p.granted for p in b.ports)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pevs", type=int, action="append", help="N (repeatable; 100 and 500)")
    ap.add_argument("--cycles", type=int, default=20, help="arrivals measured per N")
    args = ap.parse_args()
    globalLogBeginner.beginLoggingTo([], discardBuffer=True, redirectStandardIO=False)
    for observer in list(globalLogPublisher._observers):  # type: ignore[attr-defined]
        globalLogPublisher.removeObserver(observer)
    print("CPU ms per arrival / departure: p50 in all, p50 and max of the site-sharing update\n"
          "(the turns after the grant or link down); longest DERControlList and DERControls\n"
          "over all PEVs, built -> after the cycles")
    print(f"{'N':>4} {'site W':>8} {'arrival all/share/max':>22} {'departure all/share/max':>24}"
          f" {'longest list':>13} {'controls':>14}")
    for n in args.pevs or [100, 500]:
        for site_w in (7200.0, 3000.0 * n):
            r = run(n, site_w, args.cycles)
            assert r["authorized"] == n, r
            (lb, tb), (la, ta) = r["built"], r["after"]
            a, d = r["arrive_ms"], r["leave_ms"]
            print(f"{n:>4} {site_w:>8.0f} {a[0]:>7.2f} /{a[1]:>6.2f} /{a[2]:>6.2f}"
                  f" {d[0]:>9.2f} /{d[1]:>6.2f} /{d[2]:>6.2f}"
                  f" {lb:>6} -> {la:<4} {tb:>6} -> {ta}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
