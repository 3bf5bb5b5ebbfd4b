"""Routing lockout of a port (profile 4.2.4, V2G-4.2.4-1/2): until the port's PEV is
authorized, nothing that arrives on the port's interface is forwarded anywhere, while
everything addressed to the EVSE itself is still delivered.

    lockout = RoutingLockout("eth1")
    lockout.install()     # port start; PEV gone; authorization revoked
    lockout.remove()      # PEV authorized and [config] allows forwarding; service stop

The mechanism is one policy-routing rule per address family (IPv6 and IPv4),
``<priority>: from all iif <interface> prohibit`` (pyroute2 ``rule`` with action
``prohibit``, the same as ``ip -6 rule add iif eth1 prohibit pref 1000``). The kernel
consults rules by priority: rule 0 (the ``local`` table) comes first, so a packet to any of
the EVSE's own addresses (and the multicast groups Neighbor Discovery and mDNS use) is
delivered as before; every other packet from the interface meets the lockout rule before
the ``main`` table (32766) and is refused with ICMPv6 destination unreachable, code 1
"administratively prohibited" (ICMP code 13 for IPv4), which tells the PEV it is policy, not
a fault. Locally generated traffic has no input interface and is untouched.

Why a rule with the ``prohibit`` action rather than "iif <port> lookup <table>" with
``unreachable ::/0`` in that table: the same effect with one kernel object per family
instead of two, no routing table number to pick (and collide with other policy routing),
and installing or removing it is a single atomic change. Why not nftables: it would need
the nftables subsystem and a table of our own for a rule the routing code already
expresses; the FIB rule works on any kernel with policy routing (CONFIG_IPV6_MULTIPLE_TABLES).

A rule only stops *routing*. A port interface enslaved to a bridge (or bond) would be
*bridged* below IP, so :meth:`RoutingLockout.install` refuses one with a master device.

Each call is a few netlink requests on a fresh pyroute2 socket, each answered by the kernel
at once (well under a millisecond, measured: about 0.5 ms for a rule), so the calls are made
on the reactor thread. Rules whose input interface does not exist (yet) are accepted by the
kernel and apply once it appears. Both methods are idempotent ("exists" / "not found" are
success), and a rule left behind by a crashed run is simply adopted.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, Callable, Iterable

from twisted.logger import Logger

#: After the local table (0), before main (32766) and the usual hand-made rules (32000).
DEFAULT_PRIORITY = 1000
FAMILIES = (socket.AF_INET6, socket.AF_INET)
_FAMILY_NAMES: dict[int, str] = {socket.AF_INET6: "IPv6", socket.AF_INET: "IPv4"}
_FR_ACT_PROHIBIT = 8


class LockoutError(RuntimeError):
    """The lockout cannot be guaranteed (e.g. the port interface is bridged)."""


class RoutingLockout:
    """The routing lockout of one port interface.

    ``iproute`` makes the pyroute2 ``IPRoute`` to use for each call (default: one in this
    network namespace; tests pass ``lambda: IPRoute(netns=...)`` or a fake). ``installed``
    is what this object last did; :meth:`rules` asks the kernel.
    """

    log = Logger()

    def __init__(self, interface: str, priority: int = DEFAULT_PRIORITY,
                 families: Iterable[int] = FAMILIES,
                 iproute: Callable[[], Any] | None = None) -> None:
        if not 0 < priority < 32766:
            raise ValueError("priority must be between the local (0) and main (32766) rules")
        if not interface or len(interface) > 15:
            raise ValueError(f"bad interface name {interface!r}")
        self.interface = interface
        self.priority = priority
        self.families = tuple(families)
        self._iproute = iproute
        self.installed = False

    def _open(self) -> Any:
        if self._iproute is None:
            from pyroute2 import IPRoute

            return IPRoute()
        return self._iproute()

    def _rule(self, family: int) -> dict[str, Any]:
        return dict(family=family, iifname=self.interface, priority=self.priority,
                    action="prohibit")

    def install(self) -> None:
        """Lock the port out of routing (V2G-4.2.4-1). Idempotent."""
        from pyroute2.netlink.exceptions import NetlinkError

        ipr = self._open()
        try:
            self._check_not_enslaved(ipr)
            for family in self.families:
                try:
                    ipr.rule("add", **self._rule(family))
                except NetlinkError as e:
                    if e.code != errno.EEXIST:
                        raise
        finally:
            ipr.close()
        if not self.installed:
            self.log.info("{interface}: routing lockout on (rule {priority}: iif "
                          "{interface} prohibit)", interface=self.interface,
                          priority=self.priority)
        self.installed = True

    def remove(self) -> None:
        """Lift the lockout: the port's traffic is routed as the host's tables say.
        Idempotent; removes duplicates too."""
        from pyroute2.netlink.exceptions import NetlinkError

        ipr = self._open()
        try:
            for family in self.families:
                for _ in range(16):  # duplicates from kernels without NLM_F_EXCL checks
                    try:
                        ipr.rule("del", **self._rule(family))
                    except NetlinkError as e:
                        if e.code == errno.ENOENT:
                            break
                        raise
        finally:
            ipr.close()
        if self.installed:
            self.log.info("{interface}: routing lockout off", interface=self.interface)
        self.installed = False

    def rules(self) -> list[tuple[str, int]]:
        """The lockout rules present in the kernel, as (family name, priority). A dump:
        for checks and tests, not for the reactor's hot path."""
        ipr = self._open()
        try:
            found = []
            for family in self.families:
                for rule in ipr.rule("dump", family=family):
                    if rule.get_attr("FRA_IIFNAME") == self.interface \
                            and rule.get("action") == _FR_ACT_PROHIBIT \
                            and rule.get_attr("FRA_PRIORITY") == self.priority:
                        found.append((_FAMILY_NAMES.get(family, str(family)), self.priority))
            return found
        finally:
            ipr.close()

    def _check_not_enslaved(self, ipr: Any) -> None:
        found = ipr.link_lookup(ifname=self.interface)
        if not found:
            return  # the rule applies once the interface appears
        for link in ipr.link("get", index=found[0]):
            master = link.get_attr("IFLA_MASTER")
            if master:
                raise LockoutError(
                    f"{self.interface} is enslaved to interface index {master} (a bridge "
                    "or bond): its traffic would be bridged past the routing lockout "
                    "(profile 4.2.4); give the port its own, unbridged interface")
