"""What the console shows, as JSON, and where its events come from.

:class:`EVSEModel` listens to each port as the operator socket and the D-Bus interface do:
link and meter listener, 2030.5 session observer, authorization observer, and the log
events of the port's controller, gatekeeper and heartbeat monitor (state transitions,
trips, faults). :class:`PEVModel` takes the J3072 client's log events and its run report.
Both write the :class:`~sepgw.console.bus.EventBus` and build the snapshots the web layer
serves. Actions run the operator socket's own command code.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any, Callable, Mapping, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger, formatEvent
from zope.interface import implementer

from sepgw.console.bus import Event, EventBus, Sample
from sepgw.interfaces import ILinkListener, IMeterListener, LinkPeer, MeterSample

__all__ = ["ActionError", "EVSEModel", "PEVModel", "jsonable", "EXCHANGE", "RULES"]

EXCHANGE: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "di": ("DeviceInformation", ("V2G-4.5.3.1-1",)),
    "dercap": ("DERCapability", ("V2G-4.5.3.4-2",)),
    "ders": ("DERSettings", ("V2G-4.5.3.4-3",)),
    "dera": ("DERAvailability", ("V2G-4.5.3.4-4",)),
    "ps": ("PowerStatus", ("V2G-4.5.3.2-1",)),
    "dstat": ("DERStatus (heartbeat)", ("V2G-4.5.3.4-5", "V2G-4.8.1.1-2")),
}
"""The step-2 resources a PEV writes (profile 4.6.2), their names and requirement IDs."""

RULES: Sequence[tuple[str, str, tuple[str, ...]]] = (
    (r"-> authorized", "state", ("V2G-4.6.4-2",)),
    (r"loss of communications|heartbeats missed", "heartbeat", ("V2G-4.8.1.1-3",)),
    (r"communications restored", "heartbeat", ("V2G-4.8.1.1-4",)),
    (r"sleeping", "state", ("V2G-4.8.3-3",)),
    (r"without authorization|before.*authoriz", "gatekeeper", ("V2G-4.8.1.2-2",)),
    (r"contactor open commanded|above (its|the) limit|exceed", "gatekeeper",
     ("V2G-4.8.1.2-1",)),
    (r"authorized ->", "state", ("V2G-4.6.4-3",)),
    (r"opModFixedW -?[\d.]+ % (issued|on)", "operator", ("V2G-4.8.2-1",)),
    (r"contactor|meter", "gatekeeper", ()),
    (r" -> ", "state", ()),
)
"""Log text patterns: the first that matches gives the timeline kind and requirement IDs."""

RESPONSE_NAMES = {1: "Received", 2: "Started", 3: "Completed", 4: "Opt out", 5: "Opt in",
                  6: "Cancelled", 7: "Superseded"}


class ActionError(Exception):
    """An action refused: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def jsonable(value: Any) -> Any:
    """A 2030.5 value as JSON: dataclasses as objects (None fields left out), enums by
    value, bytes as hex."""
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def classify(text: str) -> tuple[str, tuple[str, ...]]:
    """The timeline kind and requirement IDs of a log line (``log`` and none by default)."""
    for pattern, kind, ids in RULES:
        if re.search(pattern, text):
            return kind, ids
    return "log", ()


def sample_json(sample: Sample) -> list[Any]:
    return list(sample[1:])


