"""Tests for the bundled simulated plugins (``plugins/``), built through their factories.

Every component is built the way start-up builds it: discovered with
:class:`sepgw.registry.PluginRegistry`, options validated by the factory's own
:class:`~sepgw.config.schema.Section`, built with a :class:`~sepgw.interfaces.BuildContext`
whose reactor is a :class:`twisted.internet.task.Clock`. Nothing touches the global reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from sepgw.interfaces import (
    KIND_INTERFACES,
    BuildContext,
    ContactorRefused,
    ContactorState,
    IContactor,
    IContactorFeedback,
    IInverter,
    ILinkListener,
    IMeter,
    IMeterListener,
    ITransport,
    LinkPeer,
    MeterSample,
    PluginKind,
)
from sepgw.registry import PluginRegistry, bundled_plugin_dir

_REGISTRY: PluginRegistry | None = None


def registry() -> PluginRegistry:
    """The bundled plugins, discovered once for this module."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = PluginRegistry.discover([bundled_plugin_dir()])
    return _REGISTRY


def build(testcase: SynchronousTestCase, kind: str, name: str,
          options: dict[str, Any] | None = None, clock: Clock | None = None) -> Any:
    """Build a bundled plugin's component from ``options`` (validated first) on ``clock``."""
    factory = registry().find(kind, name).factory
    config, problems = factory.options.validate(options or {})
    testcase.assertEqual(problems, [])
    return factory.build(config, BuildContext(reactor=clock or Clock(), name=f"test.{kind}"))


@implementer(IMeterListener)
class MeterRecorder:
    """Records what a meter delivers."""

    def __init__(self) -> None:
        self.samples: list[MeterSample] = []
        self.errors: list[str] = []

    def meter_sample(self, sample: MeterSample) -> None:
        self.samples.append(sample)

    def meter_error(self, reason: str) -> None:
        self.errors.append(reason)


@implementer(ILinkListener)
class LinkRecorder:
    """Records the link events of a transport, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def link_up(self, peer: LinkPeer) -> None:
        self.events.append(("up", peer))

    def link_down(self, reason: str) -> None:
        self.events.append(("down", reason))


class InterfaceTests(SynchronousTestCase):
    def test_every_bundled_component_verifies(self) -> None:
        """Each bundled simulated plugin and the loopback transport build, with default
        options, a component that provides its kind's interface (checked with verifyObject,
        as start-up does). Other bundled plugins (policies...) have their own tests."""
        wanted = {(PluginKind.transport, "loopback"), (PluginKind.contactor, "simulated"),
                  (PluginKind.meter, "simulated"), (PluginKind.inverter, "simulated")}
        built = set()
        for info in registry().plugins:
            if (info.kind, info.name) not in wanted:
                continue
            component = build(self, info.kind.value, info.name)
            self.assertTrue(verifyObject(KIND_INTERFACES[info.kind], component), info)
            built.add((info.kind, info.name))
        self.assertEqual(built, wanted)

    def test_options_validated_by_factory(self) -> None:
        """A factory's option schema rejects a bad value and an unknown key, with paths."""
        factory = registry().find("contactor", "simulated").factory
        _, problems = factory.options.validate({"delay": 11, "stuk": True})
        self.assertEqual(sorted(str(p) for p in problems), [
            "delay: 11.0 is above the maximum 10",
            "stuk: unknown key (did you mean 'stuck'?); allowed keys: control, delay, feedback, "
            "link, period, stuck",
        ])


class SimulatedContactorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.contactor = build(self, "contactor", "simulated", {"delay": 0.5}, self.clock)
        self.changes: list[ContactorState] = []
        self.contactor.listeners.append(self.changes.append)

    def test_provides_icontactor(self) -> None:
        """The simulated contactor provides IContactor and starts open and forbidden."""
        self.assertTrue(verifyObject(IContactor, self.contactor))
        self.contactor.start()
        self.assertEqual((self.contactor.state, self.contactor.allowed),
                         (ContactorState.open, False))

    def test_refuses_to_close_while_not_allowed(self) -> None:
        """close() while closing is not allowed fails with ContactorRefused and the contactor
        stays open, even long afterwards."""
        self.failureResultOf(self.contactor.close(), ContactorRefused)
        self.clock.advance(10)
        self.assertEqual(self.contactor.state, ContactorState.open)
        self.assertEqual(self.changes, [])

    def test_close_confirms_after_delay(self) -> None:
        """An allowed close is confirmed only after the configured delay on the clock."""
        self.contactor.set_allowed(True)
        d = self.contactor.close()
        self.clock.advance(0.49)
        self.assertNoResult(d)
        self.assertEqual(self.contactor.state, ContactorState.open)
        self.clock.advance(0.01)
        self.assertEqual(self.successResultOf(d), ContactorState.closed)
        self.assertEqual(self.contactor.state, ContactorState.closed)
        self.assertEqual(self.changes, [ContactorState.closed])

    def test_close_when_closed_is_immediate(self) -> None:
        """Closing an already closed contactor succeeds at once."""
        self.contactor.set_allowed(True)
        self.contactor.close()
        self.clock.advance(0.5)
        self.assertEqual(self.successResultOf(self.contactor.close()), ContactorState.closed)

    def test_forbidding_opens_at_once(self) -> None:
        """set_allowed(False) on a closed contactor opens it immediately, without waiting
        for the clock."""
        self.contactor.set_allowed(True)
        self.contactor.close()
        self.clock.advance(0.5)
        self.contactor.set_allowed(False)
        self.assertEqual(self.contactor.state, ContactorState.open)
        self.assertEqual(self.changes, [ContactorState.closed, ContactorState.open])
        self.failureResultOf(self.contactor.close(), ContactorRefused)

    def test_forbidding_cancels_pending_close(self) -> None:
        """set_allowed(False) while a close is pending cancels it: the contactor never
        closes, and nothing is left scheduled on the clock."""
        self.contactor.set_allowed(True)
        d = self.contactor.close()
        self.clock.advance(0.2)
        self.contactor.set_allowed(False)
        self.failureResultOf(d, ContactorRefused)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.contactor.state, ContactorState.open)
        self.assertEqual(self.changes, [])

    def test_cancelled_close_deferred_fails(self) -> None:
        """The Deferred of a close cancelled by set_allowed(False) fails with
        ContactorRefused instead of never firing."""
        self.contactor.set_allowed(True)
        d = self.contactor.close()
        self.contactor.set_allowed(False)
        self.failureResultOf(d, ContactorRefused)

    def test_repeated_close_then_forbid_never_closes(self) -> None:
        """Two close() calls, then forbid and allow again: no earlier close request may
        close the contactor later by itself."""
        self.contactor.set_allowed(True)
        first, second = self.contactor.close(), self.contactor.close()
        self.contactor.set_allowed(False)
        self.failureResultOf(first, ContactorRefused)
        self.failureResultOf(second, ContactorRefused)
        self.contactor.set_allowed(True)
        self.clock.advance(1)
        self.assertEqual(self.contactor.state, ContactorState.open)

    def test_stop_forbids_and_opens(self) -> None:
        """stop() forbids closing and opens the contactor."""
        self.contactor.set_allowed(True)
        self.contactor.close()
        self.clock.advance(0.5)
        self.contactor.stop()
        self.assertEqual((self.contactor.state, self.contactor.allowed),
                         (ContactorState.open, False))

    def test_stuck_contactor_stays_closed(self) -> None:
        """A contactor configured stuck (welded) still refuses to close while not allowed,
        but once closed it reports closed whatever it is told: forbidding and open() both
        leave it closed, so the fault is visible."""
        clock = Clock()
        contactor = build(self, "contactor", "simulated", {"stuck": True, "delay": 0.1}, clock)
        self.failureResultOf(contactor.close(), ContactorRefused)
        contactor.set_allowed(True)
        d = contactor.close()
        clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), ContactorState.closed)
        contactor.set_allowed(False)
        self.assertEqual(contactor.state, ContactorState.closed)
        self.assertEqual(self.successResultOf(contactor.open()), ContactorState.closed)
        self.assertFalse(contactor.allowed)

    def test_stuck_injected_at_run_time(self) -> None:
        """set_stuck(True) on a closed contactor (no link) keeps it closed when forbidden;
        set_stuck(False) then opens it at once, since closing is not allowed."""
        self.contactor.set_allowed(True)
        self.contactor.close()
        self.clock.advance(0.5)
        self.contactor.set_stuck(True)
        self.contactor.set_allowed(False)
        self.assertEqual(self.contactor.state, ContactorState.closed)
        self.contactor.set_stuck(False)
        self.assertEqual(self.contactor.state, ContactorState.open)
        self.assertEqual(self.changes, [ContactorState.closed, ContactorState.open])

    def test_auxiliary_contact_senses_welded_contacts(self) -> None:
        """By default the simulated contactor has an auxiliary contact (IContactorFeedback):
        ``sensed`` follows the physical contacts, so stuck contacts read closed after an
        open command, and open once freed."""
        self.assertTrue(verifyObject(IContactorFeedback, self.contactor))
        self.assertTrue(self.contactor.feedback)
        self.assertEqual(self.contactor.sensed, ContactorState.open)
        self.contactor.set_allowed(True)
        self.contactor.close()
        self.clock.advance(0.5)
        self.assertEqual(self.contactor.sensed, ContactorState.closed)
        self.contactor.set_stuck(True)
        self.contactor.set_allowed(False)
        self.assertEqual((self.contactor.sensed, self.contactor.contacts),
                         (ContactorState.closed, ContactorState.closed))
        self.contactor.set_stuck(False)
        self.assertEqual(self.contactor.sensed, ContactorState.open)

    def test_without_feedback_state_is_the_command(self) -> None:
        """With ``feedback = false`` there is no auxiliary contact: ``sensed`` is unknown and
        ``state`` is the commanded position, so a welded unit reports open while its
        contacts (and the link) stay closed, as a real driver without feedback would."""
        clock = Clock()
        contactor = build(self, "contactor", "simulated",
                          {"stuck": True, "delay": 0.1, "feedback": False}, clock)
        self.assertFalse(contactor.feedback)
        self.assertEqual(contactor.sensed, ContactorState.unknown)
        contactor.set_allowed(True)
        contactor.close()
        clock.advance(0.1)
        self.assertEqual(contactor.state, ContactorState.closed)
        contactor.set_allowed(False)
        self.assertEqual(contactor.state, ContactorState.open)
        self.assertEqual(contactor.contacts, ContactorState.closed)
        self.assertEqual(contactor.sensed, ContactorState.unknown)


class SimulatedMeterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.meter = build(self, "meter", "simulated",
                           {"interval": 0.5, "voltage": 230.0, "frequency": 50.0}, self.clock)
        self.recorder = MeterRecorder()
        self.meter.add_listener(self.recorder)

    def test_provides_imeter(self) -> None:
        """The simulated meter provides IMeter, with its configured interval and no error."""
        self.assertTrue(verifyObject(IMeter, self.meter))
        self.assertEqual((self.meter.interval, self.meter.error), (0.5, None))

    def test_samples_at_interval(self) -> None:
        """Started, the meter samples at once and then every interval on the injected
        clock, stamping samples with the clock's time and its configured grid values."""
        self.meter.power = (-3000.0, 150.0)
        self.meter.start()
        self.assertEqual(len(self.recorder.samples), 1)
        self.clock.advance(0.4)
        self.assertEqual(len(self.recorder.samples), 1)
        self.clock.pump([0.1, 0.5, 0.5])
        self.assertEqual([s.timestamp for s in self.recorder.samples],
                         [1000.0, 1000.5, 1001.0, 1001.5])
        self.assertEqual(self.recorder.samples[-1],
                         MeterSample(1001.5, -3000.0, 150.0, 230.0, 50.0))
        self.assertEqual(self.recorder.errors, [])

    def test_stop_stops_sampling(self) -> None:
        """After stop() no more samples arrive and nothing is left on the clock."""
        self.meter.start()
        self.meter.stop()
        self.clock.advance(5)
        self.assertEqual(len(self.recorder.samples), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_silent_meter_sends_nothing(self) -> None:
        """A meter made silent stops delivering samples (without reporting an error: the
        consumer must notice the silence itself)."""
        self.meter.start()
        self.meter.silent = True
        self.clock.pump([0.5] * 4)
        self.assertEqual(len(self.recorder.samples), 1)
        self.assertEqual(self.recorder.errors, [])

    def test_failure_reported_to_listeners(self) -> None:
        """fail(reason) sets the meter's error, tells every listener, and stops samples."""
        other = MeterRecorder()
        self.meter.add_listener(other)
        self.meter.start()
        self.meter.fail("CT disconnected")
        self.assertEqual(self.meter.error, "CT disconnected")
        self.assertEqual((self.recorder.errors, other.errors),
                         (["CT disconnected"], ["CT disconnected"]))
        self.clock.pump([0.5] * 4)
        self.assertEqual(len(self.recorder.samples), 1)

    def test_clear_and_set_grid_without_link(self) -> None:
        """Without a link, clear() ends an injected error so samples resume, and set_grid()
        changes the voltage and frequency in the samples."""
        self.meter.start()
        self.meter.fail("CT disconnected")
        self.meter.clear()
        self.meter.set_grid(voltage=207.0, frequency=49.8)
        self.clock.advance(0.5)
        self.assertEqual(self.recorder.samples[-1], MeterSample(1000.5, 0.0, 0.0, 207.0, 49.8))
        self.assertIsNone(self.meter.error)

    def test_listener_must_provide_interface(self) -> None:
        """add_listener refuses an object that does not provide IMeterListener."""
        self.assertRaises(TypeError, self.meter.add_listener, object())

    def test_many_meters_share_one_timer(self) -> None:
        """500 meters at the same interval on one clock keep one timer between them, not
        one each (the reactor's timer heap was a third of the EVSE's CPU at 500 ports),
        and each still samples every interval; the last one stopped leaves no timer."""
        meters = []
        recorders = []
        for i in range(500):
            m = build(self, "meter", "simulated", {"interval": 0.5}, self.clock)
            r = MeterRecorder()
            m.add_listener(r)
            m.start()
            meters.append(m)
            recorders.append(r)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.pump([0.5] * 4)
        self.assertEqual({len(r.samples) for r in recorders}, {5})
        for m in meters:
            m.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_failing_listener_silences_only_its_meter(self) -> None:
        """A listener raising on a sample stops that meter's samples (it falls silent, as a
        meter of its own timer would, for the gatekeeper's watchdog to see) and is logged;
        the other meters sharing the timer keep sampling."""

        @implementer(IMeterListener)
        class Broken:
            def meter_sample(self, sample: MeterSample) -> None:
                raise RuntimeError("listener bug")

            def meter_error(self, reason: str) -> None:
                pass

        self.meter.start()
        self.clock.advance(0.25)
        broken = build(self, "meter", "simulated", {"interval": 0.5}, self.clock)
        broken.add_listener(Broken())
        broken.start()
        self.clock.pump([0.25, 0.5, 0.5])
        self.assertEqual(len(self.recorder.samples), 4)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        broken.stop()
        self.meter.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LoopbackTransportTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.transport = build(self, "transport", "loopback",
                               {"interface": "lo", "peer_address": "::1"})
        self.recorder = LinkRecorder()

    def test_provides_itransport(self) -> None:
        """The loopback transport provides ITransport and reports its interface."""
        self.assertTrue(verifyObject(ITransport, self.transport))
        self.assertEqual((self.transport.interface, self.transport.is_up), ("lo", False))

    def test_link_up_and_down(self) -> None:
        """start() brings the link up with the configured peer; stop() takes it down with a
        reason; both reach every listener."""
        self.transport.add_listener(self.recorder)
        self.transport.start()
        self.assertTrue(self.transport.is_up)
        self.transport.stop()
        self.assertFalse(self.transport.is_up)
        self.assertEqual(self.recorder.events, [
            ("up", LinkPeer(mac=None, address="::1")),
            ("down", "transport stopped"),
        ])

    def test_late_listener_told_link_is_up(self) -> None:
        """A listener added while the link is up gets link_up at once."""
        self.transport.start()
        self.transport.add_listener(self.recorder)
        self.assertEqual(self.recorder.events, [("up", LinkPeer(address="::1"))])

    def test_stop_when_down_is_quiet(self) -> None:
        """Stopping a transport that never started reports no link_down."""
        self.transport.add_listener(self.recorder)
        self.transport.stop()
        self.assertEqual(self.recorder.events, [])


class SimulatedInverterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.inverter = build(self, "inverter", "simulated",
                              {"max_w": 7200.0, "capacity_wh": 60000.0, "soc_pct": 80.0},
                              self.clock)

    def test_provides_iinverter(self) -> None:
        """The simulated inverter provides IInverter."""
        self.assertTrue(verifyObject(IInverter, self.inverter))

    def test_no_power_without_energize(self) -> None:
        """Without opModEnergize (absent or false) the inverter produces no power, whatever
        opModFixedW asks."""
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)
        self.inverter.apply({"opModFixedW": 50})
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)
        self.inverter.apply({"opModEnergize": False, "opModFixedW": 50})
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)

    def test_follows_fixed_w(self) -> None:
        """Energized, the inverter runs at opModFixedW percent of its rated power: positive
        discharges, negative charges, limited to the rating."""
        for pct, watts in ((50, 3600.0), (-25, -1800.0), (150, 7200.0), (-150, -7200.0)):
            self.inverter.apply({"opModEnergize": True, "opModFixedW": pct})
            self.assertEqual(self.inverter.reading().active_power_w, watts, pct)
        self.inverter.apply({"opModEnergize": True})
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)

    def test_state_of_charge_integrates_on_clock(self) -> None:
        """State of charge follows power × time on the injected clock: one hour at 7200 W
        discharge takes 48000 Wh to 40800 Wh (80 % to 68 %), then half an hour charging at
        3600 W brings it to 71 %; it is stamped with the clock's time."""
        reading = self.inverter.reading()
        self.assertEqual((reading.timestamp, reading.state_of_charge_pct), (0.0, 80.0))
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 100})
        self.clock.advance(3600)
        reading = self.inverter.reading()
        self.assertEqual(reading.timestamp, 3600.0)
        self.assertAlmostEqual(reading.state_of_charge_pct, 68.0)
        self.inverter.apply({"opModEnergize": True, "opModFixedW": -50})
        self.clock.advance(1800)
        self.assertAlmostEqual(self.inverter.reading().state_of_charge_pct, 71.0)

    def test_state_of_charge_bounded(self) -> None:
        """The battery never goes below empty or above full."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 100})
        self.clock.advance(100 * 3600)
        self.assertEqual(self.inverter.reading().state_of_charge_pct, 0.0)
        self.inverter.apply({"opModEnergize": True, "opModFixedW": -100})
        self.clock.advance(100 * 3600)
        self.assertEqual(self.inverter.reading().state_of_charge_pct, 100.0)

    def test_rogue_without_link(self) -> None:
        """Without a link the grid is always present, so a rogue inverter (rogue_w) discharges
        at once with no controls, limited to its rating."""
        rogue = build(self, "inverter", "simulated", {"max_w": 7200.0, "rogue_w": 9000.0},
                      self.clock)
        self.assertEqual(rogue.reading().active_power_w, 7200.0)
        rogue.set_rogue_w(0)
        self.assertEqual(rogue.reading().active_power_w, 0.0)

    def test_stop_de_energizes(self) -> None:
        """stop() drops every control, so the inverter stops producing power."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 100})
        self.inverter.stop()
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)
        self.assertEqual(self.inverter.controls, {})
