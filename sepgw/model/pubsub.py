"""Subscription/Notification function set."""

from dataclasses import field
from typing import Annotated

from .base import List, PollRateT, Resource
from .codec import Model, XsiTyped, complex_type, resource
from .types import (
    Int48T, NotificationStatusT, String16T, SubscriptionEncodingT, UInt8T, UInt32T, UriT,
)

__all__ = ["Condition", "SubscriptionBase", "Subscription", "SubscriptionList", "Notification"]


@complex_type
class Condition(Model):
    attributeIdentifier: UInt8T
    lowerThreshold: Int48T
    upperThreshold: Int48T


_Condition = Condition


@complex_type
class SubscriptionBase(Resource):
    subscribedResource: UriT


@resource
class Subscription(SubscriptionBase):
    Condition: _Condition | None = None
    encoding: SubscriptionEncodingT
    level: String16T
    limit: UInt32T
    notificationURI: UriT


_Subscription = Subscription


@resource
class SubscriptionList(List):
    pollRate: PollRateT = None
    Subscription: list[_Subscription] = field(default_factory=list)


_Resource = Resource


@resource
class Notification(SubscriptionBase):
    """``Resource`` carries the changed resource; it is written with ``xsi:type`` naming its
    type (any registered resource class)."""
    newResourceURI: UriT | None = None
    Resource: Annotated[_Resource | None, XsiTyped()] = None
    status: NotificationStatusT
    subscriptionURI: UriT
