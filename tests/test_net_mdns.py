"""mDNS / DNS-SD service discovery (sepgw.net.mdns): profile 4.3, 4.3.1, 5.1 (Tables 7, 8).

The pure parts (names, TXT, address preference, URLs, the thread bridge) are tested in
memory; the announcer and the browser are tested between two network namespaces joined
by a veth pair, each side in its own process (root only).
"""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import CancelledError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI

from sepgw.net import mdns
from sepgw.net.mdns import (
    EVSEAnnouncer,
    EVSEService,
    address_rank,
    build_txt,
    build_url,
    choose_address,
    discover_evse,
    instance_label,
    instance_name,
    parse_txt,
    service_from_records,
    subtype_name,
)
from tests.netns import Netns
from tests.processes import REPO, Process

TABLE8_SFDI = 301115568938
TABLE8_ADDRESSES = ["fd12:3456:789a:1::1", "fe80::1112:1213:1516:1718"]


class NamesTests(SynchronousTestCase):
    """Instance and subtype names."""

    def test_normative_instance_name(self) -> None:
        """V2G-4.3-6: the EVSE's instance name is ``device-<SFDI>._smartenergy._tcp.local``
        as normative 4.3 writes it, not the ``evse-`` of the informative Table 8."""
        self.assertEqual(instance_name(TABLE8_SFDI),
                         "device-301115568938._smartenergy._tcp.local.")

    def test_zero_padding(self) -> None:
        """V2G-4.3-6: the SFDI is written in 12 digits with leading zeros (4.3's example
        ``device-000001111114``)."""
        self.assertEqual(instance_label(1111114), "device-000001111114")
        self.assertEqual(instance_name(1111114), "device-000001111114._smartenergy._tcp.local.")
        self.assertEqual(instance_label(1111114, prefix="evse"), "evse-000001111114")
        self.assertEqual(instance_label(0), "device-000000000000")

    def test_bad_sfdi(self) -> None:
        """An SFDI that is not a whole number of at most 12 digits is refused."""
        for bad in (-1, 10 ** 12, True, "301115568938", 3.0):
            with self.assertRaises(ValueError, msg=repr(bad)):
                instance_label(bad)  # type: ignore[arg-type]

    def test_subtypes(self) -> None:
        """Profile 4.3.1: the edev, sdev and mup subtypes of ``_smartenergy._tcp``."""
        self.assertEqual([subtype_name(s) for s in mdns.SUBTYPES],
                         ["_edev._sub._smartenergy._tcp.local.",
                          "_sdev._sub._smartenergy._tcp.local.",
                          "_mup._sub._smartenergy._tcp.local."])
        self.assertEqual(subtype_name("_edev"), "_edev._sub._smartenergy._tcp.local.")
        for bad in ("", "Edev", "e dev", "a" * 16):
            with self.assertRaises(ValueError, msg=bad):
                subtype_name(bad)


class TxtTests(SynchronousTestCase):
    """The TXT record of Table 8."""

    def test_table8(self) -> None:
        """Table 8: txtvers=1, dcap=/dcap, https=443, level=-S1, in that order."""
        txt = build_txt("/dcap", 443)
        self.assertEqual(list(txt.items()), [("txtvers", "1"), ("dcap", "/dcap"),
                                             ("https", "443"), ("level", "-S1")])

    def test_bad_values(self) -> None:
        """A relative DeviceCapability path or a port outside 1..65535 is refused."""
        self.assertRaises(ValueError, build_txt, "dcap", 443)
        self.assertRaises(ValueError, build_txt, "/dcap", 0)
        self.assertRaises(ValueError, build_txt, "/dcap", 65536)

    def test_parse(self) -> None:
        """Received TXT pairs become text with lower-case keys (RFC 6763 6.4); the first
        of two keys differing in case wins; a key without a value is None."""
        self.assertEqual(parse_txt({b"TxtVers": b"1", b"dcap": b"/dcap", b"https": b"443",
                                    b"level": b"-S1", b"flag": None, b"DCAP": b"/other"}),
                         {"txtvers": "1", "dcap": "/dcap", "https": "443", "level": "-S1",
                          "flag": None})
        self.assertEqual(parse_txt({"dcap": "/d"}), {"dcap": "/d"})


