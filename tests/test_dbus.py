"""The D-Bus interface (sepgw.service.dbus, docs/dbus.md).

Unit tests run the publisher on a task.Clock. Bus tests start a real ``dbus-daemon`` with a
configuration written here, serve an EVSE port built in memory (the real PortController,
gatekeeper, simulated contactor and meter of tests.test_evse_session.Site) and query it as an
integrator would: ``busctl`` (run as a child process, never blocking the reactor) and a txdbus
client. They are skipped, with the reason, where dbus-daemon or busctl is missing.
"""

from __future__ import annotations

import getpass
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sepgw.config import load
from sepgw.evse.operator import OperatorProtocol
from sepgw.model.paging import ListQuery
from tests.helpers import ETC
from tests.test_evse_session import Site

ROOT = Path(__file__).resolve().parent.parent
DBUS_DAEMON = shutil.which("dbus-daemon")
BUSCTL = shutil.which("busctl")
NAME = "org.sepgw.Gateway"
PORT1 = "/org/sepgw/Gateway/port/port1"
IFACE = "org.sepgw.Port1"
PROPS = "org.freedesktop.DBus.Properties"

DOCTYPE = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
"""

OPEN_BUS = DOCTYPE + """<busconfig>
  <type>session</type>
  <listen>unix:path={dir}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
"""A bus where anything goes (as a session bus)."""

SYSTEM_LIKE_BUS = DOCTYPE + """<busconfig>
  <type>system</type>
  <listen>unix:path={dir}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"""
"""The default policy of Debian's system.conf: nothing may own a name or call a method unless
a policy file allows it; then the shipped policy file."""


