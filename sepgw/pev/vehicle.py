"""The documents a PEV sends (profile 4.6.2, 4.7.2), built from its ``[vehicle]`` profile.

Step 2 of the information exchange adjusts the vehicle's settings to the site limits it got
in step 1 (V2G-4.6-1): every limit is the smaller of the vehicle's rating and the site's,
setVRef is the site's, and setMaxWh is always present (V2G-4.6.2.1-2, V2G-4.9.4-1).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from sepgw.common.quantities import INT16, UINT16, power_of_ten, real_value
from sepgw.model import (
    ActivePower,
    ConnectStatusType,
    DERAvailability,
    DERCapability,
    DERSettings,
    DERStatus,
    DeviceInformation,
    InverterStatusType,
    MirrorMeterReading,
    OperationalModeStatusType,
    MirrorUsagePoint,
    PEVInfo,
    PowerStatus,
    Reading,
    ReadingType,
    RealEnergy,
    ReactivePower,
    StateOfChargeStatusType,
    VoltageRMS,
    WattHour,
)
from sepgw.model.base import DateTimeInterval
from sepgw.model.types import (
    BatteryStatus,
    ConnectStatus,
    DERAlarm,
    DERControlType,
    DERType,
    InverterStatus,
    OperationalModeStatus,
    PowerSourceType,
    RoleFlags,
    ServiceKind,
)

#: DERControlType bits the emulated PEV supports (charge, discharge, energize, the Table 5
#: functions and opModFixedW / opModMaxLimW).
MODES_2Q = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 7) | (1 << 8) | (1 << 11) | (1 << 13) | \
    (1 << 14) | (1 << 16) | (1 << 18) | (1 << 19) | (1 << 20) | (1 << 24)
MODES_4Q = MODES_2Q | (1 << 5) | (1 << 6) | (1 << 23) | (1 << 26)


def real(quantity: Any) -> Decimal | None:
    """value × 10^multiplier of a 2030.5 quantity, or None when absent."""
    return None if quantity is None else real_value(quantity)


def _quantity(cls: Any, value: float, bounds: tuple[int, int] = INT16) -> Any:
    multiplier, (v,) = power_of_ten([value], bounds)
    return cls(multiplier=multiplier, value=v)


def device_information(vehicle: Mapping[str, Any], lfdi: str) -> DeviceInformation:
    """SAE J3072 Table C4 (V2G-4.6.2.2-1): the certified marker and the ISM number as the
    profile's example carries them (mfHwVer, mfModel)."""
    return DeviceInformation(
        lFDI=bytes.fromhex(lfdi), mfDate=vehicle["manufactured"], mfHwVer=vehicle["hw_version"],
        mfID=vehicle["manufacturer_id"], mfInfo=vehicle["info"], mfModel=vehicle["ism"],
        mfSerNum=vehicle["serial"], primaryPower=PowerSourceType.BATTERY,
        secondaryPower=PowerSourceType.NONE,
        swActTime=vehicle["manufactured"], swVer=vehicle["sw_version"])


def der_capability(vehicle: Mapping[str, Any]) -> DERCapability:
    """Nameplate ratings, SAE J3072 Table C5 (V2G-4.6.2.3-1)."""
    four_quadrant = vehicle["max_var"] > 0
    return DERCapability(
        modesSupported=DERControlType(MODES_4Q if four_quadrant else MODES_2Q),
        rtgAbnormalCategory=2,
        rtgMaxChargeRateW=_quantity(ActivePower, vehicle["max_charge_rate_w"]),
        rtgMaxDischargeRateW=_quantity(ActivePower, vehicle["max_discharge_rate_w"]),
        rtgMaxVar=_quantity(ReactivePower, vehicle["max_var"]) if four_quadrant else None,
        rtgMaxVarNeg=_quantity(ReactivePower, vehicle["max_var"]) if four_quadrant else None,
        rtgMaxW=_quantity(ActivePower, vehicle["max_w"]),
        rtgMaxWh=_quantity(WattHour, vehicle["max_wh"], UINT16), rtgNormalCategory=1,
        type=DERType.ELECTRIC_VEHICLE)


def _lower(own: float, site: Any) -> float:
    limit = real(site)
    return own if limit is None else min(own, float(limit))


def der_settings(vehicle: Mapping[str, Any], site: DERSettings, now: int) -> DERSettings:
    """The vehicle's settings adjusted to the site limits (step 2 after step 1)."""
    four_quadrant = vehicle["max_var"] > 0
    max_v = _lower(vehicle["max_v"], site.setMaxV)
    site_min = real(site.setMinV)
    min_v = max(vehicle["min_v"], float(site_min)) if site_min is not None else vehicle["min_v"]
    vref = real(site.setVRef)
    return DERSettings(
        modesEnabled=DERControlType(MODES_4Q if four_quadrant else MODES_2Q), setGradW=0,
        setMaxChargeRateW=_quantity(ActivePower, _lower(vehicle["max_charge_rate_w"],
                                                        site.setMaxChargeRateW)),
        setMaxDischargeRateW=_quantity(ActivePower, _lower(vehicle["max_discharge_rate_w"],
                                                           site.setMaxDischargeRateW)),
        setMaxV=_quantity(VoltageRMS, max_v, UINT16),
        setMaxVar=_quantity(ReactivePower, _lower(vehicle["max_var"], site.setMaxVar))
        if four_quadrant else None,
        setMaxVarNeg=_quantity(ReactivePower, _lower(vehicle["max_var"], site.setMaxVarNeg))
        if four_quadrant else None,
        setMaxW=_quantity(ActivePower, _lower(vehicle["max_w"], site.setMaxW)),
        setMaxWh=_quantity(WattHour, vehicle["max_wh"], UINT16),
        setMinV=_quantity(VoltageRMS, min_v, UINT16),
        setVRef=_quantity(VoltageRMS, float(vref), UINT16) if vref is not None else None,
        updatedTime=now)


