"""mDNS / DNS-SD service discovery for the V2G-AC profile (4.3, 4.3.1, 5.1).

The EVSE announces its IEEE 2030.5 server on each port's interface as
``device-<SFDI, 12 digits>._smartenergy._tcp.local.`` (normative 4.3, V2G-4.3-6; the
informative Table 8 shows ``evse-``, and 4.3 wins) with an SRV record (the HTTPS port),
AAAA records (the port's ULA and link-local addresses), the TXT record of Table 8
(``txtvers=1``, ``dcap=<path>``, ``https=<port>``, ``level=-S1``) and the subtypes of 4.3.1
(``_edev._sub``, ``_sdev._sub``, ``_mup._sub``): :class:`EVSEAnnouncer`. The PEV browses
``_smartenergy._tcp.local.`` (or a subtype) on its interface, whatever the instance is
called (it never looks at the instance prefix), and resolves the first instance into an
:class:`EVSEService` whose :attr:`EVSEService.url` is the DeviceCapability URL:
:func:`discover_evse`.

Both use python-zeroconf restricted to one interface and IPv6 only (mDNS on ``ff02::fb``
port 5353, V2G-4.2.3-5). zeroconf runs its own thread with an asyncio loop; the blocking
parts (opening the sockets, closing and joining the thread) run in the reactor's thread
pool, the rest is scheduled on zeroconf's loop with ``run_coroutine_threadsafe`` and the
outcome comes back to the reactor thread with ``reactor.callFromThread``. Nothing here
blocks the reactor, and nothing imports the global reactor.

Link-local addresses: an ``fe80::/10`` address means nothing without its interface, so
:attr:`EVSEService.host` carries the scope as ``fe80::1%eth0`` and :attr:`EVSEService.url`
puts it in the brackets as is (``https://[fe80::1%eth0]:443/dcap``), which is what Twisted's
``Agent`` needs (it hands the bracketed host to ``getaddrinfo`` undecoded).
:attr:`EVSEService.rfc6874_url` is the RFC 6874 spelling (``%25eth0``) for other clients and
for display. The ULA (``fd00::/8``, V2G-4.2.3-2) is preferred whenever the EVSE announced
one, so the scope only matters before the ULA exists.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine, Iterable, Mapping, Sequence, TypeVar

from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

SERVICE_TYPE = "_smartenergy._tcp.local."
"""The IEEE 2030.5 DNS-SD service type (profile 4.3, Table 7)."""

SUBTYPES = ("edev", "sdev", "mup")
"""Subtypes an EVSE may announce (profile 4.3.1): EndDevice, SelfDevice,
MirrorUsagePointList."""

INSTANCE_PREFIX = "device"
"""The <Instance> label is ``device-`` and the SFDI in 12 digits (normative 4.3,
V2G-4.3-6; the informative Table 8 example's ``evse-`` is not the normative format)."""

LEVEL = "-S1"
"""The TXT ``level`` key of Table 8: the 2030.5 security level the server requires."""

T = TypeVar("T")

_log = Logger(namespace="sepgw.net.mdns")


class DiscoveryTimeout(Exception):
    """No EVSE service was found and resolved in time."""


# -- pure helpers --------------------------------------------------------------------------

def instance_label(sfdi: int, prefix: str = INSTANCE_PREFIX) -> str:
    """The <Instance> label: ``device-`` and the SFDI zero-padded to 12 digits.

    >>> instance_label(1111114)
    'device-000001111114'
    """
    if isinstance(sfdi, bool) or not isinstance(sfdi, int) or not 0 <= sfdi < 10 ** 12:
        raise ValueError(f"an SFDI is a whole number of at most 12 digits, not {sfdi!r}")
    return f"{prefix}-{sfdi:012d}"


def instance_name(sfdi: int, prefix: str = INSTANCE_PREFIX) -> str:
    """The full service instance name (V2G-4.3-6), e.g.
    ``device-301115568938._smartenergy._tcp.local.``."""
    return f"{instance_label(sfdi, prefix)}.{SERVICE_TYPE}"


def subtype_name(subtype: str) -> str:
    """``edev`` -> ``_edev._sub._smartenergy._tcp.local.`` (profile 4.3.1)."""
    sub = subtype.lstrip("_")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,14}", sub):
        raise ValueError(f"not a DNS-SD subtype name: {subtype!r}")
    return f"_{sub}._sub.{SERVICE_TYPE}"


