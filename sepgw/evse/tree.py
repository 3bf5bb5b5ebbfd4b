"""The EVSE's IEEE 2030.5 resource tree (profile section 4), without HTTP.

:class:`EVSEResources` answers GET, PUT, POST and DELETE on paths with model objects, and
raises :class:`HTTPError` for everything a client got wrong. :mod:`sepgw.evse.http` puts it
behind a twisted.web resource and mutual TLS. The URI plan (all reached by links, none hard-coded in clients):

======================================  ==========================================
``/dcap``                               DeviceCapability (no DERProgramListLink)
``/tm``                                 Time
``/sdev``, ``/sdev/der[/1[/ders]]``     SelfDevice, its DER and DERSettings (site limits)
``/edev``                               EndDeviceList (each PEV sees only its own)
``/edev/<p>``                           the EndDevice of the PEV on port ``p``
``/edev/<p>/{di,ps}``                   DeviceInformation, PowerStatus (PUT by the PEV)
``/edev/<p>/der/1/{dercap,ders,dera,dstat}``  the PEV's DER resources (PUT by the PEV)
``/edev/<p>/sub[/<k>]``                 SubscriptionList, Subscription
``/edev/<p>/fsa[/1]``                   FunctionSetAssignmentsList, FunctionSetAssignments
``/edev/<p>/derp[/1]``                  DERProgramList (pollRate 1 s), DERProgram
``/edev/<p>/derp/1/dderc``              DefaultDERControl (opModEnergize, Enter Service)
``/edev/<p>/derp/1/{derc,dc,actderc}``  DERControlList, DERCurveList, ActiveDERControlList
``/rsps[/<p>[/rsp[/<k>]]]``             ResponseSetList, ResponseSet, ResponseList, Response
``/mup[/<p>[/<k>]]``                    MirrorUsagePointList, MirrorUsagePoint, readings
======================================  ==========================================
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from twisted.logger import Logger

from sepgw.evse.management import ManagementInformation
from sepgw.evse.notify import Notifier, SubscriptionError, Subscriptions, UnknownSubscription
from sepgw.evse.sessions import (MIRROR_METERS_MAX, PEV_WRITABLE, MirrorMeter, MirrorPoint,
                                 PEVSession, Stored)
from sepgw.evse.site import site_der_settings
from sepgw.model import (
    DER,
    ActiveDERControlList,
    DERControlList,
    DERCurveList,
    DERList,
    DERProgram,
    DERProgramList,
    DeviceCapability,
    EndDevice,
    EndDeviceList,
    FunctionSetAssignments,
    FunctionSetAssignmentsList,
    Link,
    ListLink,
    MirrorMeterReading,
    MirrorMeterReadingList,
    MirrorUsagePoint,
    MirrorUsagePointList,
    Model,
    ModelError,
    ReadingType,
    Resource,
    Response,
    ResponseList,
    ResponseSet,
    ResponseSetList,
    SelfDevice,
    Subscription,
    DefaultDERControl,
    serialize,
)
from sepgw.model.codec import EDITION_2023, SCHEMA_VER, Deviation
from sepgw.model.paging import ListQuery, fill_list
from sepgw.model.types import SubscribableType
from sepgw.security.identity import PeerIdentity
from sepgw.timebase import time_resource

DER_PROGRAM_LIST_POLL_RATE = 1
"""V2G-4.1.4-6: fixed, not configurable."""

MAX_PAGE = 100
"""Largest ``l`` a list GET is answered with."""

ROLE_IS_PEV = 0x04
"""MirrorUsagePoint roleFlags: bit 2, isPEV (V2G-4.7.2-24); no other bit (V2G-4.7.2-25)."""

#: Table 6 of the profile (V2G-4.7.2-27): the quantity of each required MirrorMeterReading,
#: by ReadingType uom, with the ReadingType values it must carry. powerOfTenMultiplier must be
#: present too, and dataQualifier absent (V2G-4.7.2-28); other fields may be provided.
TABLE6: dict[int, tuple[str, dict[str, int]]] = {
    38: ("Active Power", {"phase": 128, "flowDirection": 19, "accumulationBehaviour": 12}),
    63: ("Reactive Power", {"phase": 128, "flowDirection": 19, "accumulationBehaviour": 12}),
    29: ("Voltage", {"phase": 128, "accumulationBehaviour": 12}),
    33: ("Frequency", {"phase": 128, "accumulationBehaviour": 12}),
}
_TABLE6_NAMES = {
    ("uom", 38): "38 (W)", ("uom", 63): "63 (var)", ("uom", 29): "29 (V)",
    ("uom", 33): "33 (Hz)", ("phase", 128): "128 (A)", ("flowDirection", 19): "19 (reverse)",
    ("accumulationBehaviour", 12): "12 (instantaneous)",
}
#: The section 5 example's flowDirection for W and var, accepted in lenient mode only.
EXAMPLE_FLOW_DIRECTION = 1


def table6_check(rt: ReadingType, description: str | None, lenient: bool = False,
                 ) -> tuple[str | None, list[str], list[str]]:
    """Check one MirrorMeterReading's ReadingType against Table 6.

    The quantity is found by ``uom`` (else by a ``description`` naming a Table 6 quantity, so
    that a wrong uom is named); a ReadingType of another quantity only has to leave out
    dataQualifier. Returns the quantity (None for another), the problems (each naming its
    field), and the deviations accepted in ``lenient`` mode (the section 5 example's
    flowDirection 1 for W and var).
    """
    problems: list[str] = []
    deviations: list[str] = []
    if rt.dataQualifier is not None:
        problems.append("ReadingType/dataQualifier must not be provided (V2G-4.7.2-28)")
    uom = None if rt.uom is None else int(rt.uom)
    entry = TABLE6.get(uom) if uom is not None else None
    if entry is None:
        named = (description or "").strip().lower()
        found = [(u, e) for u, e in TABLE6.items() if e[0].lower() == named]
        if not found:
            if uom is None:
                problems.append("ReadingType/uom missing (Table 6 tells each quantity by its "
                                "uom, V2G-4.7.2-27)")
            return None, problems, deviations
        want_uom, entry = found[0]
        problems.append(f"ReadingType/uom must be {_TABLE6_NAMES[('uom', want_uom)]}, got "
                        f"{'none' if uom is None else uom} (Table 6, V2G-4.7.2-27)")
    quantity, fields = entry
    for name, want in fields.items():
        value = getattr(rt, name)
        got = None if value is None else int(value)
        if got == want:
            continue
        shown = _TABLE6_NAMES[(name, want)]
        if (lenient and name == "flowDirection" and got == EXAMPLE_FLOW_DIRECTION):
            deviations.append(f"ReadingType/flowDirection {got} (Table 6 requires {shown}; "
                              "the profile's section 5 example deviation)")
            continue
        problems.append(f"ReadingType/{name} must be {shown}, got "
                        f"{'none' if got is None else got} (Table 6, V2G-4.7.2-27)")
    if rt.powerOfTenMultiplier is None:
        problems.append("ReadingType/powerOfTenMultiplier missing (Table 6, V2G-4.7.2-27)")
    return quantity, problems, deviations


class HTTPError(Exception):
    """A request the server refuses: ``code`` is the HTTP status, ``reason`` says why."""

    def __init__(self, code: int, reason: str, allow: Iterable[str] = ()) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason
        self.allow = tuple(allow)


@dataclass(frozen=True)
class Created:
    """Result of a POST: the Location of what was created or updated, and whether new."""

    location: str
    new: bool = True


@dataclass(frozen=True)
class Route:
    """What a path names: the handler kind, its owner session, and the allowed methods."""

    kind: str
    methods: tuple[str, ...]
    session: PEVSession | None = None
    key: str | None = None


def _link(href: str) -> Link:
    return Link(href=href)


def _list_link(href: str, count: int) -> ListLink:
    return ListLink(href=href, all=count)


class EVSEResources:
    """The whole server: site resources, and one session per connected PEV."""

    log = Logger()

    def __init__(
        self,
        *,
        server: Mapping[str, Any],
        site: Mapping[str, Any],
        management: Mapping[str, Any],
        ports: list[str],
        clock: Any,
        notifier: Notifier | None = None,
        mrid: Callable[[], bytes] = lambda: os.urandom(16),
    ) -> None:
        self._server = server
        self._site = site
        self._management_cfg = management
        self.ports = list(ports)
        self._clock = clock
        self._mrid = mrid
        self.notifier = notifier
        self.dcap_path: str = server["dcap_path"]
        self.lenient = bool(server.get("lenient", False))
        """``[server] lenient``: accept the profile's section 5 example deviations (parsing,
        and Table 6 flowDirection 1), each logged once per session."""
        self.sessions: dict[int, PEVSession] = {}
        self._by_lfdi: dict[str, PEVSession] = {}
        self._extras: dict[int, _SessionResources] = {}
        self._routes: dict[str, Route] = {}
        self._session_paths: dict[int, list[str]] = {}
        """The paths of ``_routes`` each session added (by port), so a detach removes only
        its own and costs nothing per other session."""
        self.attach_observers: list[Callable[[PEVSession], None]] = []
        self.admission_checks: list[Callable[[int], str | None]] = []
        """Called with a port index before a session is created there: a non-None answer is
        why the port takes no session now (503, e.g. a contactor fault)."""
        """Called with each new session (the port's session logic subscribes here)."""
        self.detach_observers: list[Callable[[PEVSession], None]] = []
        """Called with each session that ended."""
        self._global_routes()
        self.site_settings = site_der_settings(site, "/sdev/der/1/ders",
                                               updated_time=self.now())

    # -- sessions -----------------------------------------------------------------------

    def now(self) -> int:
        return int(self._clock.seconds())

    def session_for(self, identity: PeerIdentity) -> PEVSession | None:
        """The session of the PEV with this certificate, if it has one."""
        return self._by_lfdi.get(identity.lfdi.upper())

    def refusal(self, port_index: int) -> str | None:
        """Why the port takes no new session now (see :attr:`admission_checks`), or None."""
        for check in self.admission_checks:
            why = check(port_index)
            if why is not None:
                return why
        return None

    def attach(self, identity: PeerIdentity, port_index: int | None = None) -> PEVSession:
        """Create the session (and EndDevice, V2G-4.5.3-2) of a PEV connecting on a port.

        Without ``port_index`` the first port without a session is used. A PEV that already
        has a session keeps it.
        """
        existing = self.session_for(identity)
        if existing is not None:
            return existing
        if port_index is None:
            free = [i for i in range(len(self.ports)) if i not in self.sessions]
            if not free:
                raise HTTPError(403, "every port already serves a PEV")
            open_ = [i for i in free if self.refusal(i) is None]
            port_index = open_[0] if open_ else free[0]
        if port_index in self.sessions:
            raise HTTPError(403, f"port {self.ports[port_index]} already serves another PEV")
        refused = self.refusal(port_index)
        if refused is not None:
            self.log.warn("{port}: session of PEV LFDI {lfdi} refused: {why}",
                          port=self.ports[port_index], lfdi=identity.lfdi, why=refused)
            raise HTTPError(503, refused)
        edev = f"/edev/{port_index}"
        session = PEVSession(port_index=port_index, port_name=self.ports[port_index],
                             identity=identity, edev=edev, created=self._clock.seconds())
        extras = _SessionResources(self, session)
        self.sessions[port_index] = session
        self._by_lfdi[identity.lfdi.upper()] = session
        self._extras[port_index] = extras
        routes = extras.routes()
        self._routes.update(routes)
        self._session_paths[port_index] = list(routes)
        self.log.info("{port}: EndDevice {edev} created for PEV LFDI {lfdi} SFDI {sfdi}",
                      port=session.port_name, edev=edev, lfdi=identity.lfdi,
                      sfdi=identity.sfdi)
        for observer in list(self.attach_observers):
            observer(session)
        return session

    def detach(self, port_index: int, reason: str) -> None:
        """End the session on a port (link down): its resources disappear."""
        session = self.sessions.pop(port_index, None)
        if session is None:
            return
        self._by_lfdi.pop(session.lfdi.upper(), None)
        extras = self._extras.pop(port_index)
        extras.close()
        for path in self._session_paths.pop(port_index, ()):
            route = self._routes.get(path)
            if route is not None and route.session is session:
                del self._routes[path]
        for observer in list(self.detach_observers):
            observer(session)
        self.log.info("{port}: session of LFDI {lfdi} ended ({reason})",
                      port=session.port_name, lfdi=session.lfdi, reason=reason)

    def deviations_accepted(self, identity: PeerIdentity, request: str,
                            deviations: Iterable[Deviation]) -> None:
        """Log what parsing a PEV's document accepted outside the 2018 schema, once per
        session each: that the PEV writes 2023-edition documents (``schemaVer``, and each
        2023 element), and each lenient-mode deviation."""
        session = self.session_for(identity)
        extras = self._extras.get(session.port_index) if session is not None else None
        for d in deviations:
            edition = d.kind in EDITION_2023
            if edition:
                key: tuple[str, ...] = (d.kind,) if d.kind == SCHEMA_VER else (d.kind, d.path)
                fmt = ("{port}: PEV LFDI {lfdi} writes IEEE 2030.5-2023 documents "
                       "({deviation}); read as 2018 documents")
            else:
                key = (d.kind, d.path)
                fmt = ("{port}: lenient mode: {request} accepted with the profile example "
                       "deviation {deviation}")
            if extras is not None:
                extras.note(key, fmt, request=request, deviation=str(d), warn=not edition)
            else:
                self.log.warn(fmt, port="-", lfdi=identity.lfdi, request=request,
                              deviation=str(d))

    def set_energize(self, session: PEVSession, energize: bool) -> None:
        """Grant (True) or revoke (False) the authorization to discharge (V2G-4.6.4-2/3)."""
        if session.energize == energize:
            return
        session.energize = energize
        extras = self._extras[session.port_index]
        extras.changed(extras.dderc)

    def set_control(self, session: PEVSession, key: str, opmod: str, value: Any,
                    description: str) -> None:
        """Serve the session's PEV a DERControl ``key`` with ``opmod`` = ``value`` (e.g.
        opModFixedW for coordinated charging, 4.8.2), superseding an earlier one of the same
        key; DERControlList subscribers are notified. A session that has ended (a
        coalesced site-sharing update may still name it) gets nothing, and its port's next
        session is not given its control."""
        extras = self._live(session)
        if extras is not None and extras.management.set_extra(key, opmod, value, description,
                                                               self.now()):
            extras.changed(extras.derc)

    def clear_control(self, session: PEVSession, key: str) -> None:
        """Cancel the session's DERControl ``key``, if any (nothing for an ended session)."""
        extras = self._live(session)
        if extras is not None and extras.management.clear_extra(key, self.now()):
            extras.changed(extras.derc)

    def _live(self, session: PEVSession) -> "_SessionResources | None":
        """The resources of ``session`` while it is its port's current session."""
        extras = self._extras.get(session.port_index)
        return extras if extras is not None and extras.session is session else None

    def management(self, session: PEVSession) -> ManagementInformation:
        return self._extras[session.port_index].management

    def update_management(self, management: Mapping[str, Any]) -> None:
        """New management information for every session (supersedes changed controls)."""
        self._management_cfg = management
        for extras in self._extras.values():
            extras.update_management(management)

    # -- dispatch -----------------------------------------------------------------------

    def route(self, path: str) -> Route:
        route = self._routes.get(path)
        if route is None:
            route = self._dynamic_route(path)
        if route is None:
            raise HTTPError(404, f"no resource at {path}")
        return route

    def _dynamic_route(self, path: str) -> Route | None:
        head, _, tail = path.rpartition("/")
        parent = self._routes.get(head)
        if parent is None or parent.session is None or not tail:
            return None
        extras = self._extras[parent.session.port_index]
        if parent.kind == "sub" and tail in extras.subscriptions_by_key():
            return Route("sub-item", ("GET", "DELETE"), parent.session, tail)
        if parent.kind in ("derc", "dc", "rsp", "mup-item") and tail.isdigit():
            kind = {"derc": "derc-item", "dc": "dc-item", "rsp": "rsp-item",
                    "mup-item": "mmr-item"}[parent.kind]
            return Route(kind, ("GET",), parent.session, tail)
        return None

    def check(self, route: Route, method: str, identity: PeerIdentity | None) -> PEVSession | None:
        """Apply method and ownership rules; return the requester's session (or None)."""
        if method not in route.methods:
            raise HTTPError(405, f"{method} is not allowed here", allow=route.methods)
        if identity is None:
            raise HTTPError(403, "no client certificate identity")
        own = self.session_for(identity)
        if route.session is not None and route.session is not own:
            raise HTTPError(403, "this resource belongs to another PEV")
        return own

    def get(self, path: str, query: ListQuery, identity: PeerIdentity | None) -> Model:
        route = self.route(path)
        own = self.check(route, "GET", identity)
        if route.session is None:
            return self._global_get(route.kind, query, own)
        return self._extras[route.session.port_index].get(route, query)

    def render(self, path: str, query: ListQuery, identity: PeerIdentity | None) -> bytes:
        """:meth:`get`, serialized: the documents a PEV polls every second are serialized
        once until they change."""
        route = self.route(path)
        own = self.check(route, "GET", identity)
        if route.session is None:
            return serialize(self._global_get(route.kind, query, own))
        return self._extras[route.session.port_index].render(route, query)

    def put(self, path: str, body: Model, identity: PeerIdentity | None) -> None:
        route = self.route(path)
        self.check(route, "PUT", identity)
        assert route.session is not None
        self._extras[route.session.port_index].put(route, body)

    def post(self, path: str, body: Model, identity: PeerIdentity | None) -> Created:
        route = self.route(path)
        own = self.check(route, "POST", identity)
        if route.kind == "mup":
            if own is None:
                raise HTTPError(403, "no session for this PEV")
            assert isinstance(body, MirrorUsagePoint)  # body_type() admitted only that
            return self._extras[own.port_index].post_mirror_usage_point(body)
        assert route.session is not None
        return self._extras[route.session.port_index].post(route, body)

    def delete(self, path: str, identity: PeerIdentity | None) -> None:
        route = self.route(path)
        self.check(route, "DELETE", identity)
        assert route.session is not None and route.key is not None
        self._extras[route.session.port_index].delete_subscription(route.key)

    def body_type(self, path: str, method: str) -> tuple[type[Model], ...]:
        """The resource types a PUT or POST to ``path`` accepts."""
        route = self.route(path)
        if method not in route.methods:
            raise HTTPError(405, f"{method} is not allowed here", allow=route.methods)
        if method == "PUT":
            return (PEV_WRITABLE[route.kind],)
        return {
            "mup": (MirrorUsagePoint,),
            "mup-item": (MirrorMeterReading, MirrorMeterReadingList),
            "rsp": (Response,),
            "sub": (Subscription,),
        }[route.kind]

    # -- global resources ---------------------------------------------------------------

    def _global_routes(self) -> None:
        get = ("GET",)
        for path, kind in ((self.dcap_path, "dcap"), ("/tm", "tm"), ("/sdev", "sdev"),
                           ("/sdev/der", "sdev-derl"), ("/sdev/der/1", "sdev-der"),
                           ("/sdev/der/1/ders", "sdev-ders"), ("/edev", "edevl"),
                           ("/rsps", "rspsl")):
            self._routes[path] = Route(kind, get)
        self._routes["/mup"] = Route("mup", ("GET", "POST"))

    def _global_get(self, kind: str, query: ListQuery, own: PEVSession | None) -> Model:
        server = self._server
        mine = [own] if own is not None else []
        if kind == "dcap":
            # V2G-4.5.1-3 links; never a DERProgramListLink (V2G-4.5.1-4).
            return DeviceCapability(
                href=self.dcap_path, pollRate=server["poll_rate"],
                ResponseSetListLink=_list_link("/rsps", len(mine)),
                TimeLink=_link("/tm"),
                EndDeviceListLink=_list_link("/edev", len(mine)),
                MirrorUsagePointListLink=_list_link(
                    "/mup", sum(1 for s in mine if s.mirror is not None)),
                SelfDeviceLink=_link("/sdev"))
        if kind == "tm":
            return time_resource(self._clock.seconds(), server["timezone"], "/tm",
                                 server["poll_rate"])
        if kind == "sdev":
            return SelfDevice(href="/sdev", DERListLink=_list_link("/sdev/der", 1),
                              sFDI=0, pollRate=server["poll_rate"])
        if kind == "sdev-derl":
            return fill_list(DERList(href="/sdev/der", pollRate=server["poll_rate"]),
                             [self._global_get("sdev-der", query, own)], query)
        if kind == "sdev-der":
            return DER(href="/sdev/der/1", DERSettingsLink=_link("/sdev/der/1/ders"))
        if kind == "sdev-ders":
            return self.site_settings
        if kind == "edevl":
            return fill_list(EndDeviceList(href="/edev", pollRate=server["poll_rate"]),
                             [self._extras[s.port_index].end_device() for s in mine], query)
        if kind == "rspsl":
            return fill_list(ResponseSetList(href="/rsps", pollRate=server["poll_rate"]),
                             [self._extras[s.port_index].response_set() for s in mine],
                             query)
        if kind == "mup":
            points = [self._extras[s.port_index].mirror_usage_point()
                      for s in mine if s.mirror is not None]
            return fill_list(MirrorUsagePointList(href="/mup", pollRate=server["poll_rate"]),
                             points, query)
        raise AssertionError(kind)


class _SessionResources:
    """The resources the EVSE serves one PEV session, under ``/edev/<p>`` (and
    ``/rsps/<p>``, ``/mup/<p>``)."""

    log = Logger()

    def __init__(self, tree: EVSEResources, session: PEVSession) -> None:
        self.tree = tree
        self.session = session
        p = session.port_index
        e = session.edev
        self.e = e
        self.derp = f"{e}/derp/1"
        self.dderc = f"{self.derp}/dderc"
        self.derc = f"{self.derp}/derc"
        self.dc = f"{self.derp}/dc"
        self.actderc = f"{self.derp}/actderc"
        self.rsps = f"/rsps/{p}"
        self.rsp = f"{self.rsps}/rsp"
        self.mup = f"/mup/{p}"
        self.sub = f"{e}/sub"
        self.fsa = f"{e}/fsa"
        self.subscriptions = Subscriptions(
            self.sub, {self.derc: DERControlList, self.dderc: DefaultDERControl,
                       self.fsa: FunctionSetAssignmentsList, f"{e}/derp": DERProgramList})
        if tree.notifier is not None:
            tree.notifier.attach(self.subscriptions)
        self.management = ManagementInformation(
            tree._management_cfg, tree._site, now=tree.now(),
            control_href=lambda i: f"{self.derc}/{i}",
            curve_href=lambda i: f"{self.dc}/{i}",
            reply_to=self.rsp, mrid=tree._mrid)
        self._cache: dict[tuple[Any, ...], Model] = {}
        self._rendered: dict[tuple[Any, ...], bytes] = {}
        self.noted: set[tuple[str, ...]] = set()
        """What was logged once for this session (see :meth:`note`)."""
        self.fsa_mrid = tree._mrid()
        self.derp_mrid = tree._mrid()
        self.rsps_mrid = tree._mrid()

    def note(self, key: tuple[str, ...], fmt: str, warn: bool = True, **fields: Any) -> None:
        """Log ``fmt`` (with ``port`` and ``lfdi``) the first time ``key`` is seen in this
        session: accepted deviations are worth one line per session, not one per request."""
        if key in self.noted:
            return
        self.noted.add(key)
        emit = self.log.warn if warn else self.log.info
        emit(fmt, port=self.session.port_name, lfdi=self.session.lfdi, **fields)

    def routes(self) -> dict[str, Route]:
        s = self.session
        e = self.e
        get, getput = ("GET",), ("GET", "PUT")
        table = {
            e: Route("edev", get, s),
            f"{e}/di": Route("di", getput, s),
            f"{e}/ps": Route("ps", getput, s),
            self.sub: Route("sub", ("GET", "POST"), s),
            f"{e}/der": Route("derl", get, s),
            f"{e}/der/1": Route("der", get, s),
            self.fsa: Route("fsal", get, s),
            f"{self.fsa}/1": Route("fsa", get, s),
            f"{e}/derp": Route("derpl", get, s),
            self.derp: Route("derp", get, s),
            self.dderc: Route("dderc", get, s),
            self.derc: Route("derc", get, s),
            self.dc: Route("dc", get, s),
            self.actderc: Route("actderc", get, s),
            self.rsps: Route("rsps", get, s),
            self.rsp: Route("rsp", ("GET", "POST"), s),
            self.mup: Route("mup-item", ("GET", "POST"), s),
        }
        for name in ("dercap", "ders", "dera", "dstat"):
            table[f"{e}/der/1/{name}"] = Route(name, getput, s)
        return table

    def close(self) -> None:
        notifier = self.tree.notifier
        if notifier is not None:
            store = self.subscriptions
            notifier.cancel_all(store).addBoth(lambda _: notifier.detach(store))

    # -- documents ----------------------------------------------------------------------

    def end_device(self) -> EndDevice:
        """V2G-4.5.3-6: the PEV's EndDevice; never a RegistrationLink (V2G-4.5.3-7)."""
        s = self.session
        return EndDevice(
            href=self.e, DERListLink=_list_link(f"{self.e}/der", 1),
            DeviceInformationLink=_link(f"{self.e}/di"), lFDI=bytes.fromhex(s.lfdi),
            PowerStatusLink=_link(f"{self.e}/ps"), sFDI=s.identity.sfdi,
            changedTime=int(s.created), enabled=True,
            FunctionSetAssignmentsListLink=_list_link(self.fsa, 1),
            postRate=self.tree._server["post_rate"],
            SubscriptionListLink=_list_link(self.sub, len(self.subscriptions)))

    def response_set(self) -> ResponseSet:
        return ResponseSet(href=self.rsps, mRID=self.rsps_mrid, description="DERControl",
                           ResponseListLink=_list_link(self.rsp,
                                                       len(self.session.response_order)))

    def mirror_usage_point(self) -> MirrorUsagePoint:
        mirror = self.session.mirror
        assert mirror is not None
        return dataclasses.replace(
            mirror.usage_point, href=self.mup,
            postRate=self.tree._server["post_rate"],
            MirrorMeterReading=[m.reading for m in mirror.meters.values()])

    def der_program(self) -> DERProgram:
        m = self.management
        return DERProgram(
            href=self.derp, mRID=self.derp_mrid, description="SAE J3072", primacy=0,
            DefaultDERControlLink=_link(self.dderc),
            ActiveDERControlListLink=_list_link(self.actderc, len(m.active(self.tree.now()))),
            DERControlListLink=_list_link(self.derc, len(m.controls)),
            DERCurveListLink=_list_link(self.dc, len(m.curves)))

    #: Documents that change only when the management information or the authorization
    #: does: built once per query and kept until :meth:`changed` (they are most of the
    #: periodic load: the PEV polls them every second).
    CACHED = frozenset({"dderc", "derc", "derpl", "derp"})

    def get(self, route: Route, query: ListQuery) -> Model:
        if route.kind in self.CACHED:
            key = (route.kind, query.start, query.after, query.limit)
            doc = self._cache.get(key)
            if doc is None:
                doc = self._cache[key] = self._get(route, query)
            return doc
        return self._get(route, query)

    def render(self, route: Route, query: ListQuery) -> bytes:
        """The serialized :meth:`get`, kept with the cached document until it changes."""
        if route.kind in self.CACHED:
            key = (route.kind, query.start, query.after, query.limit)
            data = self._rendered.get(key)
            if data is None:
                data = self._rendered[key] = serialize(self.get(route, query))
            return data
        return serialize(self._get(route, query))

    def _get(self, route: Route, query: ListQuery) -> Model:
        kind = route.kind
        tree = self.tree
        server = tree._server
        m = self.management
        if kind == "edev":
            return self.end_device()
        if kind in PEV_WRITABLE:
            stored = self.session.written.get(kind)
            if stored is None:
                raise HTTPError(404, f"the PEV has not written {PEV_WRITABLE[kind].__name__} yet")
            return dataclasses.replace(stored.resource, href=f"{self.e}/"
                                       f"{'der/1/' if kind not in ('di', 'ps') else ''}{kind}")
        if kind == "derl":
            return fill_list(DERList(href=f"{self.e}/der", pollRate=server["poll_rate"]),
                             [self._der()], query)
        if kind == "der":
            return self._der()
        if kind == "fsal":
            return fill_list(FunctionSetAssignmentsList(
                href=self.fsa, pollRate=server["poll_rate"],
                subscribable=SubscribableType.NON_CONDITIONAL),
                [self._fsa()], query)
        if kind == "fsa":
            return self._fsa()
        if kind == "derpl":
            return fill_list(DERProgramList(href=f"{self.e}/derp",
                                            subscribable=SubscribableType.NON_CONDITIONAL,
                                            pollRate=DER_PROGRAM_LIST_POLL_RATE),
                             [self.der_program()], query)
        if kind == "derp":
            return self.der_program()
        if kind == "dderc":
            return m.default_control(self.session.energize, href=self.dderc)
        if kind == "derc":
            return fill_list(DERControlList(href=self.derc,
                                            subscribable=SubscribableType.NON_CONDITIONAL),
                             m.controls, query,
                             time_key=lambda c: c.creationTime)
        if kind == "actderc":
            return fill_list(ActiveDERControlList(href=self.actderc),
                             m.active(tree.now()), query)
        if kind == "dc":
            return fill_list(DERCurveList(href=self.dc), m.curves, query,
                             time_key=lambda c: c.creationTime)
        if kind == "derc-item":
            return self._item(m.controls, f"{self.derc}/{route.key}")
        if kind == "dc-item":
            return self._item(m.curves, f"{self.dc}/{route.key}")
        if kind == "rsps":
            return self.response_set()
        if kind == "rsp":
            return fill_list(ResponseList(href=self.rsp), self.session.response_order, query,
                             time_key=lambda r: r.createdDateTime or 0)
        if kind == "rsp-item":
            return self._item(self.session.response_order, f"{self.rsp}/{route.key}")
        if kind == "sub":
            return self.subscriptions.subscription_list(query)
        if kind == "sub-item":
            try:
                return self.subscriptions.get(f"{self.sub}/{route.key}")
            except UnknownSubscription:
                raise HTTPError(404, f"no subscription at {self.sub}/{route.key}")
        if kind == "mup-item":
            if self.session.mirror is None:
                raise HTTPError(404, "no MirrorUsagePoint yet")
            return self.mirror_usage_point()
        if kind == "mmr-item":
            mirror = self.session.mirror
            if mirror is not None:
                for meter in mirror.meters.values():
                    if meter.href == f"{self.mup}/{route.key}":
                        return meter.reading
        raise HTTPError(404, "no such resource")

    @staticmethod
    def _item(items: list[Any], href: str) -> Model:
        for item in items:
            if item.href == href:
                return item
        raise HTTPError(404, f"no resource at {href}")

    def _der(self) -> DER:
        e = self.e
        return DER(href=f"{e}/der/1", AssociatedDERProgramListLink=_list_link(f"{e}/derp", 1),
                   CurrentDERProgramLink=_link(self.derp),
                   DERAvailabilityLink=_link(f"{e}/der/1/dera"),
                   DERCapabilityLink=_link(f"{e}/der/1/dercap"),
                   DERSettingsLink=_link(f"{e}/der/1/ders"),
                   DERStatusLink=_link(f"{e}/der/1/dstat"))

    def _fsa(self) -> FunctionSetAssignments:
        """V2G-4.5.3.5-2/4: a TimeLink and a DERProgramListLink."""
        return FunctionSetAssignments(
            href=f"{self.fsa}/1", mRID=self.fsa_mrid, description="SAE J3072",
            DERProgramListLink=_list_link(f"{self.e}/derp", 1),
            ResponseSetListLink=_list_link("/rsps", 1), TimeLink=_link("/tm"))

    # -- writes -------------------------------------------------------------------------

    def put(self, route: Route, body: Model) -> None:
        session = self.session
        if route.kind == "di" and bytes(body.lFDI).hex().upper() != session.lfdi:  # type: ignore[attr-defined]
            raise HTTPError(400, "DeviceInformation/lFDI does not match the LFDI of the "
                                 "client certificate")
        session.written[route.kind] = Stored(body, self.tree._clock.seconds())
        session.emit("resource_written", route.kind, body)

    def post(self, route: Route, body: Model) -> Created:
        if route.kind == "rsp":
            return self._post_response(body)  # type: ignore[arg-type]
        if route.kind == "sub":
            return self._post_subscription(body)  # type: ignore[arg-type]
        if route.kind == "mup-item":
            return self._post_readings(body)
        raise AssertionError(route.kind)

    def _post_response(self, response: Response) -> Created:
        session = self.session
        if bytes(response.endDeviceLFDI).hex().upper() != session.lfdi:
            raise HTTPError(400, "Response/endDeviceLFDI does not match the LFDI of the "
                                 "client certificate")
        subject = bytes(response.subject)
        if not any(bytes(c.mRID) == subject for c in self.management.all_controls()):
            raise HTTPError(400, f"Response/subject {subject.hex().upper()} is not a "
                                 "DERControl of this EVSE")
        status = int(response.status) if response.status is not None else 0
        key = session.responses_received
        stored = dataclasses.replace(response, href=f"{self.rsp}/{key}",
                                     createdDateTime=response.createdDateTime or self.tree.now())
        session.add_response(subject, status, stored)  # bounded: RESPONSES_KEPT
        session.emit("response_received", stored)
        return Created(stored.href or "")

    def _post_subscription(self, subscription: Subscription) -> Created:
        try:
            href = self.subscriptions.add(subscription, self.session.lfdi)
        except SubscriptionError as e:
            raise HTTPError(400, str(e))
        return Created(href)

    def delete_subscription(self, key: str) -> None:
        try:
            self.subscriptions.remove(f"{self.sub}/{key}")
        except UnknownSubscription:
            raise HTTPError(404, f"no subscription at {self.sub}/{key}")

    def post_mirror_usage_point(self, body: MirrorUsagePoint) -> Created:
        session = self.session
        if bytes(body.deviceLFDI).hex().upper() != session.lfdi:
            raise HTTPError(400, "MirrorUsagePoint/deviceLFDI does not match the LFDI of the "
                                 "client certificate (V2G-4.7.2-23)")
        if int(body.roleFlags) != ROLE_IS_PEV:
            raise HTTPError(400, f"MirrorUsagePoint/roleFlags must be 0004 (isPEV only, "
                                 f"V2G-4.7.2-24/25), got {int(body.roleFlags):04X}")
        if int(body.serviceCategoryKind) != 0:
            raise HTTPError(400, "MirrorUsagePoint/serviceCategoryKind must be 0, electricity "
                                 "(V2G-4.7.2-26)")
        mirror = session.mirror
        if mirror is not None and bytes(mirror.usage_point.mRID) != bytes(body.mRID):
            raise HTTPError(400, "this PEV already has a MirrorUsagePoint with mRID "
                                 f"{bytes(mirror.usage_point.mRID).hex().upper()}")
        new = mirror is None
        usage_point = dataclasses.replace(body, MirrorMeterReading=[])
        if new:
            mirror = MirrorPoint(self.mup, usage_point)
        assert mirror is not None
        # Its readings are checked before anything is created: nothing is half applied.
        self._check_readings(mirror, body.MirrorMeterReading)
        session.mirror = mirror
        mirror.usage_point = usage_point
        if body.MirrorMeterReading:
            self._store_readings(body.MirrorMeterReading)
        return Created(self.mup, new)

    def _post_readings(self, body: Model) -> Created:
        if self.session.mirror is None:
            raise HTTPError(404, "no MirrorUsagePoint yet")
        readings = (body.MirrorMeterReading if isinstance(body, MirrorMeterReadingList)
                    else [body])
        created = self._store_readings(readings)  # type: ignore[arg-type]
        if len(readings) == 1 and created:
            return Created(created[0])
        meters = self.session.mirror.meters
        return Created(meters[bytes(readings[-1].mRID)].href, new=bool(created))  # type: ignore[attr-defined]

    def _store_readings(self, readings: list[MirrorMeterReading]) -> list[str]:
        mirror = self.session.mirror
        assert mirror is not None
        self._check_readings(mirror, readings)
        created = []
        now = self.tree._clock.seconds()
        for r in readings:
            key = bytes(r.mRID)
            meter = mirror.meters.get(key)
            if meter is None:
                meter = MirrorMeter(f"{self.mup}/{len(mirror.meters)}",
                                    dataclasses.replace(r, href=None))
                meter.reading = dataclasses.replace(r, href=meter.href)
                mirror.meters[key] = meter
                created.append(meter.href)
            else:
                meter.reading = dataclasses.replace(
                    r, href=meter.href, ReadingType=r.ReadingType or meter.reading.ReadingType)
            if r.Reading is not None:
                meter.history.append((now, r.Reading))
            self.session.emit("readings_received", meter)
        return created

    def _check_readings(self, mirror: MirrorPoint, readings: list[MirrorMeterReading]) -> None:
        """Validate every reading before any is stored (400 naming the problem): a new one
        needs its ReadingType, and every ReadingType sent must be as Table 6 says
        (V2G-4.7.2-27, -28; the EVSE checks them)."""
        new_meters = {bytes(r.mRID) for r in readings} - mirror.meters.keys()
        if len(mirror.meters) + len(new_meters) > MIRROR_METERS_MAX:
            raise HTTPError(400, f"at most {MIRROR_METERS_MAX} MirrorMeterReadings per "
                                 "MirrorUsagePoint")
        for r in readings:
            meter = mirror.meters.get(bytes(r.mRID))
            if meter is None and r.ReadingType is None:
                raise HTTPError(400, f"MirrorMeterReading {bytes(r.mRID).hex().upper()} is "
                                     "new and needs its ReadingType")
            if r.ReadingType is None:
                continue
            mrid = bytes(r.mRID).hex().upper()
            quantity, problems, deviations = table6_check(r.ReadingType, r.description,
                                                          self.tree.lenient)
            if problems:
                raise HTTPError(400, f"MirrorMeterReading {mrid}"
                                     f"{f' ({quantity})' if quantity else ''}: "
                                     f"{'; '.join(problems)}")
            for deviation in deviations:
                self.note(("Table 6", mrid, deviation),
                          "{port}: lenient mode: MirrorMeterReading {mrid} ({quantity}) "
                          "accepted with {deviation}", mrid=mrid, quantity=quantity,
                          deviation=deviation)

    # -- change notification -------------------------------------------------------------

    def changed(self, href: str) -> None:
        """Tell the subscribers of ``href`` it changed (the notifier applies each
        subscription's ``limit`` to a list)."""
        self._cache.clear()
        self._rendered.clear()
        notifier = self.tree.notifier
        if notifier is None or not self.subscriptions.for_resource(href):
            return
        resource = self.get(self.tree.route(href), ListQuery(0, None, MAX_PAGE))
        assert isinstance(resource, Resource)
        notifier.notify(href, resource)

    def update_management(self, management: Mapping[str, Any]) -> None:
        changes = self.management.update(management, self.tree.now())
        if changes.issued or changes.superseded or changes.cancelled:
            self.changed(self.derc)
            self.changed(f"{self.e}/derp")
        if changes.default_changed:
            self.changed(self.dderc)

    def subscriptions_by_key(self) -> set[str]:
        return {s.href.rpartition("/")[2] for s in self.subscriptions.list() if s.href}


def parse_error(e: ModelError) -> HTTPError:
    """A body that is not a valid 2030.5 document of the expected type."""
    return HTTPError(400, str(e))
