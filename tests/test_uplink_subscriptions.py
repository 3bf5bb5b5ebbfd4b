"""The DME uplink's subscriptions: notifications re-walk at once, polling falls back when a
subscription is refused, cancelled, gone or silent (as the PEV role does); the
PEVs' Responses reported upstream; the uplink status while the DME is lost. In memory on
task.Clock against a subscribing variant of tests/dme_server.py."""

from __future__ import annotations

from typing import Any, Callable

from treq.testing import RequestTraversalAgent
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from sepgw.model import (
    DERControlBase, ListLink, Notification, Subscription, parse, serialize,
)
from sepgw.pev.http import SEPClient, _Bytes
from sepgw.pev.notifications import NotificationResource, notification_site
from sepgw.uplink.client import State, UplinkClient
from sepgw.uplink.queue import DurableQueue
from tests.dme_server import DMEServer
from tests.test_uplink_client import BASE, LFDI, SFDI, SITE, T0, SwitchableAgent
from tests.test_uplink_client import World as UplinkWorld

NOTIFY_URI = "https://evse.test:8443/ntfy"
FSAL, DERPL, DDERC, DERC = "/edev/1/fsa", "/derp", "/derp/1/dderc", "/derp/1/derc"


class SubscribingDME(DMEServer):
    """The test head-end with 2030.5 subscriptions: a SubscriptionList on each EndDevice
    (POST, GET and DELETE of a Subscription) and a Notification to each subscriber of a
    resource the test changes. ``deliver(uri, body)`` carries it; ``silent`` drops every
    notification (a DME that cannot reach the EVSE); ``refuse`` answers subscriptions 403."""

    def __init__(self, clock: Any, deliver: Callable[[str, bytes], Any] | None = None,
                 **kw: Any) -> None:
        super().__init__(clock, **kw)
        self.deliver = deliver
        self.subs: dict[str, Subscription] = {}
        self.silent = False
        self.refuse = False
        self.sent: list[tuple[str, int]] = []
        self.made = 0

    def _edev(self, device: Any) -> Any:
        doc = super()._edev(device)
        doc.SubscriptionListLink = ListLink(href=f"{device.href}/sub", all=len(self.subs))
        return doc

    def _route(self, method: str, path: str, query: bytes, body: bytes, *rest: Any
               ) -> tuple[int, bytes, str | None]:
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "edev" and parts[2] == "sub":
            if len(parts) == 3 and method == "POST":
                if self.refuse:
                    return 403, b"subscriptions not offered to this device", None
                sub = parse(body, Subscription)
                self.made += 1
                href = f"{path}/{self.made}"
                sub.href = href
                self.subs[href] = sub
                return 201, b"", href
            if len(parts) == 4 and path in self.subs:
                if method == "GET":
                    return 200, serialize(self.subs[path]), None
                if method == "DELETE":
                    del self.subs[path]
                    return 204, b"", None
            return 404, b"", None
        return super()._route(method, path, query, body, *rest)

    def add_control(self, base: DERControlBase, **kw: Any) -> Any:
        control = super().add_control(base, **kw)
        self.changed(DERC)
        return control

    def set_default(self, base: DERControlBase | None) -> None:
        super().set_default(base)
        self.changed(DDERC)
        self.changed(DERPL)

    def changed(self, href: str, status: int = 0) -> None:
        """Notify every subscriber of ``href`` (status non-zero: the subscription is
        cancelled and removed)."""
        for location, sub in list(self.subs.items()):
            if sub.subscribedResource != href:
                continue
            if status:
                del self.subs[location]
            if self.silent or self.deliver is None:
                continue
            self.sent.append((href, status))
            self.deliver(sub.notificationURI, serialize(Notification(
                subscribedResource=href, subscriptionURI=location, status=status)))

    def subscribed(self) -> set[str]:
        return {s.subscribedResource for s in self.subs.values()}


