"""Round trips of the 2030.5 model: every resource type, every profile section 5 example and
generated objects serialize to documents valid against the official 2030.5-2018 schema and
parse back to equal objects."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from sepgw.model import (
    MEDIA_TYPE, NS, ActivePower, BatteryStatus, DERCurveType, DERUnitRefType,
    NotificationStatus, PowerSourceType, SubscribableType, DateTimeInterval, DefaultDERControl, DERControl,
    DERControlBase, DERControlList, DERControlResponse, DERSettings, DERStatus, EventStatus,
    EventStatusCode, InverterStatus, InverterStatusType, Link, ListLink, MirrorMeterReading,
    MirrorUsagePoint, Model, Notification, Reading, ReadingType, ResponseRequired,
    ResponseStatus, RoleFlags, ServiceKind, Time, VoltageRMS, WattHour, parse, registry,
    serialize,
)
from sepgw.model.der import DERCurve
from sepgw.model.device import DeviceCapability, EndDevice, PEVInfo, PowerStatus
from sepgw.model.units import RealEnergy

from .test_model_helpers import FIXTURES, model_strategy, populate, schema_errors

LFDI = bytes.fromhex("A2038B8645F15C66D889FFBC4352AC0B8CDACBA1")


class _RoundTrip:
    def assertRoundTrip(self, obj: Model) -> bytes:
        data = serialize(obj)
        errors = schema_errors(data)
        self.assertEqual(errors, [], data.decode())  # type: ignore[attr-defined]
        back = parse(data, type(obj))
        self.assertEqual(back, obj)  # type: ignore[attr-defined]
        self.assertIs(type(back), type(obj))  # type: ignore[attr-defined]
        return data


class EveryResourceTests(SynchronousTestCase, _RoundTrip):
    """Every registered resource type, fully populated (every optional element and
    attribute present, lists with several entries), in two value variants."""

    def test_registry_covers_profile_resources(self) -> None:
        """The registry holds every resource the V2G-AC profile and a DME uplink use
        (V2G-4.1.1-3: the function sets of Table 2)."""
        names = set(registry())
        for name in ["DeviceCapability", "Time", "SelfDevice", "EndDevice", "EndDeviceList",
                     "DeviceInformation", "DeviceStatus", "PowerStatus", "DER", "DERList",
                     "DERCapability", "DERSettings", "DERAvailability", "DERStatus",
                     "FunctionSetAssignments", "FunctionSetAssignmentsList", "DERProgram",
                     "DERProgramList", "DERControl", "DERControlList", "DefaultDERControl",
                     "DERCurve", "DERCurveList", "ResponseSet", "ResponseSetList", "Response",
                     "DERControlResponse", "Subscription", "SubscriptionList", "Notification",
                     "MirrorUsagePoint", "MirrorUsagePointList", "MirrorMeterReading",
                     "ReadingType", "Reading", "UsagePoint", "LogEvent", "LogEventList"]:
            self.assertIn(name, names)


def _make_populated_test(cls: type[Model]) -> Any:
    def test(self: EveryResourceTests) -> None:
        for variant in (0, 1):
            self.assertRoundTrip(populate(cls, variant))
    test.__doc__ = (f"A fully populated {cls.__name__} serializes to a schema-valid document "
                    f"and parses back equal.")
    return test


for _name, _cls in sorted(registry().items()):
    setattr(EveryResourceTests, f"test_populated_{_name}", _make_populated_test(_cls))


class Section5ExampleTests(SynchronousTestCase, _RoundTrip):
    """Every XML example of profile section 5 (typos corrected, see
    tests/fixtures/model/README.md)."""

    def test_all_examples_present(self) -> None:
        """All 63 section 5 example documents are fixtures."""
        self.assertEqual(len(list((FIXTURES / "section5").glob("*.xml"))), 63)


def _make_example_test(path: Any) -> Any:
    def test(self: Section5ExampleTests) -> None:
        data = path.read_bytes()
        self.assertEqual(schema_errors(data), [])
        obj = parse(data)
        self.assertEqual(type(obj).__name__, path.stem.split("-", 1)[1])
        out = self.assertRoundTrip(obj)
        # Serializing again is stable.
        self.assertEqual(serialize(parse(out)), out)
    test.__doc__ = (f"Profile section 5 example {path.name} is schema-valid, parses strictly, "
                    f"and round-trips to an equal object through a schema-valid document.")
    return test


for _path in sorted((FIXTURES / "section5").glob("*.xml")):
    setattr(Section5ExampleTests, f"test_example_{_path.stem.replace('-', '_')}",
            _make_example_test(_path))


class ProfileContentTests(SynchronousTestCase, _RoundTrip):
    """Hand-built resources as the profile requires them."""

    def test_default_der_control_energize(self) -> None:
        """DefaultDERControl carries opModEnergize true/false (V2G-4.6.4-2, V2G-4.6.4-3,
        V2G-4.5.3.5-7) and the Enter Service settings of Table 5."""
        for energize in (True, False):
            dderc = DefaultDERControl(
                href="/pev/derp/1/dderc", subscribable=SubscribableType.NON_CONDITIONAL, mRID=bytes(15) + b"\x01",
                description="Default DERC",
                DERControlBase=DERControlBase(opModEnergize=energize),
                setESDelay=30000, setESHighFreq=6100, setESHighVolt=10500, setESLowFreq=5900,
                setESLowVolt=9500, setESRampTms=6000, setESRandomDelay=0)
            data = self.assertRoundTrip(dderc)
            self.assertIn(f"<opModEnergize>{str(energize).lower()}</opModEnergize>".encode(),
                          data)

    def test_management_information_der_control(self) -> None:
        """A management-information DERControl has responseRequired bits 0 and 1
        (V2G-4.6.3-4, V2G-4.6.3-8), duration 4294967295 (V2G-4.6.3-6) and a single opMod
        (V2G-4.6.3-7); responseRequired is written as the HexBinary8 '03'."""
        ctl = DERControl(
            href="/pev/derp/1/derc/1", replyTo="/rsps/1/rsp",
            responseRequired=ResponseRequired.MESSAGE_RECEIVED
            | ResponseRequired.SPECIFIC_RESPONSE,
            mRID=bytes.fromhex("CCCC000900000000000000000000D17E"), creationTime=1670691600,
            EventStatus=EventStatus(currentStatus=EventStatusCode.ACTIVE, dateTime=1670691600,
                                    potentiallySuperseded=False),
            interval=DateTimeInterval(duration=0xFFFFFFFF, start=1670691600),
            DERControlBase=DERControlBase(opModHVRTMustTrip=Link(href="/pev/derp/1/dc/5")))
        data = self.assertRoundTrip(ctl)
        self.assertIn(b'responseRequired="03"', data)
        self.assertIn(b"<duration>4294967295</duration>", data)
        self.assertIn(b'<opModHVRTMustTrip href="/pev/derp/1/dc/5"/>', data)

    def test_fixed_w_signed(self) -> None:
        """opModFixedW is a signed percentage: positive discharges, negative charges
        (V2G-4.8.2-2)."""
        for w in (2500, -2500, 10000, -10000):
            base = DERControlBase(opModFixedW=w)
            ctl = DERControl(mRID=b"\x01" * 16, creationTime=0,
                             EventStatus=EventStatus(currentStatus=EventStatusCode.SCHEDULED,
                                                     dateTime=0, potentiallySuperseded=False),
                             interval=DateTimeInterval(duration=60, start=0),
                             DERControlBase=base)
            self.assertRoundTrip(DERControlList(all=1, results=1, DERControl=[ctl]))

    def test_pev_dersettings_with_setmaxwh(self) -> None:
        """The PEV's DERSettings includes setMaxWh (V2G-4.6.2.1-2, V2G-4.9.4-1) and setVRef
        rather than setVNom for the site (V2G-4.9.5-1)."""
        s = DERSettings(setGradW=1000, setMaxW=ActivePower(multiplier=0, value=6500),
                        setMaxWh=WattHour(multiplier=3, value=60),
                        setVRef=VoltageRMS(multiplier=0, value=208), updatedTime=1670691670)
        data = self.assertRoundTrip(s)
        self.assertLess(data.index(b"<setMaxW>"), data.index(b"<setMaxWh>"))
        self.assertLess(data.index(b"<setMaxWh>"), data.index(b"<setVRef>"))

    def test_inverter_status_values(self) -> None:
        """DERStatus inverterStatus carries 0 (authorized), 2 (sleeping) and 3 (not
        authorized) as named InverterStatus members (V2G-4.7.2-3, V2G-4.7.2-4, V2G-4.7.2-5,
        V2G-4.5.3.4-6), with the readingTime date-time stamp (V2G-4.7.2-17)."""
        for status, code in ((InverterStatus.NOT_APPLICABLE, 0), (InverterStatus.SLEEPING, 2),
                             (InverterStatus.STARTING, 3)):
            ders = DERStatus(href="/edev/1/der/1/ders", readingTime=1670691685,
                             inverterStatus=InverterStatusType(dateTime=1670691685,
                                                               value=status))
            data = self.assertRoundTrip(ders)
            self.assertIn(f"<value>{code}</value>".encode(), data)
            back = parse(data, DERStatus)
            assert back.inverterStatus is not None
            self.assertIs(back.inverterStatus.value, status)

    def test_pev_mirror_usage_point(self) -> None:
        """A PEV MirrorUsagePoint has deviceLFDI (V2G-4.7.2-23), roleFlags with only isPEV
        (V2G-4.7.2-24, V2G-4.7.2-25, written '0004'), serviceCategoryKind electricity
        (V2G-4.7.2-26), and ReadingTypes without dataQualifier (V2G-4.7.2-28)."""
        mmr = MirrorMeterReading(
            mRID=bytes.fromhex("FFFF000100000000000000000000D17E"), description="Active Power",
            ReadingType=ReadingType(accumulationBehaviour=12, flowDirection=19, phase=128,
                                    powerOfTenMultiplier=0, uom=38))
        mup = MirrorUsagePoint(mRID=bytes.fromhex("FFFF000000000000000000000000D17E"),
                               description="PEV MUP", roleFlags=RoleFlags.IS_PEV,
                               serviceCategoryKind=ServiceKind.ELECTRICITY, status=1,
                               deviceLFDI=LFDI, MirrorMeterReading=[mmr])
        data = self.assertRoundTrip(mup)
        self.assertIn(b"<roleFlags>0004</roleFlags>", data)
        self.assertNotIn(b"dataQualifier", data)
        self.assertIs(parse(data, MirrorUsagePoint).roleFlags, RoleFlags.IS_PEV)

    def test_meter_reading_sign(self) -> None:
        """Readings carry signed values: grid-to-PEV power is negative (V2G-4.7.2-30,
        V2G-4.7.2-31), with the timePeriod stamp (V2G-4.7.2-17)."""
        for v in (5975, -6000):
            mmr = MirrorMeterReading(
                mRID=bytes(16), Reading=Reading(
                    timePeriod=DateTimeInterval(duration=0, start=1670691685), value=v))
            self.assertRoundTrip(mmr)

    def test_pevinfo(self) -> None:
        """PowerStatus carries PEVInfo with its time stamps (V2G-4.5.3.2-1,
        V2G-4.7.2-17)."""
        ps = PowerStatus(href="/edev/1/pwrstat", batteryStatus=BatteryStatus.NORMAL,
                         changedTime=1670691685, currentPowerSource=PowerSourceType.BATTERY, PEVInfo=PEVInfo(
                             chargingPowerNow=ActivePower(multiplier=0, value=6000),
                             energyRequestNow=RealEnergy(multiplier=3, value=24),
                             maxForwardPower=ActivePower(multiplier=0, value=6500),
                             minimumChargingDuration=14400, targetStateOfCharge=8500,
                             timeChargeIsNeeded=1670713200,
                             timeChargingStatusPEV=1670691685))
        self.assertRoundTrip(ps)

    def test_device_capability_links(self) -> None:
        """DeviceCapability with the four links the EVSE populates and no
        DERProgramListLink (V2G-4.5.1-3, V2G-4.5.1-4) is written in schema order."""
        dcap = DeviceCapability(href="/dcap", pollRate=15, TimeLink=Link(href="/tm"),
                                EndDeviceListLink=ListLink(href="/edev", all=1),
                                MirrorUsagePointListLink=ListLink(href="/mup", all=0),
                                SelfDeviceLink=Link(href="/sdev"))
        data = self.assertRoundTrip(dcap)
        self.assertEqual(
            data,
            b'<DeviceCapability xmlns="urn:ieee:std:2030.5:ns" href="/dcap" pollRate="15">'
            b'<TimeLink href="/tm"/><EndDeviceListLink href="/edev" all="1"/>'
            b'<MirrorUsagePointListLink href="/mup" all="0"/><SelfDeviceLink href="/sdev"/>'
            b'</DeviceCapability>')

    def test_end_device_lfdi_sfdi(self) -> None:
        """EndDevice lFDI (20 bytes, upper-case hex) and sFDI from the profile example
        round-trip in schema order."""
        ed = EndDevice(href="/edev/1", lFDI=LFDI, sFDI=434902610920, changedTime=1670691600,
                       enabled=True, postRate=15)
        data = self.assertRoundTrip(ed)
        self.assertIn(b"<lFDI>A2038B8645F15C66D889FFBC4352AC0B8CDACBA1</lFDI>", data)

    def test_notification_xsi_type(self) -> None:
        """A Notification carries its resource with xsi:type (V2G-4.1.1-24) and parses back
        into the right class."""
        dderc = DefaultDERControl(mRID=bytes(16),
                                  DERControlBase=DERControlBase(opModEnergize=True))
        n = Notification(subscribedResource="/pev/derp/1/dderc", Resource=dderc,
                         status=NotificationStatus.DEFAULT,
                         subscriptionURI="https://[fd12::1]:443/edev/1/subs/2")
        data = self.assertRoundTrip(n)
        self.assertIn(b'xsi:type="DefaultDERControl"', data)
        self.assertIsInstance(parse(data, Notification).Resource, DefaultDERControl)

    def test_response_status(self) -> None:
        """DERControlResponse status decodes to named ResponseStatus members (Event Received
        1, Event Started 2); an unnamed UInt8 status is kept as an int."""
        for status in (ResponseStatus.EVENT_RECEIVED, ResponseStatus.EVENT_STARTED, 200):
            r = DERControlResponse(createdDateTime=1670695205, endDeviceLFDI=LFDI,
                                   status=status, subject=bytes(16))
            back = parse(self.assertRoundTrip(r), DERControlResponse)
            self.assertEqual(back.status, status)
            self.assertEqual(type(back.status), type(status))

    def test_der_curve_bounds(self) -> None:
        """A DERCurve with the maximum 10 CurveData points round-trips."""
        from sepgw.model import CurveData
        c = DERCurve(mRID=bytes(16), creationTime=0,
                     CurveData=[CurveData(xvalue=i, yvalue=-i) for i in range(10)],
                     curveType=DERCurveType.opModVoltVar, xMultiplier=-2, yMultiplier=-2,
                     yRefType=DERUnitRefType.SET_MAX_W)
        self.assertRoundTrip(c)

    def test_time(self) -> None:
        """Time values are Unix seconds (int64), negative offsets included."""
        self.assertRoundTrip(Time(currentTime=1670691660, dstEndTime=1667728800,
                                  dstOffset=3600, dstStartTime=1647079200, quality=7,
                                  tzOffset=-28800))


class SerializationFormTests(SynchronousTestCase):
    """The bytes the serializer writes."""

    def test_default_namespace_utf8(self) -> None:
        """Output uses the 2030.5 namespace as the default namespace (no prefix), UTF-8,
        and no XML declaration unless asked for."""
        obj = DERSettings(setGradW=0, setMaxW=ActivePower(multiplier=0, value=1),
                          updatedTime=1)
        data = serialize(obj)
        self.assertTrue(data.startswith(b'<DERSettings xmlns="urn:ieee:std:2030.5:ns">'))
        root = etree.fromstring(data)
        self.assertEqual(root.nsmap, {None: NS})
        decl = serialize(obj, xml_declaration=True)
        self.assertTrue(decl.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n'))
        self.assertEqual(parse(decl), obj)

    def test_escaping(self) -> None:
        """Text and attribute values are escaped (&, <, >, quotes, CR) and survive a round
        trip."""
        from sepgw.model import DERProgram
        p = DERProgram(href='/a?s=1&l="2"', mRID=bytes(16), description="a<b>&c\r\n", primacy=1)
        data = serialize(p)
        self.assertEqual(schema_errors(data), [])
        self.assertEqual(parse(data), p)

    def test_media_type(self) -> None:
        """The 2030.5 media type constant is application/sep+xml."""
        self.assertEqual(MEDIA_TYPE, "application/sep+xml")


# -- property tests ---------------------------------------------------------------------------

_PROPERTY_TYPES = ["DERSettings", "DERControlList", "DERStatus", "MirrorUsagePoint",
                   "Notification", "DERCurve", "EndDeviceList", "DERCapability"]


class PropertyTests(SynchronousTestCase):
    """Hypothesis-generated objects round-trip and validate."""


def _make_property_test(name: str) -> Any:
    cls = registry()[name]

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(model_strategy(cls))
    def test(self: PropertyTests, obj: Any) -> None:
        data = serialize(obj)
        self.assertEqual(schema_errors(data), [], data.decode())
        self.assertEqual(parse(data, cls), obj)
    test.__doc__ = (f"Generated {name} objects serialize to schema-valid documents and parse "
                    f"back equal.")
    return test


for _name in _PROPERTY_TYPES:
    setattr(PropertyTests, f"test_property_{_name}", _make_property_test(_name))


class FastPathAgreementTests(SynchronousTestCase):
    """The generated fast encoder/decoder (sepgw/model/_fast.py) agree exactly with the
    generic codec that defines the behaviour."""


def _generic_serialize(obj: Model) -> bytes:
    from sepgw.model.codec import _encode
    spec = type(obj)._sep_spec
    out: list[str] = []
    _encode(spec, obj, out, spec.root_head, spec.root_close, spec.tag)
    return "".join(out).encode()


def _generic_parse(data: bytes) -> Any:
    from sepgw.model.codec import _Ctx, _decode, _lxml_parser, registry as reg
    root = etree.fromstring(data, _lxml_parser())
    cls = reg()[etree.QName(root).localname]
    return _decode(cls._sep_spec, root, cls._sep_spec.tag, _Ctx(False, 16), 1)


def _make_agreement_test(name: str) -> Any:
    cls = registry()[name]

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(model_strategy(cls))
    def test(self: FastPathAgreementTests, obj: Any) -> None:
        from sepgw.model import _fast
        from sepgw.model.codec import _lxml_parser
        generic = _generic_serialize(obj)
        self.assertEqual(serialize(obj), generic)
        fast = _fast.decoder(cls)(etree.fromstring(generic, _lxml_parser()), 1, 16)
        self.assertEqual(fast, _generic_parse(generic))
    test.__doc__ = (f"For generated {name} objects the fast encoder writes the generic "
                    f"encoder's bytes and the fast decoder (without falling back) reads "
                    f"what the generic decoder reads.")
    return test


for _name in ["DERControlList", "DERSettings", "MirrorMeterReading", "DERStatus",
              "EndDeviceList", "DERCapability"]:
    setattr(FastPathAgreementTests, f"test_agree_{_name}", _make_agreement_test(_name))
