"""``twistd sepgw``: the EVSE gateway's service tree.

Start order: uplink, authorization policy, each port (contactor, meter, transport), then the
HTTPS server. Stop runs in reverse; every port forbids its contactor to close before anything
else stops, so the contactor is left open whatever happens next.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.logger import Logger

from twisted.internet.task import LoopingCall

from sepgw.config import Config
from sepgw.evse.http import EVSEHTTPServer, HTTPLimits
from sepgw.evse.notify import Notifier, https_agent_factory
from sepgw.evse.operator import OperatorFactory
from sepgw.evse.tree import EVSEResources
from sepgw.evse.controller import PortController, SiteCoordinator
from sepgw.interfaces import IContactor, MeterSample
from sepgw.security.tls import server_connection_creator
from sepgw.service.common import (
    HeapTrimmer,
    RoleService,
    StartupError,
    make_role_service,
    release_startup_memory,
    options_for,
    tls_settings,
)
from sepgw.service.https import ConnectionLimits, HTTPSService
from sepgw.service.tree import ComponentService, OrderedMultiService

Options = options_for("evse")


class PortService(OrderedMultiService):
    """One charging port: its contactor, meter and transport, started in that order, and
    the session logic (:class:`PortController`) that listens to them."""

    log = Logger()

    def __init__(self, controller: PortController, contactor: Any, meter: Any,
                 transport: Any, network: Any = None) -> None:
        super().__init__()
        self.controller = controller
        self.index = controller.index
        self.setName(controller.name)
        self.contactor = IContactor(contactor)
        self.meter = meter
        self.transport = transport
        for role, component in (("contactor", contactor), ("meter", meter),
                                ("transport", transport)):
            ComponentService(f"{self.name}.{role}", component).setServiceParent(self)
        self.network = network
        if network is not None:
            network.setServiceParent(self)
            controller.authorization_observers.append(network.authorization_changed)
        meter.add_listener(controller)
        transport.add_listener(controller)

    @property
    def last_sample(self) -> MeterSample | None:
        return self.controller.gatekeeper.last_sample

    def startService(self) -> Any:
        self.contactor.set_allowed(False)
        d = super().startService()
        d.addCallback(lambda _: self.controller.start())
        return d

    def stopService(self) -> Any:
        # Safety first: revoke, forbid and open the contactor before anything stops.
        self.controller.stop()
        return super().stopService()


class EVSEGateway(RoleService):
    """The root service of ``twistd sepgw``."""

    log = Logger()
    prepares_session_codecs = True

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
        self.policy = None
        self.uplink = None
        if config["uplink"] is not None:
            self.uplink = self.component(config["uplink"], "uplink", site=config["site"],
                                         ports=[p["name"] for p in config["ports"]])
            self.add_component("uplink", self.uplink)
        if config["policy"] is not None:
            self.policy = self.component(config["policy"], "policy")
            self.add_component("policy", self.policy)
        self.dme_site: Any = None
        port_policy = self.policy
        if self.uplink is not None:  # imported only with an uplink (idle RSS)
            from sepgw.uplink.site import SiteControls

            self.dme_site = SiteControls([], config["site"], reactor)
            if self.policy is not None:
                port_policy = self.dme_site.gate(self.policy)
        self.coordinator = SiteCoordinator(config["site"]["max_w"])
        safety = config["safety"]
        for i, port in enumerate(config["ports"]):
            where = f"ports[{i}]"
            parts = {role: self.component(port[role], f"{where}.{role}")
                     for role in ("contactor", "meter", "transport")}
            timeout = safety["meter_timeout_s"] or max(3 * float(parts["meter"].interval), 0.5)
            controller = PortController(
                index=i, name=port["name"], clock=reactor, resources=self.resources,
                contactor=parts["contactor"], policy=port_policy, site=config["site"],
                safety=safety, meter_timeout=timeout, coordinator=self.coordinator)
            network = self._port_network(i, port["name"], parts["transport"])
            service = PortService(controller, network=network, **parts)
            service.setServiceParent(self)
            self.ports.append(service)
        self.add_operator_socket(
            OperatorFactory({p.controller.name: p.controller for p in self.ports},
                            uplink=getattr(self.uplink, "status", None)))
        networks = [p.network for p in self.ports if p.network is not None]
        port_of = None
        if networks:
            from sepgw.service.network import port_of_connection

            port_of = port_of_connection(networks)
        self.http = EVSEHTTPServer(self.resources, limits=HTTPLimits.from_config(server),
                                   port_of=port_of, clock=reactor)
        self.https = HTTPSService(reactor, server["addresses"], server["port"],
                                  server_connection_creator(self.tls), self.http.site(),
                                  limits=ConnectionLimits(server["max_connections"],
                                                          server["max_connections_per_peer"]))
        self.https.setServiceParent(self)

        if self.uplink is not None:
            self.dme_site.attach([p.controller for p in self.ports], self.coordinator)
            self.uplink.set_control_sink(self.uplink_control)
            self.dme_site.responses = getattr(self.uplink, "pev_response", None)
            self._telemetry = LoopingCall(self.publish_telemetry)
            self._telemetry.clock = reactor
        # Free lists of ended sessions back to the OS (glibc), so churn does not creep RSS.
        self.heap_trimmer = HeapTrimmer(reactor)
        self.add_views("evse")  # D-Bus, console, systemd: when configured

    def _port_network(self, index: int, name: str, transport: Any) -> Any:
        """The port's network plane, when ``[network] enabled`` (needs the transport's
        network interface)."""
        settings = self.config["network"]
        if not settings["enabled"]:
            return None
        interface = getattr(transport, "interface", None)
        if not interface or interface == "lo":
            raise StartupError(f"{self.config.source}: network.enabled needs each port's "
                               f"transport on its own interface; {name}'s is "
                               f"{interface!r}")
        from sepgw.service.network import PortNetwork

        server = self.config["server"]
        return PortNetwork(self.reactor, port_name=name, index=index, interface=interface,
                           settings=settings, state_dir=self.config.general["state_dir"],
                           sfdi=self.tls.identity.sfdi, https_port=server["port"],
                           dcap_path=server["dcap_path"])

    def startService(self) -> Any:
        d = super().startService()
        if self.uplink is not None:
            self._telemetry.start(float(self.config["server"]["post_rate"]), now=False)
        return d

    def stopService(self) -> Any:
        if self.uplink is not None and self._telemetry.running:
            self._telemetry.stop()
        self.notifier.stop()
        if self.heap_trimmer.running:
            self.heap_trimmer.stopService()
        return super().stopService()

    def uplink_control(self, control: Any) -> None:
        """A utility control from the DME uplink: ``{"site": {...}}`` is the DME's site
        control in effect (:class:`sepgw.uplink.site.SiteControls`);
        ``{"port": NAME, "opModFixedW": percent}`` asks that port's PEV to discharge (positive) or charge (negative); ``None`` withdraws
        it (coordinated charging, 4.8.2). Bad controls are logged and ignored."""
        if isinstance(control, dict) and "site" in control and self.dme_site is not None:
            try:
                self.dme_site.apply(control["site"])
            except Exception:
                self.log.failure("Uplink site control {control!r} failed", control=control)
            return
        try:
            name = control["port"]
            port = next(p.controller for p in self.ports if p.controller.name == name)
            value = control.get("opModFixedW")
            if value is None:
                port.clear_fixed_w()
            else:
                port.set_fixed_w(float(value))
        except StopIteration:
            self.log.error("Uplink control for unknown port {port!r} ignored",
                           port=control.get("port"))
        except (KeyError, TypeError, ValueError, LookupError) as e:
            self.log.error("Uplink control {control!r} ignored: {error}", control=control,
                           error=e)

    def publish_telemetry(self) -> None:
        """Every port's status, meter and session, towards the utility."""
        from sepgw.evse.operator import port_status

        assert self.uplink is not None
        try:
            self.uplink.publish({"time": self.reactor.seconds(),
                                 "ports": [dict(port_status(p.controller),
                                                pev_max_w=p.controller.pev_max_w())
                                           for p in self.ports]})
        except Exception:
            self.log.failure("The uplink failed to take telemetry")

    def _serving(self, _: Any) -> None:
        release_startup_memory()
        self.heap_trimmer.startService()  # then every HEAP_TRIM_INTERVAL_S
        server = self.config["server"]
        for port in self.https.ports:
            host = port.getHost()
            shown = f"[{host.host}]" if ":" in host.host else host.host
            self.log.info("sepgw EVSE serving: DeviceCapability at https://{address}{dcap}, "
                          "LFDI {lfdi}", address=f"{shown}:{host.port}",
                          dcap=server["dcap_path"], lfdi=self.tls.identity.lfdi)


def makeService(options: Any, reactor: Any = None) -> IService:
    """Build the EVSE service tree from validated options (twistd entry point)."""
    return make_role_service(EVSEGateway, options, reactor)  # type: ignore[no-any-return]
