"""The PEV's HTTP client: moved to the shared client layer (:mod:`sepgw.client.http`);
these names stay importable from here."""

from sepgw.client.http import (  # noqa: F401
    ConnectionTracker,
    SEPClient,
    SEPError,
    TrackedEndpoint,
    TrackingEndpointFactory,
    _Bytes,
    _cancelled,
    _reason,
    tracking_agent,
)

__all__ = ["ConnectionTracker", "SEPClient", "SEPError", "TrackedEndpoint",
           "TrackingEndpointFactory", "tracking_agent"]