def power_status(vehicle: Mapping[str, Any], soc_pct: float, charging_w: float, now: int
                 ) -> PowerStatus:
    """PowerStatus with PEVInfo, SAE J3072 Table C9 (V2G-4.6.2.5-1), timestamped."""
    need_wh = max(0.0, (vehicle["target_soc_pct"] - soc_pct) / 100.0 * vehicle["max_wh"])
    return PowerStatus(
        batteryStatus=BatteryStatus.NORMAL, changedTime=now,
        currentPowerSource=PowerSourceType.BATTERY,
        estimatedChargeRemaining=round(soc_pct * 100),
        PEVInfo=PEVInfo(
            chargingPowerNow=_quantity(ActivePower, max(0.0, -charging_w)),
            energyRequestNow=RealEnergy(multiplier=0, value=round(need_wh)),
            maxForwardPower=_quantity(ActivePower, vehicle["max_charge_rate_w"]),
            minimumChargingDuration=round(need_wh / max(vehicle["max_charge_rate_w"], 1) * 3600),
            targetStateOfCharge=round(vehicle["target_soc_pct"] * 100),
            timeChargeIsNeeded=now + vehicle["charge_needed_in_s"],
            timeChargingStatusPEV=now))


def der_availability(vehicle: Mapping[str, Any], soc_pct: float, now: int) -> DERAvailability:
    """DERAvailability, SAE J3072 Table C9 (V2G-4.6.2.4-1), timestamped."""
    usable_wh = max(0.0, (soc_pct - vehicle["reserve_pct"]) / 100.0 * vehicle["max_wh"])
    return DERAvailability(
        availabilityDuration=round(usable_wh / max(vehicle["max_discharge_rate_w"], 1) * 3600),
        maxChargeDuration=round(vehicle["max_wh"] / max(vehicle["max_charge_rate_w"], 1) * 3600),
        readingTime=now, reserveChargePercent=round(vehicle["reserve_pct"] * 100),
        reservePercent=round(vehicle["reserve_pct"] * 100))


def der_status(inverter_status: int, soc_pct: float, now: int, alarms: int = 0,
               operational_mode: int = OperationalModeStatus.OPERATIONAL,
               mode_since: int | None = None) -> DERStatus:
    """The heartbeat (V2G-4.8.1.1-1): inverterStatus 0 authorized, 2 sleeping, 3 awake and
    not authorized (V2G-4.7.2-3..5); alarmStatus 0 when no alarm (V2G-4.7.2-19);
    operationalModeStatus, Table 6's "Operational State" (1 off while sleeping, 2
    operational while awake), dated ``mode_since`` (when that mode began; default now)."""
    return DERStatus(
        alarmStatus=DERAlarm(alarms),
        genConnectStatus=ConnectStatusType(
            dateTime=now, value=ConnectStatus.CONNECTED | ConnectStatus.AVAILABLE),
        inverterStatus=InverterStatusType(dateTime=now,
                                          value=InverterStatus(inverter_status)),
        operationalModeStatus=OperationalModeStatusType(
            dateTime=now if mode_since is None else mode_since,
            value=OperationalModeStatus(operational_mode)),
        readingTime=now,
        stateOfChargeStatus=StateOfChargeStatusType(dateTime=now, value=round(soc_pct * 100)))


#: The four MirrorMeterReadings of profile Table 6: (key, description, uom, power of ten,
#: flowDirection). flowDirection 19 (reverse) for W and var as normative Table 6 has it (the
#: section 5 example's 1 is an error); the values stay in the DER reference frame: power
#: flowing from the PEV to the grid is positive (V2G-4.7.2-29..31).
METERS = (
    ("w", "Active Power", 38, 0, 19),
    ("var", "Reactive Power", 63, 0, 19),
    ("v", "Voltage", 29, -1, None),
    ("hz", "Frequency", 33, -2, None),
)


def mirror_usage_point(lfdi: str, mrid: bytes) -> MirrorUsagePoint:
    """The PEV's MirrorUsagePoint: deviceLFDI, roleFlags isPEV only, electricity
    (V2G-4.7.2-22..26)."""
    return MirrorUsagePoint(mRID=mrid, description="PEV MUP", roleFlags=RoleFlags.IS_PEV,
                            serviceCategoryKind=ServiceKind.ELECTRICITY, status=1,
                            deviceLFDI=bytes.fromhex(lfdi))


def meter_reading_type(mrid: bytes, key: str) -> MirrorMeterReading:
    """A MirrorMeterReading with its ReadingType (Table 6; no dataQualifier, V2G-4.7.2-28)."""
    _, description, uom, power, flow = next(m for m in METERS if m[0] == key)
    return MirrorMeterReading(
        mRID=mrid, description=description,
        ReadingType=ReadingType(accumulationBehaviour=12, flowDirection=flow, phase=128,
                                powerOfTenMultiplier=power, uom=uom))


def meter_reading(mrid: bytes, key: str, value: float, now: int) -> MirrorMeterReading:
    """A new value of one MirrorMeterReading, timestamped (V2G-4.7.2-17)."""
    _, description, _, power, _ = next(m for m in METERS if m[0] == key)
    scaled = int(Decimal(str(value)).scaleb(-power).to_integral_value())
    return MirrorMeterReading(
        mRID=mrid, description=description,
        Reading=Reading(timePeriod=DateTimeInterval(duration=0, start=now), value=scaled))
