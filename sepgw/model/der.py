"""DER function set: DER and its information resources, programs, controls and curves.

Table 5 of the V2G-AC profile lists the management-information opMods carried in
:class:`DERControlBase` (opModFixedPFInjectW, opModVoltVar, opModWattVar, opModFixedVar,
opModVoltWatt, opModHFRTMustTrip, opModLFRTMustTrip, opModMaxLimW, opModFreqDroop,
opModHVRTMomentaryCessation, opModHVRTMustTrip, opModLVRTMomentaryCessation,
opModLVRTMustTrip), plus opModEnergize (authorization to discharge) and opModFixedW
(coordinated charge/discharge).  The whole 2018 DERControlBase is modelled, in schema order.
"""

from dataclasses import field
from typing import Annotated

from .base import (
    Event, Link, ListLink, List, PollRateT, Resource, SubscribableIdentifiedObject,
    SubscribableList, SubscribableResource, IdentifiedObject,
)
from .codec import Model, Occurs, complex_type, resource
from .types import (
    BoolT, ConnectStatusT, DERAlarmT, DERControlTypeT, DERCurveTypeT, DERTypeT,
    DERUnitRefTypeT, DeviceCategoryT, Int16T, Int32T, InverterStatusT,
    LocalControlModeStatusT, OperationalModeStatusT, PercentT, Pow10T, SignedPercentT,
    StorageModeStatusT, String6T, TimeT, UInt8T, UInt16T, UInt32T,
)
from .units import (
    ActivePower, AmpereHour, ApparentPower, CurrentRMS, FixedVar, FreqDroopType, PowerFactor,
    PowerFactorWithExcitation, ReactivePower, ReactiveSusceptance, VoltageRMS, WattHour,
)

__all__ = [
    "DER", "DERList", "DERCapability", "DERSettings", "DERAvailability", "DERStatus",
    "ConnectStatusType", "InverterStatusType", "LocalControlModeStatusType",
    "ManufacturerStatusType", "OperationalModeStatusType", "StateOfChargeStatusType",
    "StorageModeStatusType", "DERProgram", "DERProgramList", "DERControlBase", "DERControl",
    "DERControlList", "ActiveDERControlList", "DefaultDERControl", "CurveData", "DERCurve",
    "DERCurveList",
]


@resource
class DER(SubscribableResource):
    """V2G-4.5.3.4-1: links to DERCapability, DERSettings, DERAvailability and DERStatus."""
    AssociatedDERProgramListLink: ListLink | None = None
    AssociatedUsagePointLink: Link | None = None
    CurrentDERProgramLink: Link | None = None
    DERAvailabilityLink: Link | None = None
    DERCapabilityLink: Link | None = None
    DERSettingsLink: Link | None = None
    DERStatusLink: Link | None = None


_DER = DER


@resource
class DERList(List):
    pollRate: PollRateT = None
    DER: list[_DER] = field(default_factory=list)


@resource
class DERCapability(Resource):
    """Nameplate ratings (SAE J3072 Table C5)."""
    modesSupported: DERControlTypeT
    rtgAbnormalCategory: UInt8T | None = None
    rtgMaxA: CurrentRMS | None = None
    rtgMaxAh: AmpereHour | None = None
    rtgMaxChargeRateVA: ApparentPower | None = None
    rtgMaxChargeRateW: ActivePower | None = None
    rtgMaxDischargeRateVA: ApparentPower | None = None
    rtgMaxDischargeRateW: ActivePower | None = None
    rtgMaxV: VoltageRMS | None = None
    rtgMaxVA: ApparentPower | None = None
    rtgMaxVar: ReactivePower | None = None
    rtgMaxVarNeg: ReactivePower | None = None
    rtgMaxW: ActivePower
    rtgMaxWh: WattHour | None = None
    rtgMinPFOverExcited: PowerFactor | None = None
    rtgMinPFUnderExcited: PowerFactor | None = None
    rtgMinV: VoltageRMS | None = None
    rtgNormalCategory: UInt8T | None = None
    rtgOverExcitedPF: PowerFactor | None = None
    rtgOverExcitedW: ActivePower | None = None
    rtgReactiveSusceptance: ReactiveSusceptance | None = None
    rtgUnderExcitedPF: PowerFactor | None = None
    rtgUnderExcitedW: ActivePower | None = None
    rtgVNom: VoltageRMS | None = None
    type: DERTypeT