class AddressTests(SynchronousTestCase):
    """Which announced address the PEV uses, and how it is written in a URL."""

    def test_preference(self) -> None:
        """V2G-4.2.3-2: the ULA (fd00::/8) is preferred to the link-local address, which
        is still used when it is the only one; other routable IPv6 comes between."""
        self.assertEqual(choose_address(TABLE8_ADDRESSES), "fd12:3456:789a:1::1")
        self.assertEqual(choose_address(list(reversed(TABLE8_ADDRESSES))),
                         "fd12:3456:789a:1::1")
        self.assertEqual(choose_address(["fe80::1", "2001:db8::1"]), "2001:db8::1")
        self.assertEqual(choose_address(["fe80::1%eth0"]), "fe80::1")
        self.assertEqual([address_rank(a) for a in
                          ("fd00::1", "2001:db8::1", "fe80::1", "::1", "ff02::fb",
                           "192.0.2.1", "junk")], [0, 1, 2, 3, 3, 3, 3])

    def test_nothing_usable(self) -> None:
        """Only IPv6 is used (V2G-4.2.3-1): IPv4, loopback or nothing at all is an
        error."""
        self.assertRaises(ValueError, choose_address, ["192.0.2.1", "::1"])
        self.assertRaises(ValueError, choose_address, [])

    def test_link_local_url(self) -> None:
        """A link-local address needs its interface: the URL carries ``%iface`` as
        Twisted's Agent wants it (the host it parses goes to getaddrinfo as is), and
        the RFC 6874 form writes it ``%25iface``."""
        service = EVSEService(name="device-301115568938._smartenergy._tcp.local.",
                              address="fe80::1112:1213:1516:1718", interface="eth1",
                              port=443, dcap_path="/dcap")
        self.assertEqual(service.host, "fe80::1112:1213:1516:1718%eth1")
        self.assertEqual(service.url, "https://[fe80::1112:1213:1516:1718%eth1]:443/dcap")
        self.assertEqual(service.rfc6874_url,
                         "https://[fe80::1112:1213:1516:1718%25eth1]:443/dcap")
        uri = URI.fromBytes(service.url.encode("ascii"))
        self.assertEqual((uri.host, uri.port, uri.path),
                         (b"fe80::1112:1213:1516:1718%eth1", 443, b"/dcap"))

    def test_ula_url(self) -> None:
        """A ULA needs no scope: ``https://[fd12:3456:789a:1::1]:443/dcap``."""
        service = EVSEService(name="x", address="fd12:3456:789a:1::1", interface="eth1",
                              port=443, dcap_path="/dcap")
        self.assertEqual(service.url, "https://[fd12:3456:789a:1::1]:443/dcap")
        self.assertEqual(build_url("fd00::1", 8443, "dcap"), "https://[fd00::1]:8443/dcap")


class ResolvedRecordsTests(SynchronousTestCase):
    """Turning a resolved instance into an EVSEService."""

    def test_table8_reply(self) -> None:
        """V2G-4.5.1-2: Table 8's reply gives the DeviceCapability URL
        ``https://[fd12:3456:789a:1::1]:443/dcap``."""
        service = service_from_records(
            instance_name(TABLE8_SFDI), "eth0", list(reversed(TABLE8_ADDRESSES)), 443,
            {b"txtvers": b"1", b"dcap": b"/dcap", b"https": b"443", b"level": b"-S1"})
        self.assertEqual(service.url, "https://[fd12:3456:789a:1::1]:443/dcap")
        self.assertEqual(service.addresses, tuple(TABLE8_ADDRESSES))
        self.assertEqual(service.txt["level"], "-S1")

    def test_port_from_txt_then_srv(self) -> None:
        """The port is TXT ``https=`` when present and valid, else the SRV port."""
        txt = {b"dcap": b"/dcap", b"https": b"8443"}
        self.assertEqual(service_from_records("x", "e", ["fd00::1"], 443, txt).port, 8443)
        txt = {b"dcap": b"/dcap", b"https": b"nonsense"}
        self.assertEqual(service_from_records("x", "e", ["fd00::1"], 443, txt).port, 443)
        self.assertEqual(service_from_records("x", "e", ["fd00::1"], 443,
                                              {b"dcap": b"/d"}).port, 443)

    def test_missing_dcap(self) -> None:
        """Without ``dcap=`` there is nothing to GET: refused."""
        self.assertRaises(ValueError, service_from_records, "x", "e", ["fd00::1"], 443,
                          {b"https": b"443"})


