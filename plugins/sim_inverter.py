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

from sepgw.plugin import (BuildContext, IInverter, InverterReading, Key, PluginFactory, Section,
                          dropin_module)

gs = dropin_module("sim_grid_support")  # bundled helper module
sim_link = dropin_module("sim_link")  # bundled helper module


STEP_S = 0.05
"""Longest integration step while the output is still moving (ramp, droop lag), s."""

SNAP_W = 1e-3
"""A lagging droop this close to its target (W) has reached it."""


_ALARM_OF_CURVE = {"opModHVRTMustTrip": 2, "opModLVRTMustTrip": 4, "opModHFRTMustTrip": 8,
                   "opModLFRTMustTrip": 16}
"""The DERAlarm bit of each must-trip curve: over/under voltage, over/under frequency."""


@implementer(IInverter)
class SimulatedInverter:
    """Keeps the controls it is given and reports its operating point and state of charge.

    Power is zero without grid, and otherwise follows the grid-support functions of
    ``sim_grid_support`` (``docs/simulation.md``): the active-power target (opModEnergize,
    opModFixedW, opModMaxLimW, opModVoltWatt), frequency droop (opModFreqDroop, IEEE 1547
    defaults when absent) with its open-loop response time, the reactive-power function in
    effect (within ``max_var``), must-trip curves with Enter Service, and momentary cessation.
    The battery integrates the *actual* power over the clock; an empty battery cannot discharge
    and a full one cannot charge.

    Between two updates (a grid frame, a control, a reading, a period of the link) the grid and
    the controls are constant, so the inverter's state moves on exactly on the injected clock:
    trip, cessation and Enter Service timers end at their deadlines, and the ramp and the droop
    lag are stepped at most :data:`STEP_S` apart.

    Misbehaviour: with ``rogue_w`` non-zero (config, :meth:`set_rogue_w`, or a ``rogue-w``
    CONTROL frame when ``control`` is set) the inverter runs at that power whenever it sees
    grid, ignoring every control and function, opModEnergize and trips included.
    """

    log = Logger()

    def __init__(self, clock: Any, name: str, max_w: float, capacity_wh: float, soc_pct: float,
                 voltage: float, frequency: float, rogue_w: float = 0.0,
                 control: bool = False, max_var: float = 0.0, v_ref: float = 240.0,
                 nominal_hz: float = 60.0, ramp_w_per_s: float = 0.0) -> None:
        self._clock = clock
        self._name = name
        self.max_w = max_w
        self.max_var = max_var
        self.v_ref = v_ref
        self.nominal_hz = nominal_hz
        self.ramp_w_per_s = ramp_w_per_s
        self.capacity_wh = capacity_wh
        self._energy_wh = capacity_wh * soc_pct / 100.0
        self.voltage = voltage
        self.frequency = frequency
        self.controls: dict[str, Any] = {}
        self.rogue_w = rogue_w
        self._control = control
        self._power_w = 0.0
        self._var = 0.0
        self._since = clock.seconds()
        self.link: Any = None
        self._loop: Any = None
        # The grid-support state: inputs as seen since the last update, and what moves on.
        self._grid: tuple[float, float] | None = None
        self._base_w = 0.0
        """Active power before droop, ramped towards its target."""
        self._droop_w = 0.0
        """Droop's change of active power, lagging towards its target."""
        self.tripped = False
        self.trip_curve: str | None = None
        self.ceased = False
        self._normal_since: float | None = None
        self._es_ramping = False
        self._trips = {name: gs.Excursions(high) for name, (_, high) in gs.TRIP_CURVES.items()}
        self._cessations = {name: gs.Excursions(high)
                            for name, (_, high) in gs.CESSATION_CURVES.items()}
        self._reactive_warned: tuple[str, ...] = ()
        self._refresh(self._since)

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
        self._update()

    # IComponent

    def start(self) -> None:
        if self.link is not None:
            self.link.acquire()
            if self._control:
                self.link.on_control((sim_link.Op.rogue_w,), self._control_frame)
            self._loop.start(self._period, now=True)
        self.log.info("{name}: simulated inverter, {max_w:g} W, {max_var:g} var, {soc:.0f} % "
                      "charged{rogue}", name=self._name, max_w=self.max_w, max_var=self.max_var,
                      soc=self.reading().state_of_charge_pct,
                      rogue=f", ROGUE: {self.rogue_w:g} W whenever grid is present"
                      if self.rogue_w else "")

    def stop(self) -> Any:
        self.apply({})
        if self.link is not None:
            if self._loop.running:
                self._loop.stop()
            return self.link.release()
        return None

    # The grid

    def _grid_now(self) -> tuple[float, float] | None:
        """(V, Hz) now, or None without grid: without a link the configured (or
        :meth:`set_grid`) values while the voltage is above 0; with one, the latest fresh
        grid frame with a voltage above 0."""
        if self.link is None:
            return (self.voltage, self.frequency) if self.voltage > 0 else None
        grid = self.link.grid
        if grid is None or grid.voltage_v <= 0:
            return None
        return grid.voltage_v, grid.frequency_hz

    @property
    def grid_present(self) -> bool:
        """Without a link, while the voltage is above 0; with one, while fresh grid frames
        with voltage arrive."""
        return self._grid_now() is not None

    def set_grid(self, voltage: float | None = None, frequency: float | None = None) -> None:
        """Without a link: the grid the inverter sees from now on. With a link the grid comes
        from the EVSE side (its meter's ``set_grid``)."""
        if self.link is not None:
            raise ValueError("with a link the grid comes from the EVSE side")
        self._advance(self._clock.seconds())
        if voltage is not None:
            self.voltage = float(voltage)
        if frequency is not None:
            self.frequency = float(frequency)
        self._refresh(self._clock.seconds())

    # The grid-support functions, moved on over the clock

    @property
    def _energized(self) -> bool:
        return bool(self.controls.get("opModEnergize"))

    def _voltage_pct(self) -> float:
        assert self._grid is not None
        return 100.0 * self._grid[0] / self.v_ref

    def _enter_service(self) -> dict[str, float]:
        return gs.enter_service_settings(self.controls.get("enter_service"), self.nominal_hz)

    def _running(self) -> bool:
        """Whether the controlled output (not rogue) can be other than 0 at all."""
        return (self._grid is not None and not self.rogue_w and self._energized
                and not self.tripped)

    def _targets(self) -> tuple[float, float]:
        """(active power before droop, droop's change), W, for the grid and controls now."""
        assert self._grid is not None
        base = gs.active_power_target(self.controls, self.max_w, self._voltage_pct())
        droop = gs.droop_w(gs.droop_settings(self.controls), self._grid[1], self.nominal_hz,
                           self.max_w)
        return base, droop

    def _moving(self) -> bool:
        if not self._running():
            return False
        return (self._base_w, self._droop_w) != self._targets()

    def _evolve(self, dt: float) -> None:
        """Move the ramp and the droop lag on by ``dt`` seconds."""
        if not self._running():
            self._base_w = self._droop_w = 0.0
            return
        base_target, droop_target = self._targets()
        rate = self.ramp_w_per_s
        if self._es_ramping:
            ramp_s = self._enter_service()["setESRampTms"]
            es_rate = self.max_w / ramp_s if ramp_s > 0 else 0.0
            if es_rate > 0:
                rate = es_rate if rate <= 0 else min(rate, es_rate)
        self._base_w = gs.ramp(self._base_w, base_target, dt, rate)
        if self._base_w == base_target:
            self._es_ramping = False
        response_s = gs.droop_settings(self.controls)["open_loop_s"]
        self._droop_w = gs.lag(self._droop_w, droop_target, dt, response_s)
        if abs(self._droop_w - droop_target) < SNAP_W:
            self._droop_w = droop_target

    def _deadlines(self) -> list[float]:
        """When a trip, a momentary cessation or the end of the Enter Service delay is due if
        the grid stays as it is."""
        found: list[float | None] = []
        if self._grid is not None:
            if not self.tripped:
                found += [e.deadline() for e in self._trips.values()]
            found += [e.deadline() for e in self._cessations.values()]
        if self.tripped and self._normal_since is not None:
            found.append(self._normal_since + self._enter_service()["setESDelay"])
        return [d for d in found if d is not None]

    def _ceased_at(self, t: float) -> bool:
        return any(d is not None and d <= t
                   for d in (e.deadline() for e in self._cessations.values()))

    def _in_window(self) -> bool:
        return self._grid is not None and gs.in_service_window(
            self._enter_service(), self._voltage_pct(), self._grid[1])

    def _events(self, t: float) -> None:
        """Enter service or trip when due at ``t``."""
        if self.tripped and self._normal_since is not None and (
                self._normal_since + self._enter_service()["setESDelay"] <= t):
            self.tripped = False
            self.trip_curve = None
            self._normal_since = None
            self._es_ramping = self._enter_service()["setESRampTms"] > 0
            self.log.info("{name}: entering service again (grid normal for {delay:g} s)",
                          name=self._name, delay=self._enter_service()["setESDelay"])
        if self.tripped or self._grid is None:
            return
        for curve, excursions in self._trips.items():
            deadline = excursions.deadline()
            if deadline is not None and deadline <= t:
                self.tripped = True
                self.trip_curve = curve
                self._base_w = self._droop_w = 0.0
                self._es_ramping = False
                self._normal_since = t if self._in_window() else None
                self.log.warn("{name}: tripped by {curve} ({v:g} V, {hz:g} Hz); off until the "
                              "grid is inside the Enter Service window for {delay:g} s",
                              name=self._name, curve=curve, v=self._grid[0],
                              hz=self._grid[1], delay=self._enter_service()["setESDelay"])
                return

    def _output(self, t: float) -> tuple[float, float]:
        """(W, var) produced at ``t`` in the present state."""
        if self._grid is None:
            return 0.0, 0.0
        if self.rogue_w:
            power = gs.clip(self.rogue_w, -self.max_w, self.max_w)
            q = 0.0
        elif not self._running() or self._ceased_at(t):
            return 0.0, 0.0
        else:
            power = gs.clip(self._base_w + self._droop_w, -self.max_w, self.max_w)
        if (power > 0 and self._energy_wh <= 0.0) or (
                power < 0 and self._energy_wh >= self.capacity_wh):
            power = 0.0
        if not self.rogue_w:
            q = gs.reactive_power(self.controls, power, self._voltage_pct(), self.max_w,
                                  self.max_var)
        return power, q

    def _set_output(self, t: float) -> None:
        self._power_w, self._var = self._output(t)
        ceased = self._grid is not None and self._ceased_at(t)
        if ceased != self.ceased:
            self.ceased = ceased
            if ceased:
                self.log.warn("{name}: momentary cessation ({v:g} V)", name=self._name,
                              v=self._grid[0] if self._grid else 0.0)
            else:
                self.log.info("{name}: momentary cessation over", name=self._name)

    def _advance(self, until: float) -> None:
        """Move the state on from the last update to ``until`` under the grid and the
        controls seen then, integrating the battery over the actual power."""
        t = self._since
        while t < until:
            end = until
            for deadline in self._deadlines():
                if t < deadline < end:
                    end = deadline
            if self._moving():
                end = min(end, t + STEP_S)
            dt = end - t
            before = self._power_w
            self._evolve(dt)
            after = self._output(t)[0]  # the state on [t, end): no event in between
            self._energy_wh -= (before + after) / 2.0 * dt / 3600.0
            self._energy_wh = min(max(self._energy_wh, 0.0), self.capacity_wh)
            t = end
            self._events(t)
            self._set_output(t)
        self._since = max(self._since, until)

    def _refresh(self, now: float) -> None:
        """The grid or the controls (may) have changed at ``now``: take them in."""
        self._grid = self._grid_now()
        values = None if self._grid is None else {"v": self._voltage_pct(),
                                                  "hz": self._grid[1]}
        for table, curves in ((gs.TRIP_CURVES, self._trips),
                              (gs.CESSATION_CURVES, self._cessations)):
            for curve, (quantity, _) in table.items():
                points = gs._points(self.controls.get(curve))
                curves[curve].observe(points, None if values is None else values[quantity],
                                      now)
        if self.tripped and self._in_window():
            if self._normal_since is None:
                self._normal_since = now
        else:
            self._normal_since = None
        self._evolve(0.0)
        self._events(now)
        self._set_output(now)

    def _update(self, changed_at: float | None = None) -> None:
        """Move on until now (or until ``changed_at``, when the grid was lost at a known
        moment shortly before now), then take in the grid as it is."""
        now = self._clock.seconds()
        end = now if changed_at is None else min(max(changed_at, self._since), now)
        self._advance(end)
        self._refresh(end)

    def _tick(self) -> None:
        self._update()
        self.link.send_power(self._power_w, self._var)

    # IInverter

    def apply(self, controls: Mapping[str, Any]) -> None:
        now = self._clock.seconds()
        self._advance(now)
        self.controls = dict(controls)
        _, given = gs.reactive_function(self.controls)
        kinds = {"opModFixedPF" if n.startswith("opModFixedPF") else n for n in given}
        if len(kinds) > 1 and given != self._reactive_warned:
            self.log.warn("{name}: more than one reactive-power function given ({given}); "
                          "using {used} (V2G-4.9.7-1)", name=self._name,
                          given=", ".join(given), used=given[0])
        self._reactive_warned = given
        self._refresh(now)

    def reading(self) -> InverterReading:
        self._update()
        if self.link is None:
            voltage, frequency = self.voltage, self.frequency
        elif self._grid is not None:
            voltage, frequency = self._grid
        else:
            voltage, frequency = 0.0, 0.0
        return InverterReading(self._clock.seconds(), self._power_w, self._var, voltage,
                               frequency, 100.0 * self._energy_wh / self.capacity_wh,
                               self.alarms())

    def alarms(self) -> int:
        """DERAlarm bits: the grid excursion that tripped the inverter or makes it cease."""
        bits = 0
        if self.tripped and self.trip_curve is not None:
            bits |= _ALARM_OF_CURVE.get(self.trip_curve, 0)
        if self.ceased and self._grid is not None:
            bits |= 2 if self._voltage_pct() > 100.0 else 4  # over / under voltage
        return bits

    # Misbehaviour

    def set_rogue_w(self, watts: float) -> None:
        """Discharge ``watts`` whenever grid is present, ignoring controls; 0 behaves again."""
        now = self._clock.seconds()
        self._advance(now)
        self.rogue_w = float(watts)
        self.log.warn("{name}: fault injection: {what}", name=self._name,
                      what=f"ROGUE, {self.rogue_w:g} W whenever grid is present"
                      if self.rogue_w else "rogue mode off, following controls")
        self._refresh(now)

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
                                 control=config["control"], max_var=config["max_var"],
                                 v_ref=config["v_ref"], nominal_hz=config["nominal_hz"],
                                 ramp_w_per_s=config["ramp_w_per_s"])
    if config["link"]:
        inverter.attach_link(config["link"], config["bind"], config["period"],
                             config["grid_timeout_s"])
    return inverter


inverter = PluginFactory(
    kind="inverter",
    name="simulated",
    description="Inverter and battery in memory with the profile's grid-support functions "
                "(active and reactive power, droop, trips, momentary cessation).",
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
        "max_var": Key("float", 0.0, "Rated reactive power, var (the var available to the "
                                     "reactive-power functions). 0: a 2-quadrant inverter, "
                                     "always 0 var.", min=0),
        "v_ref": Key("float", 240.0, "Reference voltage (setVRef) the curves' percentages "
                                     "refer to, V.", min=1),
        "nominal_hz": Key("float", 60.0, "Nominal grid frequency for frequency droop and the "
                                         "default Enter Service window, Hz.", min=1),
        "ramp_w_per_s": Key("float", 0.0, "Ramp rate of active-power changes, W/s (e.g. max_w "
                                          "for 0 to full in 1 s). 0: steps at once. De-"
                                          "energizing, trips and cessation always act at "
                                          "once; after a trip the Enter Service ramp applies.",
                            min=0),
    }, rules=[_check]),
    build=_build,
)
