"""Bundled plugin: a SunSpec meter (models 201-204) over Modbus/TCP or Modbus RTU.

At start and after every failure it finds the SunSpec map (the 'SunS' marker at 40000, 0 or
50000) and the first meter model; then every ``interval`` it reads that model whole (one
request, so values and scale factors belong together) and delivers a MeterSample in the DER
frame. Timeouts, lost connections, CRC errors, Modbus exception responses and unusable
values are reported as meter errors, which open the port's contactor. See docs/hardware.md.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from sepgw.plugin import (BuildContext, IMeter, IMeterListener, Key, MeterSample, PluginFactory,
                          Section)


@implementer(IMeter)
class SunSpecMeter:
    """Polls a SunSpec meter through a :class:`sepgw.plugin.modbus.ModbusClient`.

    ``invert`` False: the meter's positive W and var (import, as SunSpec meters count it)
    flow to the PEV, so they are negated into the DER frame (positive = PEV to grid).
    """

    log = Logger()

    def __init__(self, clock: Any, name: str, client: Any, interval: float,
                 bases: tuple[int, ...] = (40000, 0, 50000), invert: bool = False,
                 voltage: str = "auto", model: int = 0) -> None:
        self._clock = clock
        self._name = name
        self.client = client
        self.interval = interval
        self.error: str | None = None
        self.bases = bases
        self.invert = invert
        self.voltage = voltage
        self.model_id = model
        self.map: Any = None
        self.model: Any = None
        self.last: Any = None
        """The latest :class:`sepgw.plugin.sunspec.MeterReading` (energy counters included)."""
        self._listeners: list[Any] = []
        self._busy = False
        self._warned_var = False
        self._loop = LoopingCall(self.poll)
        self._loop.clock = clock

    # IMeter / IComponent

    def add_listener(self, listener: Any) -> None:
        self._listeners.append(IMeterListener(listener))

    def start(self) -> None:
        self.log.info("{name}: SunSpec meter on {device}, every {interval:g} s",
                      name=self._name, device=self.client.device, interval=self.interval)
        self._loop.start(self.interval, now=True)

    def stop(self) -> Deferred[None]:
        if self._loop.running:
            self._loop.stop()
        return self.client.close()

    # Polling

    def poll(self) -> Deferred[None] | None:
        """One measurement (finding the map first when needed); a poll still running when
        the next is due makes that one skip."""
        if self._busy:
            return None
        self._busy = True
        d = self._poll()
        d.addErrback(self._failed)
        d.addBoth(self._done)
        return d

    def _done(self, result: Any) -> None:
        self._busy = False

    @inlineCallbacks
    def _poll(self) -> Any:
        from sepgw.plugin import sunspec
        if self.model is None:
            yield self._discover()
        model = self.model
        regs = yield self.client.read_holding_registers(model.address, model.length + 2)
        reading = sunspec.parse_meter(regs, model)
        self.last = reading
        voltage = self._voltage(reading)
        var = reading.var
        if var is None:
            var = 0.0
            if not self._warned_var:
                self._warned_var = True
                self.log.warn("{name}: {device}: VAR at register {reg} not implemented; "
                              "reactive power reported as 0", name=self._name,
                              device=self.client.device,
                              reg=model.address + sunspec.METER_AT["VAR"])
        sign = 1.0 if self.invert else -1.0
        sample = MeterSample(self._clock.seconds(), sign * reading.w + 0.0, sign * var + 0.0,
                             voltage, reading.hz)
        if self.error is not None:
            self.log.info("{name}: meter healthy again", name=self._name)
            self.error = None
        for listener in list(self._listeners):
            listener.meter_sample(sample)

    @inlineCallbacks
    def _discover(self) -> Any:
        from sepgw.plugin import modbus, sunspec
        found = yield sunspec.discover(self.client.read_holding_registers, self.bases,
                                       absent=modbus.illegal_address)
        wanted = (self.model_id,) if self.model_id else sunspec.METER_MODELS
        model = found.find(wanted)
        if model is None:
            raise sunspec.SunSpecError(
                f"no meter model {'/'.join(map(str, wanted))} in the SunSpec map at "
                f"{found.base} (models {', '.join(map(str, found.ids())) or 'none'})")
        self.map, self.model = found, model
        self.log.info("{name}: {device}: SunSpec map at {base}, meter model {model} at "
                      "register {address}", name=self._name, device=self.client.device,
                      base=found.base, model=model.id, address=model.address)

    def _voltage(self, reading: Any) -> float:
        from sepgw.plugin import sunspec
        ln, ll = reading.voltage_ln, reading.voltage_ll
        if self.voltage == "ln":
            order = (ln, ll)
        elif self.voltage == "ll":
            order = (ll, ln)
        else:  # split phase and delta: line to line (240 V in North America)
            order = (ll, ln) if reading.model in (202, 204) else (ln, ll)
        if order[0] is None:
            wanted = "PhV" if self.voltage == "ln" else "PPV"
            if self.voltage != "auto":
                raise sunspec.PointError(
                    f"{wanted} at register {self.model.address + sunspec.METER_AT[wanted]} "
                    "is 0x8000 (not implemented); set voltage = 'auto'")
        return order[0] if order[0] is not None else order[1]  # type: ignore[return-value]

    def _failed(self, failure: Any) -> None:
        from sepgw.plugin import modbus, sunspec
        if not failure.check(modbus.ModbusError, sunspec.SunSpecError):
            self.log.failure("{name}: unexpected error polling the meter", failure,
                             name=self._name)
        reason = failure.getErrorMessage()
        if not failure.check(modbus.ModbusError) or not reason.startswith(self.client.device):
            reason = f"{self.client.device}: {reason}"
        if failure.check(modbus.ModbusExceptionResponse, sunspec.SunSpecError):
            self.model = None  # the map may have changed: find it again
        if reason != self.error:
            self.log.warn("{name}: meter error: {reason}", name=self._name, reason=reason)
        self.error = reason
        for listener in list(self._listeners):
            listener.meter_error(reason)


def _build(config: Mapping[str, Any], context: BuildContext) -> SunSpecMeter:
    from sepgw.plugin import modbus
    client = modbus.client_from_config(context.reactor, config)
    return SunSpecMeter(context.reactor, context.name, client, config["interval"],
                        tuple(config["bases"]), config["invert"], config["voltage"],
                        config["model"])


def _options() -> Section:
    from sepgw.plugin import modbus
    return Section({
        **modbus.connection_options(),
        "interval": Key("float", 1.0, "Seconds between readings.", min=0.05, max=60),
        "bases": Key(["int"], [40000, 0, 50000], "Register addresses searched for the "
                                                 "SunSpec 'SunS' marker, in order.",
                     non_empty=True),
        "model": Key("int", 0, "Meter model to read: 201 (single phase), 202 (split "
                               "phase), 203 (wye), 204 (delta); 0: the first of them in "
                               "the map.", choices=(0, 201, 202, 203, 204)),
        "invert": Key("bool", False, "CT orientation. false: the meter counts power to the "
                                     "PEV as positive (import, the SunSpec convention when "
                                     "the PEV is on the load side), reported negative in "
                                     "the DER frame; true: the meter counts power from the "
                                     "PEV as positive."),
        "voltage": Key("str", "auto", "Voltage reported: 'ln' (PhV, line to neutral), 'll' "
                                      "(PPV, line to line) or 'auto' (ll for models 202 and "
                                      "204, else ln; the other when one is not "
                                      "implemented).", choices=("auto", "ln", "ll")),
    }, rules=[modbus.connection_rules])


meter = PluginFactory(
    kind="meter",
    name="sunspec-modbus",
    description="SunSpec meter (models 201-204) over Modbus/TCP or RTU; errors open the "
                "contactor.",
    options=_options(),
    build=_build,
)
