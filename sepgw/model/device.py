"""Device function sets: DeviceCapability, Time, SelfDevice, EndDevice, DeviceInformation,
DeviceStatus, PowerStatus (with PEVInfo), FunctionSetAssignments and LogEvent."""

from dataclasses import field
from typing import Annotated

from .base import (
    Link, ListLink, PollRateT, Resource, SubscribableList,
    SubscribableResource,
)
from .codec import Attr, Model, complex_type, resource
from .types import (
    SUBSCRIBABLE, SubscribableType,
    BatteryStatusT, BoolT, DeviceCategoryT, Hex32T, Hex64T, LFDIT, MRIDT, PENT, PercentT,
    PowerSourceTypeT, SFDIT, String32T, TimeOffsetT, TimeQualityT, TimeT, UInt8T, UInt16T,
    UInt32T, VersionT,
)
from .units import ActivePower, RealEnergy
from .units import Temperature as _Temperature

__all__ = [
    "FunctionSetAssignmentsBase", "DeviceCapability", "Time", "AbstractDevice", "SelfDevice",
    "EndDevice", "EndDeviceList", "DRLCCapabilities", "GPSLocationType", "DeviceInformation",
    "DeviceStatus", "PEVInfo", "PowerStatus", "FunctionSetAssignments",
    "FunctionSetAssignmentsList", "LogEvent", "LogEventList",
]


@complex_type
class FunctionSetAssignmentsBase(Resource):
    CustomerAccountListLink: ListLink | None = None
    DemandResponseProgramListLink: ListLink | None = None
    DERProgramListLink: ListLink | None = None
    FileListLink: ListLink | None = None
    MessagingProgramListLink: ListLink | None = None
    PrepaymentListLink: ListLink | None = None
    ResponseSetListLink: ListLink | None = None
    TariffProfileListLink: ListLink | None = None
    TimeLink: Link | None = None
    UsagePointListLink: ListLink | None = None


@resource
class DeviceCapability(FunctionSetAssignmentsBase):
    """V2G-4.5.1-3: the EVSE populates EndDeviceListLink, SelfDeviceLink, TimeLink and
    MirrorUsagePointListLink; V2G-4.5.1-4: never DERProgramListLink."""
    pollRate: PollRateT = None
    EndDeviceListLink: ListLink | None = None
    MirrorUsagePointListLink: ListLink | None = None
    SelfDeviceLink: Link | None = None


@resource
class Time(Resource):
    """Server time.  TimeType is Unix seconds (UTC, no leap seconds)."""
    pollRate: PollRateT = None
    currentTime: TimeT
    dstEndTime: TimeT
    dstOffset: TimeOffsetT
    dstStartTime: TimeT
    localTime: TimeT | None = None
    quality: TimeQualityT
    tzOffset: TimeOffsetT


@complex_type
class AbstractDevice(SubscribableResource):
    ConfigurationLink: Link | None = None
    DERListLink: ListLink | None = None
    deviceCategory: DeviceCategoryT | None = None
    DeviceInformationLink: Link | None = None
    DeviceStatusLink: Link | None = None
    FileStatusLink: Link | None = None
    IPInterfaceListLink: ListLink | None = None
    lFDI: LFDIT | None = None
    LoadShedAvailabilityListLink: ListLink | None = None
    LogEventListLink: ListLink | None = None
    PowerStatusLink: Link | None = None
    sFDI: SFDIT


@resource
class SelfDevice(AbstractDevice):
    pollRate: PollRateT = None


@resource
class EndDevice(AbstractDevice):
    """V2G-4.5.3-6/7: the EVSE populates the PEV's EndDevice with DeviceInformationLink,
    PowerStatusLink, SubscriptionListLink, DERListLink and FunctionSetAssignmentsListLink,
    and never RegistrationLink."""
    changedTime: TimeT
    enabled: BoolT | None = None
    FlowReservationRequestListLink: ListLink | None = None
    FlowReservationResponseListLink: ListLink | None = None
    FunctionSetAssignmentsListLink: ListLink | None = None
    postRate: UInt32T | None = None
    RegistrationLink: Link | None = None
    SubscriptionListLink: ListLink | None = None


