"""A PEV's session on one port: what the PEV told the EVSE, and what the EVSE serves it.

Pure state, no I/O. The 2030.5 server (:mod:`sepgw.evse.tree`) writes into it; the session
logic (authorization, heartbeat, gatekeeper) reads it through :class:`ISessionObserver`
callbacks. URIs of a session are fixed for its whole life (V2G-4.1.2-1).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Callable

from sepgw.model import (
    DERAvailability,
    DERCapability,
    DERSettings,
    DERStatus,
    DeviceInformation,
    MirrorMeterReading,
    MirrorUsagePoint,
    PowerStatus,
    Response,
)
from sepgw.security.identity import PeerIdentity

#: The resources a PEV writes with PUT, by the path segment of their URI.
PEV_WRITABLE: dict[str, type] = {
    "di": DeviceInformation,
    "ps": PowerStatus,
    "dercap": DERCapability,
    "ders": DERSettings,
    "dera": DERAvailability,
    "dstat": DERStatus,
}

READINGS_KEPT = 64
"""Readings kept per MirrorMeterReading (a bounded history, newest last)."""

MIRROR_METERS_MAX = 16
"""MirrorMeterReadings per MirrorUsagePoint (the profile uses four); a POST creating one
more is refused with 400 and stores nothing."""

RESPONSES_KEPT = 64
"""Responses served in the session's ResponseList; at the limit the oldest is dropped (its
href then answers 404). Accepting is never refused: the PEV is required to respond."""

RESPONSE_STATUSES_KEPT = 256
"""(control mRID, status) pairs remembered for the policy; at the limit the pair heard
least recently is forgotten (a current control's statuses are re-sent by a PEV that
follows the profile, and a forgotten status can only withhold authorization)."""


@dataclass
class Stored:
    """A resource as the PEV last wrote it, with the server time it arrived."""

    resource: Any
    received: float


@dataclass
class MirrorMeter:
    """One MirrorMeterReading of a PEV's MirrorUsagePoint, with its recent readings."""

    href: str
    reading: MirrorMeterReading
    history: collections.deque[tuple[float, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=READINGS_KEPT))


@dataclass
class MirrorPoint:
    """A PEV's MirrorUsagePoint and its MirrorMeterReadings by mRID."""

    href: str
    usage_point: MirrorUsagePoint
    meters: dict[bytes, MirrorMeter] = field(default_factory=dict)


class ISessionObserver:
    """What the session logic hears from the 2030.5 server (all optional to implement)."""

    def resource_written(self, session: "PEVSession", name: str, resource: Any) -> None:
        """The PEV PUT ``resource`` (``name`` is a key of PEV_WRITABLE)."""

    def response_received(self, session: "PEVSession", response: Response) -> None:
        """The PEV POSTed a (DERControl) Response."""

    def readings_received(self, session: "PEVSession", meter: MirrorMeter) -> None:
        """The PEV POSTed new values of a MirrorMeterReading."""


@dataclass
class PEVSession:
    """One PEV connected on one port."""

    port_index: int
    port_name: str
    identity: PeerIdentity
    edev: str
    """The EndDevice URI; every resource of the session lives under it."""
    created: float
    written: dict[str, Stored] = field(default_factory=dict)
    responses: dict[tuple[bytes, int], Response] = field(default_factory=dict)
    """Each DERControl response by (subject mRID, status), the latest of each, at most
    :data:`RESPONSE_STATUSES_KEPT`, least recently heard first."""
    response_order: list[Response] = field(default_factory=list)
    """The newest :data:`RESPONSES_KEPT` Responses, oldest first (the ResponseList)."""
    responses_received: int = 0
    """Responses accepted in this session; the next one's key in its href."""
    energize: bool = False
    """DefaultDERControl opModEnergize: the authorization to discharge (V2G-4.6.4-2/3)."""
    mirror: MirrorPoint | None = None
    observers: list[Any] = field(default_factory=list)

    @property
    def lfdi(self) -> str:
        return self.identity.lfdi

    def add_response(self, subject: bytes, status: int, response: Response) -> None:
        """Record an accepted Response, dropping the oldest beyond the limits."""
        self.responses_received += 1
        key = (subject, status)
        self.responses.pop(key, None)
        self.responses[key] = response
        if len(self.responses) > RESPONSE_STATUSES_KEPT:
            del self.responses[next(iter(self.responses))]
        self.response_order.append(response)
        if len(self.response_order) > RESPONSES_KEPT:
            del self.response_order[0]

    def statuses(self, subject: bytes) -> set[int]:
        """The response statuses the PEV sent for the control with mRID ``subject``."""
        return {status for (s, status) in self.responses if s == subject}

    def emit(self, method: str, *args: Any) -> None:
        for observer in list(self.observers):
            callback: Callable[..., None] | None = getattr(observer, method, None)
            if callback is not None:
                callback(self, *args)
