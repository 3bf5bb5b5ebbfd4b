"""HomePlug Green PHY management frames used by SLAC (ISO 15118-3), encoded and decoded.

Pure functions and immutable values, no I/O. Layouts follow ``docs/slac.md`` (from the
project's SLAC notes): an Ethernet header (destination, source, ethertype 0x88E1 in network
byte order), then MMV = 0x01, MMTYPE as a **little-endian** 16-bit number, FMNI and FMSN, then
the message's payload; the whole frame is padded with zeros to the 60-byte Ethernet minimum.

Vendor messages (MMTYPE 0xA000-0xBFFF) carry MMV = 0x00, no FMNI/FMSN, and start their
payload with an OUI (00:B0:52 for Qualcomm Atheros); they are kept opaque here.

:func:`decode` is strict: a frame of the wrong ethertype, MMV, length, MMTYPE or with a field
that contradicts the standard raises :class:`FrameError` whose message says what is wrong.
Receivers log the error and ignore the frame.

Keys: :func:`nid_from_nmk` and :func:`nmk_from_password`.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

ETHERTYPE_HOMEPLUG = 0x88E1
MMV_HOMEPLUG_GP = 0x01
MMV_VENDOR = 0x00
HEADER_SIZE = 19  # 14 Ethernet + MMV 1 + MMTYPE 2 + FMNI 1 + FMSN 1
VENDOR_HEADER_SIZE = 17  # 14 Ethernet + MMV 1 + MMTYPE 2 (no fragmentation bytes)
MIN_FRAME = 60  # the Ethernet minimum without FCS

BROADCAST = b"\xff" * 6
LOCAL_MODEM = bytes.fromhex("00b052000001")
"""Destination of management messages for the host's own modem (CM_SET_KEY, vendor)."""
OUI_QCA = bytes.fromhex("00b052")

NUM_GROUPS = 58
"""Attenuation groups (AAG entries) in CM_ATTEN_PROFILE.IND and CM_ATTEN_CHAR.IND."""

ZERO_ID = bytes(17)
"""SenderID / SOURCE_ID / RESP_ID / PEV_ID / EVSE_ID: 17 bytes, zeros when unused."""

# MMTYPE low two bits
REQ, CNF, IND, RSP = 0, 1, 2, 3


class FrameError(ValueError):
    """A frame that cannot be decoded or encoded; the message says why."""


def mac_to_str(mac: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff`` from 6 bytes."""
    return ":".join(f"{b:02x}" for b in mac)


def mac_from_str(text: str) -> bytes:
    """6 bytes from ``aa:bb:cc:dd:ee:ff`` (or ``-`` separated)."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        out = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r}") from None
    return out


# --------------------------------------------------------------------------------------------
# Keys


def nid_from_nmk(nmk: bytes, security_level: int = 0) -> bytes:
    """The 7-byte NID of the network whose NMK is ``nmk``.

    SHA-256 applied five times in a row to the NMK; the first 6 bytes of the digest, then a
    seventh byte = (security level << 4) | (digest[6] >> 4).
    """
    if len(nmk) != 16:
        raise ValueError(f"NMK must be 16 bytes, not {len(nmk)}")
    if not 0 <= security_level <= 3:
        raise ValueError(f"security level must be 0..3, not {security_level}")
    digest = nmk
    for _ in range(5):
        digest = hashlib.sha256(digest).digest()
    return digest[:6] + bytes([(security_level << 4) | (digest[6] >> 4)])


NMK_SALT = bytes.fromhex("08856daf7cf58186")


def nmk_from_password(password: str | bytes) -> bytes:
    """The NMK of a fixed network password: SHA-256(password || salt) iterated 1000 times
    (the first hash over password and salt, 999 more over the digest), first 16 bytes."""
    data = password.encode("utf-8") if isinstance(password, str) else password
    digest = hashlib.sha256(data + NMK_SALT).digest()
    for _ in range(999):
        digest = hashlib.sha256(digest).digest()
    return digest[:16]


