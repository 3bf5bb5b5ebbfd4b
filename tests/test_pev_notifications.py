"""The PEV's subscriptions and notification endpoint (profile 4.1.4, 5.9): in memory against
sepgw's own EVSE, whose Notifier reaches the PEV's notification resource through a
``RequestTraversalAgent``, all on one fake clock; then with real processes and real
mutual TLS in both directions."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from treq.testing import RequestTraversalAgent, StubTreq
from twisted.trial.unittest import SynchronousTestCase

from sepgw.evse.notify import Notifier, Subscriptions
from sepgw.model import DERControlBase, DefaultDERControl, Notification, serialize
from sepgw.pev.notifications import NotificationResource, evse_only, notification_site, uri
from tests.helpers import shared_pki
from tests.processes import Process, free_port
from tests.test_e2e_twistd import write_configs
from tests.test_evse_server import identities
from tests.test_pev_client import BASE, World

NTFY = "https://pev.test/ntfy"


class NotifiedWorld(World):
    """The World of test_pev_client with the EVSE's Notifier delivering to the PEV's
    notification resource (mounted at /ntfy, as the service does)."""

    def __init__(self, subscribe: bool = True, **behaviour: bool) -> None:
        super().__init__(**behaviour)
        site = notification_site("/ntfy", NotificationResource(self._received))
        self.pev_agent = RequestTraversalAgent(site.resource)
        self.delivered: list[str] = []
        self.resources.notifier = Notifier(lambda lfdi: self.pev_agent, self.clock,
                                           server_url=BASE)
        if subscribe:
            self.client.notify_uri = NTFY

    def _received(self, notification: Notification) -> str | None:
        self.delivered.append(notification.subscribedResource)
        return self.client.notification_received(notification)

    def flush(self) -> None:
        for _ in range(20):
            self.traversal.flush()
            self.pev_agent.flush()

    @property
    def store(self) -> Subscriptions:
        return self.resources._extras[0].subscriptions

    def gets(self, href: str) -> int:
        """How many GETs of ``href`` (any query) the PEV made."""
        return sum(1 for p in self.agent.paths if p.split("?")[0] == href)

    def until(self, condition: Any, limit: float, step: float = 0.01) -> float:
        """Advance the clock in small steps until ``condition()``; return the time taken."""
        taken = 0.0
        while not condition():
            if taken > limit:
                raise AssertionError(f"not within {limit} s")
            self.clock.advance(step)
            self.flush()
            taken += step
        return taken


DDERC, DERC = "/edev/0/derp/1/dderc", "/edev/0/derp/1/derc"
FSA, DERP = "/edev/0/fsa", "/edev/0/derp"


class SubscriptionTests(SynchronousTestCase):
    def test_subscribes_to_the_four_table4_resources(self) -> None:
        """The PEV subscribes to the FunctionSetAssignmentsList, DERProgramList,
        DefaultDERControl and DERControlList through its EndDevice's SubscriptionListLink,
        with XML encoding, level +S1, limit 50 and its notificationURI, each before first
        reading it. V2G-4.1.4-3 V2G-4.1.1-25"""
        w = NotifiedWorld()
        w.start()
        subs = {s.subscribedResource: s for s in w.store.list()}
        self.assertEqual(set(subs), {FSA, DERP, DDERC, DERC})
        for sub in subs.values():
            self.assertEqual((int(sub.encoding), sub.level, sub.limit, sub.notificationURI),
                             (0, "+S1", 50, NTFY))
        self.assertEqual(w.client.subscriptions, {s.subscribedResource: s.href
                                                  for s in w.store.list()})
        paths = w.agent.paths
        for href in (FSA, DERP, DDERC, DERC):
            first_get = next(i for i, p in enumerate(paths) if p.split("?")[0] == href)
            self.assertLess(paths.index("/edev/0/sub"), first_get)
        names = [s.name for s in w.client.report.steps]
        for name in ("FunctionSetAssignmentsList", "DERProgramList", "DefaultDERControl",
                     "DERControlList"):
            self.assertIn(f"subscribed to {name}", names)
        self.assertTrue(w.client.report.passed, w.client.report.text())

    def test_grant_arrives_by_notification(self) -> None:
        """The EVSE grants opModEnergize once the PEV has answered its DERControls (during
        the sequence, after the PEV read the DefaultDERControl), and the grant reaches the
        PEV by notification with the clock not moved at all: no poll was waited for, and
        the subscribed DefaultDERControl is never polled. V2G-4.1.4-3 V2G-4.6.4-2"""
        w = NotifiedWorld()
        t0 = w.clock.seconds()
        w.start()
        self.assertEqual(w.clock.seconds(), t0)
        self.assertTrue(w.port.granted)
        self.assertTrue(w.client.energize)
        self.assertTrue(w.inverter.energized)
        self.assertIn(DDERC, w.delivered)
        self.assertEqual(w.gets(DDERC), 1)
        w.run(5)
        self.assertEqual(w.gets(DDERC), 1)
        self.assertEqual(w.gets(DERC), 1)
        step = next(s for s in w.client.report.steps if s.name.startswith("authorized"))
        self.assertEqual(step.detail, "learned by notification")

    def test_new_control_arrives_by_notification(self) -> None:
        """A new DERControl (the operator's opModFixedW) reaches the inverter by
        notification without waiting for a poll, and is answered. V2G-4.8.2-2"""
        w = NotifiedWorld()
        w.start()
        w.run(1.1)
        self.assertTrue(w.client.energize)
        w.port.set_fixed_w(30.0)
        w.flush()
        self.assertEqual(w.inverter.applied[-1]["opModFixedW"], 30.0)
        extra = w.resources.management(w.resources.sessions[0]).extras()[0]
        self.assertEqual(w.resources.sessions[0].statuses(bytes(extra.mRID)), {1, 2})
        self.assertEqual(w.gets(DERC), 1)

    def test_long_list_notification_fetches_the_rest(self) -> None:
        """A DERControlList notification with fewer entries than ``all`` (limit 1 here)
        makes the PEV GET the remaining entries, from where the notification stopped."""
        w = NotifiedWorld()
        w.client.subscription_limit = 1
        w.start()
        w.run(1.1)
        before = len(w.agent.paths)
        w.port.set_fixed_w(20.0)
        w.flush()
        fetched = [p for p in w.agent.paths[before:] if p.startswith(DERC)]
        self.assertEqual(fetched, [f"{DERC}?s=1&l=50"])
        self.assertEqual(w.inverter.applied[-1]["opModFixedW"], 20.0)
        total = len(w.resources.management(w.resources.sessions[0]).controls)
        self.assertEqual(len(w.client._controls), total)

    def test_revocation_arrives_by_notification(self) -> None:
        """Revocation too: the PEV stops discharging as soon as the EVSE revokes, well
        within the 3 s it has. V2G-4.8.1.2-3"""
        w = NotifiedWorld()
        w.start()
        w.run(1.1)
        w.port.gatekeeper.trip("test revocation")
        w.flush()
        self.assertFalse(w.inverter.energized)

    def test_refused_subscriptions_fall_back_to_polling(self) -> None:
        """When the EVSE refuses the subscriptions, the run report says so and the PEV
        polls the DefaultDERControl and DERControlList (and the DERProgramList) at the
        DERProgramList's pollRate, 1 s. V2G-4.1.4-4 V2G-4.1.4-5"""
        self.patch(Subscriptions, "_check", lambda self, sub: "refused for the test")
        w = NotifiedWorld()
        w.start()
        self.assertEqual(w.client.subscriptions, {})
        refused = [s for s in w.client.report.steps if "refused" in s.name]
        self.assertEqual(len(refused), 4)
        self.assertFalse(refused[0].passed)
        self.assertIn("400 refused for the test", refused[0].detail)
        self.assertIn("V2G-4.1.4-4", refused[0].requirements)
        counts = [w.gets(h) for h in (DDERC, DERC, DERP)]
        w.run(3.15)
        self.assertEqual([w.gets(h) - c for h, c in zip((DDERC, DERC, DERP), counts)],
                         [3, 3, 3])
        self.assertTrue(w.client.energize)
        step = next(s for s in w.client.report.steps if s.name.startswith("authorized"))
        self.assertEqual(step.detail, "learned by poll")

    def test_cancellation_falls_back_to_polling(self) -> None:
        """A Notification with status 1 (cancelled) makes the PEV poll that resource
        again; the others stay subscribed and unpolled. V2G-4.1.4-4"""
        w = NotifiedWorld()
        w.start()
        w.run(1.1)
        href = next(s.href for s in w.store.list() if s.subscribedResource == DDERC)
        w.resources.notifier.cancel(w.store, href)
        w.flush()
        self.assertNotIn(DDERC, w.client.subscriptions)
        self.assertIn(DERC, w.client.subscriptions)
        step = next(s for s in w.client.report.steps if "cancelled" in s.name)
        self.assertEqual(step.name, "subscription to DefaultDERControl cancelled by the "
                                    "EVSE (status 1): polling it at the pollRate")
        dderc, derc = w.gets(DDERC), w.gets(DERC)
        w.run(2.15)
        self.assertEqual(w.gets(DDERC) - dderc, 2)
        self.assertEqual(w.gets(DERC), derc)
        # A change now reaches the PEV at its next poll, not by notification.
        w.port.gatekeeper.trip("test revocation")
        w.flush()
        self.assertTrue(w.client.energize)
        w.run(1.05)
        self.assertFalse(w.client.energize)

    def test_dropped_subscription_found_by_safety_check(self) -> None:
        """A subscription the EVSE dropped without telling (its notifier gives up after
        failed deliveries) is found by the safety check (GET of its Location, 404) and the
        resource is polled again. V2G-4.1.4-4"""
        w = NotifiedWorld()
        w.client.safety_poll_s = 5.0
        w.start()
        href = next(s.href for s in w.store.list() if s.subscribedResource == DERC)
        w.store.remove(href)
        w.run(5.15)
        self.assertNotIn(DERC, w.client.subscriptions)
        self.assertTrue(any("no longer exists" in s.name for s in w.client.report.steps))
        derc = w.gets(DERC)
        w.run(1.05)
        self.assertEqual(w.gets(DERC) - derc, 1)

    def test_unsubscribe(self) -> None:
        """Leaving, the PEV DELETEs its subscriptions."""
        from twisted.internet.defer import ensureDeferred

        w = NotifiedWorld()
        w.start()
        ensureDeferred(w.client.unsubscribe())
        w.flush()
        self.assertEqual(len(w.store), 0)
        self.assertEqual(w.client.subscriptions, {})

    def test_no_notify_uri_no_subscriptions(self) -> None:
        """Without a notification endpoint the PEV subscribes to nothing and polls."""
        w = NotifiedWorld(subscribe=False)
        w.start()
        self.assertEqual(len(w.store), 0)
        periodic = next(s for s in w.client.report.steps if s.name.startswith("periodic"))
        self.assertIn("subscribed: none", periodic.detail)


class ResourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.received: list[Notification] = []
        self.answer: str | None = None

        def handler(n: Notification) -> str | None:
            self.received.append(n)
            return self.answer

        self.treq = StubTreq(notification_site("/ntfy", NotificationResource(handler)).resource)

    def request(self, method: str, body: bytes = b"", path: str = "/ntfy") -> tuple[int, str]:
        d = self.treq.request(method, "https://pev.test" + path, data=body)
        response = self.successResultOf(d)
        text = self.successResultOf(self.treq.text_content(response))
        return response.code, text

    def notification(self) -> bytes:
        return serialize(Notification(
            subscribedResource="/edev/0/derp/1/dderc", status=0,
            Resource=DefaultDERControl(href="/edev/0/derp/1/dderc", mRID=b"\x01" * 16,
                                       description="x",
                                       DERControlBase=DERControlBase(opModEnergize=True)),
            subscriptionURI="https://[::1]:8443/edev/0/sub/1"))

    def test_valid_notification_created(self) -> None:
        """A schema-valid Notification POSTed is handed over and answered 201."""
        code, _ = self.request("POST", self.notification())
        self.assertEqual(code, 201)
        self.assertEqual(self.received[0].subscribedResource, "/edev/0/derp/1/dderc")

    def test_refusals(self) -> None:
        """Other methods get 405; a body that is not a Notification, or one the client
        refuses, gets 400 with a reason; other paths 404."""
        self.assertEqual(self.request("GET")[0], 405)
        code, text = self.request("POST", b"<Time xmlns='urn:ieee:std:2030.5:ns'/>")
        self.assertEqual(code, 400)
        self.assertIn("not a valid Notification", text)
        self.answer = "this PEV has no subscription to /x"
        code, text = self.request("POST", self.notification())
        self.assertEqual((code, text.strip()), (400, self.answer))
        self.assertEqual(self.request("POST", self.notification(), "/other")[0], 404)

    def test_evse_only(self) -> None:
        """The TLS allow hook admits only the EVSE the PEV reached, and nobody before: no
        other server can push controls to the PEV. V2G-4.7.1-6"""
        ids = identities()
        seen: list[Any] = [None]
        allow = evse_only(lambda: seen[0])
        self.assertIn("not reached its EVSE", allow(ids["pev"]) or "")
        seen[0] = ids["pev2"] if "pev2" in ids else next(
            v for k, v in ids.items() if k != "pev")
        self.assertIsNone(allow(seen[0]))
        self.assertIn("is not the EVSE's", allow(ids["pev"]) or "")

    def test_uri(self) -> None:
        """IPv6 literals are bracketed in the notificationURI."""
        self.assertEqual(uri("::1", 4000, "/ntfy"), "https://[::1]:4000/ntfy")
        self.assertEqual(uri("127.0.0.1", 4000, "/ntfy"), "https://127.0.0.1:4000/ntfy")


class RealProcessTests(SynchronousTestCase):
    def test_notifications_over_mutual_tls(self) -> None:
        """`twistd sepgw-pev` with the default configuration listens for notifications
        with its own certificate, subscribes, and learns the EVSE's grant by a
        Notification the EVSE POSTed over mutual TLS (the PEV admitting only that EVSE's
        LFDI); on SIGTERM it removes its subscriptions. V2G-4.1.4-3 V2G-4.1.3-2"""
        pki = shared_pki()
        directory = Path(self.mktemp()).absolute()
        evse_cfg, pev_cfg = write_configs(directory, free_port(), pki)
        report = directory / "report.json"
        evse = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(evse.kill)
        evse.wait_for(r"sepgw EVSE serving")
        pev = Process.twistd("sepgw-pev", pev_cfg, "--report", str(report))
        self.addCleanup(pev.kill)
        pev.wait_for(r"Notifications: listening at https://\[::1\]:\d+/ntfy")
        pev.wait_for(r"opModEnergize True \(learned by notification\)", timeout=30)
        self.assertEqual(pev.terminate(), -signal.SIGTERM, pev.output)
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        self.assertNotIn("Traceback", evse.output + pev.output)
        self.assertNotIn("Refused TLS", pev.output)
        data = json.loads(report.read_text())
        names = [s["name"] for s in data["steps"]]
        self.assertIn("subscribed to DefaultDERControl", names)
        self.assertTrue(data["passed"], data)
