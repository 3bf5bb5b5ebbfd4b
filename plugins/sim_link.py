"""Helper module (no plugin factory): the simulated electrical link between an EVSE port and a
PEV, carried over UDP datagrams on the loopback interface.

The EVSE (``twistd sepgw``) and the PEV emulator (``twistd sepgw-pev``) are two processes. The
cable between them is simulated by small versioned frames:

* the EVSE side (:class:`GridSide`, shared by one port's simulated contactor and meter) binds a
  configured loopback address; while the contactor is closed it sends a GRID frame (grid
  voltage and frequency) to the PEV every ``period`` seconds, and while it is open it sends
  nothing, so the PEV sees no grid;
* the PEV side (:class:`PEVSide`, owned by the simulated inverter) sends a POWER frame with the
  inverter's actual output (W and var, DER sign convention: positive discharges to the grid)
  to the EVSE side every ``period`` seconds;
* the EVSE's meter measures the PEV's power only while the contactor is closed and the PEV's
  frames are fresh, and 0 W otherwise, whatever the PEV says over 2030.5 or over this link;
* CONTROL frames inject faults into a running process (meter silent or in error, contactor
  stuck, grid voltage and frequency, rogue discharge); each component accepts them only when
  its ``control`` option is true.

Frame layout (network byte order), see ``docs/simulation.md``::

    header   magic "SGWL" (4 bytes) | version u8 = 1 | kind u8 | sequence u32
    GRID     (kind 1, EVSE -> PEV)  voltage_v f64 | frequency_hz f64               26 bytes
    POWER    (kind 2, PEV -> EVSE)  active_power_w f64 | reactive_power_var f64    26 bytes
    CONTROL  (kind 3, tool -> any)  op u8 | value f64 | text length u8 | UTF-8 text

:func:`encode` and :func:`decode` are pure; :func:`decode` is strict and raises
:class:`FrameError` for anything not exactly as above. Endpoints count and log bad frames and
never raise from ``datagramReceived``.

Endpoints on the EVSE side are kept in a per-reactor registry keyed by the bind address
(:func:`grid_side`), created on first use: a port's contactor and meter configured with the same
``link`` address share one endpoint, hence one socket.

Run as a script to inject a fault into a running process::

    .venv/bin/python plugins/sim_link.py 127.0.0.1:47101 meter-silent 1
    .venv/bin/python plugins/sim_link.py 127.0.0.1:47101 meter-error 0 "CT disconnected"
"""

from __future__ import annotations

import enum
import ipaddress
import math
import struct
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Union

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

MAGIC = b"SGWL"
VERSION = 1
HEADER = struct.Struct("!4sBBI")
VALUES = struct.Struct("!dd")
CONTROL = struct.Struct("!BdB")
MAX_TEXT = 200
"""Longest CONTROL text, in UTF-8 bytes."""
MAX_POWER = 1e7
"""Largest |W| or |var| a POWER frame may carry."""
SEQ_MOD = 1 << 32


class Kind(enum.IntEnum):
    """Frame kinds."""

    grid = 1
    power = 2
    control = 3


class Op(enum.IntEnum):
    """CONTROL operations; the value's meaning depends on the operation."""

    meter_silent = 1
    """value 1: the meter stops sampling; 0: it samples again."""
    meter_error = 2
    """The meter reports the frame's text as its error (value ignored, must be 0)."""
    meter_clear = 3
    """The meter's error is cleared and it is no longer silent (value must be 0)."""
    contactor_stuck = 4
    """value 1: the contactor is stuck (once closed, it cannot open); 0: it works again."""
    grid_voltage = 5
    """value: the grid voltage, V (>= 0)."""
    grid_frequency = 6
    """value: the grid frequency, Hz (>= 0)."""
    rogue_w = 7
    """value: PEV discharges this many W whenever it sees grid, ignoring controls; 0 = off."""


OP_NAMES = {op: op.name.replace("_", "-") for op in Op}
"""Command-line spelling of each operation (``meter-silent`` ...)."""


