"""``twistd sepgw``: the EVSE gateway's service tree.

Start order: uplink, authorization policy, each port (contactor, meter, transport), then the
HTTPS server. Stop runs in reverse; every port forbids its contactor to close before anything
else stops, so the contactor is left open whatever happens next.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from sepgw.config import Config
from sepgw.interfaces import IContactor, ILinkListener, IMeterListener, LinkPeer, MeterSample
from sepgw.security.tls import server_connection_creator
from sepgw.service.common import (
    ComponentError,
    RoleService,
    StartupError,
    fail_startup,
    options_for,
    tls_settings,
)
from sepgw.service.https import HTTPSService
from sepgw.service.tree import ComponentService, OrderedMultiService

Options = options_for("evse")


@implementer(ILinkListener, IMeterListener)
class PortService(OrderedMultiService):
    """One charging port: its contactor, meter and transport, started in that order."""

    log = Logger()

    def __init__(self, index: int, settings: dict[str, Any], contactor: Any, meter: Any,
                 transport: Any) -> None:
        super().__init__()
        self.index = index
        self.setName(settings["name"])
        self.contactor = IContactor(contactor)
        self.meter = meter
        self.transport = transport
        self.peer: LinkPeer | None = None
        self.last_sample: MeterSample | None = None
        for role, component in (("contactor", contactor), ("meter", meter),
                                ("transport", transport)):
            ComponentService(f"{self.name}.{role}", component).setServiceParent(self)
        meter.add_listener(self)
        transport.add_listener(self)

    def startService(self) -> Any:
        self.contactor.set_allowed(False)
        return super().startService()

    def stopService(self) -> Any:
        # Safety first: the contactor is forbidden (hence open) before anything stops.
        self.contactor.set_allowed(False)
        return super().stopService()

    def link_up(self, peer: LinkPeer) -> None:
        self.peer = peer
        self.log.info("{port}: link up, peer {peer}", port=self.name,
                      peer=peer.mac or peer.address or "unknown")

    def link_down(self, reason: str) -> None:
        self.peer = None
        self.contactor.set_allowed(False)
        self.log.info("{port}: link down ({reason}); contactor open", port=self.name,
                      reason=reason)

    def meter_sample(self, sample: MeterSample) -> None:
        self.last_sample = sample

    def meter_error(self, reason: str) -> None:
        self.contactor.set_allowed(False)
        self.log.error("{port}: meter error ({reason}); contactor open", port=self.name,
                       reason=reason)


class EVSEGateway(RoleService):
    """The root service of ``twistd sepgw``."""

    log = Logger()

    def __init__(self, config: Config, reactor: Any, site_root: Resource | None = None) -> None:
        super().__init__(config, reactor)
        self.setName("sepgw")
        self.tls = tls_settings(config)
        self.ports: list[PortService] = []
        for key in ("uplink", "policy"):
            if config[key] is not None:
                self.add_component(key, self.component(config[key], key))
        for i, port in enumerate(config["ports"]):
            where = f"ports[{i}]"
            parts = {role: self.component(port[role], f"{where}.{role}")
                     for role in ("contactor", "meter", "transport")}
            service = PortService(i, port, **parts)
            service.setServiceParent(self)
            self.ports.append(service)
        server = config["server"]
        self.https = HTTPSService(reactor, server["addresses"], server["port"],
                                  server_connection_creator(self.tls),
                                  Site(site_root if site_root is not None else Resource()))
        self.https.setServiceParent(self)

    def _serving(self, _: Any) -> None:
        server = self.config["server"]
        for port in self.https.ports:
            host = port.getHost()
            shown = f"[{host.host}]" if ":" in host.host else host.host
            self.log.info("sepgw EVSE serving: DeviceCapability at https://{address}{dcap}, "
                          "LFDI {lfdi}", address=f"{shown}:{host.port}",
                          dcap=server["dcap_path"], lfdi=self.tls.identity.lfdi)


def makeService(options: Any, reactor: Any = None) -> IService:
    """Build the EVSE service tree from validated options (twistd entry point)."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    try:
        return EVSEGateway(options.loaded, reactor)
    except (ComponentError, StartupError) as e:
        fail_startup(e)
        raise