class _Model:
    """What both roles' models share: the bus, the log observer, the JSON."""

    role = ""
    log = Logger()

    def __init__(self, clock: Any, bus: EventBus) -> None:
        self.clock = clock
        self.bus = bus
        self._sources: dict[int, tuple[str, Callable[[], str | None]]] = {}

    def now(self) -> float:
        return float(self.clock.seconds())

    def observe(self, event: Mapping[str, Any]) -> None:
        """A log event: those of the watched objects (info and above) join the timeline."""
        source = event.get("log_source")
        if source is None:
            return
        found = self._sources.get(id(source))
        if found is None:
            return
        level = event.get("log_level")
        name = getattr(level, "name", "info")
        if name == "debug":
            return
        scope, session = found
        text = formatEvent(dict(event))
        kind, ids = classify(text)
        self.bus.event(scope, float(event.get("log_time") or self.now()), kind, text, ids,
                       session(), name)

    def watch(self, source: Any, scope: str, session: Callable[[], str | None]) -> None:
        self._sources[id(source)] = (scope, session)

    def snapshot(self) -> dict[str, Any]:
        """Everything the page draws, with the timelines and meter series held."""
        seq, sample_seq = self.bus.cursor
        return {"role": self.role, "time": self.now(), **self.status(),
                "timeline": {s: [e.as_json() for e in self.bus.timeline(s)]
                             for s in self.bus.scopes},
                "meter": {s: [sample_json(x) for x in self.bus.samples(s)]
                          for s in self.bus.scopes},
                "window": self.bus.meter_window_s, "cursor": [seq, sample_seq]}

    def update(self, cursor: tuple[int, int]) -> tuple[dict[str, Any], tuple[int, int]]:
        """The status now and what the bus got since ``cursor``; the new cursor."""
        events: list[Event] = self.bus.events_after(cursor[0])
        samples = self.bus.samples_after(cursor[1])
        new = self.bus.cursor
        return {"time": self.now(), **self.status(),
                "events": [e.as_json() for e in events],
                "samples": {s: [sample_json(x) for x in v] for s, v in samples.items()},
                "cursor": list(new)}, new

    def status(self) -> dict[str, Any]:
        raise NotImplementedError

    def act(self, action: Mapping[str, Any], who: str) -> Deferred[Any]:
        raise NotImplementedError

    def watched(self, watching: bool) -> None:
        """The first subscriber came (True) or the last went (False)."""


# -- EVSE -----------------------------------------------------------------------------------


def _control_json(control: Any, statuses: set[int]) -> dict[str, Any]:
    base = control.DERControlBase
    elements = {f.name: jsonable(getattr(base, f.name)) for f in dataclasses.fields(base)
                if getattr(base, f.name) is not None}
    status = control.EventStatus.currentStatus if control.EventStatus is not None else None
    return {"mrid": bytes(control.mRID).hex(), "description": control.description,
            "elements": elements, "status": jsonable(status),
            "responses": [{"status": s, "name": RESPONSE_NAMES.get(s, str(s))}
                          for s in sorted(statuses)]}


def port_view(controller: Any, states: Sequence[str]) -> dict[str, Any]:
    """One port as the console shows it: the operator's ``status`` of it, and the PEV's
    identity, the controls in force with their Responses, the latest Responses."""
    from sepgw.evse.operator import port_status

    view = port_status(controller)
    view["states"] = list(states)
    session = controller.session
    view["pev"] = None
    view["controls"] = []
    view["responses"] = []
    if session is not None:
        identity = session.identity
        hmn = identity.hardware_module_name
        view["pev"] = {
            "lfdi": session.lfdi, "sfdi": identity.sfdi, "connected_at": session.created,
            "energize": session.energize,
            "make_model": None if hmn is None else hmn.hw_type,
            "serial": None if hmn is None else hmn.serial_text()}
        management = controller.resources.management(session)
        view["controls"] = [_control_json(c, session.statuses(bytes(c.mRID)))
                            for c in management.current() + management.extras()]
        view["responses"] = [
            {"subject": bytes(r.subject).hex(), "status": jsonable(r.status),
             "name": RESPONSE_NAMES.get(int(r.status or 0), str(r.status)),
             "created": r.createdDateTime}
            for r in session.response_order[-20:]]
    return view


