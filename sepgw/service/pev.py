"""``twistd sepgw-pev``: the PEV role's service tree.

Start order: inverter, transport, the notification endpoint (``[notifications]``, HTTPS with
mutual TLS on the PEV's own certificate, admitting only the EVSE the PEV is connected to),
then the J3072 client (:mod:`sepgw.pev.session`). On stop the client removes its
subscriptions, and its run report is logged (and written as JSON when configured).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.logger import Logger
from twisted.python import usage

from sepgw.config import Config
from sepgw.pev.http import SEPClient, tracking_agent
from sepgw.pev.misbehaviour import misbehave
from sepgw.pev.operator import PEVOperatorFactory
from sepgw.pev.notifications import (
    NotificationResource,
    PeerRecordingPolicy,
    advertised_host,
    evse_only,
    notification_site,
    uri,
)
from sepgw.pev.report import RunReport
from sepgw.pev.resync import on_continue
from sepgw.pev.session import REQUEST_TIMEOUT_S, J3072Client
from sepgw.security.tls import client_policy, server_connection_creator
from sepgw.service.common import (
    RoleService,
    make_role_service,
    release_startup_memory,
    options_for,
    tls_settings,
)
from sepgw.service.https import HTTPSService

MISBEHAVIOURS = ("discharge_before_authorization", "exceed_limit", "stop_heartbeats",
                 "skip_responses", "invalid_bodies")


def _override(options: Any, raw: dict[str, Any]) -> None:
    """Command-line overrides of ``[behaviour]``: ``--misbehave a,b`` and ``--report``."""
    behaviour = raw.setdefault("behaviour", {})
    if not isinstance(behaviour, dict):
        return
    for name in filter(None, (options["misbehave"] or "").split(",")):
        if name not in MISBEHAVIOURS:
            raise usage.UsageError(f"--misbehave: unknown mode {name!r}; known: "
                                   f"{', '.join(MISBEHAVIOURS)}")
        behaviour[name] = True
    if options["report"]:
        behaviour["report"] = options["report"]


Options = options_for("pev", [
    ["misbehave", None, None, "Comma-separated misbehaviour modes: "
     + ", ".join(MISBEHAVIOURS) + "."],
    ["report", None, None, "Write the run report as JSON to this file at the end."],
], _override)


class J3072Service(Service):
    """Runs the J3072 client against the configured EVSE."""

    log = Logger()

    def __init__(self, reactor: Any, config: Config, inverter: Any, tls: Any,
                 policy: PeerRecordingPolicy | None = None,
                 listener: HTTPSService | None = None, interface: str | None = None) -> None:
        self.setName("j3072")
        self._reactor = reactor
        self._config = config
        self._inverter = inverter
        self._tls = tls
        self._policy = policy
        self.listener = listener
        self.interface = interface
        self.client: J3072Client | None = None
        self._unhook: Any = None
        self.report = RunReport(reactor.seconds)
        self.url: str | None = config["evse"]["url"]
        if self.url is not None:
            self._make_client(self.url)

    def _make_client(self, url: str) -> J3072Client:
        parts = urlsplit(url)
        notifications = self._config["notifications"]
        # Connections counted: losing them all ends the session (PEV resynchronisation).
        agent, connections = tracking_agent(self._reactor,
                                            self._policy or client_policy(self._tls))
        http = SEPClient(agent, f"{parts.scheme}://{parts.netloc}", clock=self._reactor,
                         timeout_s=REQUEST_TIMEOUT_S, connections=connections)
        # Test-only misbehaviour wraps the client's HTTP and inverter from outside.
        http, inverter = misbehave(self._config["behaviour"], http, self._inverter,
                                   self._config["vehicle"])
        self.client = J3072Client(
            clock=self._reactor, http=http,
            lfdi=self._tls.identity.lfdi, dcap=parts.path or "/",
            vehicle=self._config["vehicle"], inverter=inverter, report=self.report,
            subscription_limit=notifications["limit"],
            safety_poll_s=notifications["safety_poll_s"])
        return self.client

    def notification_received(self, notification: Any) -> str | None:
        """The notification endpoint's handler."""
        if self.client is None:
            return "this PEV has no 2030.5 session"
        return self.client.notification_received(notification)

    def startService(self) -> None:
        super().startService()
        # A stopped-and-continued process checks for a stall before anything else runs.
        self._unhook = on_continue(self._reactor, self._continued)
        if self.client is not None:
            self._run()
        elif self.interface and self.interface != "lo":
            d = ensureDeferred(self._discover())
            d.addErrback(self._discovery_failed)
        else:
            self.log.warn("No [evse] url configured and the transport has no network "
                          "interface for mDNS discovery; staying in non-J3072 mode")

    async def _discover(self) -> None:
        from sepgw.service.network import discover

        assert self.interface is not None
        step = self.report.begin("service discovery: SLAAC and mDNS", "V2G-4.2.3-3",
                                 "V2G-4.5.1-2", "V2G-4.3-1")
        self.log.info("Looking for the EVSE by mDNS on {interface}", interface=self.interface)
        try:
            self.url = await discover(self._reactor, self.interface,
                                      self._config["evse"]["discovery_timeout_s"])
        except Exception as e:
            self.report.end(step, False, str(e))
            raise
        self.report.end(step, True, self.url)
        self.log.info("Found the EVSE by mDNS: {url}", url=self.url)
        if self.running:
            self._make_client(self.url)
            self._run()

    def _discovery_failed(self, failure: Any) -> None:
        self.log.error("EVSE not found ({reason}); non-J3072 mode",
                       reason=failure.getErrorMessage())

    def _run(self) -> None:
        assert self.client is not None and self.url is not None
        modes = [m for m in MISBEHAVIOURS if self._config["behaviour"][m]]
        if modes:
            self.log.warn("Misbehaving on purpose: {modes}", modes=", ".join(modes))
        if self.listener is not None and self.listener.ports:
            n = self._config["notifications"]
            evse_host = urlsplit(self.url).hostname
            host = advertised_host(n["address"], n["advertise"], evse_host)
            self.client.notify_uri = uri(host, self.listener.ports[0].getHost().port,
                                         n["path"])
            self.log.info("Notifications: listening at {uri}", uri=self.client.notify_uri)
        else:
            self.log.info("Notifications off: polling the subscribable resources "
                          "(V2G-4.1.4-4)")
        self.log.info("Connecting to the EVSE at {url}", url=self.url)
        self.client.start()

    def _continued(self) -> None:
        if self.client is not None:
            self.client.check_stall()

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        done: Deferred[Any] = succeed(None)
        if self.client is not None:
            # Bounded in every state: requests in flight are cancelled, subscriptions
            # removed within CLOSE_BUDGET_S, whatever is abandoned is logged.
            done = ensureDeferred(self.client.close())
            done.addErrback(lambda f: self.log.warn(
                "Subscriptions not removed: {reason}", reason=f.getErrorMessage()))
        return done.addCallback(lambda _: self._write_report())

    def _write_report(self) -> None:
        self.log.info("{report}", report=self.report.text())
        path = self._config["behaviour"]["report"]
        if path is not None:
            path.write_text(json.dumps(self.report.as_dict(), indent=2) + "\n")


