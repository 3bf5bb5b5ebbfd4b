"""IPv6 addressing and Router Advertisements of the EVSE–PEV link (profile 4.2.3):
ULA prefix, per-port /64s, addresses, SLAAC, RA/RS packets and the RA sender; in memory,
and end to end in network namespaces (root only)."""

from __future__ import annotations

import ast
import errno
import json
import select
import socket
import subprocess
import sys
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path
from random import Random
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from sepgw.net import ipv6, ra
from sepgw.net.ipv6 import (
    IFA_F_NODAD, IFA_F_TENTATIVE, AddressTimeout, PortAddressing, UlaPrefixError,
    add_address, enable_slaac, evse_address, generate_ula_prefix, load_or_create_ula_prefix,
    parse_ula_prefix, port_prefix, remove_address, usable_address, wait_for_ula,
)
from sepgw.net.ra import (
    InvalidPacket, RAContent, RATiming, RouterAdvertiser, build_router_advertisement,
    build_router_solicitation, icmp6_filter, parse_router_advertisement,
    parse_router_solicitation,
)

REPO = Path(__file__).resolve().parent.parent
ULA = IPv6Network("fd12:3456:789a::/48")
MAC = bytes.fromhex("020000000001")


def fixed_bytes(*values: int) -> Any:
    return lambda n: bytes(values[:n])


class UlaTests(SynchronousTestCase):
    def test_generated_prefix(self) -> None:
        """A generated prefix is fd + the 40 random bits, /48, inside fd00::/8
        (V2G-4.2.3-2, RFC 4193)."""
        prefix = generate_ula_prefix(fixed_bytes(0x12, 0x34, 0x56, 0x78, 0x9A))
        self.assertEqual(prefix, ULA)
        self.assertTrue(prefix.subnet_of(IPv6Network("fd00::/8")))
        other = generate_ula_prefix()
        self.assertEqual(other.prefixlen, 48)
        self.assertEqual(other.network_address.packed[0], 0xFD)

    def test_persisted_once(self) -> None:
        """The first call makes the prefix and stores it in <state_dir>/ula-prefix; later
        calls read the same prefix back and never generate again (V2G-4.2.3-2)."""
        state = Path(self.mktemp()) / "state"
        first = load_or_create_ula_prefix(state, randbytes=fixed_bytes(0x12, 0x34, 0x56,
                                                                        0x78, 0x9A))
        self.assertEqual(first, ULA)
        self.assertEqual((state / "ula-prefix").read_text(), "fd12:3456:789a::/48\n")

        def never(n: int) -> bytes:
            raise AssertionError("generated again")

        self.assertEqual(load_or_create_ula_prefix(state, randbytes=never), ULA)
        self.assertEqual([p.name for p in state.iterdir()], ["ula-prefix"])

    def test_configured_wins(self) -> None:
        """A configured prefix is used as is (validated) and nothing is written."""
        state = Path(self.mktemp())
        self.assertEqual(load_or_create_ula_prefix(state, " fdaa:bbbb:cccc::/48 "),
                         IPv6Network("fdaa:bbbb:cccc::/48"))
        self.assertFalse(state.exists())

    def test_bad_prefixes(self) -> None:
        """Only /48s inside fd00::/8 are accepted (V2G-4.2.3-2): not fc00::/8 (L bit
        clear), not global addresses, not other lengths, not host bits."""
        for text in ("fc12:3456:789a::/48", "2001:db8::/48", "fd12:3456:789a::/56",
                     "fd12:3456:789a::1/48", "nonsense"):
            self.assertRaises(UlaPrefixError, parse_ula_prefix, text)

    def test_corrupt_state_file(self) -> None:
        """A stored file that does not hold a prefix is reported with its path, not
        silently replaced (that would renumber every port)."""
        state = Path(self.mktemp())
        state.mkdir()
        (state / "ula-prefix").write_text("2001:db8::/48\n")
        with self.assertRaises(UlaPrefixError) as cm:
            load_or_create_ula_prefix(state)
        self.assertIn(str(state / "ula-prefix"), str(cm.exception))
        self.assertEqual((state / "ula-prefix").read_text(), "2001:db8::/48\n")

    def test_port_prefixes(self) -> None:
        """Port i gets subnet ID i + 1 of the /48, and the EVSE ::1 in it."""
        self.assertEqual(port_prefix(ULA, 0), IPv6Network("fd12:3456:789a:1::/64"))
        self.assertEqual(port_prefix(ULA, 9), IPv6Network("fd12:3456:789a:a::/64"))
        port = PortAddressing.for_port(ULA, 1)
        self.assertEqual(port.prefix, IPv6Network("fd12:3456:789a:2::/64"))
        self.assertEqual(port.address, IPv6Interface("fd12:3456:789a:2::1/64"))
        self.assertEqual(evse_address(port.prefix, 0x10),
                         IPv6Interface("fd12:3456:789a:2::10/64"))
        self.assertRaises(ValueError, port_prefix, ULA, 65535)
        self.assertRaises(ValueError, port_prefix, ULA, -1)
        self.assertRaises(ValueError, port_prefix, IPv6Network("fd00::/56"), 0)


class FakeIPRoute:
    """Just enough of pyroute2's IPRoute for addresses: one interface, eth1 (index 4)."""

    def __init__(self) -> None:
        self.addresses: dict[tuple[str, int], int] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = 0

    def link_lookup(self, ifname: str) -> list[int]:
        return [4] if ifname == "eth1" else []

    def addr(self, command: str, **kwargs: Any) -> list[Any]:
        self.calls.append((command, kwargs))
        key = (kwargs["address"], kwargs["prefixlen"])
        if command == "add":
            if key in self.addresses:
                raise NetlinkError(errno.EEXIST, "File exists")
            self.addresses[key] = kwargs.get("flags", 0)
        elif command == "del":
            if key not in self.addresses:
                raise NetlinkError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
            del self.addresses[key]
        return []

    def close(self) -> None:
        self.closed += 1


class AddressTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ipr = FakeIPRoute()
        self.address = IPv6Interface("fd12:3456:789a:1::1/64")

    def test_add_remove_idempotent(self) -> None:
        """The EVSE's address goes on with nodad (usable at once), adding it twice or
        removing it twice is not an error, and every socket is closed."""
        self.assertTrue(add_address("eth1", self.address, lambda: self.ipr))
        self.assertEqual(self.ipr.calls[0], ("add", {
            "index": 4, "address": "fd12:3456:789a:1::1", "prefixlen": 64,
            "family": socket.AF_INET6, "flags": IFA_F_NODAD}))
        self.assertFalse(add_address("eth1", self.address, lambda: self.ipr))
        self.assertTrue(remove_address("eth1", self.address, lambda: self.ipr))
        self.assertFalse(remove_address("eth1", self.address, lambda: self.ipr))
        self.assertEqual(self.ipr.addresses, {})
        self.assertEqual(self.ipr.closed, 4)

    def test_missing_interface(self) -> None:
        """Adding to a missing interface names it; removing from one is a no-op."""
        with self.assertRaises(LookupError) as cm:
            add_address("eth9", self.address, lambda: self.ipr)
        self.assertIn("eth9", str(cm.exception))
        self.assertFalse(remove_address("eth9", self.address, lambda: self.ipr))

    def test_enable_slaac(self) -> None:
        """SLAAC on the PEV's interface (V2G-4.2.3-3): accept_ra=2 (even when forwarding)
        and autoconf=1, written under /proc/sys/net/ipv6/conf/<interface>/."""
        root = Path(self.mktemp())
        conf = root / "net" / "ipv6" / "conf" / "eth0"
        conf.mkdir(parents=True)
        for key in ("accept_ra", "autoconf"):
            (conf / key).write_text("0\n")
        enable_slaac("eth0", proc_sys=root)
        self.assertEqual((conf / "accept_ra").read_text(), "2")
        self.assertEqual((conf / "autoconf").read_text(), "1")
        self.assertRaises(LookupError, enable_slaac, "eth9", proc_sys=root)
        self.assertRaises(ValueError, enable_slaac, "../all", proc_sys=root)


