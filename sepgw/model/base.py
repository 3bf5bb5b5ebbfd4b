"""Base resource types, links and small structures shared by the function sets.

Python class names and field names are the 2030.5-2018 schema names, so a field is found by
the name in the standard.  Fields are declared in XSD sequence order; base classes carry the
base type's sequence (``IdentifiedObject`` → ``mRID``, ``description``, ``version``).
"""

from typing import Annotated

from .codec import Attr, Model, complex_type
from .types import (
    URI, UINT32, BoolT, EventStatusCodeT, MRIDT, ResponseRequired, RESPONSE_REQUIRED,
    String32T, String192T, SubscribableType, SUBSCRIBABLE, TimeT, UInt32T, VersionT,
)

__all__ = [
    "Resource", "SubscribableResource", "IdentifiedObject", "SubscribableIdentifiedObject",
    "RespondableSubscribableIdentifiedObject", "List", "SubscribableList", "Link", "ListLink",
    "DateTimeInterval", "EventStatus", "Event", "HrefT", "PollRateT", "AllT",
]

HrefT = Annotated[str | None, Attr(URI)]
PollRateT = Annotated[int | None, Attr(UINT32)]
#: ``all`` and ``results`` of a list: required attributes (0 until paging fills them in).
AllT = Annotated[int, Attr(UINT32)]


@complex_type
class Resource(Model):
    """2030.5 ``Resource``: anything addressable, with an optional ``href``."""
    href: HrefT = None


@complex_type
class SubscribableResource(Resource):
    subscribable: Annotated[SubscribableType | None, Attr(SUBSCRIBABLE)] = None


@complex_type
class IdentifiedObject(Resource):
    mRID: MRIDT
    description: String32T | None = None
    version: VersionT | None = None


@complex_type
class SubscribableIdentifiedObject(SubscribableResource):
    mRID: MRIDT
    description: String32T | None = None
    version: VersionT | None = None


@complex_type
class RespondableSubscribableIdentifiedObject(SubscribableIdentifiedObject):
    replyTo: Annotated[str | None, Attr(URI)] = None
    #: Schema default 00.  V2G-4.6.3-4: the EVSE sets MESSAGE_RECEIVED | SPECIFIC_RESPONSE.
    responseRequired: Annotated[ResponseRequired | None, Attr(RESPONSE_REQUIRED)] = None


@complex_type
class List(Resource):
    """2030.5 ``List``: ``all`` is the list's size, ``results`` the number in this page."""
    all: AllT = 0
    results: AllT = 0


@complex_type
class SubscribableList(SubscribableResource):
    all: AllT = 0
    results: AllT = 0


@complex_type
class Link(Model):
    """Any ``…Link`` element (``TimeLink``, ``DERSettingsLink``, ``DERCurveLink``…)."""
    href: Annotated[str, Attr(URI)]


@complex_type
class ListLink(Link):
    """Any ``…ListLink`` element; ``all`` is the size of the linked list."""
    all: Annotated[int | None, Attr(UINT32)] = None


@complex_type
class DateTimeInterval(Model):
    duration: UInt32T
    start: TimeT


@complex_type
class EventStatus(Model):
    currentStatus: EventStatusCodeT
    dateTime: TimeT
    potentiallySuperseded: BoolT
    potentiallySupersededTime: TimeT | None = None
    reason: String192T | None = None


_EventStatus = EventStatus


@complex_type
class Event(RespondableSubscribableIdentifiedObject):
    creationTime: TimeT
    EventStatus: _EventStatus
    interval: DateTimeInterval
