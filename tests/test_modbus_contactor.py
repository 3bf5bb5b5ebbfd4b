"""The modbus-relay contactor plugin against a real Modbus peer: a pymodbus server
(tests/sunspec_server.py) acting as a relay module whose discrete input 1 follows coil 0 (an
auxiliary contact), or stays put when the test welds the contacts.

Every step waits on the plugin's Deferreds, bounded by a timeout; nothing sleeps.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from sepgw.interfaces import (BuildContext, ContactorRefused, ContactorState, IContactor,
                              IContactorFeedback)
from sepgw.registry import PluginRegistry, bundled_plugin_dir
from tests.sunspec_server import ModbusTestServer

WAIT_S = 10.0
COIL, AUX = 0, 1
WRITE_SINGLE_COIL = 5

_REGISTRY: PluginRegistry | None = None


def factory() -> Any:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = PluginRegistry.discover([bundled_plugin_dir()])
    return _REGISTRY.find("contactor", "modbus-relay").factory


def bounded(d: Deferred[Any]) -> Deferred[Any]:
    return d.addTimeout(WAIT_S, reactor)


class ModbusContactorTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def contactor(self, **options: Any) -> Any:
        self.server = ModbusTestServer({0: 0}, relay=(COIL, AUX))
        self.server.start()
        self.addCleanup(self.server.stop)
        config = {"host": "127.0.0.1", "port": self.server.port, "coil": COIL, "input": AUX,
                  "timeout": 2.0, "confirm_s": 2.0, "interval": 0.05, **options}
        validated, problems = factory().options.validate(config)
        self.assertEqual(problems, [])
        contactor = factory().build(validated, BuildContext(reactor=reactor,
                                                            name="ports[0].contactor"))
        yield bounded(contactor.start())
        self.addCleanup(lambda: bounded(contactor.stop()))
        return contactor

    def coil_switched_on(self) -> bool:
        """Whether any request ever switched the coil on."""
        return any(fc == WRITE_SINGLE_COIL and address == COIL and values and values[0]
                   for fc, address, values in self.server.requests)

    @inlineCallbacks
    def test_never_closes_when_not_allowed(self) -> Any:
        """Closing while not allowed fails with ContactorRefused and the relay module never
        receives a switch-on: the driver enforces the contract itself."""
        c = yield self.contactor()
        self.assertTrue(verifyObject(IContactor, c))
        self.assertTrue(verifyObject(IContactorFeedback, c))
        self.assertEqual((c.state, c.sensed, c.feedback),
                         (ContactorState.open, ContactorState.open, True))
        yield self.assertFailure(bounded(c.close()), ContactorRefused)
        self.assertFalse(self.coil_switched_on())
        self.assertEqual(self.server.coils(COIL, 1), [False])

    @inlineCallbacks
    def test_close_confirmed_by_auxiliary_contact_then_forbid_opens(self) -> Any:
        """Allowed, close() switches the coil on and fires with closed once the auxiliary
        contact reads closed; forbidding switches it off and the contact reads open."""
        c = yield self.contactor()
        c.set_allowed(True)
        state = yield bounded(c.close())
        self.assertEqual(state, ContactorState.closed)
        self.assertEqual(c.sensed, ContactorState.closed)
        self.assertEqual(self.server.coils(COIL, 1), [True])
        c.set_allowed(False)
        state = yield bounded(c.open())
        self.assertEqual(self.server.coils(COIL, 1), [False])
        yield bounded(c.poll())
        self.assertEqual((c.state, c.sensed), (ContactorState.open, ContactorState.open))

    @inlineCallbacks
    def test_welded_contacts_are_sensed(self) -> Any:
        """Contacts that stay closed after the coil is switched off (welded) are reported:
        open() fires with closed and ``sensed`` stays closed, for weld detection."""
        c = yield self.contactor()
        c.set_allowed(True)
        yield bounded(c.close())
        self.server.welded = True
        c.set_allowed(False)
        state = yield bounded(c.open())
        self.assertEqual(self.server.coils(COIL, 1), [False])
        self.assertEqual(state, ContactorState.closed)
        self.assertEqual(c.sensed, ContactorState.closed)

    @inlineCallbacks
    def test_close_not_confirmed_fails_and_switches_off(self) -> Any:
        """A close the auxiliary contact never confirms fails after confirm_s, naming the
        device, coil and input, and the coil is switched off again."""
        c = yield self.contactor(confirm_s=0.3)
        self.server.welded = True  # the input no longer follows the coil: stays open
        c.set_allowed(True)
        failure = yield self.assertFailure(bounded(c.close()), Exception)
        self.assertIn(f"127.0.0.1:{self.server.port} unit 1 coil 0", str(failure))
        self.assertIn("discrete input 1 still reads open after 0.3 s", str(failure))
        yield bounded(c.poll())
        self.assertEqual(self.server.coils(COIL, 1), [False])

    @inlineCallbacks
    def test_queued_switch_on_withdrawn_when_forbidden(self) -> Any:
        """A close whose switch-on is still queued behind another request when closing is
        forbidden never reaches the relay module."""
        c = yield self.contactor()
        c.set_allowed(True)
        polling = c.poll()  # a request on the wire: the switch-on queues behind it
        closing = c.close()
        c.set_allowed(False)
        yield self.assertFailure(bounded(closing), ContactorRefused)
        yield bounded(polling)
        yield bounded(c.poll())
        self.assertFalse(self.coil_switched_on())
        self.assertEqual(self.server.coils(COIL, 1), [False])

    @inlineCallbacks
    def test_coil_on_while_not_allowed_is_switched_off(self) -> Any:
        """A coil found on while closing is not allowed (switched by someone else) is
        switched off at the next reading."""
        c = yield self.contactor()
        self.server.call(lambda: self.server._server.async_setValues(1, 1, COIL, [True]))
        yield bounded(c.poll())
        self.assertEqual(self.server.coils(COIL, 1), [False])

    @inlineCallbacks
    def test_normally_closed_auxiliary_contact(self) -> Any:
        """With input_inverted the auxiliary input reading on means the contacts are open."""
        c = yield self.contactor(input=2, input_inverted=True)
        self.server.set_inputs(2, [True])
        yield bounded(c.poll())
        self.assertEqual(c.sensed, ContactorState.open)
        self.server.set_inputs(2, [False])
        yield bounded(c.poll())
        self.assertEqual(c.sensed, ContactorState.closed)

    @inlineCallbacks
    def test_without_feedback_state_follows_the_coil(self) -> Any:
        """Without an auxiliary contact the state is the coil's once the module confirmed
        the write, and ``feedback`` is False (the gatekeeper then checks on the meter)."""
        c = yield self.contactor(input=-1)
        self.assertFalse(c.feedback)
        c.set_allowed(True)
        state = yield bounded(c.close())
        self.assertEqual(state, ContactorState.closed)
        c.set_allowed(False)
        state = yield bounded(c.open())
        self.assertEqual(state, ContactorState.open)

    @inlineCallbacks
    def test_module_gone_is_unknown(self) -> Any:
        """With the relay module gone the sensed state is unknown and an error names the
        device and the input."""
        c = yield self.contactor()
        self.server.stop()
        yield bounded(c.poll())
        self.assertEqual(c.state, ContactorState.unknown)
        self.assertIn(f"127.0.0.1:{self.server.port}", c.error)