def build_txt(dcap_path: str, https_port: int, level: str = LEVEL) -> dict[str, str]:
    """The TXT record of Table 8, in its order: txtvers, dcap, https, level."""
    if not dcap_path.startswith("/"):
        raise ValueError(f"the DeviceCapability path must be absolute, not {dcap_path!r}")
    _check_port(https_port)
    return {"txtvers": "1", "dcap": dcap_path, "https": str(https_port), "level": level}


def parse_txt(properties: Mapping[Any, Any]) -> dict[str, str | None]:
    """TXT key/value pairs as text with lower-case keys (RFC 6763 6.4: keys are
    case-insensitive). A key without ``=`` maps to None."""
    out: dict[str, str | None] = {}
    for key, value in properties.items():
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            v: str | None = value.decode("utf-8", "replace")
        else:
            v = None if value is None else str(value)
        out.setdefault(k.lower(), v)
    return out


def _check_port(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port!r}")


def _ipv6(address: str) -> ipaddress.IPv6Address:
    """The address without any ``%scope``; ValueError unless IPv6."""
    plain = address.split("%", 1)[0]
    addr = ipaddress.ip_address(plain)
    if not isinstance(addr, ipaddress.IPv6Address):
        raise ValueError(f"not an IPv6 address: {address!r} (the profile is IPv6 only)")
    return addr


_ULA = ipaddress.IPv6Network("fd00::/8")


def address_rank(address: str) -> int:
    """Preference of an announced address, lower is better: 0 for a ULA in ``fd00::/8``
    (V2G-4.2.3-2), 1 for other routable IPv6, 2 for link-local, 3 for anything unusable
    (loopback, multicast, unspecified, IPv4)."""
    try:
        addr = _ipv6(address)
    except ValueError:
        return 3
    if addr in _ULA:
        return 0
    if addr.is_link_local:
        return 2
    if addr.is_loopback or addr.is_multicast or addr.is_unspecified:
        return 3
    return 1


def choose_address(addresses: Iterable[str]) -> str:
    """The best address (see :func:`address_rank`), without any scope; the announced order
    breaks ties. ValueError when none is usable."""
    candidates = [(address_rank(a), i, str(_ipv6(a))) for i, a in enumerate(addresses)
                  if address_rank(a) < 3]
    if not candidates:
        raise ValueError("no usable IPv6 address was announced")
    return min(candidates)[2]


def scoped_host(address: str, interface: str) -> str:
    """The address as a connectable host: link-local ones get ``%<interface>`` (any
    numeric scope is replaced by the interface name), others are returned plain."""
    addr = _ipv6(address)
    return f"{addr}%{interface}" if addr.is_link_local else str(addr)


def build_url(host: str, port: int, path: str, *, rfc6874: bool = False) -> str:
    """``https://[host]:port/path``. A zone (``fe80::1%eth0``) is kept as ``%eth0``, the
    form Twisted's Agent connects to, or written ``%25eth0`` with ``rfc6874=True``."""
    _check_port(port)
    if not path.startswith("/"):
        path = "/" + path
    if rfc6874:
        host = host.replace("%", "%25", 1)
    return f"https://[{host}]:{port}{path}"


@dataclass(frozen=True)
class EVSEService:
    """An EVSE server found by mDNS: where its DeviceCapability resource is."""

    name: str
    """The full instance name, e.g. ``device-301115568938._smartenergy._tcp.local.``
    (any instance name is accepted: only the service type and the TXT record matter)."""
    address: str
    """The chosen address without scope (ULA preferred over link-local)."""
    interface: str
    """The interface it was found on (the scope of a link-local address)."""
    port: int
    """The HTTPS port: TXT ``https=``, else the SRV port."""
    dcap_path: str
    """The DeviceCapability path: TXT ``dcap=``."""
    addresses: tuple[str, ...] = ()
    """Every IPv6 address announced, in preference order, without scope."""
    txt: Mapping[str, str | None] = field(default_factory=dict)
    """The whole TXT record (lower-case keys)."""

    @property
    def host(self) -> str:
        """The address with ``%<interface>`` when link-local."""
        return scoped_host(self.address, self.interface)

    @property
    def url(self) -> str:
        """``https://[addr]:port/dcap`` for Twisted's Agent (link-local: ``%iface``)."""
        return build_url(self.host, self.port, self.dcap_path)

    @property
    def rfc6874_url(self) -> str:
        """The same URL with the zone written ``%25iface`` (RFC 6874)."""
        return build_url(self.host, self.port, self.dcap_path, rfc6874=True)


