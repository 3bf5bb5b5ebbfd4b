"""Management information (profile 4.6.3, 4.7.1, Table 5) from the ``[management]`` section.

Each Table 5 function goes exactly where the table puts it (V2G-4.6.3-3, V2G-4.7.1-7..9):

* Enter Service (setESDelay, setESHighFreq, setESHighVolt, setESLowFreq, setESLowVolt,
  setESRampTms, setESRandomDelay) only in the DefaultDERControl, next to opModEnergize (the
  authorization to discharge, V2G-4.5.3.5-7/-8, V2G-4.6.4-2/-3);
* every other function only as a DERControl of its own carrying exactly one opMod
  (V2G-4.6.3-7), responseRequired bits 0 and 1 (V2G-4.6.3-4/-8), start = now
  (V2G-4.6.3-5), duration 4294967295 s (V2G-4.6.3-6); curve functions link a DERCurve.

Units (from the 2030.5-2018 schema documentation):

=========================  ==================================================================
setESDelay, setESRampTms,  hundredths of a second
setESRandomDelay
setESHighFreq/LowFreq      hundredths of Hz
setESHighVolt/LowVolt      hundredths of a percent of setVRef (effective percent voltage)
opModFixedPFInjectW        displacement × 10^multiplier (thousandths unless more decimals);
                           excitation true = absorbing reactive power (``excitation="absorb"``)
opModFixedVar              hundredths of a percent of :data:`VAR_REF`
opModMaxLimW               hundredths of a percent of the PEV's setMaxW
opModFreqDroop             dBOF/dBUF thousandths of Hz (dead band), kOF/kUF thousandths
                           (per unit), openLoopTms hundredths of a second
DERCurve                   xvalue × 10^xMultiplier, yvalue × 10^yMultiplier; each axis gets
                           -2 (hundredths) or a smaller multiplier when that keeps the
                           configured values exact
=========================  ==================================================================

Curve axes follow the schema's DERControlBase documentation: trip and momentary-cessation
curves have the duration in seconds on x and the frequency in Hz (HFRT/LFRT) or the
effective percent voltage (HVRT/LVRT) on y, yRefType 0 (N/A, the control defines y);
Volt-Var and Volt-Watt have the effective percent voltage on x; Watt-Var %setMaxW on x.
Reactive-power y values are percent of :data:`VAR_REF`, Volt-Watt y percent of setMaxW.
Points keep the configured order (x strictly rising, at most 10 points).

Changes during a session (:meth:`ManagementInformation.update`) follow the 2030.5 §10.2.3
event rules (V2G-4.7.1-3): a function whose values changed gets a NEW DERControl (new mRID,
creationTime and start = now) and the old one stays in the DERControlList with
EventStatus currentStatus 4 (Superseded) dated now. "Superseded" is the status the rules
give an event replaced by one of the same program targeting exactly the same control;
``potentiallySuperseded`` is for partial overlaps and stays false. A function that is
no longer configured has its DERControl Cancelled (currentStatus 2) dated now, so the PEV
disables it (V2G-4.9.1-2). An update within the same second as the control it supersedes
gives both the same start; the explicit Superseded status still tells the PEV which one to
follow.

A superseded or cancelled DERControl stays listed, with its status, until the PEV has seen
it: it is retired (no longer listed) at the next change of the same function once the PEV
has posted its Superseded (7) or Cancelled (6) Response (:meth:`acknowledge`), or
:data:`RETIRE_GRACE_S` after it was superseded; and at most :data:`RETIRED_KEPT` of them are
kept per function whatever happens. So a DERControlList holds at most
``(1 + RETIRED_KEPT)`` controls per function, however often a function changes (the site
share changes with every arrival and departure). A PEV that never saw a retired control's
status finds it gone from the list, which the 2030.5 event rules treat as cancelled; the
control superseding it is in the same list, so no instant is left without one in effect.
A Response naming a recently retired control is still accepted (:meth:`all_controls`).

The profile's examples (section 5) are informative and not always consistent with the
schema: they show opModFreqDroop dead bands as absolute frequencies (dBOF 61000 or 6100),
where the schema defines a dead band in thousandths of Hz (0.036 Hz → 36), and curve
yRefType 1 for Volt-Var; the schema's definitions are followed here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from sepgw.evse.site import INT16, INT32, UINT16, UINT32, fixed, power_of_ten
from sepgw.model import (
    CurveData, DateTimeInterval, DefaultDERControl, DERControl, DERControlBase, DERCurve,
    DERCurveType, DERUnitRefType, EventStatus, EventStatusCode, FixedVar, FreqDroopType, Link,
    PowerFactorWithExcitation, ResponseRequired, SubscribableType,
)
from sepgw.model.paging import sort_list

__all__ = [
    "CURVE_MULTIPLIER", "DURATION_FOREVER", "PF_MULTIPLIER", "RESPONSE_REQUIRED",
    "RETIRE_GRACE_S", "RETIRED_KEPT", "VAR_REF",
    "Function", "FUNCTIONS",
    "ENTER_SERVICE_FIELDS", "ManagementError", "ManagementChanges", "ManagementInformation",
    "check_management", "enter_service_settings", "function_value", "random_mrid",
]

DURATION_FOREVER = 0xFFFFFFFF
"""interval.duration of every management DERControl (V2G-4.6.3-6)."""

RESPONSE_REQUIRED = ResponseRequired.MESSAGE_RECEIVED | ResponseRequired.SPECIFIC_RESPONSE
"""responseRequired of every management DERControl: bits 0 and 1 (V2G-4.6.3-4/-8)."""

RETIRE_GRACE_S = 5.0
"""How long a superseded or cancelled DERControl stays listed without its Response: five
DERControlList polls at the profile's 1 s rate (a subscribed PEV is notified at once)."""

