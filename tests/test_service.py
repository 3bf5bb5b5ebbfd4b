"""Tests for the service trees (sepgw.service), in memory on a fake reactor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application.service import Application, IServiceCollection, Service
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver
from twisted.trial.unittest import SynchronousTestCase

from sepgw.config import load
from sepgw.interfaces import ContactorState
from sepgw.service.evse import EVSEGateway
from sepgw.service.pev import PEVController
from sepgw.service.tree import OrderedMultiService
from tests.helpers import ETC, evse_config, shared_pki


class Recorder(Service):
    """A child that records its start and stop, optionally waiting on a Deferred."""

    def __init__(self, name: str, journal: list[str], wait: Deferred[None] | None = None,
                 fail: bool = False) -> None:
        self.setName(name)
        self.journal = journal
        self.wait = wait
        self.fail = fail

    def startService(self) -> Any:
        Service.startService(self)
        self.journal.append(f"start {self.name}")
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        return self.wait

    def stopService(self) -> Any:
        Service.stopService(self)
        self.journal.append(f"stop {self.name}")


class OrderedMultiServiceTests(SynchronousTestCase):
    def test_children_wait_for_each_other(self) -> None:
        """A child starts only after the previous child's start Deferred fired."""
        journal: list[str] = []
        gate: Deferred[None] = Deferred()
        parent = OrderedMultiService()
        Recorder("a", journal, wait=gate).setServiceParent(parent)
        Recorder("b", journal).setServiceParent(parent)
        parent.startService()
        self.assertEqual(journal, ["start a"])
        self.assertNoResult(parent.started)
        gate.callback(None)
        self.assertEqual(journal, ["start a", "start b"])
        self.successResultOf(parent.started)
        self.successResultOf(parent.stopService())
        self.assertEqual(journal, ["start a", "start b", "stop b", "stop a"])

    def test_failed_start_stops_started_children(self) -> None:
        """When a child fails to start, those already started stop and `started` fails."""
        journal: list[str] = []
        parent = OrderedMultiService()
        Recorder("a", journal).setServiceParent(parent)
        Recorder("b", journal, fail=True).setServiceParent(parent)
        Recorder("c", journal).setServiceParent(parent)
        parent.startService()
        failure = self.failureResultOf(parent.started, RuntimeError)
        self.assertEqual(str(failure.value), "b cannot start")
        self.assertEqual(journal, ["start a", "start b", "stop a"])


class PKIMixin:
    @property
    def pki(self) -> Path:
        return shared_pki()


class EVSEGatewayTests(PKIMixin, SynchronousTestCase):
    def gateway(self, extra: str = "") -> tuple[EVSEGateway, MemoryReactorClock]:
        reactor = MemoryReactorClock()
        path = evse_config(Path(self.mktemp()), extra, pki=self.pki, port=18443)
        return EVSEGateway(load(path, "evse"), reactor), reactor

    def test_start_order_and_listening(self) -> None:
        """Ports start before the HTTPS server, which listens with TLS on the configured
        address and port (V2G-4.1.3-2: HTTPS only)."""
        gateway, reactor = self.gateway()
        self.assertEqual([s.name for s in gateway], ["port1", "https"])
        self.assertEqual([s.name for s in gateway.ports[0]],
                         ["port1.contactor", "port1.meter", "port1.transport"])
        gateway.startService()
        self.successResultOf(gateway.started)
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (18443, "::1"))
        from twisted.protocols.tls import TLSMemoryBIOFactory

        self.assertIsInstance(factory, TLSMemoryBIOFactory)  # the connection-capped subclass
        self.assertTrue(gateway.ports[0].controller.link)

    def test_stop_leaves_contactor_open(self) -> None:
        """Stopping the service forbids and opens the contactor, even if it was closed."""
        gateway, reactor = self.gateway()
        gateway.startService()
        contactor = gateway.ports[0].contactor
        contactor.set_allowed(True)
        d = contactor.close()
        reactor.advance(1)
        self.assertEqual(self.successResultOf(d), ContactorState.closed)
        self.successResultOf(gateway.stopService())
        self.assertEqual(contactor.state, ContactorState.open)
        self.assertFalse(contactor.allowed)

    def test_meter_error_opens_contactor(self) -> None:
        """A meter error forbids closing and opens the contactor."""
        gateway, reactor = self.gateway()
        gateway.startService()
        port = gateway.ports[0]
        port.contactor.set_allowed(True)
        port.contactor.close()
        reactor.advance(1)
        port.meter.fail("no answer from meter")
        self.assertEqual(port.contactor.state, ContactorState.open)
        self.assertFalse(port.contactor.allowed)

    def test_meter_samples_on_the_injected_clock(self) -> None:
        """The simulated meter samples on the injected clock, not the wall clock."""
        gateway, reactor = self.gateway()
        gateway.startService()
        reactor.advance(5.0)
        sample = gateway.ports[0].last_sample
        assert sample is not None
        self.assertAlmostEqual(sample.timestamp, 5.0, delta=0.11)
        self.assertEqual(sample.voltage_v, 240.0)

    def test_json_logging_installed_on_application(self) -> None:
        """A [logging] section asking for JSON sets the twistd application's log observer."""
        gateway, _ = self.gateway('[logging]\nformat = "json"\n')
        application = Application("sepgw")
        gateway.setServiceParent(application)
        self.assertIsNotNone(application.getComponent(ILogObserver, None))
        self.assertIn(gateway, list(IServiceCollection(application)))

    def test_default_logging_left_to_twistd(self) -> None:
        """With the default [logging], twistd's own options (--logfile...) decide."""
        gateway, _ = self.gateway()
        application = Application("sepgw")
        gateway.setServiceParent(application)
        self.assertIsNone(application.getComponent(ILogObserver, None))


