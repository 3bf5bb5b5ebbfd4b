"""SLAC: HomePlug GP frames byte for byte, the EVSE and EV state machines on a fake clock,
the modem emulator, the plc transport plugin in memory, and both sides over a veth pair
between two network namespaces (root only)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from sepgw.interfaces import BuildContext, ILinkListener, ITransport, LinkPeer
from sepgw.registry import PluginRegistry, bundled_plugin_dir
from sepgw.slac import frames as f
from sepgw.slac.emulator import ModemEmulator
from sepgw.slac.ev import EVMachine
from sepgw.slac.evse import EVSEMachine
from sepgw.slac.machine import Driver, Failed, Matched
from sepgw.slac.modem import IModemManager, NoModemManager

EV = bytes.fromhex("0a1122334401")
EVSE = bytes.fromhex("0a5566778802")
EVSE2 = bytes.fromhex("0a5566778803")
EV2 = bytes.fromhex("0a1122334405")
RUN = bytes.fromhex("0102030405060708")
RUN2 = bytes.fromhex("1112131415161718")
NMK = bytes(range(0x40, 0x50))


def hexbytes(*parts: str) -> bytes:
    """Bytes from hex strings written field by field (spaces ignored)."""
    return bytes.fromhex("".join(p.replace(" ", "") for p in parts))


def padded(data: bytes) -> bytes:
    return data.ljust(60, b"\0")


# ============================================================================================
# Frames


class FrameLayoutTests(SynchronousTestCase):
    """Every message against a layout written by hand from the notes."""

    def check(self, frame: f.Frame, expected: bytes) -> None:
        self.assertEqual(f.encode(frame).hex(), expected.hex())
        self.assertEqual(f.decode(expected), frame)

    def test_slac_parm_req(self) -> None:
        """CM_SLAC_PARM.REQ: MMTYPE 0x6064 little-endian (64 60), 10-byte payload, padded."""
        expected = padded(hexbytes(
            "ff ff ff ff ff ff",  # destination: broadcast
            "0a 11 22 33 44 01",  # source: EV
            "88 e1",  # ethertype, network order
            "01",  # MMV
            "64 60",  # MMTYPE 0x6064, little-endian
            "00", "00",  # FMNI, FMSN
            "00",  # APPLICATION_TYPE
            "00",  # SECURITY_TYPE
            "01 02 03 04 05 06 07 08",  # RunID
        ))
        self.assertEqual(len(expected), 60)
        self.check(f.Frame(f.BROADCAST, EV, f.SlacParmReq(run_id=RUN)), expected)

    def test_slac_parm_cnf(self) -> None:
        """CM_SLAC_PARM.CNF is exactly NUM_SOUNDS=10, TIME_OUT=6, RESP_TYPE=1,
        FORWARDING_STA=EV MAC (25 bytes)."""
        expected = padded(hexbytes(
            "0a 11 22 33 44 01", "0a 55 66 77 88 02", "88 e1", "01",
            "65 60",  # MMTYPE 0x6065
            "00 00",
            "ff ff ff ff ff ff",  # M-SOUND_TARGET
            "0a",  # NUM_SOUNDS = 10
            "06",  # TIME_OUT = 6 (x100 ms)
            "01",  # RESP_TYPE = 1
            "0a 11 22 33 44 01",  # FORWARDING_STA = EV MAC
            "00", "00",  # APPLICATION_TYPE, SECURITY_TYPE
            "01 02 03 04 05 06 07 08",  # RunID
        ))
        self.check(f.Frame(EV, EVSE, f.SlacParmCnf(forwarding_sta=EV, run_id=RUN)), expected)

    def test_start_atten_char_ind(self) -> None:
        """CM_START_ATTEN_CHAR.IND, 19 bytes."""
        expected = padded(hexbytes(
            "ff ff ff ff ff ff", "0a 11 22 33 44 01", "88 e1", "01",
            "6a 60",  # MMTYPE 0x606A
            "00 00",
            "00", "00",  # APPLICATION_TYPE, SECURITY_TYPE
            "0a", "06", "01",  # NUM_SOUNDS, TIME_OUT, RESP_TYPE
            "0a 11 22 33 44 01",  # FORWARDING_STA
            "01 02 03 04 05 06 07 08",  # RunID
        ))
        self.check(f.Frame(f.BROADCAST, EV, f.StartAttenCharInd(forwarding_sta=EV, run_id=RUN)),
                   expected)

    def test_mnbc_sound_ind(self) -> None:
        """CM_MNBC_SOUND.IND, 52 bytes (71 in all: longer than the minimum, not padded)."""
        rnd = bytes(range(0xA0, 0xB0))
        expected = hexbytes(
            "ff ff ff ff ff ff", "0a 11 22 33 44 01", "88 e1", "01",
            "76 60",  # MMTYPE 0x6076
            "00 00",
            "00", "00",  # APPLICATION_TYPE, SECURITY_TYPE
            "00" * 17,  # SenderID
            "07",  # Cnt: sounds remaining
            "01 02 03 04 05 06 07 08",  # RunID
            "00" * 8,  # RSVD
            rnd.hex(),  # Rnd
        )
        self.assertEqual(len(expected), 19 + 52)
        self.check(f.Frame(f.BROADCAST, EV, f.MnbcSoundInd(cnt=7, run_id=RUN, rnd=rnd)),
                   expected)

    def test_atten_profile_ind(self) -> None:
        """CM_ATTEN_PROFILE.IND: PEV MAC, NumGroups = 58, RSVD, 58 AAG bytes (66)."""
        aag = tuple(range(10, 68))
        expected = hexbytes(
            "0a 55 66 77 88 02",  # to the EVSE host
            "00 b0 52 00 00 99",  # from its modem
            "88 e1", "01",
            "86 60",  # MMTYPE 0x6086
            "00 00",
            "0a 11 22 33 44 01",  # PEV MAC
            "3a",  # NumGroups = 58
            "00",  # RSVD
            bytes(aag).hex(),  # AAG[58]
        )
        self.assertEqual(len(expected), 19 + 66)
        self.check(f.Frame(EVSE, bytes.fromhex("00b052000099"),
                           f.AttenProfileInd(pev_mac=EV, aag=aag)), expected)

    def test_atten_char_ind(self) -> None:
        """CM_ATTEN_CHAR.IND, 110 bytes."""
        aag = (30,) * 58
        expected = hexbytes(
            "0a 11 22 33 44 01", "0a 55 66 77 88 02", "88 e1", "01",
            "6e 60",  # MMTYPE 0x606E
            "00 00",
            "00", "00",  # APPLICATION_TYPE, SECURITY_TYPE
            "0a 11 22 33 44 01",  # SOURCE_ADDRESS = EV MAC
            "01 02 03 04 05 06 07 08",  # RunID
            "00" * 17,  # SOURCE_ID
            "00" * 17,  # RESP_ID
            "0a",  # NUM_SOUNDS
            "3a",  # NumGroups
            "1e" * 58,  # AAG, averaged
        )
        self.assertEqual(len(expected), 19 + 110)
        self.check(f.Frame(EV, EVSE, f.AttenCharInd(source_address=EV, run_id=RUN,
                                                    num_sounds=10, aag=aag)), expected)

    def test_atten_char_rsp(self) -> None:
        """CM_ATTEN_CHAR.RSP: the IND's fields up to RESP_ID, then Result = 0 (51)."""
        expected = padded(hexbytes(
            "0a 55 66 77 88 02", "0a 11 22 33 44 01", "88 e1", "01",
            "6f 60",  # MMTYPE 0x606F
            "00 00",
            "00", "00",
            "0a 11 22 33 44 01",  # SOURCE_ADDRESS
            "01 02 03 04 05 06 07 08",  # RunID
            "00" * 17, "00" * 17,  # SOURCE_ID, RESP_ID
            "00",  # Result
        ))
        self.assertEqual(len(expected), 70)
        self.check(f.Frame(EVSE, EV, f.AttenCharRsp(source_address=EV, run_id=RUN)), expected)

    def test_slac_match_req(self) -> None:
        """CM_SLAC_MATCH.REQ: MVFLength 0x003E written little-endian (3e 00), 66 bytes."""
        expected = hexbytes(
            "0a 55 66 77 88 02", "0a 11 22 33 44 01", "88 e1", "01",
            "7c 60",  # MMTYPE 0x607C
            "00 00",
            "00", "00",  # APPLICATION_TYPE, SECURITY_TYPE
            "3e 00",  # MVFLength 0x003E, little-endian
            "00" * 17,  # PEV_ID
            "0a 11 22 33 44 01",  # PEV MAC
            "00" * 17,  # EVSE_ID
            "0a 55 66 77 88 02",  # EVSE MAC
            "01 02 03 04 05 06 07 08",  # RunID
            "00" * 8,  # RSVD
        )
        self.assertEqual(len(expected), 19 + 66)
        self.check(f.Frame(EVSE, EV, f.SlacMatchReq(pev_mac=EV, evse_mac=EVSE, run_id=RUN)),
                   expected)

    def test_slac_match_cnf(self) -> None:
        """CM_SLAC_MATCH.CNF: MVFLength 0x0056 little-endian (56 00), then NID, RSVD, NMK."""
        nid = f.nid_from_nmk(NMK)
        expected = hexbytes(
            "0a 11 22 33 44 01", "0a 55 66 77 88 02", "88 e1", "01",
            "7d 60",  # MMTYPE 0x607D
            "00 00",
            "00", "00",
            "56 00",  # MVFLength 0x0056, little-endian
            "00" * 17, "0a 11 22 33 44 01",  # PEV_ID, PEV MAC
            "00" * 17, "0a 55 66 77 88 02",  # EVSE_ID, EVSE MAC
            "01 02 03 04 05 06 07 08",  # RunID
            "00" * 8,  # RSVD
            nid.hex(),  # NID, 7 bytes
            "00",  # RSVD
            NMK.hex(),  # NMK, 16 bytes
        )
        self.assertEqual(len(expected), 19 + 90)
        self.check(f.Frame(EV, EVSE, f.SlacMatchCnf(pev_mac=EV, evse_mac=EVSE, run_id=RUN,
                                                    nid=nid, nmk=NMK)), expected)

    def test_set_key_req(self) -> None:
        """CM_SET_KEY.REQ to 00:B0:52:00:00:01: KeyType 1, nonces, PID 4, PRN, PMN, CCoCap,
        NID, NewEKS 1, NMK (38 bytes)."""
        nid = bytes.fromhex("b0f2e695666b03")
        expected = padded(hexbytes(
            "00 b0 52 00 00 01",  # the local modem
            "0a 11 22 33 44 01", "88 e1", "01",
            "08 60",  # MMTYPE 0x6008
            "00 00",
            "01",  # KeyType = NMK
            "de ad be ef",  # MyNonce
            "00 00 00 00",  # YourNonce
            "04",  # PID = HLE
            "00 00",  # PRN
            "00",  # PMN
            "00",  # CCoCap
            "b0 f2 e6 95 66 6b 03",  # NID
            "01",  # NewEKS
            NMK.hex(),  # NMK
        ))
        self.assertEqual(len(expected), 60)
        self.check(f.Frame(f.LOCAL_MODEM, EV, f.SetKeyReq(nid=nid, nmk=NMK,
                                                          my_nonce=bytes.fromhex("deadbeef"))),
                   expected)

    def test_set_key_cnf(self) -> None:
        """CM_SET_KEY.CNF: Result, nonces, PID, PRN (little-endian), PMN, CCoCap (14)."""
        expected = padded(hexbytes(
            "0a 11 22 33 44 01", "00 b0 52 00 00 99", "88 e1", "01",
            "09 60",  # MMTYPE 0x6009
            "00 00",
            "00",  # Result
            "00 00 00 00", "de ad be ef",  # MyNonce, YourNonce
            "04",  # PID
            "34 12",  # PRN 0x1234, little-endian
            "00", "00",  # PMN, CCoCap
        ))
        self.check(f.Frame(EV, bytes.fromhex("00b052000099"), f.SetKeyCnf(
            your_nonce=bytes.fromhex("deadbeef"), prn=0x1234)), expected)

    def test_validate(self) -> None:
        """CM_VALIDATE.REQ / .CNF (optional), 3 bytes each."""
        self.check(f.Frame(EVSE, EV, f.ValidateReq(signal_type=0, timer=0, result=1)),
                   padded(hexbytes("0a5566778802", "0a1122334401", "88e1", "01", "78 60",
                                   "0000", "00 00 01")))
        self.check(f.Frame(EV, EVSE, f.ValidateCnf(signal_type=0, toggle_num=3, result=2)),
                   padded(hexbytes("0a1122334401", "0a5566778802", "88e1", "01", "79 60",
                                   "0000", "00 03 02")))

    def test_vendor_message(self) -> None:
        """Vendor messages: MMV 0x00, no FMNI/FMSN, OUI first; kept opaque."""
        expected = padded(hexbytes("00b052000001", "0a1122334401", "88e1",
                                   "00",  # MMV 0x00
                                   "1c a0",  # MMTYPE 0xA01C, little-endian
                                   "00 b0 52",  # OUI
                                   "01"))
        frame = f.decode(expected)
        self.assertEqual((frame.message.mmtype, frame.message.oui),  # type: ignore[union-attr]
                         (0xA01C, f.OUI_QCA))
        self.assertEqual(f.encode(f.Frame(f.LOCAL_MODEM, EV, f.VendorMessage(
            0xA01C, payload=b"\x01"))), expected)