@implementer(ILinkListener, IMeterListener)
class _PortFeed:
    """One port's events into the bus."""

    def __init__(self, model: "EVSEModel", controller: Any, meter: Any, transport: Any) -> None:
        self.model = model
        self.port = controller
        self.name = str(controller.name)
        self._meter_error: str | None = None
        self._written: set[str] = set()
        self._inverter_status: Any = None
        model.bus.add_scope(self.name)
        if meter is not None:
            meter.add_listener(self)
        if transport is not None:
            transport.add_listener(self)
        controller.authorization_observers.append(self.authorization)
        controller.resources.attach_observers.append(self._attached)
        controller.resources.detach_observers.append(self._detached)
        for source in (controller, controller.gatekeeper, getattr(controller, "heartbeat",
                                                                   None)):
            if source is not None:
                model.watch(source, self.name, self.session)

    def session(self) -> str | None:
        s = self.port.session
        return None if s is None else str(s.lfdi)

    def _event(self, kind: str, text: str, ids: Sequence[str] = (), level: str = "info"
               ) -> None:
        self.model.bus.event(self.name, self.model.now(), kind, text, ids, self.session(),
                             level)

    # ILinkListener
    def link_up(self, peer: LinkPeer) -> None:
        self._event("link", f"link up, peer {peer.mac or peer.address or 'unknown'}")

    def link_down(self, reason: str) -> None:
        self._event("link", f"link down: {reason}")

    # IMeterListener: O(1), no event unless the meter's health changes
    def meter_sample(self, sample: MeterSample) -> None:
        self.model.bus.sample(self.name, self.model.now(), sample.active_power_w,
                              sample.reactive_power_var, sample.voltage_v, sample.frequency_hz)
        if self._meter_error is not None:
            self._meter_error = None
            self._event("meter", "meter samples again")

    def meter_error(self, reason: str) -> None:
        if reason != self._meter_error:
            self._meter_error = reason
            self._event("meter", f"meter error: {reason}", level="warn")

    # session observer
    def _attached(self, session: Any) -> None:
        if session.port_index != self.port.index:
            return
        session.observers.append(self)
        self._written = set()
        self._inverter_status = None
        identity = session.identity
        hmn = identity.hardware_module_name
        self.model.bus.event(
            self.name, self.model.now(), "tls",
            f"mutual TLS: PEV LFDI {session.lfdi}, SFDI {identity.sfdi}"
            + (f", HardwareModuleName hwType {hmn.hw_type} serial {hmn.serial_text()}"
               if hmn is not None else ", no HardwareModuleName"),
            ("V2G-4.1.3-2", "V2G-4.4-2"), str(session.lfdi))

    def _detached(self, session: Any) -> None:
        if session.port_index == self.port.index:
            self.model.bus.event(self.name, self.model.now(), "link",
                                 f"2030.5 session of LFDI {session.lfdi} ended", (),
                                 str(session.lfdi))

    def resource_written(self, session: Any, name: str, resource: Any) -> None:
        label, ids = EXCHANGE.get(name, (name, ()))
        if name == "dstat":
            status = getattr(resource, "inverterStatus", None)
            value = None if status is None else int(status.value)
            if name in self._written and value == self._inverter_status:
                return  # a heartbeat like the last one: not worth a line
            self._inverter_status = value
            label = f"{label}, inverterStatus {value}"
        first = name not in self._written
        self._written.add(name)
        self._event("exchange", f"PEV {'wrote' if first else 'updated'} {label}", ids)

    def response_received(self, session: Any, response: Any) -> None:
        status = int(response.status or 0)
        self._event("response", f"Response {status} {RESPONSE_NAMES.get(status, '')} to "
                                f"DERControl {bytes(response.subject).hex()[:8]}",
                    ("V2G-4.6.3-8", "V2G-4.6.4-1"))

    def readings_received(self, session: Any, meter: Any) -> None:
        pass

    def authorization(self, granted: bool) -> None:
        if granted:
            self._event("authorization", "authorized to discharge (opModEnergize true)",
                        ("V2G-4.6.4-2",))
        else:
            self._event("authorization", "authorization revoked (opModEnergize false): "
                        + "; ".join(self.port.reasons), ("V2G-4.6.4-3",), "warn")


class EVSEModel(_Model):
    """The EVSE's ports. ``ports``: (PortController, meter, transport) of each port."""

    role = "evse"
    ACTIONS = {"fixed-w": ("percent",), "clear-fixed-w": (), "clear-fault": ()}

    def __init__(self, clock: Any, bus: EventBus, ports: Sequence[tuple[Any, Any, Any]],
                 name: str = "sepgw") -> None:
        super().__init__(clock, bus)
        from sepgw.evse.controller import PortState
        from sepgw.evse.operator import OperatorProtocol

        self.name = name
        self.states = [s.value for s in PortState]
        self.controllers = [c for c, _, _ in ports]
        self.feeds = [_PortFeed(self, c, m, t) for c, m, t in ports]
        self.operator = OperatorProtocol({c.name: c for c in self.controllers})

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "actions": list(self.ACTIONS),
                "ports": [port_view(c, self.states) for c in self.controllers]}

    def act(self, action: Mapping[str, Any], who: str) -> Deferred[Any]:
        name = action.get("action")
        port = action.get("port")
        if name not in self.ACTIONS:
            raise ActionError(400, f"unknown action {name!r}; actions: "
                                   f"{', '.join(self.ACTIONS)}")
        if not isinstance(port, str):
            raise ActionError(400, "'port' (a port name) is required")
        words = [str(name), port]
        for arg in self.ACTIONS[str(name)]:
            value = action.get(arg)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ActionError(400, f"{arg!r} must be a number, got {value!r}")
            words.append(repr(float(value)))
        try:
            result = self.operator.command(words)
        except LookupError as e:
            raise ActionError(409 if port in self.operator.ports else 404, str(e)) from None
        except ValueError as e:
            raise ActionError(409 if name == "clear-fault" else 400, str(e)) from None
        self.bus.event(port, self.now(), "operator", f"{' '.join(words)} by {who}",
                       ("V2G-4.8.2-1",) if name == "fixed-w" else ())
        return succeed(result)


