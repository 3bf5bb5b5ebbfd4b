"""The EVSE's 2030.5 server in memory: its twisted.web resource driven with StubTreq on a
fake clock.

The client identity normally comes from the TLS certificate; here the app is given an
``identify`` function that maps a test header to a PeerIdentity from the test PKI (the TLS
path itself is proven in tests/test_security_tls.py and end to end in
tests/test_e2e_evse.py).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from treq.testing import StubTreq

from sepgw.config import load
from sepgw.evse import tree
from sepgw.evse.http import EVSEHTTPServer
from sepgw.evse.tree import EVSEResources
from sepgw.model import (
    DERControlList,
    DERProgramList,
    DERSettings,
    DefaultDERControl,
    DeviceCapability,
    EndDevice,
    EndDeviceList,
    MirrorUsagePoint,
    ResponseList,
    SubscriptionList,
    parse,
)
from sepgw.security.identity import PeerIdentity
from sepgw.security.pki import issue_pev
from sepgw.security.tls import TLSSettings
from tests import scripted_pev as script
from tests.helpers import ETC, REPO, shared_pki
from tests.test_model_helpers import schema_errors

BASE = "https://evse.test"
T0 = 1_790_000_000


def identities() -> dict[str, PeerIdentity]:
    pki = shared_pki()
    if not (pki / "pev2.pem").exists():
        issue_pev(pki, "pev2", "1.3.6.1.4.1.32473.2.2")
    ca = (pki / "serca.pem",)
    return {name: TLSSettings(pki / f"{name}.pem", pki / f"{name}.key", ca).identity
            for name in ("pev", "pev2")}


class ServerFixture:
    """The EVSE server app on a fake clock, with two ports."""

    def __init__(self, ports: int = 2, **server: Any) -> None:
        config = load(ETC / "sepgw.toml", "evse")
        self.config = config
        self.clock = Clock()
        self.clock.advance(T0)
        counter = iter(range(1, 1_000_000))
        self.resources = EVSEResources(
            server=dict(config["server"], **server), site=config["site"], management=config["management"],
            ports=[f"port{i + 1}" for i in range(ports)], clock=self.clock,
            mrid=lambda: next(counter).to_bytes(16, "big"))
        self.ids = identities()
        self.server = EVSEHTTPServer(self.resources, max_body=4096, identify=self._identify)
        self.stub = StubTreq(self.server.resource())
        self.bodies: list[tuple[str, bytes]] = []
        """Every 200 response body, with its request, for schema validation."""

    def _identify(self, request: Any) -> PeerIdentity | None:
        name = request.getHeader(b"x-test-client")
        return self.ids.get(name.decode()) if name else None

    def http(self, client: str = "pev") -> script.HTTP:
        @inlineCallbacks
        def http(method: str, href: str, body: bytes | None) -> Any:
            headers = {b"X-Test-Client": [client.encode()]}
            if body is not None:
                headers[b"Content-Type"] = [script.MEDIA.encode()]
            response = yield self.stub.request(method, BASE + href, headers=headers,
                                               data=body)
            data = yield response.content()
            if response.code == 200:
                self.bodies.append((f"{method} {href}", data))
            flat = {k.decode().lower(): v[0].decode()
                    for k, v in response.headers.getAllRawHeaders()}
            return response.code, flat, data
        return http

    def call(self, method: str, href: str, body: bytes | None = None, client: str = "pev",
             ctype: str | None = script.MEDIA) -> tuple[int, dict[str, str], bytes]:
        headers = {b"X-Test-Client": [client.encode()]} if client else {}
        if body is not None and ctype is not None:
            headers[b"Content-Type"] = [ctype.encode()]
        d = self.stub.request(method, BASE + href, headers=headers, data=body)
        results: list[Any] = []
        d.addCallback(lambda r: r.content().addCallback(lambda b: results.append((r, b))))
        self.stub.flush()
        response, data = results[0]
        flat = {k.decode().lower(): v[0].decode()
                for k, v in response.headers.getAllRawHeaders()}
        return response.code, flat, data

    def run_script(self, client: str = "pev") -> script.Report:
        pev = script.ScriptedPEV(self.http(client), self.ids[client].lfdi, "/dcap",
                                 lambda: int(self.clock.seconds()))
        d: Deferred[script.Report] = pev.run()
        self.stub.flush()
        results: list[Any] = []
        d.addBoth(results.append)
        if not isinstance(results[0], script.Report):
            results[0].raiseException()
        return results[0]


class SequenceTests(SynchronousTestCase):
    """The profile's section 5 sequence, every href discovered from links."""

    def setUp(self) -> None:
        self.f = ServerFixture()
        self.report = self.f.run_script()

    def test_whole_sequence(self) -> None:
        """A PEV completes discovery, information exchange, management information,
        responses, metrology, subscriptions and periodic operations. V2G-4.1.1-1"""
        self.assertEqual(self.report.steps, [
            "resource discovery", "site limits", "information sent",
            "management information", "responses", "metrology", "subscriptions",
            "periodic"])

    def test_every_response_body_schema_valid(self) -> None:
        """Every document the server answered in the sequence validates against the
        IEEE 2030.5-2018 schema. V2G-4.1-1"""
        edev = self.report.hrefs["edev"]
        program = self.report.hrefs["dderc"].rpartition("/")[0]
        extra = ["/rsps?l=5", "/mup?l=5", self.report.hrefs["mup"], f"{edev}/sub?l=5",
                 self.report.hrefs["subscriptions"], f"{program}/actderc?l=20",
                 f"{program}/dc?l=20", f"{program}", self.report.controls[0].replyTo + "?l=3",
                 self.report.controls[0].href, f"{edev}/di", f"{edev}/ps",
                 f"{edev}/der/1/dercap", f"{edev}/der/1/dera", self.report.hrefs["dstat"],
                 "/rsps/0", "/sdev/der/1"]
        for href in extra:
            code, _, body = self.f.call("GET", href)
            self.assertEqual(code, 200, href)
            self.f.bodies.append((f"GET {href}", body))
        self.assertGreater(len(self.f.bodies), 40)
        for request, body in self.f.bodies:
            self.assertEqual(schema_errors(body), [], request)

    def test_device_capability_links(self) -> None:
        """DeviceCapability links EndDeviceList, SelfDevice, Time, MirrorUsagePointList and
        ResponseSetList, and never a DERProgramList. V2G-4.5.1-3 V2G-4.5.1-4 V2G-4.1.1-4"""
        dcap = self.report.documents["/dcap"]
        self.assertIsInstance(dcap, DeviceCapability)
        for link in ("EndDeviceListLink", "SelfDeviceLink", "TimeLink",
                     "MirrorUsagePointListLink", "ResponseSetListLink"):
            self.assertIsNotNone(getattr(dcap, link), link)
        self.assertIsNone(dcap.DERProgramListLink)

    def test_end_device_created_and_populated(self) -> None:
        """The EVSE creates the PEV's EndDevice with its LFDI/SFDI and the links of 4.5.3,
        and no RegistrationLink. V2G-4.5.3-2 V2G-4.5.3-6 V2G-4.5.3-7"""
        edev = self.report.documents[self.report.hrefs["edev"]]
        self.assertIsInstance(edev, EndDevice)
        ident = self.f.ids["pev"]
        self.assertEqual(bytes(edev.lFDI).hex().upper(), ident.lfdi)
        self.assertEqual(edev.sFDI, ident.sfdi)
        for link in ("DeviceInformationLink", "PowerStatusLink", "SubscriptionListLink",
                     "DERListLink", "FunctionSetAssignmentsListLink"):
            self.assertIsNotNone(getattr(edev, link), link)
        self.assertIsNone(edev.RegistrationLink)
        self.assertEqual(edev.postRate, 15)

    def test_pev_sees_only_its_own_end_device(self) -> None:
        """With two PEVs on two ports, each EndDeviceList lists only the requester's
        EndDevice, and a PEV gets 403 for the other's resources. V2G-4.5.3-2"""
        other = self.f.run_script("pev2")
        code, _, body = self.f.call("GET", "/edev?l=10", client="pev2")
        self.assertEqual(code, 200)
        listing = parse(body, EndDeviceList)
        self.assertEqual([e.href for e in listing.EndDevice], [other.hrefs["edev"]])
        self.assertNotEqual(other.hrefs["edev"], self.report.hrefs["edev"])
        code, _, body = self.f.call("GET", self.report.hrefs["edev"], client="pev2")
        self.assertEqual(code, 403, body)
        code, _, _ = self.f.call("PUT", self.report.hrefs["dstat"],
                                 script.der_status(T0, 0), client="pev2")
        self.assertEqual(code, 403)

    def test_function_set_structure(self) -> None:
        """The EndDevice's DERList holds one DER linking DERCapability, DERSettings,
        DERAvailability and DERStatus; its FunctionSetAssignmentsList holds one FSA with a
        TimeLink and a DERProgramListLink; the DERProgramList holds a DERProgram with
        DefaultDERControl and DERControlList links; SelfDevice has its DER.
        V2G-4.1.1-8 V2G-4.1.1-16 V2G-4.1.1-20 V2G-4.5.1-1 V2G-4.5.3-1 V2G-4.5.3.4-1
        V2G-4.5.3.5-1 V2G-4.5.3.5-2 V2G-4.5.3.5-4 V2G-4.5.3.5-5 V2G-4.5.3.5-6 V2G-4.5.3.5-9"""
        from sepgw.model import DERList, FunctionSetAssignmentsList

        edev = self.report.hrefs["edev"]
        ders = parse(self.f.call("GET", f"{edev}/der?l=5")[2], DERList)
        self.assertEqual(ders.all, 1)
        der = ders.DER[0]
        for link in ("DERCapabilityLink", "DERSettingsLink", "DERAvailabilityLink",
                     "DERStatusLink"):
            self.assertIsNotNone(getattr(der, link), link)
        fsas = parse(self.f.call("GET", f"{edev}/fsa?l=5")[2], FunctionSetAssignmentsList)
        self.assertEqual(fsas.all, 1)
        fsa = fsas.FunctionSetAssignments[0]
        self.assertIsNotNone(fsa.TimeLink)
        programs = parse(self.f.call("GET", fsa.DERProgramListLink.href + "?l=5")[2],
                         DERProgramList)
        self.assertEqual(programs.all, 1)
        program = programs.DERProgram[0]
        self.assertIsNotNone(program.DefaultDERControlLink)
        self.assertIsNotNone(program.DERControlListLink)
        sdev_ders = parse(self.f.call("GET", "/sdev/der?l=5")[2], DERList)
        self.assertIsNotNone(sdev_ders.DER[0].DERSettingsLink)

    def test_poll_rate_as_fast_as_one_second(self) -> None:
        """The EVSE can set pollRates to 1 s (server.poll_rate = 1). V2G-4.1.4-5"""
        fixture = ServerFixture(poll_rate=1)
        fixture.run_script()
        for href in ("/edev?l=1", "/mup?l=1", "/dcap"):
            doc = parse(fixture.call("GET", href)[2])
            self.assertEqual(doc.pollRate, 1, href)

    def test_site_limits(self) -> None:
        """SelfDevice DERSettings carries the configured site limits: setMaxW, setVRef and
        no setVNom. V2G-4.6.1-1 V2G-4.6.1.1-1 V2G-4.9.5-1 V2G-4.9.5-2 V2G-4.9.6-1"""
        settings = next(d for d in self.report.documents.values() if isinstance(d, DERSettings))
        self.assertEqual(settings.setMaxW.value * 10 ** settings.setMaxW.multiplier,
                         self.f.config["site"]["max_w"])
        self.assertEqual(settings.setVRef.value * 10 ** settings.setVRef.multiplier, 240)
        self.assertIsNone(settings.setVNom)

    def test_pev_writes_stored_and_fed_to_session(self) -> None:
        """Every PUT is stored with its arrival time and readable back; a DeviceInformation
        without functionsImplemented, gpsLocation or pollRate is accepted. V2G-4.1.1-10
        V2G-4.1.1-12 V2G-4.1.1-14 V2G-4.5.3.1-2"""
        session = self.f.resources.sessions[0]
        self.assertEqual(set(session.written), {"di", "ps", "dercap", "ders", "dera", "dstat"})
        self.assertEqual(session.written["dstat"].received, T0)
        code, headers, body = self.f.call("GET", f"{self.report.hrefs['edev']}/der/1/ders")
        self.assertEqual(code, 200)
        self.assertEqual(parse(body, DERSettings).setMaxWh.value, 60)

    def test_management_information(self) -> None:
        """Each management-information DERControl carries one opMod, starts now, lasts
        4294967295 s and requires responses (bits 0 and 1); functions whose values equal the
        defaults are sent too. V2G-4.6.3-4 V2G-4.6.3-5 V2G-4.6.3-6 V2G-4.6.3-7 V2G-4.6.3-8
        V2G-4.5.3.5-10 V2G-4.9.1-1"""
        controls = self.report.controls
        self.assertEqual(len(controls), len(self.f.resources.management(
            self.f.resources.sessions[0]).current()))
        self.assertGreaterEqual(len(controls), 9)
        for control in controls:
            self.assertEqual(control.interval.start, T0)
            self.assertEqual(control.interval.duration, 4294967295)
            self.assertEqual(int(control.responseRequired) & 0x3, 0x3)
            base = control.DERControlBase
            set_fields = [n for n in type(base).__dataclass_fields__
                          if getattr(base, n) is not None]
            self.assertEqual(len(set_fields), 1, set_fields)
        # etc/sepgw.toml enables seven curve functions: volt-watt and the six trip and
        # momentary-cessation curves.
        self.assertEqual(len(self.report.curves), 7)
        # Frequency droop is configured with nothing but its (IEEE 1547 default) values, and
        # is served anyway (V2G-4.9.1-1).
        self.assertTrue(any(c.DERControlBase.opModFreqDroop is not None for c in controls))

    def test_der_program_list_poll_rate(self) -> None:
        """The DERProgramList pollRate is 1 s. V2G-4.1.4-6"""
        programs = self.report.documents["derpl"]
        self.assertIsInstance(programs, DERProgramList)
        self.assertEqual(programs.pollRate, 1)

    def test_default_control_not_energized_until_granted(self) -> None:
        """opModEnergize is false until the EVSE grants, true after, false after revoking.
        V2G-4.5.3.5-7 V2G-4.6.4-2 V2G-4.6.4-3"""
        self.assertIs(self.report.energize, False)
        dderc = self.report.hrefs["dderc"]
        session = self.f.resources.sessions[0]
        self.f.resources.set_energize(session, True)
        self.assertIs(parse(self.f.call("GET", dderc)[2], DefaultDERControl)
                      .DERControlBase.opModEnergize, True)
        self.f.resources.set_energize(session, False)
        self.assertIs(parse(self.f.call("GET", dderc)[2], DefaultDERControl)
                      .DERControlBase.opModEnergize, False)

    def test_responses_recorded(self) -> None:
        """Received (1) and started (2) responses are recorded per control and listed.
        V2G-4.1.1-22"""
        session = self.f.resources.sessions[0]
        for control in self.report.controls:
            self.assertEqual(session.statuses(bytes(control.mRID)), {1, 2})
        rsp = self.report.controls[0].replyTo
        listing = parse(self.f.call("GET", f"{rsp}?l=100")[2], ResponseList)
        self.assertEqual(listing.all, 2 * len(self.report.controls))

    def test_mirror_usage_point(self) -> None:
        """The PEV's MirrorUsagePoint is created (201 + Location) with its four
        MirrorMeterReadings and readings kept. V2G-4.7.2-20 V2G-4.1.1-18"""
        mup = parse(self.f.call("GET", self.report.hrefs["mup"])[2], MirrorUsagePoint)
        self.assertEqual(len(mup.MirrorMeterReading), 4)
        self.assertEqual(mup.postRate, 15)
        session = self.f.resources.sessions[0]
        assert session.mirror is not None
        values = [m.history[-1][1].value for m in session.mirror.meters.values()]
        self.assertEqual(values, [6000, 0, 24000, 6000])

    def test_subscriptions_listed(self) -> None:
        """The four subscribable resources of Table 4 accept subscriptions. V2G-4.1.4-2
        V2G-4.5.3.3-1 V2G-4.1.1-24"""
        sub_list = f"{self.report.hrefs['edev']}/sub"
        listing = parse(self.f.call("GET", f"{sub_list}?l=10")[2], SubscriptionList)
        self.assertEqual(listing.all, 4)
        code, _, _ = self.f.call("DELETE", self.report.hrefs["subscriptions"])
        self.assertEqual(code, 204)
        self.assertEqual(parse(self.f.call("GET", f"{sub_list}?l=10")[2],
                               SubscriptionList).all, 3)
        self.assertEqual(self.f.call("DELETE", self.report.hrefs["subscriptions"])[0], 404)

    def test_uris_static_for_the_session(self) -> None:
        """A second walk of the links finds the same URIs. V2G-4.1.2-1"""
        again = script.ScriptedPEV(self.f.http(), self.f.ids["pev"].lfdi, "/dcap",
                                   lambda: T0)
        d = again.get("/dcap", DeviceCapability)
        self.f.stub.flush()
        first, second = self.report.documents["/dcap"], self.successResultOf(d)
        for link in ("EndDeviceListLink", "SelfDeviceLink", "TimeLink",
                     "MirrorUsagePointListLink", "ResponseSetListLink"):
            self.assertEqual(getattr(first, link).href, getattr(second, link).href)
        edev = parse(self.f.call("GET", self.report.hrefs["edev"])[2], EndDevice)
        self.assertEqual(edev, self.report.documents[self.report.hrefs["edev"]])

    def test_paging(self) -> None:
        """Lists honour s and l and report all and results; l defaults to 1."""
        derc = self.report.hrefs["derc"]
        whole = parse(self.f.call("GET", derc)[2], DERControlList)
        self.assertEqual((whole.results, whole.all), (1, len(self.report.controls)))
        page = parse(self.f.call("GET", f"{derc}?s=2&l=4")[2], DERControlList)
        self.assertEqual([c.href for c in page.DERControl],
                         [c.href for c in self.report.controls[2:6]])


