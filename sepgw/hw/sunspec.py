"""SunSpec Modbus: finding the map, walking the model headers, decoding points with their
scale factors, encoding setpoints. Pure except :func:`discover`, which reads through a
function it is given.

Offsets (``*_AT`` tables) count from the model's ID register, as in the SunSpec information
model (the ``ID`` point is offset 0, ``L`` offset 1). A point holding its type's "not
implemented" value decodes to None; a required one raises :class:`PointError` naming the
point, its register and the raw value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterable

from twisted.internet.defer import Deferred, inlineCallbacks

SUNS = (0x5375, 0x6E53)
"""The 'SunS' marker at the start of a SunSpec map."""

DEFAULT_BASES = (40000, 0, 50000)
"""Where SunSpec maps start, in the order devices most often use them."""

END_ID = 0xFFFF
"""The model ID of the end marker."""

NOT_IMPLEMENTED = {
    "int16": 0x8000, "uint16": 0xFFFF, "enum16": 0xFFFF, "bitfield16": 0xFFFF,
    "sunssf": 0x8000, "acc32": 0, "uint32": 0xFFFFFFFF, "int32": 0x80000000,
    "bitfield32": 0xFFFFFFFF,
}
"""The raw value meaning "not implemented" of each SunSpec point type."""

WIDTH = {"acc32": 2, "uint32": 2, "int32": 2, "bitfield32": 2}

METER_MODELS = (201, 202, 203, 204)
"""Integer + scale-factor AC meters: single phase, split phase, wye, delta."""

METER_AT = {"PhV": 7, "PPV": 11, "V_SF": 15, "Hz": 16, "Hz_SF": 17, "W": 18, "W_SF": 22,
            "VAR": 28, "VAR_SF": 32, "TotWhExp": 38, "TotWhImp": 46, "TotWh_SF": 54}
METER_LENGTH = 105

DER_MEASURE_AT = {"InvSt": 4, "ConnSt": 5, "Alrm": 6, "W": 10, "Var": 12, "LLV": 15,
                  "LNV": 16, "Hz": 17, "V_SF": 114, "Hz_SF": 115, "W_SF": 116, "Var_SF": 119}
"""Model 701, DER AC measurement."""
DER_CAPACITY_AT = {"WMax": 26, "W_SF": 45}
"""Model 702, DER capacity."""
DER_ENTER_SERVICE_AT = {"ES": 2}
"""Model 703, enter service."""
DER_CONTROLS_AT = {"WMaxLimPctEna": 14, "WMaxLimPct": 15, "WSetEna": 22, "WSetMod": 23,
                   "WSet": 24, "VarSetEna": 35, "VarSetMod": 36, "VarSetPct": 42,
                   "WMaxLimPct_SF": 54, "WSet_SF": 55, "VarSetPct_SF": 58}
"""Model 704, DER AC controls."""
DER_STORAGE_AT = {"SoC": 4, "Pct_SF": 8}
"""Model 713, DER storage capacity."""
INVERTER_AT = {"PPVphAB": 7, "PhVphA": 10, "V_SF": 13, "W": 14, "W_SF": 15, "Hz": 16,
               "Hz_SF": 17, "VAr": 20, "VAr_SF": 21}
"""Models 101-103, inverter (single, split, three phase)."""
NAMEPLATE_AT = {"WRtg": 3, "WRtg_SF": 4}
"""Model 120, nameplate."""
IMMEDIATE_AT = {"Conn": 4, "WMaxLimPct": 5, "WMaxLim_Ena": 9, "WMaxLimPct_SF": 23}
"""Model 123, immediate controls."""
STORAGE_AT = {"ChaState": 8, "ChaState_SF": 22}
"""Model 124, storage."""


class SunSpecError(Exception):
    """The device's SunSpec map is missing, broken or lacks what is needed."""


class PointError(SunSpecError):
    """A point holds a value that cannot be used."""


@dataclass(frozen=True)
class Model:
    """A model in the map: its ID, the address of its ID register and its length L."""

    id: int
    address: int
    length: int

    @property
    def end(self) -> int:
        """The address after the model."""
        return self.address + 2 + self.length


@dataclass(frozen=True)
class SunSpecMap:
    """The models a device offers, in map order, found at ``base``."""

    base: int
    models: tuple[Model, ...]

    def find(self, ids: Iterable[int]) -> Model | None:
        """The first model of the map whose ID is in ``ids``, in the order ``ids`` prefer."""
        for wanted in ids:
            for model in self.models:
                if model.id == wanted:
                    return model
        return None

    def ids(self) -> list[int]:
        return [m.id for m in self.models]


@inlineCallbacks
def discover(read: Callable[[int, int], Deferred[list[int]]],
             bases: Iterable[int] = DEFAULT_BASES,
             absent: Callable[[Exception], str | None] = lambda e: None,
             max_models: int = 200) -> Generator[Deferred[Any], Any, SunSpecMap]:
    """Find the 'SunS' marker at the first of ``bases`` that has it and walk the model
    headers to the end marker. ``read(address, count)`` reads holding registers. When a read
    at a base fails, ``absent(error)`` says in a few words why that means "no map here" (e.g.
    for an illegal-address exception response), or returns None: the error is the device's
    and propagates."""
    bases = tuple(bases)
    tried: list[str] = []
    for base in bases:
        try:
            regs = yield read(base, 2)
        except Exception as e:
            why = absent(e)
            if why is None:
                raise
            tried.append(f"{base} ({why})")
            continue
        if tuple(regs) == SUNS:
            break
        tried.append(f"{base} (0x{regs[0]:04x} 0x{regs[1]:04x})")
    else:
        raise SunSpecError("no SunSpec map: no 'SunS' marker at " + ", ".join(tried))
    models: list[Model] = []
    address = base + 2
    while True:
        if len(models) >= max_models or address + 2 > 0x10000:
            raise SunSpecError(f"SunSpec map at {base} has no end marker by register {address}")
        model_id, length = yield read(address, 2)
        if model_id == END_ID:
            return SunSpecMap(base, tuple(models))
        models.append(Model(model_id, address, length))
        address += 2 + length


