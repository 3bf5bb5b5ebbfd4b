"""Bundled plugin (PEV role): a bidirectional inverter speaking SunSpec over Modbus.

``IInverter.apply`` is mapped to the DER models the device offers: the IEEE 1547 models
701-704 (703 enter service, 704 active-power setpoint, limit and reactive-power setpoint)
when present, else the older 123 immediate controls. Readings come back from model 701, else
101-103; the state of charge from 713, else 124. Controls are written when they change and
again after any failure, until the device has taken them. See docs/hardware.md.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from sepgw.plugin import BuildContext, IInverter, InverterReading, Key, PluginFactory, Section

MAPPED = {"opModEnergize", "opModFixedW", "opModMaxLimW", "opModFixedVar"}
"""The controls this plugin writes to the device."""

_VAR_REF_704 = {"setMaxW": 0, "setMaxVar": 1, "statVarAvail": 2}
"""opModFixedVar reference -> model 704 VarSetMod (W_MAX_PCT, VAR_MAX_PCT, VAR_AVAIL_PCT)."""

_ALARMS_701 = {8: 8, 9: 16, 10: 2, 11: 4}
"""Model 701 Alrm bit -> 2030.5 DERAlarm bit: over/under frequency, over/under voltage."""


@implementer(IInverter)
class SunSpecInverter:
    """Polls the device every ``interval`` s; writes the controls in effect when they change.

    ``max_w`` is the PEV's setMaxW, the base of opModFixedW and opModMaxLimW percentages
    (0: the device's WMax from model 702, or WRtg from 120).
    """

    log = Logger()

    def __init__(self, clock: Any, name: str, client: Any, interval: float,
                 bases: tuple[int, ...] = (40000, 0, 50000), max_w: float = 0.0,
                 soc_pct: float = 50.0) -> None:
        self._clock = clock
        self._name = name
        self.client = client
        self.interval = interval
        self.bases = bases
        self.max_w = max_w
        self.soc_pct = soc_pct
        self.controls: dict[str, Any] = {"opModEnergize": False}
        self.error: str | None = None
        self.models: dict[str, Any] = {}
        self.device_w_max: float | None = None
        self.unsupported: tuple[str, ...] = ()
        self._sf: dict[str, int] = {}
        self._dirty = True
        self._busy = False
        self._next: list[Deferred[None]] = []
        self._reading = InverterReading(clock.seconds(), 0.0, 0.0, 0.0, 0.0, soc_pct)
        self._loop = LoopingCall(self.poll)
        self._loop.clock = clock

    # IComponent

    def start(self) -> None:
        self.log.info("{name}: SunSpec inverter on {device}", name=self._name,
                      device=self.client.device)
        self._loop.start(self.interval, now=True)

    def stop(self) -> Deferred[Any]:
        if self._loop.running:
            self._loop.stop()
        self.controls = {"opModEnergize": False}
        self._dirty = True
        d = self._write() if self.models else Deferred()
        if not self.models:
            d.callback(None)
        d.addErrback(lambda f: self.log.error("{name}: could not stop the inverter: {e}",
                                              name=self._name, e=f.getErrorMessage()))
        d.addBoth(lambda _: self.client.close())
        return d

    # IInverter

    def apply(self, controls: Mapping[str, Any]) -> None:
        self.controls = dict(controls)
        self._dirty = True
        unsupported = tuple(sorted(k for k in controls if k not in MAPPED))
        if unsupported and unsupported != self.unsupported:
            self.log.warn("{name}: not mapped to the device (it keeps its own settings): "
                          "{names}", name=self._name, names=", ".join(unsupported))
        self.unsupported = unsupported
        self.poll()

    def reading(self) -> InverterReading:
        return self._reading

    # Polling

    def poll(self) -> Deferred[None]:
        """Find the map if needed, write the controls if they changed, read the inverter.
        Fires when done; asked while a poll runs, another follows it and this fires then."""
        d: Deferred[None] = Deferred()
        if self._busy:
            self._next.append(d)
            return d
        self._busy = True
        waiting, self._next = [d] + self._next, []
        run = self._poll()
        run.addErrback(self._failed)

        def done(_: Any) -> None:
            self._busy = False
            for w in waiting:
                w.callback(None)
            if self._next:
                queued = self._next.pop(0)
                self.poll().chainDeferred(queued)
        run.addBoth(done)
        return d

    @inlineCallbacks
    def _poll(self) -> Any:
        if not self.models:
            yield self._discover()
        if self._dirty:
            yield self._write()
        yield self._read()
        if self.error is not None:
            self.log.info("{name}: inverter answering again", name=self._name)
            self.error = None

    def _failed(self, failure: Any) -> None:
        from sepgw.plugin import modbus, sunspec
        if not failure.check(modbus.ModbusError, sunspec.SunSpecError):
            self.log.failure("{name}: unexpected error", failure, name=self._name)
        reason = failure.getErrorMessage()
        if not reason.startswith(self.client.device):
            reason = f"{self.client.device}: {reason}"
        if failure.check(modbus.ModbusExceptionResponse, sunspec.SunSpecError):
            self.models = {}  # find the map again
        self._dirty = True
        if reason != self.error:
            self.log.error("{name}: inverter error: {reason}", name=self._name, reason=reason)
        self.error = reason

    @inlineCallbacks
    def _read_model(self, model: Any) -> Any:
        regs = yield self.client.read_holding_registers(model.address, model.length + 2)
        return regs

    @inlineCallbacks
    def _discover(self) -> Any:
        from sepgw.plugin import modbus, sunspec
        found = yield sunspec.discover(self.client.read_holding_registers, self.bases,
                                       absent=modbus.illegal_address)
        models = {
            "measure": found.find((701, 103, 102, 101)),
            "control": found.find((704,)) or found.find((123,)),
            "capacity": found.find((702, 120)),
            "enter": found.find((703,)),
            "soc": found.find((713, 124)),
        }
        if models["measure"] is None or models["control"] is None:
            raise sunspec.SunSpecError(
                f"no {'measurement (701 or 101-103)' if models['measure'] is None else ''}"
                f"{' and no ' if models['measure'] is None and models['control'] is None else ''}"
                f"{'control model (704 or 123)' if models['control'] is None else ''} in the "
                f"SunSpec map at {found.base} (models {', '.join(map(str, found.ids()))})")
        sf: dict[str, int] = {}
        control = models["control"]
        regs = yield self._read_model(control)
        if control.id == 704:
            sunspec.check_model(regs, control, 57)
            for name in ("WMaxLimPct_SF", "WSet_SF", "VarSetPct_SF"):
                sf[name] = sunspec.scale_factor(regs, control.address,
                                                sunspec.DER_CONTROLS_AT, name)
        else:
            sunspec.check_model(regs, control, 24)
            sf["WMaxLimPct_SF"] = sunspec.scale_factor(regs, control.address,
                                                       sunspec.IMMEDIATE_AT, "WMaxLimPct_SF")
        w_max = None
        capacity = models["capacity"]
        if capacity is not None:
            regs = yield self._read_model(capacity)
            if capacity.id == 702:
                sunspec.check_model(regs, capacity, 44)
                w_max = sunspec.value(regs, capacity.address, sunspec.DER_CAPACITY_AT, "WMax",
                                      "uint16", "W_SF", required=False)
            else:
                sunspec.check_model(regs, capacity, 3)
                w_max = sunspec.value(regs, capacity.address, sunspec.NAMEPLATE_AT, "WRtg",
                                      "uint16", "WRtg_SF", required=False)
        if not w_max and not self.max_w:
            raise sunspec.SunSpecError(
                "the device states no WMax (702) or WRtg (120): configure max_w")
        self.models, self._sf, self.device_w_max = models, sf, w_max
        self._dirty = True
        self.log.info("{name}: {device}: SunSpec map at {base}; measurement {m}, controls "
                      "{c}, WMax {w}", name=self._name, device=self.client.device,
                      base=found.base, m=models["measure"].id, c=control.id,
                      w=f"{w_max:g} W" if w_max else "unknown")

    # Controls

    def _base_w(self) -> float:
        return self.max_w or float(self.device_w_max or 0.0)

    def _target_w(self) -> float:
        """The active-power setpoint, W (positive discharges, V2G-4.8.2-2): 0 unless
        opModEnergize; opModFixedW percent of max_w within ±max_w, capped by opModMaxLimW."""
        c, base = self.controls, self._base_w()
        if not c.get("opModEnergize"):
            return 0.0
        power = max(-base, min(base, base * float(c.get("opModFixedW") or 0.0) / 100.0))
        if c.get("opModMaxLimW") is not None:
            power = min(power, base * max(0.0, float(c["opModMaxLimW"])) / 100.0)
        return power

    def _device_pct(self, percent_of_max_w: float) -> float:
        """A percentage of max_w as a percentage of the device's WMax."""
        device = self.device_w_max or self._base_w()
        return max(0.0, min(100.0, percent_of_max_w * self._base_w() / device))

    @inlineCallbacks
    def _write(self) -> Any:
        from sepgw.plugin import sunspec
        control, enter = self.models["control"], self.models["enter"]
        energize = bool(self.controls.get("opModEnergize"))
        target = self._target_w()
        limit = self.controls.get("opModMaxLimW")
        self._dirty = False
        if control.id == 704:
            a = control.address
            at = sunspec.DER_CONTROLS_AT
            yield self.client.write_registers(
                a + at["WSetEna"], [1, 1] + sunspec.encode(target, self._sf["WSet_SF"],
                                                           "int32", "WSet"))
            pct = self._device_pct(float(limit)) if limit is not None and energize else 100.0
            yield self.client.write_registers(
                a + at["WMaxLimPctEna"],
                [1 if limit is not None and energize else 0]
                + sunspec.encode(pct, self._sf["WMaxLimPct_SF"], "uint16", "WMaxLimPct"))
            var = self.controls.get("opModFixedVar")
            mode = _VAR_REF_704.get(var.get("ref") or "setMaxW") if var else None
            if var and mode is None:
                self.log.warn("{name}: opModFixedVar reference {ref} not mapped; reactive "
                              "setpoint disabled", name=self._name, ref=var.get("ref"))
            enabled = bool(var) and mode is not None and energize
            yield self.client.write_registers(a + at["VarSetEna"],
                                              [1 if enabled else 0, mode or 0])
            if enabled and var is not None:
                yield self.client.write_registers(
                    a + at["VarSetPct"], sunspec.encode(float(var["percent"]),
                                                        self._sf["VarSetPct_SF"], "int16",
                                                        "VarSetPct"))
            if enter is not None:
                yield self.client.write_registers(
                    enter.address + sunspec.DER_ENTER_SERVICE_AT["ES"], [1 if energize else 0])
        else:  # 123: connect, and a discharge limit (no charge setpoint in this model)
            a, at = control.address, sunspec.IMMEDIATE_AT
            if target < 0:
                self.log.warn("{name}: model 123 has no charging setpoint: {w:g} W not "
                              "applied", name=self._name, w=target)
            pct = self._device_pct(100.0 * max(target, 0.0) / self._base_w())
            yield self.client.write_registers(a + at["Conn"], [1 if energize else 0])
            yield self.client.write_registers(
                a + at["WMaxLimPct"], sunspec.encode(pct, self._sf["WMaxLimPct_SF"],
                                                     "uint16", "WMaxLimPct"))
            yield self.client.write_registers(a + at["WMaxLim_Ena"], [1])

    # Readings

    @inlineCallbacks
    def _read(self) -> Any:
        from sepgw.plugin import sunspec
        m = self.models["measure"]
        regs = yield self._read_model(m)
        alarms = 0
        if m.id == 701:
            sunspec.check_model(regs, m, 120)
            at, a = sunspec.DER_MEASURE_AT, m.address
            w = sunspec.value(regs, a, at, "W", "int16", "W_SF")
            var = sunspec.value(regs, a, at, "Var", "int16", "Var_SF", required=False)
            v = (sunspec.value(regs, a, at, "LLV", "uint16", "V_SF", required=False)
                 or sunspec.value(regs, a, at, "LNV", "uint16", "V_SF"))
            hz = sunspec.value(regs, a, at, "Hz", "uint32", "Hz_SF")
            if sunspec.implemented(regs, at["Alrm"], "bitfield32"):
                bits = sunspec.raw(regs, at["Alrm"], "bitfield32")
                alarms = sum(der for bit, der in _ALARMS_701.items() if bits >> bit & 1)
        else:
            sunspec.check_model(regs, m, 20)
            at, a = sunspec.INVERTER_AT, m.address
            w = sunspec.value(regs, a, at, "W", "int16", "W_SF")
            var = sunspec.value(regs, a, at, "VAr", "int16", "VAr_SF", required=False)
            v = (sunspec.value(regs, a, at, "PPVphAB", "uint16", "V_SF", required=False)
                 or sunspec.value(regs, a, at, "PhVphA", "uint16", "V_SF"))
            hz = sunspec.value(regs, a, at, "Hz", "uint16", "Hz_SF")
        soc: float | None = self.soc_pct
        s = self.models["soc"]
        if s is not None:
            sregs = yield self._read_model(s)
            if s.id == 713:
                sunspec.check_model(sregs, s, 7)
                soc = sunspec.value(sregs, s.address, sunspec.DER_STORAGE_AT, "SoC", "uint16",
                                    "Pct_SF")
            else:
                sunspec.check_model(sregs, s, 21)
                soc = sunspec.value(sregs, s.address, sunspec.STORAGE_AT, "ChaState",
                                    "uint16", "ChaState_SF")
        self._reading = InverterReading(self._clock.seconds(), float(w or 0.0),
                                        float(var or 0.0), float(v or 0.0), float(hz or 0.0),
                                        float(soc if soc is not None else self.soc_pct),
                                        alarms)


def _build(config: Mapping[str, Any], context: BuildContext) -> SunSpecInverter:
    from sepgw.plugin import modbus
    client = modbus.client_from_config(context.reactor, config)
    return SunSpecInverter(context.reactor, context.name, client, config["interval"],
                           tuple(config["bases"]), config["max_w"], config["soc_pct"])


def _options() -> Section:
    from sepgw.plugin import modbus
    return Section({
        **modbus.connection_options(),
        "interval": Key("float", 0.5, "Seconds between readings (controls are written at "
                                      "once when they change).", min=0.05, max=60),
        "bases": Key(["int"], [40000, 0, 50000], "Register addresses searched for the "
                                                 "SunSpec 'SunS' marker, in order.",
                     non_empty=True),
        "max_w": Key("float", 0.0, "The PEV's setMaxW, W: the base of opModFixedW and "
                                   "opModMaxLimW percentages. 0: the device's WMax (model "
                                   "702) or WRtg (model 120).", min=0),
        "soc_pct": Key("float", 50.0, "State of charge reported when the device has neither "
                                      "model 713 nor 124, %.", min=0, max=100),
    }, rules=[modbus.connection_rules])


inverter = PluginFactory(
    kind="inverter",
    name="sunspec-modbus",
    description="Bidirectional inverter speaking SunSpec over Modbus (models 701-704, or "
                "101-103 and 123).",
    options=_options(),
    build=_build,
)