@resource
class DERSettings(SubscribableResource):
    """Site limits (EVSE SelfDevice) or PEV settings (SAE J3072 Tables C2/C3).
    V2G-4.6.2.1-2: a PEV includes setMaxWh; V2G-4.9.5: the EVSE uses setVRef, not setVNom."""
    modesEnabled: DERControlTypeT | None = None
    setESDelay: UInt32T | None = None
    setESHighFreq: UInt16T | None = None
    setESHighVolt: Int16T | None = None
    setESLowFreq: UInt16T | None = None
    setESLowVolt: Int16T | None = None
    setESRampTms: UInt32T | None = None
    setESRandomDelay: UInt32T | None = None
    setGradW: UInt16T
    setMaxA: CurrentRMS | None = None
    setMaxAh: AmpereHour | None = None
    setMaxChargeRateVA: ApparentPower | None = None
    setMaxChargeRateW: ActivePower | None = None
    setMaxDischargeRateVA: ApparentPower | None = None
    setMaxDischargeRateW: ActivePower | None = None
    setMaxV: VoltageRMS | None = None
    setMaxVA: ApparentPower | None = None
    setMaxVar: ReactivePower | None = None
    setMaxVarNeg: ReactivePower | None = None
    setMaxW: ActivePower
    setMaxWh: WattHour | None = None
    setMinPFOverExcited: PowerFactor | None = None
    setMinPFUnderExcited: PowerFactor | None = None
    setMinV: VoltageRMS | None = None
    setSoftGradW: UInt16T | None = None
    setVNom: VoltageRMS | None = None
    setVRef: VoltageRMS | None = None
    setVRefOfs: VoltageRMS | None = None
    updatedTime: TimeT


@resource
class DERAvailability(SubscribableResource):
    availabilityDuration: UInt32T | None = None
    maxChargeDuration: UInt32T | None = None
    readingTime: TimeT
    reserveChargePercent: PercentT | None = None
    reservePercent: PercentT | None = None
    statVarAvail: ReactivePower | None = None
    statWAvail: ActivePower | None = None


@complex_type
class ConnectStatusType(Model):
    dateTime: TimeT
    value: ConnectStatusT


@complex_type
class InverterStatusType(Model):
    """V2G-4.7.2-3..5: 0 = authorized, 2 = sleeping, 3 = awake, not authorized."""
    dateTime: TimeT
    value: InverterStatusT


@complex_type
class LocalControlModeStatusType(Model):
    dateTime: TimeT
    value: LocalControlModeStatusT


@complex_type
class ManufacturerStatusType(Model):
    dateTime: TimeT
    value: String6T


@complex_type
class OperationalModeStatusType(Model):
    dateTime: TimeT
    value: OperationalModeStatusT


@complex_type
class StateOfChargeStatusType(Model):
    dateTime: TimeT
    value: PercentT


@complex_type
class StorageModeStatusType(Model):
    dateTime: TimeT
    value: StorageModeStatusT


@resource
class DERStatus(SubscribableResource):
    """The PEV heartbeat (V2G-4.8.1.1-1) and monitoring status (V2G-4.7.2)."""
    alarmStatus: DERAlarmT | None = None
    genConnectStatus: ConnectStatusType | None = None
    inverterStatus: InverterStatusType | None = None
    localControlModeStatus: LocalControlModeStatusType | None = None
    manufacturerStatus: ManufacturerStatusType | None = None
    operationalModeStatus: OperationalModeStatusType | None = None
    readingTime: TimeT
    stateOfChargeStatus: StateOfChargeStatusType | None = None
    storageModeStatus: StorageModeStatusType | None = None
    storConnectStatus: ConnectStatusType | None = None


@resource
class DERProgram(SubscribableIdentifiedObject):
    ActiveDERControlListLink: ListLink | None = None
    DefaultDERControlLink: Link | None = None
    DERControlListLink: ListLink | None = None
    DERCurveListLink: ListLink | None = None
    primacy: UInt8T


