"""The sunspec-modbus meter plugin against a real Modbus peer (a pymodbus server on loopback,
tests/sunspec_server.py) serving SunSpec maps written here: register values are computed in
the tests from chosen physical values and scale factors, following the SunSpec meter model
layout (models 201-204, offsets from the ID register), independently of the plugin's code.

Polls are driven by calling ``poll()`` and waiting on its Deferred (bounded by a timeout);
nothing sleeps.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from sepgw.interfaces import BuildContext, IMeter, IMeterListener
from sepgw.registry import PluginRegistry, bundled_plugin_dir
from tests.sunspec_server import ModbusTestServer, SunSpecMapBuilder, s16, u32

WAIT_S = 10.0

# The SunSpec meter model (201-204, integer + scale factor), offsets from the ID register,
# written out from the SunSpec information model.
PHV, PPV, V_SF, HZ, HZ_SF, W, W_SF, VAR, VAR_SF = 7, 11, 15, 16, 17, 18, 22, 28, 32
TOTWHEXP, TOTWHIMP, TOTWH_SF = 38, 46, 54
METER_LEN = 105
COMMON_LEN = 66


def meter_points(*, w: float, w_sf: int, var: float | None, var_sf: int, v_ln: float | None,
                 v_ll: float | None, v_sf: int, hz: float, hz_sf: int,
                 wh_exp: float = 0.0, wh_imp: float = 0.0, wh_sf: int = 0) -> dict[int, Any]:
    """The registers of a meter model for these physical values (None: not implemented)."""
    def reg(x: float | None, sf: int) -> int:
        return 0x8000 if x is None else s16(round(x / 10 ** sf))
    return {PHV: reg(v_ln, v_sf), PPV: reg(v_ll, v_sf), V_SF: s16(v_sf),
            HZ: reg(hz, hz_sf), HZ_SF: s16(hz_sf), W: reg(w, w_sf), W_SF: s16(w_sf),
            VAR: reg(var, var_sf), VAR_SF: s16(var_sf),
            TOTWHEXP: u32(round(wh_exp / 10 ** wh_sf)),
            TOTWHIMP: u32(round(wh_imp / 10 ** wh_sf)), TOTWH_SF: s16(wh_sf)}


WYE = dict(w=3300.0, w_sf=1, var=-120.0, var_sf=0, v_ln=239.7, v_ll=415.2, v_sf=-1,
           hz=59.98, hz_sf=-2, wh_exp=1234500.0, wh_imp=98765000.0, wh_sf=2)
"""A wye meter measuring 3300 W import (to the PEV), 120 var export, 239.7 V L-N."""


def sunspec_map(base: int, model: int, **values: Any) -> dict[int, int]:
    b = SunSpecMapBuilder(base)
    b.add(1, COMMON_LEN, {})
    b.add(model, METER_LEN, meter_points(**values))
    return b.end()


@implementer(IMeterListener)
class Recorder:
    def __init__(self) -> None:
        self.samples: list[Any] = []
        self.errors: list[str] = []

    def meter_sample(self, sample: Any) -> None:
        self.samples.append(sample)

    def meter_error(self, reason: str) -> None:
        self.errors.append(reason)


_REGISTRY: PluginRegistry | None = None


def factory() -> Any:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = PluginRegistry.discover([bundled_plugin_dir()])
    return _REGISTRY.find("meter", "sunspec-modbus").factory


class SunSpecMeterTests(TestCase):
    timeout = 60

    def serve(self, registers: dict[int, int], **kwargs: Any) -> ModbusTestServer:
        server = ModbusTestServer(registers, **kwargs)
        server.start()
        self.addCleanup(server.stop)
        return server

    def meter(self, server: ModbusTestServer, **options: Any) -> Any:
        config = {"host": "127.0.0.1", "port": server.port, "timeout": 2.0, **options}
        validated, problems = factory().options.validate(config)
        self.assertEqual(problems, [])
        meter = factory().build(validated, BuildContext(reactor=reactor, name="ports[0].meter"))
        self.recorder = Recorder()
        meter.add_listener(self.recorder)
        self.addCleanup(meter.stop)
        return meter

    def poll(self, meter: Any) -> Deferred[Any]:
        d = meter.poll()
        assert d is not None
        return d.addTimeout(WAIT_S, reactor)

    @inlineCallbacks
    def test_wye_meter_scale_factors_and_sign(self) -> Any:
        """A wye meter (203) at base 40000: W, var, V (L-N) and Hz scaled by their scale
        factors, power to the PEV negative in the DER frame (positive = PEV to grid), energy
        counters scaled by TotWh_SF."""
        server = self.serve(sunspec_map(40000, 203, **WYE))
        meter = self.meter(server)
        self.assertTrue(verifyObject(IMeter, meter))
        yield self.poll(meter)
        self.assertEqual(self.recorder.errors, [])
        [s] = self.recorder.samples
        self.assertAlmostEqual(s.active_power_w, -3300.0)
        self.assertAlmostEqual(s.reactive_power_var, 120.0)
        self.assertAlmostEqual(s.voltage_v, 239.7)
        self.assertAlmostEqual(s.frequency_hz, 59.98)
        self.assertAlmostEqual(meter.last.wh_exported, 1234500.0)
        self.assertAlmostEqual(meter.last.wh_imported, 98765000.0)
        self.assertIsNone(meter.error)

    @inlineCallbacks
    def test_invert(self) -> Any:
        """With invert (CT the other way round) the meter's positive W is the PEV
        discharging: positive in the DER frame."""
        server = self.serve(sunspec_map(40000, 203, **WYE))
        meter = self.meter(server, invert=True)
        yield self.poll(meter)
        self.assertAlmostEqual(self.recorder.samples[0].active_power_w, 3300.0)
        self.assertAlmostEqual(self.recorder.samples[0].reactive_power_var, -120.0)

    @inlineCallbacks
    def test_base_0_single_phase(self) -> Any:
        """A single-phase meter (201) whose map starts at register 0 (nothing at 40000) is
        found; a negative scale factor on W (-2) and discharge (export) positive."""
        values = dict(w=-57.31, w_sf=-2, var=0.0, var_sf=0, v_ln=120.4, v_ll=None, v_sf=-1,
                      hz=60.0, hz_sf=-1)
        server = self.serve(sunspec_map(0, 201, **values))
        meter = self.meter(server)
        yield self.poll(meter)
        self.assertEqual(meter.map.base, 0)
        [s] = self.recorder.samples
        self.assertAlmostEqual(s.active_power_w, 57.31)
        self.assertAlmostEqual(s.voltage_v, 120.4)
        self.assertAlmostEqual(s.frequency_hz, 60.0)

    @inlineCallbacks
    def test_base_50000_delta(self) -> Any:
        """A delta meter (204) whose map starts at 50000 is found after 40000 and 0; its
        voltage is line to line (PPV)."""
        values = dict(w=-6000.0, w_sf=0, var=None, var_sf=0, v_ln=None, v_ll=480.0, v_sf=0,
                      hz=50.02, hz_sf=-2)
        server = self.serve(sunspec_map(50000, 204, **values))
        meter = self.meter(server)
        yield self.poll(meter)
        self.assertEqual(meter.map.base, 50000)
        [s] = self.recorder.samples
        self.assertAlmostEqual(s.active_power_w, 6000.0)
        self.assertAlmostEqual(s.reactive_power_var, 0.0)  # VAR not implemented
        self.assertAlmostEqual(s.voltage_v, 480.0)
        self.assertAlmostEqual(s.frequency_hz, 50.02)

    @inlineCallbacks
    def test_split_phase_reports_line_to_line(self) -> Any:
        """A split-phase meter (202) reports L1-L2 voltage (240 V), not L-N (120 V), unless
        voltage = 'ln' is configured."""
        values = dict(w=0.0, w_sf=0, var=0.0, var_sf=0, v_ln=120.1, v_ll=240.2, v_sf=-1,
                      hz=60.0, hz_sf=-2)
        server = self.serve(sunspec_map(40000, 202, **values))
        meter = self.meter(server)
        yield self.poll(meter)
        self.assertAlmostEqual(self.recorder.samples[0].voltage_v, 240.2)
        meter_ln = self.meter(server, voltage="ln")
        yield self.poll(meter_ln)
        self.assertAlmostEqual(self.recorder.samples[0].voltage_v, 120.1)

    @inlineCallbacks
    def test_exception_response_is_meter_error(self) -> Any:
        """A Modbus exception response is a meter error naming the device, the registers and
        the exception; the next good reading clears it."""
        server = self.serve(sunspec_map(40000, 203, **WYE))
        meter = self.meter(server)
        yield self.poll(meter)
        server.exception_code = 4
        yield self.poll(meter)
        [error] = self.recorder.errors
        self.assertIn(f"modbus tcp 127.0.0.1:{server.port} unit 1", error)
        self.assertIn("holding registers 40070..40176", error)  # 40002 + 2 + 66 = 40070
        self.assertIn("Modbus exception 4 (server device failure)", error)
        self.assertEqual(meter.error, error)
        server.exception_code = None
        yield self.poll(meter)
        self.assertIsNone(meter.error)
        self.assertEqual(len(self.recorder.samples), 2)

    @inlineCallbacks
    def test_not_implemented_power_is_meter_error(self) -> Any:
        """W holding 0x8000 (not implemented) is a meter error naming the point, its
        register and the value: no sample is invented."""
        values = dict(WYE, w=None)
        server = self.serve(sunspec_map(40000, 203, **values))
        meter = self.meter(server)
        yield self.poll(meter)
        self.assertEqual(self.recorder.samples, [])
        [error] = self.recorder.errors
        self.assertIn("W at register 40088 is 0x8000 (not implemented)", error)

    @inlineCallbacks
    def test_server_stopped_is_meter_error(self) -> Any:
        """The device going away (server stopped) is a meter error at the next poll, and so
        is every poll while it stays away."""
        server = self.serve(sunspec_map(40000, 203, **WYE))
        meter = self.meter(server, timeout=1.0)
        yield self.poll(meter)
        server.stop()
        yield self.poll(meter)
        yield self.poll(meter)
        self.assertEqual(len(self.recorder.samples), 1)
        self.assertEqual(len(self.recorder.errors), 2)
        for error in self.recorder.errors:
            self.assertIn(f"127.0.0.1:{server.port}", error)
        self.assertIsNotNone(meter.error)

    @inlineCallbacks
    def test_no_answer_is_timeout_error(self) -> Any:
        """A device that accepts the connection but never answers (a TCP gateway whose
        serial device is silent) is a meter error after the configured timeout."""
        silent = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        config = {"host": "127.0.0.1", "port": silent.getHost().port, "timeout": 0.3}
        validated, _ = factory().options.validate(config)
        meter = factory().build(validated, BuildContext(reactor=reactor, name="m"))
        recorder = Recorder()
        meter.add_listener(recorder)
        self.addCleanup(meter.stop)
        yield self.poll(meter)
        [error] = recorder.errors
        self.assertIn(f"127.0.0.1:{silent.getHost().port} unit 1", error)
        self.assertIn("reading holding registers 40000..40001: no answer within 0.3 s", error)

    @inlineCallbacks
    def test_device_failure_is_not_taken_for_a_missing_map(self) -> Any:
        """An exception other than illegal address while looking for the map (here the
        server's answer for an unknown unit, exception 4) is reported as the device's error,
        not as 'no map at this base'."""
        server = self.serve(sunspec_map(40000, 203, **WYE))
        meter = self.meter(server, unit=7)
        yield self.poll(meter)
        [error] = self.recorder.errors
        self.assertIn("unit 7: reading holding registers 40000..40001: Modbus exception 4 "
                      "(server device failure)", error)

    @inlineCallbacks
    def test_rtu_over_tcp_and_crc_error(self) -> Any:
        """RTU framing (through a TCP gateway) reads the same values; an answer with a bad
        CRC is a meter error saying so."""
        server = self.serve(sunspec_map(40000, 203, **WYE), framer="rtu")
        meter = self.meter(server, transport="rtu-tcp")
        yield self.poll(meter)
        self.assertAlmostEqual(self.recorder.samples[0].active_power_w, -3300.0)
        server.corrupt_crc = True
        yield self.poll(meter)
        [error] = self.recorder.errors
        self.assertIn("CRC error", error)
        self.assertIn("modbus rtu-tcp", error)

    @inlineCallbacks
    def test_no_sunspec_map_is_meter_error(self) -> Any:
        """A device without the 'SunS' marker at any base is a meter error listing what was
        found at each base."""
        server = self.serve({40000: 1, 40001: 2, 0: 0, 1: 0})
        meter = self.meter(server)
        yield self.poll(meter)
        [error] = self.recorder.errors
        self.assertIn("no 'SunS' marker at 40000 (0x0001 0x0002), 0 (0x0000 0x0000), 50000",
                      error)

    @inlineCallbacks
    def test_no_meter_model_is_meter_error(self) -> Any:
        """A SunSpec map without a meter model (an inverter's) is a meter error naming the
        models it has."""
        b = SunSpecMapBuilder(40000)
        b.add(1, COMMON_LEN, {})
        b.add(103, 50, {})
        server = self.serve(b.end())
        meter = self.meter(server)
        yield self.poll(meter)
        [error] = self.recorder.errors
        self.assertIn("no meter model 201/202/203/204", error)
        self.assertIn("models 1, 103", error)

    def test_options(self) -> None:
        """The plugin's keys are declared with docs (what `sepgw plugins --keys` lists), and
        a TCP meter without host or an RTU meter without device is refused."""
        options = factory().options
        for key in ("transport", "host", "port", "device", "unit", "timeout", "interval",
                    "bases", "invert", "voltage", "model"):
            self.assertTrue(options.keys[key].doc, key)
        _, problems = options.validate({})
        self.assertIn("host", " ".join(str(p) for p in problems))
        _, problems = options.validate({"transport": "rtu"})
        self.assertIn("device", " ".join(str(p) for p in problems))