class KeyTests(SynchronousTestCase):
    def test_default_password(self) -> None:
        """The well-known HomePlug AV default: password "HomePlugAV" gives NMK
        50D3E4933F855B7040784DF815AA8DB7 and NID B0F2E695666B03 (security level 0)."""
        nmk = f.nmk_from_password("HomePlugAV")
        self.assertEqual(nmk.hex().upper(), "50D3E4933F855B7040784DF815AA8DB7")
        self.assertEqual(f.nid_from_nmk(nmk).hex().upper(), "B0F2E695666B03")

    def test_nid_byte_seven(self) -> None:
        """Byte 7 of the NID is the security level in the high nibble and the high nibble of
        the seventh digest byte in the low nibble."""
        import hashlib
        digest = NMK
        for _ in range(5):
            digest = hashlib.sha256(digest).digest()
        self.assertEqual(f.nid_from_nmk(NMK), digest[:6] + bytes([digest[6] >> 4]))
        self.assertEqual(f.nid_from_nmk(NMK, 1)[6], 0x10 | (digest[6] >> 4))

    def test_bad_nmk(self) -> None:
        """An NMK must be 16 bytes."""
        self.assertRaises(ValueError, f.nid_from_nmk, b"short")


class DecodeErrorTests(SynchronousTestCase):
    """Strict decoding: each error says what is wrong."""

    good = f.encode(f.Frame(EVSE, EV, f.SlacMatchReq(pev_mac=EV, evse_mac=EVSE, run_id=RUN)))

    def error(self, data: bytes) -> str:
        return str(self.assertRaises(f.FrameError, f.decode, data))

    def test_short(self) -> None:
        """Fewer bytes than a header."""
        self.assertIn("shorter", self.error(b"\0" * 10))

    def test_ethertype(self) -> None:
        """Another ethertype."""
        self.assertIn("0x86DD", self.error(self.good[:12] + b"\x86\xdd" + self.good[14:]))

    def test_mmv(self) -> None:
        """MMV other than 0x01 for a GP message."""
        self.assertIn("MMV 0x02", self.error(self.good[:14] + b"\x02" + self.good[15:]))

    def test_big_endian_mmtype(self) -> None:
        """An MMTYPE written big-endian is unknown, with a hint."""
        message = self.error(self.good[:15] + b"\x60\x7c" + self.good[17:])
        self.assertIn("unknown MMTYPE 0x7C60", message)
        self.assertIn("CM_SLAC_MATCH.REQ", message)

    def test_big_endian_mvf_length(self) -> None:
        """MVFLength written big-endian (00 3E) is refused with a hint."""
        message = self.error(self.good[:21] + b"\x00\x3e" + self.good[23:])
        self.assertIn("MVFLength 0x3E00", message)
        self.assertIn("big-endian", message)

    def test_truncated(self) -> None:
        """A payload shorter than the message's."""
        self.assertIn("needs 66", self.error(self.good[:60]))

    def test_fragmented(self) -> None:
        """FMNI/FMSN other than zero."""
        self.assertIn("fragmented", self.error(self.good[:17] + b"\x01" + self.good[18:]))

    def test_num_groups(self) -> None:
        """NumGroups above 58."""
        data = bytearray(f.encode(f.Frame(EVSE, EV, f.AttenProfileInd(pev_mac=EV,
                                                                      aag=(1,) * 58))))
        data[25] = 59
        self.assertIn("NumGroups 59", self.error(bytes(data)))

    def test_encode_checks_sizes(self) -> None:
        """Fields of the wrong size are refused when the message is built."""
        self.assertRaises(f.FrameError, f.SlacParmReq, run_id=b"1234")
        self.assertRaises(f.FrameError, f.encode,
                          f.Frame(EV[:5], EVSE, f.SlacParmReq(run_id=RUN)))

    def test_driver_ignores_bad_frames(self) -> None:
        """A bad frame is logged with its reason and ignored; the machine never sees it."""
        seen: list[Any] = []
        events: list[dict[str, Any]] = []

        class Machine:
            def frame(self, frame: f.Frame) -> list[Any]:
                seen.append(frame)
                return []

        driver = Driver(Machine(), Clock(), lambda data: None, lambda d: None)
        driver.log = Logger(observer=events.append)
        driver.received(self.good[:15] + b"\x60\x7c" + self.good[17:])
        driver.received(b"junk")
        self.assertEqual(seen, [])
        self.assertEqual(len(events), 2)
        self.assertIn("unknown MMTYPE", events[0]["error"])
        driver.received(self.good)
        self.assertEqual(len(seen), 1)


