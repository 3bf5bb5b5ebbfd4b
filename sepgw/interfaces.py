"""The plugin contracts of sepgw.

Every kind of plugin is a pair of zope Interfaces:

* a *factory* (:class:`IPluginFactory`), the object a drop-in module exposes at module level and
  that :func:`twisted.plugin.getPlugins` finds: it has a ``kind``, a ``name``, a one-line
  ``description``, declares its configuration keys and builds the component;
* the *component* it builds, which provides the interface of its kind (:class:`ITransport`,
  :class:`IContactor`, :class:`IMeter`, :class:`IInverter`, :class:`IAuthorizationPolicy`,
  :class:`IUplink`); a contactor with an auxiliary contact also :class:`IContactorFeedback`.

Components are started and stopped by the service tree (see :mod:`sepgw.service`) through the
common :class:`IComponent` methods. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface


class PluginKind(str, enum.Enum):
    """The kinds of plugin an integrator can drop in."""

    transport = "transport"
    contactor = "contactor"
    meter = "meter"
    inverter = "inverter"
    policy = "policy"
    uplink = "uplink"


class IComponent(Interface):
    """Something the service tree starts and stops."""

    def start() -> Any:
        """Start working; may return a Deferred that fires when started."""

    def stop() -> Any:
        """Stop working and release resources; may return a Deferred."""


# --------------------------------------------------------------------------------------------
# Transport


@dataclass(frozen=True)
class LinkPeer:
    """What a transport knows about the vehicle at the other end of a port's link."""

    mac: str | None = None
    """The peer's MAC address (``aa:bb:cc:dd:ee:ff``), if the link layer knows it."""
    address: str | None = None
    """The peer's IP address, if known."""


class ILinkListener(Interface):
    """Receives link events from a transport."""

    def link_up(peer: LinkPeer) -> None:
        """A PEV is present on the link."""

    def link_down(reason: str) -> None:
        """The PEV is gone or the link failed; ``reason`` says why."""


class ITransport(IComponent):
    """A port's link to one vehicle: Ethernet, PLC modem with SLAC, or a simulation."""

    interface = Attribute("Name of the network interface (str) the link uses, or None.")
    is_up = Attribute("True while a peer is present on the link.")

    def add_listener(listener: ILinkListener) -> None:
        """Deliver future link events to ``listener`` (link_up at once if already up)."""


# --------------------------------------------------------------------------------------------
# Contactor


class ContactorState(str, enum.Enum):
    """Confirmed state of a contactor."""

    open = "open"
    closed = "closed"
    unknown = "unknown"


class ContactorRefused(Exception):
    """The contactor was asked to close while closing is not allowed."""


class IContactor(IComponent):
    """The switch between the port and the vehicle.

    Contract: while ``allowed`` is False the contactor never closes, whoever asks; setting
    ``allowed`` to False opens it at once. A driver that can sense the contacts' actual
    position (auxiliary contact) also provides :class:`IContactorFeedback`; without it the
    gatekeeper verifies every open on the port's meter.
    """

    state = Attribute("The ContactorState as the driver knows it: the sensed position when it "
                      "has feedback, else the commanded one once the coil has switched.")
    allowed = Attribute("Whether closing is currently allowed (bool).")

    def set_allowed(allowed: bool) -> None:
        """Allow or forbid closing; forbidding opens the contactor immediately."""

    def close() -> Any:
        """Close; Deferred fires with the confirmed state or fails with ContactorRefused."""

    def open() -> Any:
        """Open; Deferred fires with the confirmed state."""


class IContactorFeedback(Interface):
    """Optional, next to :class:`IContactor`: the contacts' actual position, as sensed by an
    auxiliary (mirror) contact. The gatekeeper reads ``sensed`` when it commands an open, on
    every meter sample and at the open deadline, so reading it must be cheap and do no I/O
    (keep the latest reading of the auxiliary input)."""

    feedback = Attribute("True while the auxiliary contact is wired and read (bool); False "
                         "when this unit has none, and the meter is used instead.")
    sensed = Attribute("The contacts' position as the auxiliary contact reports it now "
                       "(ContactorState; unknown when it cannot tell).")


# --------------------------------------------------------------------------------------------
# Meter


@dataclass(frozen=True)
class MeterSample:
    """One measurement at the port, in the DER reference frame.

    Positive active and reactive power flow from the PEV to the grid (discharge); negative
    from the grid to the PEV (charge).
    """

    timestamp: float
    """Seconds since the epoch on the gateway's clock."""
    active_power_w: float
    reactive_power_var: float
    voltage_v: float
    frequency_hz: float


