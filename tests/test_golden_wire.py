"""Golden wire tests: what the real EVSE serves and the real PEV posts, against the profile's
normative tables (section 4) written out here, independently of sepgw's constants.

The EVSE and the PEV are sepgw's own (``tests.test_pev_client.World``: EVSEResources, the HTTP
resource, the port controller with the j3072 policy, and J3072Client) on one fake clock. Every
document is taken as bytes off the in-memory wire and read back with lxml, never with sepgw's
codec; the EVSE's tree is walked by following links from /dcap, as a client would.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from zope.interface import implementer

from sepgw.config import load
from tests.helpers import ETC
from tests.test_pev_client import BASE, World

NS = "urn:ieee:std:2030.5:ns"
Q = f"{{{NS}}}"

# --- The profile's tables, written out --------------------------------------------------------

#: Table 4, Subscribable Resources (4.1.4): the EVSE MUST make these subscribable.
TABLE_4 = ("DERControlList", "DefaultDERControl", "FunctionSetAssignmentsList", "DERProgramList")

#: 4.1.4: DERProgramList pollRate is 1 s, fixed. 4.7.2: the EVSE SHOULD default the EndDevice
#: and MirrorUsagePoint postRates, and the EndDeviceList and MirrorUsagePointList pollRates,
#: to 15 s.
DERPROGRAMLIST_POLL_RATE = 1
DEFAULT_RATE = 15

#: Table 5, Required Management Information Functions: function -> (2030.5 elements, type).
#: The profile writes opModHFRMustTrip, opModLFRMustTrip, opModHVRMustTrip and
#: opModLVRMustTrip; IEEE 2030.5's element names have "RT" (opModHFRTMustTrip...).
TABLE_5: dict[str, tuple[tuple[str, ...], str]] = {
    "Constant Power Factor": (("opModFixedPFInjectW",), "DERControl"),
    "Volt-Var Curve": (("opModVoltVar",), "DERControl"),
    "Watt-Var Curve": (("opModWattVar",), "DERControl"),
    "Constant Var": (("opModFixedVar",), "DERControl"),
    "Volt-Watt Curve": (("opModVoltWatt",), "DERControl"),
    "High Frequency Trip": (("opModHFRTMustTrip",), "DERControl"),
    "Low Frequency Trip": (("opModLFRTMustTrip",), "DERControl"),
    "Limit Active Power": (("opModMaxLimW",), "DERControl"),
    "Enter Service": (("setESDelay", "setESHighFreq", "setESHighVolt", "setESLowFreq",
                       "setESLowVolt", "setESRampTms", "setESRandomDelay"), "DefaultDERControl"),
    "High Frequency Droop": (("opModFreqDroop",), "DERControl"),
    "Low Frequency Droop": (("opModFreqDroop",), "DERControl"),
    "High Voltage Trip": (("opModHVRTMomentaryCessation", "opModHVRTMustTrip"), "DERControl"),
    "Low Voltage Trip": (("opModLVRTMomentaryCessation", "opModLVRTMustTrip"), "DERControl"),
}

#: Table 6, the MirrorMeterReadings' required ReadingType fields (4.7.2): description ->
#: {field: value}; "present" means the field must be there, with any value.
TABLE_6_READINGS: dict[str, dict[str, str]] = {
    "Active Power": {"uom": "38", "phase": "128", "flowDirection": "19",
                     "accumulationBehaviour": "12", "powerOfTenMultiplier": "present"},
    "Reactive Power": {"uom": "63", "phase": "128", "flowDirection": "19",
                       "accumulationBehaviour": "12", "powerOfTenMultiplier": "present"},
    "Voltage": {"uom": "29", "phase": "128", "accumulationBehaviour": "12",
                "powerOfTenMultiplier": "present"},
    "Frequency": {"uom": "33", "phase": "128", "accumulationBehaviour": "12",
                  "powerOfTenMultiplier": "present"},
}

#: Table 6, the other rows: monitoring information -> (resource, 2030.5 elements). The
#: profile writes PEVInfo:timeChargelsNeeded and PEVInfo:timeChargingStatus; the 2030.5
#: elements are timeChargeIsNeeded and timeChargingStatusPEV.
TABLE_6_STATUS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Operational State": ("DERStatus", ("operationalModeStatus",)),
    "Connection Status": ("DERStatus", ("genConnectStatus", "inverterStatus")),
    "Alarm Status": ("DERStatus", ("alarmStatus",)),
    "State of Charge": ("DERStatus", ("stateOfChargeStatus",)),
    "Time of Update": ("DERStatus", ("readingTime",)),
    "Time Charge is Needed": ("PEVInfo", ("timeChargeIsNeeded",)),
    "Target State of Charge": ("PEVInfo", ("targetStateOfCharge",)),
    "Energy Request": ("PEVInfo", ("energyRequestNow",)),
    "Minimum Charging Duration": ("PEVInfo", ("minimumChargingDuration",)),
    "Duration Maximum Charge Rate": ("DERAvailability", ("maxChargeDuration",)),
    "Duration Maximum Discharge Rate": ("DERAvailability", ("availabilityDuration",)),
    "Time of Reference": ("PEVInfo", ("timeChargingStatusPEV",)),
}


# --- Capturing the wire -----------------------------------------------------------------------


class _Collect:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)


@implementer(IAgent)
class WireTap:
    """Wraps the PEV's agent: records (method, path, body) of every request it sends."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[tuple[str, str, bytes]] = []

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: Any = None) -> Any:
        body = b""
        if bodyProducer is not None:
            sink = _Collect()
            bodyProducer.startProducing(sink)  # sepgw's producer writes synchronously
            body = b"".join(sink.chunks)
        self.sent.append((method.decode(), uri.decode().removeprefix(BASE), body))
        return self.inner.request(method, uri, headers, bodyProducer)


