"""Session control of one port (profile 4.6.4, 4.7, 4.8, 4.9), and the site they share.

A :class:`PortController` follows one port's PEV through its session::

    idle ─link up─▶ linked ─TLS identity─▶ exchanging ─facts complete─▶ not_authorized
         ◀─link down (from any state)─      authorized ◀──policy grants──┘   ▲
                                            sleeping (inverterStatus 2) ─────┘
    fault (contactor failed to open; from any state, until an operator clears it)

It feeds the authorization policy, the heartbeat monitor and the gatekeeper, and drives
DefaultDERControl:opModEnergize and the contactor from their verdicts. It does no I/O of
its own: link events come from the transport, resources from the 2030.5 server, samples
from the meter, time from the injected clock. Every transition is logged with the port,
the LFDI and the reasons.

:class:`SiteCoordinator` shares the site's active-power limit among the authorized PEVs
(4.6.1.1): when more than one is authorized each gets an opModMaxLimW DERControl that keeps
the sum within the site limit, and gets more back when another leaves. Changes of the
authorized set in one reactor turn are shared out once, in the next turn, and only PEVs
whose share value changed get a new DERControl.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from twisted.logger import Logger
from zope.interface import implementer

from sepgw.evse.gatekeeper import OPEN_DEADLINE_S, Gatekeeper
from sepgw.evse.heartbeat import HeartbeatMonitor
from sepgw.evse.policy_facts import PolicyFacts
from sepgw.evse.sessions import PEVSession
from sepgw.evse.tree import EVSEResources
from sepgw.interfaces import (
    ContactorState,
    Decision,
    IAuthorizationPolicy,
    IContactor,
    ILinkListener,
    IMeterListener,
    LinkPeer,
    MeterSample,
)

SLEEPING = 2
"""DERStatus inverterStatus "2 - sleeping" (V2G-4.7.2-4, 4.8.3)."""

SHARE_KEY = "site-share"
FIXED_W_KEY = "fixed-w"


class PortState(str, enum.Enum):
    idle = "idle"
    linked = "linked"
    exchanging = "exchanging"
    not_authorized = "not authorized"
    authorized = "authorized"
    sleeping = "sleeping"
    fault = "contactor fault"


REQUIRED_FACTS = ("di", "dercap", "ders", "dera", "ps", "dstat")
"""What the PEV sends in step 2 (4.6.2) before it is evaluated."""


def _real(value: Any) -> float | None:
    """value × 10^multiplier of a 2030.5 multiplier/value pair (None stays None)."""
    if value is None:
        return None
    return float(value.value) * 10.0 ** int(value.multiplier)


@implementer(ILinkListener, IMeterListener)
class PortController:
    """The session logic of one port."""

    log = Logger()

    def __init__(self, *, index: int, name: str, clock: Any, resources: EVSEResources,
                 contactor: IContactor, policy: IAuthorizationPolicy | None,
                 site: Mapping[str, Any], safety: Mapping[str, Any], meter_timeout: float,
                 coordinator: "SiteCoordinator | None" = None) -> None:
        self.index = index
        self.name = name
        self._clock = clock
        self.resources = resources
        self.contactor = contactor
        self.policy = policy
        self.site = site
        self.coordinator = coordinator
        self.state = PortState.idle
        self.session: PEVSession | None = None
        self.link = False
        self.sleeping = False
        self.granted = False
        self.decision = Decision(False, ("no PEV",))
        self.reasons: tuple[str, ...] = ("no PEV",)
        self.heartbeat = HeartbeatMonitor(clock, self._comms_lost, self._comms_restored)
        self.gatekeeper = Gatekeeper(
            clock, contactor, port=name, on_revoke=self._gatekeeper_revoked,
            meter_timeout=meter_timeout,
            discharge_threshold_w=safety["discharge_threshold_w"],
            limit_tolerance_pct=safety["limit_tolerance_pct"],
            open_deadline_s=safety.get("open_deadline_s") or OPEN_DEADLINE_S)
        self._reevaluate_s = safety["reevaluate_s"]
        self.authorization_observers: list[Any] = []
        """Called with the new authorization (bool) whenever it changes."""
        self._recheck: Any = None
        self._granted_max_w: float | None = None
        resources.admission_checks.append(self._admission)
        resources.attach_observers.append(self._attached)
        resources.detach_observers.append(self._detached)
        if coordinator is not None:
            coordinator.add(self)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.gatekeeper.start()
        self._update_contactor("port start")

    def stop(self) -> None:
        """Service stop: revoke, forbid and open the contactor, stop every timer."""
        self.heartbeat.stop()
        self._cancel_recheck()
        self._set_granted(False, ("service stopping",), "service stopping")
        self.gatekeeper.stop()

    # -- link (ILinkListener) ----------------------------------------------------------

    def link_up(self, peer: LinkPeer) -> None:
        self.link = True
        self.gatekeeper.pev_present(True)
        self._transition(f"link up, peer {peer.mac or peer.address or 'unknown'}")

    def link_down(self, reason: str) -> None:
        self.link = False
        self.gatekeeper.pev_present(False)
        self.resources.detach(self.index, f"link down: {reason}")
        self._evaluate(f"link down: {reason}")

    # -- meter (IMeterListener) ----------------------------------------------------------

    def meter_sample(self, sample: MeterSample) -> None:
        self.gatekeeper.meter_sample(sample)
        if self.gatekeeper.may_close and self.contactor.state is not ContactorState.closed \
                and self.session is not None and not self.contactor.allowed:
            self._update_contactor("meter recovered")

    def meter_error(self, reason: str) -> None:
        self.gatekeeper.meter_error(reason)

    # -- session (observer of the 2030.5 server) ----------------------------------------

    def _admission(self, index: int) -> str | None:
        """A port with a contactor fault takes no new session until an operator clears it."""
        if index != self.index or not self.gatekeeper.contactor_fault:
            return None
        return (f"{self.name}: contactor fault ({self.gatekeeper.contactor_fault}); the port "
                f"takes no session until an operator clears it (sepgw ctl clear-fault "
                f"{self.name})")

    def _attached(self, session: PEVSession) -> None:
        if session.port_index != self.index:
            return
        self.session = session
        session.observers.append(self)
        self.sleeping = False
        self.heartbeat.start()
        self._evaluate(f"PEV LFDI {session.lfdi} SFDI {session.identity.sfdi} connected")

    def _detached(self, session: PEVSession) -> None:
        if session is not self.session:
            return
        self.session = None
        self.heartbeat.stop()
        self._evaluate("session ended")

    def resource_written(self, session: PEVSession, name: str, resource: Any) -> None:
        if name == "dstat":
            status = resource.inverterStatus
            value = int(status.value) if status is not None else None
            if value == SLEEPING:
                if not self.sleeping:
                    self.sleeping = True
                    self.heartbeat.stop()
                    self._evaluate("PEV sleeping (inverterStatus 2)")
                return
            if self.sleeping:
                self.sleeping = False
                self.heartbeat.start()
                self.heartbeat.heartbeat()
                self._evaluate(f"PEV awake (inverterStatus {value})")
                return
            self.heartbeat.heartbeat()
            if self.state is PortState.exchanging:
                self._evaluate("DERStatus received")
            return
        self._evaluate(f"PEV wrote {type(resource).__name__}")

    def response_received(self, session: PEVSession, response: Any) -> None:
        if response.subject is not None and response.status is not None:
            # A superseded or cancelled DERControl answered may be retired from the list.
            self.resources.management(session).acknowledge(bytes(response.subject),
                                                           int(response.status))
        if not self.granted:
            self._evaluate("DERControl response received")

    def readings_received(self, session: PEVSession, meter: Any) -> None:
        pass

    # -- verdicts -------------------------------------------------------------------------

    def _comms_lost(self) -> None:
        self._evaluate("loss of communications: 10 heartbeats missed")

    def _comms_restored(self) -> None:
        self._evaluate("communications restored: 3 heartbeats received")

    def _gatekeeper_revoked(self, reason: str) -> None:
        self._evaluate(reason)

    def facts(self) -> PolicyFacts | None:
        """What the policy decides on, from what the PEV sent and the EVSE serves."""
        s = self.session
        if s is None:
            return None
        written = {name: stored.resource for name, stored in s.written.items()}
        management = self.resources.management(s)
        responses: dict[bytes, set[int]] = {}
        for subject, status in s.responses:
            responses.setdefault(subject, set()).add(status)
        return PolicyFacts(
            lfdi=s.lfdi, sfdi=s.identity.sfdi,
            hardware_module_name=s.identity.hardware_module_name,
            device_information=written.get("di"), der_capability=written.get("dercap"),
            der_settings=written.get("ders"), site=self.site,
            site_settings=self.resources.site_settings, controls=management.current(),
            responses={k: frozenset(v) for k, v in responses.items()})

    def pev_max_w(self) -> float | None:
        """The most the PEV says it may discharge: its DERSettings setMaxDischargeRateW when
        it has one (0 is a value: no discharge), else setMaxW; None without DERSettings."""
        s = self.session
        stored = s.written.get("ders") if s is not None else None
        if stored is None:
            return None
        settings = stored.resource
        discharge = _real(settings.setMaxDischargeRateW)
        return discharge if discharge is not None else _real(settings.setMaxW)

    def clear_fault(self) -> str:
        """The operator clears a contactor fault (only with the contacts sensed open, else
        :class:`sepgw.evse.gatekeeper.FaultNotCleared`); the port is evaluated again."""
        how = self.gatekeeper.clear_fault()
        self._evaluate("operator cleared the contactor fault")
        return how

    def _evaluate(self, why: str) -> None:
        reasons: list[str] = []
        s = self.session
        if self.gatekeeper.contactor_fault:
            # The policy is not consulted: nothing is granted until an operator clears it.
            reasons.append(f"contactor {self.gatekeeper.contactor_status()}: "
                           f"{self.gatekeeper.contactor_fault} (sepgw ctl clear-fault "
                           f"{self.name})")
        elif not self.link:
            reasons.append("no PEV on the link")
        elif s is None:
            reasons.append("PEV not connected over 2030.5")
        else:
            missing = [n for n in REQUIRED_FACTS if n not in s.written]
            if missing:
                reasons.append(f"information exchange incomplete: {', '.join(missing)}")
            elif self.policy is None:
                reasons.append("no authorization policy configured")
            else:
                facts = self.facts()
                try:
                    self.decision = self.policy.evaluate(facts)
                except Exception:
                    self.log.failure("{port}: the authorization policy failed",
                                     port=self.name)
                    self.decision = Decision(False, ("authorization policy failed",))
                reasons.extend(self.decision.reasons if not self.decision.granted
                               else ())
            if not self.heartbeat.ok:
                reasons.append("loss of communications")
            if self.sleeping:
                reasons.append("PEV sleeping")
        if self.gatekeeper.violation:
            reasons.append(f"gatekeeper: {self.gatekeeper.violation}")
        if self.gatekeeper.revocation:
            reasons.append(f"gatekeeper: {self.gatekeeper.revocation}")
        if self.gatekeeper.meter_fault:
            reasons.append(f"gatekeeper: {self.gatekeeper.meter_fault}")
        self._set_granted(not reasons, tuple(reasons), why)

    def _set_granted(self, granted: bool, reasons: tuple[str, ...], why: str = "") -> None:
        changed = granted != self.granted
        self.granted = granted
        self.reasons = reasons
        if self.session is not None:
            self.resources.set_energize(self.session, granted)
        pev_max_w = self.pev_max_w()
        if changed:
            self.gatekeeper.set_authorized(granted, pev_max_w)
            if self.coordinator is not None:
                self.coordinator.rebalance(self)
            for observer in list(self.authorization_observers):
                observer(granted)
        elif granted and pev_max_w != self._granted_max_w:
            # New DERSettings while authorized: the limit follows them.
            if self.coordinator is not None:
                self.coordinator.rebalance(self)
            else:
                self.gatekeeper.set_limit(pev_max_w)
        self._granted_max_w = pev_max_w if granted else None
        self._schedule_recheck()
        self._update_contactor(why)
        self._transition(why)

    def _schedule_recheck(self) -> None:
        """A denied PEV is re-evaluated now and then (the approved list may change)."""
        self._cancel_recheck()
        if self.session is not None and not self.granted and self._reevaluate_s > 0:
            self._recheck = self._clock.callLater(self._reevaluate_s, self._evaluate,
                                                  "periodic re-evaluation")

    def _cancel_recheck(self) -> None:
        if self._recheck is not None and self._recheck.active():
            self._recheck.cancel()
        self._recheck = None

    def _state(self) -> PortState:
        if self.gatekeeper.contactor_fault:
            return PortState.fault
        if not self.link:
            return PortState.idle
        if self.session is None:
            return PortState.linked
        if self.sleeping:
            return PortState.sleeping
        if self.granted:
            return PortState.authorized
        if any(n not in self.session.written for n in REQUIRED_FACTS):
            return PortState.exchanging
        return PortState.not_authorized

    def _transition(self, why: str) -> None:
        state = self._state()
        if state is self.state:
            return
        old, self.state = self.state, state
        lfdi = self.session.lfdi if self.session is not None else "-"
        self.log.info("{port}: {old} -> {new} (LFDI {lfdi}): {why}{detail}", port=self.name,
                      old=old.value, new=state.value, lfdi=lfdi, why=why,
                      detail="" if self.granted or not self.reasons
                      else "; not authorized because: " + "; ".join(self.reasons))

    def _update_contactor(self, why: str) -> None:
        """Close while a PEV is connected and the gatekeeper allows; open otherwise (the
        gatekeeper commands and verifies the open)."""
        want = self.gatekeeper.may_close and self.session is not None
        try:
            if not want:
                self.gatekeeper.forbid(why)
                return
            self.contactor.set_allowed(True)
            if self.contactor.state is not ContactorState.closed:
                self.contactor.close().addErrback(self._close_failed)
        except Exception as e:
            self.gatekeeper.trip(f"contactor plugin failed: {type(e).__name__}: {e}")

    def _close_failed(self, failure: Any) -> None:
        self.log.warn("{port}: contactor did not close: {reason}", port=self.name,
                      reason=failure.getErrorMessage())

    # -- coordinated charging (4.8.2) ------------------------------------------------------

    def set_fixed_w(self, percent: float) -> None:
        """Ask the PEV to discharge (positive) or charge (negative) ``percent`` of its
        setMaxW with a DERControl opModFixedW (V2G-4.8.2-1)."""
        if self.session is None:
            raise LookupError(f"{self.name}: no PEV session")
        if not -100.0 <= percent <= 100.0:
            raise ValueError(f"opModFixedW must be within -100 and 100 %, got {percent}")
        self.resources.set_control(self.session, FIXED_W_KEY, "opModFixedW",
                                   round(percent * 100), "Coordinated W")
        self.log.info("{port}: opModFixedW {pct:g} % issued", port=self.name, pct=percent)

    def clear_fixed_w(self) -> None:
        """Withdraw the coordinated-charging DERControl."""
        if self.session is not None:
            self.resources.clear_control(self.session, FIXED_W_KEY)


HEADROOM_DIVISOR = 16
"""With N authorized PEVs the shares are computed as if N + N // 16 shared the site (none
extra below 16 PEVs): the reserve lets the next arrivals take a share without lowering
anyone else's."""