class ErrorTests(SynchronousTestCase):
    """Bad requests get their status and a reason, and change nothing."""

    def setUp(self) -> None:
        self.f = ServerFixture()
        self.report = self.f.run_script()
        self.dstat = self.report.hrefs["dstat"]
        self.session = self.f.resources.sessions[0]
        self.before = copy.deepcopy(self.session.written)

    def assertUnchanged(self) -> None:
        self.assertEqual(self.session.written, self.before)

    def test_unknown_path(self) -> None:
        """Unknown paths are 404."""
        code, _, body = self.f.call("GET", "/nowhere")
        self.assertEqual((code, body), (404, b"no resource at /nowhere\n"))

    def test_wrong_method(self) -> None:
        """A method the resource does not support is 405 with an Allow header."""
        code, headers, _ = self.f.call("PUT", "/dcap", script.der_status(T0, 3))
        self.assertEqual((code, headers.get("allow")), (405, "GET"))
        code, headers, _ = self.f.call("PATCH", self.dstat, b"")
        self.assertEqual((code, headers.get("allow")), (405, "GET, PUT"))

    def test_unsupported_media_type(self) -> None:
        """A body that is not application/sep+xml is 415."""
        code, _, body = self.f.call("PUT", self.dstat, script.der_status(T0, 0),
                                    ctype="application/xml")
        self.assertEqual(code, 415)
        self.assertIn(b"application/sep+xml", body)
        self.assertUnchanged()

    def test_malformed_body(self) -> None:
        """Malformed XML and schema-invalid bodies are 400 with a reason, nothing changed."""
        code, _, body = self.f.call("PUT", self.dstat, b"<DERStatus")
        self.assertEqual(code, 400)
        bad = script.der_status(T0, 0).replace(b"<readingTime>", b"<readingTime>x")
        code, _, body = self.f.call("PUT", self.dstat, bad)
        self.assertEqual(code, 400)
        self.assertIn(b"DERStatus/readingTime", body)
        self.assertUnchanged()

    def test_wrong_resource_type(self) -> None:
        """A valid document of the wrong type is 400."""
        code, _, body = self.f.call("PUT", self.dstat, script.der_availability(T0))
        self.assertEqual((code, body), (400, b"expected DERStatus, got DERAvailability\n"))
        self.assertUnchanged()

    def test_body_too_large(self) -> None:
        """A body over the configured limit is 413."""
        code, _, body = self.f.call("PUT", self.dstat, b"<" + b"x" * 5000 + b"/>")
        self.assertEqual(code, 413)
        self.assertUnchanged()

    def test_no_identity(self) -> None:
        """A request without a client identity is refused."""
        code, _, _ = self.f.call("GET", "/dcap", client="")
        self.assertEqual(code, 403)

    def test_device_information_lfdi_must_match(self) -> None:
        """DeviceInformation with another device's LFDI is 400."""
        other = self.f.ids["pev2"].lfdi
        code, _, body = self.f.call("PUT", f"{self.report.hrefs['edev']}/di",
                                    script.device_information(other))
        self.assertEqual(code, 400)
        self.assertUnchanged()

    def test_response_for_unknown_control(self) -> None:
        """A Response naming no DERControl of this EVSE is 400."""
        rsp = self.report.controls[0].replyTo
        code, _, body = self.f.call("POST", rsp, script.response(
            self.f.ids["pev"].lfdi, "00" * 16, 1, T0))
        self.assertEqual(code, 400)
        self.assertIn(b"is not a DERControl of this EVSE", body)

    def test_mirror_usage_point_rules(self) -> None:
        """A MirrorUsagePoint must be the PEV's own, isPEV only, electricity.
        V2G-4.7.2-23 V2G-4.7.2-24 V2G-4.7.2-25 V2G-4.7.2-26"""
        lfdi = self.f.ids["pev"].lfdi
        cases = [
            (script.mirror_usage_point(self.f.ids["pev2"].lfdi), b"deviceLFDI"),
            (script.mirror_usage_point(lfdi).replace(b"<roleFlags>04", b"<roleFlags>05"),
             b"roleFlags"),
            (script.mirror_usage_point(lfdi).replace(b"<serviceCategoryKind>0",
                                                     b"<serviceCategoryKind>1"),
             b"serviceCategoryKind"),
        ]
        for body, word in cases:
            code, _, answer = self.f.call("POST", "/mup", body)
            self.assertEqual(code, 400, answer)
            self.assertIn(word, answer)

    def test_reading_type_without_data_qualifier(self) -> None:
        """A MirrorMeterReading whose ReadingType has a dataQualifier is 400, and nothing
        of the batch is stored. V2G-4.7.2-28"""
        body = script.mirror_meter_reading("09", "Bad", 38, 0, 19).replace(
            b"<flowDirection>", b"<dataQualifier>2</dataQualifier><flowDirection>")
        code, _, answer = self.f.call("POST", self.report.hrefs["mup"], body)
        self.assertEqual(code, 400, answer)
        self.assertEqual(answer, b"MirrorMeterReading FFFF00090000000000000000000D17E0 "
                                 b"(Active Power): ReadingType/dataQualifier must not be "
                                 b"provided (V2G-4.7.2-28)\n")
        assert self.session.mirror is not None
        self.assertEqual(len(self.session.mirror.meters), 4)

    def test_subscription_to_unsubscribable_resource(self) -> None:
        """Subscribing to a resource outside Table 4 is 400."""
        code, _, body = self.f.call("POST", f"{self.report.hrefs['edev']}/sub",
                                    script.subscription("/dcap", "https://pev.test/n"))
        self.assertEqual(code, 400, body)

    def test_session_ends_with_link(self) -> None:
        """When the port's session ends, its resources are gone (404)."""
        edev = self.report.hrefs["edev"]
        self.f.resources.detach(0, "link down")
        self.assertEqual(self.f.call("GET", "/edev?l=5", client="pev2")[0], 200)
        self.assertEqual(self.f.call("GET", f"{edev}/di", client="pev2")[0], 404)