class IMeterListener(Interface):
    """Receives the meter's samples and errors."""

    def meter_sample(sample: MeterSample) -> None:
        """A new sample."""

    def meter_error(reason: str) -> None:
        """The meter cannot measure; ``reason`` says why."""


class IMeter(IComponent):
    """The EVSE's own measurement of what flows through a port."""

    interval = Attribute("Expected seconds between samples (float).")
    error = Attribute("Current error description (str), or None when healthy.")

    def add_listener(listener: IMeterListener) -> None:
        """Deliver future samples and errors to ``listener``."""


# --------------------------------------------------------------------------------------------
# Inverter (PEV side)


@dataclass(frozen=True)
class InverterReading:
    """What a PEV inverter reports about itself."""

    timestamp: float
    active_power_w: float
    reactive_power_var: float
    voltage_v: float
    frequency_hz: float
    state_of_charge_pct: float
    alarms: int = 0
    """DERStatus alarmStatus bits in effect (2030.5 DERAlarm: 1 over-current, 2 over-voltage,
    4 under-voltage, 8 over-frequency, 16 under-frequency...); 0 when there is none."""


class IInverter(IComponent):
    """The PEV's onboard grid-support inverter."""

    def apply(controls: Mapping[str, Any]) -> None:
        """Apply the controls and curves in effect, by 2030.5 opMod name, in plain units:
        ``opModEnergize`` a bool, ``opModFixedW`` and ``opModMaxLimW`` in percent of the
        PEV's setMaxW (float; for opModFixedW positive discharges, V2G-4.8.2-2), curves and
        the other functions as documented in :mod:`sepgw.pev.controls`. A function absent
        from the mapping is disabled (V2G-4.9.1-2)."""

    def reading() -> InverterReading:
        """The latest measurement and state of charge."""


# --------------------------------------------------------------------------------------------
# Authorization policy


@dataclass(frozen=True)
class Decision:
    """An authorization decision and every reason behind it."""

    granted: bool
    reasons: tuple[str, ...] = ()


class IAuthorizationPolicy(IComponent):
    """Decides whether a PEV session may discharge."""

    def evaluate(facts: Any) -> Decision:
        """Decide from a session's :class:`sepgw.evse.policy_facts.PolicyFacts` (identity,
        reported settings, site limits, responses...)."""


# --------------------------------------------------------------------------------------------
# DME uplink


class IUplink(IComponent):
    """The gateway's link to a utility's distributed-energy management system."""

    def set_control_sink(sink: Callable[[Mapping[str, Any]], None]) -> None:
        """Deliver utility controls to ``sink``."""

    def publish(telemetry: Mapping[str, Any]) -> None:
        """Send telemetry towards the utility (never blocks)."""


# --------------------------------------------------------------------------------------------
# Factories


KIND_INTERFACES: dict[PluginKind, type[Interface]] = {
    PluginKind.transport: ITransport,
    PluginKind.contactor: IContactor,
    PluginKind.meter: IMeter,
    PluginKind.inverter: IInverter,
    PluginKind.policy: IAuthorizationPolicy,
    PluginKind.uplink: IUplink,
}
"""The interface a component of each kind must provide."""

OPTIONAL_INTERFACES: dict[PluginKind, tuple[type[Interface], ...]] = {
    PluginKind.contactor: (IContactorFeedback,),
}
"""Interfaces a component of a kind may also declare; verified when it does."""


@dataclass
class BuildContext:
    """What a plugin factory gets besides its own configuration section."""

    reactor: Any
    """The reactor (IReactorTime and friends); tests pass a fake."""
    name: str
    """Where the component is used, e.g. ``ports[0].meter``; use it in log messages."""
    state_dir: Any = None
    """A directory (FilePath) for the component's persistent state, or None."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Role-specific shared objects (for example a simulated link bus)."""


class IPluginFactory(IPlugin):
    """What a drop-in plugin module exposes at module level."""

    kind = Attribute("The PluginKind this factory builds.")
    name = Attribute("The name used in configuration files (str).")
    description = Attribute("One line saying what the plugin does (str).")
    options = Attribute(
        "A sepgw.config.schema.Section declaring the configuration keys the plugin accepts."
    )

    def build(config: Mapping[str, Any], context: BuildContext) -> Any:
        """Build the component from its validated configuration section."""