def local(element: Any) -> str:
    return str(etree.QName(element).localname)


def children(element: Any) -> list[str]:
    return [local(e) for e in element if isinstance(e.tag, str)]


class _EVSEWire:
    """Helpers to GET documents from the real EVSE as the PEV, and walk its links."""

    w: World

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        from sepgw.pev.http import _Bytes  # the PEV's own in-memory body producer

        out: list[Any] = []
        d = self.w.agent.request(method.encode(), (BASE + path).encode(),
                                 Headers({b"Content-Type": [b"application/sep+xml"]}),
                                 _Bytes(body) if body is not None else None)
        d.addCallback(lambda r: readBody(r).addCallback(lambda b: out.append((r.code, b))))
        self.w.flush()
        self.assertTrue(out, f"{method} {path}: no answer")  # type: ignore[attr-defined]
        return out[0]

    def get(self, path: str) -> Any:
        code, body = self.request("GET", path)
        self.assertEqual(code, 200, f"GET {path}: {body!r}")  # type: ignore[attr-defined]
        return etree.fromstring(body)

    def link(self, element: Any, name: str) -> str:
        found = element.find(Q + name)
        self.assertIsNotNone(found, f"{local(element)} has no {name}")  # type: ignore[attr-defined]
        return str(found.get("href"))

    def walk(self) -> dict[str, Any]:
        """From /dcap to the PEV's program, by links only: resource name -> element."""
        docs: dict[str, Any] = {"DeviceCapability": self.get("/dcap")}
        dcap = docs["DeviceCapability"]
        docs["EndDeviceList"] = self.get(self.link(dcap, "EndDeviceListLink"))
        docs["MirrorUsagePointList"] = self.get(self.link(dcap, "MirrorUsagePointListLink"))
        edev = docs["EndDeviceList"].find(Q + "EndDevice")
        docs["EndDevice"] = self.get(str(edev.get("href")))
        docs["FunctionSetAssignmentsList"] = self.get(
            self.link(docs["EndDevice"], "FunctionSetAssignmentsListLink"))
        fsa = docs["FunctionSetAssignmentsList"].find(Q + "FunctionSetAssignments")
        docs["DERProgramList"] = self.get(self.link(fsa, "DERProgramListLink"))
        derp = docs["DERProgramList"].find(Q + "DERProgram")
        docs["DefaultDERControl"] = self.get(self.link(derp, "DefaultDERControlLink"))
        docs["DERControlList"] = self.get(self.link(derp, "DERControlListLink") + "?l=255")
        mup = docs["MirrorUsagePointList"].find(Q + "MirrorUsagePoint")
        if mup is not None:
            docs["MirrorUsagePoint"] = self.get(str(mup.get("href")))
        return docs


