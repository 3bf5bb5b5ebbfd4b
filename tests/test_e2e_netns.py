"""End to end across network namespaces (root only): the EVSE and the PEV on two ends of a
veth pair, nothing configured on the PEV but its certificate and interface. The PEV gets its
ULA by SLAAC from the EVSE's Router Advertisements, finds the EVSE by mDNS, and completes the
J3072 sequence to authorization; it cannot reach anything beyond the EVSE."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import ETC, shared_pki
from tests.netns import Netns
from tests.processes import TWISTD, Process

UPSTREAM = "fd99::99"


ETHERNET = ('{ plugin = "ethernet", interface = "evse0" }',
            '[transport]\nplugin = "ethernet"\ninterface = "pev0"')
PLC = ('{ plugin = "plc", interface = "evse0", role = "evse", emulate_modem = true }',
       '[transport]\nplugin = "plc"\ninterface = "pev0"\nrole = "ev"\nemulate_modem = true')


def evse_config(directory: Path, pki: Path, transport: str = ETHERNET[0],
                network: str = "") -> Path:
    text = (ETC / "sepgw.toml").read_text()
    text = text.replace("../run/pki", str(pki)).replace('addresses = ["::1"]',
                                                         'addresses = ["::"]')
    text = text.replace('"../run/sepgw.sock"', f'"{directory / "op.sock"}"')
    text = text.replace("../run/", f"{directory}/")
    text = text.replace('transport = { plugin = "loopback" }', f"transport = {transport}")
    text = text.replace(', link = "127.0.0.1:47101", control = true', "")
    text += "\n[network]\nenabled = true\nra_interval_s = 4.0\n" + network
    (directory / "approved-pevs.txt").write_text((ETC / "approved-pevs.txt").read_text())
    path = directory / "sepgw.toml"
    path.write_text(text)
    return path


def pev_config(directory: Path, pki: Path, transport: str = ETHERNET[1]) -> Path:
    text = (ETC / "pev.toml").read_text()
    text = text.replace("../run/pki", str(pki))
    text = text.replace('"../run/pev.sock"', f'"{directory / "pev.sock"}"')
    text = text.replace("../run/", f"{directory}/")
    text = text.replace('url = "https://[::1]:8443/dcap"\n', "")
    text = text.replace('[transport]\nplugin = "loopback"', transport)
    text = "\n".join(line for line in text.splitlines()
                     if not line.startswith(("link =", "bind =", "control =")))
    text = text.replace('[notifications]\nenabled = true\naddress = "::1"',
                        '[notifications]\nenabled = true\naddress = "::"')
    path = directory / "pev.toml"
    path.write_text(text)
    return path


def connect(net: Netns, ns: str, host: str, port: int) -> str:
    """Try a TCP connection from inside ``ns``: "connected" or the error."""
    script = ("import socket, sys\n"
              "try:\n"
              f"    socket.create_connection(({host!r}, {port}), timeout=3).close()\n"
              "    print('connected')\n"
              "except OSError as e:\n"
              "    print(type(e).__name__, e)\n")
    return net.run(ns, sys.executable, "-c", script).stdout.strip()


class NamespaceTests(SynchronousTestCase):
    transports = ETHERNET
    network = ""
    forwarded = False

    def test_slaac_mdns_authorization_and_lockout(self) -> None:
        """In two namespaces joined by a veth pair (and an upstream namespace behind the
        EVSE): the PEV's only configuration is its interface; it gets a ULA from the EVSE's
        RAs (SLAAC), finds the EVSE by mDNS on ff02::fb, is authorized, and cannot reach the
        upstream host while the EVSE forwards for everyone else.
        V2G-4.2.3-1 V2G-4.2.3-2 V2G-4.2.3-3 V2G-4.2.3-4 V2G-4.2.3-5 V2G-4.2.4-1 V2G-4.2.4-2
        V2G-4.3-1 V2G-4.3-2 V2G-4.3-5 V2G-4.3-6 V2G-4.5.1-2"""
        net = Netns(self)
        evse_ns, pev_ns, up_ns = (net.namespace(n) for n in ("evse", "pev", "up"))
        net.veth("evse0", evse_ns, "pev0", pev_ns)
        net.veth("uplink0", evse_ns, "up0", up_ns)
        net.run(up_ns, "ip", "-6", "addr", "add", f"{UPSTREAM}/64", "dev", "up0", "nodad")
        net.run(evse_ns, "ip", "-6", "addr", "add", "fd99::1/64", "dev", "uplink0", "nodad")
        net.sysctl(evse_ns, "net.ipv6.conf.all.forwarding", "1")
        # The upstream host routes back to the EVSE for everything.
        net.run(up_ns, "ip", "-6", "route", "add", "default", "via", "fd99::1")

        pki = shared_pki()
        directory = Path(tempfile.mkdtemp(prefix="sepgw-ns-"))
        (directory / "evse").mkdir()
        evse = Process(["ip", "netns", "exec", evse_ns, TWISTD, "-n", "--pidfile=", "sepgw",
                        "--config", str(evse_config(directory / "evse", pki,
                                                    self.transports[0], self.network))])
        self.addCleanup(evse.kill)
        evse.wait_for(r"sepgw EVSE serving", timeout=30)
        evse.wait_for(r"routing locked out")
        (directory / "pev").mkdir()
        pev = Process(["ip", "netns", "exec", pev_ns, TWISTD, "-n", "--pidfile=",
                       "sepgw-pev", "--config", str(pev_config(directory / "pev", pki,
                                                               self.transports[1]))])
        self.addCleanup(pev.kill)
        if self.transports is PLC:
            pev.wait_for(r"matched \S+ \(NID [0-9a-fA-F]+\)", timeout=30)
            evse.wait_for(r"matched \S+ \(NID [0-9a-fA-F]+\)", timeout=30)
        found = pev.wait_for(r"Found the EVSE by mDNS: (https://\S+)", timeout=60)
        self.assertIn("fd", found.group(1))
        evse.wait_for(r"port1: not authorized -> authorized", timeout=60)
        pev.wait_for(r"opModEnergize True", timeout=30)

        # The PEV reaches the EVSE (V2G-4.2.4-2) but nothing beyond it (V2G-4.2.4-1), even
        # with a route through the EVSE, which forwards for its other interfaces.
        evse_address = found.group(1).split("[")[1].split("]")[0]
        port = int(found.group(1).rsplit(":", 1)[1].split("/")[0])
        upstream = net.popen(up_ns, sys.executable, "-u", "-m", "http.server", "--bind",
                             UPSTREAM, "8000", stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        assert upstream.stdout is not None
        self.assertIn("Serving HTTP", upstream.stdout.readline())  # listening
        net.run(pev_ns, "ip", "-6", "route", "add", "fd99::/64", "via", evse_address)
        self.assertEqual(connect(net, pev_ns, evse_address, port), "connected")
        self.assertEqual(connect(net, evse_ns, UPSTREAM, 8000), "connected")
        if self.forwarded:
            evse.wait_for(r"forwarding enabled \(PEV authorized\)")
            self.assertEqual(connect(net, pev_ns, UPSTREAM, 8000), "connected")
        else:
            self.assertNotEqual(connect(net, pev_ns, UPSTREAM, 8000), "connected")
        upstream.kill()

        self.assertEqual(pev.terminate(), -signal.SIGTERM, pev.output)
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        self.assertNotIn("Traceback", evse.output + pev.output)


class PLCNamespaceTests(NamespaceTests):
    """The same with the PLC transport: SLAC on both sides with the frame-level modem
    emulator before the link counts as up."""

    transports = PLC


class ForwardingNamespaceTests(NamespaceTests):
    """With `forward_when_authorized`, the lockout is lifted once the PEV is authorized
    (4.2.4 allows it): the PEV then reaches the upstream host through the EVSE."""

    network = "forward_when_authorized = true\n"
    forwarded = True


class CarrierUpTests(SynchronousTestCase):
    def test_port_started_before_carrier(self) -> None:
        """The EVSE's port starts while its interface has no carrier (no PEV plugged in,
        so no link-local address yet); then the PEV's end comes up. The EVSE's RAs wait
        for its link-local address and leave from it (RFC 4861 §4.2), the PEV gets its
        ULA by SLAAC, finds the EVSE by mDNS and is authorized; the mDNS AAAA records now
        carry the port's link-local address next to the ULA (Table 8).
        V2G-4.2.3-3 V2G-4.2.3-4 V2G-4.3-2 V2G-4.5.1-2"""
        from tests.test_net_mdns import DISCOVER_SCRIPT
        from tests.processes import REPO

        net = Netns(self)
        evse_ns, pev_ns = net.namespace("evse"), net.namespace("pev")
        tmp_a, tmp_b = f"ca{net.tag}", f"cb{net.tag}"
        subprocess.run(["ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b],
                       check=True)
        for tmp, name, ns in ((tmp_a, "evse0", evse_ns), (tmp_b, "pev0", pev_ns)):
            subprocess.run(["ip", "link", "set", tmp, "netns", ns], check=True)
            net.run(ns, "ip", "link", "set", tmp, "name", name)
        net.run(evse_ns, "ip", "link", "set", "evse0", "up")  # no carrier: pev0 is down

        pki = shared_pki()
        directory = Path(tempfile.mkdtemp(prefix="sepgw-ns-"))
        (directory / "evse").mkdir()
        evse = Process(["ip", "netns", "exec", evse_ns, TWISTD, "-n", "--pidfile=", "sepgw",
                        "--config", str(evse_config(directory / "evse", pki))])
        self.addCleanup(evse.kill)
        evse.wait_for(r"sepgw EVSE serving", timeout=30)
        evse.wait_for(r"routing locked out")
        self.assertNotIn("fe80", net.run(evse_ns, "ip", "-6", "addr", "show", "dev",
                                         "evse0").stdout)

        net.run(pev_ns, "ip", "link", "set", "pev0", "up")  # carrier-up
        link_local = evse.wait_for(r"Router Advertisements from (fe80:\S+)",
                                   timeout=15).group(1)
        (directory / "pev").mkdir()
        pev = Process(["ip", "netns", "exec", pev_ns, TWISTD, "-n", "--pidfile=",
                       "sepgw-pev", "--config", str(pev_config(directory / "pev", pki))])
        self.addCleanup(pev.kill)
        found = pev.wait_for(r"Found the EVSE by mDNS: (https://\S+)", timeout=60)
        self.assertIn("[fd", found.group(1))
        evse.wait_for(r"port1: not authorized -> authorized", timeout=60)

        # The announcement of the link-local address is asynchronous (zeroconf's loop): on
        # a loaded machine it may come after the PEV's session. Browse once the EVSE says it
        # announced it.
        evse.wait_for(r"mDNS: \S+ now at .*" + re.escape(link_local), timeout=15)
        script = directory / "discover.py"
        script.write_text(DISCOVER_SCRIPT)
        done = net.run(pev_ns, sys.executable, str(script),
                       json.dumps({"repo": str(REPO), "interface": "pev0", "timeout": 10}))
        result = json.loads(done.stdout.split("RESULT ", 1)[1])
        self.assertIn(link_local, result.get("addresses", []), result)
        self.assertTrue(result["address"].startswith("fd"), result)

        self.assertEqual(pev.terminate(), -signal.SIGTERM, pev.output)
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        self.assertNotIn("Traceback", evse.output + pev.output)