# ============================================================================================
# State machines on a fake clock


class Counter:
    """Deterministic randomness: each call returns n bytes of the next value."""

    def __init__(self, start: int = 0xA0) -> None:
        self.next = start

    def __call__(self, n: int) -> bytes:
        value, self.next = self.next, self.next + 1
        return bytes([value]) * n


class Harness:
    """A machine run by a Driver on a task.Clock; records (time, frame) and decisions."""

    def __init__(self, machine: Any, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, f.Frame]] = []
        self.decisions: list[tuple[float, Any]] = []
        self.driver = Driver(machine, clock, self._send, self._decide)
        self.machine = machine

    def _send(self, data: bytes) -> None:
        self.sent.append((round(self.clock.seconds(), 3), f.decode(data)))

    def _decide(self, decision: Any) -> None:
        self.decisions.append((round(self.clock.seconds(), 3), decision))

    def feed(self, frame: f.Frame) -> None:
        self.driver.received(f.encode(frame))

    def names(self) -> list[tuple[float, str]]:
        return [(t, fr.name) for t, fr in self.sent]

    def take(self) -> list[tuple[float, f.Frame]]:
        sent, self.sent = self.sent, []
        return sent

    def advance(self, seconds: float, step: float = 0.0) -> None:
        advance(self.clock, seconds)