class Table4Tests(_EVSEWire, SynchronousTestCase):
    """Profile Table 4 (subscribable resources) and the poll and post rates of 4.1.4 and 4.7.2,
    as the real EVSE serves them to a connected PEV."""

    def setUp(self) -> None:
        self.w = World()
        self.w.start()
        self.w.run(2)
        self.docs = self.walk()

    def test_table4_resources_subscribable(self) -> None:
        """Each Table 4 resource, reached by links, says it is subscribable, and a Subscription
        to it POSTed to the PEV's SubscriptionListLink is created (201). V2G-4.5.3.3-1
        V2G-4.1.4-1 V2G-4.1.4-2 V2G-4.1.1-24"""
        sub_list = self.link(self.docs["EndDevice"], "SubscriptionListLink")
        for name in TABLE_4:
            doc = self.docs[name]
            self.assertEqual(local(doc), name)
            self.assertIn(doc.get("subscribable"), ("1", "3"), f"{name} is not subscribable")
            href = str(doc.get("href"))
            body = (f'<Subscription xmlns="{NS}"><subscribedResource>{href}</subscribedResource>'
                    f'<encoding>0</encoding><level>+S1</level><limit>1</limit>'
                    f'<notificationURI>https://[::1]:4443/notify</notificationURI>'
                    f'</Subscription>').encode()
            code, answer = self.request("POST", sub_list, body)
            self.assertEqual(code, 201, f"Subscription to {href}: {answer!r}")

    def test_poll_and_post_rates(self) -> None:
        """DERProgramList pollRate is 1 s; the EndDeviceList and MirrorUsagePointList pollRates
        and the EndDevice and MirrorUsagePoint postRates default to 15 s. V2G-4.1.4-6
        V2G-4.7.2-9 V2G-4.7.2-14"""
        self.assertEqual(self.docs["DERProgramList"].get("pollRate"),
                         str(DERPROGRAMLIST_POLL_RATE))
        self.assertEqual(self.docs["EndDeviceList"].get("pollRate"), str(DEFAULT_RATE))
        self.assertEqual(self.docs["MirrorUsagePointList"].get("pollRate"), str(DEFAULT_RATE))
        self.assertEqual(self.docs["EndDevice"].findtext(Q + "postRate"), str(DEFAULT_RATE))
        self.assertIn("MirrorUsagePoint", self.docs, "the PEV created no MirrorUsagePoint")
        self.assertEqual(self.docs["MirrorUsagePoint"].findtext(Q + "postRate"),
                         str(DEFAULT_RATE))


def _management(directory: Path, change: str) -> dict[str, Any]:
    """The shipped configuration's management section with TOML text CHANGE applied on top
    (tables replaced; ``drop = [names]`` removes some), validated by the configuration loader
    from a copy written in DIRECTORY."""
    text = (ETC / "sepgw.toml").read_text()
    extra = tomllib.loads(change)
    shipped = tomllib.loads(text)
    management = copy.deepcopy(shipped["management"])
    for name in extra.pop("drop", []):
        management.pop(name, None)
    management.update(extra.get("management", {}))
    shipped["management"] = management
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "approved-pevs.txt").write_text((ETC / "approved-pevs.txt").read_text())
    path = directory / "sepgw.toml"
    path.write_text(_toml(shipped))
    return dict(load(path, "evse")["management"])


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for the configuration's shapes (tables, arrays of tables)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {value(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        name = f"{prefix}{k}"
        if isinstance(v, list):
            for item in v:
                out += f"\n[[{name}]]\n" + _toml(item, f"{name}.")
        else:
            out += f"\n[{name}]\n" + _toml(v, f"{name}.")
    return out


