"""``twistd sepgw-dme``: the lab DME's service tree (docs/uplink.md, "Lab DME").

The database is opened, allow-listed devices are registered when registration by POST is
off, then HTTPS with mutual TLS (CCM8 by default, :func:`sepgw.security.tls
.server_connection_creator`) and the operator socket are started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.components import Componentized

from sepgw.config.schema import ConfigError
from sepgw.dme.config import DEFAULT_PATH, load_dme

__all__ = ["Options", "DMEService", "makeService"]


class Options(usage.Options):
    synopsis = f"[--config {DEFAULT_PATH}]"
    optParameters = [["config", "c", str(DEFAULT_PATH), "Configuration file (TOML)."]]
    longdesc = "The lab DME: a utility's IEEE 2030.5 head-end for labs and demos."

    def postOptions(self) -> None:
        try:
            self.loaded = load_dme(Path(self["config"]))
        except ConfigError as e:
            raise usage.UsageError(str(e))


class DMEService(MultiService):
    """The DME: store, 2030.5 server over mutual TLS, operator socket."""

    log = Logger()

    def __init__(self, config: dict[str, Any], reactor: Any) -> None:
        super().__init__()
        from twisted.web.server import Site

        from sepgw.dme.server import DMEServer
        from sepgw.dme.store import DMEStore
        from sepgw.security.identity import sfdi_from_lfdi
        from sepgw.security.tls import TLSConfigError, TLSSettings, server_connection_creator
        from sepgw.service.https import HTTPSService

        self.config = config
        self.reactor = reactor
        general, server, registration = config["dme"], config["server"], config["registration"]
        general["state_dir"].mkdir(parents=True, exist_ok=True)
        db = general["database"] or general["state_dir"] / "dme.sqlite"
        self.store = DMEStore(db, now=reactor.seconds)
        self.server = DMEServer(
            reactor, registration=registration["by_post"], pin=registration["pin"],
            poll_rate=server["poll_rate_s"], post_rate=server["post_rate_s"],
            allow=set(registration["allow"]) or None, store=self.store,
            primacy=server["primacy"], log_readings=server["log_readings"])
        if not registration["by_post"]:
            for lfdi in registration["allow"]:
                self.server.pre_register(lfdi.upper(), sfdi_from_lfdi(lfdi))
        tls = config["tls"]
        try:
            settings = TLSSettings(cert=tls["cert"], key=tls["key"], ca=tuple(tls["ca"]),
                                   ciphers=tls["ciphers"], keylog=tls["keylog"])
        except TLSConfigError as e:
            raise usage.UsageError(f"tls: {e}") from e
        site = Site(self.server.resource())
        site.noisy = False
        self.https = HTTPSService(reactor, [server["address"]], server["port"],
                                  server_connection_creator(settings), site)
        self.https.setServiceParent(self)
        socket = config["operator"]["socket"]
        if socket is not None:
            from twisted.application.internet import StreamServerEndpointService
            from twisted.internet.endpoints import UNIXServerEndpoint

            from sepgw.dme.operator import DMEOperatorFactory

            socket.parent.mkdir(parents=True, exist_ok=True)
            operator = StreamServerEndpointService(
                UNIXServerEndpoint(reactor, str(socket), mode=0o600, wantPID=True),
                DMEOperatorFactory(self.server))
            operator.setServiceParent(self)
        self.db = db

    def setServiceParent(self, parent: Any) -> None:
        from sepgw import logs

        settings = self.config["logging"]
        if isinstance(parent, Componentized) and not logs.is_default(settings):
            parent.setComponent(ILogObserver, logs.make_observer(settings))
        super().setServiceParent(parent)

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self._announce)

    def _announce(self) -> None:
        def check() -> None:
            if not self.https.ports:
                self.reactor.callLater(0.05, check)
                return
            host = self.https.ports[0].getHost()
            shown = f"[{host.host}]" if ":" in host.host else host.host
            counts = self.store.counts()
            self.log.info("sepgw DME serving: DeviceCapability at https://{address}/dcap; "
                          "{devices} device(s), {controls} control(s), {readings} reading "
                          "post(s) in {db}", address=f"{shown}:{host.port}",
                          devices=len(self.server.devices), controls=len(self.server.controls),
                          readings=counts.get("reading", {}).get("received", 0), db=self.db)
        check()

    def stopService(self) -> Any:
        d = super().stopService()
        self.store.close()
        return d


def makeService(options: Options) -> DMEService:
    from twisted.internet import reactor

    return DMEService(options.loaded, reactor)
