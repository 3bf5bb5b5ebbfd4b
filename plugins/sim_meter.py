"""Bundled plugin: a simulated meter sampling a settable operating point on the clock."""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from sepgw.interfaces import BuildContext, IMeter, IMeterListener, MeterSample
from sepgw.plugin import Key, PluginFactory, Section


@implementer(IMeter)
class SimulatedMeter:
    """Samples every ``interval`` seconds: grid voltage and frequency, and the power flowing.

    ``power`` is what flows through the port (W, var, DER sign convention); the simulated
    electrical link sets it. Faults: ``silent`` stops samples, ``fail(reason)`` reports an error.
    """

    log = Logger()

    def __init__(self, clock: Any, name: str, interval: float, voltage: float,
                 frequency: float) -> None:
        self._clock = clock
        self._name = name
        self.interval = interval
        self.voltage = voltage
        self.frequency = frequency
        self.power = (0.0, 0.0)
        self.error: str | None = None
        self.silent = False
        self._listeners: list[Any] = []
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock

    def add_listener(self, listener: Any) -> None:
        self._listeners.append(IMeterListener(listener))

    def start(self) -> None:
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def fail(self, reason: str) -> None:
        self.error = reason
        for listener in list(self._listeners):
            listener.meter_error(reason)

    def sample(self) -> None:
        if self.silent or self.error is not None:
            return
        p, q = self.power
        s = MeterSample(self._clock.seconds(), p, q, self.voltage, self.frequency)
        for listener in list(self._listeners):
            listener.meter_sample(s)


def _build(config: Mapping[str, Any], context: BuildContext) -> SimulatedMeter:
    return SimulatedMeter(context.reactor, context.name, config["interval"], config["voltage"],
                          config["frequency"])


meter = PluginFactory(
    kind="meter",
    name="simulated",
    description="Meter in memory sampling the simulated grid and the power through the port.",
    options=Section({
        "interval": Key("float", 0.1, "Seconds between samples.", min=0.01, max=60),
        "voltage": Key("float", 240.0, "Simulated grid voltage, V.", min=0),
        "frequency": Key("float", 60.0, "Simulated grid frequency, Hz.", min=0),
    }),
    build=_build,
)
