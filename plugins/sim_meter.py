"""Bundled plugin: a simulated meter sampling a settable operating point on the clock.

Without ``link`` the power it measures is whatever is put in its ``power`` attribute. With
``link = "127.0.0.1:47101"`` (the same address as the port's simulated contactor) it measures
the simulated electrical link (``plugins/sim_link.py``, ``docs/simulation.md``): the power the
PEV emulator reports injecting, but only while the contactor is closed and the PEV's frames are
fresh; otherwise 0 W. Its ``voltage`` and ``frequency`` are then the grid's, sent to the PEV.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from sepgw.plugin import (BuildContext, IMeter, IMeterListener, Key, MeterSample, PluginFactory,
                          Section, dropin_module)

sim_link = dropin_module("sim_link")  # bundled helper module


class _SampleBank:
    """One timer for every simulated meter of a clock sampling at the same interval.

    At hundreds of ports, a ``LoopingCall`` per meter costs the reactor more in its timer
    heap than the samples themselves (500 meters at 0.1 s: 5,000 heap pushes and pops a
    second). A meter whose sample raises leaves the bank, as its own ``LoopingCall`` would
    have stopped: it falls silent and the gatekeeper's meter watchdog trips.
    """

    log = Logger()
    _banks: dict[tuple[int, float], "_SampleBank"] = {}

    def __init__(self, clock: Any, interval: float) -> None:
        self._key = (id(clock), interval)
        self.meters: dict[SimulatedMeter, None] = {}  # insertion order: sampling order
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock

    @classmethod
    def join(cls, clock: Any, interval: float, meter: "SimulatedMeter") -> None:
        """Sample ``meter`` now and then at every tick of its bank."""
        bank = cls._banks.get((id(clock), interval))
        if bank is None:
            bank = cls._banks[(id(clock), interval)] = cls(clock, interval)
        bank.meters[meter] = None
        if not bank._loop.running:
            bank._loop.start(interval, now=False)
        bank._sample(meter)

    @classmethod
    def leave(cls, clock: Any, interval: float, meter: "SimulatedMeter") -> None:
        bank = cls._banks.get((id(clock), interval))
        if bank is not None:
            bank._drop(meter)

    def _drop(self, meter: "SimulatedMeter") -> None:
        if meter not in self.meters:
            return
        del self.meters[meter]
        if not self.meters:
            del self._banks[self._key]
            if self._loop.running:
                self._loop.stop()

    def _tick(self) -> None:
        for meter in list(self.meters):
            self._sample(meter)

    def _sample(self, meter: "SimulatedMeter") -> None:
        try:
            meter.sample()
        except Exception:
            self.log.failure("{name}: sampling failed; the meter stops sampling",
                             name=meter.name)
            self._drop(meter)


@implementer(IMeter)
class SimulatedMeter:
    """Samples every ``interval`` seconds: grid voltage and frequency, and the power flowing.

    ``power`` is what flows through the port (W, var, DER sign convention) when there is no
    link; with a link it is measured on the link. Faults: :meth:`set_silent` stops samples
    (without an error: the consumer must notice), :meth:`fail` reports an error and stops
    samples, :meth:`clear` ends both. :meth:`set_grid` changes the grid voltage and frequency.
    """

    log = Logger()

    def __init__(self, clock: Any, name: str, interval: float, voltage: float,
                 frequency: float, link: Any = None, stale_s: float = 0.3,
                 silent: bool = False, error: str = "", control: bool = False) -> None:
        self._clock = clock
        self._name = name
        self.interval = interval
        self.link = link
        self._voltage = voltage
        self._frequency = frequency
        if link is not None:
            link.set_grid(voltage, frequency)
        self._stale_s = stale_s
        self._power = (0.0, 0.0)
        self.error: str | None = None
        self.silent = silent
        self._initial_error = error
        self._control = control
        self._listeners: list[Any] = []
        self._sampling = False

    @property
    def name(self) -> str:
        return self._name

    # The grid and the power through the port

    @property
    def voltage(self) -> float:
        return self.link.voltage_v if self.link is not None else self._voltage

    @voltage.setter
    def voltage(self, value: float) -> None:
        self.set_grid(voltage=value)

    @property
    def frequency(self) -> float:
        return self.link.frequency_hz if self.link is not None else self._frequency

    @frequency.setter
    def frequency(self, value: float) -> None:
        self.set_grid(frequency=value)

    @property
    def power(self) -> tuple[float, float]:
        """(W, var) through the port now: measured on the link when there is one."""
        return self.link.measure() if self.link is not None else self._power

    @power.setter
    def power(self, value: tuple[float, float]) -> None:
        if self.link is not None:
            raise AttributeError(f"{self._name}: power is measured on the link; make the PEV "
                                 "emulator produce it instead")
        self._power = (float(value[0]), float(value[1]))

    def set_grid(self, voltage: float | None = None, frequency: float | None = None) -> None:
        """Change the grid's voltage and/or frequency (with a link: what the PEV sees too)."""
        if self.link is not None:
            self.link.set_grid(voltage, frequency)
        else:
            if voltage is not None:
                self._voltage = float(voltage)
            if frequency is not None:
                self._frequency = float(frequency)
        self.log.info("{name}: grid {v:g} V, {hz:g} Hz", name=self._name, v=self.voltage,
                      hz=self.frequency)

    # IMeter / IComponent

    def add_listener(self, listener: Any) -> None:
        self._listeners.append(IMeterListener(listener))

    def start(self) -> None:
        if self.link is not None:
            self.link.stale_s = self._stale_s
            self.link.attach("meter", self)
            if self._control:
                self.link.on_control((sim_link.Op.meter_silent, sim_link.Op.meter_error,
                                      sim_link.Op.meter_clear, sim_link.Op.grid_voltage,
                                      sim_link.Op.grid_frequency), self._control_frame)
            if self.link.contactor is None:
                self.log.warn("{name}: no simulated contactor on link {link} (yet): until one "
                              "is, the port carries no power", name=self._name,
                              link=sim_link.format_address(*self.link.bind))
        if self._initial_error:
            self.fail(self._initial_error)
        self._sampling = True
        _SampleBank.join(self._clock, self.interval, self)

    def stop(self) -> Any:
        if self._sampling:
            self._sampling = False
            _SampleBank.leave(self._clock, self.interval, self)
        if self.link is not None:
            return self.link.detach("meter", self)
        return None

    # Faults

    def set_silent(self, silent: bool) -> None:
        """Stop (True) or resume (False) sampling, without reporting anything."""
        self.silent = silent
        self.log.warn("{name}: fault injection: meter {what}", name=self._name,
                      what="silent" if silent else "sampling again")

    def fail(self, reason: str) -> None:
        """Report ``reason`` as the meter's error to every listener; samples stop."""
        self.error = reason
        self.log.warn("{name}: meter error: {reason}", name=self._name, reason=reason)
        for listener in list(self._listeners):
            listener.meter_error(reason)

    def clear(self) -> None:
        """End an injected error or silence; samples resume at the next interval."""
        self.error = None
        self.silent = False
        self.log.info("{name}: meter faults cleared", name=self._name)

    def sample(self) -> None:
        if self.silent or self.error is not None:
            return
        p, q = self.power
        s = MeterSample(self._clock.seconds(), p, q, self.voltage, self.frequency)
        for listener in list(self._listeners):
            listener.meter_sample(s)

    def _control_frame(self, frame: Any) -> None:
        op = sim_link.Op
        if frame.op is op.meter_silent:
            self.set_silent(bool(frame.value))
        elif frame.op is op.meter_error:
            self.fail(frame.text)
        elif frame.op is op.meter_clear:
            self.clear()
        elif frame.op is op.grid_voltage:
            self.set_grid(voltage=frame.value)
        elif frame.op is op.grid_frequency:
            self.set_grid(frequency=frame.value)