class AnnouncerRecordsTests(SynchronousTestCase):
    """What the announcer registers (built without touching the network)."""

    def announcer(self, **kw: Any) -> EVSEAnnouncer:
        args: dict[str, Any] = dict(interface="eth1", addresses=TABLE8_ADDRESSES,
                                    sfdi=TABLE8_SFDI, port=443, dcap_path="/dcap")
        args.update(kw)
        return EVSEAnnouncer(MemoryReactorClock(), **args)

    def test_service_info(self) -> None:
        """V2G-4.3-2, V2G-4.3-6, Table 8: the instance, the SRV port, the TXT record and
        the AAAA addresses (ULA and link-local)."""
        info = self.announcer().service_info()
        self.assertEqual(info.type, "_smartenergy._tcp.local.")
        self.assertEqual(info.name, "device-301115568938._smartenergy._tcp.local.")
        self.assertEqual(info.server, "device-301115568938.local.")
        self.assertEqual(info.port, 443)
        self.assertEqual(info.properties, {b"txtvers": b"1", b"dcap": b"/dcap",
                                           b"https": b"443", b"level": b"-S1"})
        self.assertEqual(sorted(info.parsed_addresses()), sorted(TABLE8_ADDRESSES))

    def test_subtype_infos(self) -> None:
        """Profile 4.3.1: each subtype points at the same instance."""
        ann = self.announcer()
        self.assertEqual(ann.subtypes, tuple(subtype_name(s) for s in mdns.SUBTYPES))
        for t in ann.subtypes:
            info = ann.service_info(t)
            self.assertEqual((info.type, info.name), (t, ann.name))
        self.assertEqual(self.announcer(subtypes=()).subtypes, ())

    def test_refuses_ipv4_and_nothing(self) -> None:
        """V2G-4.3-2: only IPv6 addresses are announced, and at least one."""
        self.assertRaises(ValueError, self.announcer, addresses=["192.0.2.1"])
        self.assertRaises(ValueError, self.announcer, addresses=[])
        self.assertRaises(ValueError, self.announcer, port=0)

    def test_update_before_start(self) -> None:
        """Addresses changed before start are simply the ones announced at start."""
        ann = self.announcer(addresses=["fe80::1"])
        d = ann.update_addresses(["fe80::1", "fd00::1"])
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(ann.addresses, ("fe80::1", "fd00::1"))
        self.assertFalse(ann.running)
        self.assertIsNone(self.successResultOf(ann.stop()))


class FakeThreadReactor:
    """``callFromThread`` queues the call for the test thread to run."""

    def __init__(self) -> None:
        self.calls: queue.Queue[Any] = queue.Queue()

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.calls.put((f, args))

    def run_one(self, timeout: float = 5.0) -> None:
        f, args = self.calls.get(timeout=timeout)
        f(*args)