# --------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True)
class Message:
    """Base of every message payload. Subclasses declare ``MMTYPE``, ``NAME``, ``LAYOUT``
    (a struct format, little-endian for multi-byte numbers) and ``FIELDS`` (the dataclass
    field names in wire order, each one struct item)."""

    MMTYPE: ClassVar[int]
    NAME: ClassVar[str]
    LAYOUT: ClassVar[str]
    FIELDS: ClassVar[tuple[str, ...]]

    @classmethod
    def size(cls) -> int:
        return struct.calcsize(cls.LAYOUT)

    def encode_payload(self) -> bytes:
        values = [self._wire(name) for name in self.FIELDS]
        try:
            return struct.pack(self.LAYOUT, *values)
        except struct.error as e:
            raise FrameError(f"{self.NAME}: cannot encode: {e}") from None

    def _wire(self, name: str) -> Any:
        return getattr(self, name)

    @classmethod
    def decode_payload(cls, payload: bytes) -> "Message":
        size = cls.size()
        if len(payload) < size:
            raise FrameError(f"{cls.NAME}: payload is {len(payload)} bytes, needs {size}")
        values = struct.unpack(cls.LAYOUT, payload[:size])
        return cls._from_wire(dict(zip(cls.FIELDS, values)))

    @classmethod
    def _from_wire(cls, values: dict[str, Any]) -> "Message":
        return cls(**values)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            want = _BYTE_FIELDS.get(f.name)
            if want is not None and (not isinstance(value, bytes) or len(value) != want):
                raise FrameError(f"{self.NAME}: {f.name} must be {want} bytes, got {value!r}")


_BYTE_FIELDS = {
    "run_id": 8, "forwarding_sta": 6, "m_sound_target": 6, "source_address": 6,
    "pev_mac": 6, "evse_mac": 6, "sender_id": 17, "source_id": 17, "resp_id": 17,
    "pev_id": 17, "evse_id": 17, "nid": 7, "nmk": 16, "my_nonce": 4, "your_nonce": 4,
    "rnd": 16, "rsvd8": 8,
}


@dataclass(frozen=True)
class SetKeyReq(Message):
    """CM_SET_KEY.REQ (host to its own modem): join the network of this NMK/NID."""

    MMTYPE: ClassVar[int] = 0x6008
    NAME: ClassVar[str] = "CM_SET_KEY.REQ"
    LAYOUT: ClassVar[str] = "<B4s4sBHBB7sB16s"
    FIELDS: ClassVar[tuple[str, ...]] = ("key_type", "my_nonce", "your_nonce", "pid", "prn",
                                         "pmn", "cco_cap", "nid", "new_eks", "nmk")
    nid: bytes
    nmk: bytes
    my_nonce: bytes = bytes(4)
    your_nonce: bytes = bytes(4)
    key_type: int = 1  # NMK
    pid: int = 4  # protocol: HLE
    prn: int = 0
    pmn: int = 0
    cco_cap: int = 0
    new_eks: int = 1


@dataclass(frozen=True)
class SetKeyCnf(Message):
    """CM_SET_KEY.CNF (modem to host). ``result`` 0 means success in the standard, but some
    firmware reports it inverted."""

    MMTYPE: ClassVar[int] = 0x6009
    NAME: ClassVar[str] = "CM_SET_KEY.CNF"
    LAYOUT: ClassVar[str] = "<B4s4sBHBB"
    FIELDS: ClassVar[tuple[str, ...]] = ("result", "my_nonce", "your_nonce", "pid", "prn",
                                         "pmn", "cco_cap")
    result: int = 0
    my_nonce: bytes = bytes(4)
    your_nonce: bytes = bytes(4)
    pid: int = 4
    prn: int = 0
    pmn: int = 0
    cco_cap: int = 0


