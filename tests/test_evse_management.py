"""Tests for the EVSE's site limits (:mod:`sepgw.evse.site`) and management information
(:mod:`sepgw.evse.management`): profile 4.6.1, 4.6.3, 4.7.1 (Table 5) and 4.9."""

from __future__ import annotations

import copy
import itertools
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

from twisted.trial import unittest

from sepgw.config import ConfigError, load
from sepgw.evse.management import (
    DURATION_FOREVER, FUNCTIONS, ManagementError, ManagementInformation, check_management,
    random_mrid,
)
from sepgw.evse.site import INT16, INT32, UINT16, fixed, power_of_ten, site_der_settings
from sepgw.model import (
    DateTimeInterval, DERControl, DERControlBase, DERControlList,
    DERCurve, DERCurveList, DERCurveType, DERSettings, DERUnitRefType, EventStatusCode, Link,
    Model, ResponseRequired, SubscribableType, parse, serialize,
)
from sepgw.model.paging import ListQuery, fill_list
from tests.helpers import ETC, evse_config
from tests.test_model_helpers import schema_errors

NOW = 1_780_272_000  # 2026-06-01 00:00:00 UTC
SDEV_DERS = "/sdev/der/1/ders"
RSP = "/rsps/1/rsp"

def assert_schema_valid(case: unittest.TestCase, obj: Model) -> bytes:
    """Serialize ``obj``, validate it against the official 2030.5-2018 schema (the model
    tests' helper) and check that it parses back equal; return the document."""
    body = serialize(obj)
    errors = schema_errors(body)
    if errors:
        case.fail(f"not schema-valid: {errors}\n{body.decode()}")
    case.assertEqual(parse(body, type(obj)), obj)
    return body


T = TypeVar("T")


def some(value: T | None) -> T:
    """``value``, which must not be None (narrows optional model fields)."""
    assert value is not None
    return value


def counter_mrids() -> Callable[[], bytes]:
    """A deterministic mRID source: 1, 2, 3… as 16-byte big-endian numbers."""
    numbers = itertools.count(1)
    return lambda: next(numbers).to_bytes(16, "big")


def etc_config() -> dict[str, Any]:
    """The validated data of the shipped ``etc/sepgw.toml``."""
    return load(ETC / "sepgw.toml", "evse").data


def opmods(base: DERControlBase) -> dict[str, Any]:
    """The opMod… elements that are present in ``base``."""
    return {name: getattr(base, name) for name in DERControlBase.__dataclass_fields__
            if name.startswith("opMod") and getattr(base, name) is not None}


# One configuration per Table 5 DERControl function, each with its own values; the config
# loader's shape ([management.<key>], curves as lists of (x, y) float tuples).
FUNCTION_CONFIGS: dict[str, dict[str, Any]] = {
    "constant_pf": {"pf": 0.95, "excitation": "absorb"},
    "volt_var": {"points": [(92.0, 44.0), (98.0, 0.0), (102.0, 0.0), (108.0, -44.0)]},
    "watt_var": {"points": [(20.0, 0.0), (50.0, 0.0), (100.0, -44.0)]},
    "constant_var": {"var_pct": -25.5},
    "volt_watt": {"points": [(106.0, 100.0), (110.0, 20.0)]},
    "high_freq_trip": {"points": [(0.16, 62.0), (300.0, 61.2)]},
    "low_freq_trip": {"points": [(0.16, 56.5), (300.0, 58.5)]},
    "limit_active_power": {"max_w_pct": 80.0},
    "freq_droop": {"db_of_hz": 0.036, "db_uf_hz": 0.036, "k_of": 0.05, "k_uf": 0.05,
                   "open_loop_s": 5.0},
    "high_volt_cessation": {"points": [(0.0, 110.0), (13.0, 110.0)]},
    "high_volt_trip": {"points": [(0.16, 120.0), (13.0, 110.0)]},
    "low_volt_cessation": {"points": [(0.0, 50.0), (1.5, 50.0)]},
    "low_volt_trip": {"points": [(2.0, 50.0), (21.0, 88.0)]},
}

#: Table 5 of the profile: the DERControl functions' opMods, in the 2030.5-2018 spelling.
TABLE_5_DERCONTROL = {
    "opModFixedPFInjectW", "opModVoltVar", "opModWattVar", "opModFixedVar", "opModVoltWatt",
    "opModHFRTMustTrip", "opModLFRTMustTrip", "opModMaxLimW", "opModFreqDroop",
    "opModHVRTMomentaryCessation", "opModHVRTMustTrip", "opModLVRTMomentaryCessation",
    "opModLVRTMustTrip",
}
TABLE_5_DEFAULT = {"setESDelay", "setESHighFreq", "setESHighVolt", "setESLowFreq",
                   "setESLowVolt", "setESRampTms", "setESRandomDelay"}