@dataclass(frozen=True)
class GridFrame:
    """EVSE to PEV: the contactor is closed and this is the grid the PEV sees."""

    seq: int
    voltage_v: float
    frequency_hz: float


@dataclass(frozen=True)
class PowerFrame:
    """PEV to EVSE: the PEV's actual output, DER sign convention (positive discharges)."""

    seq: int
    active_power_w: float
    reactive_power_var: float


@dataclass(frozen=True)
class ControlFrame:
    """A fault-injection or settings command for a running endpoint."""

    seq: int
    op: Op
    value: float = 0.0
    text: str = ""


Frame = Union[GridFrame, PowerFrame, ControlFrame]


class FrameError(ValueError):
    """A datagram is not a valid frame; the message says why."""


def _check_control(op: Op, value: float, text: str) -> None:
    if op in (Op.meter_silent, Op.contactor_stuck) and value not in (0.0, 1.0):
        raise FrameError(f"{OP_NAMES[op]} value must be 0 or 1, not {value!r}")
    if op in (Op.meter_error, Op.meter_clear) and value != 0.0:
        raise FrameError(f"{OP_NAMES[op]} value must be 0, not {value!r}")
    if op in (Op.grid_voltage, Op.grid_frequency) and value < 0:
        raise FrameError(f"{OP_NAMES[op]} value must not be negative, not {value!r}")
    if op is Op.rogue_w and abs(value) > MAX_POWER:
        raise FrameError(f"rogue-w value {value!r} is out of range")
    if op is Op.meter_error and not text:
        raise FrameError("meter-error needs a text (the error reason)")
    if op is not Op.meter_error and text:
        raise FrameError(f"{OP_NAMES[op]} takes no text")


def _check_values(kind: Kind, a: float, b: float) -> None:
    if not (math.isfinite(a) and math.isfinite(b)):
        raise FrameError(f"{kind.name} frame carries a non-finite value")
    if kind is Kind.grid:
        if not 0.0 <= a <= 100000.0:
            raise FrameError(f"grid voltage {a!r} V is out of range")
        if not 0.0 <= b <= 1000.0:
            raise FrameError(f"grid frequency {b!r} Hz is out of range")
    elif abs(a) > MAX_POWER or abs(b) > MAX_POWER:
        raise FrameError(f"power ({a!r} W, {b!r} var) is out of range")


def encode(frame: Frame) -> bytes:
    """The datagram for ``frame``; raises FrameError if it could not be decoded again."""
    seq = frame.seq % SEQ_MOD
    if isinstance(frame, GridFrame):
        _check_values(Kind.grid, frame.voltage_v, frame.frequency_hz)
        return (HEADER.pack(MAGIC, VERSION, Kind.grid, seq)
                + VALUES.pack(frame.voltage_v, frame.frequency_hz))
    if isinstance(frame, PowerFrame):
        _check_values(Kind.power, frame.active_power_w, frame.reactive_power_var)
        return (HEADER.pack(MAGIC, VERSION, Kind.power, seq)
                + VALUES.pack(frame.active_power_w, frame.reactive_power_var))
    if isinstance(frame, ControlFrame):
        op = Op(frame.op)
        value = float(frame.value)
        if not math.isfinite(value):
            raise FrameError("control value is not finite")
        _check_control(op, value, frame.text)
        text = frame.text.encode("utf-8")
        if len(text) > MAX_TEXT:
            raise FrameError(f"control text is longer than {MAX_TEXT} bytes")
        return (HEADER.pack(MAGIC, VERSION, Kind.control, seq)
                + CONTROL.pack(op, value, len(text)) + text)
    raise FrameError(f"not a frame: {frame!r}")