@dataclass(frozen=True)
class SlacParmReq(Message):
    """CM_SLAC_PARM.REQ (EV broadcast): a matching attempt begins."""

    MMTYPE: ClassVar[int] = 0x6064
    NAME: ClassVar[str] = "CM_SLAC_PARM.REQ"
    LAYOUT: ClassVar[str] = "<BB8s"
    FIELDS: ClassVar[tuple[str, ...]] = ("application_type", "security_type", "run_id")
    run_id: bytes
    application_type: int = 0
    security_type: int = 0


@dataclass(frozen=True)
class SlacParmCnf(Message):
    """CM_SLAC_PARM.CNF (EVSE to EV). Real vehicles reject anything but NUM_SOUNDS = 10,
    TIME_OUT = 6, RESP_TYPE = 1 and FORWARDING_STA = the EV's MAC."""

    MMTYPE: ClassVar[int] = 0x6065
    NAME: ClassVar[str] = "CM_SLAC_PARM.CNF"
    LAYOUT: ClassVar[str] = "<6sBBB6sBB8s"
    FIELDS: ClassVar[tuple[str, ...]] = ("m_sound_target", "num_sounds", "time_out",
                                         "resp_type", "forwarding_sta", "application_type",
                                         "security_type", "run_id")
    forwarding_sta: bytes
    run_id: bytes
    m_sound_target: bytes = BROADCAST
    num_sounds: int = 10
    time_out: int = 6  # units of 100 ms
    resp_type: int = 1
    application_type: int = 0
    security_type: int = 0


@dataclass(frozen=True)
class StartAttenCharInd(Message):
    """CM_START_ATTEN_CHAR.IND (EV broadcast, three times): sounding starts."""

    MMTYPE: ClassVar[int] = 0x606A
    NAME: ClassVar[str] = "CM_START_ATTEN_CHAR.IND"
    LAYOUT: ClassVar[str] = "<BBBBB6s8s"
    FIELDS: ClassVar[tuple[str, ...]] = ("application_type", "security_type", "num_sounds",
                                         "time_out", "resp_type", "forwarding_sta", "run_id")
    forwarding_sta: bytes
    run_id: bytes
    num_sounds: int = 10
    time_out: int = 6
    resp_type: int = 1
    application_type: int = 0
    security_type: int = 0


@dataclass(frozen=True)
class MnbcSoundInd(Message):
    """CM_MNBC_SOUND.IND (EV broadcast, ten times); ``cnt`` counts the sounds remaining."""

    MMTYPE: ClassVar[int] = 0x6076
    NAME: ClassVar[str] = "CM_MNBC_SOUND.IND"
    LAYOUT: ClassVar[str] = "<BB17sB8s8s16s"
    FIELDS: ClassVar[tuple[str, ...]] = ("application_type", "security_type", "sender_id",
                                         "cnt", "run_id", "rsvd8", "rnd")
    cnt: int
    run_id: bytes
    rnd: bytes = bytes(16)
    sender_id: bytes = ZERO_ID
    rsvd8: bytes = bytes(8)
    application_type: int = 0
    security_type: int = 0


def _aag_check(name: str, num_groups: int, aag: tuple[int, ...]) -> None:
    if not 0 <= num_groups <= NUM_GROUPS:
        raise FrameError(f"{name}: NumGroups {num_groups} is above {NUM_GROUPS}")
    if len(aag) != num_groups:
        raise FrameError(f"{name}: {len(aag)} AAG values for NumGroups {num_groups}")
    if any(not 0 <= v <= 255 for v in aag):
        raise FrameError(f"{name}: AAG values must be 0..255 dB")