def service_from_records(name: str, interface: str, addresses: Sequence[str],
                         srv_port: int | None, properties: Mapping[Any, Any]) -> EVSEService:
    """Build an :class:`EVSEService` from what a resolution returned.

    The port is TXT ``https=`` (2030.5 names the HTTPS port there), else the SRV port;
    ``dcap=`` is required: without it there is nothing to GET (ValueError).
    """
    txt = parse_txt(properties)
    port: int | None = None
    https = txt.get("https")
    if https:
        try:
            port = int(https)
            _check_port(port)
        except ValueError:
            port = None
    if port is None:
        if srv_port is None:
            raise ValueError(f"{name}: no usable port (TXT https={https!r}, no SRV port)")
        port = srv_port
    dcap = txt.get("dcap")
    if not dcap:
        raise ValueError(f"{name}: TXT record has no dcap= path")
    if not dcap.startswith("/"):
        dcap = "/" + dcap
    usable = [a for a in addresses if address_rank(a) < 3]
    ordered = sorted(range(len(usable)), key=lambda i: (address_rank(usable[i]), i))
    plain = tuple(dict.fromkeys(str(_ipv6(usable[i])) for i in ordered))
    return EVSEService(name=name, address=choose_address(addresses), interface=interface,
                       port=port, dcap_path=dcap, addresses=plain, txt=txt)


# -- the bridge between the reactor and zeroconf's loop -----------------------------------

def _on_loop(reactor: Any, loop: asyncio.AbstractEventLoop,
             coro: Coroutine[Any, Any, T]) -> "Deferred[T]":
    """Run ``coro`` on zeroconf's loop; its outcome fires the Deferred in the reactor
    thread. Cancelling the Deferred cancels the coroutine."""
    future = asyncio.run_coroutine_threadsafe(coro, loop)

    def cancel(_: Any) -> None:
        future.cancel()

    d: Deferred[T] = Deferred(cancel)

    def fire(f: Any) -> None:
        if d.called:  # cancelled already
            return
        if f.cancelled():
            d.errback(Failure(CancelledError()))
            return
        exc = f.exception()
        if exc is not None:
            d.errback(Failure(exc, type(exc), exc.__traceback__))
        else:
            d.callback(f.result())

    future.add_done_callback(lambda f: reactor.callFromThread(fire, f))
    return d


def _when_done(d: "Deferred[Any]") -> "Deferred[None]":
    """A Deferred that fires with None when ``d`` fires; ``d``'s result is left to its
    own callbacks."""
    done: Deferred[None] = Deferred()

    def passthrough(outcome: Any) -> Any:
        done.callback(None)
        return outcome

    d.addBoth(passthrough)
    return done


def _in_thread(reactor: Any, f: Callable[..., T], *args: Any, **kwargs: Any) -> "Deferred[T]":
    return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args, **kwargs)


def _open_zeroconf(interface: str) -> Any:
    """A Zeroconf on ``interface`` only, IPv6 only. Blocking: run it in a thread.

    zeroconf binds its sender to one of the interface's IPv6 addresses, so the interface
    must be up with a non-tentative one (the link-local is enough)."""
    from zeroconf import IPVersion, Zeroconf

    index = socket.if_nametoindex(interface)
    zc = Zeroconf(interfaces=[index], ip_version=IPVersion.V6Only)
    _bind_listener(zc, interface)
    return zc


def _bind_listener(zc: Any, interface: str) -> bool:
    """Tie zeroconf's receiving socket to ``interface`` (SO_BINDTODEVICE).

    zeroconf receives on one socket bound to ``[::]:5353``, and Linux hands such a socket
    every ff02::fb packet that arrives on any interface where some socket of the host
    joined the group. An EVSE with several ports runs one announcer per port with the
    same instance name (the EVSE's SFDI), so without this each port would see the other
    ports' announcements as a name conflict while probing, and answer queries from other
    links. The socket is private to zeroconf (``engine._listen_transport.sock``); when it cannot
    be reached or bound, a warning is logged and the instance keeps listening on all
    interfaces.
    """
    engine = getattr(zc, "engine", None)
    sock = getattr(getattr(engine, "_listen_transport", None), "sock", None) or \
        getattr(engine, "_listen_socket", None)
    option = getattr(socket, "SO_BINDTODEVICE", None)
    if sock is None or option is None:
        _log.warn("mDNS: cannot restrict zeroconf's listening socket to {interface} (no "
                  "socket or no SO_BINDTODEVICE); it hears every interface",
                  interface=interface)
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, interface.encode())
    except OSError as e:
        _log.warn("mDNS: cannot bind zeroconf's listening socket to {interface}: {why}; "
                  "it hears every interface", interface=interface, why=str(e))
        return False
    return True


