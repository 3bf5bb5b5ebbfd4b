"""Subscriptions with verification and polling fallback, for every client role (2030.5
§9.9; profile 4.1.4 for the PEV).

A resource is subscribed to just before it is first read (so no change can fall between
the read and the subscription). A refused subscription leaves the resource to polling at
its pollRate; so does one the server cancels (a Notification with a non-zero status) or
one found gone when checked (404 on its Location). The role decides when to check and
what polling means; this keeps the hrefs, the Locations and the requests.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from sepgw.client.http import SEPError
from sepgw.model import Subscription, SubscriptionEncoding


class Subscriptions:
    """The subscriptions one client holds at one server.

    ``active`` maps the href of each subscribed resource to its Subscription's Location.
    ``notify_uri`` is where the server is to POST Notifications (None: no subscriptions,
    everything polled). With ``raise_unreachable`` a subscription POST that got no answer
    at all (``SEPError.status`` None) raises instead of counting as refused."""

    log = Logger()

    def __init__(self, http: Any, notify_uri: str | None = None, limit: int = 50,
                 raise_unreachable: bool = False) -> None:
        self.http = http
        self.notify_uri = notify_uri
        self.limit = limit
        self.raise_unreachable = raise_unreachable
        self.active: dict[str, str] = {}
        self.pending: set[str] = set()
        """hrefs whose subscription POST is in flight: a notification may beat the 201."""

    def __contains__(self, href: object) -> bool:
        return href in self.active

    def expects(self, href: str) -> bool:
        """Whether a Notification for ``href`` is expected (subscribed or subscribing)."""
        return href in self.active or href in self.pending

    async def subscribe(self, target: str, href: str) -> tuple[str | None, str]:
        """POST a Subscription to ``href`` (XML, level +S1) to the SubscriptionList at
        ``target``; return ``(location, "")``, or ``(None, reason)`` when refused."""
        assert self.notify_uri is not None
        sub = Subscription(subscribedResource=href, encoding=SubscriptionEncoding.XML,
                           level="+S1", limit=self.limit, notificationURI=self.notify_uri)
        self.pending.add(href)
        location: str | None = None
        reason = "the server gave no Location"
        try:
            location = await self.http.post(target, sub)
        except SEPError as e:
            if self.raise_unreachable and e.status is None:
                raise
            reason = str(e)
        finally:
            self.pending.discard(href)
        if not location:
            return None, reason
        self.active[href] = location
        return location, ""

    def drop(self, href: str) -> str | None:
        """Forget the subscription to ``href`` (the server ended it); its Location."""
        return self.active.pop(href, None)

    def delete(self, location: str) -> Deferred[Any]:
        """DELETE a Subscription in the background (best effort, a failure logged)."""
        d = self.http.delete(location)
        return d.addErrback(lambda f: self.log.info(
            "Removing subscription {location} failed: {reason}", location=location,
            reason=f.getErrorMessage()))

    def forget(self, href: str | None) -> None:
        """``href`` is no longer used: drop its subscription and DELETE it (background)."""
        location = self.drop(href) if href is not None else None
        if location is not None:
            self.delete(location)

    def clear(self) -> dict[str, str]:
        """Forget every subscription (no request); what was held, href -> Location."""
        held, self.active = dict(self.active), {}
        self.pending.clear()
        return held

    async def verify(self) -> list[tuple[str, str]]:
        """GET each Subscription's Location; return ``(href, location)`` of those the
        server no longer has (404); the role falls back (and forgets them). Other failures are left alone (raised
        when unreachable and ``raise_unreachable``)."""
        gone = []
        for href, location in list(self.active.items()):
            try:
                await self.http.get(location, Subscription)
            except SEPError as e:
                if e.status == 404:
                    gone.append((href, location))
                elif e.status is None and self.raise_unreachable:
                    raise
        return gone

    async def close(self, clock: Any, budget_s: float) -> list[tuple[str, str]]:
        """DELETE every Subscription at once, each bounded by ``budget_s`` on ``clock``;
        return ``(location, reason)`` of each not removed."""
        held = self.clear()
        failed: list[tuple[str, str]] = []

        def lost(f: Any, location: str) -> None:
            failed.append((location, f.getErrorMessage() or type(f.value).__name__))
        deletes = []
        for location in held.values():
            d = self.http.delete(location)
            d.addTimeout(budget_s, clock)
            deletes.append(d.addErrback(lost, location))
        if deletes:
            await DeferredList(deletes)
        return failed
