"""The ``ieee2030_5`` IUplink component (built by ``plugins/ieee2030_5_uplink.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from twisted.logger import Logger
from zope.interface import implementer

from sepgw.interfaces import IUplink
from sepgw.security.tls import TLSConfigError, TLSSettings

__all__ = ["UplinkComponent", "split_url"]


def split_url(url: str) -> tuple[str, str]:
    """``https://host:port/path`` → (``https://host:port``, ``/path``)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(f"{url!r} is not an https:// URL")
    return f"https://{parts.netloc}", (parts.path or "/") + (
        f"?{parts.query}" if parts.query else "")


@implementer(IUplink)
class UplinkComponent:
    """Owns the uplink's TLS identity, durable queue and :class:`UplinkClient`."""

    log = Logger()

    def __init__(self, config: Mapping[str, Any], reactor: Any, name: str,
                 state_dir: Any, site: Mapping[str, Any], ports: list[str]) -> None:
        self.config = config
        self.reactor = reactor
        self.name = name
        try:
            self.tls = TLSSettings(cert=config["cert"], key=config["key"],
                                   ca=tuple(config["ca"]), ciphers=config["ciphers"])
        except TLSConfigError as e:
            raise ValueError(f"{name}: tls: {e}") from e
        self.base, self.dcap = split_url(config["dcap_url"])
        queue = config["queue_path"]
        if not queue:
            directory = Path(str(getattr(state_dir, "path", state_dir) or "."))
            queue = str(directory / "uplink-queue.sqlite")
        self.queue_path = str(queue)
        self.site = site
        self.ports = ports
        self.sink: Callable[[Mapping[str, Any]], None] | None = None
        self.client: Any = None
        self.queue: Any = None
        self.listener: Any = None
        self.pool: Any = None
        """The HTTPS listener for the DME's notifications (``notify_port``), else None."""

    def set_control_sink(self, sink: Callable[[Mapping[str, Any]], None]) -> None:
        self.sink = sink
        if self.client is not None:
            self.client.sink = sink

    def start(self) -> None:
        from twisted.web.client import Agent, HTTPConnectionPool

        from sepgw.pev.http import SEPClient
        from sepgw.security.tls import client_policy
        from sepgw.uplink.client import UplinkClient
        from sepgw.uplink.queue import DurableQueue

        c = self.config
        Path(self.queue_path).parent.mkdir(parents=True, exist_ok=True)
        self.queue = DurableQueue(self.queue_path, max_items=c["queue_max_items"])
        self.pool = pool = HTTPConnectionPool(self.reactor, persistent=True)
        agent = Agent(self.reactor, contextFactory=client_policy(
            self.tls, expected_lfdi=c["server_lfdi"] or None), pool=pool)
        http = SEPClient(agent, self.base, clock=self.reactor, timeout_s=c["timeout_s"])
        identity = self.tls.identity
        self.client = UplinkClient(
            http=http, clock=self.reactor, lfdi=identity.lfdi, sfdi=identity.sfdi,
            dcap=self.dcap, site=self.site, ports=self.ports, queue=self.queue,
            sink=self.sink, register=c["register"], pin=c["pin"] if c["pin"] >= 0 else None,
            info={"model": c["model"], "serial": c["serial"] or identity.lfdi[:20]},
            post_rate_s=c["post_rate_s"], verify_s=c.get("notify_check_s", 300.0))
        if c.get("notify_port", -1) >= 0:
            self._listen()
        stats = self.queue.stats()
        self.log.info("uplink: DME at {url}, LFDI {lfdi}; queue {path} holds {queued} items",
                      url=c["dcap_url"], lfdi=identity.lfdi, path=self.queue_path,
                      queued=stats["queued"])
        self.client.start()

    def _listen(self) -> None:
        """The notification listener: HTTPS with mutual TLS on the uplink's own identity
        and utility CA (a separate listener from the vehicle-facing one); only the DME
        (its LFDI when ``server_lfdi`` is set) may connect. The client subscribes once its
        notificationURI is known."""
        from sepgw.pev.notifications import NotificationResource, advertised_host, \
            notification_site, uri
        from sepgw.security.tls import server_connection_creator
        from sepgw.service.https import HTTPSService

        c = self.config
        expected = (c["server_lfdi"] or "").upper()

        def dme_only(identity: Any) -> str | None:
            if expected and identity.lfdi.upper() != expected:
                return (f"LFDI {identity.lfdi} is not the DME's ({expected}); only the DME "
                        "may notify the uplink")
            return None

        resource = NotificationResource(lambda n: self.client.notification_received(n))
        self.listener = HTTPSService(self.reactor, [c["notify_address"]], c["notify_port"],
                                     server_connection_creator(self.tls, allow=dme_only),
                                     notification_site(c["notify_path"], resource))
        self.listener.setName("uplink-notifications")

        def listening(_: Any) -> None:
            if not self.listener.ports or self.client is None:
                return
            host = advertised_host(c["notify_address"], c["notify_advertise"] or None,
                                   urlsplit(c["dcap_url"]).hostname)
            self.client.notify_uri = uri(host, self.listener.ports[0].getHost().port,
                                         c["notify_path"])
            self.log.info("uplink: notifications from the DME at {uri}",
                          uri=self.client.notify_uri)

        def failed(failure: Any) -> None:
            self.log.error("uplink: notification listener failed ({reason}): polling only",
                           reason=failure.getErrorMessage())

        self.listener.startService().addCallbacks(listening, failed)

    def stop(self) -> Any:
        """Stop the client, the listener and the connections; close the queue."""
        from twisted.internet.defer import DeferredList, maybeDeferred

        done = []
        if self.client is not None:
            self.client.stop()
        if self.listener is not None and self.listener.running:
            done.append(maybeDeferred(self.listener.stopService))
        if self.pool is not None:
            done.append(maybeDeferred(self.pool.closeCachedConnections))
        if self.queue is not None:
            self.queue.close()
            self.queue = None
        return DeferredList(done)

    def pev_response(self, mrid: bytes, port: str, status: int) -> None:
        """A PEV's Response to a relayed DME control (from the EVSE's site controls)."""
        if self.client is not None:
            self.client.pev_response(mrid, port, status)

    def publish(self, telemetry: Mapping[str, Any]) -> None:
        if self.client is not None:
            self.client.publish(telemetry)

    def status(self) -> dict[str, Any]:
        return {"state": "not started"} if self.client is None else self.client.status()