def decode(data: bytes) -> Frame:
    """The frame in ``data``; raises FrameError unless it is exactly one valid frame."""
    if len(data) < HEADER.size:
        raise FrameError(f"{len(data)} bytes is shorter than a frame header")
    magic, version, kind_number, seq = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r}")
    if version != VERSION:
        raise FrameError(f"unsupported version {version}")
    try:
        kind = Kind(kind_number)
    except ValueError:
        raise FrameError(f"unknown frame kind {kind_number}") from None
    body = data[HEADER.size:]
    if kind in (Kind.grid, Kind.power):
        if len(body) != VALUES.size:
            raise FrameError(f"{kind.name} frame body is {len(body)} bytes, not {VALUES.size}")
        a, b = VALUES.unpack(body)
        _check_values(kind, a, b)
        return GridFrame(seq, a, b) if kind is Kind.grid else PowerFrame(seq, a, b)
    if len(body) < CONTROL.size:
        raise FrameError(f"control frame body is {len(body)} bytes, too short")
    op_number, value, length = CONTROL.unpack_from(body)
    text_bytes = body[CONTROL.size:]
    if len(text_bytes) != length:
        raise FrameError(f"control text is {len(text_bytes)} bytes, header says {length}")
    if length > MAX_TEXT:
        raise FrameError(f"control text is longer than {MAX_TEXT} bytes")
    try:
        op = Op(op_number)
    except ValueError:
        raise FrameError(f"unknown control operation {op_number}") from None
    if not math.isfinite(value):
        raise FrameError("control value is not finite")
    try:
        text = text_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("control text is not UTF-8") from None
    _check_control(op, value, text)
    return ControlFrame(seq, op, value, text)


def newer(seq: int, last: int) -> bool:
    """True when ``seq`` comes after ``last`` in sequence-number space (mod 2**32)."""
    return 0 < (seq - last) % SEQ_MOD < SEQ_MOD // 2


# --------------------------------------------------------------------------------------------
# Addresses


def parse_address(text: str, allow_port_zero: bool = False) -> tuple[str, int]:
    """``"127.0.0.1:47101"`` or ``"[::1]:47101"`` as (host, port); ValueError if it is not a
    loopback address with a port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT (IPv6: [::1]:PORT)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(f"{text!r}: brackets are for IPv6 addresses only")
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:47101")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    if not ip.is_loopback:
        raise ValueError(f"{text!r}: the simulated link runs on loopback only "
                         "(127.0.0.0/8 or ::1)")
    if not port_text.isdigit():
        raise ValueError(f"{text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not (0 if allow_port_zero else 1) <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return str(ip), port


def format_address(host: str, port: int) -> str:
    """The inverse of :func:`parse_address`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def address_validator(allow_port_zero: bool = False) -> Callable[[str], str | None]:
    """A config Key validator: None when the value is empty or a loopback HOST:PORT."""

    def check(value: str) -> str | None:
        if value == "":
            return None
        try:
            parse_address(value, allow_port_zero)
        except ValueError as e:
            return str(e)
        return None

    return check


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------
# Endpoints