class Message(dict):
    """A netlink message as pyroute2 parses it (get / get_attr)."""

    def __init__(self, attrs: dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(fields)
        self.attrs = attrs or {}

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


def newaddr(address: str, index: int = 4, flags: int = 0, prefixlen: int = 64) -> Message:
    return Message({"IFA_ADDRESS": address, "IFA_FLAGS": flags}, event="RTM_NEWADDR",
                   index=index, family=socket.AF_INET6, prefixlen=prefixlen, flags=flags & 0xFF)


class FakeEvents:
    """Just enough of NetlinkEvents."""

    def __init__(self, groups: int) -> None:
        self.groups = groups
        self.dumps: list[int] = []
        self.queue: list[list[Message]] = []
        self.closed = False

    def fileno(self) -> int:
        return 42

    def dump_addresses(self, family: int) -> int:
        self.dumps.append(family)
        return len(self.dumps)  # the sequence number the NLMSG_DONE will carry

    def read(self) -> list[Message]:
        if not self.queue:
            raise BlockingIOError()
        return self.queue.pop(0)

    def close(self) -> None:
        self.closed = True


def deladdr(address: str, index: int = 4) -> Message:
    return Message({"IFA_ADDRESS": address, "IFA_FLAGS": 0}, event="RTM_DELADDR",
                   index=index, family=socket.AF_INET6, prefixlen=64, flags=0)


def done(sequence: int) -> Message:
    return Message(event="NLMSG_DONE", header={"sequence_number": sequence})


class LinkLocalWatchTests(SynchronousTestCase):
    """The EVSE side's view of its port's link-local address, from netlink events."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.events: list[FakeEvents] = []
        self.reports: list[IPv6Address | None] = []

        def factory(groups: int) -> FakeEvents:
            self.events.append(FakeEvents(groups))
            return self.events[-1]

        self.watch = ipv6.LinkLocalWatch(self.reactor, "eth1", self.reports.append,
                                         events=factory, index=4)
        self.watch.start()
        [self.source] = self.events

    def deliver(self, *messages: Message) -> None:
        self.source.queue.append(list(messages))
        self.watch.doRead()

    def test_subscribes_then_dumps(self) -> None:
        """It subscribes to IPv6 address events, asks for the current addresses on the
        same socket and is read by the reactor; nothing is reported before the whole
        dump has been read."""
        from pyroute2.netlink.rtnl import RTMGRP_IPV6_IFADDR

        verifyObject(IReadDescriptor, self.watch)
        self.assertIn(self.watch, self.reactor.readers)
        self.assertEqual((self.source.groups, self.source.dumps),
                         (RTMGRP_IPV6_IFADDR, [socket.AF_INET6]))
        self.deliver(newaddr("fe80::1"))
        self.assertEqual(self.reports, [])
        self.deliver(done(1))
        self.assertEqual(self.reports, [IPv6Address("fe80::1")])

    def test_tentative_then_valid(self) -> None:
        """RFC 4861 §4.2 needs a link-local source: a tentative (DAD running), optimistic
        or dadfailed link-local address is no address; the ULA, other interfaces'
        addresses don't count. None is reported until DAD passes, then the address."""
        self.deliver(newaddr("fd12:3456:789a:1::1"), newaddr("fe80::9", index=5),
                     newaddr("fe80::1", flags=IFA_F_TENTATIVE), done(1))
        self.assertEqual(self.reports, [None])
        self.deliver(newaddr("fe80::1", flags=ipv6.IFA_F_OPTIMISTIC | IFA_F_TENTATIVE))
        self.deliver(newaddr("fe80::2", flags=ipv6.IFA_F_DADFAILED))
        self.assertEqual(self.reports, [None])
        self.deliver(newaddr("fe80::1"))
        self.assertEqual(self.reports, [None, IPv6Address("fe80::1")])
        self.assertEqual(self.watch.current, IPv6Address("fe80::1"))
        self.deliver(newaddr("fe80::1"))  # the same again: no new report
        self.assertEqual(len(self.reports), 2)

    def test_removed(self) -> None:
        """A deleted link-local address (interface down) is reported gone; a second valid
        one takes over."""
        self.deliver(newaddr("fe80::1"), newaddr("fe80::2"), done(1))
        self.deliver(deladdr("fe80::1"))
        self.deliver(deladdr("fe80::2"))
        self.assertEqual(self.reports, [IPv6Address("fe80::1"), IPv6Address("fe80::2"),
                                        None])

    def test_overrun_resyncs(self) -> None:
        """When events overran the socket (ENOBUFS), the addresses are read again and
        reported once the new dump is complete (an old dump's end does not count)."""
        self.deliver(newaddr("fe80::1"), done(1))
        reads = iter([OSError(errno.ENOBUFS, "No buffer space available")])
        real_read = self.source.read

        def read() -> list[Message]:
            error = next(reads, None)
            if error is not None:
                raise error
            return real_read()

        self.source.read = read  # type: ignore[method-assign]
        self.source.queue = [[deladdr("fe80::1")]]
        self.watch.doRead()
        self.assertEqual(self.source.dumps, [socket.AF_INET6] * 2)
        self.deliver(done(1), newaddr("fe80::3"))
        self.assertEqual(self.reports, [IPv6Address("fe80::1")])
        self.deliver(done(2))
        self.assertEqual(self.reports, [IPv6Address("fe80::1"), IPv6Address("fe80::3")])

    def test_stop(self) -> None:
        """Stopping closes the socket and removes the reader."""
        self.watch.stop()
        self.assertTrue(self.source.closed)
        self.assertNotIn(self.watch, self.reactor.readers)
        self.assertEqual(self.watch.fileno(), -1)


class WaitForUlaTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.events: list[FakeEvents] = []

        def factory(groups: int) -> FakeEvents:
            self.events.append(FakeEvents(groups))
            return self.events[-1]

        self.d = wait_for_ula(self.reactor, "eth0", timeout=10, events=factory, index=4)
        [self.source] = self.events
        [self.reader] = self.reactor.readers

    def deliver(self, *messages: Message) -> None:
        self.source.queue.append(list(messages))
        self.reader.doRead()

    def test_subscribes_then_dumps(self) -> None:
        """The PEV side subscribes to IPv6 address events, then asks for the current
        addresses on the same socket, read by the reactor (nothing blocks)."""
        from pyroute2.netlink.rtnl import RTMGRP_IPV6_IFADDR

        verifyObject(IReadDescriptor, self.reader)
        self.assertEqual(self.source.groups, RTMGRP_IPV6_IFADDR)
        self.assertEqual(self.source.dumps, [socket.AF_INET6])
        self.assertNoResult(self.d)

    def test_first_usable_ula(self) -> None:
        """Fires with the first SLAAC address in fd00::/8 on the interface once DAD has
        passed (V2G-4.2.3-2/3): link-local, other interfaces' and tentative addresses
        don't count; then the socket is closed and the timeout cancelled."""
        self.deliver(newaddr("fe80::1"), newaddr("fd12:3456:789a:1::99", index=5),
                     newaddr("fd12:3456:789a:1::7", flags=IFA_F_TENTATIVE),
                     newaddr("2001:db8::7"))
        self.assertNoResult(self.d)
        self.deliver(newaddr("fd12:3456:789a:1::7"))
        self.assertEqual(self.successResultOf(self.d),
                         IPv6Interface("fd12:3456:789a:1::7/64"))
        self.assertTrue(self.source.closed)
        self.assertEqual(set(self.reactor.readers), set())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        """No address in time is an AddressTimeout naming the interface; the socket is
        closed."""
        self.reactor.advance(10)
        failure = self.failureResultOf(self.d, AddressTimeout)
        self.assertIn("eth0", failure.getErrorMessage())
        self.assertTrue(self.source.closed)
        self.assertEqual(set(self.reactor.readers), set())

    def test_cancel(self) -> None:
        """Cancelling stops the wait and releases everything."""
        self.d.cancel()
        self.failureResultOf(self.d)
        self.assertTrue(self.source.closed)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_usable_address_flags_from_field(self) -> None:
        """Without IFA_FLAGS (old kernels), the header's flags field is used."""
        message = Message({"IFA_ADDRESS": "fd00::5"}, event="RTM_NEWADDR", index=4,
                          family=socket.AF_INET6, prefixlen=64, flags=IFA_F_TENTATIVE)
        self.assertIsNone(usable_address(message, 4, ipv6.ULA_SPACE))
        message["flags"] = 0
        self.assertEqual(usable_address(message, 4, ipv6.ULA_SPACE),
                         IPv6Interface("fd00::5/64"))

    def test_missing_interface(self) -> None:
        """A missing interface fails at once."""
        d = wait_for_ula(self.reactor, "no-such-if0")
        self.failureResultOf(d, OSError)


# --------------------------------------------------------------------------------------------
# Packets

PREFIX = IPv6Network("fd12:3456:789a:1::/64")
RA_BYTES = bytes.fromhex(
    "86 00 0000"            # type 134, code 0, checksum (kernel)
    "40 00 0000"            # cur hop limit 64, no M/O, router lifetime 0
    "00000000 00000000"     # reachable time, retrans timer: unspecified
    "03 04 40 c0"           # Prefix Information, 32 bytes, /64, L+A
    "00000708 00000384"     # valid 1800 s, preferred 900 s
    "00000000"              # reserved
    "fd123456789a00010000000000000000"
    "01 01 020000000001"    # Source Link-Layer Address
)


class PacketTests(SynchronousTestCase):
    def test_router_advertisement_bytes(self) -> None:
        """The default RA, byte for byte: hop limit 64, no M/O (SLAAC), router lifetime 0,
        the port's /64 with L and A, 1800/900 s, the interface MAC (V2G-4.2.3-4)."""
        content = RAContent(prefix=PREFIX, source_mac=MAC)
        self.assertEqual(build_router_advertisement(content), RA_BYTES)
        self.assertEqual(parse_router_advertisement(RA_BYTES), content)

    def test_router_advertisement_fields(self) -> None:
        """Every field lands where RFC 4861 §4.2/§4.6.2 puts it, and parses back."""
        content = RAContent(prefix=PREFIX, source_mac=None, cur_hop_limit=255, managed=True,
                            other=True, router_lifetime=1800, reachable_time_ms=30000,
                            retrans_timer_ms=1000, valid_lifetime=7200,
                            preferred_lifetime=3600, on_link=False)
        packet = build_router_advertisement(content)
        self.assertEqual(packet[:16], bytes.fromhex("8600 0000 ff c0 0708 00007530 000003e8"))
        self.assertEqual(packet[16:24], bytes.fromhex("0304 40 40 00001c20"))
        self.assertEqual(len(packet), 48)
        self.assertEqual(parse_router_advertisement(packet), content)

    def test_content_checks(self) -> None:
        """Impossible contents are refused before anything is sent."""
        self.assertRaises(ValueError, RAContent, prefix=PREFIX, preferred_lifetime=10,
                          valid_lifetime=5)
        self.assertRaises(ValueError, RAContent, prefix=PREFIX, router_lifetime=9001)
        self.assertRaises(ValueError, RAContent, prefix=PREFIX, source_mac="02:00")

    def test_router_solicitation(self) -> None:
        """RS bytes, and a valid one parses with its source and MAC."""
        packet = build_router_solicitation("02:00:00:00:00:02")
        self.assertEqual(packet, bytes.fromhex("85 00 0000 00000000 0101 020000000002"))
        rs = parse_router_solicitation(packet, "fe80::2%eth1", 255)
        self.assertEqual(rs.source, IPv6Address("fe80::2"))
        self.assertEqual(rs.source_mac, bytes.fromhex("020000000002"))
        self.assertIsNone(parse_router_solicitation(build_router_solicitation(), "::",
                                                    None).source_mac)

    def test_invalid_solicitations(self) -> None:
        """RFC 4861 §6.1.1: hop limit not 255, short, wrong code, zero-length or
        overlong options, or a link-layer address from :: are all discarded."""
        good = build_router_solicitation(MAC)
        bad = [
            (good, "fe80::2", 64),
            (good[:7], "fe80::2", 255),
            (good[:1] + b"\x01" + good[2:], "fe80::2", 255),
            (good[:8] + b"\x01\x00" + good[10:], "fe80::2", 255),
            (good[:8] + b"\x01\x02" + good[10:], "fe80::2", 255),
            (good, "::", 255),
            (build_router_advertisement(RAContent(prefix=PREFIX)), "fe80::2", 255),
        ]
        for data, source, hops in bad:
            self.assertRaises(InvalidPacket, parse_router_solicitation, data, source, hops)

    def test_icmp6_filter(self) -> None:
        """The socket filter passes Router Solicitations (133) and blocks every other
        ICMPv6 type (Linux: a set bit blocks)."""
        import struct

        words = struct.unpack("=8I", icmp6_filter(ra.ND_ROUTER_SOLICIT))
        passed = [t for t in range(256) if not words[t >> 5] & (1 << (t & 31))]
        self.assertEqual(passed, [133])


# --------------------------------------------------------------------------------------------
# The sender


class FakeSocket:
    """A raw ICMPv6 socket in memory: records what is sent, hands out queued datagrams."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.ancillary: list[list[Any]] = []
        self.incoming: list[tuple[bytes, list[Any], int, Any]] = []
        self.error: OSError | None = None
        self.closed = False

    def fileno(self) -> int:
        return 17

    def sendmsg(self, buffers: list[bytes], ancillary: list[Any], flags: int,
                address: Any) -> int:
        if self.error is not None:
            raise self.error
        data = b"".join(buffers)
        self.sent.append((data, address))
        self.ancillary.append(ancillary)
        return len(data)

    def recvmsg(self, size: int, ancsize: int) -> tuple[bytes, list[Any], int, Any]:
        if not self.incoming:
            raise BlockingIOError()
        return self.incoming.pop(0)

    def close(self) -> None:
        self.closed = True

    def solicit(self, data: bytes, source: str = "fe80::2%eth1", hops: int = 255) -> None:
        ancillary = [(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT,
                      hops.to_bytes(4, sys.byteorder))]
        self.incoming.append((data, ancillary, 0, (source, 0, 0, 4)))


LINK_LOCAL = IPv6Address("fe80::1112:1213:1516:1718")
# struct in6_pktinfo {struct in6_addr ipi6_addr; int ipi6_ifindex;}: the RA's source
# address, the EVSE's link-local one (RFC 4861 §4.2), on interface 4.
PKTINFO_FROM_LINK_LOCAL = (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                           bytes.fromhex("fe800000000000001112121315161718")
                           + (4).to_bytes(4, sys.byteorder))


class AdvertiserTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.sock = FakeSocket()
        self.ra = RouterAdvertiser(self.reactor, "eth1", RAContent(prefix=PREFIX,
                                                                   source_mac=MAC),
                                   RATiming(), sock=self.sock, rng=Random(1), watch=False,
                                   index=4)
        self.ra.link_local_changed(LINK_LOCAL)  # valid before the port starts
        self.ra.start()
        self.addCleanup(self.ra.stop)

    def run_for(self, seconds: float, step: float = 0.01) -> list[float]:
        """Advance the clock; return the times at which RAs went out."""
        sent_at = []
        end = self.reactor.seconds() + seconds
        while self.reactor.seconds() < end - 1e-9:
            before = len(self.sock.sent)
            self.reactor.advance(step)
            sent_at += [self.reactor.seconds()] * (len(self.sock.sent) - before)
        return sent_at

    def test_reader_and_first_ra(self) -> None:
        """The sender is a reactor reader on its socket, and the first RA (the exact bytes)
        goes to ff02::1 at once (V2G-4.2.3-4)."""
        verifyObject(IReadDescriptor, self.ra)
        self.assertIn(self.ra, self.reactor.readers)
        self.reactor.advance(0)
        self.assertEqual(self.sock.sent, [(RA_BYTES, ("ff02::1", 0, 0, 4))])
        self.assertEqual(self.sock.ancillary, [[PKTINFO_FROM_LINK_LOCAL]])
        self.assertEqual(self.ra.stats["ra_sent"], 1)

    def test_periodic_schedule(self) -> None:
        """Three initial RAs at most 2 s apart, then one every 9.9..30 s."""
        sent = self.run_for(200, step=0.1)
        gaps = [b - a for a, b in zip(sent, sent[1:])]
        self.assertEqual(sent[0], 0.1)
        self.assertTrue(all(g <= 2.0 + 1e-6 for g in gaps[:2]), gaps)
        self.assertTrue(all(9.9 - 0.1 - 1e-6 <= g <= 30.0 + 0.1 + 1e-6 for g in gaps[2:]),
                        gaps)
        self.assertGreaterEqual(len(sent), 200 // 30 + 2)

    def test_solicitation_answered_soon(self) -> None:
        """A valid RS is answered by an RA within 0.5 s once the 3 s since the previous RA
        have passed, and RSs arriving meanwhile share it (the rate limit)."""
        sent = self.run_for(45)  # past the initial RAs
        since = self.reactor.seconds() - sent[-1]
        if since < 3:  # periodic RAs are >= 9.9 s apart: none falls in here
            self.run_for(3.01 - since)
        for _ in range(5):
            self.sock.solicit(build_router_solicitation("02:00:00:00:00:02"))
        self.ra.doRead()
        self.assertEqual(self.ra.stats["rs_received"], 5)
        [answer] = self.run_for(0.6)
        # another RS straight after it waits for the 3 s minimum since that answer
        self.sock.solicit(build_router_solicitation())
        self.ra.doRead()
        self.assertEqual(self.run_for(answer + 2.98 - self.reactor.seconds()), [])
        self.assertEqual(len(self.run_for(0.6)), 1)

    def test_bad_solicitations_counted(self) -> None:
        """Solicitations with hop limit below 255 (not from the link) or malformed ones are
        ignored and counted, and answer nothing."""
        self.run_for(40)
        before = len(self.sock.sent)
        self.sock.solicit(build_router_solicitation(), hops=64)
        self.sock.solicit(b"\x85\x00\x00")
        self.sock.solicit(build_router_solicitation(MAC), source="::")
        self.ra.doRead()
        self.assertEqual(self.ra.stats["rs_ignored"], 3)
        self.assertEqual(self.ra.stats["rs_received"], 0)
        self.run_for(0.6)
        self.assertEqual(len(self.sock.sent), before)

    def test_send_errors_retried(self) -> None:
        """A refused send (link down, link-local still tentative) is counted and the next
        RA tries again."""
        self.sock.error = OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        self.run_for(2.1)
        self.assertEqual(self.ra.stats["ra_send_errors"], 2)
        self.sock.error = None
        self.run_for(2.1)
        self.assertEqual(self.ra.stats["ra_sent"], 1)

    def test_update_router_lifetime(self) -> None:
        """update() changes the content and advertises it within the rate limit (e.g. a
        router lifetime once the PEV may route through the EVSE)."""
        self.run_for(40)
        self.run_for(3.1)
        self.ra.update(router_lifetime=1800)
        sent = self.run_for(3.6)
        self.assertGreaterEqual(len(sent), 1)
        self.assertEqual(parse_router_advertisement(self.sock.sent[-1][0]).router_lifetime,
                         1800)

    def test_stop_withdraws_router_lifetime(self) -> None:
        """Stopping after a router lifetime was advertised sends a last RA with lifetime 0,
        so that the PEV drops the EVSE as a default router at once."""
        self.reactor.advance(0)
        self.ra.update(router_lifetime=1800)
        self.ra.stop()
        self.assertEqual(parse_router_advertisement(self.sock.sent[-1][0]).router_lifetime,
                         0)
        quiet = RouterAdvertiser(self.reactor, "eth1", RAContent(prefix=PREFIX,
                                                                 source_mac=MAC),
                                 sock=FakeSocket(), watch=False, index=4)
        quiet.link_local_changed(LINK_LOCAL)
        quiet.start()
        quiet.stop()
        self.assertEqual(quiet.stats["ra_sent"], 0)

    def test_stop(self) -> None:
        """Stopping removes the reader, cancels the timer and closes the socket."""
        self.ra.stop()
        self.assertNotIn(self.ra, self.reactor.readers)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertTrue(self.sock.closed)
        self.assertEqual(self.ra.fileno(), -1)

    def test_timing_checks(self) -> None:
        """The default minimum interval is 0.33 × the maximum; nonsense is refused."""
        self.assertAlmostEqual(RATiming(max_interval=30).min_interval or 0, 9.9)
        self.assertRaises(ValueError, RATiming, min_interval=40, max_interval=30)
        self.assertRaises(ValueError, RATiming, initial_count=0)


class LinkLocalSourceTests(SynchronousTestCase):
    """RAs leave from the port's valid link-local address only (RFC 4861 §4.2: hosts drop
    RAs from any other source, §6.1.2), and wait for it after carrier-up."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.sock = FakeSocket()
        self.ra = RouterAdvertiser(self.reactor, "eth1", RAContent(prefix=PREFIX,
                                                                   source_mac=MAC),
                                   RATiming(), sock=self.sock, rng=Random(1), watch=False,
                                   index=4)
        self.addCleanup(self.ra.stop)

    def run_for(self, seconds: float, step: float = 0.01) -> list[float]:
        sent_at = []
        end = self.reactor.seconds() + seconds
        while self.reactor.seconds() < end - 1e-9:
            before = len(self.sock.sent)
            self.reactor.advance(step)
            sent_at += [self.reactor.seconds()] * (len(self.sock.sent) - before)
        return sent_at

    def test_waits_for_link_local_then_answers_at_once(self) -> None:
        """V2G-4.2.3-4: started while the link-local address is still tentative (None),
        nothing is sent, however long, not even in answer to a Router Solicitation from
        ``::``; the answer is queued. The moment the address is valid an RA goes out,
        at once, with that source (IPV6_PKTINFO), followed by the initial RAs."""
        self.ra.start()
        self.assertEqual(self.run_for(60, step=0.1), [])
        self.sock.solicit(build_router_solicitation(), source="::")
        self.ra.doRead()
        self.assertEqual(self.run_for(5), [])
        self.assertGreaterEqual(self.ra.stats["ra_deferred"], 2)
        self.assertEqual(self.ra.stats["rs_received"], 1)
        self.ra.link_local_changed(LINK_LOCAL)
        self.reactor.advance(0)
        self.assertEqual(self.sock.sent, [(RA_BYTES, ("ff02::1", 0, 0, 4))])
        self.assertEqual(self.sock.ancillary, [[PKTINFO_FROM_LINK_LOCAL]])
        sent = self.run_for(4.1)
        self.assertEqual(len(sent), 2)  # the rest of the initial RAs, <= 2 s apart
        self.assertEqual(self.sock.ancillary, [[PKTINFO_FROM_LINK_LOCAL]] * 3)

    def test_refuses_other_sources(self) -> None:
        """Only a link-local address can be the source: a ULA or global one is refused
        and changes nothing."""
        for bad in (IPv6Address("fd12:3456:789a:1::1"), IPv6Address("2001:db8::1")):
            self.assertRaises(ValueError, self.ra.link_local_changed, bad)
        self.assertIsNone(self.ra.source)

    def test_link_local_lost_and_back(self) -> None:
        """When the link-local address goes (interface down), RAs stop; when one is valid
        again, an RA goes out at once (rate limited to 3 s after the previous one) and
        the initial RAs start over."""
        self.ra.link_local_changed(LINK_LOCAL)
        self.ra.start()
        last = self.run_for(40)[-1]
        self.ra.link_local_changed(None)
        self.assertEqual(self.run_for(100, step=0.1), [])
        before = len(self.sock.sent)
        self.ra.link_local_changed(LINK_LOCAL)
        self.reactor.advance(0)
        self.assertGreater(self.reactor.seconds() - last, 3)
        self.assertEqual(len(self.sock.sent), before + 1)  # at once
        sent = self.run_for(4.1)
        self.assertEqual(len(sent), 2)
        self.assertEqual(self.sock.ancillary[-1], [PKTINFO_FROM_LINK_LOCAL])

    def test_stop_without_link_local(self) -> None:
        """Stopping while a router lifetime is advertised but no link-local address is
        valid sends nothing (it could only leave from a wrong source)."""
        self.ra.start()
        self.ra.update(router_lifetime=1800)
        self.ra.stop()
        self.assertEqual(self.sock.sent, [])