RETIRED_KEPT = 2
"""At most this many superseded or cancelled DERControls listed per function."""

_FORGOTTEN_KEPT = 64
"""Retired DERControls still accepted as the subject of a late Response, per session."""

_TERMINAL_RESPONSE = {EventStatusCode.SUPERSEDED: 7, EventStatusCode.CANCELLED: 6}
"""The Response status (2030.5 Table 27) a client posts when it sees the event status."""

VAR_REF = DERUnitRefType.STAT_VAR_AVAIL
"""What reactive-power percentages refer to: ``[management]`` documents them as "% var
available", which is 2030.5's %statVarAvail."""

CURVE_MULTIPLIER = -2
"""Preferred xMultiplier/yMultiplier: hundredths, as every curve in the profile's examples
(section 5.6) has them, so PEVs built from those examples read familiar numbers. A curve
whose values need more decimals gets a smaller multiplier (:func:`power_of_ten`)."""

PF_MULTIPLIER = -3
"""Preferred power-factor multiplier (thousandths, as in the profile's DERCapability)."""

ENTER_SERVICE_FIELDS = ("setESDelay", "setESHighFreq", "setESHighVolt", "setESLowFreq",
                        "setESLowVolt", "setESRampTms", "setESRandomDelay")
"""The Enter Service settings: DefaultDERControl only (V2G-4.7.1-9)."""


@dataclass(frozen=True)
class Function:
    """One Table 5 function that is served as a DERControl."""
    key: str
    """Its section under ``[management]``."""
    opmod: str
    """The DERControlBase element (2030.5-2018 spelling)."""
    description: str
    """DERControl description (String32); the curve's is the same without ``MI-``."""
    curve_type: DERCurveType | None = None
    y_ref: DERUnitRefType = DERUnitRefType.NOT_APPLICABLE
    reactive: bool = False
    """One of the mutually exclusive reactive-power controls (V2G-4.9.7-1)."""
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None


_NA = DERUnitRefType.NOT_APPLICABLE
_PCT = (-100.0, 100.0)
_POS = (0.0, math.inf)

