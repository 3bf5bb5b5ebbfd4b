"""Benchmark of the sepgw.model codec against a bare lxml round trip.

Run: ``.venv/bin/python benchmarks/codec.py [--repeat N] [--number N]``

For each document (a DERControlList with 9 controls, a DERSettings, a MirrorMeterReading)
it measures, per document, the typed ``parse`` and ``serialize`` of sepgw.model and, as the
baseline in the same run, ``lxml.etree.fromstring`` + ``tostring`` of the same bytes (with the
same hardened parser settings).  Each figure is the best of ``--repeat`` timeit runs of
``--number`` iterations (the median is printed too).  The target is a ratio
(typed parse + serialize) / (bare lxml round trip) within 3x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lxml import etree  # noqa: E402

from sepgw.model import (  # noqa: E402
    ActivePower, DateTimeInterval, DERControl, DERControlBase, DERControlList, DERSettings,
    EventStatus, FixedVar, FreqDroopType, Link, MirrorMeterReading, PowerFactorWithExcitation,
    Reading, ReadingType, ReactivePower, VoltageRMS, WattHour, ApparentPower, parse, serialize,
)


def der_control_list() -> DERControlList:
    bases = [
        DERControlBase(opModFreqDroop=FreqDroopType(dBOF=6100, dBUF=5900, kOF=100, kUF=100,
                                                    openLoopTms=200)),
        DERControlBase(opModHFRTMustTrip=Link(href="/pev/derp/1/dc/2")),
        DERControlBase(opModHVRTMomentaryCessation=Link(href="/pev/derp/1/dc/4")),
        DERControlBase(opModHVRTMustTrip=Link(href="/pev/derp/1/dc/5")),
        DERControlBase(opModLFRTMustTrip=Link(href="/pev/derp/1/dc/7")),
        DERControlBase(opModLVRTMomentaryCessation=Link(href="/pev/derp/1/dc/9")),
        DERControlBase(opModLVRTMustTrip=Link(href="/pev/derp/1/dc/10")),
        DERControlBase(opModVoltVar=Link(href="/pev/derp/1/dc/11")),
        DERControlBase(opModFixedPFInjectW=PowerFactorWithExcitation(
            displacement=950, excitation=False, multiplier=-3)),
    ]
    controls = [
        DERControl(href=f"/pev/derp/1/derc/{i}", replyTo="/rsps/1/rsp", responseRequired=3,
                   mRID=bytes.fromhex(f"CCCC{i:04X}00000000000000000000D17E"),
                   description=f"MI-{i}", creationTime=1670691600,
                   EventStatus=EventStatus(currentStatus=1, dateTime=1670691600,
                                           potentiallySuperseded=False),
                   interval=DateTimeInterval(duration=4294967295, start=1670691600),
                   DERControlBase=b, deviceCategory=0x10000)
        for i, b in enumerate(bases, 1)
    ]
    return DERControlList(href="/pev/derp/1/derc", subscribable=1, all=9, results=9,
                          DERControl=controls)


def der_settings() -> DERSettings:
    def w(v: int) -> ActivePower:
        return ActivePower(multiplier=0, value=v)
    return DERSettings(
        href="/edev/1/der/1/derg", modesEnabled=0x01DD69AB, setESDelay=30000,
        setESHighFreq=6100, setESHighVolt=10500, setESLowFreq=5900, setESLowVolt=9500,
        setESRampTms=6000, setESRandomDelay=0, setGradW=1000,
        setMaxChargeRateVA=ApparentPower(multiplier=0, value=6500), setMaxChargeRateW=w(6500),
        setMaxDischargeRateVA=ApparentPower(multiplier=0, value=6500),
        setMaxDischargeRateW=w(6500), setMaxV=VoltageRMS(multiplier=0, value=250),
        setMaxVA=ApparentPower(multiplier=0, value=6500),
        setMaxVar=ReactivePower(multiplier=0, value=3000),
        setMaxVarNeg=ReactivePower(multiplier=0, value=3000), setMaxW=w(6500),
        setMaxWh=WattHour(multiplier=3, value=60), setMinV=VoltageRMS(multiplier=0, value=200),
        setSoftGradW=1000, setVRef=VoltageRMS(multiplier=0, value=208),
        setVRefOfs=VoltageRMS(multiplier=0, value=0), updatedTime=1670691670)


def mirror_meter_reading() -> MirrorMeterReading:
    return MirrorMeterReading(
        mRID=bytes.fromhex("FFFF000100000000000000000000D17E"), description="Active Power",
        Reading=Reading(timePeriod=DateTimeInterval(duration=0, start=1670691685), value=5975),
        ReadingType=ReadingType(accumulationBehaviour=12, flowDirection=19, phase=128,
                                powerOfTenMultiplier=0, uom=38))


_ = FixedVar  # (kept importable for experiments)


def measure(fn, number: int, repeat: int) -> tuple[float, float]:
    times = [t / number for t in timeit.repeat(fn, number=number, repeat=repeat)]
    return min(times) * 1e6, statistics.median(times) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--number", type=int, default=500)
    args = ap.parse_args()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    docs = [("DERControlList (9 controls)", der_control_list()),
            ("DERSettings", der_settings()),
            ("MirrorMeterReading", mirror_meter_reading())]
    print(f"{'document':28} {'bytes':>6} {'parse':>9} {'serialize':>10} {'typed':>9} "
          f"{'lxml rt':>9} {'ratio':>6}   (µs per document, best of {args.repeat}; "
          f"median in brackets)")
    worst = 0.0
    for name, obj in docs:
        data = serialize(obj)
        assert parse(data) == obj
        p_best, p_med = measure(lambda: parse(data), args.number, args.repeat)
        s_best, s_med = measure(lambda: serialize(obj), args.number, args.repeat)
        b_best, b_med = measure(lambda: etree.tostring(etree.fromstring(data, parser)),
                                args.number, args.repeat)
        ratio = (p_best + s_best) / b_best
        worst = max(worst, ratio)
        print(f"{name:28} {len(data):6d} {p_best:9.1f} {s_best:10.1f} {p_best + s_best:9.1f} "
              f"{b_best:9.1f} {ratio:6.2f}x  [{p_med:.1f} / {s_med:.1f} / {b_med:.1f}]")
    print(f"worst ratio {worst:.2f}x (target <= 3x): {'met' if worst <= 3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