@dataclass(frozen=True)
class AttenProfileInd(Message):
    """CM_ATTEN_PROFILE.IND (the EVSE's modem to its host): the attenuation of one sound.

    The frame always carries 58 AAG bytes; ``aag`` holds the first ``num_groups``."""

    MMTYPE: ClassVar[int] = 0x6086
    NAME: ClassVar[str] = "CM_ATTEN_PROFILE.IND"
    LAYOUT: ClassVar[str] = "<6sBB58s"
    FIELDS: ClassVar[tuple[str, ...]] = ("pev_mac", "num_groups", "rsvd", "aag")
    pev_mac: bytes
    aag: tuple[int, ...]
    num_groups: int = NUM_GROUPS
    rsvd: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _aag_check(self.NAME, self.num_groups, self.aag)

    def _wire(self, name: str) -> Any:
        if name == "aag":
            return bytes(self.aag).ljust(NUM_GROUPS, b"\0")
        return getattr(self, name)

    @classmethod
    def _from_wire(cls, values: dict[str, Any]) -> "Message":
        n = values["num_groups"]
        if n > NUM_GROUPS:
            raise FrameError(f"{cls.NAME}: NumGroups {n} is above {NUM_GROUPS}")
        values["aag"] = tuple(values["aag"][:n])
        return cls(**values)


@dataclass(frozen=True)
class AttenCharInd(Message):
    """CM_ATTEN_CHAR.IND (EVSE to EV): the averaged attenuation of the EV's sounds."""

    MMTYPE: ClassVar[int] = 0x606E
    NAME: ClassVar[str] = "CM_ATTEN_CHAR.IND"
    LAYOUT: ClassVar[str] = "<BB6s8s17s17sBB58s"
    FIELDS: ClassVar[tuple[str, ...]] = ("application_type", "security_type",
                                         "source_address", "run_id", "source_id", "resp_id",
                                         "num_sounds", "num_groups", "aag")
    source_address: bytes
    run_id: bytes
    num_sounds: int
    aag: tuple[int, ...]
    num_groups: int = NUM_GROUPS
    source_id: bytes = ZERO_ID
    resp_id: bytes = ZERO_ID
    application_type: int = 0
    security_type: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _aag_check(self.NAME, self.num_groups, self.aag)

    _wire = AttenProfileInd._wire
    _from_wire = AttenProfileInd.__dict__["_from_wire"]

    def mean_attenuation(self) -> float:
        return sum(self.aag) / len(self.aag) if self.aag else float("inf")


@dataclass(frozen=True)
class AttenCharRsp(Message):
    """CM_ATTEN_CHAR.RSP (EV to EVSE): the IND's fields up to RESP_ID, then Result = 0."""

    MMTYPE: ClassVar[int] = 0x606F
    NAME: ClassVar[str] = "CM_ATTEN_CHAR.RSP"
    LAYOUT: ClassVar[str] = "<BB6s8s17s17sB"
    FIELDS: ClassVar[tuple[str, ...]] = ("application_type", "security_type",
                                         "source_address", "run_id", "source_id", "resp_id",
                                         "result")
    source_address: bytes
    run_id: bytes
    result: int = 0
    source_id: bytes = ZERO_ID
    resp_id: bytes = ZERO_ID
    application_type: int = 0
    security_type: int = 0


@dataclass(frozen=True)
class ValidateReq(Message):
    """CM_VALIDATE.REQ (optional validation by pilot toggling; decoded, not used)."""

    MMTYPE: ClassVar[int] = 0x6078
    NAME: ClassVar[str] = "CM_VALIDATE.REQ"
    LAYOUT: ClassVar[str] = "<BBB"
    FIELDS: ClassVar[tuple[str, ...]] = ("signal_type", "timer", "result")
    signal_type: int = 0
    timer: int = 0
    result: int = 1


@dataclass(frozen=True)
class ValidateCnf(Message):
    """CM_VALIDATE.CNF (optional; decoded, not used)."""

    MMTYPE: ClassVar[int] = 0x6079
    NAME: ClassVar[str] = "CM_VALIDATE.CNF"
    LAYOUT: ClassVar[str] = "<BBB"
    FIELDS: ClassVar[tuple[str, ...]] = ("signal_type", "toggle_num", "result")
    signal_type: int = 0
    toggle_num: int = 0
    result: int = 1