class _Endpoint(DatagramProtocol):
    """One bound UDP socket of the link: reference-counted start/stop, strict frame parsing,
    counters, and CONTROL dispatch to the handlers components registered."""

    log = Logger()
    noisy = False  # endpoints log their own binding, with the link's name
    accepted: tuple[Kind, ...] = ()
    bad_log_interval = 1.0
    """At most one log line per this many seconds about bad frames (all are counted)."""

    def __init__(self, reactor: Any, bind: tuple[str, int], name: str) -> None:
        self.reactor = reactor
        self.bind = bind
        self.name = name
        self.stats = {"received": 0, "sent": 0, "bad": 0, "out_of_order": 0, "control": 0,
                      "control_refused": 0, "send_errors": 0}
        self.last_bad: str | None = None
        self._last_bad_log: float | None = None
        self._users = 0
        self._port: Any = None
        self._seq = 0
        self._handlers: dict[Op, Callable[[ControlFrame], None]] = {}

    @property
    def listening(self) -> bool:
        return self._port is not None

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when bound to port 0)."""
        if self._port is not None:
            host = self._port.getHost()
            return host.host, host.port
        return self.bind

    def acquire(self) -> None:
        """A component starts using the endpoint; the first one opens the socket."""
        self._users += 1
        if self._port is None:
            self._port = self.reactor.listenUDP(self.bind[1], self, interface=self.bind[0])
            self.log.info("{name}: simulated link bound to {address}", name=self.name,
                          address=format_address(*self.address))
            self._changed()

    def release(self) -> Any:
        """A component stops using the endpoint; the last one closes the socket."""
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._port is not None:
            port, self._port = self._port, None
            self._changed()
            return port.stopListening()
        return None

    def on_control(self, ops: tuple[Op, ...], handler: Callable[[ControlFrame], None]) -> None:
        """Deliver CONTROL frames with these operations to ``handler``."""
        for op in ops:
            self._handlers[op] = handler

    def send(self, frame_type: Any, *values: Any, to: tuple[str, int]) -> None:
        """Send a frame with the next sequence number; a failure is counted, not raised."""
        self._seq = (self._seq + 1) % SEQ_MOD
        transport: Any = self.transport
        if transport is None:
            return
        try:
            transport.write(encode(frame_type(self._seq, *values)), to)
        except (OSError, FrameError) as e:
            self.stats["send_errors"] += 1
            self._bad_log("cannot send to {to}: {reason}", to=format_address(*to[:2]),
                          reason=str(e))
            return
        self.stats["sent"] += 1

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        source = (str(addr[0]), int(addr[1]))
        if not _is_loopback(source[0]):
            self._bad(source, "not from a loopback address")
            return
        try:
            frame = decode(data)
        except FrameError as e:
            self._bad(source, str(e))
            return
        kind = (Kind.grid if isinstance(frame, GridFrame) else
                Kind.power if isinstance(frame, PowerFrame) else Kind.control)
        if kind not in self.accepted:
            self._bad(source, f"{kind.name} frame not expected here")
            return
        self.stats["received"] += 1
        if isinstance(frame, ControlFrame):
            self._control(frame, source)
        else:
            self.frame_received(frame, source)

    def connectionRefused(self) -> None:
        self.stats["send_errors"] += 1

    # For subclasses

    def frame_received(self, frame: Frame, source: tuple[str, int]) -> None:
        raise NotImplementedError

    def _changed(self) -> None:
        """Listening started or stopped."""

    # Internals

    def _control(self, frame: ControlFrame, source: tuple[str, int]) -> None:
        handler = self._handlers.get(frame.op)
        if handler is None:
            self.stats["control_refused"] += 1
            self.log.warn("{name}: control {op} from {source} refused: no component on this "
                          "link accepts it (set control = true)", name=self.name,
                          op=OP_NAMES[frame.op], source=format_address(*source))
            return
        self.stats["control"] += 1
        self.log.info("{name}: control {op} {value:g}{text} from {source}", name=self.name,
                      op=OP_NAMES[frame.op], value=frame.value,
                      text=f" {frame.text!r}" if frame.text else "",
                      source=format_address(*source))
        handler(frame)

    def _bad(self, source: tuple[str, int], reason: str) -> None:
        self.stats["bad"] += 1
        self.last_bad = reason
        self._bad_log("bad frame from {source} ignored ({reason}); {count} bad so far",
                      source=format_address(*source), reason=reason, count=self.stats["bad"])

    def _bad_log(self, fmt: str, **kw: Any) -> None:
        now = self.reactor.seconds()
        if self._last_bad_log is None or now - self._last_bad_log >= self.bad_log_interval:
            self._last_bad_log = now
            self.log.warn("{name}: " + fmt, name=self.name, **kw)


class GridSide(_Endpoint):
    """The EVSE port's end of the cable, shared by its contactor and its meter.

    ``closed`` is set by the contactor. While closed (and bound), a GRID frame with
    ``voltage_v`` and ``frequency_hz`` goes to the PEV every ``period`` seconds. The PEV's
    address is learnt from its POWER frames. :meth:`measure` is what the meter sees.
    """

    accepted = (Kind.power, Kind.control)

    def __init__(self, reactor: Any, bind: tuple[str, int], name: str) -> None:
        super().__init__(reactor, bind, name)
        self.voltage_v = 240.0
        self.frequency_hz = 60.0
        self.period = 0.1
        self.stale_s = 0.3
        self.closed = False
        self.peer: tuple[str, int] | None = None
        self.power: PowerFrame | None = None
        self.power_at: float | None = None
        self.contactor: Any = None
        self.meter: Any = None
        self._loop = LoopingCall(self._send_grid)
        self._loop.clock = reactor

    def attach(self, role: str, component: Any) -> None:
        """A started contactor or meter (``role``) uses this link; a second running one of the
        same role is refused, since each port needs its own link address."""
        current = getattr(self, role)
        if current is not None and current is not component:
            raise ValueError(f"link {format_address(*self.bind)} is already used by the "
                             f"{role} {current._name}; each port needs its own link address")
        setattr(self, role, component)
        self.acquire()

    def detach(self, role: str, component: Any) -> Any:
        """The component stopped; the last one to go closes the socket."""
        if getattr(self, role) is not component:
            return None
        setattr(self, role, None)
        for op, handler in list(self._handlers.items()):
            if getattr(handler, "__self__", None) is component:
                del self._handlers[op]
        return self.release()

    def set_closed(self, closed: bool) -> None:
        """The contactor's contacts closed or opened."""
        self.closed = closed
        self._changed()

    def set_grid(self, voltage: float | None = None, frequency: float | None = None) -> None:
        """Change the grid's voltage and/or frequency (sent from the next GRID frame on)."""
        if voltage is not None:
            if not (math.isfinite(voltage) and voltage >= 0):
                raise ValueError(f"grid voltage {voltage!r} must be a number >= 0")
            self.voltage_v = float(voltage)
        if frequency is not None:
            if not (math.isfinite(frequency) and frequency >= 0):
                raise ValueError(f"grid frequency {frequency!r} must be a number >= 0")
            self.frequency_hz = float(frequency)

    def fresh(self) -> bool:
        """Whether the PEV's latest POWER frame is at most ``stale_s`` old."""
        return (self.power_at is not None
                and self.reactor.seconds() - self.power_at <= self.stale_s)

    def measure(self) -> tuple[float, float]:
        """(W, var) flowing through the port: the PEV's reported output while the contactor is
        closed and its frames are fresh; otherwise nothing flows."""
        if self.closed and self.power is not None and self.fresh():
            return self.power.active_power_w, self.power.reactive_power_var
        return 0.0, 0.0

    def frame_received(self, frame: Frame, source: tuple[str, int]) -> None:
        assert isinstance(frame, PowerFrame)
        if (source == self.peer and self.power is not None and self.fresh()
                and not newer(frame.seq, self.power.seq)):
            self.stats["out_of_order"] += 1
            return
        if source != self.peer:
            self.log.info("{name}: PEV side of the link at {peer}", name=self.name,
                          peer=format_address(*source))
        self.peer = source
        self.power = frame
        self.power_at = self.reactor.seconds()

    def _changed(self) -> None:
        run = self.closed and self.listening
        if run and not self._loop.running:
            self._loop.start(self.period, now=True)
        elif not run and self._loop.running:
            self._loop.stop()

    def _send_grid(self) -> None:
        if self.peer is not None:
            self.send(GridFrame, self.voltage_v, self.frequency_hz, to=self.peer)