class World(UplinkWorld):
    """The uplink with a notification endpoint, the subscribing DME delivering to it in
    memory (through the real NotificationResource: parsed, 201 or 400)."""

    dme: SubscribingDME

    def __init__(self, *, pev: bool = True, verify_s: float = 300.0) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.codes: list[int] = []
        self.dme = SubscribingDME(self.clock, deliver=self._deliver, poll_rate=10,
                                  post_rate=30)
        self.traversal = RequestTraversalAgent(self.dme.resource())
        self.agent = SwitchableAgent(self.traversal)
        self.sink: list[dict[str, Any]] = []
        self.pev = pev
        self.queue = DurableQueue(":memory:")
        self.client = UplinkClient(
            http=SEPClient(self.agent, BASE), clock=self.clock, lfdi=LFDI, sfdi=SFDI,
            dcap="/dcap", site=SITE, ports=["port1"], queue=self.queue, sink=self._sink,
            randomize=lambda b: 0, notify_uri=NOTIFY_URI, verify_s=verify_s)
        site = notification_site("/ntfy", NotificationResource(
            self.client.notification_received))
        self.ntfy = RequestTraversalAgent(site.resource)

    def _deliver(self, uri: str, body: bytes) -> None:
        d = self.ntfy.request(b"POST", uri.encode(), Headers(
            {b"Content-Type": [b"application/sep+xml"]}), _Bytes(body))
        d.addCallback(lambda response: self.codes.append(response.code))

    def flush(self) -> None:
        for _ in range(30):
            self.traversal.flush()
            self.ntfy.flush()


class Counting:
    """Counts the DME's GETs per path (wraps ``handle``)."""

    def __init__(self, dme: DMEServer) -> None:
        self.gets: dict[str, int] = {}
        inner = dme.handle

        def handle(method: str, path: str, query: bytes, body: bytes, *rest: Any,
                   **kw: Any) -> Any:
            if method == "GET":
                self.gets[path] = self.gets.get(path, 0) + 1
            return inner(method, path, query, body, *rest, **kw)
        dme.handle = handle  # type: ignore[method-assign]


