"""The EVSE server's Subscription/Notification function set (profile 4.1.4), minus routing.

One :class:`Subscriptions` store per PEV session holds the subscriptions the PEV created via
its ``SubscriptionListLink``; the HTTP routes call :meth:`Subscriptions.add` (``POST``),
:meth:`~Subscriptions.get`, :meth:`~Subscriptions.remove` (``DELETE``) and
:meth:`~Subscriptions.subscription_list` (``GET`` of the list).  Only the resources the server
registered as subscribable (Table 4, V2G-4.1.4-2) can be subscribed to.

A :class:`Notifier` (one per server, or per session) watches the stores attached to it.
When the server changes a subscribable resource it calls :meth:`Notifier.notify`; each
subscriber gets a 2030.5 ``Notification`` POSTed to its ``notificationURI`` over mutual-TLS
HTTPS, from its own queue::

    notifier = Notifier(https_agent_factory(reactor, tls_settings), reactor,
                        server_url="https://[fd12:3456:789a:1::1]:443")
    subs = Subscriptions("/edev/1/subs", {"/pev/derp/1/derc": DERControlList,
                                          "/pev/derp/1/dderc": DefaultDERControl})
    notifier.attach(subs)
    href = subs.add(parse(body, Subscription), owner_lfdi=peer.lfdi)  # SubscriptionError → 400
    notifier.notify("/pev/derp/1/derc", controls)                       # never raises or waits
    ...
    notifier.cancel_all(subs)   # session end: status 1 to its subscribers, all removed
    notifier.detach(subs)
    ...
    notifier.stop()             # service stop: no timers or requests left behind

Delivery: a failed POST (connection error, timeout, non-2xx) is retried with exponential
backoff on the injected clock (:class:`RetryPolicy`); while one delivery is in flight or
waiting to be retried, newer changes replace the undelivered one (only the latest state is
sent); after ``max_failures`` consecutive failures the subscription is dropped and logged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.protocol import Protocol as _BodyProtocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from sepgw.model import (
    MEDIA_TYPE, DefaultDERControl, DERControlList, DERProgramList, FunctionSetAssignmentsList,
    ListQuery, Notification, NotificationStatus, Resource, Subscription, SubscriptionEncoding,
    SubscriptionList, fill_list, serialize,
)
from sepgw.model.codec import _LEAF

__all__ = [
    "SUBSCRIBABLE_TYPES", "ACCEPTED_LEVELS", "SubscriptionError", "UnknownSubscription",
    "DeliveryFailed", "RetryPolicy", "AgentFor", "Subscriptions", "Notifier",
    "https_agent_factory",
]

#: The resource types the profile requires to be subscribable (Table 4, V2G-4.1.4-2).
SUBSCRIBABLE_TYPES: tuple[type[Resource], ...] = (
    DERControlList, DefaultDERControl, FunctionSetAssignmentsList, DERProgramList,
)
#: Subscription ``level`` values accepted: schema level S1.  The 2030.5 schema and the
#: profile's own examples (section 5.9) write ``+S1``; ``-S1`` is the media-type form.
ACCEPTED_LEVELS = frozenset({"+S1", "-S1", "S1"})

_SubscriptionSeq = list[Subscription]


class SubscriptionError(ValueError):
    """:meth:`Subscriptions.add` refused a subscription; ``str(error)`` says why (for the
    400 response and the log)."""


class UnknownSubscription(LookupError):
    """No subscription with this href in the store (a 404)."""

    def __init__(self, href: str) -> None:
        super().__init__(f"no subscription {href}")
        self.href = href


class DeliveryFailed(Exception):
    """A notification POST was answered with a non-2xx status."""

    def __init__(self, code: int) -> None:
        super().__init__(f"HTTP status {code}")
        self.code = code


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for failed deliveries: after the ``n``-th consecutive failure wait
    ``min(initial * factor**(n-1), maximum)`` seconds; ``max_failures`` consecutive failures
    drop the subscription; a POST not answered within ``timeout`` seconds is a failure."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 30.0
    max_failures: int = 5
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.factor < 1 or self.maximum < self.initial:
            raise ValueError(f"bad backoff: initial={self.initial} factor={self.factor} "
                             f"maximum={self.maximum}")
        if self.max_failures < 1 or self.timeout <= 0:
            raise ValueError(f"bad retry limits: max_failures={self.max_failures} "
                             f"timeout={self.timeout}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
        return float(min(self.initial * self.factor ** (failures - 1), self.maximum))


#: ``agent_for(lfdi)``: the ``twisted.web.iweb.IAgent`` that reaches the subscriber with
#: that LFDI (:func:`https_agent_factory`; in tests ``treq.testing.RequestTraversalAgent``).
AgentFor = Callable[[str], Any]


def https_agent_factory(reactor: Any, settings: Any, *, pin_lfdi: bool = True,
                        max_agents: int = 64) -> AgentFor:
    """Return ``agent_for(lfdi)`` for :class:`Notifier`: an
    ``Agent(reactor, contextFactory=client_policy(settings, ...))`` (mutual TLS with
    sepgw's 2030.5 TLS settings, see ``docs/security.md``), one per LFDI.  With ``pin_lfdi``
    the notification receiver must present a certificate with the LFDI of the device that
    created the subscription. At most ``max_agents`` agents are kept, the least recently
    used dropped first.

    A bare ``Agent`` rather than treq's ``HTTPClient``: treq passes every URL through
    hyperlink's ``to_uri()``, which IDNA-encodes IPv6 literal hosts and fails
    (python-hyper/hyperlink#68, #188), and the profile's notificationURIs are IPv6
    literals (section 4.2.3, example 5.9: ``https://[fd12:3456:789a:1::2]:443/ntfy``).
    """
    from collections import OrderedDict

    from sepgw.security.tls import client_policy

    # Most recently used last; bounded so that years of different PEVs (each its own LFDI,
    # its own agent and connection pool) do not accumulate: a PEV that comes back gets a
    # new one. The client TLS context (the EVSE's certificate, key and trust anchors) is
    # built once and shared: building it per PEV was a twentieth of the EVSE's CPU under
    # churn.
    agents: OrderedDict[str, Any] = OrderedDict()
    shared: list[Any] = []

    def agent_for(lfdi: str) -> Any:
        key = lfdi.upper() if pin_lfdi else ""
        agent = agents.get(key)
        if agent is None:
            # Imported on first use: an EVSE nobody subscribes to never loads the HTTP
            # client (0.75 MiB of an appliance's idle memory).
            from twisted.web.client import Agent

            if not shared:
                shared.append(client_policy(settings))
            policy = shared[0].pinned(lfdi if pin_lfdi else None)
            agent = agents[key] = Agent(reactor, contextFactory=policy)
            while len(agents) > max_agents:
                agents.popitem(last=False)
        else:
            agents.move_to_end(key)
        return agent

    return agent_for


def _list_field(cls: type[Resource]) -> str | None:
    """The entry field of a 2030.5 list resource class, or None for a non-list resource."""
    spec = cls._sep_spec
    if "all" not in spec.attr_map or "results" not in spec.attr_map:
        return None
    names = [f.name for f in spec.elems if f.many and f.kind != _LEAF]
    return names[0] if len(names) == 1 else None


def _limited(resource: Resource, limit: int) -> Resource | None:
    """The representation a subscription with ``limit`` gets (2030.5 Subscription.limit):
    a list with its first ``limit`` entries, ``all`` the list's size and ``results`` the
    number embedded; a non-list resource whole, or nothing when ``limit`` is 0."""
    name = _list_field(type(resource))
    if name is None:
        return resource if limit > 0 else None
    entries = list(getattr(resource, name))
    total = max(len(entries), getattr(resource, "all") or 0)
    kept = entries[:limit]
    changes: dict[str, Any] = {name: kept, "all": total, "results": len(kept)}
    return dataclasses.replace(resource, **changes)


@dataclass(frozen=True, slots=True)
class _Entry:
    subscription: Subscription
    owner_lfdi: str


class Subscriptions:
    """The subscriptions of one PEV session, created under ``base`` (the SubscriptionList
    href, e.g. ``/edev/1/subs``; subscriptions become ``<base>/1``, ``<base>/2`` ...).

    ``subscribable`` gives the subscribable resource hrefs, as a mapping href → type (one
    of :data:`SUBSCRIBABLE_TYPES`; :meth:`Notifier.notify` then checks the type of what it
    is given) or as plain hrefs; more can be added with :meth:`register`.
    ``max_subscriptions`` bounds the store.  ``min_limit`` is the smallest ``limit``
    accepted: 2030.5 defines ``limit`` 0 (a change notification without the resource's
    entries), so the default is 0; 1 refuses it.
    """

    def __init__(self, base: str,
                 subscribable: Mapping[str, type[Resource]] | Iterable[str] = (), *,
                 max_subscriptions: int = 16, min_limit: int = 0) -> None:
        self.base = base.rstrip("/")
        self.max_subscriptions = max_subscriptions
        self.min_limit = min_limit
        self._types: dict[str, type[Resource] | None] = {}
        self._entries: dict[str, _Entry] = {}
        self._next = 1
        self._observers: list[Callable[[str], None]] = []
        if isinstance(subscribable, Mapping):
            for href, cls in subscribable.items():
                self.register(href, cls)
        else:
            for href in subscribable:
                self.register(href)

    # -- server side -------------------------------------------------------------------------

    def register(self, href: str, cls: type[Resource] | None = None) -> None:
        """Make the resource at ``href`` subscribable; ``cls``, if given, is its type and
        must be one of :data:`SUBSCRIBABLE_TYPES` (Table 4)."""
        if cls is not None and cls not in SUBSCRIBABLE_TYPES:
            raise TypeError(f"{cls.__name__} is not a subscribable resource type "
                            f"(V2G-AC Table 4)")
        self._types[href] = cls

    def resource_type(self, href: str) -> type[Resource] | None:
        """The registered type of the subscribable resource ``href``, if known."""
        return self._types.get(href)

    @property
    def subscribable(self) -> list[str]:
        """The hrefs of the subscribable resources."""
        return list(self._types)

    def on_removed(self, observer: Callable[[str], None]) -> None:
        """Call ``observer(href)`` whenever a subscription leaves the store."""
        self._observers.append(observer)

    def off_removed(self, observer: Callable[[str], None]) -> None:
        """Stop calling ``observer``."""
        if observer in self._observers:
            self._observers.remove(observer)

    # -- what the routes call ----------------------------------------------------------------

    def add(self, sub: Subscription, owner_lfdi: str) -> str:
        """Validate and store ``sub`` for the device ``owner_lfdi``; return its new href.

        Raises :class:`SubscriptionError` when the subscribed resource is not registered
        as subscribable (V2G-4.1.4-2), a Condition is given, the encoding is not 0 (XML),
        the level is not S1, ``limit`` is below ``min_limit``, the notificationURI is not an
        absolute ``https`` URI with a host (V2G-4.1.3-3), or the store is full.
        """
        problem = self._check(sub)
        if problem is not None:
            raise SubscriptionError(problem)
        href = f"{self.base}/{self._next}"
        self._next += 1
        self._entries[href] = _Entry(dataclasses.replace(sub, href=href), owner_lfdi)
        return href

    def _check(self, sub: Subscription) -> str | None:
        if sub.subscribedResource not in self._types:
            known = ", ".join(sorted(self._types)) or "none"
            return (f"subscribedResource {sub.subscribedResource} is not subscribable "
                    f"(subscribable: {known})")
        if sub.Condition is not None:
            return "conditional subscriptions (Condition) are not supported"
        if sub.encoding != SubscriptionEncoding.XML:
            return f"encoding {int(sub.encoding)} is not supported (only 0, {MEDIA_TYPE})"
        if sub.level not in ACCEPTED_LEVELS:
            return f"level {sub.level!r} is not supported (use +S1)"
        if sub.limit < self.min_limit:
            return f"limit {sub.limit} is below the minimum of {self.min_limit}"
        uri = sub.notificationURI
        try:
            parts = urlsplit(uri)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            return f"notificationURI {uri!r} is not a valid URI"
        if not uri.isascii() or any(c.isspace() or ord(c) < 0x20 for c in uri):
            return f"notificationURI {uri!r} is not a valid URI"
        if parts.scheme.lower() != "https":
            return (f"notificationURI {uri} must be an https URI "
                    f"(HTTP is not allowed, V2G-4.1.3-3)")
        if not parts.hostname:
            return f"notificationURI {uri} has no host"
        if len(self._entries) >= self.max_subscriptions:
            return f"too many subscriptions (at most {self.max_subscriptions})"
        return None

    def get(self, href: str) -> Subscription:
        """The subscription at ``href``; :class:`UnknownSubscription` if there is none."""
        return self._entry(href).subscription

    def owner(self, href: str) -> str:
        """The LFDI of the device that created the subscription at ``href``."""
        return self._entry(href).owner_lfdi

    def remove(self, href: str) -> Subscription:
        """Delete the subscription at ``href`` and return it (observers are told, so a
        notifier cancels its pending delivery); :class:`UnknownSubscription` if none."""
        entry = self._entries.pop(href, None)
        if entry is None:
            raise UnknownSubscription(href)
        for observer in list(self._observers):
            observer(href)
        return entry.subscription

    def for_resource(self, href: str) -> _SubscriptionSeq:
        """The subscriptions to the resource ``href``, oldest first."""
        return [e.subscription for e in self._entries.values()
                if e.subscription.subscribedResource == href]

    def subscription_list(self, query: ListQuery | None = None) -> SubscriptionList:
        """The SubscriptionList document at ``base``: everything, or the page ``query``
        asks for."""
        items = self.list()
        return fill_list(SubscriptionList(href=self.base), items,
                         query or ListQuery(limit=len(items)))

    def __contains__(self, href: object) -> bool:
        return href in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, href: str) -> _Entry:
        try:
            return self._entries[href]
        except KeyError:
            raise UnknownSubscription(href) from None

    def list(self) -> _SubscriptionSeq:
        """All subscriptions, oldest first (the SubscriptionList's entries)."""
        return [e.subscription for e in self._entries.values()]


class _Discard(_BodyProtocol):
    """Reads and forgets a response body."""

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        pass


class _Delivery:
    """The queue of one subscription: at most one request in flight, at most one
    undelivered body (the latest), and the retry timer."""

    def __init__(self, notifier: Notifier, store: Subscriptions, href: str, uri: str,
                 lfdi: str, agent: Any) -> None:
        self.notifier = notifier
        self.store = store
        self.href = href
        self.uri = uri
        self.lfdi = lfdi
        self.agent = agent
        self.body: bytes | None = None
        self.in_flight: bytes | None = None
        #: The subscription has ended: forget this delivery once the last body is sent.
        self.final = False
        self.request: Deferred[Any] | None = None
        self.timer: Any = None  # IDelayedCall
        self.failures = 0
        self.closed = False
        self._waiters: list[Deferred[None]] = []

    def offer(self, body: bytes, final: bool = False) -> None:
        """Deliver ``body`` next, replacing any undelivered older one."""
        self.body = body
        self.final = self.final or final
        if self.request is None and self.timer is None:
            self._send()

    def when_done(self) -> Deferred[None]:
        """Fires (never fails) when this delivery is finished or closed."""
        if self.closed:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def _send(self) -> None:
        self.timer = None
        body, self.body = self.body, None
        if body is None or self.closed:
            return
        self.in_flight = body
        notifier = self.notifier
        from sepgw.client.http import BytesBody  # with the HTTP client, at first use

        d: Deferred[Any] = maybeDeferred(
            self.agent.request, b"POST", self.uri.encode("ascii"),
            Headers({b"Content-Type": [MEDIA_TYPE.encode("ascii")]}), BytesBody(body))
        # Set before adding callbacks: a client may answer synchronously.
        self.request = d
        d.addTimeout(notifier.retry.timeout, notifier.clock)
        d.addCallback(self._check_response)
        d.addCallbacks(self._succeeded, self._failed)

    @staticmethod
    def _check_response(response: Any) -> int:
        response.deliverBody(_Discard())  # an IResponse
        code = int(response.code)
        if not 200 <= code < 300:
            raise DeliveryFailed(code)
        return code

    def _succeeded(self, code: int) -> None:
        self.request = None
        self.in_flight = None
        if self.closed:
            return
        self.failures = 0
        self.notifier.log.debug(
            "Notification for {subscription} delivered to {uri} (HTTP {code})",
            subscription=self.href, uri=self.uri, lfdi=self.lfdi, code=code)
        if self.body is not None:
            self._send()
        elif self.final:
            self.notifier._finished(self)

    def _failed(self, failure: Failure) -> None:
        self.request = None
        if self.closed:
            return
        self.failures += 1
        policy = self.notifier.retry
        reason = failure.getErrorMessage() or getattr(failure.type, "__name__", "error")
        if self.failures >= policy.max_failures:
            self.notifier.log.error(
                "Dropping subscription {subscription} of {lfdi}: {failures} consecutive "
                "notification failures to {uri} (last: {reason})",
                subscription=self.href, uri=self.uri, lfdi=self.lfdi,
                failures=self.failures, reason=reason)
            self.notifier._finished(self, drop=True)
            return
        if self.body is None:
            self.body = self.in_flight
        self.in_flight = None
        delay = policy.delay(self.failures)
        self.notifier.log.warn(
            "Notification for {subscription} to {uri} failed ({reason}); "
            "retry {failures} in {delay} s",
            subscription=self.href, uri=self.uri, lfdi=self.lfdi,
            failures=self.failures, delay=delay, reason=reason)
        self.timer = self.notifier.clock.callLater(delay, self._send)

    def close(self) -> None:
        """Cancel the retry timer and any request in flight; fire the waiters."""
        if self.closed:
            return
        self.closed = True
        self.body = self.in_flight = None
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()
        request, self.request = self.request, None
        if request is not None:
            request.cancel()  # _failed sees self.closed and ignores the CancelledError
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)


class Notifier:
    """Sends Notifications to the subscribers in the :class:`Subscriptions` stores
    attached to it.

    ``agent_for(lfdi)`` returns the ``IAgent`` for the subscriber with that LFDI (see
    :func:`https_agent_factory`; tests pass ``lambda lfdi: RequestTraversalAgent(res)``).
    ``clock`` schedules retries and request timeouts.  ``server_url`` (``https://host:port``)
    prefixes subscription hrefs to give the absolute ``subscriptionURI`` 2030.5 requires.
    Nothing here raises into the caller or waits for the network.
    """

    log = Logger()

    def __init__(self, agent_for: AgentFor, clock: Any, *,
                 server_url: str, retry: RetryPolicy = RetryPolicy()) -> None:
        if not server_url.lower().startswith("https://"):
            raise ValueError(f"server_url {server_url!r} must be an https:// URL")
        self.agent_for = agent_for
        self.clock = clock  # IReactorTime
        self.server_url = server_url.rstrip("/")
        self.retry = retry
        self._stores: dict[Subscriptions, Callable[[str], None]] = {}
        self._deliveries: dict[tuple[Subscriptions, str], _Delivery] = {}
        self._stopped = False

    # -- stores ------------------------------------------------------------------------------

    def attach(self, store: Subscriptions) -> None:
        """Deliver notifications for the subscriptions in ``store``."""
        if store not in self._stores:
            observer = self._stores[store] = lambda href: self._removed(store, href)
            store.on_removed(observer)

    def detach(self, store: Subscriptions) -> None:
        """Stop watching ``store``: pending deliveries of its subscriptions are cancelled,
        except cancellation notices (from :meth:`cancel_all`), which run to their end."""
        observer = self._stores.pop(store, None)
        if observer is not None:
            store.off_removed(observer)
        for key, delivery in list(self._deliveries.items()):
            if key[0] is store and not delivery.final:
                del self._deliveries[key]
                delivery.close()

    # -- what the server calls ---------------------------------------------------------------

    def notify(self, resource_href: str, resource: Resource | None,
               status: int = NotificationStatus.DEFAULT) -> None:
        """The resource at ``resource_href`` changed to ``resource``: queue a Notification
        for each of its subscribers (in every attached store).

        Give a list resource with its entries in 2030.5 list order: the whole list, or a
        first page with ``all`` set to the list's size; each subscriber gets at most its
        ``limit`` entries.  A ``status`` other than 0 (1-4: the subscription is cancelled)
        also removes the subscriptions.
        """
        if self._stopped:
            return
        try:
            for store in list(self._stores):
                subs = store.for_resource(resource_href)
                if not subs:
                    continue
                expected = store.resource_type(resource_href)
                if resource is not None and expected is not None \
                        and not isinstance(resource, expected):
                    self.log.error(
                        "Not notifying changes of {resource}: got a {got}, subscribers "
                        "expect a {expected}", resource=resource_href,
                        got=type(resource).__name__, expected=expected.__name__)
                    continue
                for sub in subs:
                    self._notify_one(store, sub, resource, NotificationStatus(status))
        except Exception:
            self.log.failure("Notifying changes of {resource} failed", resource=resource_href)

    def cancel(self, store: Subscriptions, href: str,
               status: int = NotificationStatus.CANCELLED) -> Deferred[None]:
        """The server ends the subscription at ``href`` of ``store``: send a Notification
        with ``status`` (default 1, "Subscription canceled, no additional information") and
        remove the subscription.  The Deferred fires (never fails) once that notification
        has been delivered or given up."""
        if href not in store:
            return succeed(None)
        delivery = None
        try:
            if not self._stopped:
                delivery = self._notify_one(store, store.get(href), None,
                                            NotificationStatus(status))
        except Exception:
            self.log.failure("Cancelling {subscription} failed", subscription=href)
        if href in store:
            store.remove(href)
        return delivery.when_done() if delivery is not None else succeed(None)

    def cancel_all(self, store: Subscriptions | None = None,
                   status: int = NotificationStatus.CANCELLED) -> Deferred[None]:
        """:meth:`cancel` every subscription of ``store`` (the PEV session ends), or of every
        attached store when None.  Fires (never fails) when every notice is done."""
        stores = [store] if store is not None else list(self._stores)
        waits = [self.cancel(s, sub.href or "", status) for s in stores for sub in s.list()]
        d: Deferred[Any] = DeferredList(waits)
        return d.addCallback(lambda _: None)

    def stop(self) -> None:
        """Cancel every retry timer and request in flight; later calls do nothing."""
        self._stopped = True
        deliveries, self._deliveries = self._deliveries, {}
        for delivery in deliveries.values():
            delivery.close()

    def retrying(self, store: Subscriptions, href: str) -> bool:
        """Whether the subscription at ``href`` is waiting to retry a failed delivery."""
        delivery = self._deliveries.get((store, href))
        return delivery is not None and delivery.timer is not None

    # -- internals ---------------------------------------------------------------------------

    def _notify_one(self, store: Subscriptions, sub: Subscription, resource: Resource | None,
                    status: NotificationStatus) -> _Delivery:
        href = sub.href or ""
        embedded = _limited(resource, sub.limit) if resource is not None else None
        if embedded is not None and embedded.href is None:
            embedded = dataclasses.replace(embedded, href=sub.subscribedResource)
        body = serialize(Notification(
            subscribedResource=sub.subscribedResource, Resource=embedded, status=status,
            subscriptionURI=self.server_url + href))
        key = (store, href)
        delivery = self._deliveries.get(key)
        if delivery is None:
            lfdi = store.owner(href)
            delivery = self._deliveries[key] = _Delivery(
                self, store, href, sub.notificationURI, lfdi, self.agent_for(lfdi))
        final = status != NotificationStatus.DEFAULT
        if final:
            delivery.final = True  # before remove(): _removed must not close it
            if href in store:
                store.remove(href)
        delivery.offer(body, final=final)
        return delivery

    def _removed(self, store: Subscriptions, href: str) -> None:
        delivery = self._deliveries.get((store, href))
        if delivery is None or delivery.final:
            return  # nothing pending, or a cancellation notice still being delivered
        del self._deliveries[(store, href)]
        delivery.close()

    def _finished(self, delivery: _Delivery, drop: bool = False) -> None:
        key = (delivery.store, delivery.href)
        if self._deliveries.get(key) is delivery:
            del self._deliveries[key]
        delivery.close()
        if drop and delivery.href in delivery.store:
            delivery.store.remove(delivery.href)