class PEVSide(_Endpoint):
    """The PEV's end of the cable, owned by its inverter.

    Accepts GRID frames only from the EVSE side's address (``target``); the grid counts as
    present while the latest one is at most ``grid_timeout`` seconds old. ``on_grid_change``
    is called right after the grid appeared, changed or disappeared, with the time it changed
    (the timeout's deadline when lost; the timer may fire a little later) or None for now.
    """

    accepted = (Kind.grid, Kind.control)

    def __init__(self, reactor: Any, bind: tuple[str, int], target: tuple[str, int],
                 name: str, grid_timeout: float,
                 on_grid_change: Callable[[float | None], None]) -> None:
        super().__init__(reactor, bind, name)
        self.target = target
        self.grid_timeout = grid_timeout
        self.grid: GridFrame | None = None
        self.grid_at: float | None = None
        self._on_grid_change = on_grid_change
        self._watchdog: Any = None

    def frame_received(self, frame: Frame, source: tuple[str, int]) -> None:
        assert isinstance(frame, GridFrame)
        if source != self.target:
            self._bad(source, f"grid frame not from the EVSE side "
                              f"{format_address(*self.target)}")
            return
        if self.grid is not None and not newer(frame.seq, self.grid.seq):
            self.stats["out_of_order"] += 1
            return
        if self.grid is None:
            self.log.info("{name}: grid present ({v:g} V, {hz:g} Hz)", name=self.name,
                          v=frame.voltage_v, hz=frame.frequency_hz)
        self.grid = frame
        self.grid_at = self.reactor.seconds()
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.reset(self.grid_timeout)
        else:
            self._watchdog = self.reactor.callLater(self.grid_timeout, self._grid_lost)
        self._on_grid_change(None)

    def _grid_lost(self) -> None:
        self._watchdog = None
        self.grid = None
        assert self.grid_at is not None
        self.log.info("{name}: grid lost (no grid frame for {t:g} s)", name=self.name,
                      t=self.grid_timeout)
        self._on_grid_change(self.grid_at + self.grid_timeout)

    def _changed(self) -> None:
        if not self.listening:
            if self._watchdog is not None and self._watchdog.active():
                self._watchdog.cancel()
            self._watchdog = None
            if self.grid is not None:
                self.grid = None
                self._on_grid_change(None)

    def send_power(self, active_power_w: float, reactive_power_var: float) -> None:
        self.send(PowerFrame, active_power_w, reactive_power_var, to=self.target)


