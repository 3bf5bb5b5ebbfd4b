"""Number helpers for 2030.5 quantities, shared by the EVSE and the PEV role.

* :func:`power_of_ten` picks a ``multiplier`` (power-of-ten exponent) for ``value ×
  10^multiplier`` quantities (ActivePower, VoltageRMS, curve axes…) so that the values are
  exact integers inside the schema's range;
* :func:`fixed` scales a value to a fixed resolution the schema names ("in hundredths of a
  second", "in thousandths of Hz"…);
* :func:`real_value` reads a ``multiplier``/``value`` quantity back as an exact
  :class:`~decimal.Decimal`, :func:`show` formats one for a message.

Decimal arithmetic on the shortest ``repr`` of a float, rounded to 12 significant digits, is
used, so ``91.7`` is exactly ``917 × 10^-1`` (never ``91.7000000000000028…``) and float noise
such as ``0.1 + 0.2`` is ``3 × 10^-1``. Pure: stdlib only.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, Iterable

__all__ = ["INT16", "UINT16", "INT32", "UINT32", "power_of_ten", "fixed", "real_value", "show"]

#: Value ranges of the schema's integer types, as (lowest, highest).
INT16 = (-(2**15), 2**15 - 1)
UINT16 = (0, 2**16 - 1)
INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)

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


def real_value(quantity: Any) -> Decimal:
    """``value × 10^multiplier`` of a 2030.5 quantity (ActivePower, VoltageRMS...), exactly."""
    return Decimal(int(quantity.value)).scaleb(int(quantity.multiplier))


def show(value: Decimal) -> str:
    """A Decimal in plain notation without trailing zeros: ``6500``, ``0.25``, ``-3``."""
    return format(value.normalize(), "f")
