"""The gateway on D-Bus (txdbus): each port's status as properties, the operator's commands
as methods. Imported only when ``[dbus] enabled`` (txdbus is not on the idle start-up path).

EVSE role, bus name ``org.sepgw.Gateway``:

* ``/org/sepgw/Gateway`` (``org.sepgw.Gateway1``): ``Role``, ``Ports`` (the port objects);
* ``/org/sepgw/Gateway/port/<name>`` (``org.sepgw.Port1``): state, PEV identity,
  authorization and reasons, contactor, faults, meter values; methods ``FixedW``,
  ``ClearFixedW``, ``ClearFault``.

PEV role, bus name ``org.sepgw.Pev``: ``/org/sepgw/Pev`` (``org.sepgw.Pev1``): the J3072
state, authorization, sleep, inverter values; methods ``Sleep``, ``Wake``.

Properties are read live on ``Get``/``GetAll``. ``PropertiesChanged`` carries what changed
since the last signal; it is driven by events, never by polling: the port's link, meter,
session and authorization events and the log events of its controller, gatekeeper and
heartbeat monitor (as the systemd notifier), coalesced to one comparison per reactor turn.
The meter values change with every sample, so they are signalled at most once every
``[dbus] meter_interval_s``. Methods run the operator socket's own command code
(:mod:`sepgw.evse.operator`, :mod:`sepgw.pev.operator`); its refusals become D-Bus errors
(:data:`ERRORS`) carrying the same message. docs/dbus.md has the introspection XML.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable, Mapping, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, Logger, globalLogPublisher
from txdbus import client as txclient
from txdbus import marshal, objects
from txdbus.error import FailedToAcquireName
from txdbus.interface import DBusInterface, Method, Property
from zope.interface import implementer

from sepgw.interfaces import ILinkListener, IMeterListener, LinkPeer, MeterSample

__all__ = ["DBusService", "ERRORS", "PortObject", "PevObject", "Publisher", "RootObject",
           "evse_dbus", "object_path_part", "pev_dbus", "port_properties", "pev_properties"]

EVSE_ROOT = "/org/sepgw/Gateway"
PEV_ROOT = "/org/sepgw/Pev"
GATEWAY_INTERFACE = "org.sepgw.Gateway1"
PORT_INTERFACE = "org.sepgw.Port1"
PEV_INTERFACE = "org.sepgw.Pev1"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"

ERRORS = {
    "invalid": "org.freedesktop.DBus.Error.InvalidArgs",
    "unavailable": "org.sepgw.Error.NotAvailable",
    "refused": "org.sepgw.Error.Refused",
    "failed": "org.sepgw.Error.Failed",
}
"""D-Bus error names: a bad argument; no PEV session or the wrong state for the command; a
refusal (a contactor fault that cannot be cleared now); anything else."""

METER_PROPERTIES = frozenset({"MeterW", "MeterVar", "MeterV", "MeterHz"})

RECONNECT_S = 5.0
"""Seconds before connecting to the bus again after the connection was lost or refused."""


class DBusMethodError(Exception):
    """An operator command refused: txdbus sends it as the error ``dbusErrorName``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.dbusErrorName = ERRORS[kind]


# -- typed values (txdbus guesses a variant's signature from the Python type) --------------


class _Strings(list):  # type: ignore[type-arg]
    dbusSignature = "as"


