"""What an authorization policy decides from: :class:`PolicyFacts`, and helpers to read it.

The session logic builds one :class:`PolicyFacts` whenever a session's inputs change (a PUT
of DeviceInformation, DERCapability or DERSettings, a Response, a change of the management
information in effect) and hands it to the configured
:class:`~sepgw.interfaces.IAuthorizationPolicy`. Everything here is pure: no I/O, no clock.

The helpers are for any policy, bundled or drop-in:

* :func:`real_value` turns a 2030.5 ``multiplier``/``value`` quantity into an exact
  :class:`~decimal.Decimal` (``value × 10^multiplier``), :func:`show` formats one for a reason
  (both from :mod:`sepgw.common.quantities`, re-exported);
* :data:`REACTIVE_MODES`, :data:`REACTIVE_RATINGS` and :func:`is_four_quadrant` say whether a
  PEV's DERCapability describes a 4-quadrant (reactive-power capable) inverter;
* :func:`missing_responses` lists the management-information DERControls still lacking
  Event Received or Event Started responses (profile 4.6.4), :func:`mrid_text` names an mRID.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from sepgw.common.quantities import real_value, show
from sepgw.model import DERCapability, DERControl, DERSettings, DeviceInformation
from sepgw.model.types import DERControlType, ResponseStatus
from sepgw.security.identity import HardwareModuleName

__all__ = [
    "PolicyFacts", "REACTIVE_MODES", "REACTIVE_RATINGS", "REQUIRED_RESPONSES", "real_value",
    "show", "is_four_quadrant", "reactive_modes", "reactive_ratings", "rating_text",
    "missing_responses", "mrid_text", "status_text",
]


@dataclass(frozen=True)
class PolicyFacts:
    """Everything known about one PEV session when its authorization is (re)evaluated.

    ``None`` means "not received yet": the PEV has not PUT that resource in this session, or
    its certificate carries no HardwareModuleName.
    """

    lfdi: str
    """The PEV's LFDI from its TLS certificate (40 upper-case hexadecimal digits)."""
    sfdi: int
    """The PEV's SFDI, derived from ``lfdi``."""
    hardware_module_name: HardwareModuleName | None
    """The certificate's HardwareModuleName (make and model in ``hw_type``, V2G-4.4-2)."""
    device_information: DeviceInformation | None
    """The PEV's EndDevice DeviceInformation (profile 4.6.2.2)."""
    der_capability: DERCapability | None
    """The PEV's DER DERCapability, its nameplate ratings (profile 4.6.2.3)."""
    der_settings: DERSettings | None
    """The PEV's DER DERSettings, its site-adjusted settings (profile 4.6.2.1)."""
    site: Mapping[str, Any]
    """The validated ``[site]`` configuration section (``quadrants``, ``max_w``...)."""
    site_settings: DERSettings
    """The site limits as the EVSE serves them (SelfDevice DERSettings, profile 4.6.1)."""
    controls: Sequence[DERControl]
    """The management-information DERControls in effect for the PEV (profile 4.6.3)."""
    responses: Mapping[bytes, frozenset[int]]
    """Response statuses received from the PEV, per DERControl mRID."""


# --------------------------------------------------------------------------------------------
# Quadrants

#: The DERControlType bits (2030.5-2018 schema, DERControlType documentation) of the modes
#: that control reactive power: 4 opModFixedPFAbsorbW, 5 opModFixedPFInjectW, 6 opModFixedVar,
#: 21 opModTargetVar, 23 opModVoltVar, 25 opModWattPF, 26 opModWattVar.
REACTIVE_MODES = (
    DERControlType.opModFixedPFAbsorbW | DERControlType.opModFixedPFInjectW
    | DERControlType.opModFixedVar | DERControlType.opModTargetVar
    | DERControlType.opModVoltVar | DERControlType.opModWattPF | DERControlType.opModWattVar
)


def reactive_modes(capability: DERCapability) -> list[str]:
    """The names of the reactive-power modes in ``capability.modesSupported``, bit order."""
    supported = int(capability.modesSupported)
    return [m.name for m in DERControlType
            if m & REACTIVE_MODES and supported & int(m) and m.name is not None]


#: The DERCapability elements that rate reactive power: the var ratings, and the active power
#: and power factor at rated over- and under-excited operation. The profile's own PEV
#: (section 5) rates its reactive power with rtgOver/UnderExcitedW and -PF only.
REACTIVE_RATINGS = ("rtgMaxVar", "rtgMaxVarNeg", "rtgOverExcitedW", "rtgOverExcitedPF",
                    "rtgUnderExcitedW", "rtgUnderExcitedPF")

_RATING_UNITS = {"rtgMaxVar": " var", "rtgMaxVarNeg": " var", "rtgOverExcitedW": " W",
                 "rtgUnderExcitedW": " W"}


def reactive_ratings(capability: DERCapability) -> list[str]:
    """The names of the :data:`REACTIVE_RATINGS` present in ``capability``, in that order."""
    return [name for name in REACTIVE_RATINGS if getattr(capability, name) is not None]


def rating_text(capability: DERCapability, name: str) -> str:
    """One rating with its value: ``rtgMaxVar 3000 var``, ``rtgOverExcitedPF 0.8``."""
    q = getattr(capability, name)
    if name.endswith("PF"):
        value = Decimal(int(q.displacement)).scaleb(int(q.multiplier))
    else:
        value = real_value(q)
    return f"{name} {show(value)}{_RATING_UNITS.get(name, '')}"


def is_four_quadrant(capability: DERCapability | None) -> bool:
    """True when the PEV is a 4-quadrant inverter: its DERCapability supports at least one
    reactive-power mode (:data:`REACTIVE_MODES`) and rates its reactive power with at least
    one of :data:`REACTIVE_RATINGS`."""
    return (capability is not None and bool(reactive_modes(capability))
            and bool(reactive_ratings(capability)))


# --------------------------------------------------------------------------------------------
# Responses

#: The statuses every management-information DERControl needs before authorization
#: (profile 4.6.4): Event Received (1) and Event Started (2).
REQUIRED_RESPONSES: tuple[ResponseStatus, ...] = (
    ResponseStatus.EVENT_RECEIVED, ResponseStatus.EVENT_STARTED)

_STATUS_NAMES = {ResponseStatus.EVENT_RECEIVED: "Received", ResponseStatus.EVENT_STARTED:
                 "Started"}


def mrid_text(mrid: bytes) -> str:
    """An mRID as 2030.5 writes it: upper-case hexadecimal."""
    return mrid.hex().upper()


def missing_responses(controls: Iterable[DERControl], responses: Mapping[bytes, frozenset[int]],
                      ) -> list[tuple[DERControl, tuple[ResponseStatus, ...]]]:
    """Each control of ``controls`` lacking one of :data:`REQUIRED_RESPONSES`, with the
    statuses it lacks, in the order of ``controls``."""
    out = []
    for control in controls:
        received = responses.get(control.mRID, frozenset())
        lacking = tuple(s for s in REQUIRED_RESPONSES if int(s) not in received)
        if lacking:
            out.append((control, lacking))
    return out


def status_text(status: ResponseStatus) -> str:
    """``Received (1)``, ``Started (2)``."""
    return f"{_STATUS_NAMES.get(status, status.name)} ({int(status)})"