class Table5Tests(_EVSEWire, SynchronousTestCase):
    """Profile Table 5 (management information functions and their control type) and the
    DERControl rules of 4.6.3, as the real EVSE serves them."""

    def setUp(self) -> None:
        self.w = World()
        self.w.start()
        self.w.run(2)

    def placement(self) -> dict[str, set[str]]:
        """Where each opMod/setES element in force is served: element -> {"DERControl", ...};
        checks the per-control rules of 4.6.3 on every listed DERControl on the way."""
        docs = self.walk()
        found: dict[str, set[str]] = {}
        dderc = docs["DefaultDERControl"]
        for name in children(dderc):
            if name.startswith("setES"):
                found.setdefault(name, set()).add("DefaultDERControl")
        base = dderc.find(Q + "DERControlBase")
        for name in children(base) if base is not None else []:
            found.setdefault(name, set()).add("DefaultDERControl")
        now = str(int(self.w.clock.seconds()))
        controls = docs["DERControlList"].findall(Q + "DERControl")
        self.assertEqual(len(controls), int(docs["DERControlList"].get("all")))
        for control in controls:
            what = control.findtext(Q + "description")
            base = control.find(Q + "DERControlBase")
            functions = children(base)
            self.assertEqual(len(functions), 1, f"{what}: one opMod per DERControl, "
                                                f"found {functions}")
            self.assertEqual(control.get("responseRequired"), "03", what)
            self.assertTrue(control.get("replyTo"), what)
            interval = control.find(Q + "interval")
            self.assertEqual(interval.findtext(Q + "duration"), "4294967295", what)
            self.assertLessEqual(int(interval.findtext(Q + "start")), int(now), what)
            # Cancelled (2) and superseded (4) controls stay listed, no longer in force.
            if control.findtext(f"{Q}EventStatus/{Q}currentStatus") in ("0", "1"):
                found.setdefault(functions[0], set()).add("DERControl")
        return found

    def assert_table5(self, found: dict[str, set[str]], expected: set[str]) -> None:
        """Every Table 5 function in EXPECTED is served, every served one only as its column-3
        type; nothing else but opModEnergize (DefaultDERControl) is served."""
        table_elements = {e: kind for elements, kind in TABLE_5.values() for e in elements}
        for function, (elements, kind) in TABLE_5.items():
            for element in elements:
                where = found.get(element, set())
                if function in expected:
                    self.assertEqual(where, {kind}, f"{function}: {element} served as {where}")
                else:
                    self.assertEqual(where, set(), f"{function} not in force, yet {element} "
                                                   f"is served")
        extra = {e: w for e, w in found.items() if e not in table_elements}
        self.assertEqual(extra, {"opModEnergize": {"DefaultDERControl"}})

    def test_shipped_site_functions_and_placement(self) -> None:
        """With the shipped site configuration, the EVSE serves Enter Service in the
        DefaultDERControl and each other Table 5 function in force as a DERControl of its own,
        with responseRequired 03, start now and duration 0xFFFFFFFF. V2G-4.6.3-3 V2G-4.6.3-4
        V2G-4.6.3-5 V2G-4.6.3-6 V2G-4.6.3-7 V2G-4.6.3-8 V2G-4.7.1-7 V2G-4.7.1-8 V2G-4.7.1-9
        V2G-4.5.3.5-8"""
        shipped = {"Constant Power Factor", "Volt-Watt Curve", "High Frequency Trip",
                   "Low Frequency Trip", "Enter Service", "High Frequency Droop",
                   "Low Frequency Droop", "High Voltage Trip", "Low Voltage Trip"}
        self.assert_table5(self.placement(), shipped)

    def test_every_table5_function_placed(self) -> None:
        """Each reactive-power function of Table 5 in turn (one at a time), and Limit Active
        Power, are served as the DERControl Table 5 assigns, superseding the shipped ones.
        V2G-4.7.1-4 V2G-4.7.1-7 V2G-4.7.1-8 V2G-4.7.1-9 V2G-4.6.3-3"""
        common = {"Volt-Watt Curve", "High Frequency Trip", "Low Frequency Trip", "Enter Service",
                  "High Frequency Droop", "Low Frequency Droop", "High Voltage Trip",
                  "Low Voltage Trip", "Limit Active Power"}
        variants = {
            "Volt-Var Curve": 'drop = ["constant_pf"]\n[management.volt_var]\n'
                              'points = [[92.0, 44.0], [108.0, -44.0]]\n',
            "Watt-Var Curve": 'drop = ["constant_pf"]\n[management.watt_var]\n'
                              'points = [[20.0, 0.0], [100.0, -44.0]]\n',
            "Constant Var": 'drop = ["constant_pf"]\n[management.constant_var]\nvar_pct = 10.0\n',
            "Constant Power Factor": '[management.constant_pf]\npf = 0.95\n',
        }
        for function, change in variants.items():
            management = _management(Path(self.mktemp()), change + "[management.limit_active_power]\n"
                                              "max_w_pct = 80.0\n")
            self.w.clock.advance(5)
            self.w.resources.update_management(management)
            self.w.run(1.1)
            self.assert_table5(self.placement(), common | {function})


