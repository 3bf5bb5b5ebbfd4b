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
the sum within the site limit, and gets more back when another leaves.
"""

from __future__ import annotations

import enum
import math
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
                self.coordinator.rebalance()
            for observer in list(self.authorization_observers):
                observer(granted)
        elif granted and pev_max_w != self._granted_max_w:
            # New DERSettings while authorized: the limit follows them.
            if self.coordinator is not None:
                self.coordinator.rebalance()
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


class SiteCoordinator:
    """Shares the site active-power limit among the authorized PEVs (4.6.1.1)."""

    log = Logger()

    def __init__(self, site_max_w: float) -> None:
        self.site_max_w = site_max_w
        self.ports: list[PortController] = []
        self.allocation: dict[str, float] = {}

    def add(self, port: PortController) -> None:
        self.ports.append(port)

    def rebalance(self) -> None:
        authorized = [p for p in self.ports if p.granted and p.session is not None]
        wants = {p.name: _or_site(p.pev_max_w(), self.site_max_w) for p in authorized}
        self.allocation = share(self.site_max_w, wants)
        for port in self.ports:
            session = port.session
            if session is None:
                continue
            if port.name not in self.allocation or len(authorized) < 2:
                port.resources.clear_control(session, SHARE_KEY)
                port.gatekeeper.set_limit(port.pev_max_w())
                continue
            allowed = self.allocation[port.name]
            pev_max = wants[port.name]
            # opModMaxLimW: hundredths of a percent of the PEV's setMaxW, rounded down so
            # that the sum stays within the site limit.
            value = (min(10000, math.floor(allowed / pev_max * 10000)) if pev_max > 0
                     else 0)
            port.resources.set_control(session, SHARE_KEY, "opModMaxLimW", value,
                                       "Site share")
            port.gatekeeper.set_limit(pev_max * value / 10000)
        if len(authorized) > 1:
            self.log.info("Site limit {site:g} W shared: {shares}", site=self.site_max_w,
                          shares=", ".join(f"{k} {v:.0f} W" for k, v in
                                           sorted(self.allocation.items())))


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

