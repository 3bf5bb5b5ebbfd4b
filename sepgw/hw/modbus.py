"""A small Modbus client on Twisted: Modbus/TCP (MBAP) and Modbus RTU framing, over TCP or a
serial line, for the hardware plugins.

One request is on the wire at a time (what RTU needs, and what small TCP devices like best);
each has a deadline on the injected reactor. A request fails with a :class:`ModbusError` whose
text names the device, the request and the reason: :class:`ModbusTimeout` (no answer in time),
:class:`ModbusExceptionResponse` (the device answered with an exception code),
:class:`ModbusFrameError` (bad CRC, malformed or unexpected answer) or
:class:`ModbusConnectionError` (cannot connect, connection lost). The connection is opened on
the first request and again after it is lost.

Why not pymodbus: see ``docs/hardware.md`` (it is asyncio; this runs on the reactor with no
thread, and its timeouts are testable on a fake clock). The serial line needs pyserial (the
``modbus`` extra), imported only when a serial device is opened.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from sepgw.config.schema import Key

EXTRA_HINT = "pip install sepgw[modbus]"
"""What to install for the optional hardware dependencies."""

EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
"""Modbus exception codes (Modbus Application Protocol V1.1b3, section 7)."""

READ_COILS, READ_DISCRETE_INPUTS, READ_HOLDING_REGISTERS = 1, 2, 3
WRITE_SINGLE_COIL, WRITE_MULTIPLE_REGISTERS = 5, 16
MAX_READ = 125
"""The most registers one read request may ask for."""


class ModbusError(Exception):
    """A Modbus request failed; the message names the device, the request and why."""


class ModbusTimeout(ModbusError):
    """No answer within the timeout."""


class ModbusExceptionResponse(ModbusError):
    """The device answered with a Modbus exception code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ModbusFrameError(ModbusError):
    """A bad CRC, a malformed answer or one that does not match the request."""


class ModbusConnectionError(ModbusError):
    """Cannot connect to the device, or the connection was lost."""


def illegal_address(error: Exception) -> str | None:
    """'exception 2' when ``error`` is an illegal-data-address exception response (nothing
    at that address), else None."""
    if isinstance(error, ModbusExceptionResponse) and error.code == 2:
        return "exception 2"
    return None