class SubscriptionTests(SynchronousTestCase):
    def test_subscribes_to_the_control_resources(self) -> None:
        """With a notification endpoint, the uplink subscribes (POST to the EndDevice's
        SubscriptionList, notificationURI its own listener) to the
        FunctionSetAssignmentsList, the DERProgramList, the DefaultDERControl and the
        DERControlList; with everything subscribed it stops polling at the pollRate (10 s)
        and only checks at the check rate."""
        w = World()
        w.dme.set_default(DERControlBase(opModMaxLimW=9000))
        w.start()
        self.assertEqual(w.client.state, State.running)
        self.assertEqual(w.dme.subscribed(), {FSAL, DERPL, DDERC, DERC})
        self.assertEqual({s.notificationURI for s in w.dme.subs.values()}, {NOTIFY_URI})
        count = Counting(w.dme)
        w.run(100)
        self.assertEqual(count.gets.get(DERC, 0), 0)  # no polling at the 10 s pollRate
        w.run(250)
        self.assertEqual(count.gets.get(DERC, 0), 1)  # the 300 s check

    def test_notification_applies_a_new_control_at_once(self) -> None:
        """A DERControl added at the DME reaches the site within the same second through
        the notification (the pollRate is 10 s); the notification is answered 201."""
        w = World()
        w.start()
        w.dme.add_control(DERControlBase(opModMaxLimW=4000), duration=600)
        w.run(0.5)
        self.assertEqual(w.site.get("opModMaxLimW"), 4000)
        self.assertEqual(w.codes, [201])
        self.assertEqual(w.client.notifications, 1)

    def test_notification_for_unknown_resource_refused(self) -> None:
        """A notification about a resource the EVSE did not subscribe to is refused (400)
        and changes nothing."""
        w = World()
        w.start()
        w._deliver(NOTIFY_URI, serialize(Notification(
            subscribedResource="/somewhere/else", subscriptionURI="/edev/1/sub/9",
            status=0)))
        w.flush()
        self.assertEqual(w.codes, [400])
        self.assertEqual(w.client.notifications, 0)

    def test_refused_subscription_polls(self) -> None:
        """A DME that refuses subscriptions (403) is polled at its pollRate (10 s): a new
        control is applied at the next poll, and the status says why it is polled
        (the PEV role's fallback rule, applied to the uplink)."""
        w = World()
        w.dme.refuse = True
        w.start()
        self.assertEqual(w.dme.subs, {})
        self.assertIn("403", w.client.status()["subscriptions"]["polled"][DERC])
        w.dme.add_control(DERControlBase(opModMaxLimW=3000), duration=600)
        w.run(5)
        self.assertIsNone(w.site.get("opModMaxLimW"))
        w.run(6)
        self.assertEqual(w.site.get("opModMaxLimW"), 3000)

    def test_cancelled_subscription_falls_back_to_polling(self) -> None:
        """A notification with a non-zero status (the DME cancelled the subscription) puts
        that resource back on polling at the pollRate: a control added later is applied
        within one pollRate."""
        w = World()
        w.start()
        w.dme.changed(DERC, status=1)
        w.flush()
        self.assertNotIn(DERC, w.client.subscriptions)
        self.assertEqual(w.client.fallbacks, 1)
        self.assertNotIn(DERC, w.dme.subscribed())  # not subscribed again: polled
        w.dme.silent = True
        w.dme.add_control(DERControlBase(opModMaxLimW=2500), duration=600)
        w.run(11)
        self.assertEqual(w.site.get("opModMaxLimW"), 2500)

    def test_silent_dme_detected_by_the_check(self) -> None:
        """Notifications that never arrive: the check (at 300 s) finds the DERControlList
        changed with no notification, falls back to polling it at the pollRate and keeps
        polling (it is not subscribed again until the next reconnect)."""
        w = World()
        w.start()
        w.dme.silent = True
        w.dme.add_control(DERControlBase(opModMaxLimW=2000), duration=3600)
        w.run(100)
        self.assertIsNone(w.site.get("opModMaxLimW"))  # missed until the check
        w.run(210)
        self.assertEqual(w.site.get("opModMaxLimW"), 2000)
        self.assertNotIn(DERC, w.client.subscriptions)
        self.assertIn("no notification", w.client.status()["subscriptions"]["polled"][DERC])
        w.dme.add_control(DERControlBase(opModMaxLimW=1000), duration=3600,
                          creation=T0 + 400)
        w.run(11)
        self.assertEqual(w.site.get("opModMaxLimW"), 1000)

    def test_subscription_gone_at_the_dme(self) -> None:
        """A Subscription the DME dropped (404 at its Location at the check) is subscribed
        again, and the resource read."""
        w = World()
        w.start()
        location = w.client.subscriptions[DERC]
        del w.dme.subs[location]
        w.run(301)
        self.assertEqual(w.client.fallbacks, 1)
        self.assertIn(DERC, w.dme.subscribed())
        self.assertNotEqual(w.client.subscriptions[DERC], location)

    def test_dme_restart_resubscribes(self) -> None:
        """After the DME is lost and back (its subscriptions gone), the uplink subscribes
        again on reconnecting."""
        w = World()
        w.start()
        w.agent.down = True
        w.dme.subs.clear()
        w.run(301)
        self.assertEqual(w.client.state, State.backoff)
        w.agent.down = False
        w.run(400)
        self.assertEqual(w.client.state, State.running)
        self.assertEqual(w.dme.subscribed(), {FSAL, DERPL, DERC})  # no DefaultDERControl


class PEVResponseTests(SynchronousTestCase):
    """The rule (docs/uplink.md, "PEV responses"): Received when the EVSE has the control;
    Started when it is in effect and a PEV it was relayed to answered Started (at once for
    opModEnergize/opModConnect, which the EVSE executes itself); Completed if some PEV
    started it, else Completed with no participation (10); Cancelled and Superseded as the
    DME's own actions. 2030.5 Table 27 statuses: 1 Received, 2 Started, 3 Completed,
    10 Completed with no user participation."""

    def test_started_waits_for_a_pev(self) -> None:
        """An opModMaxLimW event in effect with no PEV executing it has only Received
        upstream; a PEV answering Started to the relayed control releases Started; the end
        is Completed."""
        w = World(pev=False)
        w.start()
        control = w.dme.add_control(DERControlBase(opModMaxLimW=5000), duration=60)
        w.run(5)
        self.assertEqual(w.dme.responses_for(control.mRID), [1])
        w.client.pev_response(control.mRID, "port1", 1)
        w.run(1)
        self.assertEqual(w.dme.responses_for(control.mRID), [1])
        w.client.pev_response(control.mRID, "port1", 2)
        w.run(1)
        self.assertEqual(w.dme.responses_for(control.mRID), [1, 2])
        w.run(60)
        self.assertEqual(w.dme.responses_for(control.mRID), [1, 2, 3])
        self.assertEqual(w.client.status()["pev_responses"][control.mRID.hex()],
                         {"port1": 2})

    def test_no_pev_completed_without_participation(self) -> None:
        """An event no PEV ever started ends with status 10 (Completed with no
        participation), never Started."""
        w = World(pev=False)
        w.start()
        control = w.dme.add_control(DERControlBase(opModFixedW=3000), duration=30)
        w.run(40)
        self.assertEqual(w.dme.responses_for(control.mRID), [1, 10])

    def test_energize_false_started_by_the_evse(self) -> None:
        """opModEnergize false is executed by the EVSE (it revokes): Started and Completed
        with no PEV."""
        w = World(pev=False)
        w.start()
        control = w.dme.add_control(DERControlBase(opModEnergize=False), duration=30)
        w.run(40)
        self.assertEqual(w.dme.responses_for(control.mRID), [1, 2, 3])