class _Paths(list):  # type: ignore[type-arg]
    dbusSignature = "ao"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any) -> float:
    """A double; NaN stands for "no value" (no sample yet, or the meter did not say)."""
    return math.nan if value is None else float(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(type(a) is type(b) and a == b)


def object_path_part(name: str) -> str:
    """A port name as one object-path element: ``[A-Za-z0-9]`` kept, any other byte written
    ``_xx`` (its hex value), as systemd escapes unit names (``port 1`` → ``port_201``)."""
    if not name:
        return "_"
    return "".join(chr(b) if re.fullmatch(rb"[A-Za-z0-9]", bytes([b])) else f"_{b:02x}"
                   for b in name.encode("utf-8"))


# -- what is published -----------------------------------------------------------------------

PORT_PROPERTIES: tuple[tuple[str, str], ...] = (
    ("Name", "s"), ("State", "s"),
    ("Lfdi", "s"), ("Sfdi", "t"), ("ManufacturerId", "u"), ("Model", "s"),
    ("SerialNumber", "s"), ("ManufacturerInfo", "s"),
    ("Authorized", "b"), ("Reasons", "as"),
    ("Contactor", "s"), ("ContactorAllowed", "b"), ("ContactorSensed", "s"),
    ("ContactorFeedback", "b"), ("Fault", "s"), ("MeterFault", "s"), ("Violation", "s"),
    ("MeterW", "d"), ("MeterVar", "d"), ("MeterV", "d"), ("MeterHz", "d"),
)

PEV_PROPERTIES: tuple[tuple[str, str], ...] = (
    ("Connected", "b"), ("Evse", "s"), ("State", "s"), ("Authorized", "b"),
    ("Sleeping", "b"), ("CommsOk", "b"),
    ("InverterW", "d"), ("InverterVar", "d"), ("StateOfChargePct", "d"),
)


def port_properties(port: Any) -> dict[str, Any]:
    """A port's D-Bus properties, from what the operator socket's ``status`` shows
    (:func:`sepgw.evse.operator.port_status`) and the PEV's DeviceInformation."""
    from sepgw.evse.operator import port_status

    st = port_status(port)
    session = port.session
    stored = session.written.get("di") if session is not None else None
    di = stored.resource if stored is not None else None
    meter = st.get("meter") or {}
    return {
        "Name": st["port"], "State": st["state"],
        "Lfdi": _text(st["lfdi"]),
        "Sfdi": marshal.UInt64(session.identity.sfdi if session is not None else 0),
        "ManufacturerId": marshal.UInt32(int(di.mfID) if di is not None else 0),
        "Model": _text(di.mfModel if di is not None else None),
        "SerialNumber": _text(di.mfSerNum if di is not None else None),
        "ManufacturerInfo": _text(di.mfInfo if di is not None else None),
        "Authorized": bool(st["authorized"]), "Reasons": _Strings(st["reasons"]),
        "Contactor": _text(st["contactor"]),
        "ContactorAllowed": bool(st["contactor_allowed"]),
        "ContactorSensed": _text(st["contactor_sensed"]) or "unknown",
        "ContactorFeedback": bool(st["contactor_feedback"]),
        "Fault": _text(st["contactor_fault"]), "MeterFault": _text(st["meter_fault"]),
        "Violation": _text(st["violation"]),
        "MeterW": _number(meter.get("w")), "MeterVar": _number(meter.get("var")),
        "MeterV": _number(meter.get("v")), "MeterHz": _number(meter.get("hz")),
    }


def pev_properties(role_client: Any, url: str | None) -> dict[str, Any]:
    """The PEV role's D-Bus properties (``role_client``: the J3072 client, or None)."""
    c = role_client
    if c is None:
        return {"Connected": False, "Evse": _text(url), "State": "", "Authorized": False,
                "Sleeping": False, "CommsOk": False, "InverterW": math.nan,
                "InverterVar": math.nan, "StateOfChargePct": math.nan}
    reading = c.inverter.reading()
    return {"Connected": True, "Evse": _text(url), "State": _text(c.state),
            "Authorized": bool(c.energize), "Sleeping": bool(c.sleeping),
            "CommsOk": bool(c.comms_ok),
            "InverterW": _number(reading.active_power_w),
            "InverterVar": _number(reading.reactive_power_var),
            "StateOfChargePct": _number(reading.state_of_charge_pct)}


class Publisher:
    """Signals what changed of one object's properties: ``changed()`` (an event happened)
    schedules one comparison on the next reactor turn; properties in ``limited`` are signalled
    at most once every ``interval`` seconds (the latest value, once the interval is over).

    Pure: ``clock`` gives ``seconds``/``callLater``; ``emit(changed)`` sends the signal."""

    def __init__(self, clock: Any, snapshot: Callable[[], dict[str, Any]],
                 emit: Callable[[dict[str, Any]], None], limited: Iterable[str] = (),
                 interval: float = 1.0) -> None:
        self._clock = clock
        self.snapshot = snapshot
        self._emit = emit
        self._limited = frozenset(limited)
        self._interval = interval
        self._sent: dict[str, Any] = {}
        self._limited_at = -math.inf
        self._pending: Any = None
        self._deferred: Any = None
        self.active = False

    def start(self) -> None:
        """Signals from now on, relative to the values as they are now."""
        self.active = True
        self._sent = self.snapshot()

    def stop(self) -> None:
        self.active = False
        for call in (self._pending, self._deferred):
            if call is not None and call.active():
                call.cancel()
        self._pending = self._deferred = None

    def changed(self, *_: Any) -> None:
        """Something may have changed: compare on the next reactor turn."""
        if self.active and self._pending is None:
            self._pending = self._clock.callLater(0, self.flush)

    def _limited_due(self) -> None:
        self._deferred = None
        self.flush()

    def flush(self) -> None:
        self._pending = None
        if not self.active:
            return
        now = self._clock.seconds()
        changed = {k: v for k, v in self.snapshot().items()
                   if k not in self._sent or not _same(self._sent[k], v)}
        held = [k for k in changed if k in self._limited]
        if held:
            due = self._limited_at + self._interval
            if now >= due:
                self._limited_at = now
            else:
                for k in held:
                    del changed[k]
                if self._deferred is None:
                    self._deferred = self._clock.callLater(due - now, self._limited_due)
        if changed:
            self._sent.update(changed)
            self._emit(changed)


# -- exported objects ------------------------------------------------------------------------


class _Object(objects.DBusObject):
    """An object whose properties are computed when read (``values()``); read-only."""

    interface_name = ""
    signatures: Mapping[str, str] = {}

    def values(self) -> dict[str, Any]:
        raise NotImplementedError

    def _typed(self, name: str, value: Any) -> Any:
        cls = marshal.variantClassMap.get(self.signatures[name])
        return cls(value) if cls is not None and not isinstance(value, cls) else value

    def getAllProperties(self, interfaceName: str) -> dict[str, Any]:
        if interfaceName not in ("", self.interface_name):
            return {}
        return {k: self._typed(k, v) for k, v in self.values().items()}

    def dbus_Get(self, interfaceName: str, propertyName: str) -> Any:
        if interfaceName not in ("", self.interface_name) or \
                propertyName not in self.signatures:
            raise DBusPropertyError(f"no property {propertyName!r} on interface "
                                    f"{interfaceName!r} of {self.getObjectPath()}")
        return self._typed(propertyName, self.values()[propertyName])

    def dbus_GetAll(self, interfaceName: str) -> dict[str, Any]:
        return self.getAllProperties(interfaceName)

    def dbus_Set(self, interfaceName: str, propertyName: str, value: Any) -> None:
        raise DBusPropertyError(f"property {propertyName!r} of {self.getObjectPath()} is "
                                f"read-only", "org.freedesktop.DBus.Error.PropertyReadOnly")

    def properties_changed(self, changed: dict[str, Any]) -> None:
        self.emitSignal("PropertiesChanged", self.interface_name,
                        {k: self._typed(k, v) for k, v in changed.items()}, _Strings(),
                        interface=PROPERTIES_INTERFACE)


class DBusPropertyError(Exception):
    def __init__(self, message: str,
                 name: str = "org.freedesktop.DBus.Error.UnknownProperty") -> None:
        super().__init__(message)
        self.dbusErrorName = name


def _interface(name: str, props: Iterable[tuple[str, str]], *methods: Method) -> DBusInterface:
    return DBusInterface(name, *methods, *(Property(n, s) for n, s in props))


class RootObject(_Object):
    """``/org/sepgw/Gateway``: the role and its port objects."""

    interface_name = GATEWAY_INTERFACE
    signatures = {"Role": "s", "Ports": "ao"}
    dbusInterfaces = [_interface(GATEWAY_INTERFACE, signatures.items())]

    def __init__(self, path: str, role: str, ports: list[str]) -> None:
        super().__init__(path)
        self._values = {"Role": role, "Ports": _Paths(marshal.ObjectPath(p) for p in ports)}

    def values(self) -> dict[str, Any]:
        return dict(self._values)


class PortObject(_Object):
    """``/org/sepgw/Gateway/port/<name>``: one port (``org.sepgw.Port1``)."""

    interface_name = PORT_INTERFACE
    signatures = dict(PORT_PROPERTIES)
    dbusInterfaces = [_interface(PORT_INTERFACE, PORT_PROPERTIES,
                                 Method("FixedW", "d"), Method("ClearFixedW"),
                                 Method("ClearFault", "", "s"))]
    log = Logger()

    def __init__(self, path: str, port: Any, operator: Any) -> None:
        super().__init__(path)
        self.port = port
        self._operator = operator
        self.on_command: Callable[[], None] = lambda: None
        """Called after every command (its publisher's ``changed``)."""

    def values(self) -> dict[str, Any]:
        return port_properties(self.port)

    def command(self, *words: str) -> Any:
        """Run an operator socket command on this port; refusals as D-Bus errors."""
        from sepgw.evse.gatekeeper import FaultNotCleared

        try:
            return self._operator.command(list(words))
        except FaultNotCleared as e:
            raise DBusMethodError("refused", str(e)) from None
        except ValueError as e:
            raise DBusMethodError("invalid", str(e)) from None
        except LookupError as e:
            raise DBusMethodError("unavailable", str(e)) from None
        finally:
            self.on_command()

    def dbus_FixedW(self, percent: float) -> None:
        self.log.info("D-Bus: FixedW({pct}) on {port}", pct=percent, port=self.port.name)
        self.command("fixed-w", self.port.name, repr(float(percent)))

    def dbus_ClearFixedW(self) -> None:
        self.log.info("D-Bus: ClearFixedW on {port}", port=self.port.name)
        self.command("clear-fixed-w", self.port.name)

    def dbus_ClearFault(self) -> str:
        self.log.info("D-Bus: ClearFault on {port}", port=self.port.name)
        return str(self.command("clear-fault", self.port.name).get("cleared", ""))


class PevObject(_Object):
    """``/org/sepgw/Pev``: the PEV role (``org.sepgw.Pev1``)."""

    interface_name = PEV_INTERFACE
    signatures = dict(PEV_PROPERTIES)
    dbusInterfaces = [_interface(PEV_INTERFACE, PEV_PROPERTIES, Method("Sleep"),
                                 Method("Wake"))]
    log = Logger()

    def __init__(self, path: str, client: Callable[[], Any],
                 url: Callable[[], str | None] = lambda: None) -> None:
        super().__init__(path)
        self._client = client
        self._url = url
        self.on_command: Callable[[], None] = lambda: None

    def values(self) -> dict[str, Any]:
        return pev_properties(self._client(), self._url())

    def command(self, word: str) -> Deferred[None]:
        """Run a command of the PEV's operator socket; its error answer as a D-Bus error
        (no session or the wrong state: NotAvailable; a failed sleep or wake: Failed)."""
        from sepgw.pev.operator import PEVOperatorProtocol

        done: Deferred[None] = Deferred()

        class Capture(PEVOperatorProtocol):
            def answer(self, obj: Any) -> None:
                if done.called:
                    return
                if isinstance(obj, dict) and "error" in obj:
                    msg = str(obj["error"])
                    kind = ("unavailable" if msg.startswith(("no 2030.5 session", "cannot "))
                            else "failed")
                    done.errback(DBusMethodError(kind, msg))
                else:
                    done.callback(None)

        self.log.info("D-Bus: {command}", command=word)
        Capture(self._client).lineReceived(word.encode("ascii"))

        def after(result: Any) -> Any:
            self.on_command()
            return result
        return done.addBoth(after)

    def dbus_Sleep(self) -> Deferred[None]:
        return self.command("sleep")

    def dbus_Wake(self) -> Deferred[None]:
        return self.command("wake")


# -- event sources ---------------------------------------------------------------------------


@implementer(ILinkListener, IMeterListener)
class PortEvents:
    """Every event that may change a port's properties, for its :class:`Publisher`: link and
    meter listener, session observer, authorization and attach/detach observer."""

    def __init__(self, port: Any, publisher: Publisher, meter: Any = None,
                 transport: Any = None) -> None:
        self.port = port
        self.publisher = publisher
        if meter is not None:
            meter.add_listener(self)
        if transport is not None:
            transport.add_listener(self)
        port.authorization_observers.append(publisher.changed)
        port.resources.attach_observers.append(self._attached)
        port.resources.detach_observers.append(self._detached)

    def sources(self) -> list[Any]:
        """The objects whose log events may mean a change (state transitions, faults)."""
        return [self.port, self.port.gatekeeper, getattr(self.port, "heartbeat", None)]

    def link_up(self, peer: LinkPeer) -> None:
        self.publisher.changed()

    def link_down(self, reason: str) -> None:
        self.publisher.changed()

    def meter_sample(self, sample: MeterSample) -> None:
        self.publisher.changed()

    def meter_error(self, reason: str) -> None:
        self.publisher.changed()

    def _attached(self, session: Any) -> None:
        if session.port_index == self.port.index:
            session.observers.append(self)
            self.publisher.changed()

    def _detached(self, session: Any) -> None:
        if session.port_index == self.port.index:
            self.publisher.changed()

    def resource_written(self, session: Any, name: str, resource: Any) -> None:
        self.publisher.changed()

    def response_received(self, session: Any, response: Any) -> None:
        self.publisher.changed()

    def readings_received(self, session: Any, meter: Any) -> None:
        self.publisher.changed()


# -- the service ------------------------------------------------------------------------------


class DBusService(Service):
    """Connects to the bus, exports the objects, takes the well-known name, and keeps the
    objects' publishers running while connected (reconnecting after RECONNECT_S when the
    bus goes away). A bus that cannot be reached is logged and never stops the gateway.

    ``exports``: (object, publisher or None); ``sources()``: (log source, publisher) pairs."""

    log = Logger()

    def __init__(self, reactor: Any, bus: str, name: str,
                 exports: list[tuple[_Object, Publisher | None]],
                 sources: Callable[[], list[tuple[Any, Publisher]]]) -> None:
        self.setName("dbus")
        self.reactor = reactor
        self.bus = bus
        self.bus_name = name
        self.exports = exports
        self._sources = sources
        self.connection: Any = None
        self.ready: Deferred[Any] = Deferred()
        """Fires once the name is owned and the objects are exported (tests wait on it)."""
        self._retry: Any = None
        self._observing = False

    @property
    def publishers(self) -> list[Publisher]:
        return [p for _, p in self.exports if p is not None]

    def startService(self) -> None:
        super().startService()
        globalLogPublisher.addObserver(cast(ILogObserver, self._observe))
        self._observing = True
        self._connect()

    def stopService(self) -> None:
        super().stopService()
        if self._observing:
            globalLogPublisher.removeObserver(cast(ILogObserver, self._observe))
            self._observing = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        for p in self.publishers:
            p.stop()
        conn, self.connection = self.connection, None
        if conn is not None:
            conn.disconnect()

    def _observe(self, event: Mapping[str, Any]) -> None:
        source = event.get("log_source")
        if source is None or self.connection is None:
            return
        for watched, publisher in self._sources():
            if source is watched:
                publisher.changed()

    def _connect(self) -> None:
        self._retry = None
        d = txclient.connect(self.reactor, self.bus)
        d.addCallback(self._connected)
        d.addErrback(self._failed)

    async def _export(self, conn: Any) -> None:
        for obj, _ in self.exports:
            conn.exportObject(obj)
        await conn.requestBusName(self.bus_name)

    def _connected(self, conn: Any) -> Deferred[None] | None:
        if not self.running:
            conn.disconnect()
            return None
        self.connection = conn
        conn.notifyOnDisconnect(self._lost)
        d = Deferred.fromCoroutine(self._export(conn))

        def owned(_: Any) -> None:
            for p in self.publishers:
                p.start()
            self.log.info("D-Bus: {name} on the {bus} bus", name=self.bus_name,
                          bus=self.bus)
            if not self.ready.called:
                self.ready.callback(self)
        return d.addCallback(owned)

    def _failed(self, failure: Any) -> None:
        reason = failure.getErrorMessage()
        conn, self.connection = self.connection, None
        if conn is not None:
            conn.disconnect()
        if conn is not None and (failure.check(FailedToAcquireName) or "AccessDenied" in
                                 str(getattr(failure.value, "errName", ""))):
            # A configuration problem: not retried (the error says what to do).
            self.log.error("D-Bus: the {bus} bus refused the name {name}: {reason}; D-Bus "
                           "interface off (install etc/dbus-1/system.d/org.sepgw.Gateway.conf "
                           "and reload dbus, or check that no other instance owns it)",
                           name=self.bus_name, bus=self.bus, reason=reason)
            return
        self.log.error("D-Bus: cannot connect to the {bus} bus: {reason}; trying again in "
                       "{delay:g} s", bus=self.bus, reason=reason, delay=RECONNECT_S)
        self._schedule_retry()

    def _lost(self, conn: Any, reason: Any) -> None:
        if conn is not self.connection:
            return
        self.connection = None
        for p in self.publishers:
            p.stop()
        if self.running:
            self.log.warn("D-Bus: connection to the {bus} bus lost; reconnecting in "
                          "{delay:g} s", bus=self.bus, delay=RECONNECT_S)
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self.running and self._retry is None:
            self._retry = self.reactor.callLater(RECONNECT_S, self._connect)


def _bus_address(settings: Mapping[str, Any]) -> str:
    return str(settings["bus"])


def evse_dbus(gateway: Any, settings: Mapping[str, Any]) -> DBusService:
    """The EVSE's D-Bus service: one object per port of ``gateway`` (an EVSEGateway)."""
    from sepgw.evse.operator import OperatorProtocol

    reactor = gateway.reactor
    operator = OperatorProtocol({p.controller.name: p.controller for p in gateway.ports})
    return _evse_service(reactor, settings, [(p.controller, p.meter, p.transport)
                                             for p in gateway.ports], operator)


def _evse_service(reactor: Any, settings: Mapping[str, Any],
                  ports: list[tuple[Any, Any, Any]], operator: Any) -> DBusService:
    exports: list[tuple[_Object, Publisher | None]] = []
    sources: list[tuple[Any, Publisher]] = []
    paths = []
    for controller, meter, transport in ports:
        path = f"{EVSE_ROOT}/port/{object_path_part(controller.name)}"
        paths.append(path)
        obj = PortObject(path, controller, operator)
        publisher = Publisher(reactor, obj.values, obj.properties_changed,
                              limited=METER_PROPERTIES,
                              interval=float(settings["meter_interval_s"]))
        obj.on_command = publisher.changed
        events = PortEvents(controller, publisher, meter, transport)
        sources.extend((s, publisher) for s in events.sources() if s is not None)
        exports.append((obj, publisher))
    exports.insert(0, (RootObject(EVSE_ROOT, "evse", paths), None))
    return DBusService(reactor, _bus_address(settings), settings["name"], exports,
                       lambda: sources)


def pev_dbus(role: Any, settings: Mapping[str, Any]) -> DBusService:
    """The PEV role's D-Bus service (``role``: a PEVController)."""
    service = role.j3072
    obj = PevObject(PEV_ROOT, lambda: service.client, lambda: service.url)
    publisher = Publisher(role.reactor, obj.values, obj.properties_changed)
    obj.on_command = publisher.changed

    def sources() -> list[tuple[Any, Publisher]]:
        watched = [service] if service.client is None else [service, service.client]
        return [(s, publisher) for s in watched]
    return DBusService(role.reactor, _bus_address(settings), settings["name"],
                       [(obj, publisher)], sources)

