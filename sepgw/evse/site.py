"""The site limits: ``[site]`` as the EVSE's SelfDevice DERSettings (profile 4.6.1).

Also home of the two number helpers every EVSE document uses to turn configured decimal
quantities into the integers 2030.5 carries:

* :func:`power_of_ten` picks a ``multiplier`` (power-of-ten exponent) for ``value ×
  10^multiplier`` quantities (ActivePower, VoltageRMS, curve axes…) so that the values are
  exact integers inside the schema's range;
* :func:`fixed` scales a value to a fixed resolution the schema names ("in hundredths of a
  second", "in thousandths of Hz"…).

Decimal arithmetic on the shortest ``repr`` of a float, rounded to 12 significant digits, is
used, so ``91.7`` is exactly ``917 × 10^-1`` (never ``91.7000000000000028…``) and float noise
such as ``0.1 + 0.2`` is ``3 × 10^-1``.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, Iterable, Mapping

from sepgw.model import ActivePower, DERSettings, ReactivePower, VoltageRMS

__all__ = [
    "INT16", "UINT16", "INT32", "UINT32", "SITE_GRAD_W", "power_of_ten", "fixed",
    "site_der_settings",
]

#: Value ranges of the schema's integer types, as (lowest, highest).
INT16 = (-(2**15), 2**15 - 1)
UINT16 = (0, 2**16 - 1)
INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)

SITE_GRAD_W = 0
"""setGradW of the site limits, hundredths of %setMaxW per second. The schema requires the
element; ``[site]`` has no ramp-rate limit, and 0 is the schema's "no limit" (also the value
in the profile's own site-limits example, Table 10)."""

_POW10_MIN, _POW10_MAX = -128, 127  # PowerOfTenMultiplierType is an Int8
_SIGNIFICANT = Context(prec=12, rounding=ROUND_HALF_EVEN)


def _decimal(value: float | int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if isinstance(value, int):
        return Decimal(value)
    # 12 significant digits: far beyond any configured quantity, and drops binary noise
    # such as 0.1 + 0.2 == 0.30000000000000004.
    return _SIGNIFICANT.plus(Decimal(repr(value)))


def power_of_ten(values: Iterable[float | int], bounds: tuple[int, int] = INT16,
                 prefer: int = 0) -> tuple[int, list[int]]:
    """Return ``(multiplier, integers)`` with ``integers[i] × 10^multiplier == values[i]``.

    The multiplier is the largest one ≤ ``prefer`` that represents every value exactly (so
    ``7200`` → ``(0, [7200])``, ``0.16`` → ``(-2, [16])``; with ``prefer=-2``, ``61.2`` →
    ``(-2, [6120])``). When the exact integers do not fit ``bounds`` the multiplier grows
    until they do, rounding half to even (``72000`` in an Int16 → ``(1, [7200])``). One
    multiplier is shared by all ``values`` (a curve axis).
    """
    decimals = [_decimal(v) for v in values]
    if not decimals:
        raise ValueError("no values")
    lo, hi = bounds
    exponents = [int(d.normalize().as_tuple().exponent) for d in decimals if d != 0]
    multiplier = max(_POW10_MIN, min([prefer, *exponents]))
    while multiplier <= _POW10_MAX:
        ints = [int(d.scaleb(-multiplier).to_integral_value(ROUND_HALF_EVEN))
                for d in decimals]
        if all(lo <= i <= hi for i in ints):
            return multiplier, ints
        multiplier += 1
    raise ValueError(f"{values!r} cannot be carried in {lo}..{hi}")  # pragma: no cover


def fixed(value: float | int, decimals: int, bounds: tuple[int, int], what: str = "value") -> int:
    """``value`` in units of ``10^-decimals`` (``fixed(60.1, 2, UINT16) == 6010``), rounded
    half to even; ValueError naming ``what`` when it falls outside ``bounds``."""
    scaled = int(_decimal(value).scaleb(decimals).to_integral_value(ROUND_HALF_EVEN))
    lo, hi = bounds
    if not lo <= scaled <= hi:
        raise ValueError(f"{what} {value!r} is {scaled} in units of 10^-{decimals}, outside "
                         f"{lo}..{hi}")
    return scaled


def _power(cls: Any, value: float | None, bounds: tuple[int, int]) -> Any:
    if value is None:
        return None
    multiplier, (v,) = power_of_ten([value], bounds)
    return cls(multiplier=multiplier, value=v)


def site_der_settings(site: Mapping[str, Any], href: str | None, *,
                      updated_time: float = 0, grad_w: int = SITE_GRAD_W) -> DERSettings:
    """The SelfDevice DERSettings (site limits) from a validated ``[site]`` section.

    Carries the site limits of SAE J3072 Table C2 as the profile's example shows them
    (section 5.3): setGradW, setMaxChargeRateW, setMaxDischargeRateW, setMaxV, setMaxVar,
    setMaxVarNeg, setMaxW (the active-power limit, V2G-4.6.1.1-1 / V2G-4.9.6-1), setMinV,
    setVRef (the nominal voltage; setVNom is never sent, V2G-4.9.5-1/-2), setVRefOfs (0 V:
    measured voltages are used as they are) and updatedTime. Optional keys that are None
    are left out; ``max_w`` is required.

    ``updated_time`` is the Unix time the site configuration took effect; ``grad_w`` the
    setGradW in hundredths of %setMaxW/s (see :data:`SITE_GRAD_W`). ``quadrants`` is an
    authorization criterion of the EVSE (V2G-4.6.4-1), not a DERSettings element.
    """
    return DERSettings(
        href=href,
        setGradW=fixed(grad_w, 0, UINT16, "setGradW"),
        setMaxChargeRateW=_power(ActivePower, site.get("max_charge_rate_w"), INT16),
        setMaxDischargeRateW=_power(ActivePower, site.get("max_discharge_rate_w"), INT16),
        setMaxV=_power(VoltageRMS, site.get("max_v"), UINT16),
        setMaxVar=_power(ReactivePower, site.get("max_var"), INT16),
        setMaxVarNeg=_power(ReactivePower, site.get("max_var_neg"), INT16),
        setMaxW=_power(ActivePower, site["max_w"], INT16),
        setMinV=_power(VoltageRMS, site.get("min_v"), UINT16),
        setVRef=_power(VoltageRMS, site.get("v_ref"), UINT16),
        setVRefOfs=(VoltageRMS(multiplier=0, value=0)
                    if site.get("v_ref") is not None else None),
        updatedTime=int(updated_time),
    )
