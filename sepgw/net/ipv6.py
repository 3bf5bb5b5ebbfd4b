"""IPv6 addressing of the EVSE–PEV link (profile 4.2.3, V2G-4.2.3-1..3).

The gateway owns one unique local /48 (RFC 4193: ``fd`` + a random 40-bit global ID), made
once and kept in ``<state_dir>/ula-prefix`` (or configured). Port *i* gets the /64 with
subnet ID *i + 1*; the EVSE takes ``::1`` in it and advertises the /64 (``sepgw.net.ra``);
the PEV configures its own address from the advertisement (SLAAC).

    ula = load_or_create_ula_prefix(state_dir)          # at start-up
    port = PortAddressing.for_port(ula, index)          # fdXX:XXXX:XXXX:0001::/64, ...::1
    add_address("eth1", port.address)                   # EVSE, at port start (nodad)
    remove_address("eth1", port.address)                # EVSE, at port stop

    enable_slaac("eth0")                                # PEV: accept_ra=2, autoconf=1
    d = wait_for_ula(reactor, "eth0", timeout=30)       # PEV: fires with the SLAAC address

Address changes are single netlink requests answered at once by the kernel (well under a
millisecond); they are made on the calling thread. Waiting for an address reads netlink
events from a non-blocking socket watched by the reactor: nothing blocks.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.error import TimeoutError as _TimeoutError
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

#: The ULA block the profile requires (V2G-4.2.3-2): fc00::/7 with the L bit set.
ULA_SPACE = IPv6Network("fd00::/8")
#: File in the state directory holding the gateway's /48.
ULA_STATE_FILE = "ula-prefix"
#: The EVSE's interface identifier in every port /64.
EVSE_HOST = 1

# Address flags (linux/if_addr.h).
IFA_F_NODAD = 0x02
IFA_F_OPTIMISTIC = 0x04
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40

# Per-interface IPv6 sysctls that make a host configure itself from RAs (V2G-4.2.3-3).
# accept_ra=2: accept RAs even when the host forwards; autoconf=1: SLAAC from prefixes
# with the A flag.
SLAAC_SYSCTLS = (("accept_ra", "2"), ("autoconf", "1"))

IPRouteFactory = Callable[[], Any]


class UlaPrefixError(ValueError):
    """A configured or stored ULA prefix is not a /48 inside fd00::/8."""


class AddressTimeout(_TimeoutError):
    """No SLAAC address appeared in time."""


# --------------------------------------------------------------------------------------------
# The gateway's /48 and the per-port /64s (pure)


def generate_ula_prefix(randbytes: Callable[[int], bytes] = secrets.token_bytes) -> IPv6Network:
    """A new ULA /48: ``fd`` followed by a 40-bit random global ID (RFC 4193 §3.2)."""
    global_id = randbytes(5)
    if len(global_id) != 5:
        raise ValueError("the global ID is 40 bits")
    return IPv6Network((bytes([0xFD]) + global_id + bytes(10), 48))


def parse_ula_prefix(text: str) -> IPv6Network:
    """``fdXX:XXXX:XXXX::/48`` as a network; anything else raises :class:`UlaPrefixError`."""
    try:
        net = IPv6Network(text.strip(), strict=True)
    except ValueError as e:
        raise UlaPrefixError(f"{text.strip()!r} is not an IPv6 prefix: {e}") from None
    if net.prefixlen != 48 or not net.subnet_of(ULA_SPACE):
        raise UlaPrefixError(f"{net} is not a /48 in {ULA_SPACE} (RFC 4193 unique local, "
                             "L bit set)")
    return net


def load_or_create_ula_prefix(state_dir: str | os.PathLike[str], configured: str | None = None,
                              randbytes: Callable[[int], bytes] = secrets.token_bytes
                              ) -> IPv6Network:
    """The gateway's ULA /48: ``configured`` if given, else the one stored in
    ``<state_dir>/ula-prefix``, else a new random one, stored there (atomically) first.

    A stored file that does not hold a valid prefix raises (it is never silently replaced:
    a new prefix would renumber every port). A small file read: call it at start-up.
    """
    if configured:
        return parse_ula_prefix(configured)
    path = Path(state_dir) / ULA_STATE_FILE
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        prefix = generate_ula_prefix(randbytes)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{ULA_STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(f"{prefix}\n", encoding="ascii")
        os.replace(tmp, path)
        return prefix
    except UnicodeDecodeError:
        raise UlaPrefixError(f"{path}: not a text file; remove it to generate a new prefix") \
            from None
    try:
        return parse_ula_prefix(text)
    except UlaPrefixError as e:
        raise UlaPrefixError(f"{path}: {e}; fix or remove the file") from None


def port_prefix(ula: IPv6Network, port_index: int) -> IPv6Network:
    """The /64 of port ``port_index`` (0-based): subnet ID ``port_index + 1`` in the /48."""
    if ula.prefixlen != 48:
        raise ValueError(f"{ula} is not a /48")
    if not 0 <= port_index < 0xFFFF:
        raise ValueError(f"port index {port_index} out of range 0..65534")
    base = int(ula.network_address) | ((port_index + 1) << 64)
    return IPv6Network((base, 64))


def evse_address(prefix: IPv6Network, host: int = EVSE_HOST) -> IPv6Interface:
    """The EVSE's address in a port /64 (``::1`` by default), with the prefix length."""
    if not 0 < host < prefix.num_addresses:
        raise ValueError(f"host {host} outside {prefix}")
    return IPv6Interface((int(prefix.network_address) + host, prefix.prefixlen))