class PublisherTests(SynchronousTestCase):
    """The publisher: which PropertiesChanged signals go out, and when."""

    def setUp(self) -> None:
        from sepgw.service.dbus import Publisher

        self.clock = Clock()
        self.values: dict[str, Any] = {"State": "idle", "MeterW": 0.0, "MeterV": math.nan}
        self.sent: list[dict[str, Any]] = []
        self.p = Publisher(self.clock, lambda: dict(self.values), self.sent.append,
                           limited={"MeterW", "MeterV"}, interval=1.0)
        self.p.start()

    def test_one_signal_per_reactor_turn_with_only_what_changed(self) -> None:
        """Many events in one turn make one signal, carrying only the changed properties; an
        event that changed nothing sends nothing; NaN (no value) is not a change to NaN."""
        self.values["State"] = "linked"
        self.p.changed()
        self.values["State"] = "authorized"
        self.p.changed()
        self.p.changed()
        self.assertEqual(self.sent, [])
        self.clock.advance(0)
        self.assertEqual(self.sent, [{"State": "authorized"}])
        self.p.changed()
        self.clock.advance(0)
        self.assertEqual(len(self.sent), 1)

    def test_meter_values_rate_limited(self) -> None:
        """Meter values are signalled at most once a second: a change within the second is
        held and sent, with the latest value, when the second is over; other properties are
        never held."""
        self.values["MeterW"] = 100.0
        self.p.changed()
        self.clock.advance(0)
        self.assertEqual(self.sent, [{"MeterW": 100.0}])
        self.clock.advance(0.2)
        self.values.update(MeterW=200.0, State="linked")
        self.p.changed()
        self.clock.advance(0)
        self.assertEqual(self.sent[1:], [{"State": "linked"}])
        self.clock.advance(0.3)
        self.values["MeterW"] = 300.0
        self.p.changed()
        self.clock.advance(0)
        self.assertEqual(len(self.sent), 2)
        self.clock.advance(0.5)  # one second after the first meter signal
        self.assertEqual(self.sent[2:], [{"MeterW": 300.0}])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_cancels_and_silences(self) -> None:
        """Once stopped (bus connection lost) nothing is scheduled or sent."""
        self.values["MeterW"] = 1.0
        self.p.changed()
        self.p.stop()
        self.clock.advance(5)
        self.p.changed()
        self.assertEqual(self.sent, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class NamesTests(SynchronousTestCase):
    def test_port_names_as_object_path_elements(self) -> None:
        """Port names become valid object-path elements (only [A-Za-z0-9_]), each other
        byte as _xx, so distinct names stay distinct."""
        from sepgw.service.dbus import object_path_part

        self.assertEqual(object_path_part("port1"), "port1")
        self.assertEqual(object_path_part("port 1"), "port_201")
        self.assertEqual(object_path_part("bay-2_a"), "bay_2d2_5fa")
        self.assertEqual(object_path_part("é"), "_c3_a9")


class ConfigTests(SynchronousTestCase):
    def test_dbus_off_by_default_and_bus_checked(self) -> None:
        """[dbus] is off unless enabled; the bus must be system, session or an address."""
        from sepgw.config.sections import _bus

        self.assertFalse(load(ETC / "sepgw.toml", "evse")["dbus"]["enabled"])
        self.assertFalse(load(ETC / "pev.toml", "pev")["dbus"]["enabled"])
        self.assertIsNone(_bus("unix:path=/run/dbus/system_bus_socket"))
        self.assertIn("must be 'system', 'session' or a D-Bus address", _bus("systen") or "")


def _skip_reason() -> str | None:
    if DBUS_DAEMON is None:
        return "dbus-daemon is not installed (Debian: apt-get install dbus)"
    if BUSCTL is None:
        return "busctl is not installed (Debian: systemd)"
    return None


class _Daemon(ProcessProtocol):
    def __init__(self) -> None:
        self.address: Deferred[str] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self._out = b""
        self.err = b""

    def outReceived(self, data: bytes) -> None:
        self._out += data
        if b"\n" in self._out and not self.address.called:
            self.address.callback(self._out.split(b"\n")[0].decode())

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        if not self.address.called:
            self.address.errback(RuntimeError(f"dbus-daemon ended: {self.err.decode()}"))
        self.ended.callback(None)


class BusCase(TestCase):
    skip = _skip_reason()
    timeout = 30
    address = ""

    async def start_bus(self, config: str = OPEN_BUS, **extra: str) -> str:
        """A dbus-daemon of our own; its address."""
        directory = tempfile.mkdtemp(prefix="sepgw-dbus-")
        self.addCleanup(shutil.rmtree, directory, True)
        conf = Path(directory, "bus.conf")
        conf.write_text(config.format(dir=directory, **extra))
        daemon = _Daemon()
        assert DBUS_DAEMON is not None
        process = reactor.spawnProcess(  # type: ignore[attr-defined]
            daemon, DBUS_DAEMON,
            [DBUS_DAEMON, f"--config-file={conf}", "--print-address", "--nofork"],
            env=dict(os.environ))

        def stop() -> Deferred[None]:
            if not daemon.ended.called:
                process.signalProcess("TERM")
            return daemon.ended
        self.addCleanup(stop)
        return await daemon.address

    async def busctl(self, *args: str, ok: bool = True) -> tuple[str, str, int]:
        assert BUSCTL is not None
        out, err, code = await getProcessOutputAndValue(
            BUSCTL, [f"--address={self.address}", *args], env=dict(os.environ))
        if ok:
            self.assertEqual(code, 0, f"busctl {' '.join(args)}: {err.decode()}")
        return out.decode(), err.decode(), code

    async def serve_site(self, name: str = NAME) -> Any:
        """An EVSE port in memory, served on the bus; waits until the name is owned."""
        from sepgw.service.dbus import _evse_service

        self.site = Site()
        self.port = self.site.ports[0]
        operator = OperatorProtocol({p.name: p for p in self.site.ports})
        self.service = _evse_service(
            reactor, {"bus": self.address, "name": name, "meter_interval_s": 1.0},
            [(self.port, self.site.meters[0], None)], operator)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        return await self.service.ready

    async def client(self) -> Any:
        from txdbus import client

        conn = await client.connect(reactor, self.address)
        self.addCleanup(conn.disconnect)
        return conn


class BusTests(BusCase):
    """The EVSE role's port object on a real bus."""

    async def setUp(self) -> None:  # type: ignore[override]
        self.address = await self.start_bus()
        await self.serve_site()

    async def test_introspection_lists_the_port_interface(self) -> None:
        """busctl introspects the port object: the documented properties and methods of
        org.sepgw.Port1 with their signatures, and the tree of objects."""
        out, _, _ = await self.busctl("introspect", NAME, PORT1, IFACE)
        rows = {m.group(1): (m.group(2), m.group(3)) for m in re.finditer(
            r"^\.(\w+)\s+(method|property|signal)\s+(\S+)", out, re.M)}
        expected = {
            "State": ("property", "s"), "Lfdi": ("property", "s"), "Sfdi": ("property", "t"),
            "ManufacturerId": ("property", "u"), "Model": ("property", "s"),
            "Authorized": ("property", "b"), "Reasons": ("property", "as"),
            "Contactor": ("property", "s"), "Fault": ("property", "s"),
            "MeterW": ("property", "d"), "MeterVar": ("property", "d"),
            "MeterV": ("property", "d"), "MeterHz": ("property", "d"),
            "FixedW": ("method", "d"), "ClearFixedW": ("method", "-"),
            "ClearFault": ("method", "-"),
        }
        for member, kind in expected.items():
            self.assertEqual(rows.get(member), kind, member)
        tree, _, _ = await self.busctl("tree", NAME)
        self.assertIn(PORT1, tree)

    async def test_docs_show_the_real_introspection(self) -> None:
        """The org.sepgw.Port1 XML in docs/dbus.md is what the service answers."""
        xml, _, _ = await self.busctl("introspect", "--xml-interface", NAME, PORT1)
        live = re.search(r'  <interface name="org\.sepgw\.Port1">.*?</interface>', xml, re.S)
        doc = (ROOT / "docs" / "dbus.md").read_text()
        assert live is not None
        self.assertIn(live.group(0), doc)

    async def test_properties_follow_the_port(self) -> None:
        """busctl reads the port as the operator socket shows it: idle without a PEV; once
        the PEV has connected and is authorized, its identity as the PEV sent it in its
        certificate and DeviceInformation, no reasons, and the meter's values."""
        out, _, _ = await self.busctl("get-property", NAME, PORT1, IFACE, "State",
                                      "Authorized", "Reasons")
        self.assertEqual(out.split("\n")[:3], ['s "idle"', "b false", 'as 1 "no PEV"'])
        session = self.site.connect()
        out, _, _ = await self.busctl("get-property", NAME, PORT1, IFACE, "State",
                                      "Authorized", "Reasons", "Lfdi", "Sfdi",
                                      "ManufacturerId", "Model", "SerialNumber", "MeterV",
                                      "MeterHz")
        self.assertEqual(out.split("\n")[:10], [
            's "authorized"', "b true", "as 0", f's "{session.identity.lfdi}"',
            f"t {session.identity.sfdi}", "u 37250", 's "ISM Value"', 's "PEV VIN"',
            "d 240", "d 60"])

    async def test_properties_changed_signal_after_a_state_change(self) -> None:
        """A txdbus client subscribed to PropertiesChanged is told, without asking, that the
        port became authorized (state, authorization, reasons, LFDI in one signal)."""
        conn = await self.client()
        remote = await conn.getRemoteObject(NAME, PORT1)
        signals: list[tuple[str, dict[str, Any], list[str]]] = []
        got: Deferred[None] = Deferred()

        def on_signal(interface: str, changed: dict[str, Any], invalidated: list[str]) -> None:
            signals.append((interface, changed, invalidated))
            if changed.get("State") == "authorized" and not got.called:
                got.callback(None)
        await remote.notifyOnSignal("PropertiesChanged", on_signal, interface=PROPS)
        self.assertEqual(await remote.callRemote("Get", IFACE, "State", interface=PROPS),
                         "idle")
        session = self.site.connect()
        await got
        interface, changed, _ = signals[-1]
        self.assertEqual(interface, IFACE)
        self.assertEqual((changed["Authorized"], changed["Reasons"], changed["Lfdi"]),
                         (True, [], session.identity.lfdi))

    async def test_fixed_w_reaches_the_pev(self) -> None:
        """FixedW(50) issues the same DERControl as `sepgw ctl fixed-w port1 50`: the PEV's
        DERControlList then holds an opModFixedW of 50 % (5000 in 2030.5 SignedPerCent,
        hundredths of a percent). V2G-4.8.2-1"""
        session = self.site.connect()
        await self.busctl("call", NAME, PORT1, IFACE, "FixedW", "d", "50")
        controls: Any = self.site.resources.get(f"{session.edev}/derp/1/derc", ListQuery(),
                                           session.identity)
        values = [c.DERControlBase.opModFixedW for c in controls.DERControl]
        self.assertIn(5000, [int(v) for v in values if v is not None])

    async def test_invalid_argument_is_a_dbus_error_naming_it(self) -> None:
        """FixedW(500) is refused with org.freedesktop.DBus.Error.InvalidArgs saying the
        allowed range; without a PEV session FixedW is org.sepgw.Error.NotAvailable; busctl
        prints the message and fails."""
        from txdbus.error import RemoteError

        conn = await self.client()
        remote = await conn.getRemoteObject(NAME, PORT1)
        try:
            await remote.callRemote("FixedW", 10.0, interface=IFACE)
        except RemoteError as e:
            self.assertEqual(e.errName, "org.sepgw.Error.NotAvailable")
            self.assertIn("no PEV session", e.message)
        else:
            self.fail("FixedW without a PEV accepted")
        self.site.connect()
        try:
            await remote.callRemote("FixedW", 500.0, interface=IFACE)
        except RemoteError as e:
            self.assertEqual(e.errName, "org.freedesktop.DBus.Error.InvalidArgs")
            self.assertIn("within -100 and 100 %, got 500", e.message)
        else:
            self.fail("FixedW(500) accepted")
        _, err, code = await self.busctl("--", "call", NAME, PORT1, IFACE, "FixedW", "d",
                                         "-101", ok=False)
        self.assertNotEqual(code, 0)
        self.assertIn("within -100 and 100 %, got -101", err)

    async def test_clear_fault_without_fault_is_refused(self) -> None:
        """ClearFault runs the operator's clear-fault: with no fault it is refused
        (org.sepgw.Error.Refused) with the gatekeeper's reason."""
        from txdbus.error import RemoteError

        conn = await self.client()
        remote = await conn.getRemoteObject(NAME, PORT1)
        try:
            await remote.callRemote("ClearFault", interface=IFACE)
        except RemoteError as e:
            self.assertEqual(e.errName, "org.sepgw.Error.Refused")
            self.assertIn("no contactor fault to clear", e.message)
        else:
            self.fail("ClearFault without a fault accepted")

    async def test_properties_are_read_only(self) -> None:
        """Setting a property is refused with PropertyReadOnly; the state is unchanged."""
        _, err, code = await self.busctl("set-property", NAME, PORT1, IFACE, "State", "s",
                                         "authorized", ok=False)
        self.assertNotEqual(code, 0)
        self.assertIn("read-only", err)
        out, _, _ = await self.busctl("get-property", NAME, PORT1, IFACE, "State")
        self.assertEqual(out.strip(), 's "idle"')


class PolicyTests(BusCase):
    """The shipped system-bus policy file, on a bus that denies by default."""

    async def test_policy_lets_the_service_user_own_and_serve(self) -> None:
        """With etc/dbus-1/system.d/org.sepgw.Gateway.conf included (its service user set to
        the user running the test), the service owns org.sepgw.Gateway and answers; a name
        the file does not grant is refused by the bus."""
        text = (ROOT / "etc/dbus-1/system.d/org.sepgw.Gateway.conf").read_text()
        directory = tempfile.mkdtemp(prefix="sepgw-policy-")
        self.addCleanup(shutil.rmtree, directory, True)
        policy = Path(directory, "policy.conf")
        policy.write_text(text.replace('user="sepgw"', f'user="{getpass.getuser()}"'))
        self.address = await self.start_bus(SYSTEM_LIKE_BUS, policy=str(policy))
        await self.serve_site()
        out, _, _ = await self.busctl("get-property", NAME, PORT1, IFACE, "State")
        self.assertEqual(out.strip(), 's "idle"')
        from txdbus.error import RemoteError

        conn = await self.client()
        try:
            await conn.requestBusName("org.sepgw.Other")
        except RemoteError as e:
            self.assertEqual(e.errName, "org.freedesktop.DBus.Error.AccessDenied")
        else:
            self.fail("a name outside the policy was granted")

    async def test_refused_name_is_logged_not_fatal(self) -> None:
        """A name the policy does not grant: the service logs an error naming the name and
        the policy file, and stays off the bus without retrying."""
        from sepgw.service.dbus import _evse_service

        self.address = await self.start_bus(SYSTEM_LIKE_BUS, policy=str(
            ROOT / "etc/dbus-1/system.d/org.sepgw.Gateway.conf"))
        logged: Deferred[str] = Deferred()

        def observe(event: dict[str, Any]) -> None:
            text = formatEvent(event)
            if "refused the name" in text and not logged.called:
                logged.callback(text)
        observer = cast(ILogObserver, observe)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        site = Site()
        service = _evse_service(
            reactor, {"bus": self.address, "name": "org.sepgw.Other", "meter_interval_s": 1.0},
            [(site.ports[0], site.meters[0], None)], OperatorProtocol({}))
        service.startService()
        self.addCleanup(service.stopService)
        text = await logged
        self.assertIn("org.sepgw.Other", text)
        self.assertIn("org.sepgw.Gateway.conf", text)
        self.assertIsNone(service.connection)
        self.assertIsNone(service._retry)

    async def test_others_read_but_do_not_command(self) -> None:
        """An unprivileged user (nobody, via setpriv) may read the status but not call
        FixedW: the bus denies it."""
        setpriv = shutil.which("setpriv")
        if os.geteuid() != 0 or setpriv is None:
            raise self.skipTest("needs root and setpriv to act as another user")
        policy = ROOT / "etc/dbus-1/system.d/org.sepgw.Gateway.conf"
        self.address = await self.start_bus(SYSTEM_LIKE_BUS, policy=str(policy))
        socket = Path(self.address.split("path=")[1].split(",")[0])
        os.chmod(socket.parent, 0o755)  # let nobody reach the socket
        await self.serve_site()
        base = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                f"{BUSCTL}", f"--address={self.address}"]
        out, err, code = await getProcessOutputAndValue(
            base[0], base[1:] + ["get-property", NAME, PORT1, IFACE, "State"])
        self.assertEqual((code, out.decode().strip()), (0, 's "idle"'), err.decode())
        out, err, code = await getProcessOutputAndValue(
            base[0], base[1:] + ["call", NAME, PORT1, IFACE, "ClearFixedW"])
        self.assertNotEqual(code, 0)
        self.assertIn("denied", err.decode().lower())