def crc16(data: bytes) -> int:
    """The Modbus RTU CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """An RTU frame: unit, PDU, CRC (low byte first)."""
    body = bytes([unit]) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_length(buffer: bytes) -> int | None:
    """The length of the RTU answer at the start of ``buffer``, or None until it is known.
    Raises ModbusFrameError for a function code this client never asks for."""
    if len(buffer) < 2:
        return None
    fc = buffer[1]
    if fc & 0x80:
        return 5
    if fc in (READ_COILS, READ_DISCRETE_INPUTS, READ_HOLDING_REGISTERS):
        return None if len(buffer) < 3 else 5 + buffer[2]
    if fc in (WRITE_SINGLE_COIL, WRITE_MULTIPLE_REGISTERS):
        return 8
    raise ModbusFrameError(f"unexpected function code {fc} in answer {buffer[:8].hex()}")


def _bits(data: bytes, count: int) -> list[bool]:
    return [bool(data[i // 8] >> (i % 8) & 1) for i in range(count)]


@dataclass
class _Pending:
    fc: int
    pdu: bytes
    what: str
    parse: Callable[[bytes], Any]
    deferred: Deferred[Any] = field(default_factory=Deferred)
    tid: int = 0
    timer: Any = None
    sent: bool = False


class _Wire(Protocol):
    """The byte stream to the device; everything is decided by the client."""

    def __init__(self, client: "ModbusClient") -> None:
        self.client = client

    def dataReceived(self, data: bytes) -> None:
        self.client._received(self, data)

    def connectionLost(self, reason: Failure = Failure(Exception("lost"))) -> None:
        self.client._lost(self, reason)


class ModbusClient:
    """Requests to one Modbus device (one unit id) over one connection.

    ``connect`` connects a protocol to the device and returns a Deferred (see
    :func:`tcp_connector`, :func:`serial_connector`); ``framing`` is ``"tcp"`` (MBAP header)
    or ``"rtu"`` (unit, PDU, CRC). ``device`` describes the device in messages.
    """

    def __init__(self, reactor: Any, device: str, connect: Callable[[Protocol], Deferred[Any]],
                 framing: str = "tcp", unit: int = 1, timeout: float = 1.0) -> None:
        if framing not in ("tcp", "rtu"):
            raise ValueError(f"unknown Modbus framing {framing!r}")
        self.reactor = reactor
        self.device = device
        self.unit = unit
        self.timeout = timeout
        self._connect = connect
        self._framing = framing
        self._queue: deque[_Pending] = deque()
        self._current: _Pending | None = None
        self._wire: _Wire | None = None
        self._connecting: Deferred[Any] | None = None
        self._buffer = b""
        self._tid = 0
        self._closed = False
        self._lost_waiters: list[Deferred[None]] = []

    # -- requests ------------------------------------------------------------------------

    def read_holding_registers(self, address: int, count: int) -> Deferred[list[int]]:
        """Read ``count`` holding registers from ``address`` (function 3), in requests of
        at most 125 registers (the protocol's limit) when there are more."""
        if count > MAX_READ:
            first = self.read_holding_registers(address, MAX_READ)
            rest = self.read_holding_registers(address + MAX_READ, count - MAX_READ)
            first.addCallback(lambda head: rest.addCallback(lambda tail: head + tail))
            first.addErrback(lambda f: (rest.addErrback(lambda _: None), f)[1])
            return first
        return self._read_registers(address, count)

    def _read_registers(self, address: int, count: int) -> Deferred[list[int]]:
        def parse(pdu: bytes) -> list[int]:
            if len(pdu) != 2 + 2 * count or pdu[1] != 2 * count:
                raise ValueError(f"{len(pdu) - 2} data bytes for {count} registers")
            return list(struct.unpack(f">{count}H", pdu[2:]))
        return self._submit(READ_HOLDING_REGISTERS, struct.pack(">HH", address, count),
                            f"reading holding registers {address}..{address + count - 1}",
                            parse)

    def write_registers(self, address: int, values: list[int]) -> Deferred[None]:
        """Write holding registers from ``address`` (function 16)."""
        n = len(values)
        body = struct.pack(f">HHB{n}H", address, n, 2 * n, *[v & 0xFFFF for v in values])

        def parse(pdu: bytes) -> None:
            if pdu[1:5] != body[:4]:
                raise ValueError(f"answer {pdu.hex()} does not echo the request")
        shown = ", ".join(str(v) for v in values)
        return self._submit(WRITE_MULTIPLE_REGISTERS, body,
                            f"writing [{shown}] to holding registers {address}..{address + n - 1}",
                            parse)

    def read_coils(self, address: int, count: int) -> Deferred[list[bool]]:
        """Read ``count`` coils from ``address`` (function 1)."""
        return self._read_bits(READ_COILS, "coils", address, count)

    def read_discrete_inputs(self, address: int, count: int) -> Deferred[list[bool]]:
        """Read ``count`` discrete inputs from ``address`` (function 2)."""
        return self._read_bits(READ_DISCRETE_INPUTS, "discrete inputs", address, count)

    def write_coil(self, address: int, value: bool) -> Deferred[None]:
        """Switch the coil at ``address`` on or off (function 5)."""
        body = struct.pack(">HH", address, 0xFF00 if value else 0)

        def parse(pdu: bytes) -> None:
            if pdu[1:] != body:
                raise ValueError(f"answer {pdu.hex()} does not echo the request")
        return self._submit(WRITE_SINGLE_COIL, body,
                            f"writing coil {address} {'on' if value else 'off'}", parse)

    def _read_bits(self, fc: int, kind: str, address: int, count: int) -> Deferred[list[bool]]:
        def parse(pdu: bytes) -> list[bool]:
            if pdu[1] != (count + 7) // 8 or len(pdu) != 2 + pdu[1]:
                raise ValueError(f"{len(pdu) - 2} data bytes for {count} bits")
            return _bits(pdu[2:], count)
        return self._submit(fc, struct.pack(">HH", address, count),
                            f"reading {kind} {address}..{address + count - 1}", parse)

    def close(self) -> Deferred[None]:
        """Fail what is pending and close the connection; fires once it is closed."""
        self._closed = True
        self._fail_all(ModbusConnectionError(f"{self.device}: connection closed"))
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.cancel()
        if self._wire is None or self._wire.transport is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost_waiters.append(d)
        self._wire.transport.loseConnection()
        return d

    # -- the queue -----------------------------------------------------------------------

    def _submit(self, fc: int, body: bytes, what: str, parse: Callable[[bytes], Any]) -> Any:
        pending = _Pending(fc, bytes([fc]) + body, what, parse)
        pending.deferred = Deferred(lambda d: self._cancel(pending))
        if self._closed:
            pending.deferred.errback(ModbusConnectionError(f"{self.device}: {what}: closed"))
            return pending.deferred
        self._queue.append(pending)
        self._pump()
        return pending.deferred

    def _cancel(self, pending: _Pending) -> None:
        """Cancelling a queued request withdraws it; one on the wire just stops waiting."""
        if pending in self._queue:
            self._queue.remove(pending)

    def _pump(self) -> None:
        while self._current is None and self._queue:
            pending = self._queue.popleft()
            if pending.deferred.called:
                continue
            self._current = pending
            pending.timer = self.reactor.callLater(self.timeout, self._timed_out, pending)
            if self._wire is not None:
                self._send(pending)
            elif self._connecting is None:
                self._open()

    def _open(self) -> None:
        wire = _Wire(self)
        d = self._connect(wire)
        self._connecting = d

        def connected(_: Any) -> None:
            if self._connecting is not d:
                if wire.transport is not None:
                    wire.transport.loseConnection()  # given up on meanwhile
                return
            self._connecting = None
            self._wire = wire
            self._buffer = b""
            if self._current is not None and not self._current.sent:
                self._send(self._current)

        def failed(f: Failure) -> None:
            if self._connecting is not d:
                return  # cancelled by a timeout or close(): reported there
            self._connecting = None
            if self._current is not None:
                self._finish(self._current, ModbusConnectionError(
                    f"{self.device}: {self._current.what}: cannot connect: "
                    f"{f.getErrorMessage()}"))
        d.addCallbacks(connected, failed)

    def _send(self, pending: _Pending) -> None:
        assert self._wire is not None and self._wire.transport is not None
        pending.sent = True
        if self._framing == "tcp":
            self._tid = (self._tid + 1) & 0xFFFF
            pending.tid = self._tid
            frame = struct.pack(">HHHB", pending.tid, 0, len(pending.pdu) + 1,
                                self.unit) + pending.pdu
        else:
            self._buffer = b""
            frame = rtu_frame(self.unit, pending.pdu)
        self._wire.transport.write(frame)

    def _timed_out(self, pending: _Pending) -> None:
        pending.timer = None
        if self._connecting is not None and not pending.sent:
            connecting, self._connecting = self._connecting, None
            connecting.cancel()
        self._finish(pending, ModbusTimeout(
            f"{self.device}: {pending.what}: no answer within {self.timeout:g} s"))
        self._buffer = b""  # a late RTU answer must not be taken for the next one

    def _finish(self, pending: _Pending, result: Any) -> None:
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        if self._current is pending:
            self._current = None
        if not pending.deferred.called:
            if isinstance(result, Exception):
                pending.deferred.errback(result)
            else:
                pending.deferred.callback(result)
        self._pump()

    def _fail_all(self, error: ModbusError) -> None:
        queued, self._queue = list(self._queue), deque()
        current, self._current = self._current, None
        for pending in ([current] if current is not None else []) + queued:
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            if not pending.deferred.called:
                pending.deferred.errback(type(error)(f"{error}: {pending.what}"))

    # -- the wire ------------------------------------------------------------------------

    def _received(self, wire: _Wire, data: bytes) -> None:
        if wire is not self._wire:
            return
        self._buffer += data
        try:
            for unit, tid, pdu in self._frames():
                self._answer(unit, tid, pdu)
        except ModbusFrameError as e:
            self._buffer = b""
            if self._current is not None:
                self._finish(self._current, ModbusFrameError(
                    f"{self.device}: {self._current.what}: {e}"))

    def _frames(self) -> Iterator[tuple[int, int, bytes]]:
        while self._buffer:
            if self._framing == "tcp":
                if len(self._buffer) < 7:
                    return
                tid, protocol, length, unit = struct.unpack(">HHHB", self._buffer[:7])
                if protocol != 0 or length < 2:
                    raise ModbusFrameError(f"bad MBAP header {self._buffer[:7].hex()}")
                if len(self._buffer) < 6 + length:
                    return
                pdu, self._buffer = self._buffer[7:6 + length], self._buffer[6 + length:]
                yield unit, tid, pdu
            else:
                if self._current is None:
                    self._buffer = b""  # nobody asked: noise or a late answer
                    return
                n = rtu_length(self._buffer)
                if n is None or len(self._buffer) < n:
                    return
                frame, self._buffer = self._buffer[:n], self._buffer[n:]
                if crc16(frame[:-2]) != struct.unpack("<H", frame[-2:])[0]:
                    raise ModbusFrameError(f"CRC error in answer {frame.hex()}")
                yield frame[0], 0, frame[1:-2]

    def _answer(self, unit: int, tid: int, pdu: bytes) -> None:
        pending = self._current
        if pending is None or not pending.sent or (self._framing == "tcp" and tid != pending.tid):
            return  # a late answer to a request that timed out
        if unit != self.unit:
            raise ModbusFrameError(f"answer from unit {unit}, expected {self.unit}")
        if pdu[0] == pending.fc | 0x80 and len(pdu) >= 2:
            code = pdu[1]
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            self._finish(pending, ModbusExceptionResponse(
                f"{self.device}: {pending.what}: Modbus exception {code} ({name})", code))
            return
        if pdu[0] != pending.fc:
            raise ModbusFrameError(f"answer with function {pdu[0]} to function {pending.fc}")
        try:
            result = pending.parse(pdu)
        except (ValueError, IndexError, struct.error) as e:
            raise ModbusFrameError(f"malformed answer: {e}") from None
        self._finish(pending, result)

    def _lost(self, wire: _Wire, reason: Failure) -> None:
        if wire is not self._wire:
            return
        self._wire = None
        self._buffer = b""
        waiters, self._lost_waiters = self._lost_waiters, []
        for d in waiters:
            d.callback(None)
        pending = self._current
        if pending is not None and pending.sent:
            self._finish(pending, ModbusConnectionError(
                f"{self.device}: {pending.what}: connection lost: {reason.getErrorMessage()}"))


# -- connecting ------------------------------------------------------------------------------


def tcp_connector(reactor: Any, host: str, port: int,
                  timeout: float) -> Callable[[Protocol], Deferred[Any]]:
    """Connect over TCP (IPv4 or IPv6 literal, or a host name)."""
    from twisted.internet.endpoints import HostnameEndpoint, connectProtocol

    def connect(protocol: Protocol) -> Deferred[Any]:
        endpoint = HostnameEndpoint(reactor, host, port, timeout=max(1, int(timeout + 0.999)))
        return connectProtocol(endpoint, protocol)
    return connect


def serial_connector(reactor: Any, device: str, baudrate: int, parity: str,
                     stopbits: int) -> Callable[[Protocol], Deferred[Any]]:
    """Open a serial line (needs pyserial, the ``modbus`` extra)."""
    require_pyserial(device)

    def connect(protocol: Protocol) -> Deferred[Any]:
        from twisted.internet.serialport import SerialPort
        try:
            SerialPort(protocol, device, reactor, baudrate=baudrate, parity=parity,
                       stopbits=stopbits)
        except Exception as e:  # serial.SerialException, OSError
            from twisted.internet.defer import fail
            return fail(ModbusConnectionError(f"cannot open {device}: {e}"))
        return succeed(protocol)
    return connect


def require_pyserial(device: str) -> None:
    """Raise a clear error naming the extra when pyserial is missing."""
    try:
        import serial  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        raise RuntimeError(f"Modbus RTU on {device} needs pyserial, which is not installed: "
                           f"{EXTRA_HINT}") from None


# -- configuration ---------------------------------------------------------------------------


def connection_options(default_unit: int = 1) -> dict[str, Key]:
    """The configuration keys of a Modbus connection, shared by the Modbus plugins."""
    return {
        "transport": Key("str", "tcp", "How the device is reached: 'tcp' (Modbus/TCP), "
                                       "'rtu-tcp' (RTU frames through a TCP serial gateway) "
                                       "or 'rtu' (RTU on a serial line; needs "
                                       f"`{EXTRA_HINT}`).",
                         choices=("tcp", "rtu-tcp", "rtu")),
        "host": Key("str", "", "Device (or gateway) address for tcp and rtu-tcp."),
        "port": Key("int", 502, "TCP port for tcp and rtu-tcp.", min=1, max=65535),
        "device": Key("str", "", "Serial device for rtu, e.g. /dev/ttyUSB0."),
        "baudrate": Key("int", 9600, "Serial line speed for rtu, bit/s.", min=300),
        "parity": Key("str", "E", "Serial parity for rtu: 'N', 'E' or 'O' (8 data bits).",
                      choices=("N", "E", "O")),
        "stopbits": Key("int", 1, "Serial stop bits for rtu.", choices=(1, 2)),
        "unit": Key("int", default_unit, "Modbus unit id (slave address) of the device.",
                    min=0, max=247),
        "timeout": Key("float", 1.0, "Seconds to wait for each answer (and to connect).",
                       min=0.05, max=30),
    }


def connection_rules(config: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Whole-section checks of :func:`connection_options`."""
    if config["transport"] in ("tcp", "rtu-tcp") and not config["host"]:
        yield "host", f"required with transport '{config['transport']}'"
    if config["transport"] == "rtu" and not config["device"]:
        yield "device", "required with transport 'rtu'"


def describe(config: Mapping[str, Any]) -> str:
    """The device as named in messages, e.g. ``modbus tcp 10.0.0.5:502 unit 1``."""
    if config["transport"] == "rtu":
        where = config["device"]
    else:
        host = config["host"]
        where = f"[{host}]:{config['port']}" if ":" in host else f"{host}:{config['port']}"
    return f"modbus {config['transport']} {where} unit {config['unit']}"


def client_from_config(reactor: Any, config: Mapping[str, Any]) -> ModbusClient:
    """A client for the connection configured by :func:`connection_options`."""
    device = describe(config)
    if config["transport"] == "rtu":
        connect = serial_connector(reactor, config["device"], config["baudrate"],
                                   config["parity"], config["stopbits"])
    else:
        connect = tcp_connector(reactor, config["host"], config["port"], config["timeout"])
    framing = "tcp" if config["transport"] == "tcp" else "rtu"
    return ModbusClient(reactor, device, connect, framing, config["unit"], config["timeout"])
