"""Tests for the grid-support functions of the simulated PEV inverter: the pure functions of
``plugins/sim_grid_support.py`` with numbers worked by hand, and the inverter
(``plugins/sim_inverter.py``) applying them on a :class:`~twisted.internet.task.Clock`, alone
(grid set with ``set_grid``) and on the simulated electrical link's fake UDP net (grid frames
from the EVSE side, power frames measured by the EVSE's meter).

Requirements: profile Table 5 (the management functions), V2G-4.8.2-2 (opModFixedW sign),
V2G-4.9.1-2 (an absent function is disabled), V2G-4.9.2-1 (momentary cessation), V2G-4.9.3-1
(frequency droop ON by default with IEEE 1547 values), V2G-4.9.7-1 (one reactive function).
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from sepgw.interfaces import BuildContext
from tests.test_sim_link import EVSE, PEV, FakeUDPNet, MeterRecorder, grid, plugins


def gs() -> ModuleType:
    """``sim_grid_support`` as the bundled plugins import it."""
    plugins()
    return importlib.import_module("sepgw.dropins.sim_grid_support")


def build(testcase: SynchronousTestCase, kind: str, options: dict[str, Any],
          reactor: Any) -> Any:
    """Build the bundled simulated ``kind`` from ``options`` (validated first)."""
    factory = plugins()[0].find(kind, "simulated").factory
    config, problems = factory.options.validate(options)
    testcase.assertEqual(problems, [])
    return factory.build(config, BuildContext(reactor=reactor, name=f"test.{kind}"))


VOLT_VAR = {"points": [(92.0, 30.0), (98.0, 0.0), (102.0, 0.0), (108.0, -30.0)],
            "y_ref": "setMaxVar", "type": "opModVoltVar"}
VOLT_WATT = {"points": [(106.0, 100.0), (110.0, 20.0)], "y_ref": "setMaxW",
             "type": "opModVoltWatt"}
HV_TRIP = {"points": [(0.16, 120.0), (2.0, 110.0)], "y_ref": None, "type": "opModHVRTMustTrip"}
DROOP_1547 = {"db_of_hz": 0.036, "db_uf_hz": 0.036, "k_of": 0.05, "k_uf": 0.05,
              "open_loop_s": 5.0}
DROOP_AT_60_5 = 7200.0 * (0.5 - 0.036) / (60.0 * 0.05)
"""1113.6 W: the droop's full change at 60.5 Hz for a 7200 W inverter, IEEE 1547 defaults."""


# --------------------------------------------------------------------------------------------
# Pure functions


class InterpolationTests(SynchronousTestCase):
    def test_linear_between_points_flat_outside(self) -> None:
        """A curve is linear between its points and flat beyond its end points: on the
        volt-var curve (92, 30) (98, 0) (102, 0) (108, -30), 95 % gives 15, 105 % gives -15,
        80 % gives 30 and 120 % gives -30; the points may come in any order."""
        f = gs().interpolate
        pts = VOLT_VAR["points"]
        self.assertEqual([f(pts, x) for x in (95.0, 100.0, 105.0, 80.0, 120.0, 92.0)],
                         [15.0, 0.0, -15.0, 30.0, -30.0, 30.0])
        self.assertEqual(f(list(reversed(pts)), 105.0), -15.0)
        self.assertEqual(f([(100.0, 7.0)], 50.0), 7.0)
        self.assertRaises(ValueError, f, [], 100.0)