class BridgeTests(SynchronousTestCase):
    """The hop from zeroconf's asyncio thread back to the reactor thread."""

    def setUp(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.addCleanup(self.thread.join, 5)
        self.addCleanup(self.loop.call_soon_threadsafe, self.loop.stop)
        self.reactor = FakeThreadReactor()

    def test_result_in_reactor_thread(self) -> None:
        """A coroutine's result fires the Deferred only through callFromThread, in the
        thread that runs the reactor."""
        seen: list[Any] = []

        async def work() -> int:
            seen.append(threading.get_ident())
            return 7

        d = mdns._on_loop(self.reactor, self.loop, work())
        self.assertNoResult(d)
        self.reactor.run_one()
        self.assertEqual(self.successResultOf(d), 7)
        self.assertNotEqual(seen, [threading.get_ident()])

    def test_failure(self) -> None:
        """A coroutine's exception arrives as the Deferred's failure."""
        async def work() -> None:
            raise KeyError("nope")

        d = mdns._on_loop(self.reactor, self.loop, work())
        self.reactor.run_one()
        self.failureResultOf(d, KeyError)

    def test_cancel(self) -> None:
        """Cancelling the Deferred cancels the coroutine on zeroconf's loop (this is how
        a discovery's browser is stopped)."""
        stopped = threading.Event()

        async def work() -> None:
            try:
                await asyncio.sleep(60)
            finally:
                stopped.set()

        d = mdns._on_loop(self.reactor, self.loop, work())
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(stopped.wait(5))
        self.reactor.run_one()  # the late completion is ignored


class DiscoverArgumentsTests(SynchronousTestCase):
    """discover_evse without the network."""

    def test_unknown_interface(self) -> None:
        """An interface that does not exist fails at once, naming it, and schedules
        nothing."""
        reactor = MemoryReactorClock()
        d = discover_evse(reactor, interface="nosuchif0", timeout=5)
        f = self.failureResultOf(d, OSError)
        self.assertIn("nosuchif0", str(f.value))
        self.assertEqual(reactor.getDelayedCalls(), [])


# -- between namespaces ---------------------------------------------------------------------

ANNOUNCE_SCRIPT = """\
import json, signal, sys
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["repo"])
from twisted.internet import reactor
from sepgw.net.mdns import EVSEAnnouncer

def say(*words):
    print(*words, flush=True)

ann = EVSEAnnouncer(reactor, interface=cfg["interface"], addresses=cfg["addresses"],
                    sfdi=cfg["sfdi"], port=cfg["port"], dcap_path=cfg["dcap"])

def update():
    d = ann.update_addresses(cfg["later"])
    d.addCallbacks(lambda _: say("updated"), lambda f: say("error", f.getErrorMessage()))

def started(_):
    signal.signal(signal.SIGUSR1, lambda *a: reactor.callFromThread(update))
    say("announced")

def failed(f):
    say("error", f.getErrorMessage())
    reactor.stop()

reactor.addSystemEventTrigger("before", "shutdown", ann.stop)
def go():
    ann.start().addCallbacks(started, failed)
    if cfg.get("early"):  # an update while the start is still probing
        ann.update_addresses(cfg["later"]).addCallback(lambda _: say("updated"))

reactor.callWhenRunning(go)
reactor.run()
say("stopped")
"""

DISCOVER_SCRIPT = """\
import json, sys
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["repo"])
from twisted.internet import reactor
from sepgw.net.mdns import discover_evse, SERVICE_TYPE

out = {}
def found(s):
    out.update(name=s.name, address=s.address, host=s.host, port=s.port,
               dcap=s.dcap_path, url=s.url, addresses=list(s.addresses), txt=dict(s.txt))
def failed(f):
    out.update(error=f.getErrorMessage(), type=f.type.__name__)
def go():
    d = discover_evse(reactor, interface=cfg["interface"], timeout=cfg["timeout"],
                      service_type=cfg.get("type") or SERVICE_TYPE)
    d.addCallbacks(found, failed).addBoth(lambda _: reactor.stop())
reactor.callWhenRunning(go)
reactor.run()
print("RESULT " + json.dumps(out), flush=True)
"""

CAPTURE_SCRIPT = """\
import json, select, socket, struct, sys, time
from zeroconf import DNSIncoming  # a DNS parser the announcer does not use to build
cfg = json.loads(sys.argv[1])
index = socket.if_nametoindex(cfg["interface"])
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
sock.bind(("::", 5353))
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                socket.inet_pton(socket.AF_INET6, "ff02::fb") + struct.pack("@I", index))
print("listening", flush=True)
packets = []
deadline = time.monotonic() + cfg["seconds"]
while time.monotonic() < deadline:
    if not select.select([sock], [], [], max(0, deadline - time.monotonic()))[0]:
        break
    data, anc, _, source = sock.recvmsg(9000, socket.CMSG_SPACE(20))
    dest = None
    for level, kind, value in anc:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            dest = socket.inet_ntop(socket.AF_INET6, value[:16])
    msg = DNSIncoming(data)
    records = []
    for r in msg.answers():
        rec = {"name": r.name, "type": r.type}
        if r.type == 12:
            rec["alias"] = r.alias
        elif r.type == 33:
            rec.update(port=r.port, server=r.server)
        elif r.type == 16:
            rec["text"] = r.text.hex()
        elif r.type == 28:
            rec["address"] = socket.inet_ntop(socket.AF_INET6, r.address)
        records.append(rec)
    packets.append({"source": source[0].split("%")[0], "sport": source[1], "dest": dest,
                    "response": msg.is_response(), "records": records})
print("PACKETS " + json.dumps(packets), flush=True)
"""

FOREIGN_SCRIPT = """\
import json, signal, socket, sys
from zeroconf import IPVersion, ServiceInfo, Zeroconf
cfg = json.loads(sys.argv[1])
zc = Zeroconf(interfaces=[socket.if_nametoindex(cfg["interface"])],
              ip_version=IPVersion.V6Only)
info = ServiceInfo("_smartenergy._tcp.local.", cfg["name"], port=cfg["srv_port"],
                   properties=cfg["txt"], server=cfg["server"],
                   parsed_addresses=cfg["addresses"])
zc.register_service(info)
print("announced", flush=True)
signal.pause()  # until the test kills it
"""


class NamespaceTests(SynchronousTestCase):
    """An announcing EVSE and a browsing PEV in two namespaces joined by a veth pair."""

    def setUp(self) -> None:
        self.net = Netns(self)  # skips unless root with `ip netns`
        self.evse = self.net.namespace("mdns-evse")
        self.pev = self.net.namespace("mdns-pev")
        self.net.veth("evse0", self.evse, "pev0", self.pev)
        self.net.run(self.evse, "ip", "-6", "addr", "add", "fd12:3456:789a:1::1/64",
                     "dev", "evse0", "nodad")
        self.evse_ll = self.link_local(self.evse, "evse0")
        self.link_local(self.pev, "pev0")
        scripts = Path(self.mktemp()).resolve()
        scripts.mkdir()
        self.announce_py = scripts / "announce.py"
        self.announce_py.write_text(ANNOUNCE_SCRIPT)
        self.discover_py = scripts / "discover.py"
        self.discover_py.write_text(DISCOVER_SCRIPT)
        self.capture_py = scripts / "capture.py"
        self.capture_py.write_text(CAPTURE_SCRIPT)
        self.foreign_py = scripts / "foreign.py"
        self.foreign_py.write_text(FOREIGN_SCRIPT)

    def link_local(self, ns: str, dev: str, timeout: float = 10) -> str:
        """The interface's link-local address once duplicate address detection is done
        (zeroconf binds its sender to an address, which must not be tentative)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.net.run(ns, "ip", "-6", "-o", "addr", "show", "dev", dev,
                               "scope", "link").stdout
            if "inet6" in out and "tentative" not in out:
                return out.split("inet6", 1)[1].split()[0].split("/")[0]
            time.sleep(0.1)
        self.fail(f"no usable link-local address on {dev} in {ns}")

    def announce(self, ns: str, dev: str, addresses: list[str],
                 later: list[str] | None = None, early: bool = False) -> Process:
        cfg = dict(repo=str(REPO), interface=dev, addresses=addresses, sfdi=TABLE8_SFDI,
                   port=8443, dcap="/dcap", later=later or addresses, early=early)
        proc = Process(["ip", "netns", "exec", ns, sys.executable, str(self.announce_py),
                        json.dumps(cfg)])
        self.addCleanup(proc.kill)
        proc.wait_for(r"^(announced|error)", timeout=20)
        self.assertNotIn("error", proc.output)
        return proc

    def discover(self, ns: str = "", dev: str = "pev0", timeout: float = 6,
                 type_: str = "") -> dict[str, Any]:
        cfg = dict(repo=str(REPO), interface=dev, timeout=timeout, type=type_)
        proc = Process(["ip", "netns", "exec", ns or self.pev, sys.executable,
                        str(self.discover_py), json.dumps(cfg)])
        self.addCleanup(proc.kill)
        m = proc.wait_for(r"^RESULT (.*)$", timeout=timeout + 15)
        self.assertEqual(proc.finish(), 0, proc.output)
        return json.loads(m.group(1))

    def test_discovery_across_the_link(self) -> None:
        """V2G-4.3-1, V2G-4.3-2, V2G-4.3-6, V2G-4.2.3-5, V2G-4.5.1-2: the PEV finds the
        EVSE's instance by mDNS over IPv6 on ff02::fb, with the TXT record of Table 8,
        the ULA preferred, and the HTTPS port; the DeviceCapability URL follows."""
        ann = self.announce(self.evse, "evse0", ["fd12:3456:789a:1::1", self.evse_ll])
        groups = self.net.run(self.evse, "ip", "-6", "maddr", "show", "dev", "evse0").stdout
        self.assertIn("ff02::fb", groups)
        found = self.discover()
        self.assertEqual(found.get("name"), "device-301115568938._smartenergy._tcp.local.",
                         found)
        self.assertEqual(found["txt"], {"txtvers": "1", "dcap": "/dcap", "https": "8443",
                                        "level": "-S1"})
        self.assertEqual(found["address"], "fd12:3456:789a:1::1")
        self.assertEqual(found["addresses"], ["fd12:3456:789a:1::1", self.evse_ll])
        self.assertEqual((found["port"], found["dcap"]), (8443, "/dcap"))
        self.assertEqual(found["url"], "https://[fd12:3456:789a:1::1]:8443/dcap")
        self.assertEqual(ann.terminate(), 0)
        self.assertIn("stopped", ann.output)

    def test_golden_announcement_on_the_wire(self) -> None:
        """Golden wire test of 4.3 and Table 8 (V2G-4.3-1, V2G-4.3-2, V2G-4.3-6,
        V2G-4.2.3-5): what the real EVSEAnnouncer multicasts, captured on the PEV's end of
        the link and parsed by a DNS parser it does not build with, compared field by
        field with the profile written out here: to ff02::fb port 5353; PTR from
        ``_smartenergy._tcp.local`` and from the 4.3.1 subtypes edev, sdev, mup to
        ``device-<12-digit SFDI>._smartenergy._tcp.local`` (4.3's format: Table 8's
        ``evse-`` is an informative example); SRV with the HTTPS port; TXT exactly
        ``txtvers=1``, ``dcap=/dcap``, ``https=<port>``, ``level=-S1`` in Table 8's
        order; AAAA with the ULA and the link-local address."""
        # The profile, written out (not taken from sepgw's constants).
        instance_format = r"^device-[0-9]{12}\._smartenergy\._tcp\.local\.$"
        instance = "device-301115568938._smartenergy._tcp.local."
        service_type = "_smartenergy._tcp.local."
        subtypes = ["_edev._sub._smartenergy._tcp.local.",
                    "_sdev._sub._smartenergy._tcp.local.",
                    "_mup._sub._smartenergy._tcp.local."]
        txt = [b"txtvers=1", b"dcap=/dcap", b"https=8443", b"level=-S1"]
        ula = "fd12:3456:789a:1::1"

        capture = Process(["ip", "netns", "exec", self.pev, sys.executable,
                           str(self.capture_py),
                           json.dumps({"interface": "pev0", "seconds": 5})])
        self.addCleanup(capture.kill)
        capture.wait_for(r"^listening", timeout=15)
        self.announce(self.evse, "evse0", [ula, self.evse_ll])
        packets = json.loads(capture.wait_for(r"^PACKETS (.*)$", timeout=20).group(1))
        responses = [p for p in packets if p["response"] and p["records"]]
        self.assertTrue(responses, packets)
        for p in responses:
            self.assertEqual((p["dest"], p["sport"]), ("ff02::fb", 5353), p)
        print("mDNS announcement sources:", sorted({p["source"] for p in responses}))
        records = [r for p in responses for r in p["records"]]

        ptrs = {(r["name"], r["alias"]) for r in records if r["type"] == 12}
        self.assertIn((service_type, instance), ptrs)
        for sub in subtypes:
            self.assertIn((sub, instance), ptrs)
        for name, alias in ptrs:
            if name == service_type or name in subtypes:
                self.assertRegex(alias, instance_format)

        [srv] = {(r["name"], r["port"], r["server"]) for r in records if r["type"] == 33}
        self.assertEqual(srv[:2], (instance, 8443))
        texts = {(r["name"], r["text"]) for r in records if r["type"] == 16}
        self.assertEqual({name for name, _ in texts}, {instance})
        for _, text in texts:
            raw, strings = bytes.fromhex(text), []
            while raw:  # RFC 6763 6.1: length-prefixed strings
                strings.append(raw[1:1 + raw[0]])
                raw = raw[1 + raw[0]:]
            self.assertEqual(strings, txt)
        aaaa = {r["address"] for r in records if r["type"] == 28 and r["name"] == srv[2]}
        self.assertEqual(aaaa, {ula, self.evse_ll})

    def test_pev_ignores_the_instance_prefix(self) -> None:
        """V2G-4.3-6, V2G-4.5.1-2: the PEV finds an EVSE announced under another instance
        name (``foo-123``, by plain zeroconf, not sepgw) by browsing the service type, and
        takes the port and the DeviceCapability path from its TXT record (not the SRV
        port)."""
        ula = "fd12:3456:789a:1::1"
        cfg = {"interface": "evse0", "name": "foo-123._smartenergy._tcp.local.",
               "server": "foo-123.local.", "srv_port": 1234, "addresses": [ula],
               "txt": {"txtvers": "1", "dcap": "/sep2/dcap", "https": "9443",
                       "level": "-S1"}}
        foreign = Process(["ip", "netns", "exec", self.evse, sys.executable,
                           str(self.foreign_py), json.dumps(cfg)])
        self.addCleanup(foreign.kill)
        foreign.wait_for(r"^announced", timeout=20)
        found = self.discover()
        self.assertEqual(found.get("name"), "foo-123._smartenergy._tcp.local.", found)
        self.assertEqual((found["port"], found["dcap"]), (9443, "/sep2/dcap"))
        self.assertEqual(found["url"], f"https://[{ula}]:9443/sep2/dcap")

    def test_subtype_queries(self) -> None:
        """Profile 4.3.1: a browse for ``_edev``, ``_sdev`` or ``_mup._sub._smartenergy
        ._tcp.local`` finds the same instance (V2G-4.3-1)."""
        self.announce(self.evse, "evse0", ["fd12:3456:789a:1::1", self.evse_ll])
        for sub in ("edev", "sdev", "mup"):
            found = self.discover(type_=f"_{sub}._sub._smartenergy._tcp.local.")
            self.assertEqual(found.get("name"),
                             "device-301115568938._smartenergy._tcp.local.", (sub, found))
            self.assertEqual(found["url"], "https://[fd12:3456:789a:1::1]:8443/dcap")

    def test_link_local_then_ula(self) -> None:
        """V2G-4.2.3-2: before the ULA exists the PEV gets the link-local address with
        its interface as scope; once the announcer is updated with the ULA, the ULA."""
        ann = self.announce(self.evse, "evse0", [self.evse_ll],
                            later=["fd12:3456:789a:1::1", self.evse_ll])
        found = self.discover()
        self.assertEqual(found.get("address"), self.evse_ll, found)
        self.assertEqual(found["url"], f"https://[{self.evse_ll}%pev0]:8443/dcap")
        ann.popen.send_signal(signal.SIGUSR1)
        ann.wait_for(r"^updated", timeout=10)
        found = self.discover()
        self.assertEqual(found.get("address"), "fd12:3456:789a:1::1", found)

    def test_update_while_starting(self) -> None:
        """Addresses changed while the announcer is still probing are announced once it
        has registered (no double registration)."""
        ann = self.announce(self.evse, "evse0", [self.evse_ll],
                            later=["fd12:3456:789a:1::1", self.evse_ll], early=True)
        ann.wait_for(r"^updated", timeout=10)
        found = self.discover()
        self.assertEqual(found.get("address"), "fd12:3456:789a:1::1", found)

    def test_timeout(self) -> None:
        """Nothing announced: discovery fails after the timeout with a message that says
        what was looked for and where."""
        started = time.monotonic()
        found = self.discover(timeout=2)
        self.assertEqual(found.get("type"), "DiscoveryTimeout", found)
        self.assertIn("_smartenergy._tcp.local", found["error"])
        self.assertIn("pev0", found["error"])
        self.assertLess(time.monotonic() - started, 15)

    def test_two_ports_same_sfdi(self) -> None:
        """An EVSE with two ports announces the same instance name on both links; each
        port's announcer only hears its own link (no false name conflict) and each PEV
        gets its own port's address."""
        pev2 = self.net.namespace("mdns-pev2")
        self.net.veth("evse1", self.evse, "pev1", pev2)
        ll0 = self.evse_ll
        ll1 = self.link_local(self.evse, "evse1")
        self.link_local(pev2, "pev1")
        self.announce(self.evse, "evse0", [ll0])
        self.announce(self.evse, "evse1", [ll1])
        self.assertEqual(self.discover().get("address"), ll0)
        self.assertEqual(self.discover(ns=pev2, dev="pev1").get("address"), ll1)