class Table6Tests(SynchronousTestCase):
    """Profile Table 6 (monitoring information) as the real PEV posts it to the EVSE."""

    def setUp(self) -> None:
        self.w = World()
        self.tap = WireTap(self.w.agent.agent)
        self.w.agent.agent = self.tap

    def sent(self, method: str, root: str) -> list[tuple[str, Any]]:
        """(path, element) of every METHOD request whose document element is ROOT."""
        out = []
        for m, path, body in self.tap.sent:
            if m == method and body:
                doc = etree.fromstring(body)
                if local(doc) == root:
                    out.append((path, doc))
        return out

    def test_mirror_meter_readings(self) -> None:
        """The PEV's MirrorUsagePoint has deviceLFDI, roleFlags isPEV only and
        serviceCategoryKind 0; its MirrorMeterReadings for active and reactive power, voltage
        and frequency carry Table 6's ReadingType fields (flowDirection 19 for W and var) and
        no dataQualifier. V2G-4.7.2-27 V2G-4.7.2-28 V2G-4.7.2-22 V2G-4.7.2-23 V2G-4.7.2-24
        V2G-4.7.2-25 V2G-4.7.2-26 V2G-4.7.2-21"""
        self.w.start()
        self.w.run(2)
        [(_, mup)] = self.sent("POST", "MirrorUsagePoint")
        self.assertEqual(mup.findtext(Q + "deviceLFDI").upper(), self.w.ids["pev"].lfdi.upper())
        self.assertEqual(int(mup.findtext(Q + "roleFlags"), 16), 1 << 2)
        self.assertEqual(mup.findtext(Q + "serviceCategoryKind"), "0")
        types: dict[str, dict[str, str]] = {}
        for _, mmr in self.sent("POST", "MirrorMeterReading") + [
                ("", e) for e in mup.iter(Q + "MirrorMeterReading")]:
            rt = mmr.find(Q + "ReadingType")
            if rt is not None:
                types[mmr.findtext(Q + "description")] = {local(e): e.text for e in rt}
        self.assertEqual(set(types), set(TABLE_6_READINGS))
        for name, required in TABLE_6_READINGS.items():
            fields = types[name]
            self.assertNotIn("dataQualifier", fields, name)
            for field, value in required.items():
                self.assertIn(field, fields, f"{name}: ReadingType has no {field}")
                if value != "present":
                    self.assertEqual(fields[field], value, f"{name}: ReadingType {field}")

    def test_readings_signed_and_timestamped(self) -> None:
        """While authorized, each posted Reading has a time stamp; active power from the PEV
        to the grid is positive, from the grid to the PEV negative. V2G-4.7.2-17 V2G-4.7.2-29
        V2G-4.7.2-30 V2G-4.7.2-31"""
        self.w.inverter.power_w = 3000.0  # discharging: PEV to grid
        self.w.start()
        self.w.run(15.1)
        self.w.inverter.power_w = -2000.0  # charging: grid to PEV
        self.w.run(15.1)
        values: list[float] = []
        multipliers: dict[str, int] = {}
        for _, mmr in self.sent("POST", "MirrorMeterReading"):
            name = mmr.findtext(Q + "description")
            rt = mmr.find(Q + "ReadingType")
            if rt is not None:
                multipliers[name] = int(rt.findtext(Q + "powerOfTenMultiplier"))
            for reading in mmr.iter(Q + "Reading"):
                self.assertIsNotNone(reading.findtext(f"{Q}timePeriod/{Q}start"), name)
                if name == "Active Power":
                    values.append(int(reading.findtext(Q + "value"))
                                  * 10.0 ** multipliers[name])
        self.assertEqual(values, [3000.0, -2000.0])

    def test_status_rows(self) -> None:
        """DERStatus, PEVInfo and DERAvailability carry every other Table 6 row, time-stamped;
        operationalModeStatus says the PEV is operating once it is authorized. V2G-4.7.2-17
        V2G-4.5.3.4-6"""
        self.w.start()
        self.w.run(3)
        latest: dict[str, Any] = {}
        for root in ("DERStatus", "PowerStatus", "DERAvailability"):
            found = self.sent("PUT", root)
            self.assertTrue(found, f"the PEV never sent {root}")
            latest[root] = found[-1][1]
        latest["PEVInfo"] = latest["PowerStatus"].find(Q + "PEVInfo")
        self.assertIsNotNone(latest["PEVInfo"])
        for row, (resource, elements) in TABLE_6_STATUS.items():
            for element in elements:
                self.assertIsNotNone(latest[resource].find(Q + element),
                                     f"Table 6 {row}: {resource} has no {element}")
        status = latest["DERStatus"]
        for element in ("operationalModeStatus", "genConnectStatus", "inverterStatus",
                        "stateOfChargeStatus"):
            self.assertIsNotNone(status.find(f"{Q}{element}/{Q}dateTime"), element)
        self.assertIsNotNone(latest["DERAvailability"].find(Q + "readingTime"))
        # 2030.5 OperationalModeStatusType: 0 not applicable, 1 off, 2 operational mode,
        # 3 test mode. Authorized and awake, the PEV is operating.
        self.assertEqual(status.findtext(f"{Q}operationalModeStatus/{Q}value"), "2")
        self.assertEqual(status.findtext(f"{Q}inverterStatus/{Q}value"), "0")


