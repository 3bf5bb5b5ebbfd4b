"""Contactor truth and weld handling: every open is verified within the open deadline (by the
auxiliary contact, else by the meter); a failure to open latches a contactor fault that only
an operator can clear, and only with the contacts sensed open.

Unit tests drive the real PortController and Gatekeeper with the bundled simulated contactor
and meter on a task.Clock; the end-to-end test runs `twistd sepgw` and `twistd sepgw-pev` on
the simulated electrical link and injects the stuck contactor with plugins/sim_link.py."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.exceptions import BrokenImplementation
from zope.interface.verify import verifyObject

from sepgw.cli import control
from sepgw.evse.gatekeeper import FaultNotCleared, Gatekeeper
from sepgw.evse.operator import OperatorProtocol
from sepgw.evse.tree import HTTPError
from sepgw.interfaces import ContactorState, IContactor, IContactorFeedback, LinkPeer
from tests.test_evse_session import Site

DEADLINE = 1.0
"""The open deadline this module configures ([safety] open_deadline_s)."""


class Logs:
    """The gatekeeper's log lines, with their levels, in order."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self, level: LogLevel | None = None) -> list[str]:
        return [formatEvent(e) for e in self.events
                if e.get("log_namespace", "").startswith("sepgw.evse.gatekeeper")
                and (level is None or e.get("log_level") is level)]

    def index(self, pattern: str) -> int:
        """Position of the first gatekeeper line matching ``pattern`` (-1: none)."""
        for i, line in enumerate(self.lines()):
            if re.search(pattern, line):
                return i
        return -1


class Wire:
    """The physics the in-memory meter lacks: the PEV's power reaches the meter only while
    the contacts are physically closed."""

    def __init__(self, site: Site, pev_w: float = 0.0) -> None:
        self.contactor = site.contactors[0]
        self.meter = site.meters[0]
        self.pev_w = pev_w
        self.contactor.listeners.append(lambda _: self.update())
        self.update()

    def set(self, pev_w: float) -> None:
        self.pev_w = pev_w
        self.update()

    def update(self) -> None:
        closed = self.contactor.contacts is ContactorState.closed
        self.meter.power = (self.pev_w if closed else 0.0, 0.0)


class Operator:
    """The operator socket's protocol on a string transport."""

    def __init__(self, site: Site) -> None:
        self.proto = OperatorProtocol({p.name: p for p in site.ports})
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def __call__(self, *words: str) -> dict[str, Any]:
        self.transport.clear()
        self.proto.lineReceived(" ".join(words).encode())
        answer: dict[str, Any] = json.loads(self.transport.value())
        return answer

    def status(self) -> dict[str, Any]:
        port: dict[str, Any] = self("status")["ports"][0]
        return port