def _close_zeroconf(zc: Any) -> None:
    """Close (goodbyes for anything still registered, then join zeroconf's thread)."""
    zc.close()


# -- EVSE ----------------------------------------------------------------------------------

class EVSEAnnouncer:
    """Announces one port's IEEE 2030.5 server by mDNS on that port's interface.

    :param reactor: the reactor (for its thread pool and ``callFromThread``).
    :param interface: the port's network interface, e.g. ``eth1``.
    :param addresses: the IPv6 addresses to announce (the port's ULA and link-local);
        change them later with :meth:`update_addresses`.
    :param sfdi: the EVSE's SFDI (from its certificate): the instance name.
    :param port: the HTTPS port of the 2030.5 server (SRV port and TXT ``https=``).
    :param dcap_path: the DeviceCapability path (TXT ``dcap=``).
    :param subtypes: 4.3.1 subtypes to announce (``()`` for none).
    """

    log = Logger()

    def __init__(self, reactor: Any, *, interface: str, addresses: Sequence[str], sfdi: int,
                 port: int, dcap_path: str = "/dcap",
                 subtypes: Sequence[str] = SUBTYPES, level: str = LEVEL) -> None:
        self._reactor = reactor
        self.interface = interface
        self.name = instance_name(sfdi)
        self.server = f"{instance_label(sfdi)}.local."
        _check_port(port)
        self.port = port
        self.txt = build_txt(dcap_path, port, level)
        self.subtypes = tuple(subtype_name(s) for s in subtypes)
        self.addresses = self._checked(addresses)
        self._zc: Any = None
        self._main: Any = None
        self._subs: list[Any] = []
        self._announced: tuple[str, ...] = ()
        self._repeat: asyncio.TimerHandle | None = None
        self._starting: Deferred[None] | None = None

    @staticmethod
    def _checked(addresses: Sequence[str]) -> tuple[str, ...]:
        out = tuple(dict.fromkeys(str(_ipv6(a)) for a in addresses))
        if not out:
            raise ValueError("an EVSE announces at least one IPv6 address")
        return out

    @property
    def running(self) -> bool:
        return self._zc is not None

    def service_info(self, type_: str = SERVICE_TYPE) -> Any:
        """The zeroconf ServiceInfo announced for ``type_`` (the service type, or one of
        the subtype names): same instance, SRV, TXT and AAAA records."""
        from zeroconf import ServiceInfo

        return ServiceInfo(type_, self.name, port=self.port, properties=dict(self.txt),
                           server=self.server, parsed_addresses=list(self.addresses))

    def start(self) -> "Deferred[None]":
        """Open zeroconf on the interface, probe, announce; fires once announced."""
        if self._zc is not None or self._starting is not None:
            raise RuntimeError(f"{self.name} is already announced on {self.interface}")
        self._starting = self._start()
        return self._starting

    @inlineCallbacks
    def _start(self) -> Any:
        try:
            zc = yield _in_thread(self._reactor, _open_zeroconf, self.interface)
        except Exception as e:
            self._starting = None
            raise RuntimeError(f"mDNS cannot start on {self.interface}: "
                               f"{type(e).__name__}: {e}") from e
        self._zc = zc
        try:
            yield _on_loop(self._reactor, zc.loop, self._register())
        except BaseException as e:
            self._zc = None
            yield _in_thread(self._reactor, _close_zeroconf, zc)
            if isinstance(e, Exception):
                why = str(e) or ("the name is in use on this link"
                                 if type(e).__name__ == "NonUniqueNameException" else "")
                raise RuntimeError(f"mDNS: {self.name} could not be announced on "
                                   f"{self.interface}: {type(e).__name__}: {why}") from e
            raise
        finally:
            self._starting = None
        self.log.info("mDNS: announced {name} on {interface} at {addresses} port {port}",
                      name=self.name, interface=self.interface,
                      addresses=", ".join(self._announced), port=self.port)
        if self._announced != self.addresses:  # updated while starting
            yield self._send_update()

    # The following coroutines run on zeroconf's loop.

    async def _register(self) -> None:
        zc = self._zc
        self._main = self.service_info()
        self._announced = self.addresses
        # Probe (RFC 6762 8.1) and announce the instance under the service type.
        await (await zc.async_register_service(self._main))
        self._add_subtypes()

    def _add_subtypes(self) -> None:
        """python-zeroconf keeps one service type per instance name, so subtype PTRs
        (``_edev._sub._smartenergy._tcp.local. PTR <instance>``) are served by indexing a
        ServiceInfo per subtype under its subtype name in the registry's type index: a PTR
        query for the subtype is answered with it and the instance's SRV/TXT/AAAA as
        additional records. Announced twice, a second apart (RFC 6762 8.3)."""
        zc = self._zc
        self._subs = [self.service_info(t) for t in self.subtypes]
        for info in self._subs:
            zc.registry.types.setdefault(info.type.lower(), {})[info.key] = info
        self._announce_subtypes(ttl=None)
        if self._repeat is not None:
            self._repeat.cancel()
        loop = asyncio.get_running_loop()
        self._repeat = loop.call_later(1.0, self._announce_subtypes, None)

    def _announce_subtypes(self, ttl: int | None) -> None:
        zc = self._zc
        if zc is None:
            return
        for info in self._subs:
            zc.async_send(zc.generate_service_broadcast(info, ttl, False))

    def _drop_subtypes(self, goodbye: bool) -> None:
        if self._repeat is not None:
            self._repeat.cancel()
            self._repeat = None
        if goodbye:
            self._announce_subtypes(ttl=0)
        types = self._zc.registry.types
        for info in self._subs:
            bucket = types.get(info.type.lower(), {})
            bucket.pop(info.key, None)
            if not bucket:
                types.pop(info.type.lower(), None)
        self._subs = []

    async def _update(self) -> None:
        self._drop_subtypes(goodbye=False)
        self._main = self.service_info()
        self._announced = self.addresses
        await (await self._zc.async_update_service(self._main))
        self._add_subtypes()

    async def _unregister(self) -> None:
        self._drop_subtypes(goodbye=True)
        await (await self._zc.async_unregister_service(self._main))

    # Back on the reactor thread.

    def update_addresses(self, addresses: Sequence[str]) -> "Deferred[None]":
        """Announce a new set of addresses (e.g. when the port's ULA appears)."""
        new = self._checked(addresses)
        if new == self.addresses:
            return succeed(None)
        self.addresses = new
        if self._starting is not None:  # announced by start() once registered
            return _when_done(self._starting)
        if self._zc is None:
            return succeed(None)
        return self._send_update()

    def _send_update(self) -> "Deferred[None]":
        self.log.info("mDNS: {name} now at {addresses}", name=self.name,
                      addresses=", ".join(self.addresses))
        return _on_loop(self._reactor, self._zc.loop, self._update())

    @inlineCallbacks
    def stop(self) -> Any:
        """Say goodbye (TTL 0), close zeroconf and join its thread; fires when done. A
        start still in progress is waited for first."""
        if self._starting is not None:
            yield _when_done(self._starting)
        zc = self._zc
        if zc is None:
            return
        try:
            yield _on_loop(self._reactor, zc.loop, self._unregister())
        except Exception:
            self.log.failure("mDNS: goodbye for {name} failed", name=self.name)
        finally:
            self._zc = None
            yield _in_thread(self._reactor, _close_zeroconf, zc)
        self.log.info("mDNS: {name} withdrawn from {interface}", name=self.name,
                      interface=self.interface)