class ActivePowerTests(SynchronousTestCase):
    def test_fixed_w_and_max_lim_w(self) -> None:
        """Active power: 0 unless opModEnergize is true; opModFixedW percent of max W,
        positive discharges and negative charges (V2G-4.8.2-2), within the rating;
        opModMaxLimW caps discharge only."""
        f = gs().fixed_active_power
        self.assertEqual(f({"opModFixedW": 50.0}, 7200.0), 0.0)
        self.assertEqual(f({"opModEnergize": False, "opModFixedW": 50.0}, 7200.0), 0.0)
        self.assertEqual([f({"opModEnergize": True, "opModFixedW": pct}, 7200.0)
                          for pct in (50.0, -25.0, 150.0, -150.0, None)],
                         [3600.0, -1800.0, 7200.0, -7200.0, 0.0])
        self.assertEqual(f({"opModEnergize": True, "opModFixedW": 100.0,
                            "opModMaxLimW": 25.0}, 7200.0), 1800.0)
        self.assertEqual(f({"opModEnergize": True, "opModFixedW": -50.0,
                            "opModMaxLimW": 25.0}, 7200.0), -3600.0)

    def test_volt_watt_limits_discharge(self) -> None:
        """Volt-Watt (106 %, 100) (110 %, 20): at 108 % of v_ref it allows 60 % of 7200 W =
        4320 W, so 100 % asked gives 4320 W; at 100 % it allows everything; charging at
        -50 % is below the limit and unchanged; without the curve nothing is curtailed
        (V2G-4.9.1-2); not energized is 0 W whatever the voltage."""
        m = gs()
        self.assertEqual(m.volt_watt_limit(VOLT_WATT, 108.0, 7200.0), 4320.0)
        self.assertIsNone(m.volt_watt_limit(None, 108.0, 7200.0))
        on = {"opModEnergize": True, "opModFixedW": 100.0, "opModVoltWatt": VOLT_WATT}
        self.assertEqual(m.active_power_target(on, 7200.0, 108.0), 4320.0)
        self.assertEqual(m.active_power_target(on, 7200.0, 100.0), 7200.0)
        self.assertEqual(m.active_power_target(dict(on, opModFixedW=-50.0), 7200.0, 108.0),
                         -3600.0)
        self.assertEqual(m.active_power_target({"opModEnergize": True, "opModFixedW": 100.0},
                                               7200.0, 112.0), 7200.0)
        self.assertEqual(m.active_power_target(dict(on, opModEnergize=False), 7200.0, 108.0),
                         0.0)


class DroopTests(SynchronousTestCase):
    def test_default_settings_are_ieee1547(self) -> None:
        """Without opModFreqDroop the droop in effect is IEEE 1547's: dead bands 0.036 Hz,
        k 0.05, open-loop response 5 s (V2G-4.9.3-1); a given value overrides them."""
        m = gs()
        self.assertEqual(m.droop_settings({}), DROOP_1547)
        self.assertEqual(m.droop_settings({"opModFreqDroop": dict(DROOP_1547, k_of=0.1)}),
                         dict(DROOP_1547, k_of=0.1))

    def test_droop_arithmetic(self) -> None:
        """Over-frequency reduces discharge by (Δf - db) / (f_nominal k) of max W: at 60.5 Hz,
        (0.5 - 0.036) / (60 x 0.05) = 0.15467 pu, 1113.6 W of 7200 W; under-frequency
        (59.5 Hz) increases it by as much; inside the dead band (60.03 Hz, 59.97 Hz) nothing;
        with db 0.1 Hz and k 0.1, 61 Hz gives -7200 x 0.9 / 6 = -1080 W; at 50 Hz nominal,
        50.5 Hz gives -7200 x 0.464 / 2.5 = -1336.32 W."""
        m = gs()
        s = m.droop_settings({})
        self.assertAlmostEqual(m.droop_w(s, 60.5, 60.0, 7200.0), -1113.6)
        self.assertAlmostEqual(m.droop_w(s, 59.5, 60.0, 7200.0), 1113.6)
        self.assertEqual(m.droop_w(s, 60.03, 60.0, 7200.0), 0.0)
        self.assertEqual(m.droop_w(s, 59.97, 60.0, 7200.0), 0.0)
        wide = dict(s, db_of_hz=0.1, k_of=0.1)
        self.assertAlmostEqual(m.droop_w(wide, 61.0, 60.0, 7200.0), -1080.0)
        self.assertAlmostEqual(m.droop_w(s, 50.5, 50.0, 7200.0), -1336.32)
        self.assertEqual(m.droop_w(dict(s, k_of=0.0), 61.0, 60.0, 7200.0), 0.0)

    def test_lag_and_ramp(self) -> None:
        """The open-loop response is a first-order lag reaching 90 % of a step after the
        response time (5 s: 90 of 100) and 99 % after twice it; 0 s responds at once. A ramp
        of 7200 W/s moves 0 to 1800 W in 0.25 s and stops at its target; rate 0 steps."""
        m = gs()
        self.assertAlmostEqual(m.lag(0.0, 100.0, 5.0, 5.0), 90.0)
        self.assertAlmostEqual(m.lag(0.0, 100.0, 10.0, 5.0), 99.0)
        self.assertAlmostEqual(m.lag(m.lag(0.0, 100.0, 2.0, 5.0), 100.0, 3.0, 5.0), 90.0)
        self.assertEqual(m.lag(0.0, 100.0, 0.0, 0.0), 100.0)
        self.assertEqual(m.ramp(0.0, 3600.0, 0.25, 7200.0), 1800.0)
        self.assertEqual(m.ramp(3000.0, 3600.0, 0.25, 7200.0), 3600.0)
        self.assertEqual(m.ramp(3600.0, -3600.0, 0.5, 7200.0), 0.0)
        self.assertEqual(m.ramp(0.0, 3600.0, 0.0, 0.0), 3600.0)


