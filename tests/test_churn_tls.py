"""Session churn over real mutual TLS on loopback: what ended sessions leave behind.

Runs ``benchmarks/churn.py --pev`` cycles on the real reactor: the gateway as
``benchmarks/server.py --scenario churn`` configures it (j3072 policy, GatedTLSFactory,
the notifier's https Agent), PEVs that do the whole setup (exchange, Responses, two
subscriptions with their own notification server) and leave (link down and up), and
resident PEVs that stay, poll and answer the controls the site sharing sends them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


#: Connections, TLS protocols and notification deliveries that may still be in flight or
#: closing when a mark is taken on a loaded machine (up to 8 seen under a parallel
#: benchmark); a leak adds one per departure, 30 between marks.
SLACK = 10


class ChurnOverTLSTests(unittest.TestCase):
    timeout = 240

    @inlineCallbacks
    def test_ended_sessions_leave_nothing(self) -> Any:
        """After 10 warm-up cycles, 30 and then 30 more departures (each PEV posting
        Responses and holding two subscriptions) leave: exactly the resident PEVs' sessions
        live, no DERControlResponse that no live session stores (an ended session's
        Responses are its own, profile 5.7), open fds back to the count at the start of the
        measurement, and no more subscription stores, pending deliveries, HTTP channels or
        TLS connections after 60 than after 30 departures (give or take the few still
        closing)."""
        from benchmarks.churn import pev_churn

        residents = 2
        args = argparse.Namespace(cycles=60, warmup=10, identities=8, resident=residents,
                                  trace=False)
        run, ctx = pev_churn(args)
        yield run()
        m0, mn, m2 = ctx.marks
        self.assertEqual((mn["cycles"] - m0["cycles"], m2["cycles"] - mn["cycles"]), (30, 30))
        for m in (m0, mn, m2):
            self.assertEqual(m["sessions"], residents, m["label"])
            self.assertEqual(m["orphan_responses"], 0, m["label"])
            # A connection or two may still be closing when a mark is taken on a loaded
            # machine; a leak would be one per departure (30 between marks).
            self.assertLessEqual(m["fds"], m0["fds"] + SLACK, m["label"])
        for kind in ("PEVSession", "Subscriptions", "_Delivery", "HTTPChannel",
                     "TLSMemoryBIOProtocol", "_CountedTLSProtocol"):
            self.assertLessEqual(m2["types"].get(kind, 0), mn["types"].get(kind, 0) + SLACK,
                                 kind)
        self.assertGreater(ctx.recorder.notifications, 0)