_EndDevice = EndDevice


@resource
class EndDeviceList(SubscribableList):
    pollRate: PollRateT = None
    EndDevice: list[_EndDevice] = field(default_factory=list)


@complex_type
class DRLCCapabilities(Model):
    averageEnergy: RealEnergy
    maxDemand: ActivePower
    optionsImplemented: Hex32T


@complex_type
class GPSLocationType(Model):
    lat: String32T
    lon: String32T


_DRLCCapabilities = DRLCCapabilities


@resource
class DeviceInformation(Resource):
    """V2G-4.5.3.1: the PEV need not populate functionsImplemented, gpsLocation or pollRate."""
    pollRate: PollRateT = None
    DRLCCapabilities: _DRLCCapabilities | None = None
    functionsImplemented: Hex64T | None = None
    gpsLocation: GPSLocationType | None = None
    lFDI: LFDIT
    mfDate: TimeT
    mfHwVer: String32T
    mfID: PENT
    mfInfo: String32T | None = None
    mfModel: String32T
    mfSerNum: String32T
    primaryPower: PowerSourceTypeT
    secondaryPower: PowerSourceTypeT
    SupportedLocaleListLink: ListLink | None = None
    swActTime: TimeT
    swVer: String32T


@resource
class DeviceStatus(Resource):
    pollRate: PollRateT = None
    changedTime: TimeT
    onCount: UInt16T | None = None
    opState: UInt8T | None = None
    opTime: UInt32T | None = None
    Temperature: list[_Temperature] = field(default_factory=list)
    TimeLink: Link | None = None


@complex_type
class PEVInfo(Model):
    """SAE J3072 Table C9 PEV information (carried in PowerStatus)."""
    chargingPowerNow: ActivePower
    energyRequestNow: RealEnergy
    maxForwardPower: ActivePower
    minimumChargingDuration: UInt32T
    targetStateOfCharge: PercentT
    timeChargeIsNeeded: TimeT
    timeChargingStatusPEV: TimeT


_PEVInfo = PEVInfo


@resource
class PowerStatus(Resource):
    pollRate: PollRateT = None
    batteryStatus: BatteryStatusT
    changedTime: TimeT
    currentPowerSource: PowerSourceTypeT
    estimatedChargeRemaining: PercentT | None = None
    estimatedTimeRemaining: UInt32T | None = None
    PEVInfo: _PEVInfo | None = None
    sessionTimeOnBattery: UInt32T | None = None
    totalTimeOnBattery: UInt32T | None = None


@resource
class FunctionSetAssignments(FunctionSetAssignmentsBase):
    """V2G-4.5.3.5-2/4: carries a TimeLink and a DERProgramListLink."""
    subscribable: Annotated[SubscribableType | None, Attr(SUBSCRIBABLE)] = None
    mRID: MRIDT
    description: String32T | None = None
    version: VersionT | None = None


_FunctionSetAssignments = FunctionSetAssignments


@resource
class FunctionSetAssignmentsList(SubscribableList):
    pollRate: PollRateT = None
    FunctionSetAssignments: list[_FunctionSetAssignments] = field(default_factory=list)


@resource
class LogEvent(Resource):
    createdDateTime: TimeT
    details: String32T | None = None
    extendedData: UInt32T | None = None
    functionSet: UInt8T
    logEventCode: UInt8T
    logEventID: UInt16T
    logEventPEN: PENT
    profileID: UInt8T


_LogEvent = LogEvent


@resource
class LogEventList(SubscribableList):
    pollRate: PollRateT = None
    LogEvent: list[_LogEvent] = field(default_factory=list)
