"""``twistd sepgw``: the EVSE gateway's service tree.

Start order: uplink, authorization policy, each port (contactor, meter, transport), then the
HTTPS server. Stop runs in reverse; every port forbids its contactor to close before anything
else stops, so the contactor is left open whatever happens next.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.logger import Logger
from zope.interface import implementer

from sepgw.config import Config
from sepgw.evse.http import EVSEHTTPServer
from sepgw.evse.notify import Notifier, https_agent_factory
from sepgw.evse.tree import EVSEResources
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
                 transport: Any, resources: EVSEResources | None = None) -> None:
        super().__init__()
        self.index = index
        self.resources = resources
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
        if self.resources is not None:
            self.resources.detach(self.index, f"link down: {reason}")
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

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__(config, reactor)
        self.setName("sepgw")
        self.tls = tls_settings(config)
        server = config["server"]
        host = server["addresses"][0]
        shown = f"[{host}]" if ":" in host else host
        self.notifier = Notifier(https_agent_factory(reactor, self.tls), reactor,
                                 server_url=f"https://{shown}:{server['port']}")
        self.resources = EVSEResources(
            server=server, site=config["site"], management=config["management"],
            ports=[p["name"] for p in config["ports"]], clock=reactor,
            notifier=self.notifier)
        self.ports: list[PortService] = []
        for key in ("uplink", "policy"):
            if config[key] is not None:
                self.add_component(key, self.component(config[key], key))
        for i, port in enumerate(config["ports"]):
            where = f"ports[{i}]"
            parts = {role: self.component(port[role], f"{where}.{role}")
                     for role in ("contactor", "meter", "transport")}
            service = PortService(i, port, resources=self.resources, **parts)
            service.setServiceParent(self)
            self.ports.append(service)
        self.http = EVSEHTTPServer(self.resources, max_body=server["max_body_bytes"])
        self.https = HTTPSService(reactor, server["addresses"], server["port"],
                                  server_connection_creator(self.tls), self.http.site())
        self.https.setServiceParent(self)

    def stopService(self) -> Any:
        self.notifier.stop()
        return super().stopService()

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