class WithFeedbackTests(SynchronousTestCase):
    """The simulated contactor with its auxiliary contact (the default)."""

    def setUp(self) -> None:
        self.logs = Logs(self)
        self.s = Site(safety={"open_deadline_s": DEADLINE})
        self.port = self.s.ports[0]
        self.contactor = self.s.contactors[0]
        self.meter = self.s.meters[0]
        self.wire = Wire(self.s)
        self.op = Operator(self.s)

    def authorized_and_closed(self, pev_w: float = 0.0) -> None:
        self.s.connect()
        self.s.run(0.2)
        self.assertTrue(self.port.granted)
        self.assertIs(self.contactor.contacts, ContactorState.closed)
        self.wire.set(pev_w)

    def test_normal_open_logs_opened_only_after_confirmation(self) -> None:
        """An open whose contacts move late (freed after 0.3 s) is logged as commanded at
        once and as "opened (confirmed ...)" only after the auxiliary contact reads open,
        before the deadline: no fault."""
        self.authorized_and_closed()
        self.contactor.set_stuck(True)
        self.port.link_down("cable unplugged")
        self.assertNotEqual(self.logs.index(r"port1: contactor open commanded: PEV left"), -1)
        self.assertEqual(self.logs.index(r"opened"), -1)
        self.s.run(0.3, beat=False)
        self.assertEqual(self.logs.index(r"opened"), -1)
        self.contactor.set_stuck(False)  # the contacts part now
        self.s.run(0.1, beat=False)
        confirmed = self.logs.index(r"port1: contactor opened \(confirmed by the auxiliary "
                                    r"contact \d+ ms after the command\)")
        self.assertGreater(confirmed, self.logs.index(r"open commanded"))
        self.s.run(2, beat=False)
        self.assertIsNone(self.port.gatekeeper.contactor_fault)
        self.assertEqual(self.op.status()["contactor"], "open")

    def test_immediate_open_is_confirmed(self) -> None:
        """A contactor that opens at once: "open commanded" then "opened (confirmed)", in
        that order, in the same turn; nothing at the deadline."""
        self.authorized_and_closed()
        self.port.link_down("cable unplugged")
        commanded = self.logs.index(r"port1: contactor open commanded: PEV left the link")
        confirmed = self.logs.index(r"port1: contactor opened \(confirmed")
        self.assertTrue(0 <= commanded < confirmed, self.logs.lines())
        self.s.run(2, beat=False)
        self.assertEqual(self.logs.lines(LogLevel.critical), [])

    def test_weld_sequence(self) -> None:
        """Welded contacts: open commanded, still closed at the deadline, a critical weld
        line naming the port; status and operator socket show it; the port takes no new
        session (503 naming the fault; the policy never consulted, the contactor never
        allowed); clearing is refused while the contacts are sensed closed, accepted once they
        are open, and the port takes sessions and works again."""
        self.authorized_and_closed()
        self.contactor.set_stuck(True)
        self.port.link_down("cable unplugged")
        self.assertNotEqual(self.logs.index(r"port1: contactor open commanded"), -1)
        self.s.run(DEADLINE - 0.1, beat=False)
        self.assertEqual(self.logs.lines(LogLevel.critical), [])
        self.assertIsNone(self.port.gatekeeper.contactor_fault)
        self.s.run(0.2, beat=False)
        [critical] = self.logs.lines(LogLevel.critical)
        self.assertRegex(critical, r"^port1: CONTACTOR WELDED: contacts still sensed closed "
                                   r"1 s after the open command \(PEV left the link\).*"
                                   r"sepgw ctl clear-fault port1")
        self.assertEqual(self.logs.index(r"opened"), -1, self.logs.lines())

        status = self.op.status()
        self.assertEqual(status["contactor"], "welded")
        self.assertEqual(status["contactor_sensed"], "closed")
        self.assertTrue(status["contactor_feedback"])
        self.assertFalse(status["contactor_allowed"])
        self.assertEqual(status["state"], "contactor fault")
        self.assertIn("still sensed closed", status["violation"])
        self.assertIn("still sensed closed", status["contactor_fault"])

        consulted = len(self.s.policy.facts)
        self.port.link_up(LinkPeer(address="::1"))  # a new PEV arrives at the welded port
        with self.assertRaises(HTTPError) as refused:  # the port takes no new session
            self.s.resources.attach(self.s.ids["pev"], 0)
        self.assertEqual(refused.exception.code, 503)
        self.assertRegex(refused.exception.reason, r"^port1: contactor fault \(.*still sensed "
                         r"closed.*\); the port takes no session until an operator clears it "
                         r"\(sepgw ctl clear-fault port1\)$")
        self.assertEqual(self.s.resources.sessions, {})
        self.s.run(1, beat=False)
        self.assertEqual(len(self.s.policy.facts), consulted)
        self.assertFalse(self.port.granted)
        self.assertFalse(self.contactor.allowed)
        self.assertEqual(self.port.state.value, "contactor fault")
        self.assertTrue(any("contactor welded" in r for r in self.port.reasons),
                        self.port.reasons)

        answer = self.op("clear-fault", "port1")
        self.assertEqual(answer, {"error": "port1: contacts still sensed closed: the "
                                           "contactor fault stays"})
        self.assertEqual(self.op.status()["contactor"], "welded")

        self.contactor.set_stuck(False)  # repaired: the contacts open (closing forbidden)
        self.assertIs(self.contactor.contacts, ContactorState.open)
        self.assertEqual(self.op("clear-fault", "port1"),
                         {"ok": True, "cleared": "contacts sensed open"})
        self.s.connect()  # the port takes sessions again
        self.s.run(0.3)
        status = self.op.status()
        self.assertIsNone(status["contactor_fault"])
        self.assertTrue(status["authorized"])
        self.assertEqual(status["contactor"], "closed")
        self.assertEqual(self.op("clear-fault", "port1"),
                         {"error": "port1: no contactor fault to clear"})

    def test_meter_silent_with_welded_contacts(self) -> None:
        """The issue's case: PEV discharging 3250 W, contacts stuck, meter falls silent. The
        gatekeeper logs the open as commanded (never "opened"), declares the weld at the
        deadline, and status shows the weld, the meter fault and the stale sample's age."""
        self.authorized_and_closed(3250.0)
        self.s.run(0.2)
        self.assertEqual(self.op.status()["meter"]["w"], 3250.0)
        self.contactor.set_stuck(True)
        self.meter.set_silent(True)
        self.s.run(0.6)
        self.assertNotEqual(self.logs.index(r"port1: contactor open commanded: meter silent "
                                            r"for 0\.5 s"), -1, self.logs.lines())
        self.s.run(DEADLINE + 0.1)
        self.assertEqual(len(self.logs.lines(LogLevel.critical)), 1)
        self.assertEqual(self.logs.index(r"opened"), -1, self.logs.lines())
        status = self.op.status()
        self.assertEqual((status["contactor"], status["authorized"]), ("welded", False))
        self.assertEqual(status["meter_fault"], "meter silent for 0.5 s")
        self.assertEqual(status["meter"]["w"], 3250.0)
        self.assertGreater(status["meter"]["age_s"], 1.0)
        self.assertFalse(self.s.energize())

    def test_meter_error_with_welded_contacts(self) -> None:
        """A meter error while the contacts are stuck: open commanded, weld at the
        deadline, and the weld outlives the meter's recovery."""
        self.authorized_and_closed()
        self.contactor.set_stuck(True)
        self.meter.fail("CT disconnected")
        self.assertNotEqual(self.logs.index(r"port1: contactor open commanded: meter error: "
                                            r"CT disconnected"), -1)
        self.s.run(DEADLINE + 0.1)
        self.assertEqual(self.op.status()["contactor"], "welded")
        self.meter.clear()
        self.s.run(6)
        self.assertIsNone(self.port.gatekeeper.meter_fault)
        self.assertEqual(self.op.status()["contactor"], "welded")
        self.assertFalse(self.port.granted)
        self.assertFalse(self.contactor.allowed)