#: Table 5's DERControl rows, in the table's order. The profile's table spells the trip
#: controls opModHFRMustTrip, opModLFRMustTrip, opModHVRMustTrip and opModLVRMustTrip; the
#: 2030.5-2018 schema's elements (used here) are opModHFRTMustTrip, opModLFRTMustTrip,
#: opModHVRTMustTrip and opModLVRTMustTrip. High and Low Frequency Droop share one
#: opModFreqDroop (both dead bands and gains), so they are one DERControl.
FUNCTIONS: tuple[Function, ...] = (
    Function("constant_pf", "opModFixedPFInjectW", "MI-Const-PF", reactive=True),
    Function("volt_var", "opModVoltVar", "MI-Volt-Var", DERCurveType.opModVoltVar, VAR_REF,
             reactive=True, x_range=_POS, y_range=_PCT),
    Function("watt_var", "opModWattVar", "MI-Watt-Var", DERCurveType.opModWattVar, VAR_REF,
             reactive=True, x_range=(0.0, 100.0), y_range=_PCT),
    Function("constant_var", "opModFixedVar", "MI-Const-Var", reactive=True),
    Function("volt_watt", "opModVoltWatt", "MI-Volt-Watt", DERCurveType.opModVoltWatt,
             DERUnitRefType.SET_MAX_W, x_range=_POS, y_range=(0.0, 100.0)),
    Function("high_freq_trip", "opModHFRTMustTrip", "MI-HFRT-Must",
             DERCurveType.opModHFRTMustTrip, _NA, x_range=_POS,
             y_range=_POS),
    Function("low_freq_trip", "opModLFRTMustTrip", "MI-LFRT-Must",
             DERCurveType.opModLFRTMustTrip, _NA, x_range=_POS,
             y_range=_POS),
    Function("limit_active_power", "opModMaxLimW", "MI-Limit-W"),
    Function("freq_droop", "opModFreqDroop", "MI-Freq-Droop"),
    Function("high_volt_cessation", "opModHVRTMomentaryCessation", "MI-HVRT-MomCess",
             DERCurveType.opModHVRTMomentaryCessation, _NA, x_range=_POS,
             y_range=_POS),
    Function("high_volt_trip", "opModHVRTMustTrip", "MI-HVRT-Must",
             DERCurveType.opModHVRTMustTrip, _NA, x_range=_POS,
             y_range=_POS),
    Function("low_volt_cessation", "opModLVRTMomentaryCessation", "MI-LVRT-MomCess",
             DERCurveType.opModLVRTMomentaryCessation, _NA, x_range=_POS,
             y_range=_POS),
    Function("low_volt_trip", "opModLVRTMustTrip", "MI-LVRT-Must",
             DERCurveType.opModLVRTMustTrip, _NA, x_range=_POS,
             y_range=_POS),
)