# -- PEV ------------------------------------------------------------------------------------


class PEVModel(_Model):
    """The PEV role: ``client()`` is the J3072 client (None before discovery), ``report``
    its run report. The inverter is sampled every ``sample_s`` only while someone
    watches."""

    role = "pev"
    SCOPE = "pev"
    ACTIONS = ("sleep", "wake")

    def __init__(self, clock: Any, bus: EventBus, client: Callable[[], Any], report: Any,
                 name: str = "sepgw-pev", sample_s: float = 1.0) -> None:
        super().__init__(clock, bus)
        self.client = client
        self.report = report
        self.name = name
        self.sample_s = sample_s
        self._steps = 0
        self._sampler: Any = None
        self._watched_client: Any = None
        bus.add_scope(self.SCOPE)

    def observe(self, event: Mapping[str, Any]) -> None:
        client = self.client()
        if client is not None and client is not self._watched_client:
            self._watched_client = client
            self._sources = {}
            self.watch(client, self.SCOPE, lambda: None)
        self._report_steps()
        super().observe(event)

    def _report_steps(self) -> None:
        """New run-report steps join the timeline (each with its requirement IDs)."""
        steps = self.report.steps
        while self._steps < len(steps):
            step = steps[self._steps]
            self._steps += 1
            mark = {True: "passed", False: "FAILED", None: "began"}[step.passed]
            self.bus.event(self.SCOPE, step.started, "step",
                           f"{step.name}: {mark}" + (f" ({step.detail})" if step.detail else ""),
                           step.requirements, None, "warn" if step.passed is False else "info")

    def status(self) -> dict[str, Any]:
        client = self.client()
        pev: dict[str, Any] = {"connected": client is not None}
        if client is not None:
            reading = client.inverter.reading()
            applied = getattr(client, "_applied", None)
            pev.update({
                "state": client.state, "energize": client.energize,
                "sleeping": client.sleeping, "comms_ok": client.comms_ok,
                "lfdi": client.lfdi,
                "inverter": {"w": reading.active_power_w, "var": reading.reactive_power_var,
                             "soc_pct": reading.state_of_charge_pct},
                "controls": jsonable(getattr(client, "effective", {})),
                "applied": None if applied is None else {
                    "discharge_allowed": applied[0], "opModFixedW_pct": applied[1],
                    "opModMaxLimW_pct": applied[2]},
                "max_w": float(client.vehicle["max_w"]),
            })
        return {"name": self.name, "actions": list(self.ACTIONS), "pev": pev,
                "report": self.report.as_dict()}

    def sample(self) -> None:
        """Take one inverter reading into the plot series."""
        client = self.client()
        if client is None:
            return
        r = client.inverter.reading()
        self.bus.sample(self.SCOPE, self.now(), r.active_power_w, r.reactive_power_var,
                        getattr(r, "voltage_v", None), getattr(r, "frequency_hz", None))

    def watched(self, watching: bool) -> None:
        from twisted.internet.task import LoopingCall

        if watching and self._sampler is None:
            self._sampler = LoopingCall(self.sample)
            self._sampler.clock = self.clock
            self._sampler.start(self.sample_s, now=True)
        elif not watching and self._sampler is not None:
            if self._sampler.running:
                self._sampler.stop()
            self._sampler = None

    def act(self, action: Mapping[str, Any], who: str) -> Deferred[Any]:
        from sepgw.pev.operator import PEVOperatorProtocol

        name = action.get("action")
        if name not in self.ACTIONS:
            raise ActionError(400, f"unknown action {name!r}; actions: "
                                   f"{', '.join(self.ACTIONS)}")
        done: Deferred[Any] = Deferred()

        class Capture(PEVOperatorProtocol):
            def answer(self, obj: Any) -> None:
                if done.called:
                    return
                if isinstance(obj, dict) and "error" in obj:
                    done.errback(ActionError(409, str(obj["error"])))
                else:
                    done.callback(obj)

        self.bus.event(self.SCOPE, self.now(), "operator", f"{name} by {who}",
                       ("V2G-4.8.3-1",))
        Capture(self.client).lineReceived(str(name).encode("ascii"))
        return done