# --------------------------------------------------------------------------------------------
# In network namespaces (root)

SENDER = """
import sys
from ipaddress import IPv6Network
from twisted.internet import reactor
from sepgw.net.ipv6 import PortAddressing, add_address
from sepgw.net.ra import RAContent, RATiming, RouterAdvertiser

interface, ula = sys.argv[1], IPv6Network(sys.argv[2])
port = PortAddressing.for_port(ula, 0)
add_address(interface, port.address)
# One RA at start, then only every 10 minutes: "ready" once that first RA is out (it waits
# for the link-local address), so the PEV's address must come from the answer to its Router
# Solicitation.
class FirstRA(RouterAdvertiser):
    def _send(self):
        super()._send()
        if self.stats["ra_sent"] == 1:
            print("ready", flush=True)

advertiser = FirstRA(reactor, interface, RAContent(prefix=port.prefix),
                     RATiming(initial_count=1, min_interval=600, max_interval=600))
advertiser.start()

def report():
    print("stats", dict(advertiser.stats), flush=True)
    advertiser.stop()

reactor.addSystemEventTrigger("before", "shutdown", report)
reactor.run()
"""

PEV = """
import sys
from pyroute2 import IPRoute
from twisted.internet import reactor
from sepgw.net.ipv6 import enable_slaac, wait_for_ula

interface = sys.argv[1]
enable_slaac(interface)
d = wait_for_ula(reactor, interface, timeout=float(sys.argv[2]))

def replug():  # the link comes up again: the kernel solicits, now that SLAAC is on
    ipr = IPRoute()
    index = ipr.link_lookup(ifname=interface)[0]
    ipr.link("set", index=index, state="down")
    ipr.link("set", index=index, state="up")
    ipr.close()

d.addCallbacks(lambda address: print("address", address, flush=True),
               lambda failure: print("failed", failure.getErrorMessage(), flush=True))
d.addBoth(lambda _: reactor.stop())
reactor.callWhenRunning(replug)
reactor.run()
"""