def advance(clock: Clock, seconds: float) -> None:
    """Move ``clock`` forward by ``seconds``, stopping exactly at each call's time (no
    floating-point drift from small steps)."""
    end = clock.seconds() + seconds
    while True:
        due = [c.getTime() for c in clock.getDelayedCalls() if c.active()]
        if not due or min(due) > end + 1e-9:
            break
        clock.rightNow = max(clock.rightNow, min(due))
        clock.advance(0)
    clock.rightNow = max(clock.rightNow, end)


def profile(ev: bytes, value: int | tuple[int, ...]) -> f.Frame:
    aag = value if isinstance(value, tuple) else (value,) * 58
    return f.Frame(EVSE, bytes.fromhex("00b052000099"), f.AttenProfileInd(pev_mac=ev, aag=aag))


class EVSEMachineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.h = Harness(EVSEMachine(EVSE, random=Counter()), self.clock)
        self.h.driver.call("start")

    def sound(self, ev: bytes = EV, run: bytes = RUN, value: Any = 30, n: int = 10) -> None:
        self.h.feed(f.Frame(f.BROADCAST, ev, f.SlacParmReq(run_id=run)))
        for _ in range(3):
            self.h.feed(f.Frame(f.BROADCAST, ev, f.StartAttenCharInd(forwarding_sta=ev,
                                                                     run_id=run)))
        for i in range(n):
            self.h.feed(profile(ev, value if not isinstance(value, list) else value[i]))

    def test_parm_cnf_exact(self) -> None:
        """CM_SLAC_PARM.REQ is answered at once with the exact CNF bytes the standard
        requires (NUM_SOUNDS=10, TIME_OUT=6, RESP_TYPE=1, FORWARDING_STA=EV MAC)."""
        self.h.feed(f.Frame(f.BROADCAST, EV, f.SlacParmReq(run_id=RUN)))
        [(t, frame)] = self.h.take()
        self.assertEqual(t, 0)
        self.assertEqual(f.encode(frame), padded(hexbytes(
            "0a1122334401", "0a5566778802", "88e1", "01", "6560", "0000",
            "ffffffffffff", "0a", "06", "01", "0a1122334401", "00", "00",
            "0102030405060708")))

    def test_not_before_start(self) -> None:
        """Before start() (control pilot not in state B) EVs are not answered."""
        h = Harness(EVSEMachine(EVSE), self.clock)
        h.feed(f.Frame(f.BROADCAST, EV, f.SlacParmReq(run_id=RUN)))
        self.assertEqual(h.sent, [])

    def test_whole_sequence(self) -> None:
        """PARM -> CNF; ten profiles -> averaged ATTEN_CHAR.IND at once; RSP; MATCH.REQ ->
        MATCH.CNF with a fresh NMK and its NID, then CM_SET_KEY.REQ to our modem;
        SET_KEY.CNF -> matched with the EV's MAC; no timer left."""
        self.sound(value=[10, 21] * 5)  # averages to 15.5 -> 16 (rounded half up)
        self.assertEqual(self.h.names(), [(0, "CM_SLAC_PARM.CNF"), (0, "CM_ATTEN_CHAR.IND")])
        ind = self.h.take()[1][1]
        self.assertEqual(ind.dst, EV)
        self.assertEqual((ind.message.num_sounds, ind.message.aag),  # type: ignore
                         (10, (16,) * 58))
        self.h.advance(0.1)
        self.h.feed(f.Frame(EVSE, EV, f.AttenCharRsp(source_address=EV, run_id=RUN)))
        self.h.advance(1.0)
        self.assertEqual(self.h.sent, [])  # no IND repetition after the RSP
        self.h.feed(f.Frame(EVSE, EV, f.SlacMatchReq(pev_mac=EV, evse_mac=EVSE, run_id=RUN)))
        [(_, cnf), (_, setkey)] = self.h.take()
        nmk = bytes([0xA0]) * 16  # the first random draw
        self.assertEqual(cnf.message, f.SlacMatchCnf(pev_mac=EV, evse_mac=EVSE, run_id=RUN,
                                                     nid=f.nid_from_nmk(nmk), nmk=nmk))
        self.assertEqual((setkey.dst, setkey.message.nmk, setkey.message.nid),  # type: ignore
                         (f.LOCAL_MODEM, nmk, f.nid_from_nmk(nmk)))
        self.h.feed(f.Frame(EVSE, bytes.fromhex("00b052000099"), f.SetKeyCnf()))
        [(t, matched)] = self.h.decisions
        self.assertEqual(matched, Matched(EV, RUN, f.nid_from_nmk(nmk), nmk, 0))
        self.assertEqual(self.h.driver.pending(), [])

    def test_repeated_match_req(self) -> None:
        """A repeated CM_SLAC_MATCH.REQ (our CNF was lost) gets the same CNF again and never
        a second CM_SET_KEY.REQ, before or after the modem confirmed."""
        self.sound()
        self.h.feed(f.Frame(EVSE, EV, f.AttenCharRsp(source_address=EV, run_id=RUN)))
        req = f.Frame(EVSE, EV, f.SlacMatchReq(pev_mac=EV, evse_mac=EVSE, run_id=RUN))
        self.h.take()
        self.h.feed(req)
        first = self.h.take()
        self.h.feed(req)
        second = self.h.take()
        self.assertEqual([fr.name for _, fr in first], ["CM_SLAC_MATCH.CNF", "CM_SET_KEY.REQ"])
        self.assertEqual([fr for _, fr in second], [first[0][1]])
        self.h.feed(f.Frame(EVSE, bytes.fromhex("00b052000099"), f.SetKeyCnf()))
        self.h.feed(req)
        self.assertEqual([fr for _, fr in self.h.take()], [first[0][1]])
        self.assertEqual(len(self.h.decisions), 1)

    def test_mnbc_timer(self) -> None:
        """With fewer sounds than announced, the IND goes at TT_EVSE_match_MNBC (600 ms
        after the first CM_START_ATTEN_CHAR.IND) with the count actually heard."""
        self.sound(n=4)
        self.h.advance(0.599)
        self.assertEqual(self.h.names(), [(0, "CM_SLAC_PARM.CNF")])
        self.h.advance(0.002)
        [(t, ind)] = self.h.take()[1:]
        self.assertEqual((t, ind.name, ind.message.num_sounds), (0.6, "CM_ATTEN_CHAR.IND", 4))

    def test_no_profiles(self) -> None:
        """No CM_ATTEN_PROFILE.IND at all (an AR7420 as EVSE modem): the attempt fails at
        TT_EVSE_match_MNBC with a reason saying so."""
        self.sound(n=0)
        self.h.advance(0.7)
        [(t, failed)] = self.h.decisions
        self.assertEqual(t, 0.6)
        self.assertIn("AR7420", failed.reason)
        self.assertFalse(failed.final)

    def test_ind_retries(self) -> None:
        """Without a RSP the IND is repeated every TT_match_response, C_EV_match_retry (2)
        times, then the attempt fails."""
        self.sound()
        self.h.advance(1.0)
        self.assertEqual(self.h.names()[1:], [(0, "CM_ATTEN_CHAR.IND"),
                                              (0.2, "CM_ATTEN_CHAR.IND"),
                                              (0.4, "CM_ATTEN_CHAR.IND")])
        [(t, failed)] = self.h.decisions
        self.assertEqual(t, 0.6)
        self.assertIn("no CM_ATTEN_CHAR.RSP", failed.reason)

    def test_match_req_for_other_evse(self) -> None:
        """A CM_SLAC_MATCH.REQ naming another EVSE is ignored (the EV chose it)."""
        self.sound()
        self.h.take()
        self.h.feed(f.Frame(EVSE, EV, f.SlacMatchReq(pev_mac=EV, evse_mac=EVSE2, run_id=RUN)))
        self.assertEqual(self.h.sent, [])

    def test_session_timeout(self) -> None:
        """An attempt not matched within TT_EVSE_match_session (10 s) fails."""
        self.sound()
        self.h.feed(f.Frame(EVSE, EV, f.AttenCharRsp(source_address=EV, run_id=RUN)))
        self.h.advance(10.0, step=0.01)
        [(t, failed)] = self.h.decisions
        self.assertEqual(t, 10.0)
        self.assertIn("TT_EVSE_match_session", failed.reason)
        self.assertEqual(self.h.driver.pending(), [])

    def test_slac_init_timeout(self) -> None:
        """No EV within TT_EVSE_SLAC_init (50 s by default) is a final failure."""
        self.h.advance(50.0, step=0.5)
        [(t, failed)] = self.h.decisions
        self.assertEqual((t, failed.final), (50.0, True))

    def test_two_evs_kept_apart(self) -> None:
        """Two EVs sounding at once (crosstalk) are keyed by (MAC, RunID): each gets its own
        averages, and when one matches the other's attempt is dropped."""
        self.h.feed(f.Frame(f.BROADCAST, EV, f.SlacParmReq(run_id=RUN)))
        self.h.feed(f.Frame(f.BROADCAST, EV2, f.SlacParmReq(run_id=RUN2)))
        self.h.feed(f.Frame(f.BROADCAST, EV, f.StartAttenCharInd(forwarding_sta=EV,
                                                                 run_id=RUN)))
        self.h.feed(f.Frame(f.BROADCAST, EV2, f.StartAttenCharInd(forwarding_sta=EV2,
                                                                  run_id=RUN2)))
        for _ in range(10):
            self.h.feed(profile(EV, 20))
            self.h.feed(profile(EV2, 60))
        inds = {fr.dst: fr.message for _, fr in self.h.take() if fr.name == "CM_ATTEN_CHAR.IND"}
        self.assertEqual((inds[EV].aag[0], inds[EV2].aag[0]), (20, 60))  # type: ignore
        self.h.feed(f.Frame(EVSE, EV, f.AttenCharRsp(source_address=EV, run_id=RUN)))
        self.h.feed(f.Frame(EVSE, EV, f.SlacMatchReq(pev_mac=EV, evse_mac=EVSE, run_id=RUN)))
        [(_, dropped)] = self.h.decisions
        self.assertEqual((dropped.peer, dropped.final), (EV2, False))
        self.assertEqual(list(self.h.machine.attempts), [(EV, RUN)])

    def test_max_attenuation(self) -> None:
        """With max_attenuation set, an EV heard too faintly (another port) gets no IND."""
        h = Harness(EVSEMachine(EVSE, max_attenuation=50), self.clock)
        h.driver.call("start")
        h.feed(f.Frame(f.BROADCAST, EV2, f.SlacParmReq(run_id=RUN2)))
        h.feed(f.Frame(f.BROADCAST, EV2, f.StartAttenCharInd(forwarding_sta=EV2, run_id=RUN2)))
        for _ in range(10):
            h.feed(profile(EV2, 60))
        self.assertEqual([n for _, n in h.names()], ["CM_SLAC_PARM.CNF"])
        self.assertIn("above 50 dB", h.decisions[0][1].reason)

    def test_set_key_result_trusted(self) -> None:
        """trust_set_key_result: a non-zero CM_SET_KEY.CNF Result fails the attempt; by
        default it is accepted (some firmware reports it inverted)."""
        for trust, expected in ((False, Matched), (True, Failed)):
            h = Harness(EVSEMachine(EVSE, trust_set_key_result=trust), Clock())
            h.driver.call("start")
            h.feed(f.Frame(f.BROADCAST, EV, f.SlacParmReq(run_id=RUN)))
            h.feed(f.Frame(f.BROADCAST, EV, f.StartAttenCharInd(forwarding_sta=EV, run_id=RUN)))
            for _ in range(10):
                h.feed(profile(EV, 30))
            h.feed(f.Frame(EVSE, EV, f.SlacMatchReq(pev_mac=EV, evse_mac=EVSE, run_id=RUN)))
            h.feed(f.Frame(EVSE, bytes.fromhex("00b052000099"), f.SetKeyCnf(result=1)))
            self.assertIsInstance(h.decisions[-1][1], expected)

    def test_set_key_repeated_when_unconfirmed(self) -> None:
        """An unconfirmed CM_SET_KEY.REQ is repeated each second, twice, then fails."""
        self.sound()
        self.h.feed(f.Frame(EVSE, EV, f.SlacMatchReq(pev_mac=EV, evse_mac=EVSE, run_id=RUN)))
        self.h.take()
        self.h.advance(3.5, step=0.01)
        self.assertEqual(self.h.names(), [(1.0, "CM_SET_KEY.REQ"), (2.0, "CM_SET_KEY.REQ")])
        self.assertIn("did not confirm", self.h.decisions[-1][1].reason)

    def test_stop(self) -> None:
        """stop() drops every attempt and cancels every timer."""
        self.sound(n=3)
        self.h.driver.call("stop")
        self.h.driver.cancel_all()
        self.assertEqual(self.h.machine.attempts, {})
        self.h.advance(1.0)
        self.assertEqual(self.h.decisions, [])


class EVMachineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.rnd = Counter(0x10)
        self.h = Harness(EVMachine(EV, random=self.rnd), self.clock)

    def run_id(self) -> bytes:
        return self.h.machine.run_id

    def test_parm_req_retries_and_attempts(self) -> None:
        """CM_SLAC_PARM.REQ is broadcast and repeated every TT_match_response (200 ms),
        C_EV_match_retry (2) times; then a new attempt with a new RunID; after
        C_conn_max_match (3) attempts a final failure."""
        self.h.driver.call("start")
        self.h.advance(2.0)
        times = [t for t, fr in self.h.sent]
        self.assertEqual(times, [0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6])
        runs = [fr.message.run_id for _, fr in self.h.sent]  # type: ignore[union-attr]
        self.assertEqual(len(set(runs)), 3)
        self.assertTrue(all(fr.dst == f.BROADCAST for _, fr in self.h.sent))
        self.assertEqual([(t, d.final) for t, d in self.h.decisions],
                         [(0.6, False), (1.2, False), (1.8, True)])

    def test_sounding_schedule(self) -> None:
        """After the CNF: three CM_START_ATTEN_CHAR.IND then ten CM_MNBC_SOUND.IND (Cnt 9
        down to 0), one every TP_EV_batch_msg_interval (20 ms)."""
        self.h.driver.call("start")
        run = self.run_id()
        self.h.take()
        self.h.feed(f.Frame(EV, EVSE, f.SlacParmCnf(forwarding_sta=EV, run_id=run)))
        self.h.advance(0.5)
        sent = self.h.take()
        self.assertEqual([t for t, _ in sent], [round(0.02 * i, 3) for i in range(13)])
        self.assertEqual([fr.name for _, fr in sent[:3]], ["CM_START_ATTEN_CHAR.IND"] * 3)
        self.assertEqual([fr.message.cnt for _, fr in sent[3:]],  # type: ignore[union-attr]
                         list(range(9, -1, -1)))
        start = sent[0][1].message
        self.assertEqual(start, f.StartAttenCharInd(forwarding_sta=EV, run_id=run))

    def test_chooses_best_evse(self) -> None:
        """Each CM_ATTEN_CHAR.IND is answered with a RSP at once; at TT_EV_atten_results
        (1.2 s after the CNF) the EVSE with the lowest attenuation gets CM_SLAC_MATCH.REQ;
        its CNF leads to CM_SET_KEY.REQ with its NID/NMK, the modem's CNF to matched."""
        self.h.driver.call("start")
        run = self.run_id()
        self.h.feed(f.Frame(EV, EVSE2, f.SlacParmCnf(forwarding_sta=EV, run_id=run)))
        self.h.feed(f.Frame(EV, EVSE, f.SlacParmCnf(forwarding_sta=EV, run_id=run)))
        self.h.advance(0.3)
        self.h.take()
        for evse, value in ((EVSE2, 40), (EVSE, 25)):
            self.h.feed(f.Frame(EV, evse, f.AttenCharInd(source_address=EV, run_id=run,
                                                         num_sounds=10, aag=(value,) * 58)))
        rsps = self.h.take()
        self.assertEqual([(fr.name, fr.dst) for _, fr in rsps],
                         [("CM_ATTEN_CHAR.RSP", EVSE2), ("CM_ATTEN_CHAR.RSP", EVSE)])
        self.h.advance(0.899)
        self.assertEqual(self.h.sent, [])
        self.h.advance(0.002)
        [(t, req)] = self.h.take()
        self.assertEqual((t, req.dst), (1.2, EVSE))
        self.assertEqual(req.message, f.SlacMatchReq(pev_mac=EV, evse_mac=EVSE, run_id=run))
        nid = f.nid_from_nmk(NMK)
        self.h.feed(f.Frame(EV, EVSE, f.SlacMatchCnf(pev_mac=EV, evse_mac=EVSE, run_id=run,
                                                     nid=nid, nmk=NMK)))
        [(_, setkey)] = self.h.take()
        self.assertEqual((setkey.dst, setkey.message.nid, setkey.message.nmk),  # type: ignore
                         (f.LOCAL_MODEM, nid, NMK))
        self.h.feed(f.Frame(EV, bytes.fromhex("00b052000098"), f.SetKeyCnf()))
        self.assertEqual(self.h.decisions, [(1.201, Matched(EVSE, run, nid, NMK, 0))])
        self.assertEqual(self.h.driver.pending(), [])

    def test_match_req_retries(self) -> None:
        """An unanswered CM_SLAC_MATCH.REQ is repeated every 200 ms, twice, then the
        attempt starts over with a new RunID."""
        self.h.driver.call("start")
        run = self.run_id()
        self.h.feed(f.Frame(EV, EVSE, f.SlacParmCnf(forwarding_sta=EV, run_id=run)))
        self.h.feed(f.Frame(EV, EVSE, f.AttenCharInd(source_address=EV, run_id=run,
                                                     num_sounds=10, aag=(30,) * 58)))
        self.h.take()
        self.h.advance(1.81)
        self.assertEqual([(t, n) for t, n in self.h.names() if "SLAC" in n],
                         [(1.2, "CM_SLAC_MATCH.REQ"),
                                          (1.4, "CM_SLAC_MATCH.REQ"),
                                          (1.6, "CM_SLAC_MATCH.REQ"),
                                          (1.8, "CM_SLAC_PARM.REQ")])
        self.assertNotEqual(self.run_id(), run)
        self.assertIn("no CM_SLAC_MATCH.CNF", self.h.decisions[0][1].reason)

    def test_no_results(self) -> None:
        """No CM_ATTEN_CHAR.IND within TT_EV_atten_results: a new attempt."""
        self.h.driver.call("start")
        self.h.feed(f.Frame(EV, EVSE, f.SlacParmCnf(forwarding_sta=EV, run_id=self.run_id())))
        self.h.advance(1.21)
        self.assertIn("no CM_ATTEN_CHAR.IND", self.h.decisions[0][1].reason)
        self.assertEqual(self.h.names()[-1], (1.2, "CM_SLAC_PARM.REQ"))

    def test_foreign_frames_ignored(self) -> None:
        """CNFs of another RunID, or forwarding to another EV, are ignored."""
        self.h.driver.call("start")
        self.h.take()
        self.h.feed(f.Frame(EV, EVSE, f.SlacParmCnf(forwarding_sta=EV, run_id=RUN2)))
        self.h.feed(f.Frame(EV, EVSE, f.SlacParmCnf(forwarding_sta=EV2,
                                                    run_id=self.run_id())))
        self.assertEqual(self.h.sent, [])

    def test_early_choice(self) -> None:
        """wait_all_atten_results=False: once every EVSE that confirmed has answered and the
        sounds are sent, the choice is made without waiting for the timer."""
        h = Harness(EVMachine(EV, random=Counter(), wait_all_atten_results=False), self.clock)
        h.driver.call("start")
        run = h.machine.run_id
        h.feed(f.Frame(EV, EVSE, f.SlacParmCnf(forwarding_sta=EV, run_id=run)))
        h.advance(0.25)
        h.feed(f.Frame(EV, EVSE, f.AttenCharInd(source_address=EV, run_id=run,
                                                num_sounds=10, aag=(30,) * 58)))
        self.assertEqual(h.names()[-2:], [(0.25, "CM_ATTEN_CHAR.RSP"),
                                          (0.25, "CM_SLAC_MATCH.REQ")])


