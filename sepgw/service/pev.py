"""``twistd sepgw-pev``: the PEV role's service tree.

Start order: inverter, transport, then the link to the EVSE. The J3072 client sequence
(discovery, information exchange, periodic operations) lives in :mod:`sepgw.pev`; at this
stage the EVSE link establishes mutual TLS and reads the DeviceCapability resource.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.client import Agent

from sepgw.config import Config
from sepgw.security.tls import TLSSettings, client_policy
from sepgw.service.common import (
    ComponentError,
    RoleService,
    StartupError,
    fail_startup,
    options_for,
    tls_settings,
)

Options = options_for("pev")

MEDIA_TYPE = b"application/sep+xml"


class EVSELink(Service):
    """Reaches the EVSE's DeviceCapability over mutual TLS, retrying until it answers."""

    log = Logger()

    def __init__(self, reactor: Any, url: str | None, tls: TLSSettings,
                 retry_s: float = 5.0) -> None:
        self.setName("evse-link")
        self._reactor = reactor
        self.url = url
        self._agent = Agent(reactor, contextFactory=client_policy(tls))
        self._retry_s = retry_s
        self._call: Any = None
        self.answer: tuple[int, bytes] | None = None
        self.answered: Deferred[tuple[int, bytes]] = Deferred()

    def startService(self) -> None:
        super().startService()
        if self.url is None:
            self.log.warn("No [evse] url configured and mDNS discovery is not available in "
                          "this version; staying in non-J3072 mode")
            return
        self._attempt()

    def stopService(self) -> None:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()

    def _attempt(self) -> None:
        from twisted.web.http_headers import Headers

        assert self.url is not None
        self.log.info("Connecting to the EVSE at {url}", url=self.url)
        d = self._agent.request(b"GET", self.url.encode("ascii"),
                                Headers({b"Accept": [MEDIA_TYPE]}))
        d.addCallback(self._response)
        d.addErrback(self._failed)

    def _response(self, response: Any) -> Deferred[None]:
        from twisted.web.client import readBody

        def got(body: bytes) -> None:
            self.answer = (response.code, body)
            self.log.info("EVSE answered {code} for DeviceCapability ({size} bytes)",
                          code=response.code, size=len(body))
            if not self.answered.called:
                self.answered.callback(self.answer)

        return readBody(response).addCallback(got)

    def _failed(self, failure: Any) -> None:
        if not self.running:
            return
        self.log.warn("Cannot reach the EVSE ({reason}); non-J3072 mode, retrying in "
                      "{retry:g} s", reason=failure.getErrorMessage() or failure.type.__name__,
                      retry=self._retry_s)
        self._call = self._reactor.callLater(self._retry_s, self._attempt)


class PEVController(RoleService):
    """The root service of ``twistd sepgw-pev``."""

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__(config, reactor)
        self.setName("sepgw-pev")
        self.tls = tls_settings(config)
        self.inverter = self.component(config["inverter"], "inverter")
        self.transport = self.component(config["transport"], "transport")
        self.add_component("inverter", self.inverter)
        self.add_component("transport", self.transport)
        self.evse = EVSELink(reactor, config["evse"]["url"], self.tls)
        self.evse.setServiceParent(self)

    def _serving(self, _: Any) -> None:
        self.log.info("sepgw PEV running, LFDI {lfdi}", lfdi=self.tls.identity.lfdi)


def makeService(options: Any, reactor: Any = None) -> IService:
    """Build the PEV service tree from validated options (twistd entry point)."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    try:
        return PEVController(options.loaded, reactor)
    except (ComponentError, StartupError) as e:
        fail_startup(e)
        raise
