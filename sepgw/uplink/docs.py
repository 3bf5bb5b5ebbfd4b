"""What the EVSE presents to the DME, built from the ``[site]`` section and the ports'
telemetry (``{"time", "ports": [sepgw.evse.operator.port_status...], "site": {...}}``).

One EndDevice (the EVSE's LFDI) with one DER for the whole site; MirrorUsagePoints for the
site and for each port, each with W, var, V, Hz and a cumulative energy register. Values are
in the DER reference frame of the rest of sepgw: positive active power flows from the PEVs
to the grid (export).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any, Mapping, Sequence

from sepgw.evse.site import INT16, power_of_ten, site_der_settings
from sepgw.model import (
    ActivePower, ConnectStatusType, DERAvailability, DERCapability, DERSettings, DERStatus,
    DeviceInformation, EndDevice, InverterStatusType, MirrorMeterReading,
    MirrorMeterReadingList, MirrorUsagePoint, OperationalModeStatusType, Reading, ReadingType,
)
from sepgw.model.base import DateTimeInterval
from sepgw.model.types import (
    ConnectStatus, DERControlType, DERType, DeviceCategory, InverterStatus,
    OperationalModeStatus, PowerSourceType, RoleFlags, ServiceKind,
)

__all__ = ["SUPPORTED", "METERS", "mrid_for", "end_device", "device_information",
           "der_capability", "der_settings", "der_status", "der_availability",
           "mirror_usage_point", "readings", "site_values"]

SUPPORTED = ("opModConnect", "opModEnergize", "opModFixedW", "opModMaxLimW")
"""The DERControlBase functions the site applies; any other gets status 252."""

MODES = (DERControlType.CHARGE | DERControlType.DISCHARGE | DERControlType.opModConnect
         | DERControlType.opModEnergize | DERControlType.opModFixedW
         | DERControlType.opModMaxLimW)

#: (key, description, uom, power of ten, accumulationBehaviour, flowDirection): W, var, V,
#: Hz instantaneous (12); energy cumulative (3) in Wh, net export (DER frame).
METERS: tuple[tuple[str, str, int, int, int, int | None], ...] = (
    ("w", "Active Power", 38, 0, 12, 19),
    ("var", "Reactive Power", 63, 0, 12, 19),
    ("v", "Voltage", 29, -1, 12, None),
    ("hz", "Frequency", 33, -2, 12, None),
    ("wh", "Energy", 72, 0, 3, 19),
)


def mrid_for(lfdi: str, *parts: str) -> bytes:
    """A stable 16-byte mRID for a thing of this EVSE (the same after a restart, so a
    re-POSTed MirrorUsagePoint finds its existing one)."""
    return hashlib.sha256("/".join((lfdi.upper(),) + parts).encode()).digest()[:16]


def _w(value: float | None) -> ActivePower | None:
    if value is None:
        return None
    multiplier, (v,) = power_of_ten([value], INT16)
    return ActivePower(multiplier=multiplier, value=v)


def end_device(lfdi: str, sfdi: int, now: int) -> EndDevice:
    return EndDevice(lFDI=bytes.fromhex(lfdi), sFDI=sfdi, changedTime=now,
                     deviceCategory=DeviceCategory.EVSE)


def device_information(lfdi: str, info: Mapping[str, Any], now: int) -> DeviceInformation:
    return DeviceInformation(
        lFDI=bytes.fromhex(lfdi), mfDate=int(info.get("mf_date", 0)),
        mfHwVer=str(info.get("hw_version", "1"))[:32], mfID=int(info.get("mf_id", 0)),
        mfModel=str(info.get("model", "sepgw EVSE"))[:32],
        mfSerNum=str(info.get("serial", lfdi[:20]))[:32], primaryPower=PowerSourceType.MAINS,
        secondaryPower=PowerSourceType.NONE, swActTime=now,
        swVer=str(info.get("sw_version", "sepgw"))[:32])


def der_capability(site: Mapping[str, Any], ports: int) -> DERCapability:
    """The site as one DER: rated to the site limit, the functions the site applies."""
    return DERCapability(
        modesSupported=MODES, rtgMaxW=_w(site["max_w"]),  # type: ignore[arg-type]
        rtgMaxChargeRateW=_w(site.get("max_charge_rate_w")),
        rtgMaxDischargeRateW=_w(site.get("max_discharge_rate_w")),
        type=DERType.EVSE)


def der_settings(site: Mapping[str, Any], now: int, pev_max_w: Sequence[float] = ()
                 ) -> DERSettings:
    """The site limits (the EVSE's own DERSettings), setMaxW lowered to what the
    connected PEVs together can do when that is less."""
    settings = site_der_settings(site, None, updated_time=now)
    if pev_max_w and sum(pev_max_w) < site["max_w"]:
        settings.setMaxW = _w(sum(pev_max_w))  # type: ignore[assignment]
    settings.modesEnabled = MODES
    return settings


def der_status(ports: Sequence[Mapping[str, Any]], now: int) -> DERStatus:
    """Connected when any PEV is connected; operating when any is authorized."""
    connected = any(p.get("lfdi") for p in ports)
    authorized = any(p.get("authorized") for p in ports)
    status = ConnectStatus.AVAILABLE | (ConnectStatus.CONNECTED if connected else 0)
    if authorized:
        status |= ConnectStatus.OPERATING
    if any(p.get("violation") for p in ports):
        status |= ConnectStatus.FAULT
    inverter = InverterStatus.MPPT if authorized else (
        InverterStatus.STANDBY if connected else InverterStatus.OFF)
    return DERStatus(
        genConnectStatus=ConnectStatusType(dateTime=now, value=ConnectStatus(status)),
        inverterStatus=InverterStatusType(dateTime=now, value=inverter),
        operationalModeStatus=OperationalModeStatusType(
            dateTime=now, value=OperationalModeStatus.OPERATIONAL),
        readingTime=now)


def der_availability(site: Mapping[str, Any], pev_max_w: Sequence[float], now: int
                     ) -> DERAvailability:
    """What the site could export now: the authorized PEVs' limits within the site's."""
    return DERAvailability(readingTime=now,
                           statWAvail=_w(min(float(site["max_w"]), sum(pev_max_w))))


def mirror_usage_point(lfdi: str, name: str, site: bool) -> MirrorUsagePoint:
    """A MirrorUsagePoint for the site (premises aggregation) or one port, with the
    ReadingTypes of its MirrorMeterReadings."""
    return MirrorUsagePoint(
        mRID=mrid_for(lfdi, "mup", name), description=f"{'site' if site else name}"[:32],
        roleFlags=RoleFlags.IS_MIRROR | (RoleFlags.IS_PREMISES_AGGREGATION_POINT if site
                                         else RoleFlags.IS_DER),
        serviceCategoryKind=ServiceKind.ELECTRICITY, status=1, deviceLFDI=bytes.fromhex(lfdi),
        MirrorMeterReading=[MirrorMeterReading(
            mRID=mrid_for(lfdi, "mmr", name, key), description=description,
            ReadingType=ReadingType(accumulationBehaviour=acc, flowDirection=flow,
                                    phase=128 if key != "wh" else None,
                                    powerOfTenMultiplier=power, uom=uom))
            for key, description, uom, power, acc, flow in METERS])


def readings(lfdi: str, name: str, values: Mapping[str, float | None], now: int
             ) -> MirrorMeterReadingList | None:
    """The MirrorMeterReadings of one MirrorUsagePoint at ``now`` (those with a value)."""
    out = []
    for key, description, _, power, _, _ in METERS:
        value = values.get(key)
        if value is None:
            continue
        scaled = int(Decimal(repr(float(value))).scaleb(-power).to_integral_value())
        out.append(MirrorMeterReading(
            mRID=mrid_for(lfdi, "mmr", name, key), description=description,
            Reading=Reading(timePeriod=DateTimeInterval(duration=0, start=now),
                            value=scaled)))
    if not out:
        return None
    return MirrorMeterReadingList(all=len(out), results=len(out), MirrorMeterReading=out)


def site_values(ports: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """The site's W and var (sums) and V and Hz (means) over the ports with a meter."""
    meters = [p["meter"] for p in ports if p.get("meter")]
    if not meters:
        return {}
    return {"w": sum(m["w"] for m in meters), "var": sum(m["var"] for m in meters),
            "v": sum(m["v"] for m in meters) / len(meters),
            "hz": sum(m["hz"] for m in meters) / len(meters)}