MVF_LENGTH_REQ = 0x003E
MVF_LENGTH_CNF = 0x0056


def _mvf_check(message: Any) -> None:
    if message.mvf_length != message.MVF:
        hint = ""
        if message.mvf_length == struct.unpack(">H", struct.pack("<H", message.MVF))[0]:
            hint = " (the sender wrote it big-endian; it is little-endian)"
        raise FrameError(f"{message.NAME}: MVFLength 0x{message.mvf_length:04X}, expected "
                         f"0x{message.MVF:04X}{hint}")


@dataclass(frozen=True)
class SlacMatchReq(Message):
    """CM_SLAC_MATCH.REQ (EV to the chosen EVSE); MVFLength 0x003E little-endian."""

    MMTYPE: ClassVar[int] = 0x607C
    NAME: ClassVar[str] = "CM_SLAC_MATCH.REQ"
    LAYOUT: ClassVar[str] = "<BBH17s6s17s6s8s8s"
    FIELDS: ClassVar[tuple[str, ...]] = ("application_type", "security_type", "mvf_length",
                                         "pev_id", "pev_mac", "evse_id", "evse_mac", "run_id",
                                         "rsvd8")
    MVF: ClassVar[int] = MVF_LENGTH_REQ
    pev_mac: bytes
    evse_mac: bytes
    run_id: bytes
    pev_id: bytes = ZERO_ID
    evse_id: bytes = ZERO_ID
    rsvd8: bytes = bytes(8)
    application_type: int = 0
    security_type: int = 0
    mvf_length: int = MVF_LENGTH_REQ

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _mvf_check(self)


@dataclass(frozen=True)
class SlacMatchCnf(Message):
    """CM_SLAC_MATCH.CNF (EVSE to EV): the REQ's fields with MVFLength 0x0056, then the NID,
    a reserved byte and the NMK of the EVSE's network."""

    MMTYPE: ClassVar[int] = 0x607D
    NAME: ClassVar[str] = "CM_SLAC_MATCH.CNF"
    LAYOUT: ClassVar[str] = "<BBH17s6s17s6s8s8s7sB16s"
    FIELDS: ClassVar[tuple[str, ...]] = ("application_type", "security_type", "mvf_length",
                                         "pev_id", "pev_mac", "evse_id", "evse_mac", "run_id",
                                         "rsvd8", "nid", "rsvd", "nmk")
    MVF: ClassVar[int] = MVF_LENGTH_CNF
    pev_mac: bytes
    evse_mac: bytes
    run_id: bytes
    nid: bytes
    nmk: bytes
    pev_id: bytes = ZERO_ID
    evse_id: bytes = ZERO_ID
    rsvd8: bytes = bytes(8)
    rsvd: int = 0
    application_type: int = 0
    security_type: int = 0
    mvf_length: int = MVF_LENGTH_CNF

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _mvf_check(self)


@dataclass(frozen=True)
class VendorMessage:
    """A vendor-specific management message (MMV 0x00), kept opaque."""

    mmtype: int
    oui: bytes = OUI_QCA
    payload: bytes = b""
    NAME: ClassVar[str] = "vendor"

    def __post_init__(self) -> None:
        if not 0xA000 <= self.mmtype <= 0xBFFF:
            raise FrameError(f"vendor MMTYPE 0x{self.mmtype:04X} is outside 0xA000-0xBFFF")
        if len(self.oui) != 3:
            raise FrameError("vendor OUI must be 3 bytes")


MESSAGES: dict[int, type[Message]] = {
    cls.MMTYPE: cls
    for cls in (SetKeyReq, SetKeyCnf, SlacParmReq, SlacParmCnf, StartAttenCharInd,
                MnbcSoundInd, AttenProfileInd, AttenCharInd, AttenCharRsp, ValidateReq,
                ValidateCnf, SlacMatchReq, SlacMatchCnf)
}
"""Every HomePlug GP message this module knows, by MMTYPE."""


