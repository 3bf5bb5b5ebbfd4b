"""The IEEE 2030.5-2018 resource model and XML codec used by every sepgw role.

    >>> from sepgw.model import parse, serialize, DERSettings
    >>> settings = parse(body, DERSettings)
    >>> body = serialize(settings)

See ``docs/model.md``.
"""

from .base import (
    DateTimeInterval, Event, EventStatus, IdentifiedObject, Link, List, ListLink,
    RespondableSubscribableIdentifiedObject, Resource, SubscribableIdentifiedObject,
    SubscribableList, SubscribableResource,
)
from .codec import (
    DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, MEDIA_TYPE, NS, Deviation, Model, parse,
    parse_lenient, prepare, registry, serialize,
)
from .der import (
    DER, ActiveDERControlList, ConnectStatusType, CurveData, DERAvailability, DERCapability,
    DERControl, DERControlBase, DERControlList, DERCurve, DERCurveList, DERList, DERProgram,
    DERProgramList, DERSettings, DERStatus, DefaultDERControl, InverterStatusType,
    LocalControlModeStatusType, ManufacturerStatusType, OperationalModeStatusType,
    StateOfChargeStatusType, StorageModeStatusType,
)
from .device import (
    AbstractDevice, DeviceCapability, DeviceInformation, DeviceStatus, DRLCCapabilities,
    EndDevice, EndDeviceList, FunctionSetAssignments, FunctionSetAssignmentsBase,
    FunctionSetAssignmentsList, GPSLocationType, LogEvent, LogEventList, PEVInfo, PowerStatus,
    SelfDevice, Time,
)
from .errors import ModelError
from .metering import (
    MirrorMeterReading, MirrorMeterReadingList, MirrorReadingSet, MirrorUsagePoint,
    MirrorUsagePointList, Reading, ReadingType, UsagePoint, UsagePointBase, UsagePointList,
)
from .paging import ListQuery, fill_list, next_start, page, parse_query, query_string, sort_list
from .pubsub import Condition, Notification, Subscription, SubscriptionBase, SubscriptionList
from .response import DERControlResponse, Response, ResponseList, ResponseSet, ResponseSetList
from .types import (
    AccumulationBehaviour, BatteryStatus, CommodityType, ConnectStatus, DataQualifier,
    DERAlarm, DERControlType, DERCurveType, DERType, DERUnitRefType, DeviceCategory,
    EventStatusCode, FlowDirection, InverterStatus, KindType, LocalControlModeStatus,
    NotificationStatus, OperationalModeStatus, PhaseCode, PowerSourceType, ResponseRequired,
    ResponseStatus, RoleFlags, ServiceKind, StorageModeStatus, SubscribableType,
    SubscriptionEncoding, TimeQuality, UomType,
)
from .units import (
    ActivePower, AmpereHour, ApparentPower, CurrentRMS, FixedPointType, FixedVar,
    FreqDroopType, PowerFactor, PowerFactorWithExcitation, ReactivePower, ReactiveSusceptance,
    RealEnergy, SignedRealEnergy, Temperature, UnitValueType, VoltageRMS, WattHour,
)

#: The resources a SunSpec V2G-AC session exchanges, both ways (what a role prepares with
#: :func:`prepare` once it serves).
SESSION_TYPES: tuple[type[Model], ...] = (
    DeviceCapability, Time, EndDeviceList, EndDevice, DeviceInformation, PowerStatus,
    DERList, DER, DERCapability, DERSettings, DERAvailability, DERStatus,
    FunctionSetAssignmentsList, DERProgramList, DefaultDERControl, DERControlList,
    DERCurveList, Response, ResponseSet, Subscription, Notification, MirrorUsagePoint,
    MirrorMeterReading, MirrorMeterReadingList,
)

__all__ = [name for name in dir() if not name.startswith("_")]
