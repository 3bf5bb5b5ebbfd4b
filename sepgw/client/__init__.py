"""The 2030.5 client layer shared by the client roles (the PEV's J3072 client and the DME
uplink): the HTTP client (:mod:`sepgw.client.http`: typed requests, timeouts,
``cancel_all``, TLS connection tracking), link following with list paging
(:mod:`~sepgw.client.links`), the server's time base (:mod:`~sepgw.client.timebase`),
periodic work at the rates the server sets (:mod:`~sepgw.client.periodic`), subscriptions
with verification and polling fallback (:mod:`~sepgw.client.subscriptions`), and the
Registration resource. The event engine with its responses is :mod:`sepgw.events`.

Nothing here knows a role; each role is a state machine on top (``sepgw.pev.machine``,
``sepgw.uplink.client.State``). Time comes from an injected ``IReactorTime``, so every
piece runs on ``twisted.internet.task.Clock`` in tests. :mod:`sepgw.client.http` is not
imported here (it pulls in ``twisted.web.client``); import it where it is used.
"""

from __future__ import annotations

from sepgw.client.links import fetch_all, full_query, link_map, list_items, short_query
from sepgw.client.periodic import Backoff, Loops, Periodic
from sepgw.client.timebase import ServerTime
from sepgw.model.base import PollRateT, Resource
from sepgw.model.codec import resource
from sepgw.model.types import TimeT, UInt32T

__all__ = ["DEFAULT_POLL_S", "Registration", "ServerTime", "Periodic", "Loops", "fetch_all",
           "list_items", "link_map", "short_query", "full_query", "Backoff"]

DEFAULT_POLL_S = 900
"""pollRate when a resource gives none (2030.5 default, seconds)."""


@resource
class Registration(Resource):
    """2030.5 Registration (EndDevice RegistrationLink): the PIN a server holds for the
    device, checked by the client against the one it was given out of band."""
    pollRate: PollRateT = None
    dateTimeRegistered: TimeT
    pIN: UInt32T
