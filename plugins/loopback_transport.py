"""Bundled plugin: the loopback transport of the embedded default (no real link)."""

from __future__ import annotations

from typing import Any, Mapping

from twisted.logger import Logger
from zope.interface import implementer

from sepgw.plugin import (BuildContext, ILinkListener, ITransport, Key, LinkPeer, PluginFactory,
                          Section)


@implementer(ITransport)
class LoopbackTransport:
    """A link on the loopback interface whose peer is present from start until stop.

    It stands in for a cable when EVSE and PEV run on one machine: the PEV reaches the EVSE
    at a configured loopback URL instead of through RA and mDNS.
    """

    log = Logger()

    def __init__(self, name: str, interface: str, peer_address: str | None) -> None:
        self._name = name
        self.interface = interface
        self._peer = LinkPeer(mac=None, address=peer_address)
        self.is_up = False
        self._listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        listener = ILinkListener(listener)
        self._listeners.append(listener)
        if self.is_up:
            listener.link_up(self._peer)

    def start(self) -> None:
        self.is_up = True
        self.log.info("{name}: loopback link up on {interface}", name=self._name,
                      interface=self.interface)
        for listener in list(self._listeners):
            listener.link_up(self._peer)

    def stop(self) -> None:
        if self.is_up:
            self.is_up = False
            for listener in list(self._listeners):
                listener.link_down("transport stopped")


def _build(config: Mapping[str, Any], context: BuildContext) -> LoopbackTransport:
    return LoopbackTransport(context.name, config["interface"], config["peer_address"])


transport = PluginFactory(
    kind="transport",
    name="loopback",
    description="Loopback link for EVSE and PEV on one machine; the peer is always present.",
    options=Section({
        "interface": Key("str", "lo", "Network interface name reported to the server."),
        "peer_address": Key("str", "::1", "Address the PEV connects from."),
    }),
    build=_build,
)
