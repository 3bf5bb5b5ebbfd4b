"""The uplink role: the EVSE as a 2030.5 client of the utility's server (the DME).

An explicit state machine over the client layer (:mod:`sepgw.client`)::

    idle ─start─▶ discovering ─dcap, Time─▶ registering ─EndDevice found/POSTed, PIN ok─▶
    presenting ─DeviceInformation, DER, MirrorUsagePoints─▶ running ─(poll at pollRate)─┐
       ▲                                                                                  │
       └──────────── backoff ◀── any error (DME unreachable, 5xx, bad document) ◀─────────┘
    stopped (from any state)

In ``running`` the FunctionSetAssignments → DERPrograms → DefaultDERControl and DERControls
are walked at the server's pollRate and fed to the :class:`sepgw.events.EventEngine`
(§10.2.3 rules on the server's time base); what is in effect goes to the control sink as one
site-level control (``{"site": {...}}``). Controls with a function the site cannot apply are
answered 252 and never executed. Responses, readings, DERStatus and DERAvailability go
through the :class:`DurableQueue` and are delivered in order. Losing the DME only moves the
machine to ``backoff``: events already received keep running on their schedule, and nothing
here can grant or close anything (docs/uplink.md).

Subscriptions (``notify_uri`` set: the EVSE has a listener the DME can reach): the
FunctionSetAssignmentsList, each DERProgramList, DefaultDERControl and DERControlList are
subscribed to just before they are first read; a notification re-walks at once. While every
resource walked is subscribed the walk runs only at the check rate (``verify_s``): each
Subscription is read back (404: gone) and a resource found changed without a notification
means notifications do not reach the EVSE; either way that resource falls back to polling
at the pollRate (as the PEV does, V2G-4.1.4-4).

PEV responses: a control executed by the PEVs (opModFixedW, opModMaxLimW) is answered
Started upstream only when the first PEV it was relayed to answers Started, and Completed
(3) only if one did, else Completed with no participation (10); see :meth:`pev_response`.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from sepgw.client import (
    DEFAULT_POLL_S, Backoff, Periodic, Registration, ServerTime, fetch_all,
)
from sepgw.client.subscriptions import Subscriptions
from sepgw.events import BASE_ELEMENTS, EffectiveControls, EventEngine, control_response
from sepgw.model import (
    DER, Notification, DERControl, DERControlList, DERList, DERProgram, DERProgramList, DefaultDERControl,
    DeviceCapability, EndDevice, EndDeviceList, FunctionSetAssignmentsList, ModelError,
    ResponseStatus, Time, serialize,
)
from sepgw.model.types import ResponseRequired
from sepgw.uplink import docs
from sepgw.uplink.queue import DurableQueue

__all__ = ["State", "UplinkClient", "REJECTED_NOT_APPLICABLE", "EVSE_EXECUTED",
           "SUBSCRIPTION_LIMIT", "VERIFY_S"]

EVSE_EXECUTED = ("opModEnergize", "opModConnect")
"""Functions the EVSE executes itself (by revoking authorizations): a control carrying one
is Started upstream when it takes effect; the others only once a PEV started it."""

SUBSCRIPTION_LIMIT = 50
"""Subscription ``limit``: list entries the DME may embed in a notification."""

VERIFY_S = 300.0
"""Default rate of the subscription check (while every walked resource is subscribed)."""

REJECTED_NOT_APPLICABLE = 252
"""2030.5-2018 Table 27 response status 252, "Rejected - control parameter not applicable"
(2030.5-2023 calls it Not Applicable and adds 251 Not Supported): the answer to a DERControl
with a function the site cannot apply."""


class State(str, enum.Enum):
    idle = "idle"
    discovering = "discovering"
    registering = "registering"
    presenting = "presenting"
    running = "running"
    backoff = "backoff"
    stopped = "stopped"


_NEXT = {
    State.idle: {State.discovering, State.stopped},
    State.discovering: {State.registering, State.backoff, State.stopped},
    State.registering: {State.presenting, State.backoff, State.stopped},
    State.presenting: {State.running, State.backoff, State.stopped},
    State.running: {State.running, State.backoff, State.stopped},
    State.backoff: {State.discovering, State.stopped},
    State.stopped: set(),
}
"""The transitions the machine allows (anything else is a bug and raises)."""


class UplinkError(Exception):
    """The DME cannot be used as it is (not registered, PIN mismatch, missing link)."""


class UplinkClient:
    """One EVSE's session with one DME server.

    ``http`` is a :class:`sepgw.pev.http.SEPClient` for the server; ``dcap`` the
    DeviceCapability href (out of band); ``sink`` receives the site control in effect;
    ``queue`` holds what is bound for the DME. ``ports`` are the port names (each gets a
    MirrorUsagePoint besides the site's).
    """

    log = Logger()

    def __init__(self, *, http: Any, clock: Any, lfdi: str, sfdi: int, dcap: str,
                 site: Mapping[str, Any], ports: list[str], queue: DurableQueue,
                 sink: Callable[[Mapping[str, Any]], None] | None = None,
                 register: bool = True, pin: int | None = None,
                 info: Mapping[str, Any] | None = None, post_rate_s: float = 60.0,
                 randomize: Callable[[int], int] | None = None,
                 backoff: Backoff | None = None, notify_uri: str | None = None,
                 verify_s: float = VERIFY_S) -> None:
        self.http, self.clock = http, clock
        self.lfdi, self.sfdi, self.dcap = lfdi.upper(), sfdi, dcap
        self.site, self.port_names, self.queue = site, list(ports), queue
        self.sink = sink
        self.register, self.pin, self.info = register, pin, dict(info or {})
        self.time = ServerTime(clock)
        if randomize is None:
            self.engine = EventEngine(self.time.now, clock, self._effective, self._respond,
                                      fallbacks={})
        else:
            self.engine = EventEngine(self.time.now, clock, self._effective, self._respond,
                                      fallbacks={}, randomize=randomize)
        self.state = State.idle
        self.error: str | None = None
        self.lost_since: float | None = None
        self.links: dict[str, str] = {}
        self.mups: dict[str, str] = {}
        self.programs: set[str] = set()
        self.rejected: set[bytes] = set()
        self.poll_s = float(DEFAULT_POLL_S)
        self.post_rate_s = float(post_rate_s)
        self.mup_post_rate_s = float(post_rate_s)
        self.effective = EffectiveControls()
        self.latest: Mapping[str, Any] | None = None
        self.energy_wh: dict[str, float] = {}
        self._last_time: float | None = None
        self._backoff = backoff or Backoff(1.0, 300.0)
        self._delivery_backoff = Backoff(1.0, 300.0)
        self._call: Any = None
        self._delivering = False
        self._delivery_call: Any = None
        self._readings = Periodic(clock, lambda: self.mup_post_rate_s, self._post_readings,
                                  "uplink readings")
        self._status = Periodic(clock, lambda: self.post_rate_s, self._post_status,
                                "uplink DERStatus")
        self.last_contact: float | None = None
        self.duplicates = 0
        """Items delivered after an attempt the DME may have taken (a timeout, a lost
        connection, a 5xx): each may be at the DME twice (since start)."""
        self._ambiguous: set[int] = set()
        """Clock time of the last answer from the DME (any status)."""
        # subscriptions
        self.subs = Subscriptions(http, notify_uri, SUBSCRIPTION_LIMIT,
                                  raise_unreachable=True)
        """The subscriptions at the DME (shared client layer); an unreachable DME raises."""
        self.verify_s = float(verify_s)
        self.refused: dict[str, str] = {}
        """hrefs polled until the next reconnect, with the reason (refused, not notified)."""
        self.notifications = 0
        self.last_notification: float | None = None
        self.fallbacks = 0
        self._notified: set[str] = set()
        self._digests: dict[str, bytes] = {}
        self._walking = False
        self._again = False
        self._unsubscribed = True
        self._walked: set[str] = set()
        # PEV responses to relayed controls
        self.pev_responses: dict[bytes, dict[str, int]] = {}
        """DME control mRID -> port -> the latest status its PEV answered (bounded)."""
        self._awaiting_start: dict[bytes, DERControl] = {}
        self._started: set[bytes] = set()

    @property
    def notify_uri(self) -> str | None:
        """The EVSE's notificationURI for the DME; None: polling only."""
        return self.subs.notify_uri

    @notify_uri.setter
    def notify_uri(self, value: str | None) -> None:
        self.subs.notify_uri = value

    @property
    def subscriptions(self) -> dict[str, str]:
        """href of a subscribed resource -> Location of its Subscription at the DME."""
        return self.subs.active

    # -- state machine ---------------------------------------------------------------------

    def _enter(self, state: State, why: str = "") -> None:
        if state not in _NEXT[self.state]:
            raise RuntimeError(f"uplink: no transition {self.state.value} -> {state.value}")
        if state is not self.state:
            self.log.info("uplink: {old} -> {new}{why}", old=self.state.value,
                          new=state.value, why=f" ({why})" if why else "")
        self.state = state

    def start(self) -> None:
        self._enter(State.discovering)
        self._readings.start(now=False)
        self._status.start(now=False)
        self._later(0, self._connect)
        self.deliver()

    def stop(self) -> None:
        if self.state is State.stopped:
            return
        self._enter(State.stopped)
        for call in (self._call, self._delivery_call):
            if call is not None and call.active():
                call.cancel()
        self._readings.stop()
        self._status.stop()
        self.engine.stop()
        self.http.cancel_all()

    def _later(self, delay: float, fn: Callable[[], Any]) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()

        def run() -> None:
            self._call = None
            d = Deferred.fromCoroutine(fn())
            d.addErrback(self._failed)
        self._call = self.clock.callLater(delay, run)

    def _failed(self, failure: Any) -> None:
        if self.state is State.stopped:
            return
        reason = failure.getErrorMessage()
        if not failure.check(UplinkError) and not failure.check(ModelError) and \
                type(failure.value).__name__ != "SEPError":
            self.log.failure("uplink: unexpected error", failure)
        self.error = reason
        if self.lost_since is None:
            self.lost_since = self.clock.seconds()
        self._enter(State.backoff, reason)
        delay = self._backoff.next()
        self.log.warn("uplink: DME not usable: {reason}; retry in {delay:.1f} s; local limits "
                      "and the controls already received stay in force", reason=reason,
                      delay=delay)
        self._later(delay, self._reconnect)

    async def _reconnect(self) -> None:
        self._enter(State.discovering)
        self._drop_subscriptions()
        await self._connect()

    async def _connect(self) -> None:
        dcap = await self.http.get(self.dcap, DeviceCapability)
        self._contact()
        self.poll_s = float(dcap.pollRate or DEFAULT_POLL_S)
        for name in ("TimeLink", "EndDeviceListLink", "MirrorUsagePointListLink"):
            link = getattr(dcap, name)
            if link is not None:
                self.links[name] = link.href
        if "EndDeviceListLink" not in self.links:
            raise UplinkError("DeviceCapability has no EndDeviceListLink")
        await self._sync_time()
        self._enter(State.registering)
        edev = await self._end_device()
        self._enter(State.presenting)
        await self._present(edev)
        self._enter(State.running)
        self.error, self.lost_since = None, None
        self._backoff.reset()
        await self._poll()

    async def _sync_time(self) -> None:
        href = self.links.get("TimeLink")
        if href is None:
            return
        time = await self.http.get(href, Time)
        moved = self.time.update(time)
        if abs(moved) > 1.0:
            self.log.info("uplink: server time moved {moved:+.1f} s", moved=moved)
            self.engine.resync()

    async def _end_device(self) -> EndDevice:
        href = self.links["EndDeviceListLink"]
        _, devices = await fetch_all(self.http, href, EndDeviceList)
        mine = [d for d in devices if d.lFDI is not None and d.lFDI.hex().upper() == self.lfdi]
        if mine and mine[0].href:
            edev_href = mine[0].href
        elif not self.register:
            raise UplinkError(f"EndDevice with LFDI {self.lfdi} not registered at the DME "
                              "(registration by POST is off)")
        else:
            location = await self.http.post(href, docs.end_device(
                self.lfdi, self.sfdi, int(self.time.now())))
            if not location:
                raise UplinkError("the DME gave no Location for the EndDevice")
            self.log.info("uplink: registered EndDevice at {href}", href=location)
            edev_href = location
        edev = await self.http.get(edev_href, EndDevice)
        edev.href = edev.href or edev_href
        self.links["edev"] = edev.href
        if edev.SubscriptionListLink is not None:
            self.links["sub"] = edev.SubscriptionListLink.href
        elif self.notify_uri is not None:
            self.log.info("uplink: the DME offers no SubscriptionListLink: polling")
        if edev.postRate:
            self.post_rate_s = float(edev.postRate)
        if self.pin is not None:
            if edev.RegistrationLink is None:
                raise UplinkError("a Registration PIN is configured but the EndDevice has no "
                                  "RegistrationLink")
            reg = await self.http.get(edev.RegistrationLink.href, Registration)
            if int(reg.pIN) != int(self.pin):
                raise UplinkError(f"Registration PIN mismatch: the DME holds {reg.pIN}, "
                                  f"configured {self.pin}: not this utility's registration")
        return edev

    async def _present(self, edev: EndDevice) -> None:
        now = int(self.time.now())
        if edev.DeviceInformationLink is not None:
            await self.http.put(edev.DeviceInformationLink.href,
                                docs.device_information(self.lfdi, self.info, now))
        if edev.DERListLink is not None:
            _, ders = await fetch_all(self.http, edev.DERListLink.href, DERList)
            if ders:
                der: DER = ders[0]
                for name, key in (("DERCapabilityLink", "dercap"), ("DERSettingsLink", "ders"),
                                  ("DERStatusLink", "dstat"),
                                  ("DERAvailabilityLink", "dera")):
                    link = getattr(der, name)
                    if link is not None:
                        self.links[key] = link.href
                if "dercap" in self.links:
                    await self.http.put(self.links["dercap"], docs.der_capability(
                        self.site, len(self.port_names)))
                if "ders" in self.links:
                    await self.http.put(self.links["ders"], docs.der_settings(self.site, now))
        mupl = self.links.get("MirrorUsagePointListLink")
        if mupl is not None:
            for name, is_site in [("site", True)] + [(p, False) for p in self.port_names]:
                location = await self.http.post(mupl, docs.mirror_usage_point(
                    self.lfdi, name, is_site))
                if not location:
                    raise UplinkError(f"the DME gave no Location for MirrorUsagePoint {name}")
                self.mups[name] = location
            from sepgw.model import MirrorUsagePoint
            mup = await self.http.get(self.mups["site"], MirrorUsagePoint)
            if mup.postRate:
                self.mup_post_rate_s = float(mup.postRate)
        # The first posts follow the rates the server just gave.
        self._readings.start(now=False)
        self._status.start(now=False)
        self.deliver()

    async def _poll(self, via: str = "poll") -> None:
        """One walk of the assignments, then the next one at the server's pollRate (at the
        check rate while every walked resource is subscribed; at once after a notification
        that came during the walk)."""
        self._walking, self._again = True, False
        self._notified.clear()
        try:
            if via == "check":
                await self._verify_subscriptions()
            await self._sync_time()
            await self._walk(via)
            self._contact()
        finally:
            self._walking = False
            if self.state is State.running:
                if self._again:
                    self._later(0, lambda: self._poll_again("notification"))
                elif self._unsubscribed:
                    self._later(max(1.0, self.poll_s), self._poll_again)
                else:
                    self._later(max(1.0, self.poll_s, self.verify_s),
                                lambda: self._poll_again("check"))

    async def _poll_again(self, via: str = "poll") -> None:
        self._enter(State.running)
        await self._poll(via)

    def _contact(self) -> None:
        self.last_contact = float(self.clock.seconds())

    # -- subscriptions ---------------------------------------------------------------------

    async def _subscribe(self, href: str) -> None:
        """Subscribe to ``href`` before it is read (no change falls between); a refusal
        leaves it to polling until the next reconnect."""
        target = self.links.get("sub")
        if (self.notify_uri is None or target is None or href in self.subscriptions
                or href in self.refused):
            return
        location, reason = await self.subs.subscribe(target, href)  # unreachable: backoff
        if not location:
            self.refused[href] = f"subscription refused: {reason}"
            self.log.warn("uplink: subscription to {href} refused ({reason}); polling it",
                          href=href, reason=reason)
            return
        self.log.info("uplink: subscribed to {href} at {location}", href=href,
                      location=location)

    def notification_received(self, notification: Notification) -> str | None:
        """A Notification from the DME (the uplink's listener): None to accept it (201),
        else the reason to refuse it (400). The re-walk is done afterwards."""
        href = notification.subscribedResource
        if not self.subs.expects(href):
            return f"this EVSE has no subscription to {href}"
        self.notifications += 1
        self.last_notification = float(self.clock.seconds())
        status = int(notification.status)
        if status != 0:
            self._fall_back(href, f"cancelled by the DME (status {status})", cancelled=True,
                            keep_polling=True)
            return None
        self._notified.add(href)
        self._kick()
        return None

    def _kick(self) -> None:
        """Walk again as soon as possible (after the walk in progress, if any)."""
        if self.state is not State.running:
            return  # the next connect reads everything
        if self._walking:
            self._again = True
        else:
            self._later(0, lambda: self._poll_again("notification"))

    def _fall_back(self, href: str, why: str, *, cancelled: bool = False,
                   keep_polling: bool = False) -> None:
        """The subscription to ``href`` ended: poll it at the pollRate from now on (until it
        is subscribed again: at the next walk, or with ``keep_polling`` at the next
        reconnect)."""
        location = self.subs.drop(href)
        if location is None:
            return
        self.fallbacks += 1
        self._unsubscribed = True
        if keep_polling:
            self.refused[href] = why
        self.log.warn("uplink: subscription to {href} {why}; polling it at the pollRate",
                      href=href, why=why)
        if not cancelled:
            self.subs.delete(location)
        self._kick()

    async def _verify_subscriptions(self) -> None:
        """Each Subscription still exists at the DME (a server may drop one after failed
        deliveries without telling)."""
        for href, _ in await self.subs.verify():
            self._fall_back(href, "no longer exists at the DME (404)")

    def _drop_subscriptions(self) -> None:
        """Reconnecting: forget the subscriptions (removed at the DME, best effort) and
        what was refused; the walk subscribes again."""
        for location in self.subs.clear().values():
            self.subs.delete(location)
        self.refused.clear()
        self._digests.clear()
        self._unsubscribed = True

    async def _read(self, href: str, via: str, read: Callable[[], Any]) -> Any:
        """Subscribe to ``href``, read it; on a check, a subscribed resource that changed
        with no notification means notifications are not arriving: fall back."""
        self._walked.add(href)
        await self._subscribe(href)
        if href not in self.subscriptions:
            self._unsubscribed = True
        result = await read()
        digest = _fingerprint(result)
        old = self._digests.get(href)
        self._digests[href] = digest
        if (via == "check" and old is not None and old != digest
                and href in self.subscriptions and href not in self._notified):
            self._fall_back(href, "changed with no notification (notifications do not "
                                  "reach the EVSE)", keep_polling=True)
        return result

    async def _walk(self, via: str = "poll") -> None:
        edev = await self.http.get(self.links["edev"], EndDevice)
        if edev.postRate:
            self.post_rate_s = float(edev.postRate)
        self._unsubscribed = self.notify_uri is None or "sub" not in self.links
        self._walked = set()
        seen: set[str] = set()
        if edev.FunctionSetAssignmentsListLink is not None:
            href = edev.FunctionSetAssignmentsListLink.href
            fsal, assignments = await self._read(href, via, lambda: fetch_all(
                self.http, href, FunctionSetAssignmentsList))
            rates = [fsal.pollRate]
            for fsa in assignments:
                if fsa.DERProgramListLink is None:
                    continue
                lhref: str = fsa.DERProgramListLink.href

                def read_programs(h: str = lhref) -> Any:
                    return fetch_all(self.http, h, DERProgramList)
                derpl, programs = await self._read(lhref, via, read_programs)
                rates.append(derpl.pollRate)
                for program in programs:
                    if program.href and program.href not in seen:
                        seen.add(program.href)
                        await self._program(program, via)
            known = [float(r) for r in rates if r]
            if known:
                self.poll_s = min(known)
        for href in self.programs - seen:
            self.log.info("uplink: DERProgram {href} withdrawn", href=href)
            self.engine.remove_program(href)
        self.programs = seen
        for href in set(self.subscriptions) - self._walked:
            self.subs.forget(href)  # no longer used
            self._digests.pop(href, None)

    async def _program(self, program: DERProgram, via: str = "poll") -> None:
        default = None
        if program.DefaultDERControlLink is not None:
            dhref = program.DefaultDERControlLink.href
            default = await self._read(dhref, via, lambda: self.http.get(dhref,
                                                                         DefaultDERControl))
            extra = _unsupported(default.DERControlBase)
            if extra:
                self.log.warn("uplink: DefaultDERControl {href} has functions the site cannot "
                              "apply, ignored: {names}", href=default.href or "",
                              names=", ".join(extra))
        controls: list[DERControl] = []
        if program.DERControlListLink is not None:
            chref = program.DERControlListLink.href
            _, listed = await self._read(chref, via, lambda: fetch_all(self.http, chref,
                                                                       DERControlList))
            for control in listed:
                extra = _unsupported(control.DERControlBase)
                if extra:
                    self._reject(control, extra)
                else:
                    controls.append(control)
        self.engine.update_program(program.href or "", int(program.primacy), default, controls)

    def _reject(self, control: DERControl, names: list[str]) -> None:
        if control.mRID in self.rejected:
            return
        self.rejected.add(control.mRID)
        self.log.warn("uplink: DERControl {mrid} rejected (252): the site cannot apply {names}",
                      mrid=control.mRID.hex(), names=", ".join(names))
        if int(control.responseRequired or 0) & (ResponseRequired.MESSAGE_RECEIVED
                                                 | ResponseRequired.SPECIFIC_RESPONSE):
            self._send_response(control, REJECTED_NOT_APPLICABLE)

    # -- controls --------------------------------------------------------------------------

    def _effective(self, effective: EffectiveControls) -> None:
        self.effective = effective
        site: dict[str, Any] = {name: effective.value(name) for name in docs.SUPPORTED}
        site["sources"] = {name: (v.mrid.hex() if v.mrid else None)
                           for name, v in effective.controls.items() if name in docs.SUPPORTED}
        self.log.info("uplink: DME controls in effect: {controls}",
                      controls={k: v for k, v in site.items()
                                if k != "sources" and v is not None} or "none")
        if self.sink is not None:
            self.sink({"site": site})

    def _respond(self, control: DERControl, status: ResponseStatus) -> None:
        """The engine's response to the DME, with the PEVs' part (docs/uplink.md, "PEV
        responses"): Started of a control the PEVs execute waits for a PEV's Started;
        Completed of one no PEV started is 10 (completed with no participation)."""
        s, mrid = int(status), control.mRID
        own = _evse_executed(control)
        if s == ResponseStatus.EVENT_STARTED:
            if not own and not self._pev_started(mrid):
                self._awaiting_start[mrid] = control
                self.log.info("uplink: DERControl {mrid} in effect; Started is reported when "
                              "a PEV starts it", mrid=mrid.hex())
                return
            self._started.add(mrid)
        elif s in (ResponseStatus.EVENT_COMPLETED, ResponseStatus.EVENT_CANCELLED,
                   ResponseStatus.EVENT_SUPERSEDED):
            self._awaiting_start.pop(mrid, None)
            started = mrid in self._started
            self._started.discard(mrid)
            if s == ResponseStatus.EVENT_COMPLETED and not own and not started:
                s = int(ResponseStatus.COMPLETED_NO_PARTICIPATION)
        self._send_response(control, s)

    def _pev_started(self, mrid: bytes) -> bool:
        return any(v in (ResponseStatus.EVENT_STARTED, ResponseStatus.EVENT_COMPLETED)
                   for v in self.pev_responses.get(mrid, {}).values())

    def pev_response(self, mrid: bytes, port: str, status: int) -> None:
        """A PEV answered ``status`` to the control relayed to it on ``port`` for the DME's
        control ``mrid`` (from :class:`sepgw.uplink.site.SiteControls`). The first PEV
        Started releases the DME control's Started; other statuses (opt-outs, rejections)
        are kept for the status, not sent upstream."""
        ports = self.pev_responses.setdefault(mrid, {})
        ports[port] = int(status)
        while len(self.pev_responses) > 256:
            del self.pev_responses[next(iter(self.pev_responses))]
        self.log.info("uplink: {port}'s PEV answered {status} to DME control {mrid}",
                      port=port, status=int(status), mrid=mrid.hex())
        control = self._awaiting_start.get(mrid)
        if control is not None and int(status) in (ResponseStatus.EVENT_STARTED,
                                                    ResponseStatus.EVENT_COMPLETED):
            del self._awaiting_start[mrid]
            self._started.add(mrid)
            self._send_response(control, int(ResponseStatus.EVENT_STARTED))

    def _send_response(self, control: DERControl, status: int) -> None:
        if not control.replyTo:
            return
        response = control_response(control, status,  # type: ignore[arg-type]
                                    bytes.fromhex(self.lfdi), self.time.now())
        self.queue.put("POST", control.replyTo, serialize(response), "response",
                       created=self.time.now())
        self.deliver()

    # -- telemetry -------------------------------------------------------------------------

    def publish(self, telemetry: Mapping[str, Any]) -> None:
        """Take the latest telemetry snapshot (never blocks); energy is integrated here."""
        now = float(telemetry.get("time", self.clock.seconds()))
        dt = 0.0 if self._last_time is None else max(0.0, now - self._last_time)
        self._last_time = now
        for port in telemetry.get("ports", []):
            meter = port.get("meter")
            if meter:
                self.energy_wh[port["port"]] = (self.energy_wh.get(port["port"], 0.0)
                                                + meter["w"] * dt / 3600.0)
        self.latest = telemetry

    def _post_readings(self) -> None:
        if self.latest is None:
            return
        now = int(self.time.now())
        ports = list(self.latest.get("ports", []))
        values = dict(docs.site_values(ports))
        if values:
            values["wh"] = sum(self.energy_wh.values())
        sets = [("site", values)] + [
            (p["port"], dict(p["meter"], wh=self.energy_wh.get(p["port"], 0.0)))
            for p in ports if p.get("meter") and p["port"] in self.port_names]
        for name, vals in sets:
            doc = docs.readings(self.lfdi, name, vals, now)
            if doc is not None:
                self.queue.put("POST", f"@mup/{name}", serialize(doc), "reading", created=now)
        self.deliver()

    def _post_status(self) -> None:
        if self.latest is None:
            return
        now = int(self.time.now())
        ports = list(self.latest.get("ports", []))
        pev_max = [float(p["pev_max_w"]) for p in ports
                   if p.get("authorized") and p.get("pev_max_w") is not None]
        self.queue.put("PUT", "@der/dstat", serialize(docs.der_status(ports, now)), "status",
                       created=now)
        self.queue.put("PUT", "@der/dera", serialize(docs.der_availability(
            self.site, pev_max, now)), "availability", created=now)
        self.deliver()

    # -- delivery --------------------------------------------------------------------------

    def _resolve(self, href: str) -> str | None:
        if href.startswith("@mup/"):
            return self.mups.get(href[5:])
        if href.startswith("@der/"):
            return self.links.get(href[5:])
        return href

    def deliver(self) -> None:
        """Send the queue's head, one at a time, in order (no-op while one is in flight or
        a retry is waiting)."""
        if self._delivering or self.state is State.stopped or (
                self._delivery_call is not None and self._delivery_call.active()):
            return
        d = Deferred.fromCoroutine(self._deliver())
        d.addErrback(lambda f: self.log.failure("uplink delivery failed", f))

    async def _deliver(self) -> None:
        self._delivering = True
        try:
            while self.state is not State.stopped:
                item = self.queue.head()
                if item is None:
                    return
                href = self._resolve(item.href)
                if href is None:
                    if self.state is State.running and item.href.startswith("@der/"):
                        self.queue.poison(item.id, "the DME's DER has no such link")
                        continue
                    if self.state is State.running and item.href.startswith("@mup/"):
                        self.queue.poison(item.id, "no MirrorUsagePoint for it at the DME")
                        continue
                    return  # not yet registered: delivered once the links are known
                try:
                    status, _, body = await self.http.request(item.method, href, item.body)
                except Exception as e:
                    if self.state is not State.stopped:
                        if not _never_sent(e):
                            self._ambiguous.add(item.id)  # the DME may have taken it
                        self._retry(item.id, f"{type(e).__name__}: {e}")
                    return
                if self.state is State.stopped:
                    return  # the queue may be closed; the item is sent again next time
                if 200 <= status < 300:
                    self.queue.ack(item.id)
                    self._contact()
                    if item.id in self._ambiguous:
                        self._ambiguous.discard(item.id)
                        self.duplicates += 1
                    self._delivery_backoff.reset()
                elif 400 <= status < 500 and status not in (408, 429):
                    reason = f"{status} {body[:200].decode('utf-8', 'replace')}".strip()
                    self.queue.poison(item.id, reason)
                    self.log.warn("uplink: {kind} {method} {href} refused by the DME ({reason}): "
                                  "set aside", kind=item.kind, method=item.method, href=href,
                                  reason=reason)
                else:
                    if status >= 500:
                        self._ambiguous.add(item.id)
                    self._retry(item.id, f"HTTP {status}")
                    return
        finally:
            self._delivering = False

    def _retry(self, item_id: int, reason: str) -> None:
        self.queue.attempted(item_id)
        delay = self._delivery_backoff.next()
        self.log.warn("uplink: delivery failed ({reason}); {queued} queued, retry in "
                      "{delay:.1f} s", reason=reason, queued=len(self.queue), delay=delay)
        self._delivery_call = self.clock.callLater(delay, self.deliver)

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``sepgw ctl status`` shows: connected or lost (since when, why), the last
        contact, the controls in force, the queue (depth, drops, duplicates, poisoned) and
        the subscriptions."""
        stats = self.queue.stats()
        return {"state": self.state.value, "connected": self.state is State.running,
                "error": self.error, "lost_since": self.lost_since,
                "last_contact": self.last_contact,
                "safety": ("local limits and the DefaultDERControl last read stay in force"
                           if self.state is not State.running else "normal"),
                "controls": {k: (v.value if not hasattr(v.value, "href") else v.value.href)
                             for k, v in self.effective.controls.items()},
                "events": {m.hex(): s.value for m, s in self.engine.states().items()},
                "queue": stats, "queue_depth": stats["queued"], "dropped": stats["dropped"],
                "duplicates": self.duplicates,
                "subscriptions": {"notify_uri": self.notify_uri,
                                  "active": dict(self.subscriptions),
                                  "polled": dict(self.refused),
                                  "notifications": self.notifications,
                                  "last_notification": self.last_notification,
                                  "fallbacks": self.fallbacks},
                "pev_responses": {m.hex(): dict(p) for m, p in self.pev_responses.items()}}


def _never_sent(error: Exception) -> bool:
    """A failure before the request left (refused connection, no route, DNS)."""
    text = f"{type(error).__name__} {error}"
    return any(k in text for k in ("ConnectionRefused", "ConnectError", "DNSLookupError",
                                   "NoRouteError", "unreachable"))


def _evse_executed(control: DERControl) -> bool:
    base = control.DERControlBase
    return any(getattr(base, name) is not None for name in EVSE_EXECUTED)


def _fingerprint(read: Any) -> bytes:
    """What of a resource matters to the uplink, for "changed without a notification":
    list entries by href/mRID, creationTime, primacy and a cancelled or superseded status
    (not Scheduled -> Active, which servers change without notifying), a
    DefaultDERControl's mRID and DERControlBase."""
    import hashlib

    if isinstance(read, tuple):
        _, items = read
        parts = []
        for item in items:
            status = getattr(getattr(item, "EventStatus", None), "currentStatus", 0)
            parts.append(repr((item.href, getattr(item, "mRID", None),
                               getattr(item, "creationTime", None),
                               getattr(item, "primacy", None),
                               int(status) if int(status or 0) >= 2 else 0)))
        data = "\n".join(parts).encode()
    else:
        data = serialize(read)
    return hashlib.sha256(data).digest()


def _unsupported(base: Any) -> list[str]:
    return [name for name in BASE_ELEMENTS
            if getattr(base, name) is not None and name not in docs.SUPPORTED]