class WithoutFeedbackTests(SynchronousTestCase):
    """The simulated contactor without auxiliary contact: the meter verifies every open."""

    def setUp(self) -> None:
        self.logs = Logs(self)
        self.s = Site(contactor={"feedback": False}, safety={"open_deadline_s": DEADLINE})
        self.port = self.s.ports[0]
        self.contactor = self.s.contactors[0]
        self.meter = self.s.meters[0]
        self.wire = Wire(self.s)
        self.op = Operator(self.s)
        self.s.connect()
        self.s.run(0.2)
        self.assertIs(self.contactor.contacts, ContactorState.closed)

    def test_current_after_deadline_is_a_weld(self) -> None:
        """The driver believes its open worked, but the meter still measures the PEV's
        3250 W at the deadline: a weld fault, status "welded" although the contactor's own
        state says open."""
        self.wire.set(3250.0)
        self.contactor.set_stuck(True)
        self.port.link_down("cable unplugged")
        self.assertIs(self.contactor.state, ContactorState.open)  # what the driver believes
        self.s.run(DEADLINE + 0.1, beat=False)
        [critical] = self.logs.lines(LogLevel.critical)
        self.assertRegex(critical, r"^port1: CONTACTOR WELDED: current still flowing "
                                   r"\(3250 W, 0 var\) 1 s after the open command")
        status = self.op.status()
        self.assertEqual((status["contactor"], status["contactor_sensed"],
                          status["contactor_feedback"]), ("welded", None, False))
        self.assertRegex(self.op("clear-fault", "port1")["error"], r"current still flowing")
        self.contactor.set_stuck(False)
        self.s.run(0.2, beat=False)
        self.assertEqual(self.op("clear-fault", "port1"),
                         {"ok": True,
                          "cleared": "no auxiliary contact; the meter measures no current"})

    def test_no_current_verifies_the_open_without_saying_opened(self) -> None:
        """A working contactor without feedback: the first sample after the command shows no
        current, which is logged as such (not as "opened"); nothing at the deadline."""
        self.wire.set(3250.0)
        self.port.link_down("cable unplugged")
        self.s.run(0.1, beat=False)
        self.assertNotEqual(self.logs.index(r"port1: no current after the open command"), -1)
        self.assertEqual(self.logs.index(r"opened"), -1)
        self.s.run(2, beat=False)
        self.assertEqual(self.logs.lines(LogLevel.critical), [])

    def test_meter_silent_defers_the_verdict(self) -> None:
        """Meter silent and no feedback: at the deadline the open is unconfirmed (warning,
        no fault); the meter's first sample back decides: current flowing is a weld."""
        self.wire.set(3250.0)
        self.contactor.set_stuck(True)
        self.meter.set_silent(True)
        self.s.run(0.6)
        self.assertNotEqual(self.logs.index(r"open commanded: meter silent"), -1)
        self.s.run(DEADLINE + 0.1)
        self.assertNotEqual(self.logs.index(r"open unconfirmed"), -1)
        self.assertIsNone(self.port.gatekeeper.contactor_fault)
        self.meter.set_silent(False)
        self.s.run(0.1)
        self.assertRegex(self.port.gatekeeper.contactor_fault or "",
                         r"current flowing \(3250 W, 0 var\)")

    def test_meter_error_then_no_current_confirms(self) -> None:
        """Meter error and no feedback, contacts working: unconfirmed at the deadline, then
        the meter's first good sample (no current) verifies the open; no fault."""
        self.wire.set(2000.0)
        self.meter.fail("CRC error")
        self.s.run(DEADLINE + 0.1)
        self.assertNotEqual(self.logs.index(r"open unconfirmed"), -1)
        self.meter.clear()
        self.s.run(0.2)
        self.assertNotEqual(self.logs.index(r"no current after the open command"), -1)
        self.assertIsNone(self.port.gatekeeper.contactor_fault)

    def test_current_through_forbidden_contacts_later(self) -> None:
        """Contacts that seemed open (no current: the PEV was idle) but carry current later,
        with closing forbidden, are welded too."""
        self.contactor.set_stuck(True)
        self.port.link_down("cable unplugged")
        self.s.run(DEADLINE + 0.5, beat=False)
        self.assertIsNone(self.port.gatekeeper.contactor_fault)
        self.wire.set(-3000.0)  # charging current through the welded contacts
        self.s.run(0.1, beat=False)
        self.assertRegex(self.port.gatekeeper.contactor_fault or "",
                         r"current flowing \(-3000 W, 0 var\) .* forbidden to close")