# --------------------------------------------------------------------------------------------
# Registry of EVSE-side endpoints


_GRID_SIDES: "weakref.WeakKeyDictionary[Any, dict[tuple[str, int], GridSide]]" = (
    weakref.WeakKeyDictionary())


def grid_side(reactor: Any, address: str, name: str) -> GridSide:
    """The EVSE-side endpoint bound to ``address`` on ``reactor``, created on first use.

    Per reactor (that is, per process; each test's fake reactor has its own), keyed by the
    normalised bind address, so a port's contactor and meter naming the same ``link`` share
    one endpoint.
    """
    bind = parse_address(address)
    endpoints = _GRID_SIDES.setdefault(reactor, {})
    if bind not in endpoints:
        endpoints[bind] = GridSide(reactor, bind, f"link {format_address(*bind)} ({name})")
    return endpoints[bind]


# --------------------------------------------------------------------------------------------
# Command line: send one CONTROL frame (blocking socket; never imported by the reactor side)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import socket

    parser = argparse.ArgumentParser(
        prog="sim_link.py", description="Send one fault-injection CONTROL frame to a running "
                                        "simulated link endpoint.")
    parser.add_argument("address", help="the endpoint, e.g. 127.0.0.1:47101 (EVSE side) or "
                                        "127.0.0.1:47102 (PEV side)")
    parser.add_argument("op", choices=sorted(OP_NAMES.values()))
    parser.add_argument("value", type=float, nargs="?", default=0.0)
    parser.add_argument("text", nargs="?", default="")
    args = parser.parse_args(argv)
    try:
        host, port = parse_address(args.address)
        op = {v: k for k, v in OP_NAMES.items()}[args.op]
        data = encode(ControlFrame(1, op, args.value, args.text))
    except (ValueError, FrameError) as e:
        parser.error(str(e))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.sendto(data, (host, port))
    text = f" {args.text!r}" if args.text else ""
    print(f"sent {args.op} {args.value:g}{text} to {args.address}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