CARRIER_SENDER = """
import sys, time
from ipaddress import IPv6Network
from twisted.internet import reactor
from sepgw.net.ipv6 import LinkLocalWatch, PortAddressing, add_address
from sepgw.net.ra import RAContent, RATiming, RouterAdvertiser

interface, ula = sys.argv[1], IPv6Network(sys.argv[2])
port = PortAddressing.for_port(ula, 0)
add_address(interface, port.address)  # nodad: valid at once, before the link-local
# After the first RA, only every 10 minutes: a PEV that had to wait for an RA interval
# would wait that long.
advertiser = RouterAdvertiser(reactor, interface, RAContent(prefix=port.prefix),
                              RATiming(initial_count=1, min_interval=600, max_interval=600))

def valid(address):  # the test's own watch: when the link-local address became valid
    if address is not None:
        print("valid", time.monotonic(), address, flush=True)

watch = LinkLocalWatch(reactor, interface, valid)

def report():
    print("stats", dict(advertiser.stats), flush=True)
    advertiser.stop()

reactor.callWhenRunning(watch.start)
reactor.callWhenRunning(advertiser.start)
reactor.callWhenRunning(print, "ready", flush=True)
reactor.addSystemEventTrigger("before", "shutdown", report)
reactor.run()
"""

# The PEV side: a raw ICMPv6 socket passing only RAs, with the source and destination of
# each; netlink address events for the SLAAC address; then the carrier comes up.
CARRIER_PEV = """
import json, select, socket, struct, sys, time
from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV6_IFADDR
from sepgw.net.ipv6 import NetlinkEvents, usable_address

interface, seconds = sys.argv[1], float(sys.argv[2])
index = socket.if_nametoindex(interface)
raw = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
raw.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
words = [0xFFFFFFFF] * 8
words[134 >> 5] &= ~(1 << (134 & 31)) & 0xFFFFFFFF
raw.setsockopt(socket.IPPROTO_ICMPV6, 1, struct.pack("=8I", *words))  # ICMP6_FILTER
raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
events = NetlinkEvents(RTMGRP_IPV6_IFADDR)
out = {"ras": []}
with IPRoute() as ipr:
    up = out["up"] = time.monotonic()
    ipr.link("set", index=index, state="up")  # carrier-up on both ends
while time.monotonic() < up + seconds and "ula_at" not in out:
    ready = select.select([raw, events], [], [], up + seconds - time.monotonic())[0]
    if raw in ready:
        data, anc, _, source = raw.recvmsg(2048, socket.CMSG_SPACE(20))
        dest = [socket.inet_ntop(socket.AF_INET6, v[:16]) for l, k, v in anc
                if l == socket.IPPROTO_IPV6 and k == socket.IPV6_PKTINFO]
        out["ras"].append({"at": time.monotonic() - up, "type": data[0],
                           "source": source[0].split("%")[0], "dest": dest})
    if events in ready:
        while True:
            try:
                messages = events.read()
            except BlockingIOError:
                break
            for m in messages:
                found = usable_address(m, index, __import__("ipaddress").IPv6Network(
                    "fd00::/8"))
                if found is not None and "ula_at" not in out:
                    out.update(ula_at=time.monotonic() - up, ula=str(found))
print("RESULT " + json.dumps(out), flush=True)
"""