@dataclass(frozen=True)
class PortAddressing:
    """The IPv6 numbering of one port: its /64 and the EVSE's address in it."""

    prefix: IPv6Network
    address: IPv6Interface

    @classmethod
    def for_port(cls, ula: IPv6Network, port_index: int, host: int = EVSE_HOST
                 ) -> "PortAddressing":
        prefix = port_prefix(ula, port_index)
        return cls(prefix, evse_address(prefix, host))


# --------------------------------------------------------------------------------------------
# Addresses on interfaces (EVSE side)


def _open(iproute: IPRouteFactory | None) -> Any:
    if iproute is None:
        from pyroute2 import IPRoute

        return IPRoute()
    return iproute()


def _index(ipr: Any, interface: str) -> int | None:
    found = ipr.link_lookup(ifname=interface)
    return int(found[0]) if found else None


def add_address(interface: str, address: IPv6Interface,
                iproute: IPRouteFactory | None = None) -> bool:
    """Put ``address`` (with its prefix length) on ``interface``, without duplicate address
    detection so that it is usable at once. True if added, False if it was there already.

    ``iproute`` makes the pyroute2 ``IPRoute`` to use (default: one in this namespace; e.g.
    ``lambda: IPRoute(netns="evse")``). Raises ``LookupError`` if there is no such interface.
    """
    from pyroute2.netlink.exceptions import NetlinkError

    ipr = _open(iproute)
    try:
        index = _index(ipr, interface)
        if index is None:
            raise LookupError(f"no network interface {interface!r}")
        try:
            ipr.addr("add", index=index, address=str(address.ip),
                     prefixlen=address.network.prefixlen, family=socket.AF_INET6,
                     flags=IFA_F_NODAD)
        except NetlinkError as e:
            if e.code == errno.EEXIST:
                return False
            raise
        return True
    finally:
        ipr.close()


def remove_address(interface: str, address: IPv6Interface,
                   iproute: IPRouteFactory | None = None) -> bool:
    """Take ``address`` off ``interface``. True if removed, False if it (or the interface)
    was already gone."""
    from pyroute2.netlink.exceptions import NetlinkError

    ipr = _open(iproute)
    try:
        index = _index(ipr, interface)
        if index is None:
            return False
        try:
            ipr.addr("del", index=index, address=str(address.ip),
                     prefixlen=address.network.prefixlen, family=socket.AF_INET6)
        except NetlinkError as e:
            if e.code in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
                return False
            raise
        return True
    finally:
        ipr.close()


# --------------------------------------------------------------------------------------------
# SLAAC (PEV side)


def enable_slaac(interface: str, proc_sys: str | os.PathLike[str] = "/proc/sys") -> None:
    """Make ``interface`` configure an address from Router Advertisements (V2G-4.2.3-3):
    ``net.ipv6.conf.<interface>.accept_ra = 2`` and ``.autoconf = 1``.

    Writes to procfs, which the kernel handles in the write call itself (no disk, no
    waiting), so this is safe on the reactor thread. Needs CAP_NET_ADMIN in the interface's
    network namespace. ``proc_sys`` is for tests.
    """
    if not interface or "/" in interface or interface in (".", ".."):
        raise ValueError(f"bad interface name {interface!r}")
    conf = Path(proc_sys) / "net" / "ipv6" / "conf" / interface
    if not conf.is_dir():
        raise LookupError(f"no IPv6 configuration for interface {interface!r} ({conf})")
    for key, value in SLAAC_SYSCTLS:
        with open(conf / key, "w", encoding="ascii") as f:
            f.write(value)