# ============================================================================================
# Emulator and both machines together


class EmulatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.host: list[bytes] = []
        self.wire: list[bytes] = []
        self.emu = ModemEmulator(self.clock, EVSE, "evse", self.host.append, self.wire.append,
                                 attenuation=[12])

    def test_set_key(self) -> None:
        """CM_SET_KEY.REQ to the local modem is answered with a CNF (echoing the nonce) on
        the next turn and never reaches the wire."""
        self.emu.from_host(f.encode(f.Frame(f.LOCAL_MODEM, EVSE, f.SetKeyReq(
            nid=f.nid_from_nmk(NMK), nmk=NMK, my_nonce=b"\1\2\3\4"))))
        self.assertEqual((self.host, self.wire), ([], []))
        self.clock.advance(0)
        cnf = f.decode(self.host[0])
        self.assertEqual((cnf.dst, cnf.message.your_nonce, cnf.message.result),  # type: ignore
                         (EVSE, b"\1\2\3\4", 0))
        self.assertEqual(self.emu.nmk, NMK)
        self.assertTrue(self.emu.link_status())

    def test_sound_becomes_profile(self) -> None:
        """On the EVSE side each CM_MNBC_SOUND.IND becomes a CM_ATTEN_PROFILE.IND to the host
        with the configured attenuation; other frames pass unchanged."""
        sound = f.encode(f.Frame(f.BROADCAST, EV, f.MnbcSoundInd(cnt=9, run_id=RUN)))
        parm = f.encode(f.Frame(f.BROADCAST, EV, f.SlacParmReq(run_id=RUN)))
        self.emu.from_wire(sound)
        self.emu.from_wire(parm)
        self.clock.advance(0)
        self.assertEqual(self.host[0], parm)
        prof = f.decode(self.host[1])
        self.assertEqual(prof.message, f.AttenProfileInd(pev_mac=EV, aag=(12,) * 58))
        self.emu.from_host(parm)
        self.assertEqual(self.wire, [parm])


