"""Unit tests of sepgw.hw.modbus (the Twisted Modbus client) and sepgw.hw.sunspec decoding, in
memory on a fake clock: frames are written out here byte by byte from the Modbus Application
Protocol and Modbus over Serial Line specifications."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from sepgw.hw import modbus, sunspec


def client(framing: str = "tcp", timeout: float = 1.0) -> tuple[Any, Clock, StringTransport]:
    clock = Clock()
    transport = StringTransport()
    wires: list[Any] = []

    def connect(protocol: Any) -> Any:
        protocol.makeConnection(transport)
        wires.append(protocol)
        return succeed(protocol)
    c = modbus.ModbusClient(clock, "dev", connect, framing, unit=1, timeout=timeout)
    c.wires = wires  # type: ignore[attr-defined]
    return c, clock, transport


class ModbusClientTests(SynchronousTestCase):
    def test_tcp_read_request_and_answer(self) -> None:
        """A read of 2 holding registers at 40000 is MBAP tid 1, protocol 0, length 6, unit 1,
        PDU 03 9c40 0002; the answer's registers are returned."""
        c, clock, t = client()
        d = c.read_holding_registers(40000, 2)
        self.assertEqual(t.value(), bytes.fromhex("000100000006" "01" "039c400002"))
        c.wires[0].dataReceived(bytes.fromhex("000100000007" "01" "0304" "5375" "6e53"))
        self.assertEqual(self.successResultOf(d), [0x5375, 0x6E53])

    def test_timeout_on_the_clock_and_late_answer_ignored(self) -> None:
        """No answer within the timeout fails the request with ModbusTimeout at exactly the
        timeout on the injected clock; the late answer (old transaction id) is not taken for
        the next request's."""
        c, clock, t = client(timeout=0.5)
        d = c.read_holding_registers(0, 1)
        clock.advance(0.49)
        self.assertNoResult(d)
        clock.advance(0.01)
        self.assertIn("no answer within 0.5 s", str(self.failureResultOf(d,
                                                                    modbus.ModbusTimeout).value))
        d2 = c.read_holding_registers(0, 1)
        c.wires[0].dataReceived(bytes.fromhex("000100000005" "01" "0302" "0007"))
        self.assertNoResult(d2)
        c.wires[0].dataReceived(bytes.fromhex("000200000005" "01" "0302" "0009"))
        self.assertEqual(self.successResultOf(d2), [9])

    def test_rtu_crc_and_split_frames(self) -> None:
        """RTU: the request carries the CRC (01 03 0000 0001 -> 84 0a); an answer arriving in
        pieces is reassembled; a bad CRC fails with ModbusFrameError."""
        c, clock, t = client("rtu")
        d = c.read_holding_registers(0, 1)
        self.assertEqual(t.value(), bytes.fromhex("010300000001840a"))
        answer = modbus.rtu_frame(1, bytes.fromhex("0302002a"))
        c.wires[0].dataReceived(answer[:3])
        c.wires[0].dataReceived(answer[3:])
        self.assertEqual(self.successResultOf(d), [42])
        d = c.read_holding_registers(0, 1)
        c.wires[0].dataReceived(answer[:-1] + bytes([answer[-1] ^ 1]))
        self.assertIn("CRC error", str(self.failureResultOf(d, modbus.ModbusFrameError).value))

    def test_exception_response_and_queue_withdrawal(self) -> None:
        """An exception answer (83 02) fails with ModbusExceptionResponse code 2; a request
        cancelled while queued is never sent."""
        c, clock, t = client()
        d1 = c.read_holding_registers(0, 1)
        d2 = c.write_coil(3, True)
        d2.cancel()
        self.failureResultOf(d2)
        c.wires[0].dataReceived(bytes.fromhex("000100000003" "01" "8302"))
        e = self.failureResultOf(d1, modbus.ModbusExceptionResponse).value
        self.assertEqual(e.code, 2)
        self.assertIn("illegal data address", str(e))
        self.assertEqual(t.value(), bytes.fromhex("000100000006" "01" "0300000001"))


class SunSpecDecodingTests(SynchronousTestCase):
    def test_scaled_values_and_not_implemented(self) -> None:
        """int16 -704 with scale factor 1 is -7040; uint32 60012 with -3 is 60.012; 0x8000 in
        an int16 is not implemented (None, or an error naming register and value)."""
        regs = [0, 0, 0xFD40, 1, 0, 60012, 0xFFFD, 0x8000]
        at = {"W": 2, "W_SF": 3, "Hz": 4, "Hz_SF": 6, "X": 7}
        self.assertEqual(sunspec.value(regs, 100, at, "W", "int16", "W_SF"), -7040.0)
        self.assertEqual(sunspec.value(regs, 100, at, "Hz", "uint32", "Hz_SF"), 60.012)
        self.assertIsNone(sunspec.value(regs, 100, at, "X", "int16", None, required=False))
        with self.assertRaises(sunspec.PointError) as e:
            sunspec.value(regs, 100, at, "X", "int16", None)
        self.assertEqual(str(e.exception), "X at register 107 is 0x8000 (not implemented)")

    def test_encode(self) -> None:
        """-1500 W as int32 with scale factor 0 is ffff fa24; 34.3 % with -1 is 343; a value
        that does not fit is refused."""
        self.assertEqual(sunspec.encode(-1500, 0, "int32", "WSet"), [0xFFFF, 0xFA24])
        self.assertEqual(sunspec.encode(34.3, -1, "uint16", "WMaxLimPct"), [343])
        self.assertRaises(sunspec.PointError, sunspec.encode, 70000, 0, "int16", "W")