class ReactivePowerTests(SynchronousTestCase):
    def test_power_factor_to_var(self) -> None:
        """PF 0.9 at 3600 W: tan(acos 0.9) = 0.484322, 1743.56 var, negative when absorbing;
        PF 1 gives 0 var; the sign of P does not change Q's magnitude."""
        m = gs()
        self.assertAlmostEqual(m.pf_var(3600.0, 0.9, False), 1743.56, places=2)
        self.assertAlmostEqual(m.pf_var(3600.0, 0.9, True), -1743.56, places=2)
        self.assertAlmostEqual(m.pf_var(-3600.0, 0.9, True), -1743.56, places=2)
        self.assertEqual(m.pf_var(3600.0, 1.0, True), 0.0)

    def test_each_function(self) -> None:
        """With 3000 var available: constant PF 0.9 absorbing at 3600 W gives -1743.56 var;
        PF 0.5 (6235 var asked) is limited to -3000 var; while charging opModFixedPFAbsorbW
        is used; Volt-Var at 105 % gives -15 % = -450 var; Watt-Var (20, 0) (50, 0)
        (100, -44) at 5400 W (75 %) gives -22 % = -660 var; constant var 20 % of setMaxVar
        gives 600 var, 10 % of setMaxW 720 var."""
        m = gs()
        pf = {"opModFixedPFInjectW": {"pf": 0.9, "absorbing": True}}
        self.assertAlmostEqual(m.reactive_power(pf, 3600.0, 100.0, 7200.0, 3000.0),
                               -1743.56, places=2)
        self.assertEqual(m.reactive_power({"opModFixedPFInjectW": {"pf": 0.5,
                                                                   "absorbing": True}},
                                          3600.0, 100.0, 7200.0, 3000.0), -3000.0)
        both = dict(pf, opModFixedPFAbsorbW={"pf": 0.9, "absorbing": False})
        self.assertAlmostEqual(m.reactive_power(both, -3600.0, 100.0, 7200.0, 3000.0),
                               1743.56, places=2)
        self.assertAlmostEqual(m.reactive_power({"opModVoltVar": VOLT_VAR}, 0.0, 105.0,
                                                7200.0, 3000.0), -450.0)
        watt_var = {"points": [(20.0, 0.0), (50.0, 0.0), (100.0, -44.0)], "y_ref": None}
        self.assertAlmostEqual(m.reactive_power({"opModWattVar": watt_var}, 5400.0, 100.0,
                                                7200.0, 3000.0), -660.0)
        self.assertAlmostEqual(m.reactive_power(
            {"opModFixedVar": {"percent": 20.0, "ref": "setMaxVar"}}, 0.0, 100.0, 7200.0,
            3000.0), 600.0)
        self.assertAlmostEqual(m.reactive_power(
            {"opModFixedVar": {"percent": 10.0, "ref": "setMaxW"}}, 0.0, 100.0, 7200.0,
            3000.0), 720.0)

    def test_none_and_two_quadrant(self) -> None:
        """No reactive function: 0 var (V2G-4.9.1-2); a 2-quadrant inverter (max_var 0)
        always 0 var; two functions given (the EVSE's mistake, V2G-4.9.7-1): one is used, the
        first of constant PF, Volt-Var, Watt-Var, constant var."""
        m = gs()
        self.assertEqual(m.reactive_power({}, 3600.0, 105.0, 7200.0, 3000.0), 0.0)
        self.assertEqual(m.reactive_power({"opModVoltVar": VOLT_VAR}, 0.0, 105.0, 7200.0,
                                          0.0), 0.0)
        two = {"opModFixedVar": {"percent": 20.0, "ref": None}, "opModVoltVar": VOLT_VAR}
        self.assertEqual(m.reactive_function(two), ("opModVoltVar",
                                                    ("opModVoltVar", "opModFixedVar")))
        self.assertAlmostEqual(m.reactive_power(two, 0.0, 105.0, 7200.0, 3000.0), -450.0)