SHARE_CHUNK = 32
"""At most this many new share DERControls per reactor turn; the rest follow in the next
turns (lowered shares first), so that re-sharing among hundreds of PEVs never blocks the
reactor for long (a PEV has 3 s to follow a lowered limit, V2G-4.8.1.2-3)."""


class SiteCoordinator:
    """Shares the site active-power limit among the authorized PEVs (4.6.1.1).

    Every authorized PEV may use up to a common *level* of watts (its own limit when that is
    lower: water-filling, :func:`share`), and the shares never add up to more than the
    site limit. The level is sticky: it stays as long as the shares fit within the site and
    the level is not below the one computed with twice the reserve
    (:data:`HEADROOM_DIVISOR`); otherwise it is computed anew with the reserve. Below 16
    PEVs there is no reserve, so the level is exactly the fair share and the whole site is
    used. So an arrival usually gets a share from the reserve and nobody else's changes,
    and a departure usually changes nothing.

    :meth:`rebalance` asks for an update; it runs once in the next reactor turn
    (``callLater(0)`` on the ports' clock), so PEVs arriving and leaving in the same turn
    cost one update. Only PEVs whose opModMaxLimW value changed get a new DERControl (at
    most :data:`SHARE_CHUNK` per turn) and a new gatekeeper limit.
    """

    log = Logger()

    def __init__(self, site_max_w: float, clock: Any = None) -> None:
        self.site_max_w = site_max_w
        self.ports: list[PortController] = []
        self.level = math.inf
        """The common share level in watts (inf: every PEV gets its own limit)."""
        self.updates = 0
        """Updates run so far (one per reactor turn with a change of the authorized set)."""
        self.issued = 0
        """Share DERControls issued so far (new or superseding)."""
        self._clock = clock
        self._shared = False
        self._pending: Any = None
        self._draining: Any = None
        self._dirty: set[PortController] = set()
        self._wants: dict[str, float] = {}
        """Port name → the watts each authorized PEV may want (its limit, else the site's)."""
        self._want: dict[str, _Share] = {}
        """Port name → what to serve each port with a session."""
        self._served: dict[str, _Share] = {}
        """Port name → what was last served to it."""
        self._todo: set[str] = set()
        """Ports whose wanted share differs from the served one."""

    @property
    def allocation(self) -> dict[str, float]:
        """Port name → watts it may discharge, for each authorized PEV (when 2 or more)."""
        if len(self._wants) < 2:
            return {}
        return {k: min(w, self.level) for k, w in self._wants.items()}

    def add(self, port: PortController) -> None:
        self.ports.append(port)
        if self._clock is None:
            self._clock = port._clock

    def rebalance(self, port: PortController | None = None) -> None:
        """``port``'s authorization or limit changed (None: any port's may have): the
        shares are recomputed in the next reactor turn, once for all such changes."""
        self._dirty.update(self.ports if port is None else (port,))
        if self._clock is None:
            self.update()
        elif self._pending is None:
            self._pending = self._clock.callLater(0, self.update)

    def update(self) -> None:
        """Recompute the shares now and serve those that changed."""
        if self._pending is not None:
            if self._pending.active():
                self._pending.cancel()
            self._pending = None
        self.updates += 1
        site = self.site_max_w
        dirty, self._dirty = self._dirty, set()
        wants = self._wants
        for port in dirty:
            if port.granted and port.session is not None:
                # _granted_max_w: pev_max_w() as of its last grant or DERSettings change.
                wants[port.name] = _or_site(port._granted_max_w, site)
            else:
                wants.pop(port.name, None)
        shared = len(wants) > 1
        level = self._new_level() if shared else math.inf
        if level != self.level or shared != self._shared:
            self.level, self._shared = level, shared
            dirty = set(self.ports)
        want, served, todo = self._want, self._served, self._todo
        for port in dirty:
            name = port.name
            session = port.session
            if session is None:
                want.pop(name, None)
                served.pop(name, None)  # that session ended: its controls went with it
                todo.discard(name)
                continue
            pev_max = wants.get(name)
            if pev_max is None or not shared:
                new = _Share(session, None, pev_max if pev_max is not None
                             else port.pev_max_w())
            else:
                # opModMaxLimW: hundredths of a percent of the PEV's setMaxW, rounded down
                # so that the sum stays within the site limit.
                value = (min(10000, math.floor(min(pev_max, level) / pev_max * 10000))
                         if pev_max > 0 else 0)
                new = _Share(session, value, pev_max)
            want[name] = new
            old = served.get(name)
            if old is not None and old.session is not session:
                old = None
            if old is None and new.value is None:
                # No share to withdraw; the grant itself set the gatekeeper's limit.
                served[name] = new
                todo.discard(name)
            elif old is None or not old.same(new):
                todo.add(name)
            else:
                todo.discard(name)
        self._drain()

    def _new_level(self) -> float:
        """Keep the current level while it fits and is not too low, else a new one.

        With f(L) = Σ min(want, L): the level fits while f(level) <= site, and it is not
        below the level computed with 2 × reserve extra PEVs while f(level) + 2 × reserve
        × level >= site (f is increasing), so the check is one pass without sorting."""
        site = self.site_max_w
        level = self.level
        values = self._wants.values()
        reserve = len(values) // HEADROOM_DIVISOR
        if level < math.inf:
            used = sum(min(w, level) for w in values)
            # (a relative 1e-9 for float sums: the values served are rounded down anyway)
            if used <= site * (1 + 1e-9) and used + 2 * reserve * level >= site:
                return level
        elif sum(values) <= site and reserve == 0:
            return level  # everyone still fits (with a reserve, inf is not sticky)
        return _level(site, sorted(values), reserve)

    def _drain(self) -> None:
        """Serve what changed: lowered shares first, at most SHARE_CHUNK new controls."""
        if self._draining is not None and self._draining.active():
            self._draining.cancel()  # this call does its work; one more is set if needed
        self._draining = None
        served = self._served
        by_name = {p.name: p for p in self.ports} if self._todo else {}

        def lowered(name: str) -> bool:
            new, old = self._want[name], served.get(name)
            return new.value is not None and (old is None or old.value is None
                                              or new.value < old.value)

        budget = SHARE_CHUNK
        changed = 0
        for name in sorted(self._todo, key=lambda n: not lowered(n)):
            port = by_name[name]
            new = self._want[name]
            if new.session is not port.session:
                # The session ended since this share was computed (a drain continued in a
                # later turn): its controls went with it; the port's next change recomputes.
                self._want.pop(name, None)
                served.pop(name, None)
                self._todo.discard(name)
                continue
            old = served.get(name)
            old_value = old.value if old is not None else None
            if new.value != old_value:
                if budget == 0:
                    self._draining = self._clock.callLater(0, self._drain)
                    break
                budget -= 1
                changed += 1
                if new.value is None:
                    port.resources.clear_control(new.session, SHARE_KEY)
                else:
                    port.resources.set_control(new.session, SHARE_KEY, "opModMaxLimW",
                                               new.value, "Site share")
                    self.issued += 1
            served[name] = new
            self._todo.discard(name)
            port.gatekeeper.set_limit(new.pev_max if new.value is None or new.pev_max is None
                                      else new.pev_max * new.value / 10000)
        if changed and len(self._wants) > 1:
            detail = (", ".join(f"{k} {v:.0f} W" for k, v in sorted(self.allocation.items()))
                      if len(self._wants) <= 8 else
                      f"{len(self._wants)} PEVs, at most {self.level:.0f} W each")
            self.log.info("Site limit {site:g} W shared: {shares} ({changed} share "
                          "DERControls changed)", site=self.site_max_w, shares=detail,
                          changed=changed)