# -- decoding ------------------------------------------------------------------------------


def raw(regs: list[int], offset: int, kind: str) -> int:
    """The raw (two's complement resolved) value of a point."""
    if WIDTH.get(kind, 1) == 2:
        value = regs[offset] << 16 | regs[offset + 1]
        return value - (1 << 32) if kind == "int32" and value & 0x80000000 else value
    value = regs[offset]
    if kind in ("int16", "sunssf") and value & 0x8000:
        return value - 0x10000
    return value


def implemented(regs: list[int], offset: int, kind: str) -> bool:
    """False when the point holds its type's "not implemented" value."""
    if WIDTH.get(kind, 1) == 2:
        bits = regs[offset] << 16 | regs[offset + 1]
    else:
        bits = regs[offset]
    return bits != NOT_IMPLEMENTED[kind]


def _hex(regs: list[int], offset: int, kind: str) -> str:
    if WIDTH.get(kind, 1) == 2:
        return f"0x{regs[offset]:04x}{regs[offset + 1]:04x}"
    return f"0x{regs[offset]:04x}"


def scale_factor(regs: list[int], address: int, layout: dict[str, int], name: str) -> int:
    """A sunssf point: an exponent of ten in -10..10."""
    offset = layout[name]
    if not implemented(regs, offset, "sunssf"):
        raise PointError(f"{name} at register {address + offset} is 0x8000 (not implemented)")
    sf = raw(regs, offset, "sunssf")
    if not -10 <= sf <= 10:
        raise PointError(f"{name} at register {address + offset} is {sf} (outside -10..10)")
    return sf


def value(regs: list[int], address: int, layout: dict[str, int], name: str, kind: str,
          sf_name: str | None, required: bool = True) -> float | None:
    """A point scaled by its scale factor; None when not implemented and not required."""
    offset = layout[name]
    if not implemented(regs, offset, kind):
        if required:
            raise PointError(f"{name} at register {address + offset} is "
                             f"{_hex(regs, offset, kind)} (not implemented)")
        return None
    number = float(raw(regs, offset, kind))
    if sf_name is None:
        return number
    sf = scale_factor(regs, address, layout, sf_name)
    return round(number * 10.0 ** sf, 12)


def check_model(regs: list[int], model: Model, minimum_length: int) -> None:
    """The registers read for ``model`` still hold it (the map did not change)."""
    if len(regs) < 2 or regs[0] != model.id:
        found = regs[0] if regs else None
        raise SunSpecError(f"model {model.id} expected at register {model.address}, "
                           f"found ID {found}: the map changed")
    if model.length < minimum_length:
        raise SunSpecError(f"model {model.id} at register {model.address} has length "
                           f"{model.length}, at least {minimum_length} needed")


@dataclass(frozen=True)
class MeterReading:
    """What a SunSpec meter model (201-204) says, in SI units and the meter's own sign
    convention (positive W is what the meter counts as import)."""

    model: int
    w: float
    var: float | None
    voltage_ln: float | None
    voltage_ll: float | None
    hz: float
    wh_exported: float | None
    wh_imported: float | None


def parse_meter(regs: list[int], model: Model) -> MeterReading:
    """Decode a meter model read whole (from its ID register)."""
    check_model(regs, model, METER_LENGTH)
    a, at = model.address, METER_AT
    ln = value(regs, a, at, "PhV", "int16", "V_SF", required=False)
    ll = value(regs, a, at, "PPV", "int16", "V_SF", required=False)
    if ln is None and ll is None:
        raise PointError(f"PhV at register {a + at['PhV']} and PPV at register "
                         f"{a + at['PPV']} are both 0x8000 (not implemented)")
    return MeterReading(
        model=model.id,
        w=_req(value(regs, a, at, "W", "int16", "W_SF")),
        var=value(regs, a, at, "VAR", "int16", "VAR_SF", required=False),
        voltage_ln=ln, voltage_ll=ll,
        hz=_req(value(regs, a, at, "Hz", "int16", "Hz_SF")),
        wh_exported=_energy(regs, a, "TotWhExp"),
        wh_imported=_energy(regs, a, "TotWhImp"),
    )


def _energy(regs: list[int], address: int, name: str) -> float | None:
    if not implemented(regs, METER_AT["TotWh_SF"], "sunssf"):
        return None
    return value(regs, address, METER_AT, name, "acc32", "TotWh_SF", required=False)


def _req(v: float | None) -> float:
    assert v is not None  # value(required=True) raised otherwise
    return v


# -- encoding ------------------------------------------------------------------------------


def encode(number: float, sf: int, kind: str, what: str) -> list[int]:
    """The registers of ``number`` as a point of ``kind`` with scale factor ``sf``; raises
    PointError when it does not fit."""
    scaled = round(number / 10.0 ** sf)
    limits = {"int16": (-0x7FFF, 0x7FFF), "uint16": (0, 0xFFFE), "enum16": (0, 0xFFFE),
              "int32": (-0x7FFFFFFF, 0x7FFFFFFF), "uint32": (0, 0xFFFFFFFE)}[kind]
    if not limits[0] <= scaled <= limits[1]:
        raise PointError(f"{what} = {number:g} does not fit a {kind} with scale factor {sf}")
    if kind in ("int32", "uint32"):
        bits = scaled & 0xFFFFFFFF
        return [bits >> 16, bits & 0xFFFF]
    return [scaled & 0xFFFF]
