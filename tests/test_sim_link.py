"""Tests for the simulated electrical link (``plugins/sim_link.py``) and the simulated
contactor, meter and inverter attached to it.

Everything runs in memory: :class:`FakeUDPNet` is a :class:`~twisted.internet.task.Clock` with
``listenUDP`` whose sockets record what they send and, between sockets bound on the fake net,
deliver it (on the clock, after a zero delay). Frames are real bytes made by the module's
pure :func:`encode` and parsed by its strict :func:`decode`; tests also inject datagrams
directly with ``datagramReceived``. Components are built through their plugin factories with
validated options, as start-up builds them. No global reactor, no real socket.
"""

from __future__ import annotations

import importlib
import math
import struct
from types import ModuleType
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from sepgw.interfaces import (
    BuildContext,
    ContactorRefused,
    ContactorState,
    IMeterListener,
    MeterSample,
)
from sepgw.registry import PluginRegistry, bundled_plugin_dir

_CACHE: tuple[PluginRegistry, ModuleType] | None = None


def plugins() -> tuple[PluginRegistry, ModuleType]:
    """The bundled plugins and the ``sim_link`` module their factories use (imported by the
    same discovery, so frame classes and endpoint registry are theirs)."""
    global _CACHE
    if _CACHE is None:
        registry = PluginRegistry.discover([bundled_plugin_dir()])
        _CACHE = (registry, importlib.import_module("sepgw.dropins.sim_link"))
    return _CACHE


def link_module() -> ModuleType:
    return plugins()[1]


EVSE = ("127.0.0.1", 47101)
PEV = ("127.0.0.1", 47102)
TOOL = ("127.0.0.1", 40000)


class FakeUDPPort:
    """A bound fake UDP socket: the protocol's transport and the listening port."""

    def __init__(self, net: "FakeUDPNet", host: str, port: int, protocol: Any) -> None:
        self.net = net
        self.host = host
        self.port = port
        self.protocol = protocol
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.listening, "write on a closed socket"
        self.sent.append((data, addr))
        self.net.route(data, (self.host, self.port), addr)

    def getHost(self) -> Any:
        return (IPv6Address if ":" in self.host else IPv4Address)("UDP", self.host, self.port)

    def stopListening(self) -> None:
        self.listening = False
        self.net.ports.pop((self.host, self.port), None)
        self.protocol.doStop()

    def frames(self) -> list[tuple[Any, tuple[str, int]]]:
        """Everything sent, decoded."""
        return [(link_module().decode(data), addr) for data, addr in self.sent]