@implementer(IContactor)
class OldContactor:
    """A drop-in written against the IContactor of before (no auxiliary contact)."""

    def __init__(self, closed: bool = False) -> None:
        self.state = ContactorState.closed if closed else ContactorState.open
        self.allowed = closed

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def set_allowed(self, allowed: bool) -> None:
        self.allowed = allowed
        if not allowed:
            self.state = ContactorState.open

    def close(self) -> Any:
        self.state = ContactorState.closed
        return succeed(self.state)

    def open(self) -> Any:
        self.set_allowed(False)
        return succeed(self.state)


@implementer(IContactor, IContactorFeedback)
class HalfFeedback(OldContactor):
    """Declares IContactorFeedback but forgets ``sensed``."""

    feedback = True


class ContractTests(SynchronousTestCase):
    def gatekeeper(self, contactor: Any) -> tuple[Gatekeeper, Any]:
        from twisted.internet.task import Clock

        clock = Clock()
        revoked: list[str] = []
        return Gatekeeper(clock, contactor, port="p", on_revoke=revoked.append,
                          meter_timeout=60), clock

    def test_old_plugins_still_verify_and_use_the_meter(self) -> None:
        """A contactor providing only IContactor still verifies and works; the gatekeeper
        has no feedback from it and falls back on the meter."""
        contactor = OldContactor(closed=True)
        self.assertTrue(verifyObject(IContactor, contactor))
        gk, clock = self.gatekeeper(contactor)
        self.assertFalse(gk.feedback)
        self.assertIsNone(gk.sensed)
        gk.start()
        self.assertTrue(gk.opening)  # it was closed: the open awaits the meter

    def test_incomplete_feedback_is_refused_clearly(self) -> None:
        """Declaring IContactorFeedback without ``sensed`` fails at start-up naming it."""
        with self.assertRaises(BrokenImplementation) as caught:
            self.gatekeeper(HalfFeedback())
        self.assertIn("sensed", str(caught.exception))

    def test_drop_ins_checked_at_build(self) -> None:
        """Through start-up's build_component (and check-config): a drop-in contactor of the
        old interface builds; one declaring IContactorFeedback without ``sensed`` is refused
        with a message naming the interface and the attribute."""
        from twisted.internet.task import Clock

        from sepgw.config.loader import ResolvedPlugin
        from sepgw.interfaces import BuildContext
        from sepgw.registry import PluginRegistry
        from sepgw.service.components import ComponentError, build_component
        from tests.helpers import write_plugin

        directory = Path(self.mktemp())
        body = """
            from twisted.internet.defer import succeed
            from zope.interface import implementer
            from sepgw.interfaces import ContactorState, IContactor, IContactorFeedback
            from sepgw.plugin import PluginFactory

            @implementer({interfaces})
            class Relay:
                state = ContactorState.open
                allowed = False
                feedback = True
                def start(self): pass
                def stop(self): pass
                def set_allowed(self, allowed): self.allowed = allowed
                def close(self): return succeed(self.state)
                def open(self): return succeed(self.state)

            contactor = PluginFactory(kind="contactor", name="{name}", description="Test.",
                                      build=lambda config, context: Relay())
        """
        write_plugin(directory, "weld_old_relay",
                     body.format(interfaces="IContactor", name="old-relay"))
        write_plugin(directory, "weld_half_relay",
                     body.format(interfaces="IContactor, IContactorFeedback",
                                 name="half-relay"))
        registry = PluginRegistry.discover([directory])
        context = BuildContext(reactor=Clock(), name="ports[0].contactor")
        old = build_component(ResolvedPlugin("ports[0].contactor",
                                             registry.find("contactor", "old-relay"), {}),
                              context)
        self.assertTrue(verifyObject(IContactor, old))
        with self.assertRaises(ComponentError) as caught:
            build_component(ResolvedPlugin("ports[0].contactor",
                                           registry.find("contactor", "half-relay"), {}),
                            context)
        self.assertIn("does not provide IContactorFeedback", str(caught.exception))
        self.assertIn("sensed", str(caught.exception))

    def test_welded_at_start_up(self) -> None:
        """Contacts already welded when the port starts (e.g. after a crash) are a weld fault
        at the deadline, before any PEV arrives."""
        from tests.test_evse_session import build
        from twisted.internet.task import Clock

        clock = Clock()
        contactor = build("contactor", "simulated", clock, stuck=True, delay=0.0)
        contactor.set_allowed(True)
        contactor.close()
        clock.advance(0)
        contactor.set_allowed(False)
        revoked: list[str] = []
        gk = Gatekeeper(clock, contactor, port="p", on_revoke=revoked.append,
                        meter_timeout=60)
        gk.start()
        clock.advance(1.0)
        self.assertRegex(gk.contactor_fault or "", r"still sensed closed .*\(port start\)")
        self.assertEqual(gk.contactor_status(), "welded")
        self.assertFalse(gk.may_close)
        self.assertRaises(FaultNotCleared, gk.clear_fault)