#: Table 6 of the profile, written out: (quantity, uom, phase, flowDirection or None,
#: accumulationBehaviour); powerOfTenMultiplier present, dataQualifier absent.
TABLE_6 = [
    ("Active Power", 38, 128, 19, 12),
    ("Reactive Power", 63, 128, 19, 12),
    ("Voltage", 29, 128, None, 12),
    ("Frequency", 33, 128, None, 12),
]


def reading_type_doc(suffix: str, description: str, fields: dict[str, int | None]) -> bytes:
    """A new MirrorMeterReading with a ReadingType of ``fields`` (None: left out), in
    schema order."""
    order = ("accumulationBehaviour", "dataQualifier", "flowDirection", "phase",
             "powerOfTenMultiplier", "uom")
    inner = "".join(f"<{k}>{fields[k]}</{k}>" for k in order if fields.get(k) is not None)
    return (f'<MirrorMeterReading {script.NS}><mRID>FFFF00{suffix}0000000000000000000D17E0'
            f'</mRID><description>{description}</description><ReadingType>{inner}'
            f'</ReadingType></MirrorMeterReading>').encode()


class Table6Tests(SynchronousTestCase):
    """The EVSE checks every Table 6 ReadingType field when a MirrorMeterReading is created
    (issue 10 item 2): 400 naming the field, nothing stored; lenient mode accepts the
    section 5 example's flowDirection 1 for W and var, with a logged warning."""

    def setUp(self) -> None:
        self.f = ServerFixture()
        self.report = self.f.run_script()
        self.session = self.f.resources.sessions[0]
        self.mup = self.report.hrefs["mup"]

    def meters(self) -> int:
        assert self.session.mirror is not None
        return len(self.session.mirror.meters)

    def test_table6_reading_types_created(self) -> None:
        """V2G-4.7.2-27 V2G-4.7.2-20: the four MirrorMeterReadings of the sequence carry
        exactly Table 6's ReadingType values (as the EVSE stored them)."""
        assert self.session.mirror is not None
        got = []
        for meter in self.session.mirror.meters.values():
            rt = meter.reading.ReadingType
            got.append((meter.reading.description, rt.uom, rt.phase, rt.flowDirection,
                        rt.accumulationBehaviour, rt.powerOfTenMultiplier is not None,
                        rt.dataQualifier))
        self.assertEqual(got, [(q, u, p, f, a, True, None) for q, u, p, f, a in TABLE_6])

    def test_each_field_checked(self) -> None:
        """V2G-4.7.2-27: for each Table 6 quantity, each required field wrong or missing
        (uom by a description naming the quantity, phase, flowDirection for W and var,
        accumulationBehaviour, powerOfTenMultiplier) is a 400 naming that field; a valid
        one is 201. Nothing of a refused POST is stored."""
        n = 10
        for quantity, uom, phase, flow, acc in TABLE_6:
            good: dict[str, int | None] = {"uom": uom, "phase": phase, "flowDirection": flow,
                                           "accumulationBehaviour": acc,
                                           "powerOfTenMultiplier": 0}
            wrong = {"uom": 5, "phase": 64, "accumulationBehaviour": 4,
                     "powerOfTenMultiplier": None}
            if flow is not None:
                wrong["flowDirection"] = 1
            for field, value in wrong.items():
                n += 1
                before = self.meters()
                body = reading_type_doc(f"{n:02d}", quantity, {**good, field: value})
                code, _, answer = self.f.call("POST", self.mup, body)
                self.assertEqual(code, 400, (quantity, field))
                self.assertIn(f"({quantity}): ReadingType/{field} ".encode(), answer)
                self.assertIn(b"V2G-4.7.2-27", answer)
                self.assertEqual(self.meters(), before)
            if flow is not None:  # missing flowDirection for W and var
                n += 1
                body = reading_type_doc(f"{n:02d}", quantity, {**good, "flowDirection": None})
                code, _, answer = self.f.call("POST", self.mup, body)
                self.assertEqual(code, 400, answer)
                self.assertIn(b"ReadingType/flowDirection must be 19 (reverse), got none",
                              answer)
            n += 1
            code, _, answer = self.f.call("POST", self.mup,
                                          reading_type_doc(f"{n:02d}", quantity, good))
            self.assertEqual(code, 201, answer)

    def test_flow_direction_1_refused_strict(self) -> None:
        """V2G-4.7.2-27: the section 5 example's Active Power ReadingType (flowDirection 1)
        is refused by a strict EVSE with the field and the value Table 6 wants."""
        body = script.mirror_meter_reading("21", "Active Power", 38, 0, 1)
        code, _, answer = self.f.call("POST", self.mup, body)
        self.assertEqual((code, answer), (400, (
            b"MirrorMeterReading FFFF00210000000000000000000D17E0 (Active Power): "
            b"ReadingType/flowDirection must be 19 (reverse), got 1 (Table 6, "
            b"V2G-4.7.2-27)\n")))

    def test_other_quantities_accepted(self) -> None:
        """V2G-4.7.2-27: Table 6 constrains its four quantities; a further
        MirrorMeterReading (here energy, uom 72) only has to leave out dataQualifier, and
        one without uom that names no Table 6 quantity is refused naming uom."""
        body = reading_type_doc("30", "Energy", {"uom": 72, "powerOfTenMultiplier": 0})
        self.assertEqual(self.f.call("POST", self.mup, body)[0], 201)
        body = reading_type_doc("31", "Something", {"phase": 128})
        code, _, answer = self.f.call("POST", self.mup, body)
        self.assertEqual(code, 400)
        self.assertIn(b"ReadingType/uom missing", answer)

    def test_mirror_usage_point_with_bad_reading_creates_nothing(self) -> None:
        """V2G-4.7.2-27: a MirrorUsagePoint created with a MirrorMeterReading that breaks
        Table 6 is refused as a whole: the PEV has no MirrorUsagePoint afterwards."""
        ident = self.f.ids["pev2"]
        mup = script.mirror_usage_point(ident.lfdi).replace(
            b"</MirrorUsagePoint>",
            reading_type_doc("01", "Voltage", {"uom": 29, "phase": 128,
                                               "accumulationBehaviour": 12})
            .replace(f" {script.NS}".encode(), b"") + b"</MirrorUsagePoint>")
        code, _, answer = self.f.call("POST", "/mup", mup, client="pev2")
        self.assertEqual(code, 400, answer)
        self.assertIn(b"(Voltage): ReadingType/powerOfTenMultiplier missing", answer)
        self.assertIsNone(self.f.resources.session_for(ident).mirror)  # type: ignore[union-attr]

    def test_lenient_accepts_example_flow_direction(self) -> None:
        """V2G-4.7.2-27: with ``[server] lenient`` the section 5 example's MirrorUsagePoint
        (17-byte mRID, Active Power with flowDirection 1) is created (201) and a warning
        names the flowDirection deviation, once per MirrorMeterReading; other Table 6
        fields stay checked."""
        f = ServerFixture(lenient=True)
        events: list[dict[str, Any]] = []
        self.patch(tree._SessionResources, "log",
                   Logger(namespace="test", observer=events.append))  # type: ignore[arg-type]
        ident = dataclasses.replace(f.ids["pev"], lfdi="A2038B8645F15C66D889FFBC4352AC0B8CDACBA1")
        f.ids["profile"] = ident
        raw = (REPO / "tests" / "fixtures" / "model" / "section5-raw" /
               "33-MirrorUsagePoint.xml").read_bytes()
        code, headers, answer = f.call("POST", "/mup", raw, client="profile")
        self.assertEqual(code, 201, answer)
        # The same MirrorMeterReading again (as example 35 does): updated, not re-logged.
        again = b"<MirrorMeterReading" + raw.split(b"<MirrorMeterReading", 1)[1].replace(
            b"</MirrorUsagePoint>", b"")
        code, _, _ = f.call("POST", headers["location"], again, client="profile")
        self.assertEqual(code, 204)
        warnings = [formatEvent(e) for e in events if "flowDirection" in formatEvent(e)]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("MirrorMeterReading FFFF000100000000000000000000D17E (Active Power) "
                      "accepted with ReadingType/flowDirection 1 (Table 6 requires 19 "
                      "(reverse)", warnings[0])
        body = reading_type_doc("22", "Active Power", {"uom": 38, "phase": 128,
                                                       "flowDirection": 1,
                                                       "accumulationBehaviour": 4,
                                                       "powerOfTenMultiplier": 0})
        code, _, answer = f.call("POST", headers["location"], body, client="profile")
        self.assertEqual(code, 400)
        self.assertIn(b"ReadingType/accumulationBehaviour must be 12", answer)