#: Table 2, Profile Function Sets (4.1.1): function set -> (EVSE as server, PEV as client).
TABLE_2: dict[str, tuple[str, str]] = {
    "DeviceCapability": ("MUST", "MUST"),
    "Time": ("MUST", "MUST"),
    "SelfDevice:DER": ("MUST", "MUST"),
    "EndDevice:DeviceInformation": ("MUST", "MUST"),
    "EndDevice:PowerStatus:PEVInfo": ("MUST", "MUST"),
    "EndDevice:DER": ("MUST", "MUST"),
    "EndDevice:FunctionSetAssignment": ("MUST", "MUST"),
    "MirrorUsagePoint": ("MUST", "MUST"),
    "DER (Programs)": ("MUST", "MUST"),
    "Response": ("MUST", "MUST"),
    "Subscription/Notification": ("MUST", "MAY"),
}


class Table2Tests(_EVSEWire, SynchronousTestCase):
    """Profile Table 2 (function sets): the real EVSE serves every one, found by links from
    /dcap, and the real PEV uses every one it MUST, as its requests on the wire show."""

    def setUp(self) -> None:
        self.w = World()
        self.tap = WireTap(self.w.agent.agent)
        self.w.agent.agent = self.tap
        self.w.start()
        self.w.run(3)

    def served(self) -> dict[str, list[str]]:
        """Function set -> the hrefs through which the EVSE serves it (each GET answered 200
        with the expected document), reached by links only."""
        dcap = self.get("/dcap")
        self.assertEqual(local(dcap), "DeviceCapability")
        time_href = self.link(dcap, "TimeLink")
        self.assertEqual(local(self.get(time_href)), "Time")
        sdev_href = self.link(dcap, "SelfDeviceLink")
        sdev = self.get(sdev_href)
        sder_list = self.get(self.link(sdev, "DERListLink"))
        sder = sder_list.find(Q + "DER")
        self.assertIsNotNone(sder, "SelfDevice has no DER")
        docs = self.walk()
        edev = docs["EndDevice"]
        fsa = docs["FunctionSetAssignmentsList"].find(Q + "FunctionSetAssignments")
        derp = docs["DERProgramList"].find(Q + "DERProgram")
        edev_der = self.get(self.link(edev, "DERListLink")).find(Q + "DER")
        self.assertIsNotNone(edev_der, "the PEV's EndDevice has no DER")
        reply_to = {str(c.get("replyTo")) for c in docs["DERControlList"].iter(Q + "DERControl")}
        reply_to.discard("None")
        self.assertTrue(reply_to, "no DERControl names a replyTo")
        self.assertEqual(local(self.get(self.link(dcap, "ResponseSetListLink"))),
                         "ResponseSetList")
        return {
            "DeviceCapability": ["/dcap"],
            "Time": [time_href],
            "SelfDevice:DER": [str(sder.get("href"))],
            "EndDevice:DeviceInformation": [self.link(edev, "DeviceInformationLink")],
            "EndDevice:PowerStatus:PEVInfo": [self.link(edev, "PowerStatusLink")],
            "EndDevice:DER": [str(edev_der.get("href"))],
            "EndDevice:FunctionSetAssignment": [str(fsa.get("href")),
                                                self.link(edev, "FunctionSetAssignmentsListLink")],
            "MirrorUsagePoint": [self.link(dcap, "MirrorUsagePointListLink")],
            "DER (Programs)": [str(derp.get("href"))],
            "Response": sorted(reply_to),
            "Subscription/Notification": [self.link(edev, "SubscriptionListLink")],
        }

    def test_every_function_set_served_and_used(self) -> None:
        """Each Table 2 function set is served by the EVSE (documents reached by links from
        /dcap) and, where Table 2 says MUST for the client, used by the PEV: it sent a request
        to that function set's resources. V2G-4.1.1-3 V2G-4.1.1-1 V2G-4.1.1-2"""
        served = self.served()
        self.assertEqual(set(served), set(TABLE_2))
        used = [(m, path.split("?")[0]) for m, path, _ in self.tap.sent]
        for name, (evse, pev) in TABLE_2.items():
            self.assertEqual(evse, "MUST")
            self.assertTrue(served[name], f"the EVSE serves no {name}")
            if pev != "MUST":
                continue
            hits = [(m, p) for m, p in used
                    if any(p == h or p.startswith(h.rstrip("/") + "/") for h in served[name])]
            self.assertTrue(hits, f"the PEV never used {name} ({served[name]})")


