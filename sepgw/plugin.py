"""The stable plugin API: everything a drop-in plugin may import from sepgw.

A drop-in plugin is a ``.py`` file with one or more module-level factories::

    from sepgw.plugin import BuildContext, IMeter, Key, PluginFactory, Section

    def build(config, context: BuildContext):
        return MyMeter(context.reactor, interval=config["interval"])

    meter = PluginFactory(
        kind="meter", name="my-meter", description="Reads my meter over Modbus/TCP.",
        options=Section({"interval": Key("float", 1.0, "Seconds between samples.", min=0.1)}),
        build=build,
    )

Import only from this module (plus the standard library, Twisted, zope.interface and your
own third-party libraries): the names in :data:`__all__` keep their meaning across releases,
while the modules they come from may move. ``docs/plugins.md`` is the guide.

The names come in groups (see ``docs/plugins.md``, "The stable API"):

* the contracts: the interfaces of each kind, their value types and :class:`BuildContext`
  (from :mod:`sepgw.interfaces`);
* declaring a plugin: :class:`PluginFactory`, :class:`Section`, :class:`Key`,
  :class:`ArrayOf`; :func:`require_module` for optional third-party libraries;
* units and values: :func:`real_value`, :func:`show`, :func:`power_of_ten`, :func:`fixed`
  and the schema's integer ranges;
* for authorization policies: :class:`PolicyFacts` and the helpers that read it,
  :func:`normalize_lfdi` and :class:`HardwareModuleName`;
* for hardware authors: :data:`modbus` (Modbus/TCP and RTU client on the reactor) and
  :data:`sunspec` (SunSpec map discovery and decoding);
* for transport authors: :class:`NetlinkEvents`, :func:`build_plc_transport` and
  :data:`PLC_OPTIONS`;
* logging: :class:`Logger` (``twisted.logger``); helper modules next to a plugin:
  :func:`dropin_module`.

Importing this module is cheap (idle RSS): the policy, identity, hardware and transport
helpers are imported on first attribute access, so a plugin should reach them inside
``build()`` or its methods, or accept that its module-level import loads them.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any, Callable, Mapping

from twisted.logger import Logger
from zope.interface import implementer

from sepgw.common.quantities import (INT16, INT32, UINT16, UINT32, fixed, power_of_ten,
                                     real_value, show)
from sepgw.config.schema import ArrayOf, Key, Section
from sepgw.interfaces import (
    BuildContext,
    ContactorRefused,
    ContactorState,
    Decision,
    IAuthorizationPolicy,
    IComponent,
    IContactor,
    IContactorFeedback,
    IInverter,
    ILinkListener,
    IMeter,
    IMeterListener,
    InverterReading,
    IPluginFactory,
    ITransport,
    IUplink,
    LinkPeer,
    MeterSample,
    PluginKind,
)

if TYPE_CHECKING:  # the lazy names, for type checkers
    from sepgw.evse.policy_facts import (REACTIVE_MODES, REACTIVE_RATINGS,
                                         REQUIRED_RESPONSES, PolicyFacts, is_four_quadrant,
                                         missing_responses, mrid_text, rating_text,
                                         reactive_modes, reactive_ratings, status_text)
    from sepgw.hw import modbus, sunspec
    from sepgw.net.ipv6 import NetlinkEvents
    from sepgw.security.identity import HardwareModuleName, normalize_lfdi
    from sepgw.slac.options import OPTIONS as PLC_OPTIONS
    from sepgw.slac.transport import build as build_plc_transport

__all__ = [
    # contracts (sepgw.interfaces)
    "PluginKind", "BuildContext", "IPluginFactory", "IComponent",
    "ITransport", "ILinkListener", "LinkPeer",
    "IContactor", "IContactorFeedback", "ContactorState", "ContactorRefused",
    "IMeter", "IMeterListener", "MeterSample",
    "IInverter", "InverterReading",
    "IAuthorizationPolicy", "Decision",
    "IUplink",
    # declaring a plugin
    "PluginFactory", "Section", "Key", "ArrayOf", "require_module", "MissingDependency",
    # units and values
    "real_value", "show", "power_of_ten", "fixed", "INT16", "UINT16", "INT32", "UINT32",
    # authorization policies (lazy)
    "PolicyFacts", "REACTIVE_MODES", "REACTIVE_RATINGS", "REQUIRED_RESPONSES",
    "is_four_quadrant", "reactive_modes", "reactive_ratings", "rating_text",
    "missing_responses", "mrid_text", "status_text", "normalize_lfdi", "HardwareModuleName",
    # hardware authors (lazy)
    "modbus", "sunspec",
    # transport authors (lazy)
    "NetlinkEvents", "build_plc_transport", "PLC_OPTIONS",
    # logging, helper modules
    "Logger", "dropin_module",
]

_LAZY: dict[str, tuple[str, str | None]] = {
    **{name: ("sepgw.evse.policy_facts", name) for name in (
        "PolicyFacts", "REACTIVE_MODES", "REACTIVE_RATINGS", "REQUIRED_RESPONSES",
        "is_four_quadrant", "reactive_modes", "reactive_ratings", "rating_text",
        "missing_responses", "mrid_text", "status_text")},
    "normalize_lfdi": ("sepgw.security.identity", "normalize_lfdi"),
    "HardwareModuleName": ("sepgw.security.identity", "HardwareModuleName"),
    "modbus": ("sepgw.hw.modbus", None),
    "sunspec": ("sepgw.hw.sunspec", None),
    "NetlinkEvents": ("sepgw.net.ipv6", "NetlinkEvents"),
    "build_plc_transport": ("sepgw.slac.transport", "build"),
    "PLC_OPTIONS": ("sepgw.slac.options", "OPTIONS"),
}
"""Names imported on first access: ``name -> (module, attribute or None for the module)``."""


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'sepgw.plugin' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later accesses are plain lookups
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class MissingDependency(RuntimeError):
    """An optional library a plugin needs is not installed; the message says how to get it."""


def require_module(module: str, install: str, purpose: str) -> types.ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming ``purpose`` and the
    ``install`` command, e.g. ``require_module("gpiod", "pip install sepgw[gpio]", "the gpio
    contactor")``. Call it from ``build()``, so a missing library stops only a configuration
    that uses the plugin."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(f"{purpose} needs the Python module {module!r}, which cannot "
                                f"be imported ({e}): {install}") from None


def dropin_module(name: str) -> types.ModuleType:
    """A helper module (a ``.py`` file without factories) from the plugin directories, by
    file name without ``.py``: ``sim_link = dropin_module("sim_link")``. It is the module
    object plugin discovery imported, so module-level state is shared."""
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not a module file name")
    return importlib.import_module(f"sepgw.dropins.{name}")


@implementer(IPluginFactory)
class PluginFactory:
    """A plugin factory made from a build function; provides IPluginFactory."""

    def __init__(
        self,
        *,
        kind: PluginKind | str,
        name: str,
        description: str,
        build: Callable[[Mapping[str, Any], BuildContext], Any],
        options: Section | None = None,
    ) -> None:
        self.kind = PluginKind(kind)
        self.name = name
        self.description = description
        self.options = options if options is not None else Section({})
        self._build = build

    def build(self, config: Mapping[str, Any], context: BuildContext) -> Any:
        return self._build(config, context)

    def __repr__(self) -> str:
        return f"<PluginFactory {self.kind.value}:{self.name}>"
