"""The Ethernet transport plugin: link state from netlink events."""

from __future__ import annotations

import select
import secrets
import subprocess
from typing import Any

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from sepgw.interfaces import BuildContext, ILinkListener, ITransport, LinkPeer
from sepgw.registry import PluginRegistry, bundled_plugin_dir
from tests.netns import available


class Message(dict):
    """A netlink message as pyroute2 parses it (get / get_attr)."""

    def __init__(self, attrs: dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(fields)
        self.attrs = attrs or {}

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


class FakeIPRoute:
    """Just enough of pyroute2's IPRoute."""

    def __init__(self) -> None:
        self.bound = False
        self.closed = False
        self.queue: list[Message] = []

    def bind(self) -> None:
        self.bound = True

    def fileno(self) -> int:
        return 99

    def link_lookup(self, ifname: str) -> list[int]:
        return [7] if ifname == "port0" else []

    def link(self, command: str, index: int) -> list[Message]:
        return [Message({"IFLA_OPERSTATE": "DOWN"}, event="RTM_NEWLINK", index=index)]

    def read(self) -> list[Message]:
        queue, self.queue = self.queue, []
        return queue

    def close(self) -> None:
        self.closed = True


@implementer(ILinkListener)
class Listener:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def link_up(self, peer: LinkPeer) -> None:
        self.events.append(("up", peer.mac))

    def link_down(self, reason: str) -> None:
        self.events.append(("down", reason))


def build(reactor: Any, interface: str) -> Any:
    info = PluginRegistry.discover([bundled_plugin_dir()]).find("transport", "ethernet")
    config, problems = info.factory.options.validate({"interface": interface})
    assert not problems
    return info.factory.build(config, BuildContext(reactor=reactor, name="ports[0].transport"))


class InMemoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.transport = build(self.reactor, "port0")
        self.ipr = FakeIPRoute()
        self.transport._iproute = lambda: self.ipr  # queries and events on one fake
        self.transport._events = lambda groups: self.ipr
        self.listener = Listener()
        self.transport.add_listener(self.listener)
        self.transport.start()
        [self.reader] = self.reactor.readers

    def deliver(self, *messages: Message) -> None:
        self.ipr.queue.extend(messages)
        self.reader.doRead()

    def test_provides_interface(self) -> None:
        """The component provides ITransport and names its interface."""
        verifyObject(ITransport, self.transport)
        self.assertEqual(self.transport.interface, "port0")

    def test_up_down_from_netlink(self) -> None:
        """Operational state UP is a PEV present, anything else gone; the peer MAC comes from
        IPv6 neighbour events; other interfaces' events are ignored."""
        self.deliver(Message({"IFLA_OPERSTATE": "UP"}, event="RTM_NEWLINK", index=8))
        self.assertEqual(self.listener.events, [])
        self.deliver(Message({"IFLA_OPERSTATE": "UP"}, event="RTM_NEWLINK", index=7))
        self.assertEqual(self.listener.events, [("up", None)])
        self.deliver(Message({"NDA_LLADDR": "02:00:00:00:00:02"}, event="RTM_NEWNEIGH",
                             ifindex=7, family=10))
        self.assertEqual(self.transport.peer_mac, "02:00:00:00:00:02")
        self.deliver(Message({"IFLA_OPERSTATE": "LOWERLAYERDOWN"}, event="RTM_NEWLINK",
                             index=7))
        self.assertEqual(self.listener.events[-1], ("down", "port0 is lowerlayerdown"))
        self.assertIsNone(self.transport.peer_mac)

    def test_stop(self) -> None:
        """Stopping removes the reader, closes netlink and reports the link down."""
        self.deliver(Message({"IFLA_OPERSTATE": "UP"}, event="RTM_NEWLINK", index=7))
        self.transport.stop()
        self.assertEqual(set(self.reactor.readers), set())
        self.assertTrue(self.ipr.closed)
        self.assertEqual(self.listener.events[-1], ("down", "transport stopped"))

    def test_unknown_interface(self) -> None:
        """Starting on a missing interface fails with a message naming it."""
        other = build(MemoryReactor(), "eth9")
        other._iproute = FakeIPRoute
        other._events = lambda groups: FakeIPRoute()
        with self.assertRaises(RuntimeError) as cm:
            other.start()
        self.assertIn("no network interface 'eth9'", str(cm.exception))


class KernelTests(SynchronousTestCase):
    def test_veth_carrier(self) -> None:
        """With a real veth pair: bringing the far end up is a link up event from the
        kernel, taking it down a link down (root only)."""
        reason = available()
        if reason is not None:
            raise SkipTest(reason)
        tag = secrets.token_hex(3)
        near, far = f"sgwn{tag}", f"sgwf{tag}"
        subprocess.run(["ip", "link", "add", near, "type", "veth", "peer", "name", far],
                       check=True)
        self.addCleanup(subprocess.run, ["ip", "link", "del", near], capture_output=True)
        subprocess.run(["ip", "link", "set", near, "up"], check=True)
        reactor = MemoryReactor()
        transport = build(reactor, near)
        listener = Listener()
        transport.add_listener(listener)
        transport.start()
        self.addCleanup(transport.stop)
        [reader] = reactor.readers

        def pump(until: Any) -> None:
            for _ in range(50):
                if until():
                    return
                if select.select([reader.fileno()], [], [], 0.1)[0]:
                    reader.doRead()
            self.fail(f"no netlink event; events {listener.events}")

        self.assertFalse(transport.is_up)
        subprocess.run(["ip", "link", "set", far, "up"], check=True)
        pump(lambda: transport.is_up)
        subprocess.run(["ip", "link", "set", far, "down"], check=True)
        pump(lambda: not transport.is_up)
        self.assertEqual([e[0] for e in listener.events], ["up", "down"])
