"""Metering and metering mirror: UsagePoint, MirrorUsagePoint, MirrorMeterReading,
ReadingType, Reading, MirrorReadingSet.

V2G-4.7.2-22..28: a PEV MirrorUsagePoint carries deviceLFDI, roleFlags = isPEV only,
serviceCategoryKind = electricity, and ReadingTypes without dataQualifier.
"""

from dataclasses import field

from .base import (
    DateTimeInterval, IdentifiedObject, List, ListLink, PollRateT, Resource, SubscribableList,
    SubscribableResource,
)
from .codec import complex_type, resource
from .types import (
    AccumulationBehaviourT, BoolT, CommodityTypeT, DataQualifierT, FlowDirectionT, Hex16T,
    Int48T, KindTypeT, LFDIT, PhaseCodeT, Pow10T, RoleFlagsT, ServiceKindT, TimeT, UInt8T,
    UInt32T, UInt48T, UomTypeT,
)
from .units import UnitValueType

__all__ = [
    "ReadingType", "Reading", "MirrorReadingSet", "MirrorMeterReading",
    "MirrorMeterReadingList", "UsagePointBase", "UsagePoint", "UsagePointList",
    "MirrorUsagePoint", "MirrorUsagePointList",
]


@resource
class ReadingType(Resource):
    accumulationBehaviour: AccumulationBehaviourT | None = None
    calorificValue: UnitValueType | None = None
    commodity: CommodityTypeT | None = None
    conversionFactor: UnitValueType | None = None
    dataQualifier: DataQualifierT | None = None
    flowDirection: FlowDirectionT | None = None
    intervalLength: UInt32T | None = None
    kind: KindTypeT | None = None
    maxNumberOfIntervals: UInt8T | None = None
    numberOfConsumptionBlocks: UInt8T | None = None
    numberOfTouTiers: UInt8T | None = None
    phase: PhaseCodeT | None = None
    powerOfTenMultiplier: Pow10T | None = None
    subIntervalLength: UInt32T | None = None
    supplyLimit: UInt48T | None = None
    tieredConsumptionBlocks: BoolT | None = None
    uom: UomTypeT | None = None


@resource
class Reading(SubscribableResource):
    consumptionBlock: UInt8T | None = None
    qualityFlags: Hex16T | None = None
    timePeriod: DateTimeInterval | None = None
    touTier: UInt8T | None = None
    value: Int48T | None = None
    localID: Hex16T | None = None


_Reading = Reading
_ReadingType = ReadingType


@resource
class MirrorReadingSet(IdentifiedObject):
    timePeriod: DateTimeInterval
    Reading: list[_Reading] = field(default_factory=list)


_MirrorReadingSet = MirrorReadingSet


@resource
class MirrorMeterReading(IdentifiedObject):
    lastUpdateTime: TimeT | None = None
    MirrorReadingSet: list[_MirrorReadingSet] = field(default_factory=list)
    nextUpdateTime: TimeT | None = None
    Reading: _Reading | None = None
    ReadingType: _ReadingType | None = None


_MirrorMeterReading = MirrorMeterReading


@resource
class MirrorMeterReadingList(List):
    MirrorMeterReading: list[_MirrorMeterReading] = field(default_factory=list)


@complex_type
class UsagePointBase(IdentifiedObject):
    roleFlags: RoleFlagsT
    serviceCategoryKind: ServiceKindT
    status: UInt8T


@resource
class UsagePoint(UsagePointBase):
    deviceLFDI: LFDIT | None = None
    MeterReadingListLink: ListLink | None = None


_UsagePoint = UsagePoint


@resource
class UsagePointList(SubscribableList):
    pollRate: PollRateT = None
    UsagePoint: list[_UsagePoint] = field(default_factory=list)


@resource
class MirrorUsagePoint(UsagePointBase):
    deviceLFDI: LFDIT
    MirrorMeterReading: list[_MirrorMeterReading] = field(default_factory=list)
    postRate: UInt32T | None = None


_MirrorUsagePoint = MirrorUsagePoint


@resource
class MirrorUsagePointList(List):
    pollRate: PollRateT = None
    MirrorUsagePoint: list[_MirrorUsagePoint] = field(default_factory=list)
