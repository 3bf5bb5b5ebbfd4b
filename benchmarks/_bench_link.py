"""Drop-in transport plugin for benchmarks/server.py's churn scenario (not sepgw code).

benchmarks/server.py copies this file into a plugin directory of its own and names it in the
config's ``[gateway] plugin_dirs``. Each port's link is up from start, like the loopback
transport's, and a PEV's departure is a datagram ``cycle <port name>`` to the UDP control
address (127.0.0.1, shared by every port): that port's link goes down (the EVSE ends the
session, as when a cable is unplugged) and comes up again, free for the next PEV.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from sepgw.plugin import BuildContext, ITransport, Key, LinkPeer, PluginFactory, Section

_LINKS: dict[str, "BenchLink"] = {}
_CONTROL: list[Any] = []


class _Control(DatagramProtocol):
    def datagramReceived(self, data: bytes, addr: Any) -> None:
        words = data.decode("ascii", "replace").split()
        if len(words) == 2 and words[0] == "cycle" and words[1] in _LINKS:
            _LINKS[words[1]].cycle()


@implementer(ITransport)
class BenchLink:
    def __init__(self, reactor: Any, name: str, port_name: str, control: int) -> None:
        self._reactor = reactor
        self._name = port_name
        self._control = control
        self._peer = LinkPeer(mac=None, address="127.0.0.1")
        self.interface = "lo"
        self.is_up = False
        self._listeners: list[Any] = []
        _LINKS[port_name] = self

    def add_listener(self, listener: Any) -> None:
        self._listeners.append(listener)
        if self.is_up:
            listener.link_up(self._peer)

    def start(self) -> None:
        if not _CONTROL:
            _CONTROL.append(self._reactor.listenUDP(self._control, _Control(),
                                                    interface="127.0.0.1"))
        self.is_up = True
        for listener in list(self._listeners):
            listener.link_up(self._peer)

    def cycle(self) -> None:
        for listener in list(self._listeners):
            listener.link_down("PEV left (benchmark)")
        for listener in list(self._listeners):
            listener.link_up(self._peer)

    def stop(self) -> None:
        if self.is_up:
            self.is_up = False
            for listener in list(self._listeners):
                listener.link_down("transport stopped")
        while _CONTROL:
            _CONTROL.pop().stopListening()


def _build(config: Mapping[str, Any], context: BuildContext) -> BenchLink:
    return BenchLink(context.reactor, context.name, config["port_name"], config["control"])


transport = PluginFactory(
    kind="transport",
    name="bench-link",
    description="Benchmark link: up from start, cycled down and up by a UDP datagram.",
    options=Section({
        "port_name": Key("str", "", "The port's name, as the control datagram names it."),
        "control": Key("int", 0, "UDP port on 127.0.0.1 for the control datagrams."),
    }),
    build=_build,
)