class SchemaVerTests(SynchronousTestCase):
    def test_2023_response_accepted_and_logged_once(self) -> None:
        """V2G-4.6.3-4: DERControlResponses as py20305 (an independent 2030.5 client) posts
        them in its default, 2023 mode (schemaVer="2.2" on the root, modesResponded at the
        end) are accepted (201) and recorded; the EVSE logs once per session that the PEV
        writes 2023 documents (once for schemaVer, once for modesResponded)."""
        try:
            from py20305.models.sep import sep
            from py20305.xml.serialization import from_xml, to_xml
        except ImportError:  # pragma: no cover
            raise self.skipTest("py20305 not installed")
        f = ServerFixture()
        report = f.run_script()
        events: list[dict[str, Any]] = []
        self.patch(tree._SessionResources, "log",
                   Logger(namespace="test", observer=events.append))  # type: ignore[arg-type]
        lfdi = f.ids["pev"].lfdi
        for n, control in enumerate(report.controls[:3]):
            plain = script.response(lfdi, bytes(control.mRID).hex().upper(), 1, T0)
            body = to_xml(from_xml(plain, sep.DercontrolResponse))
            self.assertIn(b' schemaVer="2.2"', body)
            if n:  # as py20305 answers a control in 2023 mode: with modesResponded
                body = body.replace(b"</DERControlResponse>", b"<modesResponded>00000100"
                                    b"</modesResponded></DERControlResponse>")
            code, _, answer = f.call("POST", control.replyTo, body)
            self.assertEqual(code, 201, answer)
        session = f.resources.sessions[0]
        self.assertEqual(len(session.response_order), 2 * len(report.controls) + 3)
        logged = [formatEvent(e) for e in events]
        self.assertEqual(len(logged), 2, logged)
        for line in logged:
            self.assertIn(f"PEV LFDI {lfdi} writes IEEE 2030.5-2023 documents", line)
        self.assertIn("schemaVer '2.2'", logged[0])
        self.assertIn("modesResponded '00000100'", logged[1])


