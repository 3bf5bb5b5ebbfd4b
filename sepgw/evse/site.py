"""The site limits: ``[site]`` as the EVSE's SelfDevice DERSettings (profile 4.6.1).

The number helpers every EVSE document uses (:func:`power_of_ten`, :func:`fixed` and the
schema's integer ranges) live in :mod:`sepgw.common.quantities`, shared with the PEV role;
they are re-exported here so EVSE code keeps importing them from this module.
"""

from __future__ import annotations

from typing import Any, Mapping

from sepgw.common.quantities import INT16, INT32, UINT16, UINT32, fixed, power_of_ten
from sepgw.model import ActivePower, DERSettings, ReactivePower, VoltageRMS

__all__ = [
    "INT16", "UINT16", "INT32", "UINT32", "SITE_GRAD_W", "power_of_ten", "fixed",
    "site_der_settings",
]

SITE_GRAD_W = 0
"""setGradW of the site limits, hundredths of %setMaxW per second. The schema requires the
element; ``[site]`` has no ramp-rate limit, and 0 is the schema's "no limit" (also the value
in the profile's own site-limits example, Table 10)."""


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