class FakeUDPNet(Clock):
    """A clock with ``listenUDP``: bound sockets on it reach each other, on the clock."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: dict[tuple[str, int], FakeUDPPort] = {}
        self.bound: list[FakeUDPPort] = []
        self._next_port = 50000

    def listenUDP(self, port: int, protocol: Any, interface: str = "",
                  maxPacketSize: int = 8192) -> FakeUDPPort:
        if port == 0:
            self._next_port += 1
            port = self._next_port
        if (interface, port) in self.ports:
            raise OSError(98, "Address already in use")
        bound = FakeUDPPort(self, interface, port, protocol)
        self.ports[(interface, port)] = bound
        self.bound.append(bound)
        protocol.makeConnection(bound)
        return bound

    def route(self, data: bytes, source: tuple[str, int], to: tuple[str, int]) -> None:
        def deliver() -> None:
            target = self.ports.get((to[0], to[1]))
            if target is not None:
                target.protocol.datagramReceived(data, source)

        self.callLater(0, deliver)

    def port_at(self, address: tuple[str, int]) -> FakeUDPPort:
        return self.ports[address]


@implementer(IMeterListener)
class MeterRecorder:
    def __init__(self) -> None:
        self.samples: list[MeterSample] = []
        self.errors: list[str] = []

    def meter_sample(self, sample: MeterSample) -> None:
        self.samples.append(sample)

    def meter_error(self, reason: str) -> None:
        self.errors.append(reason)


def build(testcase: SynchronousTestCase, kind: str, options: dict[str, Any],
          reactor: Any) -> Any:
    """Build the bundled simulated ``kind`` from ``options`` (validated first)."""
    factory = plugins()[0].find(kind, "simulated").factory
    config, problems = factory.options.validate(options)
    testcase.assertEqual(problems, [])
    return factory.build(config, BuildContext(reactor=reactor, name=f"test.{kind}"))


def problems(kind: str, options: dict[str, Any]) -> list[str]:
    factory = plugins()[0].find(kind, "simulated").factory
    return sorted(str(p) for p in factory.options.validate(options)[1])


def power(seq: int, w: float, var: float = 0.0) -> bytes:
    m = link_module()
    return m.encode(m.PowerFrame(seq, w, var))


def grid(seq: int, v: float = 240.0, hz: float = 60.0) -> bytes:
    m = link_module()
    return m.encode(m.GridFrame(seq, v, hz))


def control(op: str, value: float = 0.0, text: str = "") -> bytes:
    m = link_module()
    return m.encode(m.ControlFrame(1, m.Op[op], value, text))


# --------------------------------------------------------------------------------------------
# Frames and addresses (pure)


class FrameCodecTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.m = link_module()

    def test_grid_frame_bytes(self) -> None:
        """A GRID frame is magic "SGWL", version 1, kind 1, a big-endian u32 sequence number,
        then voltage and frequency as big-endian IEEE 754 doubles: 26 bytes, exactly these."""
        data = self.m.encode(self.m.GridFrame(7, 240.0, 60.0))
        self.assertEqual(data.hex(), "5347574c" "01" "01" "00000007"
                                     "406e000000000000" "404e000000000000")
        self.assertEqual(self.m.decode(data), self.m.GridFrame(7, 240.0, 60.0))

    def test_power_frame_bytes(self) -> None:
        """A POWER frame is kind 2 with W then var; a negative W (charging) is carried as is."""
        data = self.m.encode(self.m.PowerFrame(0x01020304, -3300.5, 150.0))
        self.assertEqual(data.hex(), "5347574c" "01" "02" "01020304"
                                     "c0a9c90000000000" "4062c00000000000")
        self.assertEqual(self.m.decode(data), self.m.PowerFrame(0x01020304, -3300.5, 150.0))

    def test_control_frame_bytes(self) -> None:
        """A CONTROL frame is kind 3, then op u8, value f64, text length u8 and the UTF-8
        text; a frame without text ends after the length byte."""
        data = self.m.encode(self.m.ControlFrame(1, self.m.Op.meter_error, 0.0, "CT off"))
        self.assertEqual(data.hex(), "5347574c" "01" "03" "00000001"
                                     "02" "0000000000000000" "06" + b"CT off".hex())
        self.assertEqual(self.m.decode(data),
                         self.m.ControlFrame(1, self.m.Op.meter_error, 0.0, "CT off"))
        data = self.m.encode(self.m.ControlFrame(2, self.m.Op.grid_voltage, 253.0))
        self.assertEqual(data.hex(), "5347574c" "01" "03" "00000002"
                                     "05" "406fa00000000000" "00")

    def test_every_op_round_trips(self) -> None:
        """Each CONTROL operation with a valid value decodes to the frame encoded."""
        values = {"meter_silent": 1.0, "meter_error": 0.0, "meter_clear": 0.0,
                  "contactor_stuck": 1.0, "grid_voltage": 264.0, "grid_frequency": 61.5,
                  "rogue_w": 3300.0}
        for op in self.m.Op:
            frame = self.m.ControlFrame(9, op, values[op.name],
                                        "é" if op is self.m.Op.meter_error else "")
            self.assertEqual(self.m.decode(self.m.encode(frame)), frame, op)

    def test_sequence_numbers_wrap(self) -> None:
        """Sequence numbers are taken modulo 2**32, and newer() compares them across the wrap:
        0 follows 2**32 - 1, a repeat or an older number is not newer."""
        data = self.m.encode(self.m.PowerFrame(2**32 + 5, 0.0, 0.0))
        self.assertEqual(self.m.decode(data).seq, 5)
        self.assertTrue(self.m.newer(0, 2**32 - 1))
        self.assertTrue(self.m.newer(6, 5))
        self.assertFalse(self.m.newer(5, 5))
        self.assertFalse(self.m.newer(4, 5))

    def test_decode_rejects_bad_datagrams(self) -> None:
        """decode() refuses, with a reason, anything but exactly one valid frame: short or
        long datagrams, wrong magic, version or kind, non-finite or out-of-range values,
        control frames with a wrong text length, unknown operation, non-UTF-8 text, or a
        value or text the operation does not take."""
        header = struct.Struct("!4sBBI")
        ok = grid(1)
        nan = struct.pack("!dd", math.nan, 60.0)
        cases = {
            b"": "0 bytes is shorter than a frame header",
            ok[:9]: "9 bytes is shorter than a frame header",
            b"XGWL" + ok[4:]: "bad magic b'XGWL'",
            ok[:4] + b"\x02" + ok[5:]: "unsupported version 2",
            ok[:5] + b"\x09" + ok[6:]: "unknown frame kind 9",
            ok + b"\x00": "grid frame body is 17 bytes, not 16",
            ok[:-1]: "grid frame body is 15 bytes, not 16",
            header.pack(b"SGWL", 1, 1, 1) + nan: "grid frame carries a non-finite value",
            header.pack(b"SGWL", 1, 1, 1) + struct.pack("!dd", -1.0, 60.0):
                "grid voltage -1.0 V is out of range",
            header.pack(b"SGWL", 1, 2, 1) + struct.pack("!dd", 2e7, 0.0):
                "power (20000000.0 W, 0.0 var) is out of range",
            header.pack(b"SGWL", 1, 3, 1) + b"\x01": "control frame body is 1 bytes, too short",
            header.pack(b"SGWL", 1, 3, 1) + struct.pack("!BdB", 2, 0.0, 5) + b"abc":
                "control text is 3 bytes, header says 5",
            header.pack(b"SGWL", 1, 3, 1) + struct.pack("!BdB", 99, 0.0, 0):
                "unknown control operation 99",
            header.pack(b"SGWL", 1, 3, 1) + struct.pack("!BdB", 2, 0.0, 2) + b"\xff\xfe":
                "control text is not UTF-8",
            header.pack(b"SGWL", 1, 3, 1) + struct.pack("!BdB", 1, 2.0, 0):
                "meter-silent value must be 0 or 1, not 2.0",
            header.pack(b"SGWL", 1, 3, 1) + struct.pack("!BdB", 2, 0.0, 0):
                "meter-error needs a text (the error reason)",
            header.pack(b"SGWL", 1, 3, 1) + struct.pack("!BdB", 5, -1.0, 0):
                "grid-voltage value must not be negative, not -1.0",
            header.pack(b"SGWL", 1, 3, 1) + struct.pack("!BdB", 3, 0.0, 1) + b"x":
                "meter-clear takes no text",
            header.pack(b"SGWL", 1, 3, 1) + struct.pack("!BdB", 7, math.inf, 0):
                "control value is not finite",
        }
        for data, reason in cases.items():
            with self.assertRaises(self.m.FrameError, msg=data.hex()) as caught:
                self.m.decode(data)
            self.assertEqual(str(caught.exception), reason, data.hex())

    def test_encode_refuses_what_decode_would_refuse(self) -> None:
        """encode() never produces a frame the other end would reject."""
        for frame in (self.m.PowerFrame(1, math.nan, 0.0), self.m.GridFrame(1, 240.0, -1.0),
                      self.m.ControlFrame(1, self.m.Op.meter_silent, 0.5),
                      self.m.ControlFrame(1, self.m.Op.meter_error, 0.0, "x" * 201)):
            self.assertRaises(self.m.FrameError, self.m.encode, frame)

    def test_addresses(self) -> None:
        """Link addresses are loopback HOST:PORT, IPv6 in brackets; anything else is refused
        with a reason, and port 0 only where allowed (the PEV's own bind address)."""
        parse = self.m.parse_address
        self.assertEqual(parse("127.0.0.1:47101"), ("127.0.0.1", 47101))
        self.assertEqual(parse("[::1]:47101"), ("::1", 47101))
        self.assertEqual(parse("127.0.0.1:0", allow_port_zero=True), ("127.0.0.1", 0))
        for text, reason in (
                ("192.0.2.1:47101", "the simulated link runs on loopback only"),
                ("::1:47101", "write an IPv6 address in brackets"),
                ("localhost:47101", "is not an IP address"),
                ("127.0.0.1", "is not HOST:PORT"),
                ("127.0.0.1:0", "port 0 is out of range"),
                ("127.0.0.1:http", "is not a number")):
            with self.assertRaises(ValueError, msg=text) as caught:
                parse(text)
            self.assertIn(reason, str(caught.exception))
        self.assertEqual(self.m.format_address("::1", 5), "[::1]:5")

    def test_options_checked(self) -> None:
        """The plugins' link options are validated before anything is built: a non-loopback
        link, a PEV bind without link or of another family, control without link."""
        self.assertEqual(problems("contactor", {"link": "10.0.0.1:47101"}), [
            "link: '10.0.0.1:47101': the simulated link runs on loopback only "
            "(127.0.0.0/8 or ::1)"])
        self.assertEqual(problems("meter", {"link": "127.0.0.1:0"}), [
            "link: '127.0.0.1:0': port 0 is out of range"])
        self.assertEqual(problems("inverter", {"bind": "127.0.0.1:0", "control": True}), [
            "bind: needs link (the EVSE side's address)",
            "control: needs link (CONTROL frames arrive on the link)"])
        self.assertEqual(problems("inverter", {"link": "[::1]:47101",
                                               "bind": "127.0.0.1:47102"}), [
            "bind: must be of the same address family (IPv4 or IPv6) as link"])


# --------------------------------------------------------------------------------------------
# EVSE side: contactor + meter sharing one endpoint


class EVSESideTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.net = FakeUDPNet()
        self.net.advance(1000)
        self.contactor = build(self, "contactor", {"link": "127.0.0.1:47101", "delay": 0.05},
                               self.net)
        self.meter = build(self, "meter", {"link": "127.0.0.1:47101", "interval": 0.1,
                                           "voltage": 240.0, "frequency": 60.0}, self.net)
        self.recorder = MeterRecorder()
        self.meter.add_listener(self.recorder)
        self.contactor.start()
        self.meter.start()
        self.link = self.contactor.link
        self.socket = self.net.port_at(EVSE)

    def pev_sends(self, seq: int, w: float, var: float = 0.0) -> None:
        self.link.datagramReceived(power(seq, w, var), PEV)

    def close(self) -> None:
        self.contactor.set_allowed(True)
        d = self.contactor.close()
        self.net.advance(0.05)
        self.assertEqual(self.successResultOf(d), ContactorState.closed)

    def test_contactor_and_meter_share_one_endpoint(self) -> None:
        """A port's contactor and meter naming the same link share one endpoint and one
        socket bound to that address; a fake reactor of another test gets its own."""
        self.assertIs(self.meter.link, self.contactor.link)
        self.assertEqual([(p.host, p.port) for p in self.net.bound], [EVSE])
        other = build(self, "meter", {"link": "127.0.0.1:47101"}, FakeUDPNet())
        self.assertIsNot(other.link, self.link)

    def test_second_port_on_same_link_refused(self) -> None:
        """A second contactor started on a link already used by a running contactor is
        refused with a message naming the first, so two ports cannot share one cable."""
        second = build(self, "contactor", {"link": "127.0.0.1:47101"}, self.net)
        with self.assertRaises(ValueError) as caught:
            second.start()
        self.assertIn("already used by the contactor test.contactor", str(caught.exception))

    def test_meter_reads_zero_with_contactor_open(self) -> None:
        """With the contactor open the meter measures 0 W and 0 var, even while the PEV keeps
        reporting that it injects 5000 W with fresh frames; it still sees the grid's voltage
        and frequency (it sits on the grid side)."""
        for seq in range(1, 11):
            self.pev_sends(seq, 5000.0, 200.0)
            self.net.advance(0.1)
        self.assertEqual(self.contactor.state, ContactorState.open)
        self.assertTrue(self.recorder.samples)
        self.assertEqual({(s.active_power_w, s.reactive_power_var, s.voltage_v,
                           s.frequency_hz) for s in self.recorder.samples},
                         {(0.0, 0.0, 240.0, 60.0)})

    def test_meter_reads_pev_power_when_closed_and_fresh(self) -> None:
        """With the contactor closed the meter measures the PEV's latest reported output, in
        the DER sign convention (negative: charging), stamped with the clock's time."""
        self.close()
        self.pev_sends(1, 3600.0, -120.0)
        self.net.advance(0.1)
        self.assertEqual(self.recorder.samples[-1],
                         MeterSample(self.net.seconds(), 3600.0, -120.0, 240.0, 60.0))
        self.pev_sends(2, -7200.0)
        self.net.advance(0.1)
        self.assertEqual(self.recorder.samples[-1].active_power_w, -7200.0)

    def test_stale_pev_frames_measure_zero(self) -> None:
        """When the PEV's frames stop, its last report holds for stale_s (0.3 s) and then
        the meter measures 0 W: a silent PEV is not assumed to keep injecting."""
        self.close()
        self.pev_sends(1, 3600.0)
        sent_at = self.net.seconds()
        readings = []
        for _ in range(6):
            self.net.advance(0.1)
            readings.append((round(self.net.seconds() - sent_at, 3),
                             self.recorder.samples[-1].active_power_w))
        # (0.3 s itself is the boundary, left out: the clock's float sums straddle it)
        self.assertEqual(readings[:2] + readings[3:], [(0.1, 3600.0), (0.2, 3600.0),
                                                       (0.4, 0.0), (0.5, 0.0), (0.6, 0.0)])

    def test_opening_stops_measured_power_at_once(self) -> None:
        """Forbidding the contactor opens it and the very next sample is 0 W, although the
        PEV's last frame is still fresh."""
        self.close()
        self.pev_sends(1, 3600.0)
        self.net.advance(0.1)
        self.contactor.set_allowed(False)
        self.meter.sample()
        self.assertEqual(self.recorder.samples[-1].active_power_w, 0.0)

    def test_grid_frames_only_while_closed(self) -> None:
        """Open, the EVSE side sends nothing; closed, it sends a GRID frame to the PEV's
        address (learnt from its POWER frames) at once and every period (0.1 s), with
        increasing sequence numbers; opened again, it stops."""
        self.pev_sends(1, 0.0)
        self.net.advance(1)
        self.assertEqual(self.socket.sent, [])
        self.close()
        self.net.pump([0.1] * 3)
        frames = self.socket.frames()
        m = link_module()
        self.assertEqual(frames, [(m.GridFrame(seq, 240.0, 60.0), PEV) for seq in (1, 2, 3, 4)])
        self.contactor.set_allowed(False)
        self.net.advance(1)
        self.assertEqual(len(self.socket.sent), 4)

    def test_no_grid_frames_before_pev_heard(self) -> None:
        """Closed before the PEV side ever sent a frame, the EVSE side has nowhere to send the
        grid and sends nothing; the first POWER frame tells it where the PEV is."""
        self.close()
        self.net.advance(0.5)
        self.assertEqual(self.socket.sent, [])
        self.pev_sends(1, 0.0)
        self.net.advance(0.1)
        self.assertEqual([addr for _, addr in self.socket.sent], [PEV])

    def test_grid_settable_at_run_time(self) -> None:
        """meter.set_grid() changes the voltage and frequency in the meter's samples and in
        the GRID frames sent to the PEV from then on."""
        self.pev_sends(1, 0.0)
        self.close()
        self.meter.set_grid(voltage=253.0, frequency=61.2)
        self.net.advance(0.1)
        self.assertEqual(self.socket.frames()[-1][0].voltage_v, 253.0)
        self.assertEqual(self.socket.frames()[-1][0].frequency_hz, 61.2)
        self.assertEqual((self.recorder.samples[-1].voltage_v,
                          self.recorder.samples[-1].frequency_hz), (253.0, 61.2))
        self.assertRaises(ValueError, self.meter.set_grid, voltage=-1.0)

    def test_power_not_settable_with_link(self) -> None:
        """With a link the power through the port can only be measured, not set: a test or
        demo must make the PEV produce it."""
        self.assertRaises(AttributeError, setattr, self.meter, "power", (100.0, 0.0))

    def test_bad_frames_counted_and_ignored(self) -> None:
        """Garbage, truncated frames, a GRID frame (wrong direction) and a datagram from a
        non-loopback address are each counted as bad and change nothing: the meter keeps
        measuring the last good frame and keeps sampling."""
        self.close()
        self.pev_sends(1, 1000.0)
        for data, source in ((b"hello", PEV), (power(2, 9999.0)[:-1], PEV), (grid(3), PEV),
                             (power(4, 9999.0), ("192.0.2.7", 47102))):
            self.link.datagramReceived(data, source)
        self.assertEqual(self.link.stats["bad"], 4)
        self.assertEqual(self.link.last_bad, "not from a loopback address")
        self.net.advance(0.1)
        self.assertEqual(self.recorder.samples[-1].active_power_w, 1000.0)
        self.assertEqual(self.link.peer, PEV)

    def test_out_of_order_frames_ignored(self) -> None:
        """A POWER frame whose sequence number is not newer than the last one from the same
        PEV is dropped and counted; after the PEV was silent for stale_s, a restarted PEV
        starting again from 1 is accepted."""
        self.close()
        self.pev_sends(5, 1000.0)
        self.pev_sends(4, 9999.0)
        self.pev_sends(5, 9999.0)
        self.assertEqual(self.link.stats["out_of_order"], 2)
        self.assertEqual(self.meter.power, (1000.0, 0.0))
        self.net.advance(1)
        self.pev_sends(1, 2000.0)
        self.assertEqual(self.meter.power, (2000.0, 0.0))

    def test_stuck_contactor_keeps_grid_and_power(self) -> None:
        """A contactor made stuck at run time stays closed when forbidden: the grid keeps
        reaching the PEV and the meter keeps measuring its power, which is what the
        gatekeeper must detect. Cleared, the forbidden contactor opens at once."""
        self.pev_sends(1, 2000.0)
        self.close()
        self.contactor.set_stuck(True)
        self.contactor.set_allowed(False)
        before = len(self.socket.sent)
        self.pev_sends(2, 2000.0)
        self.net.advance(0.1)
        self.assertEqual(self.contactor.state, ContactorState.closed)
        self.assertEqual(len(self.socket.sent), before + 1)
        self.assertEqual(self.recorder.samples[-1].active_power_w, 2000.0)
        self.contactor.set_stuck(False)
        self.assertEqual(self.contactor.state, ContactorState.open)
        self.assertEqual(self.meter.power, (0.0, 0.0))

    def test_meter_faults_at_run_time(self) -> None:
        """set_silent(True) stops samples without an error; fail(reason) tells the listener
        the reason and stops samples; clear() resumes sampling."""
        self.meter.set_silent(True)
        count = len(self.recorder.samples)
        self.net.advance(1)
        self.assertEqual((len(self.recorder.samples), self.recorder.errors), (count, []))
        self.meter.set_silent(False)
        self.meter.fail("CT disconnected")
        self.net.advance(1)
        self.assertEqual((len(self.recorder.samples), self.recorder.errors),
                         (count, ["CT disconnected"]))
        self.assertEqual(self.meter.error, "CT disconnected")
        self.meter.clear()
        self.net.advance(0.1)
        self.assertEqual(len(self.recorder.samples), count + 1)
        self.assertIsNone(self.meter.error)

    def test_control_frames_refused_unless_enabled(self) -> None:
        """Without control = true a CONTROL frame is counted as refused and changes nothing."""
        self.link.datagramReceived(control("meter_silent", 1.0), TOOL)
        self.link.datagramReceived(control("contactor_stuck", 1.0), TOOL)
        self.assertEqual(self.link.stats["control_refused"], 2)
        self.assertFalse(self.meter.silent)
        self.assertFalse(self.contactor.stuck)

    def test_stop_releases_everything(self) -> None:
        """Stopping the meter keeps the socket for the contactor; stopping the contactor too
        closes it, and nothing is left on the clock."""
        self.close()
        self.meter.stop()
        self.assertTrue(self.socket.listening)
        self.contactor.stop()
        self.assertFalse(self.socket.listening)
        self.assertEqual(self.contactor.state, ContactorState.open)
        self.assertEqual(self.net.getDelayedCalls(), [])


class EVSEControlTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.net = FakeUDPNet()
        self.contactor = build(self, "contactor", {"link": "127.0.0.1:47101", "control": True},
                               self.net)
        self.meter = build(self, "meter", {"link": "127.0.0.1:47101", "control": True},
                           self.net)
        self.recorder = MeterRecorder()
        self.meter.add_listener(self.recorder)
        self.contactor.start()
        self.meter.start()
        self.link = self.meter.link

    def test_meter_faults_by_control_frame(self) -> None:
        """With control = true, meter-silent, meter-error and meter-clear frames from another
        loopback process silence the meter, make it report the frame's reason to its
        listeners, and clear both."""
        self.link.datagramReceived(control("meter_silent", 1.0), TOOL)
        self.assertTrue(self.meter.silent)
        self.link.datagramReceived(control("meter_error", 0.0, "CT disconnected"), TOOL)
        self.assertEqual(self.recorder.errors, ["CT disconnected"])
        self.link.datagramReceived(control("meter_clear"), TOOL)
        self.assertEqual((self.meter.silent, self.meter.error), (False, None))
        self.assertEqual(self.link.stats["control"], 3)

    def test_grid_and_stuck_by_control_frame(self) -> None:
        """grid-voltage and grid-frequency frames change the grid; contactor-stuck 1 welds
        the contactor so that forbidding leaves it closed."""
        self.link.datagramReceived(control("grid_voltage", 264.0), TOOL)
        self.link.datagramReceived(control("grid_frequency", 59.3), TOOL)
        self.assertEqual((self.meter.voltage, self.meter.frequency), (264.0, 59.3))
        self.contactor.set_allowed(True)
        self.contactor.close()
        self.net.advance(0.05)
        self.link.datagramReceived(control("contactor_stuck", 1.0), TOOL)
        self.contactor.set_allowed(False)
        self.assertEqual(self.contactor.state, ContactorState.closed)

    def test_rogue_frame_not_for_evse(self) -> None:
        """A rogue-w frame sent to the EVSE side (it is for the PEV) is refused and counted."""
        self.link.datagramReceived(control("rogue_w", 1000.0), TOOL)
        self.assertEqual(self.link.stats["control_refused"], 1)


class MeterConfigFaultTests(SynchronousTestCase):
    def test_silent_from_config(self) -> None:
        """silent = true: the meter never samples and reports no error (the consumer must
        notice the silence)."""
        net = FakeUDPNet()
        meter = build(self, "meter", {"silent": True}, net)
        recorder = MeterRecorder()
        meter.add_listener(recorder)
        meter.start()
        net.advance(1)
        self.assertEqual((recorder.samples, recorder.errors), ([], []))

    def test_error_from_config(self) -> None:
        """error = "..." : on start the meter reports that error to its listeners and never
        samples."""
        net = FakeUDPNet()
        meter = build(self, "meter", {"error": "bus timeout"}, net)
        recorder = MeterRecorder()
        meter.add_listener(recorder)
        meter.start()
        net.advance(1)
        self.assertEqual((recorder.samples, recorder.errors), ([], ["bus timeout"]))
        self.assertEqual(meter.error, "bus timeout")

    def test_stuck_from_config_with_link(self) -> None:
        """stuck = true on a linked contactor: once closed, forbidding leaves it closed and
        the link keeps carrying the grid."""
        net = FakeUDPNet()
        contactor = build(self, "contactor", {"link": "127.0.0.1:47101", "stuck": True}, net)
        contactor.start()
        self.failureResultOf(contactor.close(), ContactorRefused)
        contactor.set_allowed(True)
        contactor.close()
        net.advance(0.05)
        contactor.set_allowed(False)
        self.assertTrue(contactor.link.closed)


# --------------------------------------------------------------------------------------------
# PEV side: the inverter


class PEVSideTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.net = FakeUDPNet()
        self.inverter = build(self, "inverter", {
            "link": "127.0.0.1:47101", "bind": "127.0.0.1:47102", "max_w": 7200.0,
            "capacity_wh": 60000.0, "soc_pct": 80.0, "period": 0.1, "grid_timeout_s": 0.3,
        }, self.net)
        self.inverter.start()
        self.link = self.inverter.link
        self.socket = self.net.port_at(PEV)
        self.seq = 0

    def grid_for(self, seconds: float, v: float = 240.0, hz: float = 60.0) -> None:
        """The EVSE side sends GRID frames every 0.1 s for ``seconds``."""
        for _ in range(round(seconds / 0.1)):
            self.seq += 1
            self.last_grid_at = self.net.seconds()
            self.link.datagramReceived(grid(self.seq, v, hz), EVSE)
            self.net.advance(0.1)

    def sent_power(self) -> list[float]:
        return [frame.active_power_w for frame, _ in self.socket.frames()]

    def test_no_grid_no_power(self) -> None:
        """Without grid frames (EVSE contactor open) an energized inverter asked for 50 %
        produces nothing, reports grid voltage and frequency 0, and still sends POWER frames
        of 0 W to the EVSE side every period."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50})
        self.net.pump([0.1] * 5)
        reading = self.inverter.reading()
        self.assertEqual((reading.active_power_w, reading.voltage_v, reading.frequency_hz),
                         (0.0, 0.0, 0.0))
        self.assertEqual(self.sent_power(), [0.0] * 6)
        self.assertEqual({addr for _, addr in self.socket.sent}, {EVSE})

    def test_follows_controls_with_grid(self) -> None:
        """With fresh grid frames the inverter sees their voltage and frequency; it produces
        nothing until energized, then opModFixedW percent of max W, and its POWER frames
        carry that actual output. (60.03 Hz is inside the frequency droop's default 0.036 Hz
        deadband, so droop, ON by default per V2G-4.9.3-1, changes nothing.)"""
        self.grid_for(0.2, 244.0, 60.03)
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50})
        self.grid_for(0.2, 244.0, 60.03)
        reading = self.inverter.reading()
        self.assertEqual((reading.active_power_w, reading.voltage_v, reading.frequency_hz),
                         (3600.0, 244.0, 60.03))
        self.assertEqual(self.sent_power()[-1], 3600.0)
        self.inverter.apply({"opModEnergize": False, "opModFixedW": 50})
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)

    def test_max_lim_w_caps_discharge(self) -> None:
        """opModMaxLimW (percent of max W) caps discharging: 100 % asked, 25 % allowed gives
        1800 W; charging is not capped by it."""
        self.grid_for(0.1)
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 100, "opModMaxLimW": 25})
        self.assertEqual(self.inverter.reading().active_power_w, 1800.0)
        self.inverter.apply({"opModEnergize": True, "opModFixedW": -50, "opModMaxLimW": 25})
        self.assertEqual(self.inverter.reading().active_power_w, -3600.0)

    def test_grid_loss_stops_power_exactly(self) -> None:
        """When grid frames stop, the grid is gone grid_timeout_s (0.3 s) after the last one:
        power drops to 0 then, and the battery integrates only the energy that flowed (7200 W
        for 10.3 s)."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 100})
        self.grid_for(10.0)  # last frame at t = 9.9 s, then 0.1 s later
        self.assertEqual(self.inverter.reading().active_power_w, 7200.0)
        self.net.advance(0.15)  # t = 10.15 s: last frame + 0.25 s
        self.assertEqual(self.inverter.reading().active_power_w, 7200.0)
        self.net.advance(0.1)  # t = 10.25 s: last frame + 0.35 s
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)
        self.net.advance(100)
        lost_at = self.last_grid_at + 0.3
        self.assertAlmostEqual(lost_at, 10.2)
        soc = self.inverter.reading().state_of_charge_pct
        self.assertAlmostEqual(soc, 100 * (48000.0 - 7200.0 * lost_at / 3600) / 60000.0)

    def test_zero_voltage_is_no_grid(self) -> None:
        """GRID frames with 0 V (a grid outage set on the EVSE side) are no grid: the
        inverter stops producing."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 100})
        self.grid_for(0.2)
        self.grid_for(0.2, v=0.0)
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)

    def test_rogue_discharges_without_energize(self) -> None:
        """rogue_w set: with grid present the inverter discharges that power with no controls
        at all (opModEnergize absent), and without grid it still produces nothing."""
        self.inverter.set_rogue_w(5000.0)
        self.net.pump([0.1] * 5)
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)
        self.grid_for(0.2)
        self.assertEqual(self.inverter.reading().active_power_w, 5000.0)
        self.assertEqual(self.sent_power()[-1], 5000.0)
        self.inverter.set_rogue_w(0.0)
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)

    def test_grid_only_from_evse_side(self) -> None:
        """A GRID frame from any address but the configured EVSE side is a bad frame: it does
        not give the inverter grid."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 100})
        self.link.datagramReceived(grid(1), TOOL)
        self.link.datagramReceived(power(2, 1.0), EVSE)
        self.assertEqual(self.link.stats["bad"], 2)
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)

    def test_stop_releases_everything(self) -> None:
        """stop() de-energizes, closes the socket and leaves nothing on the clock."""
        self.grid_for(0.1)
        self.inverter.stop()
        self.assertFalse(self.socket.listening)
        self.assertEqual(self.net.getDelayedCalls(), [])
        self.assertEqual(self.inverter.controls, {})

    def test_default_bind_is_ephemeral_same_family(self) -> None:
        """Without bind, the PEV end binds the link's loopback host on any free port; an IPv6
        link gets an IPv6 bind."""
        net = FakeUDPNet()
        inverter = build(self, "inverter", {"link": "[::1]:47101"}, net)
        inverter.start()
        self.assertEqual([(p.host, p.port) for p in net.bound], [("::1", 50001)])
        self.assertEqual(inverter.link.address, ("::1", 50001))

    def test_rogue_by_control_frame(self) -> None:
        """With control = true, a rogue-w CONTROL frame makes a running inverter rogue."""
        net = FakeUDPNet()
        inverter = build(self, "inverter", {"link": "127.0.0.1:47101",
                                            "bind": "127.0.0.1:47102", "control": True}, net)
        inverter.start()
        inverter.link.datagramReceived(control("rogue_w", 2500.0), TOOL)
        self.assertEqual(inverter.rogue_w, 2500.0)


