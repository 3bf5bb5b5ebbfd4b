"""Helper module (no plugin factory): the grid-support functions of the simulated PEV inverter,
as pure functions of the controls in plain units (:mod:`sepgw.pev.controls`) and the grid the
inverter sees. No Twisted, no clock: time is always passed in. ``docs/simulation.md`` says how
each function is interpreted.

Units: active power W and reactive power var in the DER sign convention (positive flows from
the PEV to the grid: discharging, injecting vars); voltages in percent of ``v_ref``;
frequencies in Hz; times in seconds.

* :func:`active_power_target`: opModEnergize, opModFixedW, opModMaxLimW, opModVoltWatt;
* :func:`droop_w` with :data:`IEEE1547_DROOP` (opModFreqDroop, ON by default, V2G-4.9.3-1)
  and :func:`lag` (its open-loop response time);
* :func:`reactive_power`: constant power factor, Volt-Var, Watt-Var, constant var (one of
  them, profile 4.9.7);
* :class:`Excursions` and :func:`must_trip_after`: must-trip and momentary-cessation curves;
* :func:`enter_service_settings` and :func:`in_service_window`: Enter Service after a trip;
* :func:`ramp` and :func:`interpolate`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

Point = tuple[float, float]

IEEE1547_DROOP: Mapping[str, float] = {"db_of_hz": 0.036, "db_uf_hz": 0.036, "k_of": 0.05,
                                       "k_uf": 0.05, "open_loop_s": 5.0}
"""IEEE 1547-2018 default frequency droop, used when ``opModFreqDroop`` is absent: the profile
makes droop ON by default (V2G-4.9.3-1)."""

IEEE1547_ENTER_SERVICE: Mapping[str, float] = {
    "setESDelay": 300.0, "setESRampTms": 300.0, "setESHighVolt": 105.0,
    "setESLowVolt": 91.7, "setESHighFreqOffset": 0.1, "setESLowFreqOffset": -0.5}
"""IEEE 1547-2018 default Enter Service settings (delay s, ramp s, window % of v_ref); the
frequency window defaults to nominal +0.1 / -0.5 Hz (60.1 / 59.5 Hz at 60 Hz)."""

TRIP_CURVES: Mapping[str, tuple[str, bool]] = {
    "opModHVRTMustTrip": ("v", True), "opModLVRTMustTrip": ("v", False),
    "opModHFRTMustTrip": ("hz", True), "opModLFRTMustTrip": ("hz", False)}
"""Must-trip curves: which quantity (voltage % of v_ref or Hz) and whether high (beyond =
above) or low (beyond = below)."""

CESSATION_CURVES: Mapping[str, tuple[str, bool]] = {
    "opModHVRTMomentaryCessation": ("v", True), "opModLVRTMomentaryCessation": ("v", False)}
"""Momentary-cessation curves (V2G-4.9.2-1), read like the must-trip curves."""

REACTIVE_FUNCTIONS = ("opModFixedPFInjectW", "opModVoltVar", "opModWattVar", "opModFixedVar")
"""The mutually exclusive reactive-power functions (profile 4.9.7), in the order the inverter
picks one when it is (wrongly) given more than one."""


def clip(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def interpolate(points: Sequence[Point], x: float) -> float:
    """y at ``x`` on the piecewise-linear curve through ``points`` (sorted by x here), flat
    beyond the end points. ValueError if there are no points."""
    if not points:
        raise ValueError("a curve needs at least one point")
    pts = sorted((float(px), float(py)) for px, py in points)
    if x <= pts[0][0]:
        return pts[0][1]
    if x >= pts[-1][0]:
        return pts[-1][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            if x1 == x0:
                return y1
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]  # pragma: no cover (unreachable)


def _points(curve: Any) -> list[Point]:
    """The points of a curve control (``{"points": [...]}``), or [] when absent or empty."""
    if not isinstance(curve, Mapping):
        return []
    return [(float(x), float(y)) for x, y in curve.get("points") or ()]


# --------------------------------------------------------------------------------------------
# Active power


def fixed_active_power(controls: Mapping[str, Any], max_w: float) -> float:
    """The active-power setpoint, W: 0 unless opModEnergize is true; else opModFixedW percent
    of ``max_w`` (positive discharges, V2G-4.8.2-2; absent: 0), within ±max_w, discharge capped
    at opModMaxLimW percent of ``max_w``."""
    if not controls.get("opModEnergize"):
        return 0.0
    power = clip(max_w * float(controls.get("opModFixedW") or 0.0) / 100.0, -max_w, max_w)
    limit = controls.get("opModMaxLimW")
    if limit is not None:
        power = min(power, max_w * max(0.0, float(limit)) / 100.0)
    return power


def volt_watt_limit(curve: Any, voltage_pct: float, max_w: float) -> float | None:
    """The most active power (W) the Volt-Watt curve allows at ``voltage_pct``: y percent of
    ``max_w`` (setMaxW) interpolated at the voltage; None without a curve. A negative y asks a
    battery to charge at least that much."""
    points = _points(curve)
    if not points:
        return None
    return max_w * interpolate(points, voltage_pct) / 100.0


def active_power_target(controls: Mapping[str, Any], max_w: float,
                        voltage_pct: float) -> float:
    """The active-power target before frequency droop, W: :func:`fixed_active_power`, then
    limited by opModVoltWatt (0 when not energized, whatever the voltage)."""
    if not controls.get("opModEnergize"):
        return 0.0
    power = fixed_active_power(controls, max_w)
    limit = volt_watt_limit(controls.get("opModVoltWatt"), voltage_pct, max_w)
    if limit is not None:
        power = min(power, limit)
    return clip(power, -max_w, max_w)


def droop_settings(controls: Mapping[str, Any]) -> dict[str, float]:
    """opModFreqDroop in effect, or the IEEE 1547 defaults when absent (V2G-4.9.3-1); a key
    missing from a given value takes its default."""
    given = controls.get("opModFreqDroop")
    settings = dict(IEEE1547_DROOP)
    if isinstance(given, Mapping):
        settings.update({k: float(v) for k, v in given.items() if k in IEEE1547_DROOP
                         and v is not None})
    return settings


def droop_w(settings: Mapping[str, float], frequency_hz: float, nominal_hz: float,
            max_w: float) -> float:
    """The change of active power (W) frequency droop asks for at ``frequency_hz``, IEEE 1547
    6.5.2.7: above nominal + db_of, ``-max_w * (f - nominal - db_of) / (nominal * k_of)`` (less
    discharge, more charge); below nominal - db_uf, ``+max_w * (nominal - db_uf - f) /
    (nominal * k_uf)``; 0 inside the deadband or with a droop k of 0 or less."""
    over = frequency_hz - nominal_hz - settings["db_of_hz"]
    under = nominal_hz - settings["db_uf_hz"] - frequency_hz
    if over > 0 and settings["k_of"] > 0:
        return -max_w * over / (nominal_hz * settings["k_of"])
    if under > 0 and settings["k_uf"] > 0:
        return max_w * under / (nominal_hz * settings["k_uf"])
    return 0.0


def lag(current: float, target: float, dt: float, response_s: float) -> float:
    """A first-order lag ``dt`` seconds on from ``current`` towards ``target``, with the IEEE
    1547 open-loop response time ``response_s`` (90 % of a step reached after it: time
    constant ``response_s / ln 10``). A response time of 0 or less: the target at once."""
    if response_s <= 0:
        return target
    return target + (current - target) * math.exp(-dt * math.log(10.0) / response_s)


def ramp(current: float, target: float, dt: float, rate_per_s: float) -> float:
    """``current`` moved towards ``target`` by at most ``rate_per_s * dt``; a rate of 0 or less
    (no ramp): the target at once."""
    if rate_per_s <= 0:
        return target
    step = rate_per_s * dt
    if abs(target - current) <= step + 1e-9 * max(1.0, abs(target)):  # float rounding
        return target
    return current + math.copysign(step, target - current)


# --------------------------------------------------------------------------------------------
# Reactive power


def pf_var(p_w: float, pf: float, absorbing: bool) -> float:
    """Reactive power (var) at displacement power factor ``pf`` for active power ``p_w``:
    ``|P| * tan(acos(pf))``, negative when absorbing. pf 1 (or more): 0; pf 0 (or less): inf."""
    if pf >= 1.0:
        return 0.0
    magnitude = math.inf if pf <= 0 else abs(p_w) * math.tan(math.acos(pf))
    return -magnitude if absorbing else magnitude


def var_reference(ref: Any, max_w: float, max_var: float) -> float:
    """The quantity a reactive percentage refers to: ``max_w`` for setMaxW, else the var
    available (``max_var``: setMaxVar, statVarAvail, or no reference)."""
    return max_w if ref == "setMaxW" else max_var


def reactive_function(controls: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """The reactive-power function in effect and every one given (more than one is the EVSE's
    mistake, V2G-4.9.7-1: the first in :data:`REACTIVE_FUNCTIONS` order wins)."""
    order = ("opModFixedPFInjectW", "opModFixedPFAbsorbW") + REACTIVE_FUNCTIONS[1:]
    given = tuple(name for name in order if controls.get(name) is not None)
    return (given[0] if given else None), given


def reactive_power(controls: Mapping[str, Any], p_w: float, voltage_pct: float,
                   max_w: float, max_var: float) -> float:
    """Reactive power (var, positive injects) of the function in effect, within ±``max_var``:

    * constant power factor: opModFixedPFInjectW while discharging (or idle), opModFixedPFAbsorbW
      while charging (each used for both directions when the other is absent):
      :func:`pf_var`;
    * Volt-Var: y percent of the var available at ``voltage_pct``;
    * Watt-Var: y percent of the var available at P in percent of ``max_w``;
    * constant var: opModFixedVar percent of its reference (:func:`var_reference`);
    * none, or ``max_var`` 0 (a 2-quadrant inverter): 0.
    """
    if max_var <= 0:
        return 0.0
    chosen, _ = reactive_function(controls)
    q = 0.0
    if chosen is not None and chosen.startswith("opModFixedPF"):
        inject, absorb = (controls.get("opModFixedPFInjectW"),
                          controls.get("opModFixedPFAbsorbW"))
        setting: Any = (absorb or inject) if p_w < 0 else (inject or absorb)
        q = pf_var(p_w, float(setting["pf"]), bool(setting.get("absorbing")))
    elif chosen in ("opModVoltVar", "opModWattVar"):
        curve = controls[chosen]
        points = _points(curve)
        if points:
            x = voltage_pct if chosen == "opModVoltVar" else (
                100.0 * p_w / max_w if max_w > 0 else 0.0)
            q = (interpolate(points, x) / 100.0
                 * var_reference(curve.get("y_ref"), max_w, max_var))
    elif chosen == "opModFixedVar":
        value = controls[chosen]
        q = float(value["percent"]) / 100.0 * var_reference(value.get("ref"), max_w, max_var)
    return clip(q, -max_var, max_var)


# --------------------------------------------------------------------------------------------
# Trip and momentary cessation


def beyond(value: float, level: float, high: bool) -> bool:
    """Whether ``value`` is beyond a curve's ``level``: strictly above it for a high curve
    (HV, HF), strictly below it for a low one (LV, LF)."""
    return value > level if high else value < level


def must_trip_after(points: Iterable[Point], value: float, high: bool) -> float | None:
    """How long ``value`` may last before the curve trips (or ceases), s: the shortest x of the
    points whose level y it is beyond; None when it is beyond none (it may last for ever).
    Each point (x s, y) reads "beyond y for x seconds: trip", so the curve is a staircase."""
    times = [x for x, y in points if beyond(value, y, high)]
    return min(times) if times else None


class Excursions:
    """Since when the measured value has been beyond each point of one curve (pure: the time
    is given). ``observe`` whenever the value may have changed; between observations it is
    taken to be constant."""

    def __init__(self, high: bool) -> None:
        self.high = high
        self.since: dict[Point, float] = {}

    def observe(self, points: Iterable[Point], value: float | None, now: float) -> None:
        """The value is ``value`` from ``now`` on (None: no grid, nothing is beyond)."""
        since: dict[Point, float] = {}
        if value is not None:
            for point in points:
                if beyond(value, point[1], self.high):
                    since[point] = self.since.get(point, now)
        self.since = since

    def deadline(self) -> float | None:
        """When the curve trips (or ceases) if the value stays as it is; None: never."""
        times = [start + x for (x, _), start in self.since.items()]
        return min(times) if times else None


def enter_service_settings(given: Mapping[str, float] | None,
                           nominal_hz: float) -> dict[str, float]:
    """The Enter Service settings in effect: ``controls["enter_service"]`` (setESDelay s,
    setESRampTms s, setESHighVolt/setESLowVolt % of v_ref, setESHighFreq/setESLowFreq Hz), each
    missing one at its IEEE 1547 default (:data:`IEEE1547_ENTER_SERVICE`)."""
    d = IEEE1547_ENTER_SERVICE
    settings = {"setESDelay": d["setESDelay"], "setESRampTms": d["setESRampTms"],
                "setESHighVolt": d["setESHighVolt"], "setESLowVolt": d["setESLowVolt"],
                "setESHighFreq": nominal_hz + d["setESHighFreqOffset"],
                "setESLowFreq": nominal_hz + d["setESLowFreqOffset"]}
    for key, value in (given or {}).items():
        if key in settings and value is not None:
            settings[key] = float(value)
    return settings


def in_service_window(settings: Mapping[str, float], voltage_pct: float,
                      frequency_hz: float) -> bool:
    """Whether the grid is inside the Enter Service window (limits included)."""
    return (settings["setESLowVolt"] <= voltage_pct <= settings["setESHighVolt"]
            and settings["setESLowFreq"] <= frequency_hz <= settings["setESHighFreq"])