_DERProgram = DERProgram


@resource
class DERProgramList(SubscribableList):
    """V2G-4.1.4-6: the EVSE sets pollRate to 1 second."""
    pollRate: PollRateT = None
    DERProgram: list[_DERProgram] = field(default_factory=list)


@complex_type
class DERControlBase(Model):
    opModConnect: BoolT | None = None
    #: Authorization to discharge (V2G-4.6.4-2/3), in DefaultDERControl only.
    opModEnergize: BoolT | None = None
    opModFixedPFAbsorbW: PowerFactorWithExcitation | None = None
    opModFixedPFInjectW: PowerFactorWithExcitation | None = None
    opModFixedVar: FixedVar | None = None
    #: Positive = PEV discharging, negative = charging (V2G-4.8.2-2).
    opModFixedW: SignedPercentT | None = None
    opModFreqDroop: FreqDroopType | None = None
    opModFreqWatt: Link | None = None
    opModHFRTMayTrip: Link | None = None
    opModHFRTMustTrip: Link | None = None
    opModHVRTMayTrip: Link | None = None
    opModHVRTMomentaryCessation: Link | None = None
    opModHVRTMustTrip: Link | None = None
    opModLFRTMayTrip: Link | None = None
    opModLFRTMustTrip: Link | None = None
    opModLVRTMayTrip: Link | None = None
    opModLVRTMomentaryCessation: Link | None = None
    opModLVRTMustTrip: Link | None = None
    opModMaxLimW: PercentT | None = None
    opModTargetVar: ReactivePower | None = None
    opModTargetW: ActivePower | None = None
    opModVoltVar: Link | None = None
    opModVoltWatt: Link | None = None
    opModWattPF: Link | None = None
    opModWattVar: Link | None = None
    rampTms: UInt16T | None = None


_DERControlBase = DERControlBase


@resource
class DERControl(Event):
    """A management-information control (V2G-4.6.3): one opMod, responseRequired 03,
    interval.duration 4294967295."""
    randomizeDuration: Int16T | None = None
    randomizeStart: Int16T | None = None
    DERControlBase: _DERControlBase
    deviceCategory: DeviceCategoryT | None = None


_DERControl = DERControl


@resource
class DERControlList(SubscribableList):
    DERControl: list[_DERControl] = field(default_factory=list)


#: The ActiveDERControlListLink of a DERProgram points to a DERControlList document.
ActiveDERControlList = DERControlList


@resource
class DefaultDERControl(SubscribableIdentifiedObject):
    """opModEnergize (authorization) and the Enter Service settings (Table 5)."""
    DERControlBase: _DERControlBase
    setESDelay: UInt32T | None = None
    setESHighFreq: UInt16T | None = None
    setESHighVolt: Int16T | None = None
    setESLowFreq: UInt16T | None = None
    setESLowVolt: Int16T | None = None
    setESRampTms: UInt32T | None = None
    setESRandomDelay: UInt32T | None = None
    setGradW: UInt16T | None = None
    setSoftGradW: UInt16T | None = None


@complex_type
class CurveData(Model):
    excitation: BoolT | None = None
    xvalue: Int32T
    yvalue: Int32T


_CurveData = CurveData


@resource
class DERCurve(IdentifiedObject):
    autonomousVRefEnable: BoolT | None = None
    autonomousVRefTimeConstant: UInt32T | None = None
    creationTime: TimeT
    CurveData: Annotated[list[_CurveData], Occurs(1, 10)] = field(default_factory=list)
    curveType: DERCurveTypeT
    openLoopTms: UInt16T | None = None
    rampDecTms: UInt16T | None = None
    rampIncTms: UInt16T | None = None
    rampPT1Tms: UInt16T | None = None
    vRef: PercentT | None = None
    xMultiplier: Pow10T
    yMultiplier: Pow10T
    yRefType: DERUnitRefTypeT


_DERCurve = DERCurve


@resource
class DERCurveList(List):
    DERCurve: list[_DERCurve] = field(default_factory=list)