# --------------------------------------------------------------------------------------------
# Both ends, frames carried by the fake net


class WireTests(SynchronousTestCase):
    """The EVSE's contactor and meter and the PEV's inverter on one fake net: every effect
    goes through encoded frames between the two bound sockets."""

    def setUp(self) -> None:
        self.net = FakeUDPNet()
        self.contactor = build(self, "contactor", {"link": "127.0.0.1:47101"}, self.net)
        self.meter = build(self, "meter", {"link": "127.0.0.1:47101"}, self.net)
        self.recorder = MeterRecorder()
        self.meter.add_listener(self.recorder)
        self.inverter = build(self, "inverter", {"link": "127.0.0.1:47101",
                                                 "bind": "127.0.0.1:47102"}, self.net)
        for component in (self.contactor, self.meter, self.inverter):
            component.start()

    def measured(self) -> float:
        return self.recorder.samples[-1].active_power_w

    def test_energy_flows_only_through_closed_contactor(self) -> None:
        """An energized PEV asked for 50 % produces nothing and the meter reads 0 W while the
        contactor is open; once closed, the grid frames reach the PEV, it produces 3600 W and
        the meter measures 3600 W; opened, the meter reads 0 W at once and the PEV loses the
        grid within its grid timeout."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50})
        self.net.pump([0.1] * 10)
        self.assertEqual((self.measured(), self.inverter.reading().active_power_w), (0.0, 0.0))
        self.contactor.set_allowed(True)
        self.contactor.close()
        self.net.pump([0.05] + [0.1] * 5)
        self.assertEqual(self.inverter.reading().voltage_v, 240.0)
        self.assertEqual((self.measured(), self.inverter.reading().active_power_w),
                         (3600.0, 3600.0))
        self.contactor.set_allowed(False)
        self.meter.sample()
        self.assertEqual(self.measured(), 0.0)
        self.net.pump([0.1] * 4)
        reading = self.inverter.reading()
        self.assertEqual((reading.active_power_w, reading.voltage_v), (0.0, 0.0))

    def test_rogue_pev_measured_only_when_grid_present(self) -> None:
        """A rogue PEV (discharging without any control) is measured as 0 W behind an open
        contactor; with the contactor stuck closed and forbidden, the meter measures its
        discharge: the power the gatekeeper must see as unauthorized."""
        self.inverter.set_rogue_w(4000.0)
        self.net.pump([0.1] * 5)
        self.assertEqual(self.measured(), 0.0)
        self.contactor.set_allowed(True)
        self.contactor.close()
        self.contactor.set_stuck(True)
        self.net.pump([0.05] + [0.1] * 5)
        self.contactor.set_allowed(False)
        self.net.pump([0.1] * 5)
        self.assertEqual(self.contactor.state, ContactorState.closed)
        self.assertEqual(self.measured(), 4000.0)

    def test_grid_voltage_change_reaches_pev(self) -> None:
        """A grid voltage and frequency set on the EVSE's meter at run time are what the PEV's
        inverter reports within one period."""
        self.contactor.set_allowed(True)
        self.contactor.close()
        self.net.pump([0.05] + [0.1] * 3)
        self.meter.set_grid(voltage=258.0, frequency=59.5)
        self.net.pump([0.1] * 2)
        reading = self.inverter.reading()
        self.assertEqual((reading.voltage_v, reading.frequency_hz), (258.0, 59.5))