def only(key: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``[management]`` section with only ``key`` enabled (frequency droop is not
    optional in the configuration, so it stays unless ``key`` replaces it)."""
    m = copy.deepcopy(base or etc_config()["management"])
    for f in FUNCTIONS:
        m[f.key] = None
    m["freq_droop"] = copy.deepcopy(FUNCTION_CONFIGS["freq_droop"])
    m[key] = copy.deepcopy(FUNCTION_CONFIGS[key])
    return m


def all_functions(reactive: str = "volt_var") -> dict[str, Any]:
    """Every Table 5 function enabled, with the one reactive-power function ``reactive``."""
    m = copy.deepcopy(etc_config()["management"])
    for f in FUNCTIONS:
        m[f.key] = (copy.deepcopy(FUNCTION_CONFIGS[f.key])
                    if not f.reactive or f.key == reactive else None)
    return m


class Builder:
    """Makes ManagementInformation objects with deterministic hrefs and mRIDs."""

    def __init__(self) -> None:
        self.mrid = counter_mrids()

    def __call__(self, management: dict[str, Any], site: dict[str, Any] | None = None,
                 now: float = NOW) -> ManagementInformation:
        return ManagementInformation(
            management, site if site is not None else etc_config()["site"], now=now,
            control_href=lambda i: f"/edev/1/derp/1/derc/{i}",
            curve_href=lambda i: f"/edev/1/derp/1/dc/{i}", reply_to=RSP, mrid=self.mrid)


# ---------------------------------------------------------------------------------------------


class NumberHelperTests(unittest.TestCase):
    """The one multiplier helper and the fixed-resolution helper."""

    def test_power_of_ten_exact(self) -> None:
        """Values get the largest multiplier ≤ the preferred one that keeps them exact."""
        self.assertEqual(power_of_ten([7200.0]), (0, [7200]))
        self.assertEqual(power_of_ten([91.7]), (-1, [917]))
        self.assertEqual(power_of_ten([0.16, 13.0], INT32), (-2, [16, 1300]))
        self.assertEqual(power_of_ten([61.2, 62.0], INT32, prefer=-2), (-2, [6120, 6200]))
        self.assertEqual(power_of_ten([0.125], INT32, prefer=-2), (-3, [125]))
        self.assertEqual(power_of_ten([0.0]), (0, [0]))
        self.assertEqual(power_of_ten([-3600.0]), (0, [-3600]))

    def test_power_of_ten_range(self) -> None:
        """Values that do not fit the schema type get a larger multiplier (rounded)."""
        self.assertEqual(power_of_ten([72000.0], INT16), (1, [7200]))
        self.assertEqual(power_of_ten([70000.0], UINT16), (1, [7000]))
        self.assertEqual(power_of_ten([400000.0], INT16), (2, [4000]))
        self.assertEqual(power_of_ten([123456.0], INT16), (1, [12346]))
        self.assertEqual(power_of_ten([723456.0], INT16), (2, [7235]))

    def test_float_noise(self) -> None:
        """Binary float noise beyond 12 significant digits does not cost precision."""
        self.assertEqual(power_of_ten([0.1 + 0.2], INT16), (-1, [3]))
        self.assertEqual(power_of_ten([106.0 + 1e-12], INT32, prefer=-2), (-2, [10600]))
        self.assertEqual(fixed(0.1 + 0.2, 2, UINT16), 30)

    def test_power_of_ten_rejects(self) -> None:
        """No values, non-numbers and non-finite numbers are refused."""
        self.assertRaises(ValueError, power_of_ten, [])
        self.assertRaises(ValueError, power_of_ten, [float("nan")])
        self.assertRaises(TypeError, power_of_ten, [True])

    def test_fixed(self) -> None:
        """Fixed resolutions are exact for decimal input and range-checked."""
        self.assertEqual(fixed(60.1, 2, UINT16), 6010)
        self.assertEqual(fixed(91.7, 2, INT16), 9170)
        self.assertEqual(fixed(0.036, 3, UINT16), 36)
        self.assertEqual(fixed(300, 2, UINT16), 30000)
        with self.assertRaises(ValueError) as e:
            fixed(700.0, 2, UINT16, "high_freq_hz")
        self.assertIn("high_freq_hz", str(e.exception))


class SiteSettingsTests(unittest.TestCase):
    """The SelfDevice DERSettings (site limits, profile 4.6.1)."""

    def settings(self, **changes: Any) -> DERSettings:
        site = dict(etc_config()["site"], **changes)
        return site_der_settings(site, SDEV_DERS, updated_time=NOW + 0.9)

    def test_schema_valid(self) -> None:
        """V2G-4.6.1-1: the site limits document from etc/sepgw.toml is schema-valid and
        carries every Table C2 limit the profile's example shows (5.3), including the
        schema-required setGradW."""
        s = self.settings()
        assert_schema_valid(self, s)
        self.assertEqual(s.href, SDEV_DERS)
        self.assertEqual(s.updatedTime, NOW)
        self.assertEqual(s.setGradW, 0)
        for name in ("setMaxChargeRateW", "setMaxDischargeRateW", "setMaxV", "setMaxVar",
                     "setMaxVarNeg", "setMaxW", "setMinV", "setVRef", "setVRefOfs"):
            self.assertIsNotNone(getattr(s, name), name)

    def test_values(self) -> None:
        """Every limit is the configured value (multiplier 0 where the value fits)."""
        s = self.settings()
        quantities: dict[str, Any] = {
            "W": s.setMaxW, "var": s.setMaxVar, "varneg": s.setMaxVarNeg, "maxv": s.setMaxV,
            "minv": s.setMinV, "vref": s.setVRef, "chg": s.setMaxChargeRateW,
            "dis": s.setMaxDischargeRateW, "ofs": s.setVRefOfs}
        got = {name: (q.multiplier, q.value) for name, q in quantities.items()}
        self.assertEqual(got, {"W": (0, 7200), "var": (0, 3600), "varneg": (0, 3600),
                               "maxv": (0, 264), "minv": (0, 211), "vref": (0, 240),
                               "chg": (0, 7200), "dis": (0, 7200), "ofs": (0, 0)})

    def test_max_w_is_site_limit(self) -> None:
        """V2G-4.6.1.1-1, V2G-4.9.6-1: the active-power limit is setMaxW (not setMaxVA),
        equal to the site's max_w, also when it needs a multiplier."""
        s = self.settings(max_w=48000.0)
        assert_schema_valid(self, s)
        self.assertEqual(s.setMaxW.value * 10 ** s.setMaxW.multiplier, 48000)
        self.assertIsNone(s.setMaxVA)

    def test_vref_not_vnom(self) -> None:
        """V2G-4.9.5-1, V2G-4.9.5-2: the nominal voltage is setVRef; setVNom is never
        included."""
        s = self.settings(v_ref=230.5, min_v=200.0, max_v=253.0)
        vref = some(s.setVRef)
        self.assertEqual((vref.multiplier, vref.value), (-1, 2305))
        self.assertIsNone(s.setVNom)
        self.assertNotIn(b"setVNom", assert_schema_valid(self, s))

    def test_grad_w(self) -> None:
        """setGradW is 0 (no limit) unless the caller passes a ramp rate."""
        s = site_der_settings(etc_config()["site"], None, grad_w=1000)
        self.assertEqual(s.setGradW, 1000)
        assert_schema_valid(self, s)


class DERControlTests(unittest.TestCase):
    """One DERControl per Table 5 function (profile 4.6.3, 4.7.1)."""

    def setUp(self) -> None:
        self.build = Builder()

    def control_of(self, key: str) -> tuple[DERControl, ManagementInformation]:
        m = self.build(only(key))
        opmod = next(f.opmod for f in FUNCTIONS if f.key == key)
        (control,) = [c for c in m.controls if opmods(c.DERControlBase).keys() == {opmod}]
        return control, m

    def test_table_5_coverage(self) -> None:
        """V2G-4.7.1-4, V2G-4.6.3-3: the builder knows exactly Table 5's DERControl
        functions (in the schema's spelling: test_every_function validates each one's
        DERControl against the official schema)."""
        self.assertEqual({f.opmod for f in FUNCTIONS}, TABLE_5_DERCONTROL)
        self.assertEqual(len(FUNCTIONS), len(TABLE_5_DERCONTROL))

    def test_every_function(self) -> None:
        """V2G-4.6.3-4, V2G-4.6.3-5, V2G-4.6.3-6, V2G-4.6.3-7, V2G-4.6.3-8: each function's
        DERControl holds exactly one opMod, starts now, lasts 4294967295 s, has
        responseRequired bits 0 and 1 set, replyTo the session's ResponseList, and is
        active; every document is schema-valid."""
        for f in FUNCTIONS:
            control, _ = self.control_of(f.key)
            self.assertEqual(list(opmods(control.DERControlBase)), [f.opmod], f.key)
            self.assertEqual(control.interval, DateTimeInterval(duration=0xFFFFFFFF,
                                                                start=NOW))
            self.assertEqual(control.responseRequired, ResponseRequired(3))
            self.assertEqual(control.replyTo, RSP)
            self.assertEqual(control.creationTime, NOW)
            self.assertEqual(control.EventStatus.currentStatus, EventStatusCode.ACTIVE)
            self.assertEqual(control.EventStatus.dateTime, NOW)
            self.assertFalse(control.EventStatus.potentiallySuperseded)
            self.assertEqual(len(control.mRID), 16)
            body = assert_schema_valid(self, control)
            self.assertIn(b'responseRequired="03"', body)

    def test_etc_config(self) -> None:
        """V2G-4.6.3-1, V2G-4.5.3.5-10: the shipped configuration yields one DERControl per
        function in effect, no more, all schema-valid, in a schema-valid DERControlList."""
        m = self.build(etc_config()["management"])
        self.assertEqual(
            sorted(next(iter(opmods(c.DERControlBase))) for c in m.controls),
            sorted(["opModFixedPFInjectW", "opModVoltWatt", "opModFreqDroop",
                    "opModHFRTMustTrip", "opModLFRTMustTrip", "opModHVRTMustTrip",
                    "opModLVRTMustTrip", "opModHVRTMomentaryCessation",
                    "opModLVRTMomentaryCessation"]))
        for c in m.controls:
            assert_schema_valid(self, c)
        for curve in m.curves:
            assert_schema_valid(self, curve)
        lst = fill_list(DERControlList(href="/edev/1/derp/1/derc",
                                       subscribable=SubscribableType.NON_CONDITIONAL),
                        m.controls, ListQuery(0, None, 100))
        self.assertEqual(lst.all, 9)
        assert_schema_valid(self, lst)
        assert_schema_valid(self, fill_list(DERCurveList(href="/edev/1/derp/1/dc"),
                                            m.curves, ListQuery(0, None, 100)))

    def test_all_functions_at_once(self) -> None:
        """V2G-4.6.3-2: all functions together (with one reactive-power control) are
        served: 10 DERControls (13 functions less the 3 other reactive-power ones) with
        distinct mRIDs and hrefs, and 8 curves."""
        m = self.build(all_functions())
        self.assertEqual(len(m.controls), 10)
        self.assertEqual(len(m.curves), 8)
        mrids = [c.mRID for c in m.controls] + [c.mRID for c in m.curves]
        self.assertEqual(len(set(mrids)), len(mrids))
        self.assertEqual(len({c.href for c in m.controls}), 10)
        self.assertEqual(sorted(c.href for c in m.curves),
                         sorted(f"/edev/1/derp/1/dc/{i}" for i in range(1, 9)))

    def test_constant_pf(self) -> None:
        """Constant Power Factor: opModFixedPFInjectW in thousandths, excitation true when
        absorbing reactive power (schema: true = under-excited)."""
        c, _ = self.control_of("constant_pf")
        pf = some(c.DERControlBase.opModFixedPFInjectW)
        self.assertEqual((pf.displacement, pf.multiplier, pf.excitation), (950, -3, True))
        cfg = only("constant_pf")
        cfg["constant_pf"]["excitation"] = "inject"
        pf = next(iter(opmods(self.build(cfg).current()[0].DERControlBase).values()))
        self.assertFalse(pf.excitation)

    def test_constant_var(self) -> None:
        """Constant Var: opModFixedVar in hundredths of a percent of %statVarAvail."""
        c, _ = self.control_of("constant_var")
        fv = some(c.DERControlBase.opModFixedVar)
        self.assertEqual((fv.refType, fv.value), (DERUnitRefType.STAT_VAR_AVAIL, -2550))

    def test_limit_active_power(self) -> None:
        """Limit Active Power: opModMaxLimW in hundredths of a percent of setMaxW."""
        c, _ = self.control_of("limit_active_power")
        self.assertEqual(c.DERControlBase.opModMaxLimW, 8000)

    def test_freq_droop(self) -> None:
        """High and Low Frequency Droop: one opModFreqDroop, dead bands in thousandths of
        Hz, gains in thousandths, open-loop time in hundredths of a second."""
        c, _ = self.control_of("freq_droop")
        d = some(c.DERControlBase.opModFreqDroop)
        self.assertEqual((d.dBOF, d.dBUF, d.kOF, d.kUF, d.openLoopTms), (36, 36, 50, 50, 500))

    def test_curve_controls_link_their_curve(self) -> None:
        """Each curve control's opMod is a DERCurveLink to the DERCurve of its type."""
        for f in FUNCTIONS:
            if f.curve_type is None:
                continue
            c, m = self.control_of(f.key)
            link = getattr(c.DERControlBase, f.opmod)
            self.assertIsInstance(link, Link)
            (curve,) = [k for k in m.curves if k.href == link.href]
            self.assertEqual(curve.curveType, f.curve_type)
            self.assertEqual(curve.curveType.name, f.opmod)


class DERCurveTests(unittest.TestCase):
    """DERCurves: types, axis units and multipliers, point order."""

    def setUp(self) -> None:
        self.build = Builder()

    def curve(self, key: str, points: list[tuple[float, float]] | None = None) -> DERCurve:
        cfg = only(key)
        if points is not None:
            cfg[key]["points"] = points
        (curve,) = self.build(cfg).curves
        assert_schema_valid(self, curve)
        return curve

    def values(self, curve: DERCurve) -> list[tuple[float, float]]:
        return [(round(p.xvalue * 10.0 ** curve.xMultiplier, 6),
                 round(p.yvalue * 10.0 ** curve.yMultiplier, 6)) for p in curve.CurveData]

    def test_types_and_reference(self) -> None:
        """curveType follows the 2030.5 DERCurveType enumeration; reactive-power curves
        refer y to %statVarAvail, Volt-Watt to %setMaxW, trip curves have yRefType N/A."""
        expected = {
            "volt_var": (DERCurveType.opModVoltVar, 11, DERUnitRefType.STAT_VAR_AVAIL),
            "watt_var": (DERCurveType.opModWattVar, 14, DERUnitRefType.STAT_VAR_AVAIL),
            "volt_watt": (DERCurveType.opModVoltWatt, 12, DERUnitRefType.SET_MAX_W),
            "high_freq_trip": (DERCurveType.opModHFRTMustTrip, 2, 0),
            "low_freq_trip": (DERCurveType.opModLFRTMustTrip, 7, 0),
            "high_volt_cessation": (DERCurveType.opModHVRTMomentaryCessation, 4, 0),
            "high_volt_trip": (DERCurveType.opModHVRTMustTrip, 5, 0),
            "low_volt_cessation": (DERCurveType.opModLVRTMomentaryCessation, 9, 0),
            "low_volt_trip": (DERCurveType.opModLVRTMustTrip, 10, 0),
        }
        for key, (ctype, number, ref) in expected.items():
            c = self.curve(key)
            self.assertEqual((c.curveType, int(c.curveType), c.yRefType),
                             (ctype, number, ref), key)
            self.assertEqual(c.creationTime, NOW)
            self.assertEqual(self.values(c), FUNCTION_CONFIGS[key]["points"], key)

    def test_trip_curve_axes(self) -> None:
        """Trip curves carry the duration in s on x and Hz or % of setVRef on y, in
        hundredths as in the profile's examples (5.6), in the configured order."""
        c = self.curve("high_freq_trip")
        self.assertEqual((c.xMultiplier, c.yMultiplier), (-2, -2))
        self.assertEqual([(p.xvalue, p.yvalue) for p in c.CurveData],
                         [(16, 6200), (30000, 6120)])
        c = self.curve("low_volt_trip")
        self.assertEqual([(p.xvalue, p.yvalue) for p in c.CurveData],
                         [(200, 5000), (2100, 8800)])
        self.assertTrue(all(p.excitation is None for p in c.CurveData))

    def test_precision_kept(self) -> None:
        """An axis needing more than hundredths gets a smaller multiplier, not rounding."""
        c = self.curve("volt_var", [(92.125, 44.0), (108.0, -44.0)])
        self.assertEqual((c.xMultiplier, c.yMultiplier), (-3, -2))
        self.assertEqual(self.values(c), [(92.125, 44.0), (108.0, -44.0)])

    def test_large_values(self) -> None:
        """Values beyond Int32 in hundredths get a larger multiplier."""
        c = self.curve("high_freq_trip", [(0.16, 62.0), (30_000_000.0, 61.2)])
        self.assertEqual(c.xMultiplier, -1)
        self.assertEqual(self.values(c), [(0.2, 62.0), (30_000_000.0, 61.2)])

    def test_ten_points(self) -> None:
        """A curve carries up to ten points (the schema's maximum), in order."""
        points = [(90.0 + i, 50.0 - 10 * i) for i in range(10)]
        c = self.curve("volt_var", points)
        self.assertEqual(len(c.CurveData), 10)
        self.assertEqual(self.values(c), points)
        cfg = only("volt_var")
        cfg["volt_var"]["points"] = points + [(101.0, -50.0)]
        self.assertRaises(ManagementError, self.build, cfg)


class DefaultDERControlTests(unittest.TestCase):
    """The DefaultDERControl: authorization and Enter Service (Table 5)."""

    def setUp(self) -> None:
        self.m = Builder()(etc_config()["management"])

    def test_enter_service_units(self) -> None:
        """V2G-4.5.3.5-8: the Enter Service settings in the schema's units: delays and ramp
        time in hundredths of s, frequencies in hundredths of Hz, voltages in hundredths
        of a percent of setVRef."""
        d = self.m.default_control(False, href="/edev/1/derp/1/dderc")
        got = {name: getattr(d, name) for name in TABLE_5_DEFAULT}
        self.assertEqual(got, {"setESDelay": 30000, "setESHighFreq": 6010,
                               "setESHighVolt": 10500, "setESLowFreq": 5950,
                               "setESLowVolt": 9170, "setESRampTms": 30000,
                               "setESRandomDelay": 0})
        assert_schema_valid(self, d)

    def test_energize(self) -> None:
        """V2G-4.5.3.5-7, V2G-4.6.4-2, V2G-4.6.4-3: opModEnergize is false unless the EVSE
        authorizes the PEV; the mRID does not change with it."""
        off = self.m.default_control()
        on = self.m.default_control(True)
        self.assertIs(off.DERControlBase.opModEnergize, False)
        self.assertIs(on.DERControlBase.opModEnergize, True)
        self.assertEqual(off.mRID, on.mRID)
        self.assertIn(b"<opModEnergize>true</opModEnergize>", assert_schema_valid(self, on))
        self.assertIn(b"<opModEnergize>false</opModEnergize>", assert_schema_valid(self, off))

    def test_exclusive_placement(self) -> None:
        """V2G-4.7.1-7, V2G-4.7.1-8, V2G-4.7.1-9, V2G-4.6.3-3: the DefaultDERControl
        carries no DERControl function (only opModEnergize), and no DERControl carries
        opModEnergize or Enter Service (DERControl has no setES elements at all)."""
        m = Builder()(all_functions())
        d = m.default_control(True)
        self.assertEqual(opmods(d.DERControlBase), {"opModEnergize": True})
        self.assertIsNone(d.setGradW)
        for c in m.controls:
            self.assertNotIn("opModEnergize", opmods(c.DERControlBase))
            self.assertFalse(TABLE_5_DEFAULT & set(DERControl.__dataclass_fields__))
            self.assertLessEqual(set(opmods(c.DERControlBase)), TABLE_5_DERCONTROL)


class UpdateTests(unittest.TestCase):
    """Changes during a session: 2030.5 §10.2.3 event rules (V2G-4.7.1-3)."""

    def setUp(self) -> None:
        self.cfg = etc_config()["management"]
        self.m = Builder()(self.cfg)
        self.before = {c.href: c for c in self.m.controls}

    def test_unchanged(self) -> None:
        """The same configuration (even with float noise that encodes the same) changes
        nothing: no new DERControl, nothing to notify."""
        cfg = copy.deepcopy(self.cfg)
        cfg["volt_watt"]["points"] = [(106.0 + 1e-12, 100.0), (110.0, 20.0)]
        changes = self.m.update(cfg, NOW + 60)
        self.assertFalse(changes)
        self.assertEqual({c.href: c for c in self.m.controls}, self.before)

    def test_changed_function_supersedes(self) -> None:
        """V2G-4.7.1-3, V2G-4.6.3-5: a changed function gets a new DERControl (new mRID,
        later creationTime and start) linking a new curve; the old one stays listed, marked
        Superseded at the change; the others are untouched."""
        cfg = copy.deepcopy(self.cfg)
        cfg["volt_watt"]["points"] = [(107.0, 100.0), (110.0, 0.0)]
        later = NOW + 3600
        changes = self.m.update(cfg, later)
        self.assertTrue(changes)
        (new,) = changes.issued
        (old,) = changes.superseded
        self.assertEqual((changes.cancelled, changes.default_changed), ([], False))
        self.assertEqual(old.DERControlBase, self.before[old.href].DERControlBase)
        self.assertEqual(old.EventStatus.currentStatus, EventStatusCode.SUPERSEDED)
        self.assertEqual(old.EventStatus.dateTime, later)
        self.assertFalse(old.EventStatus.potentiallySuperseded)
        self.assertNotEqual(new.mRID, old.mRID)
        self.assertNotEqual(new.href, old.href)
        self.assertEqual((new.creationTime, new.interval.start), (later, later))
        self.assertEqual(new.interval.duration, DURATION_FOREVER)
        self.assertEqual(new.EventStatus.currentStatus, EventStatusCode.ACTIVE)
        (curve,) = changes.curves
        self.assertEqual(some(new.DERControlBase.opModVoltWatt).href, curve.href)
        self.assertEqual([(p.xvalue, p.yvalue) for p in curve.CurveData],
                         [(10700, 10000), (11000, 0)])
        self.assertEqual(len(self.m.controls), 10)
        self.assertEqual(len(self.m.curves), 8)
        self.assertIn(old, self.m.controls)
        self.assertIn(old, self.m.all_controls())
        self.assertNotIn(old, self.m.active(later))
        self.assertIn(new, self.m.active(later))
        self.assertEqual(len(self.m.active(later)), 9)
        for c in self.m.controls:
            assert_schema_valid(self, c)
            if c.href not in (old.href, new.href):
                self.assertEqual(c, self.before[c.href])

    def test_superseded_retired_and_list_bounded(self) -> None:
        """V2G-4.7.1-3 (2030.5 §10.2.3): a function changed 20 times a second apart keeps at
        most 2 superseded controls listed beside the one in effect (10 + 2 in all for the
        9 functions configured); one answered with Superseded (7) is retired at the next
        change, one answered otherwise stays; a retired control can still be the subject of
        a Response (all_controls), the curves of retired controls are not listed."""
        cfg = copy.deepcopy(self.cfg)
        for n in range(20):
            cfg["freq_droop"]["k_of"] = 0.01 + n / 1000
            self.m.update(cfg, NOW + n)
            self.assertLessEqual(len(self.m.controls), 9 + 2)
        droop = [c for c in self.m.controls if c.DERControlBase.opModFreqDroop is not None]
        self.assertEqual([c.EventStatus.currentStatus for c in droop].count(
            EventStatusCode.SUPERSEDED), 2)
        older, newer = sorted((c for c in droop if c.EventStatus.currentStatus
                               == EventStatusCode.SUPERSEDED), key=lambda c: c.creationTime)
        self.assertFalse(self.m.acknowledge(older.mRID, 2))  # Started: not the answer
        self.assertTrue(self.m.acknowledge(newer.mRID, 7))
        cfg["freq_droop"]["k_of"] = 0.05
        changes = self.m.update(cfg, NOW + 20)
        self.assertIn(newer, changes.removed)
        self.assertNotIn(newer.mRID, [c.mRID for c in self.m.controls])
        self.assertIn(older.mRID, [c.mRID for c in self.m.controls])
        self.assertIn(newer.mRID, [c.mRID for c in self.m.all_controls()])
        self.assertEqual(len(self.m.curves), 7)  # the 7 curve functions did not change

    def test_unanswered_retired_after_grace(self) -> None:
        """V2G-4.7.1-3: a superseded control nobody answered is retired at the first change
        of its function 5 s or more later (five 1 s polls of the DERControlList)."""
        cfg = copy.deepcopy(self.cfg)
        cfg["freq_droop"]["k_of"] = 0.04
        (old,) = self.m.update(cfg, NOW).superseded
        cfg["freq_droop"]["k_of"] = 0.03
        self.m.update(cfg, NOW + 4)
        self.assertIn(old.mRID, [c.mRID for c in self.m.controls])
        cfg["freq_droop"]["k_of"] = 0.02
        self.m.update(cfg, NOW + 5)
        self.assertNotIn(old.mRID, [c.mRID for c in self.m.controls])

    def test_list_order(self) -> None:
        """The DERControlList is in 2030.5 order: start time ascending, then the newest
        creationTime first (so the superseding control follows the older ones)."""
        cfg = copy.deepcopy(self.cfg)
        cfg["freq_droop"]["k_of"] = 0.04
        self.m.update(cfg, NOW + 10)
        starts = [c.interval.start for c in self.m.controls]
        self.assertEqual(starts, sorted(starts))
        self.assertEqual(some(self.m.controls[-1].DERControlBase.opModFreqDroop).kOF, 40)

    def test_enabled_and_disabled(self) -> None:
        """A newly configured function gets a DERControl; a function no longer configured
        has its DERControl Cancelled, so the PEV disables it (V2G-4.9.1-2)."""
        cfg = copy.deepcopy(self.cfg)
        cfg["limit_active_power"] = {"max_w_pct": 50.0}
        cfg["high_volt_cessation"] = None
        changes = self.m.update(cfg, NOW + 5)
        (issued,) = changes.issued
        self.assertEqual(issued.DERControlBase.opModMaxLimW, 5000)
        (cancelled,) = changes.cancelled
        self.assertIsNotNone(cancelled.DERControlBase.opModHVRTMomentaryCessation)
        self.assertEqual(cancelled.EventStatus.currentStatus, EventStatusCode.CANCELLED)
        self.assertEqual(cancelled.EventStatus.dateTime, NOW + 5)
        self.assertNotIn(cancelled, self.m.active(NOW + 5))
        self.assertIn(cancelled, self.m.controls)
        assert_schema_valid(self, cancelled)

    def test_reactive_switch(self) -> None:
        """Replacing one reactive-power function by another cancels the first and issues
        the second: still at most one in effect (V2G-4.9.7-1)."""
        cfg = copy.deepcopy(self.cfg)
        cfg["constant_pf"] = None
        cfg["volt_var"] = copy.deepcopy(FUNCTION_CONFIGS["volt_var"])
        changes = self.m.update(cfg, NOW + 5)
        self.assertEqual([next(iter(opmods(c.DERControlBase))) for c in changes.cancelled],
                         ["opModFixedPFInjectW"])
        self.assertEqual([next(iter(opmods(c.DERControlBase))) for c in changes.issued],
                         ["opModVoltVar"])
        reactive = {f.opmod for f in FUNCTIONS if f.reactive}
        in_effect = [c for c in self.m.active(NOW + 5)
                     if reactive & set(opmods(c.DERControlBase))]
        self.assertEqual(len(in_effect), 1)

    def test_enter_service_change(self) -> None:
        """Changed Enter Service settings change the DefaultDERControl only (Table 5)."""
        cfg = copy.deepcopy(self.cfg)
        cfg["enter_service"]["delay_s"] = 10.0
        changes = self.m.update(cfg, NOW + 5)
        self.assertTrue(changes.default_changed)
        self.assertEqual(changes.issued, [])
        self.assertEqual(self.m.default_control().setESDelay, 1000)

    def test_refused_update_changes_nothing(self) -> None:
        """V2G-4.6.3-2: an incompatible update raises and leaves everything as it was."""
        cfg = copy.deepcopy(self.cfg)
        cfg["volt_var"] = copy.deepcopy(FUNCTION_CONFIGS["volt_var"])
        cfg["enter_service"]["delay_s"] = 1.0
        self.assertRaises(ManagementError, self.m.update, cfg, NOW + 5)
        self.assertEqual({c.href: c for c in self.m.controls}, self.before)
        self.assertEqual(self.m.default_control().setESDelay, 30000)


class CompatibilityTests(unittest.TestCase):
    """V2G-4.6.3-2: the management information in effect is mutually compatible."""

    def test_one_reactive_control_builder(self) -> None:
        """V2G-4.9.7-1: the builder refuses more than one reactive-power control."""
        cfg = etc_config()["management"]
        for other in ("volt_var", "watt_var", "constant_var"):
            bad = dict(cfg, **{other: copy.deepcopy(FUNCTION_CONFIGS[other])})
            with self.assertRaises(ManagementError) as e:
                Builder()(bad)
            self.assertIn("V2G-4.9.7-1", str(e.exception))
            self.assertIn(other, str(e.exception))

    def test_one_reactive_control_config(self) -> None:
        """V2G-4.9.7-1: configuration validation already refuses two reactive controls."""
        with tempfile.TemporaryDirectory() as d:
            path = evse_config(Path(d), extra="[management.constant_pf]\npf = 0.9\n"
                                              "[management.constant_var]\nvar_pct = 10.0\n")
            with self.assertRaises(ConfigError) as e:
                load(path, "evse")
        self.assertIn("V2G-4.9.7-1", str(e.exception))

    def test_two_quadrant_site(self) -> None:
        """A site requiring only 2-quadrant inverters cannot be served a reactive-power
        function, except unity power factor (no reactive power)."""
        site = dict(etc_config()["site"], quadrants=2)
        self.assertEqual(check_management(etc_config()["management"], site), [])
        self.assertRaises(ManagementError, Builder(), only("volt_var"), site)
        pf = only("constant_pf")
        self.assertRaises(ManagementError, Builder(), pf, site)
        pf["constant_pf"]["pf"] = 1.0
        Builder()(pf, site)

    def test_enter_service_window(self) -> None:
        """The Enter Service window must not be empty."""
        cfg = etc_config()["management"]
        cfg["enter_service"]["low_freq_hz"] = 60.2
        cfg["enter_service"]["low_volt_pct"] = 110.0
        problems = check_management(cfg)
        self.assertEqual(len(problems), 2, problems)

    def test_curve_domains(self) -> None:
        """Curve values outside their documented domain are refused, all reported."""
        cfg = only("volt_var")
        cfg["volt_var"]["points"] = [(-5.0, 150.0)]
        problems = check_management(cfg)
        self.assertEqual(len(problems), 2, problems)
        self.assertRaises(ManagementError, Builder(), cfg)


class IdentityTests(unittest.TestCase):
    """mRIDs and hrefs."""

    def test_injected_mrids(self) -> None:
        """Every DERControl, DERCurve and the DefaultDERControl gets a fresh 128-bit mRID
        from the injected source, so tests are deterministic."""
        m = Builder()(etc_config()["management"])
        mrids = ([c.mRID for c in m.controls] + [c.mRID for c in m.curves]
                 + [m.default_control().mRID])
        self.assertEqual(sorted(mrids), [i.to_bytes(16, "big") for i in range(1, 18)])

    def test_bad_mrid_source(self) -> None:
        """An mRID source that does not give 16 bytes is refused."""
        self.assertRaises(ValueError, ManagementInformation, etc_config()["management"],
                          now=NOW, control_href=str, curve_href=str, reply_to=RSP,
                          mrid=lambda: b"\x01" * 17)

    def test_random_mrid(self) -> None:
        """The default source gives distinct 16-byte mRIDs."""
        a, b = random_mrid(), random_mrid()
        self.assertEqual((len(a), len(b)), (16, 16))
        self.assertNotEqual(a, b)

    def test_hrefs(self) -> None:
        """Control and curve hrefs come from the injected functions, numbered from 1 in
        issue order."""
        m = Builder()(all_functions())
        hrefs = sorted(int(some(c.href).rsplit("/", 1)[1]) for c in m.controls)
        self.assertEqual(hrefs, list(range(1, 11)))
        for c in m.controls:
            self.assertTrue(some(c.href).startswith("/edev/1/derp/1/derc/"))

