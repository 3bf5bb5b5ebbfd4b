"""Router Advertisements on a port (profile 4.2.3, V2G-4.2.3-4): the EVSE advertises the
port's ULA /64 so that the PEV configures its address with SLAAC (V2G-4.2.3-3).

    ra = RouterAdvertiser(reactor, "eth1", RAContent(prefix=port.prefix))
    ra.start()      # at port start: periodic RAs, and an answer to every valid RS
    ra.stop()       # at port stop

What is advertised (:class:`RAContent`, RFC 4861 §4.2): current hop limit 64; no M/O flags
(addresses by SLAAC, nothing by DHCPv6); **router lifetime 0**: the EVSE is not a default
router, so the PEV sends nothing off-link through it (the profile's "no routing on initial
connection", V2G-4.2.4-1, holds on the PEV's side too); reachable time and retransmission
timer unspecified (0); one Prefix Information option: the port's /64, on-link (L) and
autonomous (A), valid 1800 s, preferred 900 s (short, so that a PEV's address lapses soon
after the EVSE stops advertising); the Source Link-Layer Address option with the
interface's MAC. ``update(router_lifetime=...)`` changes it at run time (e.g. after
authorization, if the EVSE offers routing) and advertises the change promptly.

When (:class:`RATiming`, RFC 4861 §6.2.4 and §6.2.6, with a shorter maximum interval): the
first RA at start, then ``initial_count - 1`` more at most ``initial_interval`` apart, then
one every ``min_interval``..``max_interval`` seconds (random, 9.9..30 s by default). A valid
Router Solicitation is answered by a multicast RA after a random 0..0.5 s, but never sooner
than 3 s after the previous one (RSs arriving meanwhile share that RA): the rate limit.

The socket: raw ICMPv6, bound to the interface (SO_BINDTODEVICE), hop limit 255, joined to
ff02::2 (all-routers: RSs are sent there, and the kernel joins it only on forwarding
interfaces), an ICMP6_FILTER passing only Router Solicitations, IPV6_RECVHOPLIMIT to check
that a solicitation came from the link (hop limit 255). The kernel computes the ICMPv6
checksum of what is sent and verifies that of what is received. The reactor watches the
socket (IReadDescriptor); nothing blocks. Needs CAP_NET_RAW.

The source address: RFC 4861 §4.2 requires an RA to come from the router's link-local
address, and hosts silently drop any other (§6.1.2). Left to itself the kernel picks the
source, and while the link-local address is still tentative (duplicate address detection,
about a second after the link gets its carrier, just when a PEV plugs in and solicits) it
picks the port's ULA. So every RA names its source explicitly (IPV6_PKTINFO) as the
interface's valid link-local address, followed by :class:`sepgw.net.ipv6.LinkLocalWatch`
from netlink events; while there is none, nothing is sent: periodic RAs and answers to
solicitations wait (counted in ``ra_deferred``), and the moment it becomes valid the
initial RAs start again, the first at once, which also answers any solicitation that
arrived meanwhile.
"""

from __future__ import annotations

import errno
import random
import socket
import struct
import sys
from collections import Counter
from dataclasses import dataclass, replace
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from twisted.internet.interfaces import IReadDescriptor

from sepgw.net.ipv6 import LinkLocalWatch
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

ND_ROUTER_SOLICIT = 133
ND_ROUTER_ADVERT = 134
OPT_SOURCE_LLADDR = 1
OPT_PREFIX_INFORMATION = 3
PIO_ON_LINK = 0x80
PIO_AUTONOMOUS = 0x40
RA_MANAGED = 0x80
RA_OTHER = 0x40

ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"
ICMP6_FILTER = 1           # linux/icmpv6.h: ICMPV6_FILTER, level IPPROTO_ICMPV6
SIOCGIFHWADDR = 0x8927
HOP_LIMIT = 255            # RFC 4861: every ND message is sent, and must arrive, with 255

_RA_HEADER = struct.Struct("!BBHBBHII")      # type code checksum hop flags lifetime reach retr
_PIO = struct.Struct("!BBBBIII16s")          # type len prefixlen flags valid preferred rsvd prefix
_RS_HEADER = struct.Struct("!BBHI")          # type code checksum reserved


class InvalidPacket(ValueError):
    """A received Neighbor Discovery message that RFC 4861 says to discard."""


