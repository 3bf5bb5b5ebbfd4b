"""Leaf value types of IEEE 2030.5-2018 (XSD simple types) and the enumerations we name.

Each leaf codec turns element text into a Python value (``decode``) and back (``encode``),
enforcing the XSD facts: integer ranges of the ``UIntN``/``IntN`` types, ``hexBinary`` lengths,
``xs:boolean`` lexical forms, ``String32`` style maximum lengths, and, for the closed
enumerations ("All other values reserved"), membership.  Problems are reported as
:class:`~sepgw.model.errors._Bad`; the codec machinery adds the element path and raises
:class:`~sepgw.model.errors.ModelError`.

Type aliases at the bottom (``UInt16T``, ``TimeT``, ...) are ``typing.Annotated`` hints that
carry the codec, so a resource field is declared in one line, e.g.
``setGradW: UInt16T`` or ``setESDelay: UInt32T | None = None``.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Generic, TypeVar

from .errors import _Bad, shown

__all__ = [
    "LeafCodec", "IntCodec", "EnumCodec", "OpenEnumCodec", "FlagCodec", "BoolCodec",
    "HexBytesCodec", "StringCodec", "UriCodec",
    "UINT8", "UINT16", "UINT32", "UINT40", "UINT48", "INT8", "INT16", "INT32", "INT48", "INT64",
    "TIME", "TIME_OFFSET", "POW10", "PERCENT", "SIGNED_PERCENT", "SFDI", "PEN", "VERSION",
    "LFDI", "MRID", "HEX8", "HEX16", "HEX32", "HEX64", "STRING6", "STRING16", "STRING32",
    "STRING192", "URI", "BOOLEAN",
    "InverterStatus", "OperationalModeStatus", "StorageModeStatus", "LocalControlModeStatus",
    "ConnectStatus", "DERType", "PowerSourceType", "BatteryStatus", "DERCurveType",
    "DERUnitRefType", "ServiceKind", "EventStatusCode", "ResponseStatus", "NotificationStatus",
    "SubscriptionEncoding", "SubscribableType", "RoleFlags", "DERControlType", "ResponseRequired",
    "DeviceCategory", "DERAlarm", "UomType", "PhaseCode", "FlowDirection",
    "AccumulationBehaviour", "KindType", "CommodityType", "DataQualifier", "TimeQuality",
]

_XS_WS = " \t\r\n"
_HEX = re.compile(r"[0-9A-Fa-f]*")
# Characters XML 1.0 cannot carry at all (not even as character references).
_INVALID_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

V = TypeVar("V")


class LeafCodec(Generic[V]):
    """Base of all leaf codecs: ``decode(text) -> value`` and ``encode(value) -> str``."""

    __slots__ = ("name",)
    #: True when encoded text may contain ``&``, ``<``, ``>`` or quotes and must be escaped.
    escape = False

    def __init__(self, name: str) -> None:
        self.name = name

    def decode(self, text: str | None) -> V:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, value: Any) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


MAX_INT_CHARS = 40
"""Longest integer text accepted (sign and leading zeros included); int64 needs 20."""


class IntCodec(LeafCodec[int]):
    """An XSD integer type restricted to ``lo..hi`` (inclusive)."""

    __slots__ = ("lo", "hi")

    def __init__(self, name: str, lo: int, hi: int) -> None:
        super().__init__(name)
        self.lo = lo
        self.hi = hi

    def _int(self, text: str | None) -> int:
        if text is None:
            raise _Bad("'' is not an integer")
        t = text.strip(_XS_WS)
        if len(t) > MAX_INT_CHARS:
            # Checked before int(): Python refuses (ValueError) to convert more than 4,300
            # digits, and no 2030.5 integer (int64 at most) needs more than 20 characters.
            raise _Bad(f"integer of {len(t)} characters is too long for {self.name} "
                       f"(at most {MAX_INT_CHARS})")
        if t.isdigit() and t.isascii():
            v = int(t)
        elif t[1:].isdigit() and t[:1] in "+-" and t.isascii():
            v = int(t)
        else:
            raise _Bad(f"{shown(text)} is not an integer")
        if v < self.lo or v > self.hi:
            raise _Bad(f"{v} is out of range for {self.name} ({self.lo}..{self.hi})")
        return v

    decode = _int  # type: ignore[assignment]

    def encode(self, value: Any) -> str:
        if value.__class__ is bool or not isinstance(value, int):
            raise _Bad(f"{value!r} is not an integer")
        if value < self.lo or value > self.hi:
            raise _Bad(f"{int(value)} is out of range for {self.name} ({self.lo}..{self.hi})")
        return int.__repr__(value)


E = TypeVar("E", bound=enum.IntEnum)


class EnumCodec(IntCodec):
    """A closed enumeration: values outside the named members are rejected."""

    __slots__ = ("enum", "members")

    def __init__(self, enum_cls: type[enum.IntEnum], lo: int = 0, hi: int = 255) -> None:
        super().__init__(enum_cls.__name__, lo, hi)
        self.enum = enum_cls
        self.members = {int(m): m for m in enum_cls}

    def decode(self, text: str | None) -> Any:
        v = self._int(text)
        try:
            return self.members[v]
        except KeyError:
            raise _Bad(f"{v} is not a valid {self.name} (reserved value)") from None

    def encode(self, value: Any) -> str:
        s = super().encode(value)
        if int(value) not in self.members:
            raise _Bad(f"{int(value)} is not a valid {self.name} (reserved value)")
        return s


class OpenEnumCodec(EnumCodec):
    """An enumeration whose list is open (recommended values, or defined outside the schema):
    known values decode to the named member, others (within the base type range) stay ``int``."""

    __slots__ = ()

    def decode(self, text: str | None) -> Any:
        v = self._int(text)
        return self.members.get(v, v)

    def encode(self, value: Any) -> str:
        return IntCodec.encode(self, value)


class FlagCodec(LeafCodec[int]):
    """A bitmap carried as ``hexBinary`` of at most ``nbytes`` bytes, decoded to an ``int``
    (or to ``flag`` if given, an :class:`enum.IntFlag`; unknown bits are kept).  Encoded with
    all ``2 * nbytes`` hex digits."""

    __slots__ = ("nbytes", "flag", "fmt", "hi")

    def __init__(self, name: str, nbytes: int, flag: type[enum.IntFlag] | None = None) -> None:
        super().__init__(name)
        self.nbytes = nbytes
        self.flag = flag
        self.fmt = f"0{2 * nbytes}X"
        self.hi = (1 << (8 * nbytes)) - 1

    def decode(self, text: str | None) -> Any:
        t = (text or "").strip(_XS_WS)
        n = len(t)
        if n == 0 or n & 1 or not _HEX.fullmatch(t):
            raise _Bad(f"{shown(text or '')} is not hexBinary")
        if n > 2 * self.nbytes:
            raise _Bad(f"{shown(t)} is {n // 2} bytes, {self.name} allows at most {self.nbytes}")
        v = int(t, 16)
        return self.flag(v) if self.flag is not None else v

    def encode(self, value: Any) -> str:
        if value.__class__ is bool or not isinstance(value, int):
            raise _Bad(f"{value!r} is not an integer bitmap")
        if value < 0 or value > self.hi:
            raise _Bad(f"{int(value)} does not fit {self.name} ({self.nbytes} bytes)")
        return format(int(value), self.fmt)


class HexBytesCodec(LeafCodec[bytes]):
    """``hexBinary`` decoded to ``bytes``, at most ``max_len`` bytes (exactly, if ``exact``).
    Encoded in upper case, as the 2030.5 examples show."""

    __slots__ = ("max_len", "exact")

    def __init__(self, name: str, max_len: int, exact: bool = False) -> None:
        super().__init__(name)
        self.max_len = max_len
        self.exact = exact

    def _check_len(self, n: int, what: str) -> None:
        if n > self.max_len:
            raise _Bad(f"{what} is {n} bytes, {self.name} allows at most {self.max_len}")
        if self.exact and n != self.max_len:
            raise _Bad(f"{what} is {n} bytes, {self.name} must be exactly {self.max_len}")

    def decode(self, text: str | None) -> bytes:
        t = (text or "").strip(_XS_WS)
        if len(t) & 1 or not _HEX.fullmatch(t):
            raise _Bad(f"{shown(text or '')} is not hexBinary")
        self._check_len(len(t) >> 1, shown(t))
        return bytes.fromhex(t)

    def encode(self, value: Any) -> str:
        if not isinstance(value, bytes):
            raise _Bad(f"{value!r} is not bytes")
        self._check_len(len(value), value.hex().upper())
        return value.hex().upper()


class BoolCodec(LeafCodec[bool]):
    """``xs:boolean``: ``true``/``false``/``1``/``0``; encoded as ``true``/``false``."""

    __slots__ = ()
    _VALUES = {"true": True, "false": False, "1": True, "0": False}

    def decode(self, text: str | None) -> bool:
        try:
            return self._VALUES[(text or "").strip(_XS_WS)]
        except KeyError:
            raise _Bad(f"{shown(text or '')} is not a boolean (true, false, 1 or 0)") from None

    def encode(self, value: Any) -> str:
        if value is True:
            return "true"
        if value is False:
            return "false"
        raise _Bad(f"{value!r} is not a boolean")


class StringCodec(LeafCodec[str]):
    """``xs:string`` with an XSD ``maxLength`` (characters); whitespace is preserved."""

    __slots__ = ("max_len",)
    escape = True

    def __init__(self, name: str, max_len: int | None) -> None:
        super().__init__(name)
        self.max_len = max_len

    def decode(self, text: str | None) -> str:
        t = text or ""
        if self.max_len is not None and len(t) > self.max_len:
            raise _Bad(f"{shown(t)} is {len(t)} characters, {self.name} allows at most {self.max_len}")
        return t

    def encode(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad(f"{value!r} is not a string")
        if self.max_len is not None and len(value) > self.max_len:
            raise _Bad(
                f"{value!r} is {len(value)} characters, {self.name} allows at most {self.max_len}")
        if _INVALID_XML_CHARS.search(value):
            raise _Bad(f"{value!r} contains characters XML cannot carry")
        return value


class UriCodec(StringCodec):
    """``xs:anyURI``: surrounding whitespace collapses (XSD whiteSpace=collapse)."""

    __slots__ = ()

    def decode(self, text: str | None) -> str:
        return (text or "").strip(_XS_WS)

    def encode(self, value: Any) -> str:
        s = super().encode(value)
        if s != s.strip(_XS_WS):
            raise _Bad(f"{value!r} has surrounding whitespace, not a URI")
        return s


# -- integer types --------------------------------------------------------------------------

UINT8 = IntCodec("UInt8", 0, 0xFF)
UINT16 = IntCodec("UInt16", 0, 0xFFFF)
UINT32 = IntCodec("UInt32", 0, 0xFFFFFFFF)
# The 2018 schema restricts UInt40 with the same maxInclusive as UInt48.
UINT40 = IntCodec("UInt40", 0, 281474976710655)
UINT48 = IntCodec("UInt48", 0, 281474976710655)
INT8 = IntCodec("Int8", -128, 127)
INT16 = IntCodec("Int16", -32768, 32767)
INT32 = IntCodec("Int32", -(2**31), 2**31 - 1)
# Int48 bounds exactly as the 2018 schema states them.
INT48 = IntCodec("Int48", -140737488355328, 140737488355328)
INT64 = IntCodec("Int64", -(2**63), 2**63 - 1)
TIME = IntCodec("TimeType", -(2**63), 2**63 - 1)
TIME_OFFSET = IntCodec("TimeOffsetType", -(2**31), 2**31 - 1)
POW10 = IntCodec("PowerOfTenMultiplierType", -128, 127)
PERCENT = IntCodec("PerCent", 0, 10000)
SIGNED_PERCENT = IntCodec("SignedPerCent", -10000, 10000)
SFDI = IntCodec("SFDIType", 0, 281474976710655)
PEN = IntCodec("PENType", 0, 0xFFFFFFFF)
VERSION = IntCodec("VersionType", 0, 0xFFFF)

# -- hexBinary types ------------------------------------------------------------------------

LFDI = HexBytesCodec("HexBinary160 (LFDI)", 20, exact=True)
MRID = HexBytesCodec("mRIDType", 16)
HEX8 = FlagCodec("HexBinary8", 1)
HEX16 = FlagCodec("HexBinary16", 2)
HEX32 = FlagCodec("HexBinary32", 4)
HEX64 = FlagCodec("HexBinary64", 8)

# -- strings --------------------------------------------------------------------------------

STRING6 = StringCodec("String6", 6)
STRING16 = StringCodec("String16", 16)
STRING32 = StringCodec("String32", 32)
STRING192 = StringCodec("String192", 192)
URI = UriCodec("anyURI", None)
BOOLEAN = BoolCodec("boolean")


# -- enumerations ---------------------------------------------------------------------------

class InverterStatus(enum.IntEnum):
    """DERStatus inverterStatus value.  The V2G-AC profile (4.7.2) uses 0 = awake and
    authorized, 2 = sleeping, 3 = awake but not authorized."""
    NOT_APPLICABLE = 0
    OFF = 1
    SLEEPING = 2
    STARTING = 3
    MPPT = 4
    THROTTLED = 5
    SHUTTING_DOWN = 6
    FAULT = 7
    STANDBY = 8
    TEST = 9
    MANUFACTURER = 10


class OperationalModeStatus(enum.IntEnum):
    NOT_APPLICABLE = 0
    OFF = 1
    OPERATIONAL = 2
    TEST = 3


class StorageModeStatus(enum.IntEnum):
    CHARGING = 0
    DISCHARGING = 1
    HOLDING = 2


class LocalControlModeStatus(enum.IntEnum):
    LOCAL = 0
    REMOTE = 1


class ConnectStatus(enum.IntFlag):
    """DER ConnectStatus bitmap (genConnectStatus, storConnectStatus)."""
    CONNECTED = 1
    AVAILABLE = 2
    OPERATING = 4
    TEST = 8
    FAULT = 16


class DERType(enum.IntEnum):
    NOT_APPLICABLE = 0
    VIRTUAL_OR_MIXED = 1
    RECIPROCATING_ENGINE = 2
    FUEL_CELL = 3
    PHOTOVOLTAIC = 4
    COMBINED_HEAT_POWER = 5
    OTHER_GENERATION = 6
    OTHER_STORAGE = 80
    ELECTRIC_VEHICLE = 81
    EVSE = 82
    COMBINED_PV_STORAGE = 83


class PowerSourceType(enum.IntEnum):
    NONE = 0
    MAINS = 1
    BATTERY = 2
    LOCAL_GENERATION = 3
    EMERGENCY = 4
    UNKNOWN = 5


class BatteryStatus(enum.IntEnum):
    UNKNOWN = 0
    NORMAL = 1
    LOW = 2
    DEPLETED = 3
    NOT_APPLICABLE = 4


class DERCurveType(enum.IntEnum):
    opModFreqWatt = 0
    opModHFRTMayTrip = 1
    opModHFRTMustTrip = 2
    opModHVRTMayTrip = 3
    opModHVRTMomentaryCessation = 4
    opModHVRTMustTrip = 5
    opModLFRTMayTrip = 6
    opModLFRTMustTrip = 7
    opModLVRTMayTrip = 8
    opModLVRTMomentaryCessation = 9
    opModLVRTMustTrip = 10
    opModVoltVar = 11
    opModVoltWatt = 12
    opModWattPF = 13
    opModWattVar = 14


class DERUnitRefType(enum.IntEnum):
    NOT_APPLICABLE = 0
    SET_MAX_W = 1
    SET_MAX_VAR = 2
    STAT_VAR_AVAIL = 3
    SET_EFFECTIVE_V = 4
    SET_MAX_CHARGE_RATE_W = 5
    SET_MAX_DISCHARGE_RATE_W = 6
    STAT_W_AVAIL = 7


class ServiceKind(enum.IntEnum):
    ELECTRICITY = 0
    GAS = 1
    WATER = 2
    TIME = 3
    PRESSURE = 4
    HEAT = 5
    COOLING = 6


class EventStatusCode(enum.IntEnum):
    """EventStatus currentStatus."""
    SCHEDULED = 0
    ACTIVE = 1
    CANCELLED = 2
    CANCELLED_WITH_RANDOMIZATION = 3
    SUPERSEDED = 4


class ResponseStatus(enum.IntEnum):
    """Response status (2030.5 Table 27).  Open: other UInt8 values decode to ``int``."""
    EVENT_RECEIVED = 1
    EVENT_STARTED = 2
    EVENT_COMPLETED = 3
    OPT_OUT = 4
    OPT_IN = 5
    EVENT_CANCELLED = 6
    EVENT_SUPERSEDED = 7
    PARTIAL_OPT_OUT = 8
    PARTIAL_OPT_IN = 9
    COMPLETED_NO_PARTICIPATION = 10


class NotificationStatus(enum.IntEnum):
    DEFAULT = 0
    CANCELLED = 1
    CANCELLED_MOVED = 2
    CANCELLED_DEFINITION_CHANGED = 3
    CANCELLED_DELETED = 4


class SubscriptionEncoding(enum.IntEnum):
    """Subscription encoding.  Open: 2-255 are reserved but schema-valid."""
    XML = 0
    EXI = 1


class SubscribableType(enum.IntEnum):
    NONE = 0
    NON_CONDITIONAL = 1
    CONDITIONAL = 2
    BOTH = 3


class TimeQuality(enum.IntEnum):
    """Time quality.  Open: other values are reserved but schema-valid."""
    AUTHORITATIVE = 3
    LEVEL_3 = 4
    MANUAL_OR_LEVEL_4 = 5
    LEVEL_5 = 6
    UNCOORDINATED = 7


class RoleFlags(enum.IntFlag):
    """UsagePoint roleFlags.  V2G-4.7.2-24/25: a PEV MirrorUsagePoint sets exactly IS_PEV."""
    IS_MIRROR = 1
    IS_PREMISES_AGGREGATION_POINT = 2
    IS_PEV = 4
    IS_DER = 8
    IS_REVENUE_QUALITY = 16
    IS_DC = 32
    IS_SUBMETER = 64


class ResponseRequired(enum.IntFlag):
    """responseRequired attribute bits.  V2G-4.6.3-4: DERControls set MESSAGE_RECEIVED and
    SPECIFIC_RESPONSE."""
    MESSAGE_RECEIVED = 1
    SPECIFIC_RESPONSE = 2
    RESPONSE_REQUIRED = 4


class DERControlType(enum.IntFlag):
    """modesSupported / modesEnabled bits."""
    CHARGE = 1 << 0
    DISCHARGE = 1 << 1
    opModConnect = 1 << 2
    opModEnergize = 1 << 3
    opModFixedPFAbsorbW = 1 << 4
    opModFixedPFInjectW = 1 << 5
    opModFixedVar = 1 << 6
    opModFixedW = 1 << 7
    opModFreqDroop = 1 << 8
    opModFreqWatt = 1 << 9
    opModHFRTMayTrip = 1 << 10
    opModHFRTMustTrip = 1 << 11
    opModHVRTMayTrip = 1 << 12
    opModHVRTMomentaryCessation = 1 << 13
    opModHVRTMustTrip = 1 << 14
    opModLFRTMayTrip = 1 << 15
    opModLFRTMustTrip = 1 << 16
    opModLVRTMayTrip = 1 << 17
    opModLVRTMomentaryCessation = 1 << 18
    opModLVRTMustTrip = 1 << 19
    opModMaxLimW = 1 << 20
    opModTargetVar = 1 << 21
    opModTargetW = 1 << 22
    opModVoltVar = 1 << 23
    opModVoltWatt = 1 << 24
    opModWattPF = 1 << 25
    opModWattVar = 1 << 26


class DeviceCategory(enum.IntFlag):
    """deviceCategory bits used by this project (others are kept as plain bits)."""
    SMART_INVERTER = 1 << 16
    EVSE = 1 << 17


class DERAlarm(enum.IntFlag):
    """DERStatus alarmStatus bits."""
    OVER_CURRENT = 1 << 0
    OVER_VOLTAGE = 1 << 1
    UNDER_VOLTAGE = 1 << 2
    OVER_FREQUENCY = 1 << 3
    UNDER_FREQUENCY = 1 << 4
    VOLTAGE_IMBALANCE = 1 << 5
    CURRENT_IMBALANCE = 1 << 6
    EMERGENCY_LOCAL = 1 << 7
    EMERGENCY_REMOTE = 1 << 8
    LOW_POWER_INPUT = 1 << 9
    PHASE_ROTATION = 1 << 10


class UomType(enum.IntEnum):
    """ReadingType uom (recommended values; open: other IEC 61968-9 values are allowed)."""
    NOT_APPLICABLE = 0
    A = 5
    KELVIN = 6
    DEG_C = 23
    V = 29
    J = 31
    HZ = 33
    W = 38
    M3 = 42
    VA = 61
    VAR = 63
    COS_THETA = 65
    V2 = 67
    A2 = 69
    VAH = 71
    WH = 72
    VARH = 73
    AH = 106


class PhaseCode(enum.IntEnum):
    NOT_APPLICABLE = 0
    C = 32
    CN = 33
    CA = 40
    B = 64
    BN = 65
    BC = 66
    A = 128
    AN = 129
    AB = 132
    ABC = 224


class FlowDirection(enum.IntEnum):
    NOT_APPLICABLE = 0
    FORWARD = 1
    REVERSE = 19


class AccumulationBehaviour(enum.IntEnum):
    NOT_APPLICABLE = 0
    CUMULATIVE = 3
    DELTA_DATA = 4
    INDICATING = 6
    SUMMATION = 9
    INSTANTANEOUS = 12


class KindType(enum.IntEnum):
    NOT_APPLICABLE = 0
    CURRENCY = 3
    DEMAND = 8
    ENERGY = 12
    POWER = 37


class CommodityType(enum.IntEnum):
    NOT_APPLICABLE = 0
    ELECTRICITY_SECONDARY = 1
    ELECTRICITY_PRIMARY = 2
    AIR = 4
    NATURAL_GAS = 7
    PROPANE = 8
    POTABLE_WATER = 9
    STEAM = 10
    WASTE_WATER = 11
    HEATING_FLUID = 12
    COOLING_FLUID = 13


class DataQualifier(enum.IntEnum):
    NOT_APPLICABLE = 0
    AVERAGE = 2
    MAXIMUM = 8
    MINIMUM = 9
    NORMAL = 12
    STD_DEV_POPULATION = 29
    STD_DEV_SAMPLE = 30


# -- Annotated aliases used to declare fields -------------------------------------------------

UInt8T = Annotated[int, UINT8]
UInt16T = Annotated[int, UINT16]
UInt32T = Annotated[int, UINT32]
UInt48T = Annotated[int, UINT48]
Int8T = Annotated[int, INT8]
Int16T = Annotated[int, INT16]
Int32T = Annotated[int, INT32]
Int48T = Annotated[int, INT48]
TimeT = Annotated[int, TIME]
TimeOffsetT = Annotated[int, TIME_OFFSET]
Pow10T = Annotated[int, POW10]
PercentT = Annotated[int, PERCENT]
SignedPercentT = Annotated[int, SIGNED_PERCENT]
SFDIT = Annotated[int, SFDI]
PENT = Annotated[int, PEN]
VersionT = Annotated[int, VERSION]
LFDIT = Annotated[bytes, LFDI]
MRIDT = Annotated[bytes, MRID]
Hex8T = Annotated[int, HEX8]
Hex16T = Annotated[int, HEX16]
Hex32T = Annotated[int, HEX32]
Hex64T = Annotated[int, HEX64]
String6T = Annotated[str, STRING6]
String16T = Annotated[str, STRING16]
String32T = Annotated[str, STRING32]
String192T = Annotated[str, STRING192]
UriT = Annotated[str, URI]
BoolT = Annotated[bool, BOOLEAN]


def closed(enum_cls: type[E], lo: int = 0, hi: int = 255) -> EnumCodec:
    """Codec for a closed enumeration over an unsigned base type (UInt8 by default)."""
    return EnumCodec(enum_cls, lo, hi)


def open_enum(enum_cls: type[E], lo: int = 0, hi: int = 255) -> OpenEnumCodec:
    """Codec for an open enumeration (known values named, others kept as ``int``)."""
    return OpenEnumCodec(enum_cls, lo, hi)


def flags(name: str, nbytes: int, flag: type[enum.IntFlag]) -> FlagCodec:
    """Codec for a hexBinary bitmap decoded to an :class:`enum.IntFlag`."""
    return FlagCodec(name, nbytes, flag)


# -- bitmap and enumeration codecs and aliases used by the resources --------------------------

RESPONSE_REQUIRED = flags("HexBinary8", 1, ResponseRequired)
ROLE_FLAGS = flags("RoleFlagsType", 2, RoleFlags)
DER_CONTROL_TYPE = flags("DERControlType", 4, DERControlType)
DEVICE_CATEGORY = flags("DeviceCategoryType", 4, DeviceCategory)
DER_ALARMS = flags("HexBinary32", 4, DERAlarm)
CONNECT_STATUS = flags("HexBinary8", 1, ConnectStatus)

ResponseRequiredT = Annotated[ResponseRequired, RESPONSE_REQUIRED]
RoleFlagsT = Annotated[RoleFlags, ROLE_FLAGS]
DERControlTypeT = Annotated[DERControlType, DER_CONTROL_TYPE]
DeviceCategoryT = Annotated[DeviceCategory, DEVICE_CATEGORY]
DERAlarmT = Annotated[DERAlarm, DER_ALARMS]
ConnectStatusT = Annotated[ConnectStatus, CONNECT_STATUS]

InverterStatusT = Annotated[InverterStatus, closed(InverterStatus)]
OperationalModeStatusT = Annotated[OperationalModeStatus, closed(OperationalModeStatus)]
StorageModeStatusT = Annotated[StorageModeStatus, closed(StorageModeStatus)]
LocalControlModeStatusT = Annotated[LocalControlModeStatus, closed(LocalControlModeStatus)]
DERTypeT = Annotated[DERType, closed(DERType)]
PowerSourceTypeT = Annotated[PowerSourceType, closed(PowerSourceType)]
BatteryStatusT = Annotated[BatteryStatus, closed(BatteryStatus)]
DERCurveTypeT = Annotated[DERCurveType, closed(DERCurveType)]
DERUnitRefTypeT = Annotated[DERUnitRefType, closed(DERUnitRefType)]
ServiceKindT = Annotated[ServiceKind, closed(ServiceKind)]
EventStatusCodeT = Annotated[EventStatusCode, closed(EventStatusCode)]
NotificationStatusT = Annotated[NotificationStatus, closed(NotificationStatus)]
SubscribableTypeT = Annotated[SubscribableType, closed(SubscribableType)]
# Open enumerations: known values are members, other values of the base type stay int.
ResponseStatusT = Annotated[int, open_enum(ResponseStatus)]
SubscriptionEncodingT = Annotated[int, open_enum(SubscriptionEncoding)]
TimeQualityT = Annotated[int, open_enum(TimeQuality)]
UomTypeT = Annotated[int, open_enum(UomType)]
PhaseCodeT = Annotated[int, open_enum(PhaseCode)]
FlowDirectionT = Annotated[int, open_enum(FlowDirection)]
AccumulationBehaviourT = Annotated[int, open_enum(AccumulationBehaviour)]
KindTypeT = Annotated[int, open_enum(KindType)]
CommodityTypeT = Annotated[int, open_enum(CommodityType)]
DataQualifierT = Annotated[int, open_enum(DataQualifier)]
SUBSCRIBABLE = closed(SubscribableType)
