"""Bundled plugin: a port's link is an Ethernet interface (a bench, or a PLC modem that
needs no SLAC), watched through netlink (pyroute2) events, never polled.

The PEV is present while the interface's operational state is UP (carrier: the cable, or
the other end of a veth pair); its MAC address comes from the IPv6 neighbour table as soon
as it has sent anything. Link down is the PEV gone: the session ends at once.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from sepgw.plugin import (BuildContext, ILinkListener, ITransport, Key, LinkPeer, PluginFactory,
                          Section)

AF_INET6 = 10


@implementer(IReadDescriptor)
class _NetlinkReader:
    """Hands readable netlink messages to the transport, on the reactor thread."""

    def __init__(self, transport: "EthernetTransport") -> None:
        self._transport = transport

    def fileno(self) -> int:
        ipr = self._transport._ipr
        return -1 if ipr is None else int(ipr.fileno())

    def doRead(self) -> None:
        ipr = self._transport._ipr
        if ipr is None:
            return
        try:
            messages = ipr.read()  # readable: one datagram's messages, without blocking
        except BlockingIOError:
            return
        except Exception as e:  # a broken netlink socket must not stop the reactor
            self._transport.log.error("{name}: netlink read failed: {error}",
                                      name=self._transport.name, error=e)
            return
        for message in messages:
            self._transport.netlink(message)

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:
        return f"netlink {self._transport.interface}"


@implementer(ITransport)
class EthernetTransport:
    """The link of one port on a network interface."""

    log = Logger()

    def __init__(self, reactor: Any, name: str, interface: str, iproute: Any = None,
                 events: Any = None) -> None:
        self._reactor = reactor
        self.name = name
        self.interface = interface
        self.is_up = False
        self.peer_mac: str | None = None
        self.index: int | None = None
        self._listeners: list[Any] = []
        self._iproute = iproute
        self._events = events
        """Makes the event socket from netlink groups (sepgw.plugin.NetlinkEvents)."""
        self._ipr: Any = None
        self._reader: _NetlinkReader | None = None

    def add_listener(self, listener: Any) -> None:
        listener = ILinkListener(listener)
        self._listeners.append(listener)
        if self.is_up:
            listener.link_up(self._peer())

    def _peer(self) -> LinkPeer:
        return LinkPeer(mac=self.peer_mac)

    def start(self) -> None:
        if self._iproute is None:
            from pyroute2 import IPRoute

            self._iproute = IPRoute
        if self._events is None:
            from sepgw.plugin import NetlinkEvents

            self._events = NetlinkEvents
        # One short-lived pyroute2 socket for the initial query, and a plain non-blocking
        # socket that only receives events (pyroute2's own reads ahead into a queue the
        # reactor cannot see).
        query = self._iproute()
        try:
            found = query.link_lookup(ifname=self.interface)
            if not found:
                raise RuntimeError(f"{self.name}: no network interface {self.interface!r}")
            self.index = int(found[0])
            from pyroute2.netlink.rtnl import RTMGRP_LINK, RTMGRP_NEIGH

            self._ipr = self._events(RTMGRP_LINK | RTMGRP_NEIGH)
            self._reader = _NetlinkReader(self)
            self._reactor.addReader(self._reader)
            current = query.link("get", index=self.index)
        finally:
            query.close()
        for message in current:
            self.netlink(message)
        self.log.info("{name}: watching {interface} (index {index})", name=self.name,
                      interface=self.interface, index=self.index)

    def stop(self) -> None:
        if self._reader is not None:
            self._reactor.removeReader(self._reader)
            self._reader = None
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        self._set(False, "transport stopped")

    def netlink(self, message: Any) -> None:
        """One netlink message (pyroute2's parsed form)."""
        event = message.get("event") if hasattr(message, "get") else None
        if event in ("RTM_NEWLINK", "RTM_DELLINK") and message.get("index") == self.index:
            if event == "RTM_DELLINK":
                self._set(False, f"interface {self.interface} removed")
                return
            state = message.get_attr("IFLA_OPERSTATE")
            self._set(state == "UP", f"{self.interface} is {str(state).lower()}")
        elif event == "RTM_NEWNEIGH" and message.get("ifindex") == self.index \
                and message.get("family") == AF_INET6:
            mac = message.get_attr("NDA_LLADDR")
            if mac and mac != self.peer_mac:
                self.peer_mac = mac
                self.log.info("{name}: peer {mac} on {interface}", name=self.name, mac=mac,
                              interface=self.interface)

    def _set(self, up: bool, reason: str) -> None:
        if up == self.is_up:
            return
        self.is_up = up
        if not up:
            self.peer_mac = None
        self.log.info("{name}: link {state} ({reason})", name=self.name,
                      state="up" if up else "down", reason=reason)
        for listener in list(self._listeners):
            if up:
                listener.link_up(self._peer())
            else:
                listener.link_down(reason)


def _build(config: Mapping[str, Any], context: BuildContext) -> EthernetTransport:
    return EthernetTransport(context.reactor, context.name, config["interface"])


transport = PluginFactory(
    kind="transport",
    name="ethernet",
    description="The port's link is a network interface; PEV present while it is up "
                "(netlink events).",
    options=Section({
        "interface": Key("str", doc="Network interface of the port (e.g. eth1, veth0).",
                         non_empty=True),
    }),
    build=_build,
)