def mac_bytes(mac: str | bytes) -> bytes:
    """``"02:00:00:00:00:01"`` (or 6 bytes) as 6 bytes."""
    if isinstance(mac, bytes):
        raw = mac
    else:
        try:
            raw = bytes(int(part, 16) for part in mac.split(":"))
        except ValueError:
            raise ValueError(f"bad MAC address {mac!r}") from None
    if len(raw) != 6:
        raise ValueError(f"bad MAC address {mac!r}")
    return raw


@dataclass(frozen=True)
class RAContent:
    """What a Router Advertisement says (times in seconds unless named otherwise)."""

    prefix: IPv6Network
    source_mac: bytes | None = None
    cur_hop_limit: int = 64
    managed: bool = False
    other: bool = False
    router_lifetime: int = 0
    reachable_time_ms: int = 0
    retrans_timer_ms: int = 0
    valid_lifetime: int = 1800
    preferred_lifetime: int = 900
    on_link: bool = True
    autonomous: bool = True

    def __post_init__(self) -> None:
        if self.source_mac is not None:
            object.__setattr__(self, "source_mac", mac_bytes(self.source_mac))
        if not 0 <= self.cur_hop_limit <= 255:
            raise ValueError("cur_hop_limit must be 0..255")
        if not 0 <= self.router_lifetime <= 9000:
            raise ValueError("router_lifetime must be 0..9000 s (RFC 4861 §6.2.1)")
        if self.preferred_lifetime > self.valid_lifetime:
            raise ValueError("preferred_lifetime must not exceed valid_lifetime")
        for name in ("reachable_time_ms", "retrans_timer_ms", "valid_lifetime",
                     "preferred_lifetime"):
            if not 0 <= getattr(self, name) <= 0xFFFFFFFF:
                raise ValueError(f"{name} must fit in 32 bits")


def build_router_advertisement(content: RAContent) -> bytes:
    """The ICMPv6 Router Advertisement (checksum 0: the kernel fills it in)."""
    flags = (RA_MANAGED if content.managed else 0) | (RA_OTHER if content.other else 0)
    packet = _RA_HEADER.pack(ND_ROUTER_ADVERT, 0, 0, content.cur_hop_limit, flags,
                             content.router_lifetime, content.reachable_time_ms,
                             content.retrans_timer_ms)
    pio_flags = (PIO_ON_LINK if content.on_link else 0) | \
        (PIO_AUTONOMOUS if content.autonomous else 0)
    packet += _PIO.pack(OPT_PREFIX_INFORMATION, 4, content.prefix.prefixlen, pio_flags,
                        content.valid_lifetime, content.preferred_lifetime, 0,
                        content.prefix.network_address.packed)
    if content.source_mac is not None:
        packet += bytes([OPT_SOURCE_LLADDR, 1]) + content.source_mac
    return packet


def _options(data: bytes) -> list[tuple[int, bytes]]:
    """ND options (type, whole option bytes); malformed ones raise InvalidPacket."""
    options = []
    while data:
        if len(data) < 2 or data[1] == 0:
            raise InvalidPacket("option with length 0")
        size = data[1] * 8
        if size > len(data):
            raise InvalidPacket("option longer than the message")
        options.append((data[0], data[:size]))
        data = data[size:]
    return options


def parse_router_advertisement(data: bytes) -> RAContent:
    """The content of a Router Advertisement (the first Prefix Information option)."""
    if len(data) < _RA_HEADER.size:
        raise InvalidPacket("Router Advertisement shorter than 16 bytes")
    kind, code, _, hops, flags, lifetime, reachable, retrans = _RA_HEADER.unpack_from(data)
    if kind != ND_ROUTER_ADVERT or code != 0:
        raise InvalidPacket(f"not a Router Advertisement (type {kind}, code {code})")
    prefix = None
    fields: dict[str, Any] = {}
    for option_type, option in _options(data[_RA_HEADER.size:]):
        if option_type == OPT_PREFIX_INFORMATION and prefix is None:
            if len(option) != _PIO.size:
                raise InvalidPacket("Prefix Information option is not 32 bytes")
            _, _, length, pio_flags, valid, preferred, _, raw = _PIO.unpack(option)
            prefix = IPv6Network((raw, length), strict=False)
            fields.update(valid_lifetime=valid, preferred_lifetime=preferred,
                          on_link=bool(pio_flags & PIO_ON_LINK),
                          autonomous=bool(pio_flags & PIO_AUTONOMOUS))
        elif option_type == OPT_SOURCE_LLADDR and len(option) == 8:
            fields["source_mac"] = option[2:8]
    if prefix is None:
        raise InvalidPacket("no Prefix Information option")
    return RAContent(prefix=prefix, cur_hop_limit=hops, managed=bool(flags & RA_MANAGED),
                     other=bool(flags & RA_OTHER), router_lifetime=lifetime,
                     reachable_time_ms=reachable, retrans_timer_ms=retrans, **fields)


