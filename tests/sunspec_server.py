"""A real Modbus peer for the hardware plugin tests: a pymodbus server on 127.0.0.1 (an
ephemeral port), run by an asyncio loop in a thread, serving registers the test writes.

The register map is the test's own: :class:`SunSpecMapBuilder` lays out the 'SunS' marker, the
model headers and the end marker from values the test computes, independently of
:mod:`sepgw.hw.sunspec`. Addresses not written are absent (the server answers them with
exception 2, illegal data address), as on a real device.

Needs pymodbus 3.16+ (its SimDevice data model); tests skip, saying so, without it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from twisted.trial.unittest import SkipTest

STARTUP_TIMEOUT_S = 10.0


def _pymodbus() -> Any:
    try:
        import pymodbus  # noqa: F401
        from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: F401
    except ImportError as e:
        raise SkipTest(f"pymodbus with SimDevice (3.16+) is needed for the Modbus peer: {e}; "
                       "pip install 'pymodbus>=3.16,<4'")
    return pymodbus


def s16(value: int) -> int:
    """A signed 16-bit value as its register (two's complement)."""
    assert -0x8000 <= value <= 0x7FFF, value
    return value & 0xFFFF


def u32(value: int) -> list[int]:
    """A 32-bit value as two registers, high word first."""
    value &= 0xFFFFFFFF
    return [value >> 16, value & 0xFFFF]


class SunSpecMapBuilder:
    """Holding registers of a SunSpec map: marker at ``base``, models, end marker."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.registers: dict[int, int] = {base: 0x5375, base + 1: 0x6E53}
        self.next = base + 2
        self.models: dict[int, int] = {}
        """model id -> address of its ID register."""

    def add(self, model_id: int, length: int, points: dict[int, int | list[int]]) -> int:
        """Add a model of ``length`` registers after its header; ``points`` maps an offset
        from the ID register (2 = first point) to a register or a list of them. Registers not
        given are 0. Returns the address of the model's ID register."""
        address = self.next
        body = [0] * length
        for offset, value in points.items():
            values = value if isinstance(value, list) else [value]
            for i, v in enumerate(values):
                assert 2 <= offset + i < length + 2, (model_id, offset)
                body[offset + i - 2] = v & 0xFFFF
        for i, v in enumerate([model_id, length] + body):
            self.registers[address + i] = v
        self.models[model_id] = address
        self.next = address + 2 + length
        return address

    def end(self) -> dict[int, int]:
        """Close the map with the end marker; returns the registers."""
        self.registers[self.next] = 0xFFFF
        self.registers[self.next + 1] = 0
        return self.registers


class ModbusTestServer:
    """A pymodbus Modbus/TCP server (or RTU framing over TCP) for one unit id.

    ``coils`` and ``inputs`` are the initial coil and discrete-input states from address 0.
    ``relay`` makes discrete input ``relay[1]`` follow coil ``relay[0]`` (a relay with an
    auxiliary contact) unless :attr:`welded` is set.
    """

    def __init__(self, holding: dict[int, int], unit: int = 1, coils: int = 8,
                 inputs: int = 8, framer: str = "socket",
                 relay: tuple[int, int] | None = None) -> None:
        _pymodbus()
        self.holding = dict(holding)
        self.unit = unit
        self.coil_count = coils
        self.input_count = inputs
        self.framer = framer
        self.relay = relay
        self.welded = False
        self.exception_code: int | None = None
        """Answer every request with this Modbus exception code (None: serve normally)."""
        self.corrupt_crc = False
        """Send RTU answers with a wrong CRC."""
        self.requests: list[tuple[int, int, Any]] = []
        """(function code, address, values written) of every request served."""
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- the data model ------------------------------------------------------------------

    def _device(self) -> Any:
        from pymodbus.simulator import DataType, SimData, SimDevice
        blocks: list[Any] = []
        run: list[int] = []
        start = None
        for address in sorted(self.holding):
            if start is not None and address == start + len(run):
                run.append(self.holding[address])
                continue
            if run:
                blocks.append(SimData(start, values=run, datatype=DataType.REGISTERS))
            start, run = address, [self.holding[address]]
        if run:
            blocks.append(SimData(start, values=run, datatype=DataType.REGISTERS))
        coils = [SimData(0, values=[False] * self.coil_count, datatype=DataType.BITS)]
        inputs = [SimData(0, values=[False] * self.input_count, datatype=DataType.BITS)]
        input_registers = [SimData(0, values=[0], datatype=DataType.REGISTERS)]
        return SimDevice(self.unit, (coils, inputs, blocks, input_registers),
                         action=self._action)

    async def _action(self, fc: int, start: int, address: int, count: int,
                      registers: list[int], values: Any) -> Any:
        from pymodbus.constants import ExcCodes
        self.requests.append((fc, address, values))
        if self.exception_code is not None:
            return ExcCodes(self.exception_code)
        if fc == 5 and self.relay is not None and address == self.relay[0] and values:
            if not self.welded:
                asyncio.get_running_loop().create_task(
                    self._server.async_setValues(self.unit, 2, self.relay[1],
                                                 [bool(values[0])]))
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and self.corrupt_crc and len(data) > 2:
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data

    # -- running -------------------------------------------------------------------------

    def start(self) -> int:
        """Start serving; returns the TCP port."""
        import logging
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its frame dumps are noise here
        from pymodbus import FramerType
        from pymodbus.server import ModbusTcpServer
        ready = threading.Event()
        problems: list[BaseException] = []

        async def serve() -> None:
            try:
                self._server = ModbusTcpServer(
                    self._device(), address=("127.0.0.1", self.port),
                    framer=FramerType.RTU if self.framer == "rtu" else FramerType.SOCKET,
                    trace_packet=self._trace_packet)
                await self._server.listen()
                self.port = self._server.transport.sockets[0].getsockname()[1]
            except BaseException as e:  # reported to start()
                problems.append(e)
                ready.set()
                return
            ready.set()
            await self._server.serving

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(serve())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="modbus-test-server", daemon=True)
        self._thread.start()
        if not ready.wait(STARTUP_TIMEOUT_S):
            raise RuntimeError("the pymodbus test server did not start")
        if problems:
            raise problems[0]
        return self.port

    def call(self, coroutine_function: Callable[[], Any]) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coroutine_function(), self._loop)
        return future.result(STARTUP_TIMEOUT_S)

    def set_registers(self, address: int, values: list[int]) -> None:
        """Change holding registers while serving."""
        self.call(lambda: self._server.async_setValues(self.unit, 3, address, values))

    def set_inputs(self, address: int, values: list[bool]) -> None:
        """Change discrete inputs while serving."""
        self.call(lambda: self._server.async_setValues(self.unit, 2, address, values))

    def registers(self, address: int, count: int) -> list[int]:
        """Holding registers as the server holds them now."""
        return list(self.call(lambda: self._server.async_getValues(self.unit, 3, address,
                                                                   count)))

    def coils(self, address: int, count: int) -> list[bool]:
        """Coils as the server holds them now."""
        return [bool(v) for v in self.call(
            lambda: self._server.async_getValues(self.unit, 1, address, count))]

    def stop(self) -> None:
        """Stop serving and close every connection (a device switched off)."""
        if self._loop is None or self._thread is None:
            return
        if self._server is not None:
            try:
                self.call(self._server.shutdown)
            except Exception:
                pass
        self._thread.join(STARTUP_TIMEOUT_S)
        self._loop = None
        self._thread = None
