"""The controls in effect, from 2030.5 representation to the plain units an inverter plugin
gets in ``IInverter.apply`` (see ``docs/plugins.md``).

==============================  ================================================================
opModEnergize                   bool: discharging allowed
opModFixedW, opModMaxLimW       float percent of setMaxW (opModFixedW positive = discharge)
opModFixedPFInjectW/AbsorbW     {"pf": 0.95, "absorbing": bool}
opModFixedVar                   {"percent": float, "ref": "setMaxW" | "setMaxVar" |
                                "statVarAvail" | "setEffectiveV" | None}
opModFreqDroop                  {"db_of_hz", "db_uf_hz", "k_of", "k_uf" (per unit),
                                "open_loop_s"}
curve opMods (opModVoltVar...)  {"points": [(x, y), ...] in real units, "y_ref": str | None,
                                "type": DERCurveType name}; x and y units per curve type
                                (volt-var/volt-watt x: % of setVRef; trip curves x: s,
                                y: Hz or % of setVRef)
setES*                          under "enter_service": delays in s, volt %, freq Hz
==============================  ================================================================
"""

from __future__ import annotations

from typing import Any, Mapping

_REFS = {0: None, 1: "setMaxW", 2: "setMaxVar", 3: "statVarAvail", 4: "setEffectiveV"}


def curve_points(curve: Any) -> dict[str, Any]:
    """A DERCurve as real-valued points."""
    xs = 10.0 ** int(curve.xMultiplier)
    ys = 10.0 ** int(curve.yMultiplier)
    return {
        "points": [(float(p.xvalue) * xs, float(p.yvalue) * ys) for p in curve.CurveData],
        "y_ref": _REFS.get(int(curve.yRefType)),
        "type": getattr(curve.curveType, "name", str(curve.curveType)),
    }


def plain(name: str, value: Any, curves: Mapping[str, Any]) -> Any:
    """One opMod's value in plain units (curves looked up by their link's href)."""
    if value is None:
        return None
    if name in ("opModFixedW", "opModMaxLimW"):
        return value / 100.0
    if name in ("opModFixedPFInjectW", "opModFixedPFAbsorbW"):
        return {"pf": float(value.displacement) * 10.0 ** int(value.multiplier),
                "absorbing": bool(value.excitation)}
    if name == "opModFixedVar":
        return {"percent": value.value / 100.0, "ref": _REFS.get(int(value.refType))}
    if name == "opModFreqDroop":
        return {"db_of_hz": value.dBOF / 1000.0, "db_uf_hz": value.dBUF / 1000.0,
                "k_of": value.kOF / 1000.0, "k_uf": value.kUF / 1000.0,
                "open_loop_s": value.openLoopTms / 100.0}
    if hasattr(value, "href") and value.href in curves:
        return curve_points(curves[value.href])
    if hasattr(value, "href"):
        return None  # a curve not fetched (yet)
    return value


def enter_service(settings: Mapping[str, int]) -> dict[str, float]:
    """setES* in plain units: seconds, % of setVRef, Hz."""
    scale = {"setESDelay": 0.01, "setESRampTms": 0.01, "setESRandomDelay": 0.01,
             "setESHighVolt": 0.01, "setESLowVolt": 0.01, "setESHighFreq": 0.01,
             "setESLowFreq": 0.01}
    return {k: v * scale[k] for k, v in settings.items() if k in scale}