class PEVController(RoleService):
    """The root service of ``twistd sepgw-pev``."""

    prepares_session_codecs = True

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__(config, reactor)
        self.setName("sepgw-pev")
        self.tls = tls_settings(config)
        self.inverter = self.component(config["inverter"], "inverter")
        self.transport = self.component(config["transport"], "transport")
        self.add_component("inverter", self.inverter)
        self.add_component("transport", self.transport)
        self.policy = PeerRecordingPolicy(client_policy(self.tls))
        self.notifications: HTTPSService | None = None
        n = config["notifications"]
        if n["enabled"]:
            resource = NotificationResource(lambda notification:
                                            self.j3072.notification_received(notification))
            self.notifications = HTTPSService(
                reactor, [n["address"]], n["port"],
                server_connection_creator(self.tls, allow=evse_only(self.policy.peer)),
                notification_site(n["path"], resource))
            self.notifications.setName("notifications")
            self.notifications.setServiceParent(self)
        self.j3072 = J3072Service(reactor, config, self.inverter, self.tls, self.policy,
                                  self.notifications,
                                  getattr(self.transport, "interface", None))
        self.j3072.setServiceParent(self)
        self.add_operator_socket(PEVOperatorFactory(lambda: self.j3072.client))
        self.add_views("pev")  # D-Bus, console, systemd: when configured

    def _serving(self, _: Any) -> None:
        release_startup_memory()
        self.log.info("sepgw PEV running, LFDI {lfdi}", lfdi=self.tls.identity.lfdi)


def makeService(options: Any, reactor: Any = None) -> IService:
    """Build the PEV service tree from validated options (twistd entry point)."""
    return make_role_service(PEVController, options, reactor)  # type: ignore[no-any-return]