class DeviceInformationTests(SynchronousTestCase):
    """4.5.3.1: what the real PEV puts as DeviceInformation, and what the real EVSE makes of
    it."""

    #: The DeviceInformation elements the profile says the PEV is not required to populate.
    NOT_REQUIRED = ("functionsImplemented", "gpsLocation", "pollRate")

    def test_not_required_fields_left_out_and_authorized(self) -> None:
        """The PEV's DeviceInformation leaves out functionsImplemented, gpsLocation and
        pollRate (read off the wire with lxml), the EVSE stores it, and the PEV is
        authorized all the same. V2G-4.5.3.1-2"""
        w = World()
        tap = WireTap(w.agent.agent)
        w.agent.agent = tap
        w.start()
        w.run(3)
        puts = [etree.fromstring(body) for m, path, body in tap.sent
                if m == "PUT" and body and local(etree.fromstring(body)) == "DeviceInformation"]
        self.assertTrue(puts, "the PEV never put its DeviceInformation")
        for doc in puts:
            for name in self.NOT_REQUIRED:
                self.assertIsNone(doc.find(Q + name), f"DeviceInformation has {name}")
                self.assertIsNone(doc.get(name), f"DeviceInformation has @{name}")
        self.assertIn("di", w.resources.sessions[0].written)
        self.assertTrue(w.port.granted, w.port.reasons)
