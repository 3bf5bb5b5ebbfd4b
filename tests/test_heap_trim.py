"""Tests for the periodic heap trim of the EVSE role (sepgw.service.common.HeapTrimmer), on a
fake clock: glibc keeps what ended sessions freed in its free lists, so under churn the
gateway hands free pages back to the OS every 30 to 60 s (issue 12: churn without RSS
growth)."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from pathlib import Path
from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from sepgw.config import load
from sepgw.service.common import HeapTrimmer, find_malloc_trim
from sepgw.service.evse import EVSEGateway
from tests.helpers import evse_config, shared_pki


class HeapTrimmerTests(SynchronousTestCase):
    def test_runs_on_schedule(self) -> None:
        """Started, the trimmer calls the trim once per interval (45 s here), not at start,
        and never again once stopped."""
        clock = Clock()
        calls: list[float] = []
        trimmer = HeapTrimmer(clock, interval=45.0, trim=lambda: calls.append(clock.seconds()))
        trimmer.startService()
        self.assertEqual(calls, [])
        clock.advance(44.5)
        self.assertEqual(calls, [])
        for _ in range(271):  # to 180 s, in exact half seconds
            clock.advance(0.5)
        self.assertEqual([round(t, 6) for t in calls], [45.0, 90.0, 135.0, 180.0])
        trimmer.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(1000.0)
        self.assertEqual(len(calls), 4)

    def test_default_interval_between_30_and_60_s(self) -> None:
        """Without an interval, the trims come every 30 to 60 s (issue 12's choice: often
        enough that RSS cannot creep between two, rare enough to cost nothing)."""
        clock = Clock()
        calls: list[float] = []
        trimmer = HeapTrimmer(clock, trim=lambda: calls.append(clock.seconds()))
        trimmer.startService()
        for _ in range(600):
            clock.advance(1.0)
        trimmer.stopService()
        gaps = {b - a for a, b in zip([0.0] + calls, calls)}
        self.assertTrue(calls)
        self.assertTrue(all(30.0 <= g <= 60.0 for g in gaps), gaps)

    def test_no_malloc_trim_is_harmless(self) -> None:
        """Where the C library has no malloc_trim (musl, macOS), nothing is found, nothing
        is scheduled, and start and stop still work."""
        no_trim = SimpleNamespace()  # a C library without the symbol
        self.assertIsNone(find_malloc_trim(no_trim))
        clock = Clock()
        trimmer = HeapTrimmer(clock, interval=30.0, libc=no_trim)
        trimmer.startService()
        self.assertTrue(trimmer.running)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(300.0)
        trimmer.stopService()
        self.assertFalse(trimmer.running)

    def test_found_trim_is_called_with_zero(self) -> None:
        """The trim found in a C library that has malloc_trim calls it with pad 0 (return
        as many free pages as possible)."""
        args: list[int] = []

        def malloc_trim(pad: int) -> int:
            args.append(pad)
            return 1

        clock = Clock()
        trimmer = HeapTrimmer(clock, interval=30.0,
                             libc=SimpleNamespace(malloc_trim=malloc_trim))
        trimmer.startService()
        clock.advance(30.0)
        clock.advance(30.0)
        trimmer.stopService()
        self.assertEqual(args, [0, 0])

    def test_failing_trim_logged_once_and_stopped(self) -> None:
        """A trim that raises is logged, stops the trims, and does not escape into the
        reactor."""
        clock = Clock()
        calls: list[int] = []

        def broken() -> None:
            calls.append(1)
            raise OSError("no heap")

        trimmer = HeapTrimmer(clock, interval=30.0, trim=broken)
        trimmer.startService()
        clock.advance(30.0)
        clock.advance(300.0)
        self.assertEqual(calls, [1])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(clock.getDelayedCalls(), [])
        trimmer.stopService()

    def test_real_malloc_trim_on_glibc(self) -> None:
        """On glibc, the real malloc_trim is found and returns 0 or 1 (nothing or something
        released)."""
        if platform.libc_ver()[0] != "glibc" or not ctypes.util.find_library("c"):
            self.skipTest("not glibc")
        trim = find_malloc_trim()
        assert trim is not None
        self.assertIn(trim(), (0, 1))
        self.assertIsNotNone(ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim)


class GatewayTrimTests(SynchronousTestCase):
    def test_gateway_trims_once_serving_until_stopped(self) -> None:
        """The EVSE gateway starts its heap trims once everything is up, on its reactor's
        clock, and stops them when it stops."""
        reactor = MemoryReactorClock()
        path = evse_config(Path(self.mktemp()), "", pki=shared_pki(), port=18443)
        gateway = EVSEGateway(load(path, "evse"), reactor)
        calls: list[float] = []
        gateway.heap_trimmer._trim = lambda: calls.append(reactor.seconds())
        self.assertFalse(gateway.heap_trimmer.running)
        gateway.startService()
        self.successResultOf(gateway.started)
        self.assertTrue(gateway.heap_trimmer.running)
        reactor.advance(gateway.heap_trimmer.interval)
        self.assertEqual(len(calls), 1)
        self.successResultOf(gateway.stopService())
        self.assertFalse(gateway.heap_trimmer.running)
        reactor.advance(10 * gateway.heap_trimmer.interval)
        self.assertEqual(len(calls), 1)
