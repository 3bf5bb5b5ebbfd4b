"""The EVSE side of the uplink: the DME's site-level controls applied through the same
paths the operator and the site sharing use. Imported by the gateway only when an uplink is
configured.

* opModEnergize / opModConnect false: a fact the authorization policy sees.
  :class:`DMEGatedPolicy` wraps the configured policy and denies while the DME says so; every
  port is evaluated again, and the controller revokes (opModEnergize false to the PEV,
  contactor opened by the gatekeeper). The DME can only take a grant away: true (or no
  control) leaves the decision to the configured policy, so no DME control closes a
  contactor by itself.
* opModFixedW: percent of the site's setMaxW (``[site] max_w``), a site setpoint shared among
  the authorized PEVs in proportion to what each can do (water-filling, as the site sharing
  does), relayed to each as opModFixedW in percent of that PEV's own limit
  (:meth:`PortController.set_fixed_w`, the operator's path; the later of the two wins).
* opModMaxLimW: percent of the site's setMaxW, a site limit shared the same way and relayed
  to each PEV as an opModMaxLimW DERControl of its own (never above the site-sharing share the
  PEV already has).

A control that arrives with no PEV authorized is kept and relayed when a PEV is authorized
while the event is still in effect (the EventEngine ends it on its schedule).

The PEVs' Responses to the relayed DERControls are reported to ``responses`` (the uplink's
:meth:`~sepgw.uplink.client.UplinkClient.pev_response`) as answers to the DME control the
relayed one carries (the ``sources`` of the site control), also when one relayed control
carries a later DME control of the same value.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

from twisted.logger import Logger
from zope.interface import implementer

from sepgw.evse.controller import share
from sepgw.interfaces import Decision, IAuthorizationPolicy

__all__ = ["DMEGatedPolicy", "SiteControls", "DME_LIMIT_KEY"]

DME_LIMIT_KEY = "dme-max-lim-w"
_RELAYED_KEPT = 1024
"""Relayed DERControls remembered for their PEVs' Responses."""


@implementer(IAuthorizationPolicy)
class DMEGatedPolicy:
    """The configured policy, denied while the DME's opModEnergize or opModConnect is
    false."""

    def __init__(self, policy: Any, site: "SiteControls") -> None:
        self.policy = policy
        self.site = site

    def start(self) -> Any:
        return None

    def stop(self) -> Any:
        return None

    def evaluate(self, facts: Any) -> Decision:
        deny = self.site.denial()
        decision: Decision = self.policy.evaluate(facts)
        if deny is None:
            return decision
        return Decision(False, (deny,) + (decision.reasons if not decision.granted else ()))


