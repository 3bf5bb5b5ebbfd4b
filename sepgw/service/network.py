"""The network plane wired into the two roles (profile 3.4.1, 4.2, 4.3).

EVSE, per port (:class:`PortNetwork`, when ``[network] enabled``): the port's ULA /64 and
the EVSE's address in it on the port's interface, Router Advertisements of that prefix
(SLAAC), the routing lockout until the PEV is authorized (and, if the configuration allows
forwarding, lifted while it is), and the mDNS announcement of the 2030.5 server on that
interface. The port's link-local address is followed from netlink events
(:class:`~sepgw.net.ipv6.LinkLocalWatch`): RAs leave from it only once it is valid, and the
mDNS AAAA records carry it alongside the ULA once the link is up. PEV (:func:`discover`): SLAAC on the transport's interface, then the EVSE found
by mDNS.
"""

from __future__ import annotations

from pathlib import Path
from ipaddress import IPv6Address, IPv6Network
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from sepgw.net.ipv6 import (
    LinkLocalWatch,
    PortAddressing,
    add_address,
    enable_slaac,
    load_or_create_ula_prefix,
    remove_address,
    wait_for_ula,
)
from sepgw.net.lockout import RoutingLockout
from sepgw.net.mdns import EVSEAnnouncer, discover_evse
from sepgw.net.ra import RAContent, RATiming, RouterAdvertiser


class PortNetwork(Service):
    """One EVSE port's IPv6 numbering, RAs, routing lockout and mDNS announcement."""

    log = Logger()

    def __init__(self, reactor: Any, *, port_name: str, index: int, interface: str,
                 settings: dict[str, Any], state_dir: Any, sfdi: int, https_port: int,
                 dcap_path: str) -> None:
        self.setName(f"{port_name}.network")
        self.reactor = reactor
        self.port_name = port_name
        self.interface = interface
        self.settings = settings
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        ula = load_or_create_ula_prefix(state_dir, settings["ula_prefix"])
        self.addressing = PortAddressing.for_port(ula, index)
        self.lockout = RoutingLockout(interface)
        self.advertiser: RouterAdvertiser | None = None
        self.announcer: EVSEAnnouncer | None = None
        self._routing: Deferred[Any] = succeed(None)
        """Routing changes run one after the other in the thread pool, in order."""
        self.link_local: IPv6Address | None = None
        """The port's valid link-local address (None before the link is up)."""
        self._watch = LinkLocalWatch(reactor, interface, self._link_local_changed)
        self._watch_ready: Deferred[None] | None = None
        self._sfdi = sfdi
        self._https_port = https_port
        self._dcap = dcap_path

    @property
    def prefix(self) -> IPv6Network:
        return self.addressing.prefix

    def startService(self) -> Deferred[None]:  # type: ignore[override]
        super().startService()
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        # The lockout first: nothing from the port is forwarded before anything else runs
        # (V2G-4.2.4-1); traffic to the EVSE itself still flows (V2G-4.2.4-2).
        await self._route(self.lockout.install)
        await deferToThread(add_address, self.interface, self.addressing.address)
        self.advertiser = RouterAdvertiser(
            self.reactor, self.interface, RAContent(prefix=self.addressing.prefix),
            RATiming(max_interval=self.settings["ra_interval_s"]), watch=False)
        self.advertiser.start()  # RAs wait for the link-local address the watch reports
        self._watch_ready = Deferred()
        self._watch.start()
        await self._watch_ready  # the current addresses have been read (a netlink dump)
        if self.settings["mdns"]:
            self.announcer = EVSEAnnouncer(
                self.reactor, interface=self.interface, addresses=self._mdns_addresses(),
                sfdi=self._sfdi, port=self._https_port, dcap_path=self._dcap)
            await self.announcer.start()
        self.log.info("{port}: {interface} has {address} in {prefix}; RAs every {ra:g} s at "
                      "most; routing locked out{mdns}", port=self.port_name,
                      interface=self.interface, address=self.addressing.address,
                      prefix=self.addressing.prefix, ra=self.settings["ra_interval_s"],
                      mdns="; announced by mDNS" if self.announcer else "")

    def _mdns_addresses(self) -> list[str]:
        """The AAAA records: the ULA, and the link-local address once the link is up."""
        out = [str(self.addressing.address.ip)]
        if self.link_local is not None:
            out.append(str(self.link_local))
        return out

    def _link_local_changed(self, address: IPv6Address | None) -> None:
        """The watch's report: the RA source, and the mDNS addresses."""
        self.link_local = address
        if self._watch_ready is not None:
            ready, self._watch_ready = self._watch_ready, None
            ready.callback(None)
        if self.advertiser is not None:
            self.advertiser.link_local_changed(address)
        if self.announcer is not None:
            self.announcer.update_addresses(self._mdns_addresses()).addErrback(
                lambda f: self.log.failure("{port}: mDNS address update failed", f,
                                           port=self.port_name))

    def _route(self, work: Callable[[], Any]) -> Deferred[Any]:
        """Run a routing change after the ones already queued (never two at once)."""
        self._routing.addCallback(lambda _: deferToThread(work))
        self._routing.addErrback(lambda f: self.log.failure(
            "{port}: routing change failed", f, port=self.port_name))
        return self._routing

    def authorization_changed(self, granted: bool) -> None:
        """Lift the lockout while the PEV is authorized, if the configuration allows
        forwarding (4.2.4); put it back when it is not."""
        if not self.settings["forward_when_authorized"] or not self.running:
            return
        self._route(self.lockout.remove if granted else self.lockout.install)
        self._routing.addCallback(lambda _: self.log.info(
            "{port}: forwarding {state}", port=self.port_name,
            state="enabled (PEV authorized)" if granted else "locked out"))

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        self._watch.stop()
        if self.announcer is not None:
            await self.announcer.stop()
        if self.advertiser is not None:
            self.advertiser.stop()
        await deferToThread(remove_address, self.interface, self.addressing.address)
        await self._route(self.lockout.remove)  # the routing state as it was, last


def port_of_connection(networks: list[PortNetwork]) -> Callable[[str], int | None]:
    """Which port a connection arrived on, from the server address it reached."""

    def port_of(local_address: str) -> int | None:
        try:
            address = IPv6Address(local_address.split("%")[0])
        except ValueError:
            return None
        for index, network in enumerate(networks):
            if address in network.prefix:
                return index
        return None

    return port_of


async def discover(reactor: Any, interface: str, timeout: float) -> str:
    """The PEV side: SLAAC on ``interface``, then the EVSE's DeviceCapability URL by mDNS
    (V2G-4.2.3-3, V2G-4.5.1-2)."""
    await deferToThread(enable_slaac, interface)
    await wait_for_ula(reactor, interface, timeout=timeout)
    service = await discover_evse(reactor, interface=interface, timeout=timeout)
    return str(service.url)