class StatusTests(SynchronousTestCase):
    def test_status_while_the_dme_is_lost(self) -> None:
        """The status says connected, then lost since when and why, with the last contact,
        the controls in force (the DefaultDERControl last read stays), the queue depth and
        drops; it is plain JSON for the operator socket."""
        import json

        w = World()
        w.dme.set_default(DERControlBase(opModMaxLimW=6000))
        w.start()
        ok = w.client.status()
        self.assertTrue(ok["connected"])
        self.assertEqual(ok["last_contact"], T0 + 0.5)  # the first walk
        w.agent.down = True
        w.client.publish({"time": T0 + 2, "ports": [{"port": "port1", "lfdi": None,
                                                     "authorized": False, "meter": {
                                                         "w": 0.0, "var": 0.0, "v": 240.0,
                                                         "hz": 60.0}}]})
        w.run(400)
        lost = json.loads(json.dumps(w.client.status()))
        self.assertFalse(lost["connected"])
        self.assertEqual(lost["state"], "backoff")
        self.assertIsNotNone(lost["lost_since"])
        self.assertIn("unreachable", lost["error"])
        self.assertIn("stay in force", lost["safety"])
        self.assertEqual(lost["controls"], {"opModMaxLimW": 6000})
        self.assertEqual(w.site["opModMaxLimW"], 6000)
        self.assertGreater(lost["queue_depth"], 0)
        self.assertEqual(lost["dropped"], 0)
        self.assertLess(lost["last_contact"], T0 + 100)

    def test_dme_gone_site_keeps_enforcing(self) -> None:
        """The DME gone for 10 minutes: the PEV keeps the opModMaxLimW of the
        DefaultDERControl (50 % of the 10 kW site = 5 kW, 71.42 % of a 7 kW PEV) and the
        opModEnergize gate stays as it was (no port evaluated again, nothing granted or
        revoked by the loss); the status says the DME is lost."""
        from sepgw.uplink.site import DME_LIMIT_KEY, SiteControls
        from tests.test_uplink_site import Port, Resources

        w = World()
        resources = Resources()
        port = Port("port1", 7000.0, resources)
        site = SiteControls([port], SITE, w.clock)
        w.client.sink = lambda control: site.apply(control["site"])
        w.dme.set_default(DERControlBase(opModMaxLimW=5000))
        port.authorize()
        w.start()
        limit = (id(port.session), DME_LIMIT_KEY)
        self.assertEqual(resources.served[limit], ("opModMaxLimW", 7142))
        w.agent.down = True
        w.run(600)
        self.assertEqual(w.client.status()["state"], "backoff")
        self.assertFalse(w.client.status()["connected"])
        self.assertEqual(resources.served[limit], ("opModMaxLimW", 7142))
        self.assertEqual(port.evaluations, [])
        self.assertIsNone(site.denial())

    def test_operator_status_carries_the_uplink(self) -> None:
        """The operator socket's ``status`` (what ``sepgw ctl status`` prints) has the
        uplink's status beside the ports, as one JSON line."""
        import json

        from sepgw.evse.operator import OperatorProtocol

        w = World()
        w.start()
        lines: list[bytes] = []
        proto = OperatorProtocol({}, uplink=w.client.status)
        proto.sendLine = lines.append  # type: ignore[method-assign]
        proto.lineReceived(b"status")
        answer = json.loads(lines[0])
        self.assertEqual(answer["ports"], [])
        self.assertTrue(answer["uplink"]["connected"])
        self.assertEqual(answer["uplink"]["queue_depth"], len(w.queue))