class ManagementError(ValueError):
    """The management information is not valid or not mutually compatible (V2G-4.6.3-2)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def random_mrid() -> bytes:
    """A random 128-bit mRID (the default mRID source)."""
    return os.urandom(16)


def _enabled(management: Mapping[str, Any]) -> list[Function]:
    return [f for f in FUNCTIONS if management.get(f.key) is not None]


def check_management(management: Mapping[str, Any],
                     site: Mapping[str, Any] | None = None) -> list[str]:
    """Every reason why ``management`` cannot be served as it is (empty when it can).

    Checks mutual compatibility (V2G-4.6.3-2): at most one reactive-power control
    (V2G-4.9.7-1); none except unity power factor when ``site`` requires only a 2-quadrant
    inverter; an Enter Service window whose low limits are below its high limits. Also that
    every value fits its 2030.5 element (curve points within the axis' documented domain).
    """
    problems: list[str] = []
    enabled = _enabled(management)
    reactive = [f.key for f in enabled if f.reactive]
    if len(reactive) > 1:
        problems.append(f"at most one reactive-power function may be enabled "
                        f"(V2G-4.9.7-1), found {', '.join(reactive)}")
    if site is not None and site.get("quadrants") == 2:
        for key in reactive:
            cfg = management[key]
            if key == "constant_pf" and cfg.get("pf") == 1.0:
                continue  # unity power factor: no reactive power at all
            problems.append(f"{key}: the site requires only 2-quadrant (active power) "
                            f"inverters, which cannot follow a reactive-power function")
    es = management.get("enter_service")
    if es is not None:
        if es["low_freq_hz"] >= es["high_freq_hz"]:
            problems.append("enter_service: low_freq_hz must be below high_freq_hz")
        if es["low_volt_pct"] >= es["high_volt_pct"]:
            problems.append("enter_service: low_volt_pct must be below high_volt_pct")
        try:
            enter_service_settings(es)
        except ValueError as e:
            problems.append(f"enter_service: {e}")
    for fn in enabled:
        cfg = management[fn.key]
        if fn.curve_type is not None:
            points = cfg["points"]
            if not 1 <= len(points) <= 10:
                problems.append(f"{fn.key}: a DERCurve has 1 to 10 points, got {len(points)}")
            for axis, bounds in (("x", fn.x_range), ("y", fn.y_range)):
                assert bounds is not None
                lo, hi = bounds
                values = [p[0 if axis == "x" else 1] for p in points]
                bad = [v for v in values if not lo <= v <= hi]
                if bad:
                    within = f"within {lo:g}..{hi:g}" if hi < math.inf else f"at least {lo:g}"
                    problems.append(f"{fn.key}: {axis} values must be {within}, got "
                                    f"{', '.join(f'{v:g}' for v in bad)}")
        else:
            try:
                function_value(fn.key, cfg)
            except ValueError as e:
                problems.append(f"{fn.key}: {e}")
    return problems


def enter_service_settings(es: Mapping[str, Any]) -> dict[str, int]:
    """The DefaultDERControl setES* elements from ``[management.enter_service]``."""
    return {
        "setESDelay": fixed(es["delay_s"], 2, UINT32, "delay_s"),
        "setESHighFreq": fixed(es["high_freq_hz"], 2, UINT16, "high_freq_hz"),
        "setESHighVolt": fixed(es["high_volt_pct"], 2, INT16, "high_volt_pct"),
        "setESLowFreq": fixed(es["low_freq_hz"], 2, UINT16, "low_freq_hz"),
        "setESLowVolt": fixed(es["low_volt_pct"], 2, INT16, "low_volt_pct"),
        "setESRampTms": fixed(es["ramp_s"], 2, UINT32, "ramp_s"),
        "setESRandomDelay": fixed(es["random_delay_s"], 2, UINT32, "random_delay_s"),
    }


def function_value(key: str, cfg: Mapping[str, Any]) -> Any:
    """The opMod value of a non-curve DERControl function from its configuration."""
    if key == "constant_pf":
        multiplier, (displacement,) = power_of_ten([cfg["pf"]], UINT16, PF_MULTIPLIER)
        return PowerFactorWithExcitation(displacement=displacement,
                                         excitation=cfg["excitation"] == "absorb",
                                         multiplier=multiplier)
    if key == "constant_var":
        return FixedVar(refType=VAR_REF,
                        value=fixed(cfg["var_pct"], 2, (-10000, 10000), "var_pct"))
    if key == "limit_active_power":
        return fixed(cfg["max_w_pct"], 2, (0, 10000), "max_w_pct")
    if key == "freq_droop":
        return FreqDroopType(dBOF=fixed(cfg["db_of_hz"], 3, UINT32, "db_of_hz"),
                             dBUF=fixed(cfg["db_uf_hz"], 3, UINT32, "db_uf_hz"),
                             kOF=fixed(cfg["k_of"], 3, UINT16, "k_of"),
                             kUF=fixed(cfg["k_uf"], 3, UINT16, "k_uf"),
                             openLoopTms=fixed(cfg["open_loop_s"], 2, UINT16, "open_loop_s"))
    raise KeyError(key)


@dataclass(frozen=True)
class _CurveSpec:
    """A curve's content without identity (compared to detect changes)."""
    curve_type: DERCurveType
    x_multiplier: int
    y_multiplier: int
    y_ref: DERUnitRefType
    points: tuple[tuple[int, int], ...]


def _spec(fn: Function, cfg: Mapping[str, Any]) -> Any:
    """What is served for ``fn``, as comparable integers (so a float change that encodes
    to the same document is no change)."""
    if fn.curve_type is None:
        return function_value(fn.key, cfg)
    points = cfg["points"]
    xm, xs = power_of_ten([p[0] for p in points], INT32, CURVE_MULTIPLIER)
    ym, ys = power_of_ten([p[1] for p in points], INT32, CURVE_MULTIPLIER)
    return _CurveSpec(fn.curve_type, xm, ym, fn.y_ref, tuple(zip(xs, ys)))


@dataclass
class _Issued:
    """One DERControl issued this session (and its curve)."""
    function: Function
    spec: Any
    control: DERControl
    curve: DERCurve | None
    retired_at: float | None = None
    """When it was superseded or cancelled (None while in effect)."""
    acknowledged: bool = False
    """The PEV posted the Response for its Superseded or Cancelled status."""


@dataclass
class ManagementChanges:
    """What :meth:`ManagementInformation.update` changed (false when nothing did)."""
    issued: list[DERControl] = field(default_factory=list)
    """New DERControls (changed or newly enabled functions)."""
    superseded: list[DERControl] = field(default_factory=list)
    """Controls now marked Superseded (as they are now served)."""
    cancelled: list[DERControl] = field(default_factory=list)
    """Controls of functions no longer configured, now marked Cancelled."""
    removed: list[DERControl] = field(default_factory=list)
    """Superseded or cancelled controls no longer listed (retired)."""
    curves: list[DERCurve] = field(default_factory=list)
    """New DERCurves."""
    default_changed: bool = False
    """The Enter Service settings of the DefaultDERControl changed."""

    def __bool__(self) -> bool:
        return bool(self.issued or self.superseded or self.cancelled or self.removed
                    or self.curves or self.default_changed)


class ManagementInformation:
    """The management information served to one PEV session.

    ``control_href(i)`` and ``curve_href(i)`` give the href of the i-th DERControl and
    DERCurve of the session (i = 1, 2, … in issue order, never reused); ``reply_to`` is the
    ResponseList the PEV posts its responses to; ``mrid`` makes each new 128-bit mRID.
    ``site`` (the ``[site]`` section) is used for the compatibility checks only. Raises
    :class:`ManagementError` when the configuration cannot be served (V2G-4.6.3-2).
    """

    def __init__(self, management: Mapping[str, Any], site: Mapping[str, Any] | None = None,
                 *, now: float, control_href: Callable[[int], str],
                 curve_href: Callable[[int], str], reply_to: str,
                 mrid: Callable[[], bytes] = random_mrid) -> None:
        self._control_href = control_href
        self._curve_href = curve_href
        self._reply_to = reply_to
        self._mrid = mrid
        self._site = site
        self._issued: list[_Issued] = []
        self._forgotten: deque[DERControl] = deque(maxlen=_FORGOTTEN_KEPT)
        self._current: dict[str, _Issued] = {}
        self._extra: dict[str, _Issued] = {}
        self._n_controls = 0
        self._n_curves = 0
        self._check(management)
        self._es = enter_service_settings(management["enter_service"])
        self._default_mrid = self._new_mrid()
        self._apply(management, now, ManagementChanges())

    # -- reading ---------------------------------------------------------------------------

    @property
    def controls(self) -> list[DERControl]:
        """Every DERControl of the DERControlList (in effect, or superseded or cancelled and
        not yet retired), in 2030.5 list order."""
        return sort_list((i.control for i in self._issued), DERControl)

    def all_controls(self) -> list[DERControl]:
        """The DERControls a Response may name: those listed, and the last
        ``_FORGOTTEN_KEPT`` retired ones (a late Superseded Response is no error)."""
        return [i.control for i in self._issued] + list(self._forgotten)

    def acknowledge(self, mrid: bytes, status: int) -> bool:
        """The PEV posted a Response ``status`` about DERControl ``mrid``: a superseded
        (cancelled) control answered 7 Superseded (6 Cancelled) may be retired at the next
        change of its function. True when that made it retirable."""
        for issued in self._issued:
            if issued.control.mRID == mrid:
                if issued.retired_at is None or issued.acknowledged:
                    return False
                want = _TERMINAL_RESPONSE.get(issued.control.EventStatus.currentStatus)
                issued.acknowledged = status == want
                return issued.acknowledged
        return False

    def current(self) -> list[DERControl]:
        """The DERControls in effect: one per configured function, in Table 5 order."""
        return [self._current[f.key].control for f in FUNCTIONS if f.key in self._current]

    def active(self, now: float) -> list[DERControl]:
        """The ActiveDERControlList: controls in effect whose interval contains ``now``."""
        t = int(now)
        return sort_list((c for c in self.current() + self.extras()
                          if c.interval.start <= t < c.interval.start + c.interval.duration),
                         DERControl)

    def extras(self) -> list[DERControl]:
        """The DERControls in effect that are not management information: coordinated
        charging (opModFixedW, 4.8.2) and the site-sharing opModMaxLimW (4.6.1.1)."""
        return [i.control for i in self._extra.values()]

    def set_extra(self, key: str, opmod: str, value: Any, description: str, now: float
                  ) -> ManagementChanges:
        """Serve a DERControl ``key`` carrying ``opmod`` = ``value`` from ``now`` on; an
        earlier one of the same ``key`` is superseded. Nothing changes for the same value.

        These controls are not management information (V2G-4.6.3-5 does not apply): one
        that supersedes another keeps its start, so that a PEV whose idea of the server's
        time lags a little never sees the new one as not yet started (no gap in the
        limit); its later creationTime and the Superseded status say which one wins."""
        changes = ManagementChanges()
        old = self._extra.get(key)
        if old is not None and old.spec == (opmod, value):
            return changes
        t = int(now)
        start = t
        if old is not None:
            start = min(t, old.control.interval.start)
            self._retire(old, EventStatusCode.SUPERSEDED, now, changes.superseded)
        fn = Function(key, opmod, description)
        issued = self._issue(fn, value, t, start)
        issued.spec = (opmod, value)
        self._issued.append(issued)
        self._extra[key] = issued
        changes.issued.append(issued.control)
        self._prune(key, now, changes)
        return changes

    def clear_extra(self, key: str, now: float) -> ManagementChanges:
        """Cancel the DERControl ``key`` (if served) from ``now`` on."""
        changes = ManagementChanges()
        old = self._extra.pop(key, None)
        if old is not None:
            self._retire(old, EventStatusCode.CANCELLED, now, changes.cancelled)
            self._prune(key, now, changes)
        return changes

    @staticmethod
    def _retire(old: "_Issued", status: EventStatusCode, now: float,
                into: list[DERControl]) -> None:
        old.control = dataclasses.replace(old.control, EventStatus=EventStatus(
            currentStatus=status, dateTime=int(now), potentiallySuperseded=False))
        old.retired_at = now
        into.append(old.control)

    def _prune(self, key: str, now: float, changes: ManagementChanges) -> None:
        """Stop listing the retired controls of function ``key`` that the PEV answered or
        that are older than the grace, and all but the newest :data:`RETIRED_KEPT`."""
        drop: list[_Issued] = []
        kept: list[_Issued] = []
        for i in self._issued:
            if i.function.key == key and i.retired_at is not None:
                expired = i.acknowledged or now - i.retired_at >= RETIRE_GRACE_S
                (drop if expired else kept).append(i)
        drop += kept[:max(0, len(kept) - RETIRED_KEPT)]
        if not drop:
            return
        gone = {id(i) for i in drop}
        self._issued = [i for i in self._issued if id(i) not in gone]
        for i in drop:
            self._forgotten.append(i.control)
            changes.removed.append(i.control)

    @property
    def curves(self) -> list[DERCurve]:
        """Every DERCurve a listed DERControl links, in 2030.5 list order."""
        return sort_list((i.curve for i in self._issued if i.curve is not None), DERCurve)

    @property
    def enter_service(self) -> dict[str, int]:
        """The setES* elements of the DefaultDERControl."""
        return dict(self._es)

    def default_control(self, energize: bool = False, href: str | None = None
                        ) -> DefaultDERControl:
        """The DefaultDERControl: opModEnergize (the authorization to discharge,
        V2G-4.6.4-2/-3) and the Enter Service settings, nothing else (V2G-4.7.1-8). Its
        mRID stays the same for the session."""
        return DefaultDERControl(
            href=href, subscribable=SubscribableType.NON_CONDITIONAL, mRID=self._default_mrid,
            description="Default DERC", DERControlBase=DERControlBase(opModEnergize=energize),
            **self._es)

    # -- changing --------------------------------------------------------------------------

    def update(self, management: Mapping[str, Any], now: float) -> ManagementChanges:
        """Serve ``management`` from ``now`` on (4.6.3's change during a connect session).

        Changed functions get new DERControls (and DERCurves) superseding the old ones,
        newly enabled functions new DERControls, removed functions have theirs cancelled
        (see the module documentation). Nothing changes when ``management`` is refused
        (:class:`ManagementError`).
        """
        self._check(management)
        changes = ManagementChanges()
        es = enter_service_settings(management["enter_service"])
        if es != self._es:
            self._es = es
            changes.default_changed = True
        self._apply(management, now, changes)
        return changes

    # -- internals -------------------------------------------------------------------------

    def _check(self, management: Mapping[str, Any]) -> None:
        problems = check_management(management, self._site)
        if problems:
            raise ManagementError(problems)

    def _new_mrid(self) -> bytes:
        mrid = self._mrid()
        if not isinstance(mrid, bytes) or len(mrid) != 16:
            raise ValueError(f"an mRID must be 16 bytes, got {mrid!r}")
        return mrid

    def _apply(self, management: Mapping[str, Any], now: float,
               changes: ManagementChanges) -> None:
        t = int(now)
        wanted = {f.key: _spec(f, management[f.key]) for f in _enabled(management)}
        for fn in FUNCTIONS:
            old = self._current.get(fn.key)
            spec = wanted.get(fn.key)
            if old is not None and spec == old.spec:
                continue
            if old is not None:
                status = (EventStatusCode.CANCELLED if spec is None
                          else EventStatusCode.SUPERSEDED)
                self._retire(old, status, now,
                             changes.cancelled if spec is None else changes.superseded)
                del self._current[fn.key]
            if spec is not None:
                issued = self._issue(fn, spec, t, t)
                self._issued.append(issued)
                self._current[fn.key] = issued
                changes.issued.append(issued.control)
                if issued.curve is not None:
                    changes.curves.append(issued.curve)
            if old is not None:
                self._prune(fn.key, now, changes)

    def _issue(self, fn: Function, spec: Any, t: int, start: int) -> _Issued:
        curve = None
        if isinstance(spec, _CurveSpec):
            self._n_curves += 1
            href = self._curve_href(self._n_curves)
            curve = DERCurve(
                href=href, mRID=self._new_mrid(),
                description=fn.description.removeprefix("MI-"), creationTime=t,
                CurveData=[CurveData(xvalue=x, yvalue=y) for x, y in spec.points],
                curveType=spec.curve_type, xMultiplier=spec.x_multiplier,
                yMultiplier=spec.y_multiplier, yRefType=spec.y_ref)
            value: Any = Link(href=href)
        else:
            value = spec
        self._n_controls += 1
        control = DERControl(
            href=self._control_href(self._n_controls), replyTo=self._reply_to,
            responseRequired=RESPONSE_REQUIRED, mRID=self._new_mrid(),
            description=fn.description, creationTime=t,
            # start = now: never "Scheduled" (2030.5 EventStatus: start <= now is Active).
            EventStatus=EventStatus(currentStatus=EventStatusCode.ACTIVE, dateTime=t,
                                    potentiallySuperseded=False),
            interval=DateTimeInterval(duration=DURATION_FOREVER, start=start),
            DERControlBase=DERControlBase(**{fn.opmod: value}))
        return _Issued(fn, spec, control, curve)