def pair(clock: Clock, ev_random: Any = None, evse_random: Any = None
         ) -> tuple[Harness, Harness]:
    """An EV and an EVSE machine, each behind an emulated modem, joined by a wire."""
    evse = Harness(EVSEMachine(EVSE, random=evse_random or Counter(0x80)), clock)
    ev = Harness(EVMachine(EV, random=ev_random or Counter(0x10)), clock)
    evse_emu = ModemEmulator(clock, EVSE, "evse", evse.driver.received,
                             lambda d: ev_emu.from_wire(d), attenuation=[20])
    ev_emu = ModemEmulator(clock, EV, "ev", ev.driver.received,
                           lambda d: evse_emu.from_wire(d))
    evse.driver.send = lambda d: (evse._send(d), evse_emu.from_host(d))  # type: ignore
    ev.driver.send = lambda d: (ev._send(d), ev_emu.from_host(d))  # type: ignore
    return ev, evse


class BothSidesTests(SynchronousTestCase):
    def test_match_in_memory(self) -> None:
        """EV and EVSE machines with emulated modems match at TT_EV_atten_results with the
        same NID/NMK, each naming the other's MAC; the frames in order are the standard's."""
        clock = Clock()
        ev, evse = pair(clock)
        evse.driver.call("start")
        ev.driver.call("start")
        ev.advance(2.0)
        [(t_ev, m_ev)] = ev.decisions
        [(t_evse, m_evse)] = evse.decisions
        self.assertEqual((m_ev.peer, m_evse.peer), (EVSE, EV))
        self.assertEqual((m_ev.nid, m_ev.nmk), (m_evse.nid, m_evse.nmk))
        self.assertEqual(t_ev, 1.2)
        ev_names = [n for _, n in ev.names()]
        self.assertEqual(ev_names, ["CM_SLAC_PARM.REQ"] + ["CM_START_ATTEN_CHAR.IND"] * 3
                         + ["CM_MNBC_SOUND.IND"] * 10
                         + ["CM_ATTEN_CHAR.RSP", "CM_SLAC_MATCH.REQ", "CM_SET_KEY.REQ"])
        self.assertEqual([n for _, n in evse.names()],
                         ["CM_SLAC_PARM.CNF", "CM_ATTEN_CHAR.IND", "CM_SLAC_MATCH.CNF",
                          "CM_SET_KEY.REQ"])


# ============================================================================================
# The plc transport plugin in memory


class FakeSocket:
    """Stands in for RawSocket: frames go to a peer FakeSocket on the next clock turn."""

    sockets: dict[str, "FakeSocket"] = {}

    def __init__(self, reactor: Any, interface: str, receive: Any) -> None:
        self.reactor, self.interface, self.receive = reactor, interface, receive
        self.mac = {"evse0": EVSE, "ev0": EV}[interface]
        self.peer = {"evse0": "ev0", "ev0": "evse0"}[interface]
        self.open_ = False

    def open(self) -> None:
        self.open_ = True
        FakeSocket.sockets[self.interface] = self

    def send(self, data: bytes) -> None:
        peer = FakeSocket.sockets.get(self.peer)
        if peer is not None and peer.open_:
            self.reactor.callLater(0, peer.receive, data)

    def close(self) -> None:
        self.open_ = False


@implementer(ILinkListener)
class Listener:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def link_up(self, peer: LinkPeer) -> None:
        self.events.append(("up", peer.mac))

    def link_down(self, reason: str) -> None:
        self.events.append(("down", reason))


@implementer(IModemManager)
class Modem:
    """A modem manager whose link status the test sets."""

    def __init__(self) -> None:
        self.status: bool | None = True
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def link_status(self) -> bool | None:
        return self.status