class NetlinkEvents:
    """A non-blocking rtnetlink socket subscribed to multicast ``groups``, whose messages
    pyroute2 parses. Requests (dumps) sent on it are answered on it too, so one reactor
    reader sees the current state and then every change, in order.

    (pyroute2's own ``IPRoute`` reads ahead into an internal queue, which a reactor watching
    the file descriptor cannot see; this class only uses pyroute2's message classes.)
    """

    def __init__(self, groups: int) -> None:
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl

        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self._socket.setblocking(False)
        self._socket.bind((0, groups))
        self._marshal = MarshalRtnl()
        self._sequence = 0

    def fileno(self) -> int:
        return self._socket.fileno()

    def dump_addresses(self, family: int = socket.AF_INET6) -> int:
        """Ask for every address of ``family``; the answers arrive as RTM_NEWADDR, then
        NLMSG_DONE, with the sequence number returned."""
        from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
        from pyroute2.netlink.rtnl import RTM_GETADDR
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

        self._sequence += 1
        msg = ifaddrmsg()
        msg["family"] = family
        msg["header"]["type"] = RTM_GETADDR
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        msg["header"]["sequence_number"] = self._sequence
        msg.encode()
        self._socket.send(msg.data)
        return self._sequence

    def read(self) -> list[Any]:
        """The messages of one datagram; raises BlockingIOError when there is none."""
        return list(self._marshal.parse(self._socket.recv(65536)))

    def close(self) -> None:
        self._socket.close()


def usable_address(message: Any, index: int, within: IPv6Network) -> IPv6Interface | None:
    """The address an RTM_NEWADDR message announces, if it is on interface ``index``,
    inside ``within`` and usable (duplicate address detection finished and passed)."""
    if message.get("event") != "RTM_NEWADDR" or message.get("index") != index \
            or message.get("family") != socket.AF_INET6:
        return None
    flags = message.get_attr("IFA_FLAGS")
    if flags is None:
        flags = message.get("flags") or 0
    if flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
        return None
    text = message.get_attr("IFA_ADDRESS")
    if not text:
        return None
    address = IPv6Interface(f"{text}/{message.get('prefixlen')}")
    return address if address.ip in within else None


