"""PEV resynchronisation (sepgw.pev.session.J3072Client.resync): the real PEV client against
sepgw's EVSE in memory on one fake clock (tests/test_pev_client.py's World).

What is right, stated independently of the client: the PEV may tell its inverter to discharge
only while the EVSE serving it now grants it (its port controller's ``granted``) and only after
it read that EVSE's DefaultDERControl (``GET .../dderc``, the EVSE's URI plan) since the event
that made its old authorization stale. An EVSE restart is a new EVSE on the same clock.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI

from sepgw.pev.http import ConnectionTracker, TrackedEndpoint, TrackingEndpointFactory
from sepgw.pev.resync import on_continue
from sepgw.security.tls import TLSSettings, client_policy
from tests.helpers import shared_pki
from tests.test_pev_client import BASE, RecordingInverter, World


class Recorder:
    """Between the client and the EVSE: every answer with its status, the clock time and
    which EVSE (generation) answered it."""

    def __init__(self, world: "Watched") -> None:
        self.world = world
        self.inner = world.agent
        self.answers: list[tuple[int, str, str, int, int]] = []
        """(event number, method, path, status, EVSE generation)."""

    def request(self, method: bytes, uri: bytes, headers: Any = None,
                bodyProducer: Any = None) -> Deferred[Any]:
        path = uri.decode().removeprefix(BASE).split("?")[0]

        def answered(response: Any) -> Any:
            self.answers.append((self.world.tick(), method.decode(), path,
                                 response.code, self.world.generation))
            return response
        d: Deferred[Any] = self.inner.request(method, uri, headers, bodyProducer)
        return d.addCallback(answered)

    def dderc_reads(self, generation: int, since: int) -> list[int]:
        """When (event number) the given EVSE answered a GET of the DefaultDERControl with
        200, from event ``since`` on."""
        return [t for t, m, p, code, g in self.answers
                if m == "GET" and p.endswith("/dderc") and code == 200 and g == generation
                and t >= since]


class CheckedInverter(RecordingInverter):
    """Records, with each apply, the time and whether the EVSE serving now grants."""

    def __init__(self, world: "Watched") -> None:
        super().__init__()
        self.world = world
        self.log: list[tuple[int, bool, bool, int]] = []
        """(event number, discharge allowed, the EVSE grants, EVSE generation)."""

    def apply(self, controls: Any) -> None:
        super().apply(controls)
        self.log.append((self.world.tick(), bool(controls.get("opModEnergize")),
                         self.world.port.granted, self.world.generation))


class Watched(World):
    """The World with a recorded link, a checked inverter, a connection tracker and EVSE
    restarts."""

    def __init__(self, **kwargs: Any) -> None:
        self.generation = 0
        self.events = 0
        super().__init__(**kwargs)
        self.inverter = CheckedInverter(self)
        self.client.inverter = self.inverter
        self.recorder = Recorder(self)
        self.client.http.agent = self.recorder
        self.tracker = ConnectionTracker()
        self.client.http.connections = self.tracker
        self.tracker.observers.append(self.client._connection_event)

    def tick(self) -> int:
        """The next event number: answers and inverter commands in the order they happen
        (many happen at one clock instant)."""
        self.events += 1
        return self.events

    def restart_evse(self) -> int:
        """The EVSE process dies and a new one starts: every resource of the old session is
        gone; the PEV's next request creates a new session (as sepgw's EVSE does)."""
        self.port.stop()
        self.meter.stop()
        self.generation += 1
        self.build_evse()
        self.agent.agent = self.traversal
        return self.tick()

    def connection(self) -> Protocol:
        """A connection made and established through the real tracker."""
        protocol = self.tracker.watch(Protocol())
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\n")
        return protocol


def lose(protocol: Protocol) -> None:
    protocol.connectionLost(Failure(ConnectionError("connection lost")))


class ResyncTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = Watched()
        self.w.start()
        self.w.run(1.1)
        self.assertTrue(self.w.inverter.energized, "the PEV is authorized before the fault")

    def assert_no_discharge_without_current_grant(self, since: int) -> None:
        """From event ``since`` on, every permission to discharge came while the EVSE
        serving then granted, after that EVSE answered a DefaultDERControl read since."""
        for t, energize, granted, generation in self.w.inverter.log:
            if t < since or not energize:
                continue
            self.assertTrue(granted, f"discharge allowed at {t} without the EVSE's grant")
            reads = self.w.recorder.dderc_reads(generation, since)
            self.assertTrue(reads and reads[0] <= t,
                            f"discharge allowed at {t} before a DefaultDERControl read of "
                            f"EVSE #{generation} since {since}")

    def test_evse_restart_found_by_404(self) -> None:
        """The EVSE restarts (same URIs, the PEV's session gone): the first 404 on a
        session-static resource (the MirrorUsagePoint) withdraws the authorization in the
        same instant, the inverter goes to no export, the sequence is redone from discovery
        and discharge resumes only after the new EVSE's DefaultDERControl is read and it
        grants. V2G-4.1.2-1 V2G-4.6.4-2 V2G-4.6.4-3"""
        self.w.restart_evse()
        for _ in range(200):
            self.w.run(0.1)
            if self.w.client.resyncs:
                break
        t404, path = next((n, p) for n, m, p, code, g in self.w.recorder.answers
                          if code == 404 and g == 1)
        self.assertTrue(path.startswith("/mup/"), path)
        self.assertIn("answered 404", self.w.client.resyncs[0][1])
        after = [(n, e) for n, e, _, _ in self.w.inverter.log if n > t404]
        self.assertEqual(after[0], (t404 + 1, False), "no export right at the 404")
        self.w.run(3)
        self.assertTrue(self.w.port.granted)
        self.assertTrue(self.w.inverter.energized)
        self.assertEqual(self.w.client.state, "periodic")
        names = [s.name for s in self.w.client.report.steps]
        self.assertIn("resynchronised: sequence redone from discovery", names)
        self.assertEqual(names.count("resource discovery"), 2)
        self.assert_no_discharge_without_current_grant(t404)
        # The new EVSE got the whole information exchange again.
        session = self.w.resources.sessions[0]
        self.assertEqual(set(session.written), {"di", "ps", "dercap", "ders", "dera", "dstat"})
        self.assertIsNotNone(session.mirror)

    def test_tls_session_end_stops_discharge_at_once(self) -> None:
        """The last established connection to the EVSE is lost (as when the EVSE process is
        killed): authorization false in that instant, before any new connection, and
        discharge only after the restarted EVSE's DefaultDERControl is read and granted.
        V2G-4.5.2-4 V2G-4.6.4-3"""
        first = self.w.connection()
        t = self.w.restart_evse()
        lose(first)
        self.assertFalse(self.w.client.energize)
        self.assertEqual(self.w.inverter.log[-1][:2], (t + 1, False))
        self.assertEqual(self.w.client.state, "resync")
        self.assertIn("TLS session ended: connection #1", self.w.client.resyncs[0][1])
        self.w.run(3)
        self.assertTrue(self.w.inverter.energized)
        self.assert_no_discharge_without_current_grant(t)

    def test_new_connection_beside_a_live_one_is_the_same_session(self) -> None:
        """The EVSE keeps a PEV's session per LFDI and link, not per connection: a second
        connection opened while one is established, the loss of a connection that never
        carried an answer (failed handshake), and the loss of one of two established ones
        leave the authorization alone; losing the last one does not."""
        first = self.w.connection()
        second = self.w.connection()
        lose(first)
        failed = self.w.tracker.watch(Protocol())
        lose(failed)
        self.w.run(0.5)
        self.assertEqual(self.w.client.resyncs, [])
        self.assertTrue(self.w.inverter.energized)
        lose(second)
        self.assertFalse(self.w.inverter.energized)
        self.assertEqual(len(self.w.client.resyncs), 1)

    def test_server_closing_connections_on_purpose_is_not_a_session_end(self) -> None:
        """An EVSE that answers ``Connection: close`` ends connections on purpose: their
        ends are not session ends (the 404 and stall checks still apply)."""
        self.w.tracker.server_closes = True
        lose(self.w.connection())
        self.assertEqual(self.w.client.resyncs, [])
        self.assertTrue(self.w.inverter.energized)

    def test_stall_with_revocation_meanwhile(self) -> None:
        """The PEV is frozen for 20 s (its clock jumps past its loop schedule) while the
        EVSE revokes for lost heartbeats: on resuming it stops discharging before anything
        else, redoes the sequence, and discharges again only once the EVSE has granted anew
        and the DefaultDERControl was read again. V2G-4.8.1.1-3 V2G-4.8.1.1-4 V2G-4.6.4-3"""
        t = self.w.tick()
        self.w.clock.advance(20)  # one jump: every timer sees the clock 20 s on
        self.assertFalse(self.w.port.granted, "the EVSE revoked during the stall")
        self.assertFalse(self.w.client.energize)
        self.assertFalse(self.w.inverter.energized)
        self.assertIn("the PEV stalled", self.w.client.resyncs[0][1])
        first = next(e for n, e, _, _ in self.w.inverter.log if n > t)
        self.assertFalse(first, "the first inverter command after the stall is no export")
        self.w.flush()
        self.w.run(6)
        self.assertTrue(self.w.port.granted)
        self.assertTrue(self.w.inverter.energized)
        self.assert_no_discharge_without_current_grant(t)

    def test_short_stall_still_needs_a_new_read(self) -> None:
        """A 3 s stall (over the threshold, under the EVSE's heartbeat loss: the EVSE still
        grants) still voids the authorization until the DefaultDERControl is read again."""
        t = self.w.tick()
        self.w.clock.advance(3)
        self.assertTrue(self.w.port.granted)
        self.assertIn("the PEV stalled", self.w.client.resyncs[0][1])
        first = next(e for n, e, _, _ in self.w.inverter.log if n > t)
        self.assertFalse(first, "the first inverter command after the stall is no export")
        self.w.flush()
        self.w.run(1)
        self.assertTrue(self.w.inverter.energized)
        self.assert_no_discharge_without_current_grant(t)

    def test_jitter_is_not_a_stall(self) -> None:
        """The clock running 1.5 s late (under the threshold) changes nothing."""
        self.w.clock.advance(1.5)
        self.w.flush()
        self.w.run(1)
        self.assertEqual(self.w.client.resyncs, [])
        self.assertTrue(self.w.inverter.energized)

    def test_evse_unreachable_then_back(self) -> None:
        """While the restarted EVSE is not yet reachable the resynchronisation is tried again
        every second without discharging, and completes once the EVSE answers; the run
        report still passes (an EVSE restarting is no failure of the EVSE)."""
        first = self.w.connection()
        self.w.agent.down = True
        lose(first)
        self.w.run(3.05)
        self.assertEqual(self.w.client.state, "resync")
        self.assertFalse(self.w.inverter.energized)
        t = self.w.restart_evse()
        self.w.agent.down = False
        self.w.run(3)
        self.assertEqual(self.w.client.state, "periodic")
        self.assertTrue(self.w.inverter.energized)
        self.assert_no_discharge_without_current_grant(t)
        # The attempts that found no EVSE are neither passed nor failed in the report.
        self.assertTrue(self.w.client.report.passed, self.w.client.report.text())

    def test_refusal_during_resync_is_non_j3072(self) -> None:
        """A restarted EVSE that no longer has this PEV's EndDevice (another certificate
        identity is served) puts the PEV in non-J3072 mode, as in the first sequence.
        V2G-4.5.3-4"""
        first = self.w.connection()
        self.w.restart_evse()
        self.w.agent.client = "other"
        lose(first)
        self.w.run(1)
        self.assertEqual(self.w.client.state, "non-J3072")
        self.assertFalse(self.w.inverter.energized)

    def test_resync_while_asleep_waits_for_wake(self) -> None:
        """A session end while the PEV sleeps sends nothing; on waking the whole sequence
        is redone before any discharge. V2G-4.8.3-2"""
        first = self.w.connection()
        ensureDeferred(self.w.client.sleep())
        self.w.flush()
        sent = len(self.w.recorder.answers)
        lose(first)
        self.w.run(3)
        self.assertEqual(len(self.w.recorder.answers), sent)
        t = self.w.tick()
        ensureDeferred(self.w.client.wake())
        self.w.run(2)
        self.assertEqual(self.w.client.state, "periodic")
        self.assertTrue(self.w.inverter.energized)
        self.assert_no_discharge_without_current_grant(t)

    def test_resync_removes_old_subscriptions_and_keeps_the_mirror(self) -> None:
        """With notifications, a resynchronisation against the same EVSE session removes the
        old subscriptions before subscribing again (the EVSE holds four, not eight) and posts
        the same MirrorUsagePoint mRID (the EVSE accepts it again)."""
        w = Watched()
        w.client.notify_uri = "https://[::1]:9/ntfy"
        w.start()
        w.run(1.1)
        session = w.resources.sessions[0]
        self.assertEqual(len(session_subscriptions(w)), 4)
        lose(w.connection())
        w.run(2)
        self.assertEqual(w.client.state, "periodic")
        self.assertIs(w.resources.sessions[0], session)
        self.assertEqual(len(session_subscriptions(w)), 4)
        self.assertTrue(w.inverter.energized)


class HeartbeatTests(SynchronousTestCase):
    def test_unanswered_heartbeats_logged(self) -> None:
        """When a heartbeat falls due while earlier ones are still unanswered (the EVSE
        frozen), the PEV logs it, with how long the oldest has waited; heartbeats go on
        every second regardless. V2G-4.8.1.1-1"""
        from twisted.logger import capturedLogs

        w = Watched()
        w.start()
        w.run(1.1)
        sent: list[str] = []

        class Silent:
            def request(self, method: bytes, uri: bytes, headers: Any = None,
                        bodyProducer: Any = None) -> Deferred[Any]:
                sent.append(uri.decode())
                return Deferred()
        w.client.http.agent = Silent()
        with capturedLogs() as events:
            w.run(3.05)
        lines = [e["log_format"].format(**e) for e in events
                 if "Heartbeat unanswered" in e.get("log_format", "")]
        self.assertEqual(len([u for u in sent if u.endswith("/dstat")]), 3)
        self.assertEqual(lines[0], "Heartbeat unanswered: 1 DERStatus PUT(s) pending, the "
                                   "oldest for 1.0 s")


def session_subscriptions(w: World) -> list[Any]:
    return list(w.resources.get("/edev/0/sub", {}, w.ids["pev"]).Subscription)


class TrackerTests(SynchronousTestCase):
    def test_tracked_endpoint_counts_connections(self) -> None:
        """The tracking endpoint hands the pool the very protocol the inner endpoint made,
        numbers it, and reports its first data and its loss."""
        events: list[tuple[str, int]] = []
        tracker = ConnectionTracker()
        tracker.observers.append(lambda e, n: events.append((e, n)))
        made = Protocol()

        class Inner:
            def connect(self, factory: Any) -> Deferred[Any]:
                return succeed(made)
        endpoint = TrackedEndpoint(Inner(), tracker)
        got = self.successResultOf(endpoint.connect(None))
        self.assertIs(got, made)
        got.dataReceived(b"x")
        got.dataReceived(b"y")
        lose(got)
        self.assertEqual(events, [("made", 1), ("established", 1), ("ended", 1)])
        self.assertEqual(tracker.open, set())

    def test_endpoint_factory_https_only(self) -> None:
        """The Agent's endpoints are TLS endpoints counted by the tracker; plain HTTP is
        never used (V2G-4.1.3-2)."""
        from twisted.internet.testing import MemoryReactorClock

        pki = shared_pki()
        tls = TLSSettings(pki / "pev.pem", pki / "pev.key", (pki / "serca.pem",))
        factory = TrackingEndpointFactory(MemoryReactorClock(), client_policy(tls),
                                          ConnectionTracker())
        endpoint = factory.endpointForURI(URI.fromBytes(b"https://[::1]:8443/dcap"))
        self.assertIsInstance(endpoint, TrackedEndpoint)
        with self.assertRaises(ValueError):
            factory.endpointForURI(URI.fromBytes(b"http://[::1]:8443/dcap"))

    def test_sigcont_queues_the_stall_check(self) -> None:
        """SIGCONT queues the callback in the reactor thread (not run in the handler); the
        handler is removed afterwards."""
        queued: list[Any] = []

        class Reactor:
            def callFromThread(self, f: Any, *a: Any) -> None:
                queued.append(f)
        calls: list[int] = []
        previous = signal.getsignal(signal.SIGCONT)
        remove = on_continue(Reactor(), lambda: calls.append(1))
        assert remove is not None
        try:
            os.kill(os.getpid(), signal.SIGCONT)
            self.assertEqual(calls, [])
            self.assertEqual(len(queued), 1)
            queued[0]()
            self.assertEqual(calls, [1])
        finally:
            remove()
        self.assertEqual(signal.getsignal(signal.SIGCONT), previous)