class _Inverter:
    def reading(self) -> Any:
        from sepgw.interfaces import InverterReading

        return InverterReading(timestamp=0.0, active_power_w=-3000.0, reactive_power_var=0.0,
                               voltage_v=240.0, frequency_hz=60.0,
                               state_of_charge_pct=55.0)


class PevBusTests(BusCase):
    """The PEV role's object: Sleep and Wake run the PEV operator socket's code."""

    async def setUp(self) -> None:  # type: ignore[override]
        from sepgw.service.dbus import PEV_ROOT, DBusService, PevObject, Publisher

        self.address = await self.start_bus()
        self.client_state: Any = None
        obj = PevObject(PEV_ROOT, lambda: self.client_state, lambda: "https://[::1]:8443/dcap")
        publisher = Publisher(reactor, obj.values, obj.properties_changed)
        obj.on_command = publisher.changed
        self.service = DBusService(reactor, self.address, "org.sepgw.Pev",
                                   [(obj, publisher)], lambda: [])
        self.service.startService()
        self.addCleanup(self.service.stopService)
        await self.service.ready

    async def test_sleep_without_session_and_in_wrong_state(self) -> None:
        """Without a 2030.5 session Sleep is NotAvailable with the operator socket's
        message; in a state other than periodic it is refused likewise; in periodic it runs
        the client's sleep (4.8.3) and the Sleeping property follows."""
        _, err, code = await self.busctl("call", "org.sepgw.Pev", "/org/sepgw/Pev",
                                         "org.sepgw.Pev1", "Sleep", ok=False)
        self.assertNotEqual(code, 0)
        self.assertIn("no 2030.5 session", err)

        class Client:
            state = "exchange"
            energize = True
            sleeping = False
            comms_ok = True
            inverter = _Inverter()

            async def sleep(self) -> None:
                self.sleeping = True

        self.client_state = Client()
        _, err, code = await self.busctl("call", "org.sepgw.Pev", "/org/sepgw/Pev",
                                         "org.sepgw.Pev1", "Sleep", ok=False)
        self.assertIn("cannot sleep in state 'exchange'", err)
        self.client_state.state = "periodic"
        await self.busctl("call", "org.sepgw.Pev", "/org/sepgw/Pev", "org.sepgw.Pev1",
                          "Sleep")
        out, _, _ = await self.busctl("get-property", "org.sepgw.Pev", "/org/sepgw/Pev",
                                      "org.sepgw.Pev1", "Sleeping", "InverterW",
                                      "StateOfChargePct")
        self.assertEqual(out.split("\n")[:3], ["b true", "d -3000", "d 55"])