class TripCurveTests(SynchronousTestCase):
    def test_time_allowed_at_a_level(self) -> None:
        """A point (x s, y) reads "beyond y for x s: trip". HV (0.16 s, 120 %) (2 s, 110 %):
        125 % may last 0.16 s, 115 % 2 s, 110 % (not beyond) and 105 % for ever. LV (0.16 s,
        45 %) (10 s, 70 %): 60 % may last 10 s, 40 % 0.16 s. HF (0.16 s, 62 Hz) (300 s,
        61.2 Hz): 61.5 Hz may last 300 s."""
        f = gs().must_trip_after
        hv = HV_TRIP["points"]
        self.assertEqual([f(hv, v, True) for v in (125.0, 115.0, 110.0, 105.0)],
                         [0.16, 2.0, None, None])
        lv = [(0.16, 45.0), (10.0, 70.0)]
        self.assertEqual([f(lv, v, False) for v in (60.0, 40.0, 70.0)], [10.0, 0.16, None])
        self.assertEqual(f([(0.16, 62.0), (300.0, 61.2)], 61.5, True), 300.0)

    def test_excursion_timing(self) -> None:
        """The trip deadline counts from when the value went beyond each level: 125 % from
        t = 10 trips at 10.16; falling to 115 % at 10.1 keeps the 110 % excursion that began
        at 10, so the deadline is 12; back to 105 % there is none; no grid clears it too."""
        e = gs().Excursions(high=True)
        e.observe(HV_TRIP["points"], 125.0, 10.0)
        self.assertAlmostEqual(e.deadline(), 10.16)
        e.observe(HV_TRIP["points"], 115.0, 10.1)
        self.assertEqual(e.deadline(), 12.0)
        e.observe(HV_TRIP["points"], 105.0, 11.0)
        self.assertIsNone(e.deadline())
        e.observe(HV_TRIP["points"], 115.0, 11.5)
        self.assertEqual(e.deadline(), 13.5)
        e.observe(HV_TRIP["points"], None, 12.0)
        self.assertIsNone(e.deadline())

    def test_enter_service_settings(self) -> None:
        """Enter Service defaults are IEEE 1547's (300 s delay, 300 s ramp, 91.7-105 % of
        v_ref, 59.5-60.1 Hz at 60 Hz nominal; 49.5-50.1 Hz at 50 Hz); given values win; the
        window includes its limits."""
        m = gs()
        self.assertEqual(m.enter_service_settings(None, 60.0), {
            "setESDelay": 300.0, "setESRampTms": 300.0, "setESHighVolt": 105.0,
            "setESLowVolt": 91.7, "setESHighFreq": 60.1, "setESLowFreq": 59.5})
        es = m.enter_service_settings({"setESDelay": 20.0, "setESLowFreq": 59.9}, 50.0)
        self.assertEqual((es["setESDelay"], es["setESLowFreq"], es["setESHighFreq"]),
                         (20.0, 59.9, 50.1))
        d = m.enter_service_settings({}, 60.0)
        self.assertTrue(m.in_service_window(d, 105.0, 59.5))
        self.assertFalse(m.in_service_window(d, 105.1, 60.0))
        self.assertFalse(m.in_service_window(d, 100.0, 60.2))


# --------------------------------------------------------------------------------------------
# The inverter, alone on a clock (grid set with set_grid)


class InverterAloneTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.inverter = build(self, "inverter", {"max_w": 7200.0, "max_var": 3000.0},
                              self.clock)

    def at(self, t: float) -> Any:
        self.clock.advance(t - self.clock.seconds())
        return self.inverter.reading()

    def test_default_droop_when_absent(self) -> None:
        """Without opModFreqDroop the inverter still droops with IEEE 1547 defaults
        (V2G-4.9.3-1): at 60.5 Hz, 50 % discharge (3600 W) falls towards 3600 - 1113.6 W,
        90 % of the way after the 5 s open-loop response time, all of it later; at 59.5 Hz
        an energized inverter with no opModFixedW discharges 1113.6 W."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50.0})
        self.inverter.set_grid(frequency=60.5)
        self.assertEqual(self.inverter.reading().active_power_w, 3600.0)
        self.assertAlmostEqual(self.at(5.0).active_power_w, 3600.0 - 0.9 * DROOP_AT_60_5,
                               places=3)
        self.assertAlmostEqual(self.at(60.0).active_power_w, 3600.0 - DROOP_AT_60_5,
                               places=3)
        self.inverter.apply({"opModEnergize": True})
        self.inverter.set_grid(frequency=59.5)
        self.assertAlmostEqual(self.at(200.0).active_power_w, DROOP_AT_60_5, places=3)

    def test_battery_integrates_droop_lag(self) -> None:
        """The battery integrates the actual (lagging) power: with droop pulling 1113.6 W
        towards charging from an idle 0 W setpoint at 60.5 Hz, after 100 s the energy taken
        in is 1113.6 x (100 - 5/ln 10 x (1 - 10^-20)) J, within 0.01 Wh."""
        self.inverter.apply({"opModEnergize": True})
        self.inverter.set_grid(frequency=60.5)
        before = 0.8 * 60000.0
        soc = self.at(100.0).state_of_charge_pct
        tau = 5.0 / math.log(10.0)
        expected_wh = DROOP_AT_60_5 * (100.0 - tau * (1 - math.exp(-100.0 / tau))) / 3600.0
        self.assertLess(abs(soc / 100.0 * 60000.0 - before - expected_wh), 0.01)

    def test_constant_pf_reported(self) -> None:
        """Constant power factor 0.9 absorbing at 3600 W: the reading carries -1743.56 var
        with the active power; de-energized, 0 W and 0 var."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50.0,
                             "opModFixedPFInjectW": {"pf": 0.9, "absorbing": True}})
        reading = self.inverter.reading()
        self.assertEqual(reading.active_power_w, 3600.0)
        self.assertAlmostEqual(reading.reactive_power_var, -1743.56, places=2)
        self.inverter.apply({"opModEnergize": False,
                             "opModFixedPFInjectW": {"pf": 0.9, "absorbing": True}})
        reading = self.inverter.reading()
        self.assertEqual((reading.active_power_w, reading.reactive_power_var), (0.0, 0.0))

    def test_two_quadrant_default(self) -> None:
        """With max_var at its default 0 (a 2-quadrant inverter) Volt-Var at 105 % gives
        0 var."""
        inverter = build(self, "inverter", {"max_w": 7200.0}, self.clock)
        inverter.apply({"opModEnergize": True, "opModVoltVar": VOLT_VAR})
        inverter.set_grid(voltage=252.0)
        self.assertEqual(inverter.reading().reactive_power_var, 0.0)

    def test_ramp(self) -> None:
        """With ramp_w_per_s 7200, 50 % asked goes 0, 1800, 3600 W over 0.5 s and the battery
        integrates the ramp (10 s: 36000 - 900 J = 9.75 Wh); de-energizing is immediate."""
        inverter = build(self, "inverter", {"max_w": 7200.0, "ramp_w_per_s": 7200.0},
                         self.clock)
        inverter.apply({"opModEnergize": True, "opModFixedW": 50.0})
        self.assertEqual(inverter.reading().active_power_w, 0.0)
        self.clock.advance(0.25)
        self.assertAlmostEqual(inverter.reading().active_power_w, 1800.0)
        self.clock.advance(9.75)
        reading = inverter.reading()
        self.assertEqual(reading.active_power_w, 3600.0)
        self.assertAlmostEqual(48000.0 - reading.state_of_charge_pct * 600.0, 9.75)
        inverter.apply({"opModEnergize": False, "opModFixedW": 50.0})
        self.assertEqual(inverter.reading().active_power_w, 0.0)

    def test_trip_then_enter_service_delay_and_ramp(self) -> None:
        """HV trip (2 s beyond 110 %) at 115 %: output until 2 s, then 0 (tripped, with the
        over-voltage alarm bit set until it enters service again; V2G-4.7.2-18). Back at
        100 % at t = 10 it stays off for the Enter Service delay (30 s given): off at 39.9 s;
        the grid leaving the window (106 %) restarts the delay; after it the Enter Service
        ramp (setESRampTms 60 s: 120 W/s) brings 3600 W back in 30 s."""
        es = {"setESDelay": 30.0, "setESRampTms": 60.0}
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50.0,
                             "opModHVRTMustTrip": HV_TRIP, "enter_service": es})
        self.inverter.set_grid(voltage=276.0)  # 115 %
        self.assertEqual(self.at(1.99).active_power_w, 3600.0)
        self.assertEqual(self.at(2.0).active_power_w, 0.0)
        self.assertTrue(self.inverter.tripped)
        self.assertEqual(self.at(2.0).alarms, 2)  # DERAlarm over-voltage while tripped
        self.at(10.0)
        self.inverter.set_grid(voltage=240.0)
        self.assertEqual(self.at(39.9).active_power_w, 0.0)
        self.inverter.set_grid(voltage=254.4)  # 106 %: outside the window, inside the curve
        self.at(45.0)
        self.inverter.set_grid(voltage=240.0)
        self.assertEqual(self.at(74.9).active_power_w, 0.0)
        self.assertEqual(self.at(75.0).active_power_w, 0.0)
        self.assertFalse(self.inverter.tripped)
        self.assertEqual(self.at(75.0).alarms, 0)  # cleared on entering service again
        self.assertAlmostEqual(self.at(90.0).active_power_w, 1800.0)
        self.assertEqual(self.at(105.0).active_power_w, 3600.0)

    def test_enter_service_defaults(self) -> None:
        """Without enter_service in the controls the IEEE 1547 defaults apply after a trip:
        back to normal at 0.16 s, off until 300.16 s, then the 300 s ramp (24 W/s); a
        setESRampTms of 0 returns to the setpoint at once after the delay."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50.0,
                             "opModHVRTMustTrip": HV_TRIP})
        self.inverter.set_grid(voltage=300.0)  # 125 %: 0.16 s
        self.assertEqual(self.at(0.16).active_power_w, 0.0)
        self.inverter.set_grid(voltage=240.0)
        self.assertEqual(self.at(300.1).active_power_w, 0.0)
        self.assertTrue(self.inverter.tripped)
        self.assertAlmostEqual(self.at(300.2).active_power_w, 0.04 * 7200.0 / 300.0, places=3)
        self.assertFalse(self.inverter.tripped)
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50.0,
                             "opModHVRTMustTrip": HV_TRIP, "enter_service": {
                                 "setESDelay": 1.0, "setESRampTms": 0.0}})
        self.inverter.set_grid(voltage=300.0)
        self.at(301.0)
        self.assertTrue(self.inverter.tripped)
        self.inverter.set_grid(voltage=240.0)
        self.assertEqual(self.at(302.0).active_power_w, 3600.0)

    def test_momentary_cessation_after_curve_time(self) -> None:
        """HV momentary cessation (0.5 s, 110 %) (V2G-4.9.2-1): at 112 % the output continues
        0.5 s, then is 0 while beyond, and comes back at once (no Enter Service delay) when
        the voltage is back; the inverter never tripped."""
        curve = {"points": [(0.5, 110.0)], "y_ref": None, "type": "opModHVRTMomentaryCessation"}
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50.0,
                             "opModHVRTMomentaryCessation": curve})
        self.inverter.set_grid(voltage=268.8)  # 112 %
        self.assertEqual(self.at(0.49).active_power_w, 3600.0)
        self.assertEqual(self.at(0.5).active_power_w, 0.0)
        self.assertTrue(self.inverter.ceased)
        self.assertEqual(self.at(3.0).active_power_w, 0.0)
        self.inverter.set_grid(voltage=240.0)
        self.assertEqual(self.inverter.reading().active_power_w, 3600.0)
        self.assertFalse(self.inverter.tripped or self.inverter.ceased)

    def test_rogue_ignores_trips(self) -> None:
        """A rogue inverter ignores the functions: beyond its HV trip curve it keeps
        discharging (only the EVSE's contactor can stop it)."""
        rogue = build(self, "inverter", {"max_w": 7200.0, "rogue_w": 5000.0}, self.clock)
        rogue.apply({"opModHVRTMustTrip": HV_TRIP})
        rogue.set_grid(voltage=300.0)
        self.clock.advance(5.0)
        self.assertEqual(rogue.reading().active_power_w, 5000.0)

    def test_options(self) -> None:
        """The new options have their defaults (0 var, 240 V, 60 Hz, no ramp) and refuse
        negative values."""
        factory = plugins()[0].find("inverter", "simulated").factory
        config, problems = factory.options.validate({})
        self.assertEqual((config["max_var"], config["v_ref"], config["nominal_hz"],
                          config["ramp_w_per_s"], problems), (0.0, 240.0, 60.0, 0.0, []))
        _, problems = factory.options.validate({"max_var": -1.0, "ramp_w_per_s": -5.0})
        self.assertEqual(len(problems), 2)


# --------------------------------------------------------------------------------------------
# The inverter on the simulated link


class LinkedInverterTests(SynchronousTestCase):
    """The PEV end of the link: grid frames come from the EVSE side's address."""

    def setUp(self) -> None:
        self.net = FakeUDPNet()
        self.inverter = build(self, "inverter", {
            "link": "127.0.0.1:47101", "bind": "127.0.0.1:47102", "max_w": 7200.0,
            "max_var": 3000.0, "period": 0.1, "grid_timeout_s": 0.3}, self.net)
        self.inverter.start()
        self.link = self.inverter.link
        self.socket = self.net.port_at(PEV)
        self.seq = 0

    def grid_for(self, seconds: float, v: float = 240.0, hz: float = 60.0) -> None:
        """The EVSE side sends GRID frames every 0.1 s for ``seconds``."""
        for _ in range(round(seconds / 0.1)):
            self.seq += 1
            self.link.datagramReceived(grid(self.seq, v, hz), EVSE)
            self.net.advance(0.1)

    def sent(self) -> tuple[float, float]:
        frame, _ = self.socket.frames()[-1]
        return frame.active_power_w, frame.reactive_power_var

    def test_energize_fixed_and_max_lim(self) -> None:
        """On grid frames, energize, opModFixedW (V2G-4.8.2-2) and opModMaxLimW work as
        before: 0 W unenergized, 3600 W at 50 %, 1800 W capped at 25 %, -3600 W charging;
        the POWER frames carry it."""
        self.grid_for(0.2)
        self.assertEqual(self.sent(), (0.0, 0.0))
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50.0})
        self.grid_for(0.2)
        self.assertEqual(self.sent(), (3600.0, 0.0))
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 100.0,
                             "opModMaxLimW": 25.0})
        self.grid_for(0.2)
        self.assertEqual(self.sent(), (1800.0, 0.0))
        self.inverter.apply({"opModEnergize": True, "opModFixedW": -50.0,
                             "opModMaxLimW": 25.0})
        self.grid_for(0.2)
        self.assertEqual(self.sent(), (-3600.0, 0.0))

    def test_droop_responds_to_60_5_hz(self) -> None:
        """Grid frames at 60.5 Hz with opModFreqDroop at IEEE 1547 values: from 3600 W the
        output falls by 90 % of 1113.6 W within the 5 s open-loop response time, then to
        2486.4 W; the POWER frames carry it. V2G-4.9.3-1"""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50.0,
                             "opModFreqDroop": DROOP_1547})
        self.grid_for(0.5)
        self.assertEqual(self.inverter.reading().active_power_w, 3600.0)
        self.grid_for(5.0, hz=60.5)
        self.assertAlmostEqual(self.inverter.reading().active_power_w,
                               3600.0 - 0.9 * DROOP_AT_60_5, places=1)
        self.grid_for(60.0, hz=60.5)
        self.assertAlmostEqual(self.sent()[0], 3600.0 - DROOP_AT_60_5, places=3)

    def test_hv_trip_after_curve_time(self) -> None:
        """HV must-trip (0.16 s, 120 %) (2 s, 110 %): at 115 % (276 V) the inverter keeps
        discharging for 2 s, then trips to 0 W and stays off on normal grid (Enter Service
        delay, 300 s by default)."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50.0,
                             "opModHVRTMustTrip": HV_TRIP})
        self.grid_for(0.5)
        self.grid_for(1.9, v=276.0)
        self.assertEqual(self.inverter.reading().active_power_w, 3600.0)
        self.grid_for(0.2, v=276.0)
        self.assertTrue(self.inverter.tripped)
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)
        self.grid_for(10.0)
        self.assertEqual(self.sent(), (0.0, 0.0))

    def test_momentary_cessation_and_return(self) -> None:
        """LV momentary cessation (0 s, 50 %) (V2G-4.9.2-1): a grid frame at 45 % (108 V)
        stops the output at once; the next at 100 % brings it back at once."""
        curve = {"points": [(0.0, 50.0)], "y_ref": None, "type": "opModLVRTMomentaryCessation"}
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50.0,
                             "opModLVRTMomentaryCessation": curve})
        self.grid_for(0.3)
        self.assertEqual(self.sent()[0], 3600.0)
        self.grid_for(0.1, v=108.0)
        self.assertEqual(self.inverter.reading().active_power_w, 0.0)
        self.assertEqual(self.sent()[0], 0.0)
        self.grid_for(0.1)
        self.assertEqual(self.inverter.reading().active_power_w, 3600.0)
        self.assertFalse(self.inverter.tripped)


class WireTests(SynchronousTestCase):
    """The EVSE's contactor and meter and the PEV's inverter on one fake net: the grid the
    meter sets reaches the inverter as GRID frames, and the meter measures its POWER frames."""

    def setUp(self) -> None:
        self.net = FakeUDPNet()
        self.contactor = build(self, "contactor", {"link": "127.0.0.1:47101"}, self.net)
        self.meter = build(self, "meter", {"link": "127.0.0.1:47101"}, self.net)
        self.recorder = MeterRecorder()
        self.meter.add_listener(self.recorder)
        self.inverter = build(self, "inverter", {"link": "127.0.0.1:47101",
                                                 "bind": "127.0.0.1:47102",
                                                 "max_var": 3000.0}, self.net)
        for component in (self.contactor, self.meter, self.inverter):
            component.start()
        self.contactor.set_allowed(True)
        self.contactor.close()
        self.net.pump([0.05] + [0.1] * 3)

    def measured(self) -> tuple[float, float]:
        sample = self.recorder.samples[-1]
        return sample.active_power_w, sample.reactive_power_var

    def test_volt_watt_curtails_at_high_voltage(self) -> None:
        """Volt-Watt (106 %, 100) (110 %, 20) with 100 % asked: at 240 V the meter measures
        7200 W; the EVSE's grid set to 108 % (259.2 V) curtails it to 60 %, 4320 W."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 100.0,
                             "opModVoltWatt": VOLT_WATT})
        self.net.pump([0.1] * 3)
        self.assertEqual(self.measured()[0], 7200.0)
        self.meter.set_grid(voltage=259.2)
        self.net.pump([0.1] * 3)
        self.assertAlmostEqual(self.measured()[0], 4320.0)

    def test_volt_var_at_1_05_pu(self) -> None:
        """Volt-Var (92, 30) (98, 0) (102, 0) (108, -30) with 3000 var available: at 1.05 pu
        (252 V) the PEV absorbs 15 %, -450 var, carried in its POWER frames and measured by
        the EVSE's meter; back at 1.0 pu, 0 var."""
        self.inverter.apply({"opModEnergize": True, "opModFixedW": 50.0,
                             "opModVoltVar": VOLT_VAR})
        self.meter.set_grid(voltage=252.0)
        self.net.pump([0.1] * 3)
        power, var = self.measured()
        self.assertEqual(power, 3600.0)
        self.assertAlmostEqual(var, -450.0)
        self.meter.set_grid(voltage=240.0)
        self.net.pump([0.1] * 3)
        self.assertEqual(self.measured(), (3600.0, 0.0))
