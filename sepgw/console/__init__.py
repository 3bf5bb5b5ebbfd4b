"""The web console (docs/console.md): live ports, meter plots, session timelines and the
operator's actions in a browser, served by either role on its own listener.

Imported only when ``[console] enabled`` (the idle start-up path never loads it).
"""

from __future__ import annotations

from typing import Any, Mapping

from sepgw.console.web import ConsoleService, make_service

__all__ = ["ConsoleService", "evse_console", "pev_console"]


def evse_console(gateway: Any, settings: Mapping[str, Any]) -> ConsoleService:
    """The EVSE's console: every port of ``gateway`` (an EVSEGateway)."""
    from sepgw.console.model import EVSEModel

    ports = [(p.controller, p.meter, p.transport) for p in gateway.ports]
    name = str(gateway.config.general["name"])
    return make_service(gateway.reactor, settings,
                        lambda bus: EVSEModel(gateway.reactor, bus, ports, name))


def pev_console(controller: Any, settings: Mapping[str, Any]) -> ConsoleService:
    """The PEV's console: the J3072 client of ``controller`` (a PEVController)."""
    from sepgw.console.model import PEVModel

    j3072 = controller.j3072
    return make_service(controller.reactor, settings,
                        lambda bus: PEVModel(controller.reactor, bus, lambda: j3072.client,
                                             j3072.report))
