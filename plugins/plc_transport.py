"""Bundled plugin: a link over a HomePlug Green PHY PLC modem, matched with SLAC
(ISO 15118-3), for the EVSE (``role = "evse"``) or the vehicle (``role = "ev"``).

The work is done in :mod:`sepgw.slac` (frames, state machines, raw socket, modem emulator);
this module only declares the factory. See ``docs/slac.md``.
"""

from __future__ import annotations

from typing import Any, Mapping

from sepgw.plugin import BuildContext, PluginFactory


def _build(config: Mapping[str, Any], context: BuildContext) -> Any:
    from sepgw.plugin import build_plc_transport

    return build_plc_transport(config, context)


def _options() -> Any:
    from sepgw.plugin import PLC_OPTIONS

    return PLC_OPTIONS


transport = PluginFactory(
    kind="transport",
    name="plc",
    description="HomePlug Green PHY modem matched by SLAC (raw 0x88E1 socket); link up with "
                "the peer's MAC when matched; optional emulated modem for veth labs.",
    options=_options(),
    build=_build,
)