class PEVControllerTests(PKIMixin, SynchronousTestCase):
    def test_connects_to_configured_url(self) -> None:
        """The PEV starts its inverter and transport, then connects to the EVSE URL."""
        directory = Path(self.mktemp())
        directory.mkdir()
        text = (ETC / "pev.toml").read_text().replace("../run/pki", str(self.pki)).replace(
            "../run/pev-state", "state")
        # In memory: the inverter without the UDP link to the EVSE.
        text = "\n".join(line for line in text.splitlines()
                         if not line.startswith(("link =", "bind =", "control =")))
        (directory / "pev.toml").write_text(text)
        reactor = MemoryReactorClock()
        pev = PEVController(load(directory / "pev.toml", "pev"), reactor)
        pev.startService()
        self.successResultOf(pev.started)
        [(_, port, *_)] = reactor.tcpClients
        self.assertEqual(port, 8443)
        self.assertTrue(pev.transport.is_up)
        self.successResultOf(pev.stopService())
        self.assertFalse(pev.transport.is_up)


RECORDING_UPLINK = '''
from zope.interface import implementer
from sepgw.interfaces import IUplink
from sepgw.plugin import PluginFactory

@implementer(IUplink)
class RecordingUplink:
    def __init__(self):
        self.sink = None
        self.published = []
    def start(self):
        pass
    def stop(self):
        pass
    def set_control_sink(self, sink):
        self.sink = sink
    def publish(self, telemetry):
        self.published.append(telemetry)

uplink = PluginFactory(kind="uplink", name="recording", description="Records for tests.",
                       build=lambda config, context: RecordingUplink())
'''


class UplinkTests(PKIMixin, SynchronousTestCase):
    def setUp(self) -> None:
        from tests.helpers import write_plugin

        directory = Path(self.mktemp()).absolute()
        write_plugin(directory / "dropins", "recording_uplink", RECORDING_UPLINK)
        path = evse_config(directory, '[uplink]\nplugin = "recording"\n', pki=self.pki,
                           port=18443, plugin_dirs=["dropins"])
        self.reactor = MemoryReactorClock()
        self.gateway = EVSEGateway(load(path, "evse"), self.reactor)
        self.uplink = self.gateway.uplink
        self.gateway.startService()

    def test_telemetry_published(self) -> None:
        """The gateway publishes every port's status to the uplink at the postRate."""
        self.reactor.advance(15)
        [telemetry] = self.uplink.published
        self.assertEqual(telemetry["ports"][0]["port"], "port1")
        self.assertEqual(telemetry["ports"][0]["contactor"], "open")

    def test_uplink_control_reaches_port(self) -> None:
        """A utility's opModFixedW control from the uplink becomes a DERControl for the
        port's PEV; an unknown port is logged and ignored. V2G-4.8.2-1"""
        from tests.test_evse_server import identities

        session = self.gateway.resources.attach(identities()["pev"], 0)
        self.uplink.sink({"port": "port1", "opModFixedW": 25.0})
        [control] = self.gateway.resources.management(session).extras()
        self.assertEqual(control.DERControlBase.opModFixedW, 2500)
        self.uplink.sink({"port": "port9", "opModFixedW": 25.0})
        self.uplink.sink({"port": "port1", "opModFixedW": None})
        self.assertEqual(self.gateway.resources.management(session).extras(), [])
