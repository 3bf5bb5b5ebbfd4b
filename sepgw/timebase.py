"""The server time base: the 2030.5 Time resource for a clock reading and an IANA zone.

Conventions (2030.5-2018 Time, schema documentation):

* ``currentTime`` is Unix time, ``int(now)``: seconds since 1970-01-01 UTC without leap
  seconds (TimeType). Not TAI.
* ``tzOffset`` is the zone's *standard* offset from UTC in seconds, without DST (negative
  west of Greenwich, e.g. -28800 for America/Los_Angeles).
* ``dstOffset`` is what DST adds to standard time, in seconds (3600 in most zones).
* ``dstStartTime``/``dstEndTime`` are Unix times of the DST period **in effect at now, or
  else the next one to begin**. So ``dstStartTime <= currentTime < dstEndTime`` holds exactly
  when DST is in effect, in both hemispheres: for Australia/Sydney in January the period is
  October → April (start in the previous calendar year), in June it is the coming October →
  April. A calendar-year reading ("this year's start and end") would give a start after the
  end in the southern hemisphere and force every client to special-case the wrap; this one
  never does. In the northern hemisphere it is the calendar year's pair until the autumn
  transition, then next year's pair.
* A zone without DST around ``now`` (UTC, Asia/Tokyo…): ``dstOffset`` 0 and
  ``dstStartTime == dstEndTime == 0``, an empty DST period.
* ``localTime`` = currentTime + tzOffset (+ dstOffset when in effect).
* ``quality`` defaults to 5 ("time manually set or obtained from level 4 source"): the
  gateway cannot tell by itself whether the host clock is NTP-disciplined; a caller that
  knows passes 3 (authoritative source such as NTP).

Standard time and DST are read from the zone's UTC offsets alone (the lower of the two
offsets around a transition pair is standard), found by sampling ``utcoffset`` a day apart
and bisecting to the second. Zones whose tzdata marks winter time as "negative DST" (e.g.
Europe/Dublin) therefore come out the conventional way round, with a positive dstOffset.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sepgw.model import Time, TimeQuality

__all__ = ["DEFAULT_QUALITY", "ZoneOffsets", "zone_offsets", "time_resource"]

DEFAULT_QUALITY = int(TimeQuality.MANUAL_OR_LEVEL_4)
"""Time quality claimed unless the caller knows better (see the module documentation)."""

_DAY = 86400
_LOOK_BACK = 400 * _DAY     # finds the start of a DST period in effect now
_LOOK_AHEAD = 800 * _DAY    # finds the next period's start and its end


class ZoneOffsets(NamedTuple):
    """A zone's offsets around one instant (all in seconds; times are Unix times)."""
    tz_offset: int
    dst_offset: int
    dst_start: int
    dst_end: int
    in_dst: bool


def _offset(zone: ZoneInfo, t: int) -> int:
    off = datetime.fromtimestamp(t, timezone.utc).astimezone(zone).utcoffset()
    assert off is not None
    return int(off // timedelta(seconds=1))


@lru_cache(maxsize=64)
def _transitions(zone: ZoneInfo, lo: int, hi: int) -> tuple[tuple[int, int, int], ...]:
    """``(t, before, after)`` for each offset change in ``[lo, hi]``; ``t`` is the first
    second with the new offset. Cached: callers align ``lo`` and ``hi`` to whole days."""
    found = []
    t0, off0 = lo, _offset(zone, lo)
    while t0 < hi:
        t1 = min(t0 + _DAY, hi)
        off1 = _offset(zone, t1)
        if off1 != off0:
            a, b = t0, t1  # offset(a) == off0, offset(b) != off0
            while b - a > 1:
                mid = (a + b) // 2
                if _offset(zone, mid) == off0:
                    a = mid
                else:
                    b = mid
            found.append((b, off0, _offset(zone, b)))
        t0, off0 = t1, off1
    return tuple(found)


def zone_offsets(now: float, zone: str | ZoneInfo) -> ZoneOffsets:
    """Standard offset, DST amount and the DST period in effect at ``now`` or next."""
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    t = int(now)
    current = _offset(zone, t)
    day = t - t % _DAY
    changes = _transitions(zone, day - _LOOK_BACK, day + _DAY + _LOOK_AHEAD)
    past = [c for c in changes if c[0] <= t]
    future = [c for c in changes if c[0] > t]
    # In DST now: the last change up to now went up, and a change later comes back down.
    if past and past[-1][2] > past[-1][1]:
        start, std, dst_off = past[-1][0], past[-1][1], past[-1][2]
        end = next((c[0] for c in future if c[2] < c[1]), None)
        if end is not None:
            return ZoneOffsets(std, dst_off - std, start, end, True)
    else:
        # Not in DST: the next change that goes up, and the change back down after it.
        up = next((c for c in future if c[2] > c[1] and c[1] == current), None)
        if up is not None:
            end = next((c[0] for c in future if c[0] > up[0] and c[2] < c[1]), None)
            if end is not None:
                return ZoneOffsets(current, up[2] - current, up[0], end, False)
    # No DST around now (or a permanent change of offset): the current offset is standard.
    return ZoneOffsets(current, 0, 0, 0, False)


def time_resource(now: float, zone: str | ZoneInfo, href: str | None = None,
                  poll_rate: int | None = None, quality: int = DEFAULT_QUALITY) -> Time:
    """The Time resource for the clock reading ``now`` (Unix seconds) in ``zone``."""
    offsets = zone_offsets(now, zone)
    t = int(now)
    local = t + offsets.tz_offset + (offsets.dst_offset if offsets.in_dst else 0)
    return Time(href=href, pollRate=poll_rate, currentTime=t, dstEndTime=offsets.dst_end,
                dstOffset=offsets.dst_offset, dstStartTime=offsets.dst_start,
                localTime=local, quality=quality, tzOffset=offsets.tz_offset)
