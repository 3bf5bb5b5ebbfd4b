#!/usr/bin/env python3
"""Gatekeeper latency: from a meter sample showing forbidden discharge to the contactor's
open command.

Runs the real session logic of one port (PortController with its Gatekeeper) with an
instrumented contactor; for each of 10,000 rounds a PEV is connected but not authorized, a
meter sample showing 5 kW of discharge is delivered through the meter-listener interface,
and the time until the contactor is told to open is recorded. Baseline in the same run: the
cost of delivering the same sample to a listener that does nothing. Target: p99 under 5 ms.

    .venv/bin/python benchmarks/gatekeeper.py [--samples 10000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet.task import Clock  # noqa: E402
from zope.interface import implementer  # noqa: E402

from sepgw.evse.controller import PortController  # noqa: E402
from sepgw.evse.tree import EVSEResources  # noqa: E402
from sepgw.interfaces import (  # noqa: E402
    ContactorState,
    Decision,
    IAuthorizationPolicy,
    IContactor,
    LinkPeer,
    MeterSample,
)

SITE = {"max_w": 7200.0, "max_var": 3600.0, "max_var_neg": 3600.0, "max_v": 264.0,
        "min_v": 211.0, "v_ref": 240.0, "max_charge_rate_w": 7200.0,
        "max_discharge_rate_w": 7200.0, "quadrants": 4}
SAFETY = {"discharge_threshold_w": 100.0, "limit_tolerance_pct": 5.0, "meter_timeout_s": None,
          "reevaluate_s": 0.0}


@implementer(IContactor)
class TimedContactor:
    """Records when it is told to open."""

    def __init__(self) -> None:
        self.state = ContactorState.closed
        self.allowed = True
        self.opened_at: float | None = None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def set_allowed(self, allowed: bool) -> None:
        if not allowed and self.opened_at is None:
            self.opened_at = time.perf_counter()
        self.allowed = allowed
        if not allowed:
            self.state = ContactorState.open

    def close(self) -> Any:
        from twisted.internet.defer import succeed

        self.state = ContactorState.closed
        return succeed(self.state)

    def open(self) -> Any:
        self.set_allowed(False)


@implementer(IAuthorizationPolicy)
class Deny:
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def evaluate(self, facts: Any) -> Decision:
        return Decision(False, ("benchmark",))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    from sepgw.config import load
    from tests.test_evse_server import identities

    config = load(ROOT / "etc" / "sepgw.toml", "evse")
    clock = Clock()
    clock.advance(1_790_000_000)
    resources = EVSEResources(server=config["server"], site=SITE,
                              management=config["management"], ports=["port1"], clock=clock)
    contactor = TimedContactor()
    port = PortController(index=0, name="port1", clock=clock, resources=resources,
                          contactor=contactor, policy=Deny(), site=SITE, safety=SAFETY,
                          meter_timeout=1.0)
    port.start()
    ident = identities()["pev"]
    latencies = []
    baseline = []

    class Nothing:
        def meter_sample(self, sample: MeterSample) -> None:
            pass

    nothing = Nothing()
    for _ in range(args.samples):
        port.link_up(LinkPeer(address="::1"))
        resources.attach(ident, 0)
        contactor.state, contactor.allowed, contactor.opened_at = (
            ContactorState.closed, True, None)
        sample = MeterSample(clock.seconds(), 5000.0, 0.0, 240.0, 60.0)
        start = time.perf_counter()
        port.meter_sample(sample)
        assert contactor.opened_at is not None, "the contactor was not opened"
        latencies.append(contactor.opened_at - start)
        start = time.perf_counter()
        nothing.meter_sample(sample)
        baseline.append(time.perf_counter() - start)
        port.link_down("next round")
    latencies.sort()
    baseline.sort()

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1e6

    print(f"gatekeeper benchmark: {args.samples} forbidden-discharge samples")
    print(f"  sample -> contactor open command: median {statistics.median(latencies) * 1e6:.1f}"
          f" us, p99 {pct(latencies, 0.99):.1f} us, max {latencies[-1] * 1e6:.1f} us")
    print(f"  baseline (listener call that does nothing): median "
          f"{statistics.median(baseline) * 1e6:.2f} us, p99 {pct(baseline, 0.99):.2f} us")
    ok = pct(latencies, 0.99) < 5000
    print(f"  target p99 < 5 ms: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