class SiteControls:
    """Applies the DME's site control (the uplink sink's ``{"site": {...}}``) to the ports
    (:class:`sepgw.evse.controller.PortController`)."""

    log = Logger()

    def __init__(self, ports: Sequence[Any], site: Mapping[str, Any], clock: Any,
                 coordinator: Any = None) -> None:
        self.ports: list[Any] = []
        self.site_max_w = float(site["max_w"])
        self.clock = clock
        self.coordinator = coordinator
        self.controls: dict[str, Any] = {}
        self._fixed: dict[str, tuple[Any, float]] = {}
        self._limit: dict[str, tuple[Any, int, int]] = {}
        self._pending: Any = None
        self.sources: dict[str, str | None] = {}
        self.responses: Callable[[bytes, str, int], None] | None = None
        """Called with (DME control mRID, port, status) for each PEV Response to a relayed
        control."""
        self._relayed: OrderedDict[bytes, tuple[str, set[bytes], set[int]]] = OrderedDict()
        """relayed DERControl mRID -> (port, the DME controls it carries, PEV statuses)."""
        self.attach(ports, coordinator)

    def attach(self, ports: Sequence[Any], coordinator: Any = None) -> None:
        """Follow these ports (and the site sharing's ``coordinator``)."""
        for port in ports:
            if port not in self.ports:
                self.ports.append(port)
            port.authorization_observers.append(self._authorization_changed)
        if coordinator is not None:
            self.coordinator = coordinator

    def gate(self, policy: Any) -> DMEGatedPolicy:
        return DMEGatedPolicy(policy, self)

    def denial(self) -> str | None:
        for name in ("opModEnergize", "opModConnect"):
            if self.controls.get(name) is False:
                return f"DME: {name} false"
        return None

    def apply(self, controls: Mapping[str, Any]) -> None:
        """New controls in effect (``None`` or absent: that function is not controlled)."""
        before = self.denial()
        self.controls = {k: v for k, v in controls.items() if k != "sources"}
        self.sources = dict(controls.get("sources") or {})
        after = self.denial()
        if before != after:
            why = after or "DME: energize and connect no longer false"
            self.log.info("DME site control: {why}; every port evaluated again", why=why)
            for port in self.ports:
                port._evaluate(why)
        self.relay()

    def _authorization_changed(self, granted: bool) -> None:
        # After the site sharing's own update (queued first in the same turn).
        if self._pending is None:
            self._pending = self.clock.callLater(0, self._relay_later)

    def _relay_later(self) -> None:
        self._pending = None
        self.relay()

    def relay(self) -> None:
        """Share the DME's opModFixedW and opModMaxLimW among the authorized PEVs and serve
        each PEV the result (only what changed)."""
        authorized = [p for p in self.ports if p.granted and p.session is not None]
        wants = {p.name: _want(p, self.site_max_w) for p in authorized}
        self._relay_fixed(authorized, wants)
        self._relay_limit(authorized, wants)
        self._follow(authorized)

    # -- the PEVs' Responses ---------------------------------------------------------------

    def _follow(self, authorized: list[Any]) -> None:
        """Link each relayed DERControl to the DME control it now carries."""
        for p in authorized:
            for function, key in (("opModFixedW", "fixed"), ("opModMaxLimW", "limit")):
                source = self.sources.get(function)
                held = (self._fixed if key == "fixed" else self._limit).get(p.name)
                if not source or held is None or held[0] is not p.session:
                    continue
                control = _relayed_control(p, function)
                if control is None:
                    continue
                observers = getattr(p.session, "observers", None)
                if observers is not None and self not in observers:
                    observers.append(self)
                mrid, dme = bytes(control.mRID), bytes.fromhex(source)
                port, carried, statuses = self._relayed.setdefault(mrid, (p.name, set(), set()))
                if dme not in carried:
                    carried.add(dme)
                    for status in sorted(statuses):  # already answered: report for it too
                        self._report(dme, port, status)
                self._relayed.move_to_end(mrid)
                while len(self._relayed) > _RELAYED_KEPT:
                    self._relayed.popitem(last=False)

    def response_received(self, session: Any, response: Any) -> None:
        """A PEV posted a Response (session observer): one to a relayed control is
        reported for the DME control(s) it carries."""
        if response.subject is None or response.status is None:
            return
        entry = self._relayed.get(bytes(response.subject))
        if entry is None:
            return
        port, carried, statuses = entry
        statuses.add(int(response.status))
        for dme in carried:
            self._report(dme, port, int(response.status))

    def _report(self, dme: bytes, port: str, status: int) -> None:
        if self.responses is not None:
            try:
                self.responses(dme, port, status)
            except Exception:
                self.log.failure("Reporting a PEV response upstream failed")

    def _relay_fixed(self, authorized: list[Any], wants: Mapping[str, float]) -> None:
        fixed = self.controls.get("opModFixedW")
        target: dict[str, float] = {}
        if fixed is not None and authorized:
            site_w = float(fixed) / 10000.0 * self.site_max_w
            shares = share(abs(site_w), wants)
            for p in authorized:
                pev = wants[p.name]
                pct = 0.0 if pev <= 0 else min(100.0, shares[p.name] / pev * 100.0)
                target[p.name] = math.copysign(round(pct, 2), site_w) if pct else 0.0
        for p in self.ports:
            old = self._fixed.get(p.name)
            if p.name in target:
                if old is None or old[0] is not p.session or old[1] != target[p.name]:
                    try:
                        p.set_fixed_w(target[p.name])
                        self._fixed[p.name] = (p.session, target[p.name])
                    except (LookupError, ValueError) as e:
                        self.log.warn("{port}: DME opModFixedW not relayed: {error}",
                                      port=p.name, error=e)
            elif old is not None:
                if old[0] is p.session:
                    p.clear_fixed_w()
                del self._fixed[p.name]

    def _relay_limit(self, authorized: list[Any], wants: Mapping[str, float]) -> None:
        limit = self.controls.get("opModMaxLimW")
        target: dict[str, int] = {}
        if limit is not None and authorized:
            site_w = float(limit) / 10000.0 * self.site_max_w
            shares = share(site_w, wants)
            allocation = getattr(self.coordinator, "allocation", {}) or {}
            for p in authorized:
                w = min(shares[p.name], allocation.get(p.name, math.inf))
                pev = wants[p.name]
                target[p.name] = 0 if pev <= 0 else min(10000, math.floor(w / pev * 10000))
        issued = int(getattr(self.coordinator, "issued", 0) or 0)
        for p in self.ports:
            old = self._limit.get(p.name)
            session = p.session
            if p.name in target and session is not None:
                value = target[p.name]
                # Re-issued when the site sharing issued a control since (a later one of
                # the same function supersedes ours at the PEV).
                if old is None or old[0] is not session or old[1] != value or old[2] != issued:
                    p.resources.set_control(session, DME_LIMIT_KEY, "opModMaxLimW", value,
                                            "DME limit")
                    self._limit[p.name] = (session, value, issued)
                    self.log.info("{port}: DME opModMaxLimW {pct:g} % of the PEV's limit "
                                  "relayed", port=p.name, pct=value / 100)
            elif old is not None:
                if old[0] is session and session is not None:
                    p.resources.clear_control(session, DME_LIMIT_KEY)
                del self._limit[p.name]


def _relayed_control(port: Any, function: str) -> Any:
    """The DERControl the DME's ``function`` is served to ``port``'s PEV as (None when the
    port's resources cannot say)."""
    management = getattr(port.resources, "management", None)
    if management is None or port.session is None:
        return None
    try:
        extras = management(port.session).extras()
    except (KeyError, LookupError):
        return None
    for control in extras:
        base = control.DERControlBase
        if function == "opModFixedW" and base.opModFixedW is not None:
            return control
        if (function == "opModMaxLimW" and base.opModMaxLimW is not None
                and control.description == "DME limit"):
            return control
    return None


def _want(port: Any, site_max_w: float) -> float:
    pev = port.pev_max_w()
    return site_max_w if pev is None else max(0.0, float(pev))