# --------------------------------------------------------------------------------------------
# End to end


def _inject(address: str, *words: str) -> None:
    """Send a CONTROL frame with the documented fault injector."""
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(root / "plugins" / "sim_link.py"), address, *words],
                   check=True, capture_output=True, cwd=root)


def _ctl(sock: Path, *words: str) -> tuple[int, dict[str, Any] | str]:
    out, err = io.StringIO(), io.StringIO()
    code = control(sock, list(words), out, err)
    return code, json.loads(out.getvalue()) if code == 0 else err.getvalue()


class WeldEndToEndTests(SynchronousTestCase):
    def test_weld_on_the_simulated_link(self) -> None:
        """Real processes: an authorized PEV discharges 3250 W; the contactor is stuck and
        the meter falls silent. The EVSE logs "open commanded", then a critical weld (never
        "opened"), revokes, and `sepgw ctl` shows the weld; clear-fault is refused while the
        contacts are closed and accepted once they open, and only then does the PEV lose the
        grid."""
        from tests.helpers import shared_pki
        from tests.processes import Process, free_port
        from tests.test_e2e_session import operator_socket
        from tests.test_e2e_twistd import write_configs

        directory = Path(self.mktemp()).absolute()
        evse_cfg, pev_cfg = write_configs(directory, free_port(), shared_pki())
        link = re.search(r'contactor = \{[^}]*link = "([^"]+)"', evse_cfg.read_text())
        assert link is not None
        address = link.group(1)
        evse = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(evse.kill)
        evse.wait_for(r"sepgw EVSE serving")
        pev = Process.twistd("sepgw-pev", pev_cfg)
        self.addCleanup(pev.kill)
        sock = operator_socket(evse_cfg)
        evse.wait_for(r"port1: not authorized -> authorized", timeout=30)
        self.assertEqual(_ctl(sock, "fixed-w", "port1", "50"), (0, {"ok": True}))
        deadline = time.monotonic() + 10
        status: Any = {}
        while time.monotonic() < deadline:
            status = _ctl(sock, "status")[1]["ports"][0]
            if status["meter"] and status["meter"]["w"] > 3000:
                break
            time.sleep(0.1)
        self.assertEqual(status["meter"]["w"], 3250.0)

        _inject(address, "contactor-stuck", "1")
        evse.wait_for(r"fault injection: contactor stuck")
        _inject(address, "meter-silent", "1")
        evse.wait_for(r"port1: contactor open commanded: meter silent")
        evse.wait_for(r"port1: CONTACTOR WELDED: contacts still sensed closed")
        code, status = _ctl(sock, "status")
        port = status["ports"][0]  # type: ignore[index]
        self.assertEqual((port["contactor"], port["contactor_sensed"], port["authorized"],
                          port["state"]), ("welded", "closed", False, "contactor fault"))
        self.assertIn("still sensed closed", port["violation"])
        self.assertRegex(port["meter_fault"], r"meter silent")
        pev.wait_for(r"opModEnergize False")
        code, error = _ctl(sock, "clear-fault", "port1")
        self.assertEqual(code, 1)
        self.assertIn("contacts still sensed closed", error)
        self.assertNotRegex(evse.output, r"port1: contactor opened")
        self.assertNotIn("grid lost", pev.output)  # welded: the PEV still sees the grid

        _inject(address, "contactor-stuck", "0")
        pev.wait_for(r"grid lost")
        self.assertEqual(_ctl(sock, "clear-fault", "port1"),
                         (0, {"ok": True, "cleared": "contacts sensed open"}))
        evse.wait_for(r"port1: contactor fault cleared by the operator")
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        pev.terminate()
        self.assertNotIn("Traceback", evse.output)
