"""Bundled plugin: a simulated PEV inverter with a battery."""

from __future__ import annotations

from typing import Any, Mapping

from twisted.logger import Logger
from zope.interface import implementer

from sepgw.interfaces import BuildContext, IInverter, InverterReading
from sepgw.plugin import Key, PluginFactory, Section


@implementer(IInverter)
class SimulatedInverter:
    """Keeps the controls it is given and reports its operating point and state of charge.

    Power is zero unless ``opModEnergize`` is true and ``opModFixedW`` (percent of max W,
    positive discharges) asks for some; the battery integrates the power over the clock.
    """

    log = Logger()

    def __init__(self, clock: Any, name: str, max_w: float, capacity_wh: float, soc_pct: float,
                 voltage: float, frequency: float) -> None:
        self._clock = clock
        self._name = name
        self.max_w = max_w
        self.capacity_wh = capacity_wh
        self._energy_wh = capacity_wh * soc_pct / 100.0
        self.voltage = voltage
        self.frequency = frequency
        self.controls: dict[str, Any] = {}
        self._power_w = 0.0
        self._since = clock.seconds()

    def start(self) -> None:
        self.log.info("{name}: simulated inverter, {max_w:g} W, {soc:.0f} % charged",
                      name=self._name, max_w=self.max_w, soc=self.reading().state_of_charge_pct)

    def stop(self) -> None:
        self.apply({})

    def _integrate(self) -> None:
        now = self._clock.seconds()
        self._energy_wh -= self._power_w * (now - self._since) / 3600.0
        self._energy_wh = min(max(self._energy_wh, 0.0), self.capacity_wh)
        self._since = now

    def apply(self, controls: Mapping[str, Any]) -> None:
        self._integrate()
        self.controls = dict(controls)
        if not self.controls.get("opModEnergize"):
            self._power_w = 0.0
        else:
            pct = float(self.controls.get("opModFixedW", 0.0))
            self._power_w = max(-self.max_w, min(self.max_w, self.max_w * pct / 100.0))

    def reading(self) -> InverterReading:
        self._integrate()
        return InverterReading(self._clock.seconds(), self._power_w, 0.0, self.voltage,
                               self.frequency, 100.0 * self._energy_wh / self.capacity_wh)


def _build(config: Mapping[str, Any], context: BuildContext) -> SimulatedInverter:
    return SimulatedInverter(context.reactor, context.name, config["max_w"],
                             config["capacity_wh"], config["soc_pct"], config["voltage"],
                             config["frequency"])


inverter = PluginFactory(
    kind="inverter",
    name="simulated",
    description="Inverter and battery in memory; follows opModEnergize and opModFixedW.",
    options=Section({
        "max_w": Key("float", 7200.0, "Rated active power, W.", min=0),
        "capacity_wh": Key("float", 60000.0, "Usable battery capacity, Wh.", min=1),
        "soc_pct": Key("float", 80.0, "State of charge at start, %.", min=0, max=100),
        "voltage": Key("float", 240.0, "Simulated grid voltage seen, V.", min=0),
        "frequency": Key("float", 60.0, "Simulated grid frequency seen, Hz.", min=0),
    }),
    build=_build,
)