def _build(config: Mapping[str, Any], context: BuildContext) -> SimulatedMeter:
    link = (sim_link.grid_side(context.reactor, config["link"], context.name)
            if config["link"] else None)
    return SimulatedMeter(context.reactor, context.name, config["interval"], config["voltage"],
                          config["frequency"], link=link, stale_s=config["stale_s"],
                          silent=config["silent"], error=config["error"],
                          control=config["control"])


meter = PluginFactory(
    kind="meter",
    name="simulated",
    description="Meter in memory sampling the simulated grid and the power through the port.",
    options=Section({
        "interval": Key("float", 0.1, "Seconds between samples.", min=0.01, max=60),
        "voltage": Key("float", 240.0, "Simulated grid voltage, V.", min=0),
        "frequency": Key("float", 60.0, "Simulated grid frequency, Hz.", min=0),
        "link": Key("str", "", "Loopback HOST:PORT ([::1]:PORT for IPv6) of the port's "
                               "simulated electrical link (the contactor's link): measure "
                               "the PEV's power there, 0 W while the contactor is open. "
                               "Empty: no link.",
                    validator=sim_link.address_validator()),
        "stale_s": Key("float", 0.3, "With link: the PEV's power frames older than this "
                                     "count as nothing flowing, s.", min=0.01, max=10),
        "silent": Key("bool", False, "Fault: start silent (no samples, no error)."),
        "error": Key("str", "", "Fault: report this error from start (no samples)."),
        "control": Key("bool", False, "Accept meter and grid CONTROL frames on the link "
                                      "(fault injection at run time)."),
    }),
    build=_build,
)
