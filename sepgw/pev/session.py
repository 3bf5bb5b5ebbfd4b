"""The PEV's J3072 sequence (profile 3.4, 4.5-4.9, client side), on the shared model, TLS,
timing and event services.

Every href comes from a link: nothing but the DeviceCapability path (from mDNS TXT ``dcap``
or the configured URL) is known in advance. The sequence:

1. discovery: DeviceCapability, Time (the offset to the server's clock), the PEV's own
   EndDevice found in the EndDeviceList by its LFDI (paging), then the EndDevice;
2. step 1: the site limits (SelfDevice → DERList → DER → DERSettings);
3. step 2: DeviceInformation, PowerStatus with PEVInfo, DERCapability, DERSettings adjusted
   to the site limits, DERAvailability, DERStatus;
4. step 3: FunctionSetAssignments, Time, DERProgramList, DefaultDERControl, every
   DERControl (paging) and every referenced DERCurve, handed to the event engine, which
   answers Received and Started to each control's replyTo. With a notification endpoint
   (``notify_uri``) each Table 4 resource is subscribed to just before it is first read
   (so no change can fall between the read and the subscription): the
   FunctionSetAssignmentsList, the DERProgramList, the DefaultDERControl and the
   DERControlList (V2G-4.1.4-3);
5. metrology: the MirrorUsagePoint and its four MirrorMeterReadings;
6. periodic operations: the DERStatus heartbeat every second, polling of the
   DefaultDERControl, DERControlList and DERProgramList at the DERProgramList's pollRate
   and of the FunctionSetAssignmentsList at its pollRate, each only while it has no working
   subscription (V2G-4.1.4-4), a slow safety check of the subscriptions, PEVInfo and
   DERAvailability at the EndDevice postRate, readings at the MirrorUsagePoint postRate,
   the EndDevice and MirrorUsagePoint polled at their lists' pollRate for postRate changes,
   the Time resource at its pollRate (a moved server clock re-times the events).

:meth:`J3072Client.close` ends the session in bounded time whatever the EVSE does.

A TLS failure, a refused certificate or a missing EndDevice stops the sequence: the PEV
reverts to "non-J3072 mode" (V2G-4.5.2-4, V2G-4.5.3-4).

Resynchronisation: the PEV discharges only on an opModEnergize true read in the current
session. When the session it read its authorization in may be gone, :meth:`J3072Client.resync`
withdraws the authorization at once (inverter to no export) and redoes the sequence from
discovery; discharge needs a DefaultDERControl read in that new run. The triggers:

- the TLS session ended: every established connection to the EVSE was lost (the EVSE keeps a
  PEV's session across connections, per LFDI and link, so a new connection beside a live one
  is not a new session; losing them all is, an EVSE restart closes them all);
- the EVSE's session is gone: 404 on a session-static resource (profile Table 3, V2G-4.1.2-1),
  or the EndDevice or DeviceCapability links changed;
- the PEV stalled: its loop schedule fell behind its clock by more than
  ``stall_threshold_s`` (a frozen process, a suspended machine).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sepgw.client import Loops, ServerTime, fetch_all, full_query, link_map
from sepgw.client.http import SEPClient, SEPError
from sepgw.client.subscriptions import Subscriptions
from sepgw.events import EventEngine, control_response
from sepgw.model import (
    DERControlList,
    DERCurve,
    DERProgram,
    DERList,
    DERProgramList,
    DERSettings,
    DefaultDERControl,
    DeviceCapability,
    EndDevice,
    EndDeviceList,
    FunctionSetAssignmentsList,
    MirrorUsagePoint,
    MirrorUsagePointList,
    Notification,
    OperationalModeStatus,
    ResponseStatus,
    SelfDevice,
    Time,
)
from sepgw.pev import vehicle as docs
from sepgw.pev.controls import enter_service, plain
from sepgw.pev.machine import (
    Beat,
    CommsOutput,
    HeartbeatMachine,
    Input,
    NoTransition,
    Output,
    SequenceMachine,
    State,
)
from sepgw.pev.report import RunReport

DEFAULT_RATE = 15
"""postRate and pollRate when the EVSE gives none (V2G-4.7.2-10/11/15/16)."""
HEARTBEAT_S = 1.0
"""V2G-4.8.1.1-1: DERStatus every second, whatever the postRate."""
CURVE_OPMODS = ("opModFreqWatt", "opModHFRTMayTrip", "opModHFRTMustTrip", "opModHVRTMayTrip",
                "opModHVRTMomentaryCessation", "opModHVRTMustTrip", "opModLFRTMayTrip",
                "opModLFRTMustTrip", "opModLVRTMayTrip", "opModLVRTMomentaryCessation",
                "opModLVRTMustTrip", "opModVoltVar", "opModVoltWatt", "opModWattPF",
                "opModWattVar")
PAGE = 50
SUBSCRIPTION_LIMIT = 50
REQUEST_TIMEOUT_S = 10.0
"""A request with no complete answer within this is cancelled and fails (SEPClient)."""
TIME_POLL_S = 900
"""Time pollRate when the Time resource gives none (the 2030.5 default)."""
CLOSE_BUDGET_S = 3.0
"""How long :meth:`J3072Client.close` may spend removing subscriptions when the PEV stops."""
TIME_JITTER_S = 1.0
"""Time resource readings within this of the offset in use are the same time base
(TimeType has whole seconds): the offset is kept and the event schedule left alone."""
"""Subscription ``limit``: list entries embedded in a notification; more are fetched."""
SAFETY_POLL_S = 30.0
"""How often subscriptions are checked (GET of each Location) and their resources re-read."""
STALL_CHECK_S = 0.25
"""Period of the stall check (the PEV's own loop schedule against its clock)."""
STALL_THRESHOLD_S = 2.0
"""A stall check this much later than scheduled is a stall: the PEV resynchronises. Two
heartbeat periods: far above reactor jitter, far below the EVSE's 10 s heartbeat loss."""
RESYNC_RETRY_S = 1.0
"""While a resynchronisation cannot reach the EVSE it is tried again this often."""
TABLE4 = {"FunctionSetAssignmentsListLink": "FunctionSetAssignmentsList",
          "DERProgramListLink": "DERProgramList", "dderc": "DefaultDERControl",
          "derc": "DERControlList"}
"""The subscribable resources (profile Table 4), by the key of their href in ``links``."""


_link_map = link_map


class NonJ3072(Exception):
    """The J3072 sequence cannot go on; the PEV reverts to its non-J3072 mode."""


class Superseded(Exception):
    """A run of the sequence was overtaken by a resynchronisation; its results are void."""


class J3072Client:
    """One PEV's 2030.5 client session with one EVSE."""

    log = Logger()

    def __init__(self, *, clock: Any, http: SEPClient, lfdi: str, dcap: str,
                 vehicle: Mapping[str, Any], inverter: Any,
                 report: RunReport | None = None,
                 mrid: Callable[[], bytes] = lambda: os.urandom(16),
                 notify_uri: str | None = None, subscription_limit: int = SUBSCRIPTION_LIMIT,
                 safety_poll_s: float = SAFETY_POLL_S,
                 stall_threshold_s: float | None = STALL_THRESHOLD_S) -> None:
        self.clock = clock
        self.http = http
        self.lfdi = lfdi.upper()
        self.dcap_path = dcap
        self.vehicle = vehicle
        self.inverter = inverter
        self.report = report or RunReport(clock.seconds)
        self.report.evse = http.base
        self._mrid = mrid
        self.time = ServerTime(clock, jitter=TIME_JITTER_S)
        self.machine = SequenceMachine()
        """Where the PEV is in the J3072 sequence (:mod:`sepgw.pev.machine`)."""
        self.comms = HeartbeatMachine()
        """Loss and restoration of communications from the heartbeats (4.8.1.1)."""
        self.links: dict[str, str] = {}
        self.rates = {"edev_post": DEFAULT_RATE, "mup_post": DEFAULT_RATE,
                      "edev_poll": DEFAULT_RATE, "mup_poll": DEFAULT_RATE,
                      "derp_poll": DEFAULT_RATE, "time_poll": TIME_POLL_S}
        self.site: DERSettings | None = None
        self.energize = False
        self.effective: dict[str, Any] = {}
        self._settings: dict[str, int] = {}
        self._alarms = 0
        self.loops = Loops(clock, self._loop_failed)
        self._meters: dict[str, bytes] = {}
        self._curves: dict[str, DERCurve] = {}
        self.engine = EventEngine(self.server_now, clock, self._effective, self._respond)
        self._outbox: Deferred[Any] = Deferred()
        self._outbox.callback(None)
        self.authorized_at: float | None = None
        self.on_authorized: list[Callable[[], None]] = []
        self.subs = Subscriptions(http, notify_uri, subscription_limit)
        """The Table 4 subscriptions at the EVSE (shared client layer)."""
        self.safety_poll_s = safety_poll_s
        self._default: DefaultDERControl | None = None
        self._controls: list[Any] = []
        self._program_lock = DeferredLock()
        self.notifications = 0
        """Notifications accepted."""
        self._no_subscription_list = False
        self._via = "event schedule"
        self.program: DERProgram | None = None
        self._retired: set[str] = set()
        """hrefs of DERPrograms replaced by another: removed from the engine at the next feed."""
        self._opmode: tuple[int, int] | None = None
        self.epoch = 0
        """Run of the sequence: a resynchronisation starts a new one; reads of an older run
        are void."""
        self.resyncs: list[tuple[float, str]] = []
        """(clock time, reason) of each resynchronisation."""
        self._orphans: dict[str, str] = {}
        """Subscriptions of a session left behind, removed when the sequence is redone."""
        self._retry: Any = None
        self._retries = 0
        self._dcap_links: dict[str, str] = {}
        self._edev_links: dict[str, str] = {}
        self._static: set[str] = set()
        """Paths of this session's session-static resources (profile Table 3)."""
        self._mup_mrid: bytes | None = None
        self.stall_threshold_s = stall_threshold_s
        self._watch: LoopingCall | None = None
        self._last_check = 0.0
        self._heartbeats: dict[object, float] = {}
        """Heartbeats still unanswered, with when they were sent."""
        self._heartbeat_warned = 0
        tracker = getattr(http, "connections", None)
        if tracker is not None:
            tracker.observers.append(self._connection_event)
        observers = getattr(http, "error_observers", None)
        if observers is not None:
            observers.append(self._http_error)

    @property
    def notify_uri(self) -> str | None:
        """Where the EVSE is to POST Notifications; None: no subscriptions, only polling."""
        return self.subs.notify_uri

    @notify_uri.setter
    def notify_uri(self, value: str | None) -> None:
        self.subs.notify_uri = value

    @property
    def subscription_limit(self) -> int:
        return self.subs.limit

    @subscription_limit.setter
    def subscription_limit(self, value: int) -> None:
        self.subs.limit = value

    @property
    def subscriptions(self) -> dict[str, str]:
        """href of a subscribed resource -> Location of its Subscription at the EVSE."""
        return self.subs.active

    # -- the state machines ------------------------------------------------------------

    @property
    def state(self) -> str:
        """The coarse phase (``starting``, ``periodic``, ``resync``, ``non-J3072``,
        ``stopped``) operators see; :attr:`machine` has the exact state."""
        return self.machine.phase

    @property
    def sleeping(self) -> bool:
        return self.machine.asleep

    @property
    def closing(self) -> bool:
        return self.machine.state is State.stopped

    @property
    def comms_ok(self) -> bool:
        return self.comms.ok

    def _fire(self, inp: Input, reason: str = "") -> list[Any]:
        """Feed the sequence machine; perform its outputs in order. Outputs with I/O to
        await (posts, re-reads) are returned, not awaited (see :meth:`_afire`). An input
        the machine does not take here is ignored (logged)."""
        try:
            outputs = self.machine.feed(inp)
        except NoTransition as e:
            self.log.debug("J3072 machine: {e}", e=str(e))
            return []
        pending = []
        for output in outputs:
            result = self._perform(output, reason)
            if result is not None:
                pending.append(result)
        return pending

    async def _afire(self, inp: Input, reason: str = "") -> None:
        """Feed the machine and perform its outputs in order, awaiting each."""
        outputs = self.machine.feed(inp)  # NoTransition to the caller (sleep, wake)
        for output in outputs:
            result = self._perform(output, reason)
            if result is not None:
                await result

    def _perform(self, output: Output, reason: str) -> Any:
        """One output of the sequence machine; returns an awaitable for one with I/O."""
        if output is Output.apply_inverter:
            self._apply_inverter()
        elif output is Output.start_watch:
            self._start_watch()
        elif output is Output.run_sequence:
            return ensureDeferred(self.run())
        elif output is Output.void_session:
            self._void_session(reason)
        elif output is Output.rerun_soon:
            # Not from within the caller (a connection being torn down, a response callback).
            self._retry = self.clock.callLater(0, self._rerun)
        elif output is Output.rerun_now:
            self._rerun()
        elif output is Output.retry_later:
            self._retry_resync(reason)
        elif output is Output.record_resynchronised:
            self.report.record("resynchronised: sequence redone from discovery", True,
                               self.resyncs[-1][1] if self.resyncs else "")
            self.log.info("Resynchronised with the EVSE: J3072 sequence redone")
        elif output is Output.start_periodic:
            self.start_periodic()
        elif output is Output.stop_all:
            self.stop()
            self._stop_watch()
        elif output is Output.record_non_j3072:
            self.report.record("revert to non-J3072 mode", False, reason, "V2G-4.5.2-4",
                               "V2G-4.5.3-4")
            self.log.error("J3072 sequence stopped, non-J3072 mode: {reason}", reason=reason)
        elif output is Output.post_sleeping:
            return ensureDeferred(self._post_sleeping())
        elif output is Output.reread_management:
            return ensureDeferred(self.step3())
        elif output is Output.post_awake:
            return ensureDeferred(self._post_awake())
        return None

    def _failure(self, error: Exception) -> Input:
        """A failed step: the EVSE did not answer at all, or refused/answered unusably."""
        unreachable = isinstance(error, SEPError) and error.status is None
        return Input.unreachable if unreachable else Input.refused

    def _done(self) -> Input:
        return Input.done_authorized if self.energize else Input.done_not_authorized

    # -- time --------------------------------------------------------------------------

    @property
    def offset(self) -> float:
        """Seconds from the PEV's clock to the EVSE's (the last Time resource read)."""
        return self.time.offset

    def server_now(self) -> float:
        """The EVSE's time: everything is scheduled on the server's time base."""
        return self.time.now()

    def now(self) -> int:
        return int(self.server_now())

    # -- the sequence ------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """Begin the J3072 sequence; the Deferred fires when its first run ends."""
        started = self._fire(Input.start)
        return started[0] if started else ensureDeferred(_nothing())

    async def run(self) -> None:
        """One run of the sequence (the first, or a resynchronisation's), each step fed to
        the machine; a failure reverts to non-J3072 mode, or is retried while
        resynchronising with an EVSE not reachable."""
        epoch = self.epoch
        try:
            for step in (self.discover, self.step1, self.step2, self.step3):
                await step()
                if self.closing or epoch != self.epoch:
                    return
                self._fire(Input.step_done)
            await self.metrology()
        except Superseded:
            return
        except (SEPError, NonJ3072) as e:
            if self.closing or epoch != self.epoch:
                return
            self._fire(self._failure(e), str(e))
            return
        if self.closing or epoch != self.epoch:
            return
        # An authorization granted during the sequence takes effect now.
        self._fire(self._done())

    # -- resynchronisation ----------------------------------------------------------------

    def resync(self, reason: str) -> None:
        """The session the authorization was read in may be gone: no discharge from now on
        (inverter to no export at once) until the J3072 sequence is redone from discovery
        and a DefaultDERControl is read in it (asleep: on waking). Recorded in the run
        report and logged. Nothing happens before the start, stopped or in non-J3072."""
        self._fire(Input.session_lost, reason)

    def _void_session(self, reason: str) -> None:
        """Withdraw the authorization and forget everything read in the session."""
        self.epoch += 1
        self.resyncs.append((self.clock.seconds(), reason))
        was = self.energize
        self.stop()
        self.engine = EventEngine(self.server_now, self.clock, self._effective, self._respond)
        self.energize = False
        self.authorized_at = None
        self.effective, self._settings = {}, {}
        self.program, self._default, self._controls = None, None, []
        self._retired.clear()
        self._curves.clear()
        self.comms.feed(Beat.reset)
        self._heartbeats.clear()
        self._heartbeat_warned = 0
        self.time.reset()
        self._static.clear()
        old = self.subs.clear()
        self.links = {}
        self.report.record("resynchronisation: authorization void until the sequence is "
                           "redone", True, reason, "V2G-4.5.2-4", "V2G-4.1.2-1")
        self.log.warn("Resynchronising with the EVSE ({reason}): discharge stopped"
                      "{was}; redoing the J3072 sequence from discovery", reason=reason,
                      was=" (was authorized)" if was else "")
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retries = 0
        self._orphans.update(old)

    def _rerun(self) -> None:
        self._retry = None
        if self.machine.state is not State.resyncing:
            return
        orphans, self._orphans = self._orphans, {}
        for location in orphans.values():  # the same EVSE session may still hold them
            d = self.http.delete(location)
            d.addTimeout(CLOSE_BUDGET_S, self.clock)
            d.addErrback(lambda f: None)
        self.loops.guard("resynchronisation", self.run)

    def _retry_resync(self, why: str) -> None:
        self._retries += 1
        if self._retries == 1 or self._retries % 10 == 0:
            self.log.warn("Resynchronisation: EVSE not reachable ({why}); trying again "
                          "every {every:g} s (attempt {n})", why=why, every=RESYNC_RETRY_S,
                          n=self._retries)
        self._static.clear()
        self._retry = self.clock.callLater(RESYNC_RETRY_S, self._rerun)

    def _connection_event(self, event: str, number: int) -> None:
        """The connection tracker: when the last established connection ends, the TLS
        session with the EVSE has ended (unless the EVSE closes connections on purpose,
        ``Connection: close``)."""
        tracker = self.http.connections
        assert tracker is not None  # only the tracker calls this
        if event == "made" and number > 1:
            self.log.info("Connection #{n} to the EVSE opened ({live} established open)",
                          n=number, live=len(tracker.established))
        if event != "ended" or tracker.established or tracker.server_closes:
            return
        # The machine ignores it before the start, stopped or in non-J3072 mode.
        self.resync(f"TLS session ended: connection #{number}, the last one "
                    "established to the EVSE, was lost")

    def _http_error(self, error: SEPError) -> None:
        """A 404 on a session-static resource: the EVSE's session for this PEV is gone."""
        if error.status != 404 or self.state != "periodic":
            return
        path = urlsplit(error.url).path
        if path in self._static:
            self.resync(f"the EVSE's session is gone: {error.method} {path} answered 404")

    def _static_links(self, *hrefs: str | None) -> None:
        self._static.update(urlsplit(self.http.url(h)).path for h in hrefs if h)

    def _start_watch(self) -> None:
        if self.stall_threshold_s is None or self._watch is not None:
            return
        self._last_check = self.clock.seconds()
        self._watch = LoopingCall(self.check_stall)
        self._watch.clock = self.clock
        self._watch.start(STALL_CHECK_S, now=False)

    def _stop_watch(self) -> None:
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        self._watch = None
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def check_stall(self) -> None:
        """Compare the clock with the stall check's schedule: running more than
        ``stall_threshold_s`` late means the PEV was stalled (frozen, suspended) and its
        view of the EVSE is stale. Also called at once when the process is continued."""
        now = self.clock.seconds()
        late = now - self._last_check - STALL_CHECK_S
        self._last_check = now
        if self.stall_threshold_s is None or late <= self.stall_threshold_s:
            return
        self.resync(f"the PEV stalled: its loops ran {late + STALL_CHECK_S:.1f} s after "
                    f"the previous check, {STALL_CHECK_S:g} s expected")

    async def _step(self, name: str, ids: tuple[str, ...], work: Any) -> Any:
        epoch = self.epoch
        step = self.report.begin(name, *ids)
        try:
            result = await work
        except Exception as e:
            if epoch != self.epoch or isinstance(e, Superseded):
                self._void(step)
                raise Superseded() from e
            if self.machine.state is State.resyncing and self._failure(e) is Input.unreachable:
                self._void(step, f"EVSE not reachable, tried again: {e}")
                raise
            self.report.end(step, False, str(e))
            raise
        if epoch != self.epoch:
            self._void(step)
            raise Superseded()
        self.report.end(step, True)
        return result

    def _void(self, step: Any, why: str = "overtaken by a resynchronisation") -> None:
        """A step of a resynchronisation that is overtaken or retried: neither passed nor
        failed."""
        step.ended = self.clock.seconds()
        step.detail = why

    def _current(self, epoch: int) -> None:
        """Raise :class:`Superseded` when a resynchronisation began since ``epoch``."""
        if epoch != self.epoch:
            raise Superseded()

    async def discover(self) -> None:
        async def work() -> None:
            dcap = await self.http.get(self.dcap_path, DeviceCapability)
            for name in ("TimeLink", "EndDeviceListLink", "SelfDeviceLink",
                         "MirrorUsagePointListLink"):
                link = getattr(dcap, name)
                if link is None:
                    raise NonJ3072(f"DeviceCapability has no {name}")
                self.links[name] = link.href
            self._dcap_links = _link_map(dcap)
            self._static_links(self.dcap_path, *self._dcap_links.values())
            await self.read_time(self.links["TimeLink"])
            edev = await self.find_end_device(self.links["EndDeviceListLink"])
            if edev.href is None:
                raise NonJ3072("the EVSE's EndDevice for this PEV has no href")
            self.links["edev"] = edev.href
            edev = await self.http.get(edev.href, EndDevice)
            self.end_device = edev
            self._edev_links = _link_map(edev)
            self._static_links(edev.href, *self._edev_links.values())
            for name in ("DeviceInformationLink", "PowerStatusLink", "DERListLink",
                         "FunctionSetAssignmentsListLink"):
                link = getattr(edev, name)
                if link is None:
                    raise NonJ3072(f"EndDevice {edev.href} has no {name}")
                self.links[name] = link.href
            if edev.SubscriptionListLink is not None:
                self.links["SubscriptionListLink"] = edev.SubscriptionListLink.href
            self.rates["edev_post"] = edev.postRate or DEFAULT_RATE
        await self._step("resource discovery", ("V2G-4.5.1-5", "V2G-4.5.3-3", "V2G-4.5.3-5",
                                                "V2G-4.1.1-5", "V2G-4.1.1-7"), work())

    async def read_time(self, href: str) -> None:
        """Read the server's Time; when the offset to it changed, re-time the scheduled
        events on the new time base (V2G-4.5.3.5-3, 2030.5 §10.2.3)."""
        time = await self.http.get(href, Time)
        self.links["time"] = href
        self.rates["time_poll"] = time.pollRate or TIME_POLL_S
        moved = self.time.update(time)
        if moved:
            self.log.info("Server time base moved by {delta:.1f} s: events re-timed",
                          delta=moved)
            self.report.record(f"server time base moved by {moved:+.1f} s: events "
                               "re-timed", True, href, "V2G-4.5.3.5-3", "V2G-4.7.1-3")
            self.engine.resync()

    async def find_end_device(self, href: str) -> EndDevice:
        """Walk the EndDeviceList (with paging) for the EndDevice with this PEV's LFDI."""
        def mine(edev: Any) -> bool:
            return edev.lFDI is not None and bytes(edev.lFDI).hex().upper() == self.lfdi

        first, devices = await fetch_all(self.http, href, EndDeviceList, PAGE,
                                         query=full_query, until=mine)
        if first.pollRate:
            self.rates["edev_poll"] = first.pollRate
        for edev in devices:
            if mine(edev):
                return edev  # type: ignore[no-any-return]
        raise NonJ3072(f"no EndDevice with LFDI {self.lfdi} in {href}")

    async def step1(self) -> None:
        async def work() -> None:
            sdev = await self.http.get(self.links["SelfDeviceLink"], SelfDevice)
            if sdev.DERListLink is None:
                raise NonJ3072("SelfDevice has no DERListLink")
            ders = await self.http.get(sdev.DERListLink.href, DERList, "?s=0&l=1")
            if not ders.DER or ders.DER[0].DERSettingsLink is None:
                raise NonJ3072("SelfDevice has no DER with DERSettings")
            self._static_links(*_link_map(sdev).values(), *_link_map(ders.DER[0]).values())
            self.site = await self.http.get(ders.DER[0].DERSettingsLink.href, DERSettings)
        await self._step("step 1: site limits", ("V2G-4.6-1", "V2G-4.6.1-2"), work())

    async def step2(self) -> None:
        async def work() -> None:
            assert self.site is not None
            now = self.now()
            reading = self.inverter.reading()
            vehicle = self.vehicle
            await self._put(self.links["DeviceInformationLink"],
                            docs.device_information(vehicle, self.lfdi))
            await self._put(self.links["PowerStatusLink"],
                            docs.power_status(vehicle, reading.state_of_charge_pct,
                                              reading.active_power_w, now))
            ders = await self.http.get(self.links["DERListLink"], DERList, "?s=0&l=1")
            if not ders.DER:
                raise NonJ3072("the EndDevice's DERList is empty")
            der = ders.DER[0]
            for name in ("DERCapabilityLink", "DERSettingsLink", "DERAvailabilityLink",
                         "DERStatusLink"):
                link = getattr(der, name)
                if link is None:
                    raise NonJ3072(f"the PEV's DER has no {name}")
                self.links[name] = link.href
            self._static_links(*_link_map(der).values())
            await self._put(self.links["DERCapabilityLink"], docs.der_capability(vehicle))
            await self._put(self.links["DERSettingsLink"],
                            docs.der_settings(vehicle, self.site, now))
            await self._put(self.links["DERAvailabilityLink"],
                            docs.der_availability(vehicle, reading.state_of_charge_pct, now))
            await self._put(self.links["DERStatusLink"], self._der_status())
        await self._step("step 2: configuration sent", (
            "V2G-4.6.2.1-1", "V2G-4.6.2.1-2", "V2G-4.6.2.2-1", "V2G-4.6.2.3-1",
            "V2G-4.6.2.4-1", "V2G-4.6.2.5-1"), work())

    async def _put(self, href: str, obj: Any) -> None:
        await self.http.put(href, obj)

    async def step3(self) -> None:
        async def work() -> None:
            await self.subscribe("FunctionSetAssignmentsListLink")
            await self.read_assignments()
        await self._step("step 3: management information", (
            "V2G-4.5.3.5-3", "V2G-4.5.3.5-11", "V2G-4.6.3-9", "V2G-4.7.1-3"), work())

    async def read_assignments(self, fsas: FunctionSetAssignmentsList | None = None) -> None:
        """FunctionSetAssignments (read, or as notified), Time, then the DERProgramList."""
        epoch = self.epoch
        if fsas is None:
            fsas = await self.http.get(self.links["FunctionSetAssignmentsListLink"],
                                       FunctionSetAssignmentsList, "?s=0&l=1")
            self._current(epoch)
        if not fsas.FunctionSetAssignments:
            if self.program is not None:  # after step 3: the program is no longer assigned
                self._drop_program("the FunctionSetAssignmentsList is empty")
                return
            raise NonJ3072("no FunctionSetAssignments")
        fsa = fsas.FunctionSetAssignments[0]
        if fsa.TimeLink is not None:
            await self.read_time(fsa.TimeLink.href)
            self._current(epoch)
        if fsa.DERProgramListLink is None:
            raise NonJ3072("FunctionSetAssignments has no DERProgramListLink")
        self.links["DERProgramListLink"] = fsa.DERProgramListLink.href
        await self.subscribe("DERProgramListLink")
        await self.read_program()

    async def read_program(self, programs: DERProgramList | None = None) -> None:
        """The DERProgram, its DefaultDERControl, every DERControl and every DERCurve."""
        if programs is None:
            epoch = self.epoch
            programs = await self.http.get(self.links["DERProgramListLink"], DERProgramList,
                                           "?s=0&l=1")
            self._current(epoch)
        if not programs.DERProgram:
            if self.program is not None:
                self._drop_program("the DERProgramList is empty")
                return
            raise NonJ3072("the DERProgramList is empty")
        self._follow_poll_rate(programs)
        program = programs.DERProgram[0]
        if program.DefaultDERControlLink is None or program.DERControlListLink is None:
            raise NonJ3072("the DERProgram lacks DefaultDERControl or DERControlList links")
        old = self.program
        if old is not None and (old.href or "") != (program.href or ""):
            # The old program's events leave force once the new program is fed (no gap in
            # the DefaultDERControl, so no spurious revocation).
            self._retired.add(old.href or "")
        self.program = program
        for key, link in (("dderc", program.DefaultDERControlLink),
                          ("derc", program.DERControlListLink)):
            if self.links.get(key) != link.href:
                self._forget_subscription(self.links.get(key))
            self.links[key] = link.href
        await self.subscribe("dderc")
        await self.subscribe("derc")
        await self.poll_controls()

    def _follow_poll_rate(self, programs: DERProgramList) -> None:
        rate = programs.pollRate or DEFAULT_RATE
        if rate != self.rates["derp_poll"]:
            self.rates["derp_poll"] = rate
            self.loops.follow("controls", rate, self._poll_controls)

    async def _check_programs(self, programs: DERProgramList) -> None:
        """A DERProgramList polled or notified after step 3: follow a new pollRate, and
        re-read everything when the program (or its links) changed."""
        self._follow_poll_rate(programs)
        if not programs.DERProgram:
            if self.program is not None:
                self._drop_program(f"the DERProgramList {self.links['DERProgramListLink']} "
                                   "is empty")
            return
        new, old = programs.DERProgram[0], self.program
        if old is None:
            await self.read_program(programs)
            return

        def key(p: Any) -> tuple[Any, ...]:
            return (p.href, p.primacy, p.DefaultDERControlLink and p.DefaultDERControlLink.href,
                    p.DERControlListLink and p.DERControlListLink.href)

        if key(new) != key(old):
            self.log.info("DERProgram changed ({old} -> {new}): reading it again",
                          old=old.href, new=new.href)
            await self.read_program(programs)

    async def poll_controls(self, default: bool = True, controls: bool = True,
                            via: str = "poll") -> None:
        """GET the DefaultDERControl and/or every DERControl and hand them to the engine."""
        async def work() -> None:
            epoch = self.epoch
            program = self.program
            if program is None:
                return  # no program assigned: nothing to poll
            assert program.DefaultDERControlLink is not None  # checked in read_program
            assert program.DERControlListLink is not None
            if default or self._default is None:
                read = await self.http.get(program.DefaultDERControlLink.href,
                                           DefaultDERControl)
                self._current(epoch)  # a read of an older session never grants anything
                self._default = read
            if controls:
                pages = await self._control_pages(program.DERControlListLink.href, [])
                self._current(epoch)
                self._controls = pages
            await self._feed(via, epoch)
        await self._program_lock.run(lambda: ensureDeferred(work()))

    async def _control_pages(self, href: str, first: list[Any]) -> list[Any]:
        """Every DERControl of the list at ``href``, after the ``first`` already known."""
        _, rest = await fetch_all(self.http, href, DERControlList, PAGE, start=len(first),
                                  query=full_query)
        return list(first) + rest

    async def _feed(self, via: str, epoch: int | None = None) -> None:
        """Fetch the curves the controls reference, then update the event engine; a
        program replaced by this one is then removed (its events Cancelled). Controls read
        before a resynchronisation (``epoch`` older than the current one) are dropped."""
        epoch = self.epoch if epoch is None else epoch
        self._current(epoch)
        program = self.program
        if program is None:
            return
        for control in self._controls:
            for name in CURVE_OPMODS:
                link = getattr(control.DERControlBase, name)
                if link is not None and link.href not in self._curves:
                    curve = await self.http.get(link.href, DERCurve)
                    self._current(epoch)
                    self._curves[link.href] = curve
        self._via = via
        try:
            self.engine.update_program(program.href or "", program.primacy, self._default,
                                       self._controls)
            for href in sorted(self._retired - {program.href or ""}):
                self.log.info("DERProgram {href} replaced: its events end", href=href)
                self.engine.remove_program(href)
            self._retired.clear()
        finally:
            self._via = "event schedule"

    def _drop_program(self, why: str) -> None:
        """No DERProgram is assigned any more: its events and DefaultDERControl leave force
        (the engine Cancels them), so nothing it granted, opModEnergize included, stands."""
        program = self.program
        if program is None:
            return
        self.program = None
        self._default = None
        self._controls = []
        for key in ("dderc", "derc"):
            self._forget_subscription(self.links.pop(key, None))
        self.log.warn("DERProgram {href} withdrawn ({why}): its controls no longer apply",
                      href=program.href, why=why)
        self.report.record("DERProgram withdrawn: its controls no longer apply", True,
                           f"{program.href}: {why}", "V2G-4.7.1-3")
        self._via = "program withdrawal"
        try:
            for href in sorted(self._retired | {program.href or ""}):
                self.engine.remove_program(href)
            self._retired.clear()
        finally:
            self._via = "event schedule"

    # -- subscriptions (4.1.4) ----------------------------------------------------------

    def _key_of(self, href: str) -> str | None:
        for key in TABLE4:
            if self.links.get(key) == href:
                return key
        return None

    def subscribed(self, key: str) -> bool:
        """Whether the Table 4 resource ``key`` has a working subscription."""
        href = self.links.get(key)
        return href is not None and href in self.subscriptions

    async def subscribe(self, key: str) -> None:
        """Subscribe to the Table 4 resource ``key`` (V2G-4.1.4-3); on refusal record it and
        leave the resource to polling (V2G-4.1.4-4)."""
        href = self.links.get(key)
        if self.notify_uri is None or href is None or href in self.subscriptions:
            return
        name = TABLE4[key]
        target = self.links.get("SubscriptionListLink")
        if target is None:
            if not self._no_subscription_list:
                self._no_subscription_list = True
                self.report.record("no SubscriptionListLink in the EndDevice: polling the "
                                   "Table 4 resources at the pollRate", False, "",
                                   "V2G-4.1.4-1", "V2G-4.1.4-4")
            return
        location, reason = await self.subs.subscribe(target, href)
        if not location:
            self.report.record(f"subscription to {name} refused: polling it at the pollRate",
                               False, reason, "V2G-4.1.4-2", "V2G-4.1.4-4")
            self.log.warn("Subscription to {name} {href} failed ({reason}); polling it",
                          name=name, href=href, reason=reason)
            return
        self.report.record(f"subscribed to {name}", True, f"{href} at {location}",
                           "V2G-4.1.4-3")

    def notification_received(self, notification: Notification) -> str | None:
        """A Notification from the EVSE: None to accept it (201), else the reason to refuse
        it (400). The work (paging, the event engine) is done afterwards."""
        href = notification.subscribedResource
        key = self._key_of(href)
        if key is None or not self.subs.expects(href):
            return f"this PEV has no subscription to {href}"
        status = int(notification.status)
        if status != 0:
            self._fall_back(key, f"cancelled by the EVSE (status {status})")
            return None
        resource = notification.Resource
        expected = {"FunctionSetAssignmentsListLink": FunctionSetAssignmentsList,
                    "DERProgramListLink": DERProgramList, "dderc": DefaultDERControl,
                    "derc": DERControlList}[key]
        if resource is not None and not isinstance(resource, expected):
            return (f"{href} is a {expected.__name__}, the notification carries a "
                    f"{type(resource).__name__}")
        self.notifications += 1
        if self.sleeping or self.state == "non-J3072":
            return None  # waking re-reads everything (4.8.3)
        self.loops.guard(f"notification for {href}", lambda: self._notified(key, resource))
        return None

    async def _notified(self, key: str, resource: Any) -> None:
        href = self.links[key]
        epoch = self.epoch
        if key == "dderc":
            async def default() -> None:
                read = resource if resource is not None else await self.http.get(
                    href, DefaultDERControl)
                self._current(epoch)
                self._default = read
                await self._feed("notification", epoch)
            await self._program_lock.run(lambda: ensureDeferred(default()))
        elif key == "derc":
            async def controls() -> None:
                first = list(resource.DERControl) if resource is not None else []
                complete = resource is not None and len(first) >= (resource.all or 0)
                pages = first if complete else await self._control_pages(href, first)
                self._current(epoch)
                self._controls = pages
                await self._feed("notification", epoch)
            await self._program_lock.run(lambda: ensureDeferred(controls()))
        elif key == "DERProgramListLink":
            if resource is None:
                resource = await self.http.get(href, DERProgramList, "?s=0&l=1")
                self._current(epoch)
            await self._check_programs(resource)
        else:
            await self.read_assignments(resource)

    def _fall_back(self, key: str, why: str) -> None:
        """The subscription to ``key`` ended: poll the resource from now on (V2G-4.1.4-4)."""
        href = self.links[key]
        if self.subs.drop(href) is None:
            return
        self.report.record(f"subscription to {TABLE4[key]} {why}: polling it at the "
                           "pollRate", True, href, "V2G-4.1.4-4")
        self.log.warn("Subscription to {href} {why}; polling it", href=href, why=why)
        if self.state == "periodic" and key in ("dderc", "derc", "DERProgramListLink"):
            self.loops.guard("controls", self._poll_controls)

    async def _verify_subscriptions(self) -> None:
        """The slow safety check: each subscription still exists at the EVSE (a notifier
        may drop one after failed deliveries without telling), and the subscribed controls
        are read again in case a notification was lost."""
        if self.sleeping or not self.subscriptions:
            return
        for href, _ in await self.subs.verify():
            key = self._key_of(href)
            if key is not None:
                self._fall_back(key, "no longer exists at the EVSE (404)")
        default, controls = self.subscribed("dderc"), self.subscribed("derc")
        if default or controls:
            await self.poll_controls(default, controls, via="safety poll")

    def _forget_subscription(self, href: str | None) -> None:
        """A subscribed resource is no longer used: DELETE its subscription in the
        background (best effort, logged)."""
        self.subs.forget(href)

    async def unsubscribe(self) -> None:
        """DELETE every subscription (the PEV leaves)."""
        for href, location in list(self.subscriptions.items()):
            del self.subscriptions[href]
            try:
                await self.http.delete(location)
            except SEPError as e:
                self.log.warn("Removing subscription {location} failed: {reason}",
                              location=location, reason=str(e))

    async def metrology(self) -> None:
        async def work() -> None:
            href = self.links["MirrorUsagePointListLink"]
            if self._mup_mrid is None:  # kept across resynchronisations: the same EVSE
                self._mup_mrid = self._mrid()  # session accepts the same mRID again
            location = await self.http.post(href, docs.mirror_usage_point(
                self.lfdi, self._mup_mrid))
            if not location:
                raise NonJ3072("the EVSE gave no Location for the MirrorUsagePoint")
            self.links["mup"] = location
            self._static_links(location)
            for key, *_ in docs.METERS:
                if key not in self._meters:
                    self._meters[key] = self._mrid()
                await self.http.post(location, docs.meter_reading_type(self._meters[key], key))
            points = await self.http.get(href, MirrorUsagePointList, "?s=0&l=1")
            self.rates["mup_poll"] = points.pollRate or DEFAULT_RATE
            await self.poll_mirror()
        await self._step("metrology set up", ("V2G-4.7.2-21", "V2G-4.7.2-22",
                                              "V2G-4.7.2-27"), work())

    async def poll_mirror(self) -> None:
        mup = await self.http.get(self.links["mup"], MirrorUsagePoint)
        self.rates["mup_post"] = mup.postRate or DEFAULT_RATE

    # -- events and the inverter --------------------------------------------------------

    def _respond(self, control: Any, status: int) -> None:
        """Post a DERControlResponse to the control's replyTo (the profile's 5.7 exchange;
        V2G-4.6.3-4, V2G-4.6.4-1: the EVSE checks the Received and Started ones)."""
        if not control.replyTo:
            return
        response = control_response(control, ResponseStatus(status), bytes.fromhex(self.lfdi),
                                    self.now())

        def send(_: Any) -> Deferred[Any] | None:
            if self.closing:
                self.log.warn("Stopping: Response {status} to {href} not sent",
                              status=int(status), href=control.replyTo)
                return None
            d = self.http.post(control.replyTo, response)
            return d.addErrback(lambda f: self.log.warn(
                "Response {status} to {href} failed: {reason}", status=int(status),
                href=control.replyTo, reason=f.getErrorMessage()))

        # One at a time, in order: responses reuse the persistent connection.
        self._outbox.addCallback(send)

    def _effective(self, effective: Any) -> None:
        self.effective = {name: v.value for name, v in effective.controls.items()}
        self._settings = dict(effective.settings)
        energize = bool(effective.energize)
        if energize != self.energize:
            self.energize = energize
            if energize:
                self.authorized_at = self.clock.seconds()
                self.report.record("authorized to discharge (opModEnergize true)", True,
                                   f"learned by {self._via}", "V2G-4.6.4-2")
                for callback in list(self.on_authorized):
                    callback()
            else:
                self.report.record("authorization revoked (opModEnergize false)", True,
                                   f"learned by {self._via}", "V2G-4.6.4-3", "V2G-4.8.1.2-3")
            self.log.info("opModEnergize {value} (learned by {via})", value=energize,
                          via=self._via, observed=self.clock.seconds())
            self._fire(Input.energized if energize else Input.deenergized)
        else:
            self._fire(Input.controls_changed)

    @property
    def may_discharge(self) -> bool:
        """Authorized in this session, awake, communications good."""
        return self.machine.state is State.authorized and self.comms.ok

    def _apply_inverter(self) -> None:
        """Tell the inverter what is in effect, in plain units (IInverter.apply)."""
        controls: dict[str, Any] = {name: plain(name, value, self._curves)
                                    for name, value in self.effective.items()}
        if self._settings:
            controls["enter_service"] = enter_service(self._settings)
        controls["opModEnergize"] = self.may_discharge
        summary = (controls["opModEnergize"], controls.get("opModFixedW"),
                   controls.get("opModMaxLimW"))
        if summary != getattr(self, "_applied", None):
            self._applied = summary
            self.log.info("Inverter: discharge {allowed}, opModFixedW {fixed}, opModMaxLimW "
                          "{limit}", allowed="allowed" if summary[0] else "forbidden",
                          fixed="-" if summary[1] is None else f"{summary[1]:g} %",
                          limit="-" if summary[2] is None else f"{summary[2]:g} %")
        try:
            self.inverter.apply(controls)
        except Exception:
            self.log.failure("The inverter refused its controls")

    # -- periodic operations ------------------------------------------------------------

    def start_periodic(self) -> None:
        self._loop("heartbeat", HEARTBEAT_S, self.heartbeat)
        self._loop("controls", self.rates["derp_poll"], self._poll_controls)
        self._loop("status", self.rates["edev_post"], self._post_status)
        self._loop("readings", self.rates["mup_post"], self._post_readings)
        self._loop("rates", min(self.rates["edev_poll"], self.rates["mup_poll"]),
                   self._poll_rates)
        self._loop("time", self.rates["time_poll"], self._poll_time)
        if self.subscriptions and self.safety_poll_s > 0:
            self._loop("verify", self.safety_poll_s, self._verify_subscriptions)
        subscribed = [TABLE4[k] for k in TABLE4 if self.subscribed(k)]
        polled = [TABLE4[k] for k in TABLE4 if not self.subscribed(k)]
        self.report.record("periodic operations started", True,
                           f"poll {self.rates['derp_poll']} s, post "
                           f"{self.rates['edev_post']}/{self.rates['mup_post']} s; "
                           f"subscribed: {', '.join(subscribed) or 'none'}; "
                           f"polled: {', '.join(polled) or 'none'}",
                           "V2G-4.1.4-4", "V2G-4.7.2-8", "V2G-4.8.1.1-1")

    def _loop(self, name: str, interval: float, work: Callable[[], Any]) -> None:
        self.loops.run(name, interval, work)

    def _loop_failed(self, name: str, failure: Any) -> None:
        if not (self.closing or failure.check(Superseded)):
            self.log.warn("{name} failed: {reason}", name=name,
                          reason=failure.getErrorMessage())

    def stop(self) -> None:
        """Stop the periodic operations and the event engine (no request is made)."""
        self.loops.stop_all()
        self.engine.stop()

    async def close(self, budget_s: float = CLOSE_BUDGET_S) -> None:
        """The PEV leaves (service stop): stop everything, cancel every request still
        waiting for the EVSE, then DELETE the subscriptions, all at once, each bounded by
        ``budget_s`` seconds. Whatever is abandoned is logged; this never waits longer than
        ``budget_s`` on the clock, whether or not the EVSE answers."""
        self._fire(Input.stop)
        for what in self.http.cancel_all():
            self.log.warn("Stopping: abandoned {request}", request=what)
        for location, reason in await self.subs.close(self.clock, budget_s):
            self.log.warn("Stopping: subscription {location} not removed: {reason}",
                          location=location, reason=reason)

    def _der_status(self, inverter_status: int | None = None) -> Any:
        """The heartbeat: inverterStatus, operationalModeStatus and the alarms in effect
        (V2G-4.7.2-1..5, V2G-4.7.2-18/-19, Table 6). ``inverter_status`` overrides the one
        the state implies (waking posts 0, V2G-4.8.3-5)."""
        if inverter_status is None:
            inverter_status = 2 if self.sleeping else (0 if self.may_discharge else 3)
        reading = self.inverter.reading()
        alarms = int(getattr(reading, "alarms", 0))
        if alarms != self._alarms:
            self.report.record(f"alarmStatus {alarms:02X} ({'set' if alarms else 'cleared'})",
                               True, "", "V2G-4.7.2-18", "V2G-4.7.2-19")
            self._alarms = alarms
        now = self.now()
        mode = int(OperationalModeStatus.OFF if self.sleeping
                   else OperationalModeStatus.OPERATIONAL)
        if self._opmode is None or self._opmode[0] != mode:
            self._opmode = (mode, now)  # dateTime: when the mode began
        return docs.der_status(inverter_status, reading.state_of_charge_pct, now, alarms,
                               operational_mode=self._opmode[0], mode_since=self._opmode[1])

    async def heartbeat(self) -> None:
        """DERStatus every second; loss of communications after 10 failures (4.8.1.1)."""
        if self.sleeping:
            return
        now = self.clock.seconds()
        if self._heartbeats:
            self._heartbeat_warned += 1
            if self._heartbeat_warned == 1 or self._heartbeat_warned % 10 == 0:
                self.log.warn("Heartbeat unanswered: {n} DERStatus PUT(s) pending, the "
                              "oldest for {age:.1f} s", n=len(self._heartbeats),
                              age=now - min(self._heartbeats.values()))
        token, epoch = object(), self.epoch
        self._heartbeats[token] = now
        try:
            await self._put(self.links["DERStatusLink"], self._der_status())
        except SEPError as e:
            if epoch != self.epoch:
                return
            if CommsOutput.lost in self.comms.feed(Beat.failed):
                self._fire(Input.controls_changed)
                self.report.record("loss of communications: discharge ceased", True, str(e),
                                   "V2G-4.8.1.1-5")
            return
        finally:
            self._heartbeats.pop(token, None)
        if epoch != self.epoch:
            return
        self._heartbeat_warned = 0
        if CommsOutput.restored in self.comms.feed(Beat.answered):
            self._fire(Input.controls_changed)
            self.report.record("communications restored", True, "", "V2G-4.8.1.1-5")

    async def _poll_controls(self) -> None:
        """Poll, at the DERProgramList's pollRate, each of the DERProgramList, the
        DefaultDERControl and the DERControlList that has no working subscription
        (V2G-4.1.4-4, V2G-4.1.4-5)."""
        if self.sleeping:
            return
        if not self.subscribed("DERProgramListLink"):
            epoch = self.epoch
            programs = await self.http.get(self.links["DERProgramListLink"], DERProgramList,
                                           "?s=0&l=1")
            self._current(epoch)
            await self._check_programs(programs)
        default, controls = not self.subscribed("dderc"), not self.subscribed("derc")
        if default or controls:
            await self.poll_controls(default, controls)

    async def _poll_time(self) -> None:
        """Read the Time resource again at its pollRate: a moved server clock re-times the
        scheduled events (V2G-4.5.3.5-3)."""
        if self.sleeping:
            return
        await self.read_time(self.links["time"])
        self.loops.follow("time", self.rates["time_poll"], self._poll_time)

    async def _post_status(self) -> None:
        if self.sleeping:
            return
        reading = self.inverter.reading()
        now = self.now()
        await self._put(self.links["PowerStatusLink"], docs.power_status(
            self.vehicle, reading.state_of_charge_pct, reading.active_power_w, now))
        await self._put(self.links["DERAvailabilityLink"], docs.der_availability(
            self.vehicle, reading.state_of_charge_pct, now))

    async def _post_readings(self) -> None:
        """Table 6 monitoring while awake and authorized (V2G-4.7.2-6/-7)."""
        if self.sleeping or not self.energize:
            return
        r = self.inverter.reading()
        now = self.now()
        for key, value in (("w", r.active_power_w), ("var", r.reactive_power_var),
                           ("v", r.voltage_v), ("hz", r.frequency_hz)):
            await self.http.post(self.links["mup"],
                                 docs.meter_reading(self._meters[key], key, value, now))

    async def _poll_rates(self) -> None:
        """Follow postRate changes (V2G-4.7.2-13)."""
        if self.sleeping:
            return
        epoch = self.epoch
        dcap = await self.http.get(self.dcap_path, DeviceCapability)
        edev = await self.http.get(self.links["edev"], EndDevice)
        self._current(epoch)
        for what, old, new in (("DeviceCapability", self._dcap_links, _link_map(dcap)),
                               ("EndDevice", self._edev_links, _link_map(edev))):
            if new != old:
                names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                self.resync(f"the EVSE's session is gone: its {what} links changed "
                            f"({', '.join(names)})")
                return
        await self.poll_mirror()
        self._current(epoch)
        if not self.subscribed("FunctionSetAssignmentsListLink"):
            await self._check_assignments()
        post = edev.postRate or DEFAULT_RATE
        changed = post != self.rates["edev_post"]
        self.rates["edev_post"] = post
        if changed:
            self._loop("status", post, self._post_status)
        self.loops.follow("readings", self.rates["mup_post"], self._post_readings)

    async def _check_assignments(self) -> None:
        """The FunctionSetAssignmentsList, polled at its pollRate when not subscribed: a
        new DERProgramList link is followed."""
        fsas = await self.http.get(self.links["FunctionSetAssignmentsListLink"],
                                   FunctionSetAssignmentsList, "?s=0&l=1")
        fsa = fsas.FunctionSetAssignments[0] if fsas.FunctionSetAssignments else None
        if fsa is not None and fsa.DERProgramListLink is not None \
                and fsa.DERProgramListLink.href != self.links["DERProgramListLink"]:
            await self.read_assignments(fsas)

    # -- sleep / wake (4.8.3) -------------------------------------------------------------

    async def sleep(self) -> None:
        """Post inverterStatus 2, then stop sending anything (V2G-4.8.3-1/-2). Only while
        running (authorized or not): otherwise :class:`NoTransition`."""
        await self._afire(Input.sleep)

    async def _post_sleeping(self) -> None:
        await self._put(self.links["DERStatusLink"], self._der_status())
        self.report.record("sleeping", True, "", "V2G-4.8.3-1", "V2G-4.8.3-2")

    async def wake(self) -> None:
        """Re-acquire the management information, then post inverterStatus 0 (4.8.3). When
        a resynchronisation fell due while asleep, the whole sequence is redone instead.
        Only while asleep: otherwise :class:`NoTransition`."""
        if self.machine.state is State.sleeping_resync:
            self.report.record("awake: resynchronising", True,
                               self.resyncs[-1][1] if self.resyncs else "", "V2G-4.8.3-4")
            await self._afire(Input.wake)
            return
        try:
            await self._afire(Input.wake)  # step 3 again
        except Superseded:
            return  # a resynchronisation took over: it redoes everything
        except (SEPError, NonJ3072) as e:
            self._fire(self._failure(e), str(e))  # still asleep
            raise
        await self._afire(self._done())

    async def _post_awake(self) -> None:
        await self._put(self.links["DERStatusLink"], self._der_status(inverter_status=0))
        self.report.record("awake", True, "", "V2G-4.8.3-4", "V2G-4.8.3-5")


async def _nothing() -> None:
    return None