class NamespaceTests(SynchronousTestCase):
    def test_pev_gets_ula_by_slaac(self) -> None:
        """Real kernels, two namespaces joined by a veth pair (root only): the EVSE puts
        ::1 of the port /64 on its end and advertises the /64; the PEV, a forwarding host
        where accept_ra=1 would not be enough, enables SLAAC and gets an address from the
        advertised prefix, in fd00::/8, in answer to its Router Solicitation (V2G-4.2.3-1,
        V2G-4.2.3-2, V2G-4.2.3-3, V2G-4.2.3-4); router lifetime 0 gives it no default route
        (V2G-4.2.4-1)."""
        from tests.netns import Netns

        net = Netns(self)
        evse, pev = net.namespace("evse"), net.namespace("pev")
        net.sysctl(pev, "net.ipv6.conf.all.forwarding", "1")
        net.sysctl(pev, "net.ipv6.conf.default.forwarding", "1")
        net.veth("evse0", evse, "pev0", pev)
        conf = "/proc/sys/net/ipv6/conf/pev0/"
        self.assertEqual(net.run(pev, "cat", conf + "forwarding", conf + "accept_ra")
                         .stdout.split(), ["1", "1"])  # RAs ignored until SLAAC is enabled

        sender = net.popen(evse, sys.executable, "-c", SENDER, "evse0", str(ULA),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           cwd=REPO)
        assert sender.stdout is not None and sender.stderr is not None
        if not select.select([sender.stdout], [], [], 15)[0]:
            self.fail("RA sender did not start")
        line = sender.stdout.readline()
        if line.strip() != "ready":
            sender.kill()
            self.fail(f"RA sender failed: {line}{sender.stderr.read()}")

        done = net.run(pev, sys.executable, "-c", PEV, "pev0", "20", timeout=40,
                       check=False)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertTrue(done.stdout.startswith("address "), done.stdout + done.stderr)
        address = IPv6Interface(done.stdout.split()[1])
        self.assertIn(address.ip, PREFIX)
        self.assertEqual(address.network, PREFIX)
        self.assertIn(address.ip, IPv6Network("fd00::/8"))
        self.assertNotEqual(address.ip, PREFIX[1])
        self.assertEqual(net.run(pev, "ip", "-6", "route", "show", "default").stdout.strip(),
                         "")
        self.assertIn(f"{PREFIX} dev pev0", net.run(pev, "ip", "-6", "route").stdout)

        sender.terminate()
        out, err = sender.communicate(timeout=15)
        stats = ast.literal_eval(out.split("stats", 1)[1].strip()) if "stats" in out else {}
        self.assertGreaterEqual(stats.get("rs_received", 0), 1, out + err)
        self.assertGreaterEqual(stats.get("ra_sent", 0), 1, out + err)

    def test_ra_from_link_local_right_after_carrier_up(self) -> None:
        """RFC 4861 §4.2 and §6.1.2, V2G-4.2.3-3, V2G-4.2.3-4, real kernels (root only):
        the EVSE's port is up without carrier, its ULA already valid (nodad); the PEV's end
        comes up (carrier-up on both), and the PEV, with no DAD of its own, solicits at
        once while the EVSE's link-local address is still tentative. Every RA captured on
        the PEV's side comes from fe80::/10 to ff02::1, the first within about a second of
        the EVSE's link-local becoming valid, and the PEV has its SLAAC address in the
        advertised prefix well before its next solicitation (4 s) and the next periodic
        RA (10 min): it waits no RA interval."""
        from tests.netns import Netns

        net = Netns(self)
        evse, pev = net.namespace("evse"), net.namespace("pev")
        # The veth pair by hand: the PEV's end stays down (no carrier on the EVSE's).
        tmp_a, tmp_b = f"ca{net.tag}", f"cb{net.tag}"
        subprocess.run(["ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b],
                       check=True)
        for tmp, name, ns in ((tmp_a, "evse0", evse), (tmp_b, "pev0", pev)):
            subprocess.run(["ip", "link", "set", tmp, "netns", ns], check=True)
            net.run(ns, "ip", "link", "set", tmp, "name", name)
        # Three DAD probes: the EVSE's link-local address stays tentative for 3-4 s after
        # carrier-up, so the PEV's solicitation surely arrives while it is.
        net.sysctl(evse, "net.ipv6.conf.evse0.dad_transmits", "3")
        net.run(evse, "ip", "link", "set", "evse0", "up")
        # A quick PEV: no DAD (the kernel skips it only if "all" says so too), so it
        # solicits the moment its link comes up.
        net.sysctl(pev, "net.ipv6.conf.all.accept_dad", "0")
        for key, value in (("accept_ra", "2"), ("autoconf", "1"), ("accept_dad", "0")):
            net.sysctl(pev, f"net.ipv6.conf.pev0.{key}", value)
        self.assertIn("NO-CARRIER", net.run(evse, "ip", "link", "show", "evse0").stdout)

        sender = net.popen(evse, sys.executable, "-c", CARRIER_SENDER, "evse0", str(ULA),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           cwd=REPO)
        assert sender.stdout is not None and sender.stderr is not None
        if not select.select([sender.stdout], [], [], 15)[0]:
            self.fail("RA sender did not start")
        line = sender.stdout.readline()
        if line.strip() != "ready":
            sender.kill()
            self.fail(f"RA sender failed: {line}{sender.stderr.read()}")

        done = subprocess.run(["ip", "netns", "exec", pev, sys.executable, "-c",
                               CARRIER_PEV, "pev0", "12"], capture_output=True, text=True,
                              timeout=40, cwd=REPO)
        self.assertEqual(done.returncode, 0, done.stderr)
        result = json.loads(done.stdout.split("RESULT ", 1)[1])
        sender.terminate()
        out, err = sender.communicate(timeout=15)
        ras = result["ras"]
        self.assertTrue(ras, (result, out, err))
        for ra_seen in ras:
            self.assertEqual(ra_seen["type"], 134)
            self.assertIn(IPv6Address(ra_seen["source"]), IPv6Network("fe80::/10"),
                          (ras, out, err))
            self.assertEqual(ra_seen["dest"], ["ff02::1"])
        self.assertIn("ula_at", result, (result, out, err))
        self.assertIn(IPv6Interface(result["ula"]).ip, PREFIX)
        # Relative to when the EVSE's link-local address became valid (one monotonic
        # clock for both namespaces): the first RA and the SLAAC address follow at once.
        valid_at = float(out.split("valid ", 1)[1].split()[0]) - result["up"]
        self.assertGreater(valid_at, 2.5, out)  # three DAD probes
        self.assertLess(ras[0]["at"] - valid_at, 0.5, (valid_at, result))
        self.assertLess(result["ula_at"] - valid_at, 0.5, (valid_at, result))
        stats = ast.literal_eval(out.split("stats", 1)[1].strip()) if "stats" in out else {}
        self.assertEqual(stats.get("ra_send_errors", 0), 0, out + err)
        self.assertGreaterEqual(stats.get("ra_deferred", 0), 1, out)  # the RS waited
        self.assertGreaterEqual(stats.get("ra_sent", 0), 1, out + err)
        print(f"carrier-up to EVSE link-local valid {valid_at:.2f} s, to first RA "
              f"{ras[0]['at']:.2f} s, to SLAAC address {result['ula_at']:.2f} s; {stats}")
