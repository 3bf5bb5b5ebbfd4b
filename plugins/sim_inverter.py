"""Bundled plugin: a simulated PEV inverter with a battery.

Without ``link`` the grid is always there (the configured ``voltage`` and ``frequency``). With
``link = "127.0.0.1:47101"`` (the EVSE port's link address) the inverter is the PEV end of the
simulated electrical link (``plugins/sim_link.py``, ``docs/simulation.md``): it sees grid only
while fresh grid frames arrive (the EVSE's contactor is closed), produces nothing without it,
and sends its actual output to the EVSE side, whose meter measures it.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from sepgw.dropins import sim_link  # type: ignore[attr-defined]  # bundled helper module
from sepgw.interfaces import BuildContext, IInverter, InverterReading
from sepgw.plugin import Key, PluginFactory, Section


@implementer(IInverter)
class SimulatedInverter:
    """Keeps the controls it is given and reports its operating point and state of charge.

    Power is zero without grid, and otherwise zero unless ``opModEnergize`` is true and
    ``opModFixedW`` (percent of max W, positive discharges) asks for some; ``opModMaxLimW``
    (percent of max W) caps discharging. The battery integrates the *actual* power over the
    clock; an empty battery cannot discharge and a full one cannot charge.

    Misbehaviour: with ``rogue_w`` non-zero (config, :meth:`set_rogue_w`, or a ``rogue-w``
    CONTROL frame when ``control`` is set) the inverter runs at that power whenever it sees
    grid, ignoring every control, opModEnergize included.
    """

    log = Logger()

    def __init__(self, clock: Any, name: str, max_w: float, capacity_wh: float, soc_pct: float,
                 voltage: float, frequency: float, rogue_w: float = 0.0,
                 control: bool = False) -> None:
        self._clock = clock
        self._name = name
        self.max_w = max_w
        self.capacity_wh = capacity_wh
        self._energy_wh = capacity_wh * soc_pct / 100.0
        self.voltage = voltage
        self.frequency = frequency
        self.controls: dict[str, Any] = {}
        self.rogue_w = rogue_w
        self._control = control
        self._power_w = 0.0
        self._since = clock.seconds()
        self.link: Any = None
        self._loop: Any = None

    def attach_link(self, target: str, bind: str, period: float, grid_timeout: float) -> None:
        """Be the PEV end of the link whose EVSE side is at ``target``, bound to ``bind``."""
        target_addr = sim_link.parse_address(target)
        bind_addr = sim_link.parse_address(bind, allow_port_zero=True) if bind else (
            "::1" if ":" in target_addr[0] else "127.0.0.1", 0)
        self.link = sim_link.PEVSide(
            self._clock, bind_addr, target_addr,
            f"link {sim_link.format_address(*target_addr)} ({self._name})", grid_timeout,
            self._update)
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._period = period

    # IComponent

    def start(self) -> None:
        if self.link is not None:
            self.link.acquire()
            if self._control:
                self.link.on_control((sim_link.Op.rogue_w,), self._control_frame)
            self._loop.start(self._period, now=True)
        self.log.info("{name}: simulated inverter, {max_w:g} W, {soc:.0f} % charged{rogue}",
                      name=self._name, max_w=self.max_w, soc=self.reading().state_of_charge_pct,
                      rogue=f", ROGUE: {self.rogue_w:g} W whenever grid is present"
                      if self.rogue_w else "")

    def stop(self) -> Any:
        self.apply({})
        if self.link is not None:
            if self._loop.running:
                self._loop.stop()
            return self.link.release()
        return None

    # The grid and the power

    @property
    def grid_present(self) -> bool:
        """Without a link, always; with one, while fresh grid frames with voltage arrive."""
        if self.link is None:
            return True
        return self.link.grid is not None and self.link.grid.voltage_v > 0

    def _target_w(self) -> float:
        if self.rogue_w:
            return max(-self.max_w, min(self.max_w, self.rogue_w))
        if not self.controls.get("opModEnergize"):
            return 0.0
        pct = float(self.controls.get("opModFixedW", 0.0))
        power = max(-self.max_w, min(self.max_w, self.max_w * pct / 100.0))
        if self.controls.get("opModMaxLimW") is not None:
            power = min(power, self.max_w * max(0.0, float(self.controls["opModMaxLimW"]))
                        / 100.0)
        return power

    def _integrate(self, until: float | None = None) -> None:
        now = self._clock.seconds()
        end = now if until is None else min(max(until, self._since), now)
        self._energy_wh -= self._power_w * (end - self._since) / 3600.0
        self._energy_wh = min(max(self._energy_wh, 0.0), self.capacity_wh)
        self._since = end

    def _update(self, changed_at: float | None = None) -> None:
        """Integrate the power that flowed until now (or until ``changed_at``, when the
        grid was lost at a known moment shortly before now), then set the power that flows
        from then on."""
        self._integrate(changed_at)
        power = self._target_w() if self.grid_present else 0.0
        if (power > 0 and self._energy_wh <= 0.0) or (
                power < 0 and self._energy_wh >= self.capacity_wh):
            power = 0.0
        self._power_w = power

    def _tick(self) -> None:
        self._update()
        self.link.send_power(self._power_w, 0.0)

    # IInverter

    def apply(self, controls: Mapping[str, Any]) -> None:
        self.controls = dict(controls)
        self._update()

    def reading(self) -> InverterReading:
        self._update()
        if self.link is None:
            voltage, frequency = self.voltage, self.frequency
        elif self.grid_present:
            voltage, frequency = self.link.grid.voltage_v, self.link.grid.frequency_hz
        else:
            voltage, frequency = 0.0, 0.0
        return InverterReading(self._clock.seconds(), self._power_w, 0.0, voltage, frequency,
                               100.0 * self._energy_wh / self.capacity_wh)

    # Misbehaviour

    def set_rogue_w(self, watts: float) -> None:
        """Discharge ``watts`` whenever grid is present, ignoring controls; 0 behaves again."""
        self.rogue_w = float(watts)
        self.log.warn("{name}: fault injection: {what}", name=self._name,
                      what=f"ROGUE, {self.rogue_w:g} W whenever grid is present"
                      if self.rogue_w else "rogue mode off, following controls")
        self._update()

    def _control_frame(self, frame: Any) -> None:
        self.set_rogue_w(frame.value)


def _check(config: dict[str, Any]) -> Any:
    if config["bind"] and not config["link"]:
        yield "bind", "needs link (the EVSE side's address)"
    if config["bind"] and config["link"]:
        if (":" in sim_link.parse_address(config["bind"], True)[0]) != (
                ":" in sim_link.parse_address(config["link"])[0]):
            yield "bind", "must be of the same address family (IPv4 or IPv6) as link"
    if config["control"] and not config["link"]:
        yield "control", "needs link (CONTROL frames arrive on the link)"


def _build(config: Mapping[str, Any], context: BuildContext) -> SimulatedInverter:
    inverter = SimulatedInverter(context.reactor, context.name, config["max_w"],
                                 config["capacity_wh"], config["soc_pct"], config["voltage"],
                                 config["frequency"], rogue_w=config["rogue_w"],
                                 control=config["control"])
    if config["link"]:
        inverter.attach_link(config["link"], config["bind"], config["period"],
                             config["grid_timeout_s"])
    return inverter


inverter = PluginFactory(
    kind="inverter",
    name="simulated",
    description="Inverter and battery in memory; follows opModEnergize and opModFixedW.",
    options=Section({
        "max_w": Key("float", 7200.0, "Rated active power, W.", min=0),
        "capacity_wh": Key("float", 60000.0, "Usable battery capacity, Wh.", min=1),
        "soc_pct": Key("float", 80.0, "State of charge at start, %.", min=0, max=100),
        "voltage": Key("float", 240.0, "Simulated grid voltage seen without link, V.", min=0),
        "frequency": Key("float", 60.0, "Simulated grid frequency seen without link, Hz.",
                         min=0),
        "link": Key("str", "", "Loopback HOST:PORT ([::1]:PORT for IPv6) of the EVSE port's "
                               "simulated electrical link: grid comes from there and the "
                               "actual output is sent there. Empty: no link, grid always "
                               "present.",
                    validator=sim_link.address_validator()),
        "bind": Key("str", "", "Loopback HOST:PORT this end binds (port 0: any). Empty: "
                               "the link's host, any port.",
                    validator=sim_link.address_validator(allow_port_zero=True)),
        "period": Key("float", 0.1, "Seconds between power frames sent to the EVSE side.",
                      min=0.01, max=1),
        "grid_timeout_s": Key("float", 0.3, "Without a grid frame for this long the grid is "
                                            "gone and the inverter stops, s.",
                              min=0.01, max=10),
        "rogue_w": Key("float", 0.0, "Misbehaviour for gatekeeper tests: run at this power "
                                     "(W, positive discharges) whenever grid is present, "
                                     "ignoring opModEnergize and every control. 0: off."),
        "control": Key("bool", False, "Accept rogue-w CONTROL frames on the link (fault "
                                      "injection at run time)."),
    }, rules=[_check]),
    build=_build,
)
