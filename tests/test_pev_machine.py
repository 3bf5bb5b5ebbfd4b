"""The PEV's J3072 state machines (sepgw.pev.machine), machine by machine: input sequences
in, the exact outputs out (no I/O, no clock)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from sepgw.pev.machine import (
    Beat,
    CommsOutput,
    HeartbeatMachine,
    Input as I,
    NoTransition,
    Output as O,
    SequenceMachine,
    State as S,
)

FIRST_RUN = [I.start, I.step_done, I.step_done, I.step_done, I.step_done]
"""Start, then discovery, step 1, step 2 and step 3 passed (metrology under way)."""


def run(machine: SequenceMachine, inputs: list[I]) -> list[tuple[S, tuple[O, ...]]]:
    return [(machine.state, machine.feed(i)) for i in inputs]


def running(authorized: bool) -> SequenceMachine:
    m = SequenceMachine()
    run(m, FIRST_RUN + [I.done_authorized if authorized else I.done_not_authorized])
    return m


class SequenceTests(SynchronousTestCase):
    def test_first_run_in_order(self) -> None:
        """The sequence goes discovery, site limits (step 1), exchange (step 2),
        management information (step 3), metrology, in that order (profile 4.5-4.7), and
        only its end starts the periodic operations and tells the inverter.
        V2G-4.6-1"""
        m = SequenceMachine()
        outputs = [m.feed(i) for i in FIRST_RUN]
        self.assertEqual(m.state, S.metrology)
        self.assertEqual(outputs, [(O.start_watch, O.run_sequence), (), (), (), ()])
        self.assertEqual(m.feed(I.done_not_authorized), (O.apply_inverter, O.start_periodic))
        self.assertEqual(m.state, S.not_authorized)

    def test_states_visited(self) -> None:
        """Each step moves one state on."""
        m = SequenceMachine()
        seen = [state for state, _ in run(m, FIRST_RUN)] + [m.state]
        self.assertEqual(seen, [S.idle, S.discovering, S.site_limits, S.exchanging,
                                S.management, S.metrology])

    def test_authorization_granted_during_the_sequence_waits_for_its_end(self) -> None:
        """opModEnergize true read in step 3 is applied (the inverter is told, may_discharge
        stays false until the sequence ends); the end of the sequence enters authorized."""
        m = SequenceMachine()
        run(m, FIRST_RUN[:4])
        self.assertEqual(m.feed(I.energized), (O.apply_inverter,))
        self.assertEqual(m.state, S.management)
        m.feed(I.step_done)
        self.assertEqual(m.feed(I.done_authorized), (O.apply_inverter, O.start_periodic))
        self.assertEqual(m.state, S.authorized)

    def test_energize_toggles(self) -> None:
        """opModEnergize true and false move between authorized and not authorized, each
        change telling the inverter. V2G-4.6.4-2 V2G-4.6.4-3"""
        m = running(False)
        self.assertEqual(run(m, [I.energized, I.controls_changed, I.deenergized]),
                         [(S.not_authorized, (O.apply_inverter,)),
                          (S.authorized, (O.apply_inverter,)),
                          (S.authorized, (O.apply_inverter,))])
        self.assertEqual(m.state, S.not_authorized)

    def test_failure_in_the_first_run_is_non_j3072(self) -> None:
        """A refused step or an EVSE not reachable in the first run reverts to non-J3072
        mode: everything stopped, the inverter told, the reversion recorded.
        V2G-4.5.2-4 V2G-4.5.3-4"""
        for failure in (I.refused, I.unreachable):
            for steps in range(1, 6):
                m = SequenceMachine()
                run(m, FIRST_RUN[:steps])
                self.assertEqual(m.feed(failure),
                                 (O.stop_all, O.apply_inverter, O.record_non_j3072))
                self.assertEqual(m.state, S.non_j3072)

    def test_non_j3072_is_final(self) -> None:
        """In non-J3072 mode a lost session starts no resynchronisation, and sleep is not
        taken. V2G-4.5.2-4"""
        m = SequenceMachine()
        run(m, [I.start, I.refused])
        self.assertEqual(m.feed(I.session_lost), ())
        self.assertEqual(m.state, S.non_j3072)
        self.assertFalse(m.accepts(I.sleep))
        self.assertRaises(NoTransition, m.feed, I.wake)


class ResyncTests(SynchronousTestCase):
    def test_lost_session_voids_authorization_and_redoes_the_sequence(self) -> None:
        """An authorized PEV whose session is lost stops discharging at once (session
        voided, inverter told) and redoes the sequence; only its end, with opModEnergize
        read again, authorizes. V2G-4.5.2-4 V2G-4.1.2-1"""
        m = running(True)
        self.assertEqual(m.feed(I.session_lost),
                         (O.void_session, O.apply_inverter, O.rerun_soon))
        self.assertEqual(m.state, S.resyncing)
        self.assertEqual(m.phase, "resync")
        self.assertEqual(run(m, [I.step_done] * 4), [(S.resyncing, ())] * 4)
        self.assertEqual(m.feed(I.done_authorized),
                         (O.record_resynchronised, O.apply_inverter, O.start_periodic))
        self.assertEqual(m.state, S.authorized)

    def test_unreachable_during_resync_retries(self) -> None:
        """While resynchronising, an EVSE not reachable is tried again (the PEV stays in
        resyncing); a refusal reverts to non-J3072 mode. V2G-4.5.2-4"""
        m = running(False)
        m.feed(I.session_lost)
        self.assertEqual(run(m, [I.unreachable, I.unreachable]),
                         [(S.resyncing, (O.retry_later,))] * 2)
        self.assertEqual(m.feed(I.refused),
                         (O.stop_all, O.apply_inverter, O.record_non_j3072))

    def test_lost_again_while_resyncing(self) -> None:
        """A second loss during a resynchronisation voids again and reruns."""
        m = running(True)
        m.feed(I.session_lost)
        self.assertEqual(m.feed(I.session_lost),
                         (O.void_session, O.apply_inverter, O.rerun_soon))

    def test_lost_during_the_first_run(self) -> None:
        """A session lost during the first run resynchronises too."""
        m = SequenceMachine()
        run(m, FIRST_RUN[:3])
        self.assertEqual(m.feed(I.session_lost),
                         (O.void_session, O.apply_inverter, O.rerun_soon))

    def test_nothing_before_start_or_after_stop(self) -> None:
        """Before the start and after the stop a lost session does nothing."""
        m = SequenceMachine()
        self.assertEqual(m.feed(I.session_lost), ())
        run(m, [I.start, I.stop])
        self.assertEqual(m.feed(I.session_lost), ())
        self.assertEqual(m.state, S.stopped)


class SleepTests(SynchronousTestCase):
    def test_sleep_and_wake(self) -> None:
        """Sleep stops discharge and posts inverterStatus 2; wake re-reads the management
        information, then posts inverterStatus 0 and tells the inverter.
        V2G-4.8.3-1 V2G-4.8.3-4 V2G-4.8.3-5"""
        m = running(True)
        self.assertEqual(run(m, [I.sleep, I.wake, I.done_authorized]),
                         [(S.authorized, (O.apply_inverter, O.post_sleeping)),
                          (S.sleeping, (O.reread_management,)),
                          (S.waking, (O.post_awake, O.apply_inverter))])
        self.assertEqual(m.state, S.authorized)

    def test_asleep_is_periodic_phase(self) -> None:
        """Asleep and waking are shown as the periodic phase, and count as asleep."""
        m = running(False)
        m.feed(I.sleep)
        self.assertEqual((m.phase, m.asleep, m.running), ("periodic", True, False))
        m.feed(I.wake)
        self.assertEqual((m.phase, m.asleep), ("periodic", True))

    def test_failed_wake_stays_asleep(self) -> None:
        """A wake whose re-read fails leaves the PEV asleep (it can be woken again)."""
        m = running(False)
        run(m, [I.sleep, I.wake])
        self.assertEqual(m.feed(I.unreachable), ())
        self.assertEqual(m.state, S.sleeping)
        self.assertTrue(m.accepts(I.wake))

    def test_session_lost_while_asleep_is_redone_on_waking(self) -> None:
        """Nothing is sent while asleep: a lost session voids the authorization at once and
        the sequence is redone when the PEV wakes. V2G-4.8.3-2 V2G-4.8.3-4"""
        m = running(True)
        m.feed(I.sleep)
        self.assertEqual(m.feed(I.session_lost), (O.void_session, O.apply_inverter))
        self.assertEqual(m.state, S.sleeping_resync)
        self.assertEqual(m.feed(I.wake), (O.rerun_now,))
        self.assertEqual(m.state, S.resyncing)

    def test_session_lost_while_waking(self) -> None:
        """A loss during the re-read on waking waits for the next wake too."""
        m = running(True)
        run(m, [I.sleep, I.wake])
        self.assertEqual(m.feed(I.session_lost), (O.void_session, O.apply_inverter))
        self.assertEqual(m.state, S.sleeping_resync)

    def test_sleep_only_while_running(self) -> None:
        """Sleep is not taken during the sequence, a resynchronisation or asleep."""
        for inputs in (FIRST_RUN[:2], FIRST_RUN + [I.done_authorized, I.session_lost],
                       FIRST_RUN + [I.done_authorized, I.sleep]):
            m = SequenceMachine()
            run(m, inputs)
            self.assertRaises(NoTransition, m.feed, I.sleep)

    def test_stop_from_everywhere(self) -> None:
        """Every state but stopped takes stop, with everything stopped."""
        for inputs in ([], FIRST_RUN[:3], FIRST_RUN + [I.done_authorized],
                       FIRST_RUN + [I.done_authorized, I.sleep],
                       FIRST_RUN + [I.done_authorized, I.session_lost], [I.start, I.refused]):
            m = SequenceMachine()
            run(m, inputs)
            self.assertEqual(m.feed(I.stop), (O.stop_all,))
            self.assertEqual(m.state, S.stopped)


class HeartbeatTests(SynchronousTestCase):
    def test_ten_failures_lose_communications(self) -> None:
        """The tenth failed heartbeat in a row is a loss of communications, reported once.
        V2G-4.8.1.1-5"""
        m = HeartbeatMachine()
        outputs = [m.feed(Beat.failed) for _ in range(12)]
        self.assertEqual(outputs, [()] * 9 + [(CommsOutput.lost,)] + [()] * 2)
        self.assertFalse(m.ok)

    def test_an_answer_resets_the_count(self) -> None:
        """Nine failures, one answer, nine failures: no loss (ten in a row are needed).
        V2G-4.8.1.1-5"""
        m = HeartbeatMachine()
        beats = [Beat.failed] * 9 + [Beat.answered] + [Beat.failed] * 9
        self.assertEqual([o for b in beats for o in m.feed(b)], [])
        self.assertTrue(m.ok)

    def test_three_answers_restore(self) -> None:
        """After a loss, three answered heartbeats in a row restore communications; a
        failure in between starts the count again."""
        m = HeartbeatMachine()
        for _ in range(10):
            m.feed(Beat.failed)
        beats = [Beat.answered, Beat.answered, Beat.failed, Beat.answered, Beat.answered,
                 Beat.answered]
        self.assertEqual([m.feed(b) for b in beats],
                         [(), (), (), (), (), (CommsOutput.restored,)])
        self.assertTrue(m.ok)

    def test_reset(self) -> None:
        """A new session starts with communications good and the counts cleared."""
        m = HeartbeatMachine()
        for _ in range(10):
            m.feed(Beat.failed)
        self.assertEqual(m.feed(Beat.reset), ())
        self.assertEqual((m.ok, m.failures, m.successes), (True, 0, 0))
