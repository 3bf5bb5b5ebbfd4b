"""Routing lockout of a port (profile 4.2.4): policy-routing rules in memory, and PEV ↔
EVSE ↔ upstream traffic in network namespaces (root only)."""

from __future__ import annotations

import errno
import socket
import sys
from ipaddress import IPv6Interface, IPv6Network
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError
from twisted.trial.unittest import SynchronousTestCase

from sepgw.net.ipv6 import PortAddressing, add_address
from sepgw.net.lockout import DEFAULT_PRIORITY, LockoutError, RoutingLockout


class Message(dict):
    """A netlink message as pyroute2 parses it (get / get_attr)."""

    def __init__(self, attrs: dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(fields)
        self.attrs = attrs or {}

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


class FakeIPRoute:
    """Just enough of pyroute2's IPRoute for FIB rules, with kernel-like errors."""

    def __init__(self, master: int | None = None) -> None:
        self.rules: list[tuple[int, str, int, int]] = []  # family, iif, priority, action
        self.master = master
        self.closed = 0

    def link_lookup(self, ifname: str) -> list[int]:
        return [4] if ifname == "eth1" else []

    def link(self, command: str, index: int) -> list[Message]:
        return [Message({"IFLA_MASTER": self.master}, index=index)]

    def rule(self, command: str, **kw: Any) -> list[Any]:
        if command == "dump":
            return [Message({"FRA_IIFNAME": iif, "FRA_PRIORITY": prio}, family=fam,
                            action=act) for fam, iif, prio, act in self.rules
                    if fam == kw["family"]]
        assert kw["action"] == "prohibit"
        key = (kw["family"], kw["iifname"], kw["priority"], 8)
        if command == "add":
            if key in self.rules:
                raise NetlinkError(errno.EEXIST, "File exists")
            self.rules.append(key)
        elif command == "del":
            if key not in self.rules:
                raise NetlinkError(errno.ENOENT, "No such file or directory")
            self.rules.remove(key)
        return []

    def close(self) -> None:
        self.closed += 1


class RuleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ipr = FakeIPRoute()
        self.lockout = RoutingLockout("eth1", iproute=lambda: self.ipr)

    def test_install_remove(self) -> None:
        """Installing puts one "iif eth1 prohibit" rule per family (IPv6, IPv4) after the
        local table (V2G-4.2.4-1); removing takes them away; sockets are closed."""
        self.lockout.install()
        self.assertEqual(self.ipr.rules, [(socket.AF_INET6, "eth1", DEFAULT_PRIORITY, 8),
                                          (socket.AF_INET, "eth1", DEFAULT_PRIORITY, 8)])
        self.assertTrue(self.lockout.installed)
        self.assertEqual(self.lockout.rules(), [("IPv6", 1000), ("IPv4", 1000)])
        self.lockout.remove()
        self.assertEqual(self.ipr.rules, [])
        self.assertFalse(self.lockout.installed)
        self.assertEqual(self.ipr.closed, 3)

    def test_idempotent(self) -> None:
        """Installing twice, adopting a rule left by a crashed run, and removing twice are
        all fine and leave exactly the expected rules."""
        self.ipr.rules.append((socket.AF_INET6, "eth1", DEFAULT_PRIORITY, 8))  # left over
        self.lockout.install()
        self.lockout.install()
        self.assertEqual(len(self.ipr.rules), 2)
        self.lockout.remove()
        self.lockout.remove()
        self.assertEqual(self.ipr.rules, [])

    def test_removes_duplicates(self) -> None:
        """Duplicate rules (kernels that accept them) are all removed."""
        self.ipr.rules += [(socket.AF_INET6, "eth1", DEFAULT_PRIORITY, 8)] * 3
        self.lockout.remove()
        self.assertEqual(self.ipr.rules, [])

    def test_missing_interface_still_locked(self) -> None:
        """A rule for an interface that does not exist yet is installed: it applies once
        the interface appears."""
        lockout = RoutingLockout("eth7", iproute=lambda: self.ipr, families=[socket.AF_INET6])
        lockout.install()
        self.assertEqual(self.ipr.rules, [(socket.AF_INET6, "eth7", DEFAULT_PRIORITY, 8)])

    def test_bridged_interface_refused(self) -> None:
        """A port interface with a master (bridge, bond) would be bridged past a routing
        rule: installing fails loudly instead (V2G-4.2.4-1 prohibits bridging too)."""
        lockout = RoutingLockout("eth1", iproute=lambda: FakeIPRoute(master=9))
        with self.assertRaises(LockoutError) as cm:
            lockout.install()
        self.assertIn("bridged", str(cm.exception))

    def test_other_errors_raised(self) -> None:
        """Errors other than "exists" / "not found" reach the caller."""

        class Refusing(FakeIPRoute):
            def rule(self, command: str, **kw: Any) -> list[Any]:
                raise NetlinkError(errno.EPERM, "Operation not permitted")

        lockout = RoutingLockout("eth1", iproute=Refusing)
        self.assertRaises(NetlinkError, lockout.install)
        self.assertRaises(NetlinkError, lockout.remove)
        self.assertFalse(lockout.installed)

    def test_arguments(self) -> None:
        """The priority must fall between the local (0) and main (32766) rules."""
        self.assertRaises(ValueError, RoutingLockout, "eth1", priority=0)
        self.assertRaises(ValueError, RoutingLockout, "eth1", priority=32766)
        self.assertRaises(ValueError, RoutingLockout, "an-interface-name-too-long")


# --------------------------------------------------------------------------------------------
# In network namespaces (root)

# An ICMPv6 echo from a namespace: prints "reply", "prohibited <code>" (destination
# unreachable about our packet) or "timeout".
ECHO = """
import os, select, socket, struct, sys, time
destination, wait = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
ident = os.getpid() & 0xFFFF
s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"sepgw", (destination, 0))
target = socket.inet_pton(socket.AF_INET6, destination)
deadline = time.monotonic() + wait
while True:
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([s], [], [], left)[0]:
        print("timeout")
        break
    data, _ = s.recvfrom(2048)
    if data[0] == 129 and struct.unpack("!H", data[4:6])[0] == ident:
        print("reply")
        break
    if data[0] == 1 and data[8 + 24:8 + 40] == target:
        print("unreachable", data[1])
        break
"""

ULA = IPv6Network("fd12:3456:789a::/48")
UPSTREAM = IPv6Network("2001:db8:ff::/64")


class NamespaceTests(SynchronousTestCase):
    def test_lockout_between_namespaces(self) -> None:
        """Real kernels, PEV — EVSE — UPSTREAM in three namespaces, the EVSE forwarding
        IPv6 (root only). Locked out, the PEV still reaches the EVSE's addresses
        (V2G-4.2.4-2) but nothing behind it: its packets to UPSTREAM are refused with
        "administratively prohibited" (V2G-4.2.4-1), while the EVSE's own traffic to
        UPSTREAM flows; lifted, the PEV reaches UPSTREAM; installing and removing twice
        leaves one rule, then none."""
        from pyroute2 import IPRoute

        from tests.netns import Netns

        net = Netns(self)
        pev, evse, up = net.namespace("pev"), net.namespace("evse"), net.namespace("up")
        net.sysctl(evse, "net.ipv6.conf.all.forwarding", "1")
        net.veth("pev0", pev, "evse0", evse)
        net.veth("evse1", evse, "up0", up)

        def in_evse() -> Any:
            return IPRoute(netns=evse, flags=0)

        port = PortAddressing.for_port(ULA, 0)
        pev_address = IPv6Interface((int(port.prefix.network_address) + 2, 64))
        evse_up, up_address = IPv6Interface(f"{UPSTREAM[1]}/64"), f"{UPSTREAM[2]}/64"
        self.assertTrue(add_address("evse0", port.address, in_evse))
        self.assertTrue(add_address("evse1", evse_up, in_evse))
        net.run(pev, "ip", "-6", "addr", "add", str(pev_address), "dev", "pev0", "nodad")
        net.run(pev, "ip", "-6", "route", "add", "default", "via", str(port.address.ip))
        net.run(up, "ip", "-6", "addr", "add", up_address, "dev", "up0", "nodad")
        net.run(up, "ip", "-6", "route", "add", str(port.prefix), "via", str(evse_up.ip))

        def echo(ns: str, destination: Any) -> str:
            done = net.run(ns, sys.executable, "-c", ECHO, str(destination), "3",
                           timeout=20, check=False)
            self.assertEqual(done.returncode, 0, done.stderr)
            return done.stdout.strip()

        upstream = UPSTREAM[2]
        self.assertEqual(echo(pev, upstream), "reply")  # routed before the lockout

        lockout = RoutingLockout("evse0", iproute=in_evse)
        lockout.install()
        lockout.install()
        self.addCleanup(lockout.remove)
        rules = net.run(evse, "ip", "-6", "rule").stdout
        self.assertEqual(rules.count("iif evse0 prohibit"), 1, rules)
        self.assertIn("iif evse0 prohibit", net.run(evse, "ip", "-4", "rule").stdout)
        self.assertEqual(lockout.rules(), [("IPv6", 1000), ("IPv4", 1000)])

        self.assertEqual(echo(pev, port.address.ip), "reply")
        self.assertEqual(echo(pev, evse_up.ip), "reply")  # the EVSE's own other address
        self.assertEqual(echo(pev, upstream), "unreachable 1")
        self.assertEqual(echo(evse, upstream), "reply")

        lockout.remove()
        lockout.remove()
        self.assertNotIn("evse0", net.run(evse, "ip", "-6", "rule").stdout)
        self.assertNotIn("evse0", net.run(evse, "ip", "-4", "rule").stdout)
        self.assertEqual(echo(pev, upstream), "reply")