def build_router_solicitation(source_mac: str | bytes | None = None) -> bytes:
    """An ICMPv6 Router Solicitation (checksum 0), with a Source Link-Layer Address option
    if ``source_mac`` is given."""
    packet = _RS_HEADER.pack(ND_ROUTER_SOLICIT, 0, 0, 0)
    if source_mac is not None:
        packet += bytes([OPT_SOURCE_LLADDR, 1]) + mac_bytes(source_mac)
    return packet


@dataclass(frozen=True)
class RouterSolicitation:
    """A valid Router Solicitation: who sent it, and its MAC if it said."""

    source: IPv6Address
    source_mac: bytes | None


def parse_router_solicitation(data: bytes, source: str | IPv6Address,
                              hop_limit: int | None) -> RouterSolicitation:
    """Validate a received RS (RFC 4861 §6.1.1) and return it; raises InvalidPacket.

    ``hop_limit`` is the IPv6 hop limit it arrived with (None if unknown: not checked).
    The ICMPv6 checksum is verified by the kernel before the socket sees the message.
    """
    if hop_limit is not None and hop_limit != HOP_LIMIT:
        raise InvalidPacket(f"hop limit {hop_limit}, not 255: not from the link")
    if len(data) < _RS_HEADER.size:
        raise InvalidPacket("Router Solicitation shorter than 8 bytes")
    kind, code, _, _ = _RS_HEADER.unpack_from(data)
    if kind != ND_ROUTER_SOLICIT or code != 0:
        raise InvalidPacket(f"not a Router Solicitation (type {kind}, code {code})")
    address = IPv6Address(str(source).split("%", 1)[0])
    mac = None
    for option_type, option in _options(data[_RS_HEADER.size:]):
        if option_type == OPT_SOURCE_LLADDR:
            if address.is_unspecified:
                raise InvalidPacket("source link-layer address from the unspecified address")
            if len(option) == 8:
                mac = option[2:8]
    return RouterSolicitation(address, mac)


def icmp6_filter(*passed: int) -> bytes:
    """A Linux ICMP6_FILTER value letting only ICMPv6 types ``passed`` through (a set bit
    blocks a type; 8 host-order 32-bit words)."""
    words = [0xFFFFFFFF] * 8
    for kind in passed:
        words[kind >> 5] &= ~(1 << (kind & 31)) & 0xFFFFFFFF
    return struct.pack("=8I", *words)


def open_ra_socket(interface: str) -> socket.socket:
    """The non-blocking raw ICMPv6 socket of an advertiser on ``interface`` (see the module
    documentation). Needs CAP_NET_RAW; raises OSError if the interface does not exist."""
    index = socket.if_nametoindex(interface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, icmp6_filter(ND_ROUTER_SOLICIT))
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                        socket.inet_pton(socket.AF_INET6, ALL_ROUTERS) + struct.pack("@I", index))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def pktinfo(source: IPv6Address, index: int) -> bytes:
    """A ``struct in6_pktinfo`` (source address, interface index) for IPV6_PKTINFO."""
    return source.packed + struct.pack("@i", index)


def interface_mac(sock: socket.socket, interface: str) -> bytes:
    """The hardware address of ``interface`` (SIOCGIFHWADDR on any socket)."""
    import fcntl

    request = struct.pack("16sH14s", interface.encode(), 0, b"")
    answer = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, request)
    return bytes(answer[18:24])


@dataclass(frozen=True)
class RATiming:
    """When RAs are sent (seconds). ``min_interval`` defaults to 0.33 × ``max_interval``."""

    max_interval: float = 30.0
    min_interval: float | None = None
    initial_interval: float = 2.0
    initial_count: int = 3
    min_delay_between_ras: float = 3.0
    max_response_delay: float = 0.5

    def __post_init__(self) -> None:
        if self.min_interval is None:
            object.__setattr__(self, "min_interval", 0.33 * self.max_interval)
        assert self.min_interval is not None
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        if self.initial_interval <= 0 or self.initial_count < 1:
            raise ValueError("need initial_interval > 0 and initial_count >= 1")
        if self.min_delay_between_ras < 0 or self.max_response_delay < 0:
            raise ValueError("delays must not be negative")


