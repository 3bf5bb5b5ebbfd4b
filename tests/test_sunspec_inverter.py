"""The sunspec-modbus inverter plugin (PEV role) against a real Modbus peer: a pymodbus server
(tests/sunspec_server.py) serving SunSpec DER maps written here, with register values computed
from chosen physical values and the SunSpec model layouts (offsets from the ID register)
written out below, independently of the plugin's code. Written controls are read back from
the server's registers.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from sepgw.interfaces import BuildContext, IInverter
from sepgw.registry import PluginRegistry, bundled_plugin_dir
from tests.sunspec_server import ModbusTestServer, SunSpecMapBuilder, s16, u32

WAIT_S = 10.0

# Model 701 (DER AC measurement), length 153
M701 = dict(Alrm=6, W=10, Var=12, LLV=15, LNV=16, Hz=17, V_SF=114, Hz_SF=115, W_SF=116,
            Var_SF=119)
# Model 702 (DER capacity), length 50; 703 (enter service), length 17
M702 = dict(WMax=26, W_SF=45)
M703_ES = 2
# Model 704 (DER AC controls), length 65
M704 = dict(WMaxLimPctEna=14, WMaxLimPct=15, WSetEna=22, WSetMod=23, WSet=24, VarSetEna=35,
            VarSetMod=36, VarSetPct=42, WMaxLimPct_SF=54, WSet_SF=55, VarSetPct_SF=58)
# Model 713 (DER storage capacity), length 7
M713 = dict(SoC=4, Pct_SF=8)
# Models 103 (three-phase inverter, length 50), 120 (nameplate, 26), 123 (immediate, 24)
M103 = dict(PPVphAB=7, PhVphA=10, V_SF=13, W=14, W_SF=15, Hz=16, Hz_SF=17, VAr=20, VAr_SF=21)
M120 = dict(WRtg=3, WRtg_SF=4)
M123 = dict(Conn=4, WMaxLimPct=5, WMaxLim_Ena=9, WMaxLimPct_SF=23)

_REGISTRY: PluginRegistry | None = None


def factory() -> Any:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = PluginRegistry.discover([bundled_plugin_dir()])
    return _REGISTRY.find("inverter", "sunspec-modbus").factory


def der_map(base: int = 40000) -> SunSpecMapBuilder:
    """An IEEE 1547 DER: 2345.6 W discharging, 250 var absorbed, 240.3 V L-L, 60.012 Hz,
    73.5 % SoC, WMax 7000 W, over-voltage alarm (701 Alrm bit 10)."""
    b = SunSpecMapBuilder(base)
    b.add(1, 66, {})
    b.add(701, 153, {M701["W"]: s16(23456), M701["W_SF"]: s16(-1),
                     M701["Var"]: s16(-25), M701["Var_SF"]: s16(1),
                     M701["LLV"]: 2403, M701["LNV"]: 1387, M701["V_SF"]: s16(-1),
                     M701["Hz"]: u32(60012), M701["Hz_SF"]: s16(-3),
                     M701["Alrm"]: u32(1 << 10)})
    b.add(702, 50, {M702["WMax"]: 700, M702["W_SF"]: s16(1)})
    b.add(703, 17, {M703_ES: 0})
    b.add(704, 65, {M704["WMaxLimPct_SF"]: s16(-1), M704["WSet_SF"]: s16(0),
                    M704["VarSetPct_SF"]: s16(-1)})
    b.add(713, 7, {M713["SoC"]: 735, M713["Pct_SF"]: s16(-1)})
    return b


def to_signed32(hi: int, lo: int) -> int:
    v = hi << 16 | lo
    return v - (1 << 32) if v & 0x80000000 else v


class SunSpecInverterTests(TestCase):
    timeout = 60

    def inverter(self, builder: SunSpecMapBuilder, **options: Any) -> Any:
        self.models = builder.models
        self.server = ModbusTestServer(builder.end())
        self.server.start()
        self.addCleanup(self.server.stop)
        config = {"host": "127.0.0.1", "port": self.server.port, "timeout": 2.0, **options}
        validated, problems = factory().options.validate(config)
        self.assertEqual(problems, [])
        inverter = factory().build(validated, BuildContext(reactor=reactor, name="inverter"))
        self.addCleanup(lambda: inverter.client.close())
        return inverter

    def reg(self, model: int, offset: int, count: int = 1) -> list[int]:
        return self.server.registers(self.models[model] + offset, count)

    def poll(self, inverter: Any) -> Deferred[Any]:
        d = inverter.poll()
        assert d is not None
        return d.addTimeout(WAIT_S, reactor)

    @inlineCallbacks
    def test_readings_from_701_and_713(self) -> Any:
        """reading() reports 701's W, var, line-to-line V and Hz scaled by their scale
        factors (positive W discharging, as in the DER frame), 713's SoC and the alarm."""
        inv = self.inverter(der_map())
        self.assertTrue(verifyObject(IInverter, inv))
        yield self.poll(inv)
        self.assertIsNone(inv.error)
        r = inv.reading()
        self.assertAlmostEqual(r.active_power_w, 2345.6)
        self.assertAlmostEqual(r.reactive_power_var, -250.0)
        self.assertAlmostEqual(r.voltage_v, 240.3)
        self.assertAlmostEqual(r.frequency_hz, 60.012)
        self.assertAlmostEqual(r.state_of_charge_pct, 73.5)
        self.assertEqual(r.alarms, 2)  # DERAlarm over-voltage

    @inlineCallbacks
    def test_fixed_w_discharge_writes_704_and_enters_service(self) -> Any:
        """opModEnergize with opModFixedW 50 % of WMax (7000 W) writes WSet 3500 W in watts
        mode (WSetEna 1, WSetMod 1) and ES 1 (V2G-4.8.2-2: positive discharges)."""
        inv = self.inverter(der_map())
        yield self.poll(inv)
        inv.apply({"opModEnergize": True, "opModFixedW": 50.0})
        yield self.poll(inv)
        ena, mod, hi, lo = self.reg(704, M704["WSetEna"], 4)
        self.assertEqual((ena, mod, to_signed32(hi, lo)), (1, 1, 3500))
        self.assertEqual(self.reg(703, M703_ES), [1])

    @inlineCallbacks
    def test_charge_and_limit_relative_to_max_w(self) -> Any:
        """With max_w 6000 W (the PEV's setMaxW): opModFixedW -25 % charges 1500 W (WSet
        -1500), and opModMaxLimW 40 % enables WMaxLimPct at 40 % of 6000 W in the device's
        7000 W terms: 34.3 % (WMaxLimPct_SF -1)."""
        inv = self.inverter(der_map(), max_w=6000.0)
        yield self.poll(inv)
        inv.apply({"opModEnergize": True, "opModFixedW": -25.0, "opModMaxLimW": 40.0})
        yield self.poll(inv)
        _, _, hi, lo = self.reg(704, M704["WSetEna"], 4)
        self.assertEqual(to_signed32(hi, lo), -1500)
        self.assertEqual(self.reg(704, M704["WMaxLimPctEna"], 2), [1, 343])
        inv.apply({"opModEnergize": True, "opModFixedW": 100.0, "opModMaxLimW": 40.0})
        yield self.poll(inv)
        _, _, hi, lo = self.reg(704, M704["WSetEna"], 4)
        self.assertEqual(to_signed32(hi, lo), 2400)  # capped at 40 % of 6000 W

    @inlineCallbacks
    def test_not_energized_is_zero_and_out_of_service(self) -> Any:
        """opModEnergize false: WSet 0 whatever opModFixedW says, and ES 0."""
        inv = self.inverter(der_map())
        inv.apply({"opModEnergize": True, "opModFixedW": 50.0})
        yield self.poll(inv)
        inv.apply({"opModEnergize": False, "opModFixedW": 50.0})
        yield self.poll(inv)
        _, _, hi, lo = self.reg(704, M704["WSetEna"], 4)
        self.assertEqual(to_signed32(hi, lo), 0)
        self.assertEqual(self.reg(703, M703_ES), [0])

    @inlineCallbacks
    def test_fixed_var_and_unmapped_controls(self) -> Any:
        """opModFixedVar 20 % of setMaxVar writes VarSetEna 1, VarSetMod 1 (VAR_MAX_PCT) and
        VarSetPct 200 (SF -1); controls the plugin does not map are listed, not dropped
        silently."""
        inv = self.inverter(der_map())
        inv.apply({"opModEnergize": True, "opModFixedVar": {"percent": 20.0,
                                                           "ref": "setMaxVar"},
                   "opModVoltVar": {"points": []}})
        yield self.poll(inv)
        self.assertEqual(self.reg(704, M704["VarSetEna"], 2), [1, 1])
        self.assertEqual(self.reg(704, M704["VarSetPct"]), [200])
        self.assertEqual(inv.unsupported, ("opModVoltVar",))

    @inlineCallbacks
    def test_older_device_with_103_and_123(self) -> Any:
        """A device with only 103/120/123 at base 0: readings from 103 (L-L voltage), and
        opModFixedW 30 % of WRtg (5000 W) becomes Conn 1 with a 30 % WMaxLimPct."""
        b = SunSpecMapBuilder(0)
        b.add(1, 66, {})
        b.add(103, 50, {M103["W"]: s16(-3200), M103["W_SF"]: s16(0),
                        M103["VAr"]: s16(0), M103["VAr_SF"]: s16(0),
                        M103["PPVphAB"]: 2398, M103["PhVphA"]: 1384, M103["V_SF"]: s16(-1),
                        M103["Hz"]: 5999, M103["Hz_SF"]: s16(-2)})
        b.add(120, 26, {M120["WRtg"]: 500, M120["WRtg_SF"]: s16(1)})
        b.add(123, 24, {M123["WMaxLimPct_SF"]: s16(0)})
        inv = self.inverter(b)
        inv.apply({"opModEnergize": True, "opModFixedW": 30.0})
        yield self.poll(inv)
        self.assertIsNone(inv.error)
        self.assertEqual(self.reg(123, M123["Conn"]), [1])
        self.assertEqual(self.reg(123, M123["WMaxLimPct"]), [30])
        self.assertEqual(self.reg(123, M123["WMaxLim_Ena"]), [1])
        r = inv.reading()
        self.assertAlmostEqual(r.active_power_w, -3200.0)
        self.assertAlmostEqual(r.voltage_v, 239.8)
        self.assertAlmostEqual(r.frequency_hz, 59.99)
        self.assertAlmostEqual(r.state_of_charge_pct, 50.0)  # no 713/124: configured soc

    @inlineCallbacks
    def test_device_gone_then_back_rewrites_controls(self) -> Any:
        """With the device answering exceptions the error names it and the registers; the
        controls are written again once it answers."""
        inv = self.inverter(der_map())
        yield self.poll(inv)
        self.server.exception_code = 6
        inv.apply({"opModEnergize": True, "opModFixedW": 10.0})
        yield self.poll(inv)
        self.assertIn(f"127.0.0.1:{self.server.port} unit 1", inv.error)
        self.assertIn("Modbus exception 6 (server device busy)", inv.error)
        self.server.exception_code = None
        yield self.poll(inv)
        self.assertIsNone(inv.error)
        _, _, hi, lo = self.reg(704, M704["WSetEna"], 4)
        self.assertEqual(to_signed32(hi, lo), 700)