# -- PEV -----------------------------------------------------------------------------------

async def _browse(zc: Any, interface: str, index: int, service_type: str,
                  request_ms: int) -> EVSEService:
    """Browse ``service_type`` and resolve instances until one resolves with an address on
    this link (runs on zeroconf's loop; cancelled from outside on timeout)."""
    from zeroconf import IPVersion, ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo

    loop = asyncio.get_running_loop()
    found: asyncio.Future[EVSEService] = loop.create_future()
    resolving: dict[str, asyncio.Task[None]] = {}

    def on_link(addr: Any) -> bool:
        # A link-local address heard through another interface of this host is useless.
        # (ipaddress gives the scope as text: the receiving interface's index.)
        scope = getattr(addr, "scope_id", None)
        return not addr.is_link_local or scope in (None, "", "0", str(index), interface)

    async def resolve(name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        while not found.done():
            if await info.async_request(zc, request_ms):
                addresses = [str(a).split("%", 1)[0]
                             for a in info.ip_addresses_by_version(IPVersion.V6Only)
                             if on_link(a)]
                try:
                    service = service_from_records(name, interface, addresses, info.port,
                                                   info.properties)
                except ValueError as e:
                    _log.warn("mDNS: ignoring {name}: {why}", name=name, why=str(e))
                else:
                    if not found.done():
                        found.set_result(service)
                    return
            await asyncio.sleep(0.25)

    def on_change(zeroconf: Any, service_type: str, name: str,
                  state_change: Any) -> None:
        if found.done() or state_change is ServiceStateChange.Removed:
            return
        task = resolving.get(name)
        if task is None or task.done():
            resolving[name] = loop.create_task(resolve(name))

    browser = AsyncServiceBrowser(zc, service_type, handlers=[on_change])
    try:
        return await found
    finally:
        await browser.async_cancel()
        for task in resolving.values():
            task.cancel()
        await asyncio.gather(*resolving.values(), return_exceptions=True)



def discover_evse(reactor: Any, *, interface: str, timeout: float,
                  service_type: str = SERVICE_TYPE) -> "Deferred[EVSEService]":
    """Find the EVSE's 2030.5 server on ``interface`` by mDNS (V2G-4.5.1-2).

    Browses ``_smartenergy._tcp.local.`` over IPv6 on that interface only and resolves
    the first instance that answers with a usable address. Fires with an
    :class:`EVSEService` in the reactor thread; fails with :class:`DiscoveryTimeout` when
    nothing is found within ``timeout`` seconds (which include opening the sockets), and
    with OSError when the interface does not exist. Cancelling the Deferred stops the
    browser. zeroconf is closed and its thread joined before the Deferred fires, except
    after a cancellation, when the closing finishes in the background.
    """
    return _Discovery(reactor, interface, timeout, service_type).result


class _Discovery:
    """One :func:`discover_evse` call: open zeroconf, browse, close, report."""

    def __init__(self, reactor: Any, interface: str, timeout: float,
                 service_type: str) -> None:
        self.reactor = reactor
        self.interface = interface
        self.timeout = timeout
        self.service_type = service_type
        self.result: Deferred[EVSEService] = Deferred(self._cancelled)
        self.browse: Deferred[EVSEService] | None = None
        self.stopping = False
        self.timed_out = False
        self.timer: Any = None
        try:
            self.index = socket.if_nametoindex(interface)
        except OSError as e:
            self.result.errback(Failure(OSError(
                f"mDNS discovery: no interface {interface!r} ({e})")))
            return
        self.timer = reactor.callLater(timeout, self._timeout)
        # The thread that opens the sockets is not interrupted: a Zeroconf opened after a
        # timeout or cancellation is closed at once by _opened.
        _in_thread(reactor, _open_zeroconf, interface).addCallbacks(self._opened,
                                                                    self._finish)

    def _opened(self, zc: Any) -> None:
        if self.stopping:
            self._close(zc, Failure(CancelledError()))
            return
        self.browse = _on_loop(self.reactor, zc.loop,
                               _browse(zc, self.interface, self.index, self.service_type,
                                       1500))
        self.browse.addBoth(lambda outcome: self._close(zc, outcome))

    def _close(self, zc: Any, outcome: Any) -> None:
        self.browse = None

        def closed(_: Any) -> Any:
            return outcome

        def close_failed(f: Failure) -> Any:
            _log.failure("mDNS: closing zeroconf on {interface} failed", f,
                         interface=self.interface)
            return outcome

        d = _in_thread(self.reactor, _close_zeroconf, zc)
        d.addCallbacks(closed, close_failed).addBoth(self._finish)

    def _stop(self) -> None:
        self.stopping = True
        if self.browse is not None:
            self.browse.cancel()

    def _timeout(self) -> None:
        self.timed_out = True
        self._stop()

    def _cancelled(self, _: Any) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self._stop()

    def _finish(self, outcome: Any) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.result.called:
            if isinstance(outcome, Failure) and not outcome.check(CancelledError):
                _log.failure("mDNS: discovery on {interface} failed after cancellation",
                             outcome, interface=self.interface)
            return
        if isinstance(outcome, Failure):
            if self.timed_out and outcome.check(CancelledError):
                outcome = Failure(DiscoveryTimeout(
                    f"no {self.service_type.rstrip('.')} service was found and resolved "
                    f"on {self.interface} within {self.timeout:g} s (is the EVSE "
                    f"announcing on this link?)"))
            self.result.errback(outcome)
        else:
            self.result.callback(outcome)