@implementer(IReadDescriptor)
class RouterAdvertiser:
    """Sends a port's Router Advertisements from the reactor and answers solicitations.

    RAs are sent only from the interface's valid link-local address (see the module
    documentation): with ``watch=True`` (default) the advertiser follows it itself with a
    :class:`~sepgw.net.ipv6.LinkLocalWatch`; with ``watch=False`` the owner reports it by
    calling :meth:`link_local_changed`. ``sock`` (default: :func:`open_ra_socket` at
    start), ``index`` (default: the interface's) and ``rng`` are for tests. The MAC for
    the Source Link-Layer Address option is read from the interface at start unless
    ``content.source_mac`` is given. ``stats`` counts ``ra_sent``, ``ra_send_errors``,
    ``ra_deferred`` (RAs due while there was no valid link-local address),
    ``rs_received`` and ``rs_ignored`` (invalid solicitations).
    """

    log = Logger()

    def __init__(self, reactor: Any, interface: str, content: RAContent,
                 timing: RATiming = RATiming(), sock: Any = None,
                 rng: random.Random | None = None, *, watch: bool = True,
                 index: int | None = None) -> None:
        self.reactor = reactor
        self.interface = interface
        self.content = content
        self.timing = timing
        self.stats: Counter[str] = Counter()
        self.source: IPv6Address | None = None
        """The valid link-local address RAs leave from; None: RAs wait."""
        self.index = index
        self._watch = LinkLocalWatch(reactor, interface, self.link_local_changed) \
            if watch else None
        self._waiting = False
        self._sock = sock
        self._rng = rng or random.SystemRandom()
        self._packet = b""
        self._timer: Any = None
        self._next_at = 0.0
        self._last_sent: float | None = None
        self._advertised = 0
        self._last_error: int | None = None
        self.running = False

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the socket and start advertising: the first RA goes out at once if the
        interface has a valid link-local address, else as soon as it has one."""
        if self.running:
            return
        if self.index is None:
            self.index = socket.if_nametoindex(self.interface)
        if self._sock is None:
            self._sock = open_ra_socket(self.interface)
        if self.content.source_mac is None:
            self.content = replace(self.content, source_mac=interface_mac(self._sock,
                                                                          self.interface))
        self._packet = build_router_advertisement(self.content)
        self.running = True
        self._advertised = 0
        self.reactor.addReader(self)
        self.log.info("{interface}: advertising {prefix} (router lifetime {lifetime} s)",
                      interface=self.interface, prefix=self.content.prefix,
                      lifetime=self.content.router_lifetime)
        if self.source is not None:
            self._schedule(0.0)
        elif self._watch is None:
            self._defer()
        if self._watch is not None:
            self._watch.start()  # its first report starts the RAs, or says to wait

    def link_local_changed(self, address: IPv6Address | None) -> None:
        """The interface's valid link-local address is now ``address`` (None: it has
        none, e.g. still tentative after the carrier came up). When one becomes valid
        after none, the initial RAs start again, the first at once (rate limited)."""
        if address is not None and not IPv6Address(address).is_link_local:
            raise ValueError(f"an RA source must be link-local (RFC 4861 §4.2), "
                             f"not {address}")
        had = self.source
        self.source = None if address is None else IPv6Address(address)
        if self.source is None:
            if self.running:
                self._defer(due=False)
            return
        if had is None:
            self.log.info("{interface}: Router Advertisements from {source}",
                          interface=self.interface, source=self.source)
            if self.running and (self._waiting or self._advertised == 0):
                self._waiting = False
                self._advertised = 0
                self._soon(delay=0.0)

    def stop(self) -> None:
        """Stop advertising and close the socket. If a router lifetime was being
        advertised, a last RA with lifetime 0 withdraws it first (RFC 4861 §6.2.5)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.running:
            if self.content.router_lifetime:
                self.content = replace(self.content, router_lifetime=0)
                self._packet = build_router_advertisement(self.content)
                if self.source is not None:
                    self._send()
            self.reactor.removeReader(self)
            self.running = False
        if self._watch is not None:
            self._watch.stop()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def update(self, **changes: Any) -> None:
        """Change what is advertised (e.g. ``router_lifetime=1800`` once the PEV may route
        through the EVSE, ``router_lifetime=0`` when it may no longer) and advertise the
        change as soon as the rate limit allows."""
        self.content = replace(self.content, **changes)
        self._packet = build_router_advertisement(self.content)
        if self.running:
            self._soon()

    # -- timing -------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._next_at = self.reactor.seconds() + delay
        self._timer = self.reactor.callLater(delay, self._advertise)

    def _soon(self, delay: float | None = None) -> None:
        """An RA within max_response_delay (or after ``delay``), rate limited (RFC 4861
        §6.2.6). Without a valid link-local address it waits for one."""
        if self.source is None:
            self._defer()
            return
        now = self.reactor.seconds()
        if delay is None:
            delay = self._rng.uniform(0, self.timing.max_response_delay)
        at = now + delay
        if self._last_sent is not None:
            at = max(at, self._last_sent + self.timing.min_delay_between_ras)
        if self._timer is not None and self._timer.active() and self._next_at <= at:
            return  # the RA already due sooner answers this one too
        self._schedule(at - now)

    def _defer(self, due: bool = True) -> None:
        """There is no valid link-local source: send nothing (an RA from any other address
        is dropped by hosts, RFC 4861 §6.1.2) until there is one. ``due``: an RA was due
        (counted)."""
        if due:
            self.stats["ra_deferred"] += 1
        if not self._waiting:
            self.log.info("{interface}: no valid link-local address yet (tentative?); "
                          "Router Advertisements wait for it", interface=self.interface)
        self._waiting = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _advertise(self) -> None:
        self._timer = None
        if self.source is None:
            self._defer()
            return
        self._send()
        self._advertised += 1
        timing = self.timing
        assert timing.min_interval is not None
        interval = self._rng.uniform(timing.min_interval, timing.max_interval)
        if self._advertised < timing.initial_count:
            interval = min(interval, timing.initial_interval)
        self._schedule(interval)

    def _send(self) -> None:
        assert self.source is not None and self.index is not None
        try:
            self._sock.sendmsg([self._packet],
                               [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
                                 pktinfo(self.source, self.index))],
                               0, (ALL_NODES, 0, 0, self.index))
        except OSError as e:
            self.stats["ra_send_errors"] += 1
            if e.errno != self._last_error:  # say it once, not every interval
                self.log.warn("{interface}: cannot send a Router Advertisement yet: "
                              "{error}", interface=self.interface, error=e)
            self._last_error = e.errno
            return
        if self._last_error is not None:
            self.log.info("{interface}: Router Advertisements go out again",
                          interface=self.interface)
        self._last_error = None
        self.stats["ra_sent"] += 1
        self._last_sent = self.reactor.seconds()

    # -- receiving ----------------------------------------------------------------------

    def solicited(self, solicitation: RouterSolicitation) -> None:
        """A valid Router Solicitation arrived: answer it (rate limited)."""
        self.stats["rs_received"] += 1
        self.log.debug("{interface}: Router Solicitation from {source}",
                       interface=self.interface, source=solicitation.source)
        self._soon()

    def fileno(self) -> int:
        return -1 if self._sock is None else int(self._sock.fileno())

    def doRead(self) -> None:
        for _ in range(32):  # bounded: other readers get their turn
            if self._sock is None:
                return
            try:
                data, ancillary, _, address = self._sock.recvmsg(
                    2048, socket.CMSG_SPACE(4))
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno not in (errno.EINTR, errno.ENETDOWN):
                    self.log.error("{interface}: reading solicitations failed: {error}",
                                   interface=self.interface, error=e)
                return
            hop_limit = None
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT \
                        and len(value) >= 4:
                    hop_limit = int.from_bytes(value[:4], sys.byteorder)
            try:
                solicitation = parse_router_solicitation(data, address[0], hop_limit)
            except (InvalidPacket, ValueError) as e:
                self.stats["rs_ignored"] += 1
                self.log.debug("{interface}: ignored a Router Solicitation from {source}: "
                               "{reason}", interface=self.interface, source=address[0],
                               reason=e)
                continue
            self.solicited(solicitation)

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:
        return f"RA {self.interface}"