@dataclass(frozen=True)
class Frame:
    """One management frame: Ethernet addresses and a message."""

    dst: bytes
    src: bytes
    message: Message | VendorMessage
    fmni: int = 0
    fmsn: int = 0
    extra: bytes = field(default=b"", compare=False, repr=False)
    """Bytes after the payload in a received frame (normally zero padding)."""

    @property
    def name(self) -> str:
        return self.message.NAME


def encode(frame: Frame) -> bytes:
    """The bytes on the wire (without FCS), padded with zeros to 60 bytes."""
    for what, mac in (("destination", frame.dst), ("source", frame.src)):
        if not isinstance(mac, bytes) or len(mac) != 6:
            raise FrameError(f"{what} MAC must be 6 bytes, got {mac!r}")
    head = frame.dst + frame.src + struct.pack(">H", ETHERTYPE_HOMEPLUG)
    msg = frame.message
    if isinstance(msg, VendorMessage):
        data = head + struct.pack("<BH", MMV_VENDOR, msg.mmtype) + msg.oui + msg.payload
    else:
        data = (head + struct.pack("<BHBB", MMV_HOMEPLUG_GP, msg.MMTYPE, frame.fmni,
                                   frame.fmsn) + msg.encode_payload())
    return data.ljust(MIN_FRAME, b"\0")


def decode(data: bytes) -> Frame:
    """The frame in ``data``; raises :class:`FrameError` saying what is wrong."""
    if len(data) < VENDOR_HEADER_SIZE:
        raise FrameError(f"frame of {len(data)} bytes is shorter than a HomePlug header")
    dst, src = data[0:6], data[6:12]
    (ethertype,) = struct.unpack(">H", data[12:14])
    if ethertype != ETHERTYPE_HOMEPLUG:
        raise FrameError(f"ethertype 0x{ethertype:04X} is not HomePlug AV/GP (0x88E1)")
    mmv, mmtype = struct.unpack("<BH", data[14:17])
    if mmv == MMV_VENDOR and 0xA000 <= mmtype <= 0xBFFF:
        if len(data) < VENDOR_HEADER_SIZE + 3:
            raise FrameError(f"vendor MMTYPE 0x{mmtype:04X}: no OUI")
        return Frame(dst, src, VendorMessage(mmtype, data[17:20], data[20:]))
    if mmv != MMV_HOMEPLUG_GP:
        raise FrameError(f"MMV 0x{mmv:02X} for MMTYPE 0x{mmtype:04X}: expected 0x01 "
                         "(HomePlug GP)")
    if len(data) < HEADER_SIZE:
        raise FrameError(f"frame of {len(data)} bytes is shorter than a HomePlug GP header")
    cls = MESSAGES.get(mmtype)
    if cls is None:
        swapped = ((mmtype & 0xFF) << 8) | (mmtype >> 8)
        hint = (f" (0x{swapped:04X} is {MESSAGES[swapped].NAME}: was MMTYPE written "
                "big-endian?)" if swapped in MESSAGES else "")
        raise FrameError(f"unknown MMTYPE 0x{mmtype:04X}{hint}")
    fmni, fmsn = data[17], data[18]
    if fmni != 0 or fmsn != 0:
        raise FrameError(f"{cls.NAME}: fragmented (FMNI {fmni}, FMSN {fmsn}); SLAC messages "
                         "are never fragmented")
    payload = data[HEADER_SIZE:]
    message = cls.decode_payload(payload)
    return Frame(dst, src, message, fmni, fmsn, extra=payload[cls.size():])


def describe(frame: Frame) -> str:
    """One line for logs: ``NAME src > dst``."""
    return f"{frame.name} {mac_to_str(frame.src)} > {mac_to_str(frame.dst)}"