@dataclass(frozen=True, eq=False)
class _Share:
    """What a port is served: its session, the opModMaxLimW value (None: no share
    control) and the PEV limit the value is a share of."""
    session: PEVSession
    value: int | None
    pev_max: float | None

    def same(self, other: "_Share") -> bool:
        return (self.session is other.session and self.value == other.value
                and self.pev_max == other.pev_max)


def _level(site_max_w: float, ordered: Sequence[float], extra: int) -> float:
    """The water-filling level of ``site_max_w`` among PEVs wanting ``ordered`` W (rising)
    and ``extra`` more that want all they can get; inf when everyone fits."""
    remaining = site_max_w
    count = len(ordered) + extra
    for w in ordered:
        if count == 0:
            break
        if w * count > remaining:
            return remaining / count
        remaining -= w
        count -= 1
    return remaining / count if count else math.inf


def _or_site(pev_max_w: float | None, site_max_w: float) -> float:
    """What a PEV may want of the site: its own limit (even 0), the site's without one."""
    return site_max_w if pev_max_w is None else max(0.0, pev_max_w)


def share(site_max_w: float, wants: Mapping[str, float]) -> dict[str, float]:
    """Split ``site_max_w`` among PEVs wanting at most ``wants[name]`` W each: equal
    shares, and what a PEV cannot use goes to the others (water-filling)."""
    result: dict[str, float] = {}
    remaining = site_max_w
    order: Sequence[tuple[str, float]] = sorted(wants.items(), key=lambda kv: (kv[1], kv[0]))
    for i, (name, want) in enumerate(order):
        fair = remaining / (len(order) - i)
        result[name] = min(want, fair)
        remaining -= result[name]
    return result