class TransportTests(SynchronousTestCase):
    def setUp(self) -> None:
        FakeSocket.sockets = {}
        self.clock = Clock()
        self.factory = PluginRegistry.discover([bundled_plugin_dir()]).find(
            "transport", "plc").factory

    def build(self, **options: Any) -> Any:
        from sepgw.slac.transport import PlcTransport

        modem = options.pop("_modem", None)
        config, problems = self.factory.options.validate(options)
        self.assertEqual(problems, [])
        return PlcTransport(self.clock, f"{options['role']}.transport", config,
                            socket_factory=FakeSocket, modem=modem)

    def test_plugin(self) -> None:
        """The plc plugin is found, validates its options and builds an ITransport."""
        config, problems = self.factory.options.validate({"interface": "eth1"})
        self.assertEqual(problems, [])
        self.assertEqual((config["role"], config["emulate_modem"]), ("evse", False))
        t = self.factory.build(config, BuildContext(reactor=self.clock, name="ports[0]"))
        self.assertTrue(verifyObject(ITransport, t))
        _, problems = self.factory.options.validate(
            {"interface": "x", "role": "car", "emulated_attenuation": [1, 2]})
        self.assertEqual(sorted(p.path for p in problems), ["role"])
        _, problems = self.factory.options.validate(
            {"interface": "x", "emulated_attenuation": [1, 2]})
        self.assertEqual([p.path for p in problems], ["emulated_attenuation"])
        self.assertTrue(verifyObject(IModemManager, NoModemManager()))

    def pair(self, **options: Any) -> tuple[Any, Any, Listener, Listener]:
        evse = self.build(interface="evse0", role="evse", emulate_modem=True, **options)
        ev = self.build(interface="ev0", role="ev", emulate_modem=True, **options)
        le, lv = Listener(), Listener()
        evse.add_listener(le)
        ev.add_listener(lv)
        evse.start()
        ev.start()
        return evse, ev, le, lv

    def advance(self, seconds: float) -> None:
        advance(self.clock, seconds)

    def test_link_up_when_matched(self) -> None:
        """EVSE and EV transports with emulated modems report link_up with each other's
        MAC once matched, with the same NID; stop() brings each link down once."""
        evse, ev, le, lv = self.pair(link_check_interval=0.0)
        self.assertEqual((le.events, lv.events), ([], []))
        self.advance(1.5)
        self.assertEqual(le.events, [("up", f.mac_to_str(EV))])
        self.assertEqual(lv.events, [("up", f.mac_to_str(EVSE))])
        self.assertEqual(evse.nid, ev.nid)
        late = Listener()
        ev.add_listener(late)
        self.assertEqual(late.events, [("up", f.mac_to_str(EVSE))])
        ev.stop()
        ev.stop()
        self.assertEqual(lv.events[1:], [("down", "transport stopped")])
        evse.stop()

    def test_start_on_call(self) -> None:
        """start_matching = "call": nothing happens until begin_matching() (control pilot
        state B); end_matching() drops the link once and resets the modem."""
        modem = Modem()
        evse = self.build(interface="evse0", role="evse", emulate_modem=True,
                          start_matching="call", link_check_interval=0.0)
        ev = self.build(interface="ev0", role="ev", emulate_modem=True, start_matching="call",
                        link_check_interval=0.0, _modem=modem)
        lv = Listener()
        ev.add_listener(lv)
        evse.start()
        ev.start()
        self.advance(2.0)
        self.assertEqual(lv.events, [])
        evse.begin_matching()
        ev.begin_matching()
        self.advance(1.5)
        self.assertEqual(lv.events, [("up", f.mac_to_str(EVSE))])
        ev.end_matching()
        ev.end_matching()
        self.assertEqual(lv.events[1:], [("down", "control pilot state A")])
        self.assertEqual(modem.resets, 2)

    def test_link_lost(self) -> None:
        """When the modem reports no link, link_down comes once, and matching starts again
        after retry_after."""
        modem = Modem()
        evse = self.build(interface="evse0", role="evse", emulate_modem=True, _modem=Modem())
        ev = self.build(interface="ev0", role="ev", emulate_modem=True, _modem=modem,
                        retry_after=0.5)
        lv = Listener()
        ev.add_listener(lv)
        evse.start()
        ev.start()
        self.advance(1.5)
        self.assertEqual(len(lv.events), 1)
        modem.status = False
        self.advance(1.2)
        self.assertEqual(lv.events[1:], [("down", "the modem reports no PLC link")])
        modem.status = True
        self.advance(2.0)
        self.assertEqual(lv.events[2:], [("up", f.mac_to_str(EVSE))])

    def test_bad_frames_do_not_crash(self) -> None:
        """Garbage from the wire is ignored; matching still succeeds."""
        evse, ev, le, lv = self.pair(link_check_interval=0.0)
        evse._from_wire(b"\xff" * 6 + EV + b"\x88\xe1\x01\x99\x99" + bytes(50))
        evse._from_wire(b"short")
        self.advance(1.5)
        self.assertEqual(len(le.events), 1)


# ============================================================================================
# Both sides over a veth pair between two network namespaces (root only)


class NetnsTests(TestCase):
    timeout = 60

    def test_match_over_veth(self) -> None:
        """EVSE and EV, each in its own network namespace with an emulated modem, match over
        a veth pair through raw 0x88E1 sockets, and both report the same NID."""
        from tests.netns import Netns

        net = Netns(self)
        evse_ns, ev_ns = net.namespace("slac-evse"), net.namespace("slac-ev")
        net.veth("plc0", evse_ns, "plc1", ev_ns)
        lab = [sys.executable, "-m", "sepgw.slac.lab", "--emulate-modem", "--timeout", "20"]
        evse = net.popen(evse_ns, *lab, "--interface", "plc0", "--role", "evse",
                         stdout=subprocess.PIPE, text=True)
        ready = json.loads(evse.stdout.readline())  # type: ignore[union-attr]
        self.assertEqual(ready["event"], "ready")
        ev = net.run(ev_ns, *lab, "--interface", "plc1", "--role", "ev", check=False)
        self.assertEqual(ev.returncode, 0, ev.stderr)
        ev_events = [json.loads(line) for line in ev.stdout.splitlines()]
        evse_out, _ = evse.communicate(timeout=20)
        evse_events = [json.loads(line) for line in evse_out.splitlines()]
        ev_match = next(e for e in ev_events if e["event"] == "matched")
        evse_match = next(e for e in evse_events if e["event"] == "matched")
        self.assertEqual(ev_match["nid"], evse_match["nid"])
        self.assertEqual(ev_match["peer"], ready["mac"])
        self.assertEqual(evse_match["peer"], next(e["mac"] for e in ev_events
                                                  if e["event"] == "ready"))
        self.assertLess(ev_match["elapsed"], 1.5)