class Receiver:
    """A PEV's notification endpoint: records every Notification POSTed to it."""

    def __init__(self) -> None:
        from twisted.web.resource import Resource

        received = self.received = []

        class Endpoint(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                received.append(parse(request.content.read()))
                request.setResponseCode(201)
                return b""

        self.resource = Endpoint()


class NotificationTests(SynchronousTestCase):
    """Changes reach subscribers as Notifications (Subscription/Notification, 4.1.4)."""

    def setUp(self) -> None:
        from treq.testing import RequestTraversalAgent

        from sepgw.evse.notify import Notifier

        self.receiver = Receiver()
        self.agent = RequestTraversalAgent(self.receiver.resource)
        self.f = ServerFixture()
        self.f.resources.notifier = Notifier(lambda lfdi: self.agent, self.f.clock,
                                             server_url=BASE)
        self.report = self.f.run_script()

    def flush(self) -> None:
        self.agent.flush()

    def test_energize_change_notified(self) -> None:
        """Granting the authorization notifies the DefaultDERControl subscriber with
        opModEnergize true. V2G-4.1.4-1 V2G-4.1.4-2 V2G-4.6.4-2"""
        self.f.resources.set_energize(self.f.resources.sessions[0], True)
        self.flush()
        [note] = [n for n in self.receiver.received
                  if n.subscribedResource == self.report.hrefs["dderc"]]
        self.assertIsInstance(note.Resource, DefaultDERControl)
        self.assertIs(note.Resource.DERControlBase.opModEnergize, True)
        self.assertTrue(note.subscriptionURI.startswith(BASE))

    def test_changed_management_supersedes_and_notifies(self) -> None:
        """A management function changed during the session becomes a new DERControl
        superseding the old one, and DERControlList subscribers are told. V2G-4.7.1-3"""
        management = copy.deepcopy(self.f.config["management"])
        management["volt_watt"]["points"] = [(105.0, 100.0), (109.0, 10.0)]
        before = {bytes(c.mRID) for c in self.report.controls}
        self.f.clock.advance(60)
        self.f.resources.update_management(management)
        self.flush()
        notes = [n for n in self.receiver.received
                 if n.subscribedResource == self.report.hrefs["derc"]]
        self.assertEqual(len(notes), 1)
        listing = parse(self.f.call("GET", self.report.hrefs["derc"] + "?l=50")[2],
                        DERControlList)
        new = [c for c in listing.DERControl if bytes(c.mRID) not in before]
        self.assertEqual(len(new), 1)
        self.assertIsNotNone(new[0].DERControlBase.opModVoltWatt)
        self.assertEqual(new[0].interval.start, T0 + 60)
        old = [c for c in listing.DERControl
               if c.DERControlBase.opModVoltWatt is not None and c is not new[0]]
        self.assertEqual([int(c.EventStatus.currentStatus) for c in old], [4])

    def test_session_end_cancels_subscriptions(self) -> None:
        """When the session ends, each subscriber gets a cancellation Notification."""
        self.f.resources.detach(0, "link down")
        self.flush()
        statuses = sorted(int(n.status) for n in self.receiver.received)
        self.assertEqual(statuses, [1, 1, 1, 1])