class WiringTests(BusCase):
    """`twistd sepgw`'s service tree with [dbus] enabled."""

    async def test_gateway_serves_its_ports_on_the_configured_bus(self) -> None:
        """With [dbus] enabled and bus = the test bus's address, the EVSE gateway has a
        `dbus` service (after HTTPS, before any systemd notifier) that owns org.sepgw.Gateway and
        serves the configured port."""
        from sepgw.service.evse import EVSEGateway
        from tests.helpers import evse_config, shared_pki

        self.address = await self.start_bus()
        path = evse_config(Path(self.mktemp()), f'[dbus]\nenabled = true\nbus = '
                           f'"{self.address}"\n', pki=shared_pki(), port=18443)
        gateway = EVSEGateway(load(path, "evse"), reactor)
        self.assertEqual([s.name for s in gateway], ["port1", "https", "dbus"])
        service = gateway.getServiceNamed("dbus")
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        out, _, _ = await self.busctl("get-property", NAME, PORT1, IFACE, "Name", "State")
        self.assertEqual(out.split("\n")[:2], ['s "port1"', 's "idle"'])
        out, _, _ = await self.busctl("get-property", NAME, "/org/sepgw/Gateway",
                                      "org.sepgw.Gateway1", "Role", "Ports")
        self.assertEqual(out.split("\n")[:2], ['s "evse"', f'ao 1 "{PORT1}"'])


class LazyImportTests(TestCase):
    timeout = 60

    async def test_txdbus_not_imported_when_disabled(self) -> None:
        """With [dbus] off (the default) building the EVSE gateway imports no txdbus (the
        idle memory budget)."""
        from tests.helpers import evse_config, shared_pki

        path = evse_config(Path(self.mktemp()).absolute(), pki=shared_pki(), port=18443)
        code = ("import sys; from sepgw.config import load; "
                "from sepgw.service.evse import EVSEGateway; "
                "from twisted.internet.testing import MemoryReactorClock; "
                f"EVSEGateway(load({str(path)!r}, 'evse'), MemoryReactorClock()); "
                "print(sorted(m for m in sys.modules if m.startswith('txdbus')))")
        out, err, status = await getProcessOutputAndValue(
            sys.executable, ["-c", code], env=dict(os.environ), path=str(ROOT))
        self.assertEqual((status, out.decode().strip()), (0, "[]"), err.decode())
