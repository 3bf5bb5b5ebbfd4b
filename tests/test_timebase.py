"""Tests for the server time base (:mod:`sepgw.timebase`): the 2030.5 Time resource."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from twisted.trial import unittest

from sepgw.model import Time, TimeQuality
from sepgw.timebase import DEFAULT_QUALITY, time_resource, zone_offsets
from tests.test_evse_management import assert_schema_valid


def utc(text: str) -> int:
    """Unix time of an ISO date and time in UTC."""
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


# Known 2026 DST transitions.
LA_START, LA_END = utc("2026-03-08T10:00"), utc("2026-11-01T09:00")
BERLIN_START, BERLIN_END = utc("2026-03-29T01:00"), utc("2026-10-25T01:00")
# Australia/Sydney: DST ends on the first Sunday of April at 03:00 AEDT (16:00 UTC the day
# before) and starts on the first Sunday of October at 02:00 AEST (16:00 UTC the day before).
SYD_START_2025, SYD_END_2026 = utc("2025-10-04T16:00"), utc("2026-04-04T16:00")
SYD_START_2026, SYD_END_2027 = utc("2026-10-03T16:00"), utc("2027-04-03T16:00")


class TimeResourceTests(unittest.TestCase):
    """The Time resource (V2G-4.1.1-6, V2G-4.5.3.5-3)."""

    def check(self, now: float, zone: str, tz: int, dst: int, start: int, end: int) -> Time:
        t = time_resource(now, zone, "/tm", 15)
        got = (t.tzOffset, t.dstOffset, t.dstStartTime, t.dstEndTime)
        self.assertEqual(got, (tz, dst, start, end), zone)
        in_dst = start <= int(now) < end
        self.assertEqual(t.localTime, int(now) + tz + (dst if in_dst else 0))
        local = datetime.fromtimestamp(now, ZoneInfo(zone)).replace(tzinfo=timezone.utc)
        self.assertEqual(t.localTime, int(local.timestamp()))
        assert_schema_valid(self, t)
        return t

    def test_unix_time(self) -> None:
        """V2G-4.1.1-6: currentTime is int(now), Unix seconds (not TAI: no leap-second
        offset added); href and pollRate are as given."""
        now = utc("2026-06-01T12:00") + 0.75
        t = time_resource(now, "UTC", "/tm", 15)
        self.assertEqual(t.currentTime, utc("2026-06-01T12:00"))
        self.assertEqual((t.href, t.pollRate), ("/tm", 15))
        body = assert_schema_valid(self, t)
        self.assertIn(b'<currentTime>1780315200</currentTime>', body)

    def test_optional_attributes(self) -> None:
        """href and pollRate may be left out; a ZoneInfo is accepted for the zone."""
        t = time_resource(utc("2026-06-01T00:00"), ZoneInfo("UTC"))
        self.assertEqual((t.href, t.pollRate), (None, None))
        assert_schema_valid(self, t)

    def test_quality(self) -> None:
        """quality defaults to 5 (manually set / level 4); an NTP-synchronised caller may
        claim 3."""
        now = utc("2026-06-01T00:00")
        self.assertEqual(time_resource(now, "UTC").quality, DEFAULT_QUALITY)
        self.assertEqual(DEFAULT_QUALITY, 5)
        t = time_resource(now, "UTC", quality=TimeQuality.AUTHORITATIVE)
        self.assertEqual(t.quality, 3)
        assert_schema_valid(self, t)

    def test_utc(self) -> None:
        """A zone without DST: offsets 0 and an empty DST period (start = end = 0)."""
        self.check(utc("2026-06-01T00:00"), "UTC", 0, 0, 0, 0)

    def test_tokyo(self) -> None:
        """A zone without DST but with an offset: tzOffset only."""
        self.check(utc("2026-01-15T00:00"), "Asia/Tokyo", 32400, 0, 0, 0)

    def test_los_angeles_summer(self) -> None:
        """America/Los_Angeles in DST: tzOffset is the standard -28800 (negative west,
        DST not included), dstOffset 3600, the 2026 transitions."""
        self.check(utc("2026-06-01T00:00"), "America/Los_Angeles", -28800, 3600,
                   LA_START, LA_END)

    def test_los_angeles_winter(self) -> None:
        """Before the spring transition the same year's period is announced."""
        self.check(utc("2026-01-15T00:00"), "America/Los_Angeles", -28800, 3600,
                   LA_START, LA_END)

    def test_los_angeles_after_autumn(self) -> None:
        """After the autumn transition the next DST period (2027) is announced."""
        self.check(utc("2026-12-15T00:00"), "America/Los_Angeles", -28800, 3600,
                   utc("2027-03-14T10:00"), utc("2027-11-07T09:00"))

    def test_transition_seconds(self) -> None:
        """The transitions are exact to the second: DST applies from dstStartTime up to
        but not including dstEndTime."""
        zone = "America/Los_Angeles"
        self.assertFalse(zone_offsets(LA_START - 1, zone).in_dst)
        self.assertEqual(zone_offsets(LA_START - 1, zone).dst_start, LA_START)
        self.assertTrue(zone_offsets(LA_START, zone).in_dst)
        self.assertTrue(zone_offsets(LA_END - 1, zone).in_dst)
        after = zone_offsets(LA_END, zone)
        self.assertFalse(after.in_dst)
        self.assertEqual(after.dst_start, utc("2027-03-14T10:00"))
        for t in (LA_START - 1, LA_START, LA_END - 1, LA_END):
            self.check(t, zone, -28800, 3600, *zone_offsets(t, zone)[2:4])

    def test_berlin(self) -> None:
        """Europe/Berlin: tzOffset +3600, dstOffset 3600, 2026 transitions at 01:00 UTC."""
        self.check(utc("2026-06-01T00:00"), "Europe/Berlin", 3600, 3600, BERLIN_START,
                   BERLIN_END)
        self.check(utc("2026-02-01T00:00"), "Europe/Berlin", 3600, 3600, BERLIN_START,
                   BERLIN_END)

    def test_sydney_summer(self) -> None:
        """Australia/Sydney in January (DST spans the new year): the period in effect,
        which started in October of the previous year, so start <= now < end holds."""
        t = self.check(utc("2026-01-15T00:00"), "Australia/Sydney", 36000, 3600,
                       SYD_START_2025, SYD_END_2026)
        self.assertLess(t.dstStartTime, t.currentTime)
        self.assertLess(t.currentTime, t.dstEndTime)

    def test_sydney_winter(self) -> None:
        """Australia/Sydney in June: the coming period, October 2026 to April 2027, so
        dstStartTime < dstEndTime in the southern hemisphere too."""
        self.check(utc("2026-06-15T00:00"), "Australia/Sydney", 36000, 3600,
                   SYD_START_2026, SYD_END_2027)

    def test_dublin(self) -> None:
        """Europe/Dublin (winter time is "negative DST" in tzdata) comes out the
        conventional way: standard offset 0, positive dstOffset in summer."""
        self.check(utc("2026-01-15T00:00"), "Europe/Dublin", 0, 3600, BERLIN_START,
                   BERLIN_END)