@implementer(IReadDescriptor)
class _AddressWait:
    log = Logger()

    def __init__(self, reactor: Any, interface: str, index: int, within: IPv6Network,
                 events: Any) -> None:
        self.reactor = reactor
        self.interface = interface
        self.index = index
        self.within = within
        self.events = events
        self.timer: Any = None
        self.deferred: defer.Deferred[IPv6Interface] = defer.Deferred(self._cancel)

    def fileno(self) -> int:
        return -1 if self.events is None else int(self.events.fileno())

    def doRead(self) -> None:
        for _ in range(64):  # bounded: let the reactor breathe between bursts
            try:
                messages = self.events.read()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # events overran the socket: ask again
                    self.events.dump_addresses()
                    continue
                self._finish(Failure(e))
                return
            for message in messages:
                found = usable_address(message, self.index, self.within)
                if found is not None:
                    self._finish(found)
                    return

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:
        return f"addresses {self.interface}"

    def timeout(self, seconds: float) -> None:
        self.timer = None
        self._finish(Failure(AddressTimeout(
            f"no usable address in {self.within} on {self.interface} after {seconds:g} s")))

    def _cleanup(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.events is not None:
            self.reactor.removeReader(self)
            self.events.close()
            self.events = None

    def _cancel(self, _: Any) -> None:
        self._cleanup()

    def _finish(self, result: Any) -> None:
        if self.events is None:
            return
        self._cleanup()
        if isinstance(result, Failure):
            self.deferred.errback(result)
        else:
            self.deferred.callback(result)


def wait_for_ula(reactor: Any, interface: str, timeout: float | None = 30.0,
                 within: IPv6Network = ULA_SPACE,
                 events: Callable[[int], Any] | None = None,
                 index: int | None = None) -> "defer.Deferred[IPv6Interface]":
    """Fires with the first usable address in ``within`` (default fd00::/8) on
    ``interface``: already there, or as soon as SLAAC has made it and DAD has passed.

    Reads netlink address events in the reactor (a non-blocking socket, subscribed before
    the current addresses are asked for, so nothing is missed). Fails with
    :class:`AddressTimeout` after ``timeout`` seconds (None: wait for ever), with
    ``OSError`` if the interface does not exist; cancelling stops the wait. ``events`` and
    ``index`` are for tests (a :class:`NetlinkEvents` factory and the interface index).
    """
    from pyroute2.netlink.rtnl import RTMGRP_IPV6_IFADDR

    try:
        if index is None:
            index = socket.if_nametoindex(interface)
        source = (events or NetlinkEvents)(RTMGRP_IPV6_IFADDR)
    except OSError:
        return defer.fail()
    wait = _AddressWait(reactor, interface, index, within, source)
    reactor.addReader(wait)
    if timeout is not None:
        wait.timer = reactor.callLater(timeout, wait.timeout, timeout)
    try:
        source.dump_addresses(socket.AF_INET6)
    except OSError:
        wait._finish(Failure())
    return wait.deferred


# --------------------------------------------------------------------------------------------
# The valid link-local address of an interface (EVSE side: the RA source, an mDNS AAAA)

_NOT_VALID = IFA_F_TENTATIVE | IFA_F_DADFAILED | IFA_F_OPTIMISTIC
_LINK_LOCAL = IPv6Network("fe80::/10")


@implementer(IReadDescriptor)
class LinkLocalWatch:
    """Follows the valid link-local addresses of one interface from netlink events and
    reports the one to use (the first that became valid) whenever it changes.

    "Valid" means duplicate address detection has finished and passed: not tentative,
    optimistic or dadfailed. A link-local address is made, tentative, when the link first
    gets its carrier; until DAD is done (about a second) the interface has none, and
    ``on_change(None)`` is where senders that must use one (Router Advertisements, RFC
    4861 §4.2) wait. ``on_change`` is called in the reactor thread, first once the
    current addresses have been read after :meth:`start` (with None if there is none),
    then on every change. Reads a non-blocking netlink socket watched by the reactor: no
    polling, nothing blocks. ``events`` and ``index`` are for tests.
    """

    log = Logger()

    def __init__(self, reactor: Any, interface: str,
                 on_change: Callable[[IPv6Address | None], Any],
                 events: Callable[[int], Any] | None = None,
                 index: int | None = None) -> None:
        self.reactor = reactor
        self.interface = interface
        self.on_change = on_change
        self.index = index
        self._events_factory = events or NetlinkEvents
        self._events: Any = None
        self._valid: dict[IPv6Address, None] = {}  # insertion order: first valid first
        self._dumping: int | None = None  # the sequence number of the dump being read
        self._reported = False
        self.current: IPv6Address | None = None
        """The link-local address in use, None while there is no valid one."""

    @property
    def running(self) -> bool:
        return self._events is not None

    def start(self) -> None:
        """Subscribe to address events, then ask for the current addresses. Raises
        OSError if the interface does not exist."""
        from pyroute2.netlink.rtnl import RTMGRP_IPV6_IFADDR

        if self._events is not None:
            return
        if self.index is None:
            self.index = socket.if_nametoindex(self.interface)
        self._events = self._events_factory(RTMGRP_IPV6_IFADDR)
        self.reactor.addReader(self)
        self._resync()

    def stop(self) -> None:
        if self._events is None:
            return
        self.reactor.removeReader(self)
        self._events.close()
        self._events = None

    def _resync(self) -> None:
        """Forget what is known and read the current addresses again (at start, and
        when events were lost)."""
        self._valid.clear()
        self._dumping = self._events.dump_addresses(socket.AF_INET6)

    def fileno(self) -> int:
        return -1 if self._events is None else int(self._events.fileno())

    def doRead(self) -> None:
        for _ in range(64):  # bounded: let the reactor breathe between bursts
            if self._events is None:
                return
            try:
                messages = self._events.read()
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # events overran the socket: read again
                    self._resync()
                    continue
                self.log.error("{interface}: reading address events failed: {error}; "
                               "the link-local address is no longer followed",
                               interface=self.interface, error=e)
                self.stop()
                if not self._reported:  # whoever waits for the first report gets one
                    self._reported = True
                    self.on_change(None)
                return
            for message in messages:
                self._handle(message)
        self._report()

    def _handle(self, message: Any) -> None:
        event = message.get("event")
        if event == "NLMSG_DONE":
            if message["header"]["sequence_number"] == self._dumping:
                self._dumping = None
            return
        if event not in ("RTM_NEWADDR", "RTM_DELADDR") or message.get("index") != self.index \
                or message.get("family") != socket.AF_INET6:
            return
        text = message.get_attr("IFA_ADDRESS")
        if not text:
            return
        address = IPv6Address(text)
        if address not in _LINK_LOCAL:
            return
        flags = message.get_attr("IFA_FLAGS")
        if flags is None:
            flags = message.get("flags") or 0
        if event == "RTM_DELADDR" or flags & _NOT_VALID:
            self._valid.pop(address, None)
        else:
            self._valid.setdefault(address, None)

    def _report(self) -> None:
        if self._dumping is not None or self._events is None:
            return  # a partial picture: wait for the whole dump
        chosen = next(iter(self._valid), None)
        if self._reported and chosen == self.current:
            return
        self._reported = True
        self.current = chosen
        self.on_change(chosen)

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:
        return f"link-local {self.interface}"


__all__ = [
    "ULA_SPACE", "ULA_STATE_FILE", "EVSE_HOST", "SLAAC_SYSCTLS", "UlaPrefixError",
    "AddressTimeout", "generate_ula_prefix", "parse_ula_prefix", "load_or_create_ula_prefix",
    "port_prefix", "evse_address", "PortAddressing", "add_address", "remove_address",
    "enable_slaac", "NetlinkEvents", "usable_address", "wait_for_ula", "LinkLocalWatch",
]
