"""Test-only misbehaviour, from outside the J3072 client: wrappers around its HTTP client
and its inverter (``--misbehave``, ``[behaviour]``; docs/pev.md). The production
:class:`~sepgw.pev.session.J3072Client` knows nothing of them.

=================================  ===================================================
discharge_before_authorization     inverter: energized at 50 % whatever it is told
exceed_limit                       HTTP: DERCapability and DERSettings under-report the
                                   power ratings (half); inverter: 100 % and no
                                   opModMaxLimW whenever discharge is allowed
stop_heartbeats                    HTTP: every DERStatus PUT after the first (step 2)
                                   dropped, reported as done
skip_responses                     HTTP: DERControlResponse POSTs dropped
invalid_bodies                     HTTP: every PUT body made schema-invalid
=================================  ===================================================
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from twisted.internet.defer import succeed
from twisted.logger import Logger

from sepgw.client.http import SEPClient
from sepgw.model import (
    ActivePower,
    DERCapability,
    DERControlResponse,
    DERSettings,
    DERStatus,
    Model,
    serialize,
)
from sepgw.pev.vehicle import _quantity, real

MODES = ("discharge_before_authorization", "exceed_limit", "stop_heartbeats",
         "skip_responses", "invalid_bodies")
HTTP_MODES = ("exceed_limit", "stop_heartbeats", "skip_responses", "invalid_bodies")
INVERTER_MODES = ("discharge_before_authorization", "exceed_limit")


class MisbehavingHTTP(SEPClient):
    """The same :class:`SEPClient` (one agent, connection tracker, requests in flight:
    its attributes are shared) with the PUTs and POSTs of ``modes`` altered."""

    log = Logger()

    def __init__(self, inner: SEPClient, modes: set[str],
                 vehicle: Mapping[str, Any] | None = None) -> None:
        self.__dict__ = inner.__dict__  # the very same client, only put/post differ
        self._modes = frozenset(modes)
        self._vehicle = vehicle or {}
        self._statuses = 0

    def put(self, href: str, obj: Model | bytes) -> Any:
        if isinstance(obj, DERStatus) and "stop_heartbeats" in self._modes:
            self._statuses += 1
            if self._statuses > 1:
                return succeed(204)  # heartbeat not sent, reported as done
        if "exceed_limit" in self._modes and isinstance(obj, (DERCapability, DERSettings)):
            obj = self._under_report(obj)
        if "invalid_bodies" in self._modes and not isinstance(obj, bytes):
            obj = serialize(obj).replace(b"</", b"<bogus>x</bogus></", 1)
        return SEPClient.put(self, href, obj)

    def post(self, href: str, obj: Model | bytes) -> Any:
        if isinstance(obj, DERControlResponse) and "skip_responses" in self._modes:
            return succeed(None)
        return SEPClient.post(self, href, obj)

    def _under_report(self, obj: Any) -> Any:
        """Half the vehicle's power ratings, or the site's limit when lower."""
        fields = (("rtgMaxW", "max_w"), ("rtgMaxDischargeRateW", "max_discharge_rate_w")) \
            if isinstance(obj, DERCapability) else \
            (("setMaxW", "max_w"), ("setMaxDischargeRateW", "max_discharge_rate_w"))
        changes = {}
        for name, key in fields:
            current, half = real(getattr(obj, name)), self._vehicle.get(key, 0) / 2
            value = half if current is None else min(float(current), half)
            changes[name] = _quantity(ActivePower, value)
        return dataclasses.replace(obj, **changes)


class MisbehavingInverter:
    """An inverter plugin told something else than the J3072 client decided."""

    def __init__(self, inner: Any, modes: set[str]) -> None:
        self._inner = inner
        self._modes = frozenset(modes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def apply(self, controls: Mapping[str, Any]) -> Any:
        altered = dict(controls)
        if "exceed_limit" in self._modes and altered.get("opModEnergize"):
            altered["opModFixedW"] = 100.0
            altered.pop("opModMaxLimW", None)
        if "discharge_before_authorization" in self._modes:
            altered["opModEnergize"] = True
            altered.setdefault("opModFixedW", 50.0)
        return self._inner.apply(altered)


def misbehave(modes: Mapping[str, Any] | set[str], http: SEPClient, inverter: Any,
              vehicle: Mapping[str, Any] | None = None) -> tuple[SEPClient, Any]:
    """``(http, inverter)`` wrapped for the misbehaviour modes enabled in ``modes`` (a
    ``[behaviour]`` mapping or a set of names); unchanged when none is."""
    enabled = {m for m in MODES if (m in modes and (modes[m] if isinstance(modes, Mapping)
                                                     else True))}
    unknown = set(modes) - set(MODES) - {"report"} if not isinstance(modes, Mapping) else set()
    if unknown:
        raise ValueError(f"unknown misbehaviour mode(s): {', '.join(sorted(unknown))}")
    if enabled & set(HTTP_MODES):
        http = MisbehavingHTTP(http, enabled, vehicle)
    if enabled & set(INVERTER_MODES):
        inverter = MisbehavingInverter(inverter, enabled)
    return http, inverter


__all__ = ["MODES", "MisbehavingHTTP", "MisbehavingInverter", "misbehave"]
