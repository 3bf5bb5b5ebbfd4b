"""A scripted PEV for testing the EVSE server: the profile's section 5 sequence, by links.

Written for the tests, independent of sepgw's PEV role: it sends hand-written XML (the
profile's section 5 examples with their typos corrected) and checks the answers with
sepgw's model. The same script runs in memory against the server resource (``StubTreq``) and, as
``python -m tests.scripted_pev URL CERT KEY CA``, as a real process over mutual TLS.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Generator
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, inlineCallbacks

from sepgw.model import (
    DERControlList,
    DERCurve,
    DERList,
    DERProgramList,
    DERSettings,
    DefaultDERControl,
    DeviceCapability,
    EndDevice,
    EndDeviceList,
    FunctionSetAssignmentsList,
    MirrorUsagePointList,
    SelfDevice,
    Time,
    parse,
)

MEDIA = "application/sep+xml"
NS = 'xmlns="urn:ieee:std:2030.5:ns"'

#: http(method, path_or_url, body) -> Deferred[(status, headers {lowercase name: value}, body)]
HTTP = Callable[[str, str, bytes | None], Deferred]


def device_information(lfdi: str) -> bytes:
    return f"""<DeviceInformation {NS}><lFDI>{lfdi}</lFDI><mfDate>1606809600</mfDate>
<mfHwVer>J3072 Certified</mfHwVer><mfID>37250</mfID><mfInfo>PEV Maker</mfInfo>
<mfModel>ISM Value</mfModel><mfSerNum>PEV VIN</mfSerNum><primaryPower>2</primaryPower>
<secondaryPower>0</secondaryPower><swActTime>1668099600</swActTime><swVer>PEV SW 1.0</swVer>
</DeviceInformation>""".encode()


def power_status(now: int) -> bytes:
    return f"""<PowerStatus {NS}><batteryStatus>1</batteryStatus><changedTime>{now}</changedTime>
<currentPowerSource>2</currentPowerSource><PEVInfo>
<chargingPowerNow><multiplier>0</multiplier><value>6000</value></chargingPowerNow>
<energyRequestNow><multiplier>3</multiplier><value>24</value></energyRequestNow>
<maxForwardPower><multiplier>0</multiplier><value>6500</value></maxForwardPower>
<minimumChargingDuration>14400</minimumChargingDuration>
<targetStateOfCharge>8500</targetStateOfCharge><timeChargeIsNeeded>{now + 21600}</timeChargeIsNeeded>
<timeChargingStatusPEV>{now}</timeChargingStatusPEV></PEVInfo></PowerStatus>""".encode()


DER_CAPABILITY = f"""<DERCapability {NS}><modesSupported>01DD69AB</modesSupported>
<rtgAbnormalCategory>2</rtgAbnormalCategory>
<rtgMaxVar><multiplier>0</multiplier><value>3000</value></rtgMaxVar>
<rtgMaxW><multiplier>0</multiplier><value>6500</value>
</rtgMaxW><rtgNormalCategory>1</rtgNormalCategory><type>81</type></DERCapability>""".encode()


def der_settings(now: int, max_w: int) -> bytes:
    return f"""<DERSettings {NS}><modesEnabled>01DD69AB</modesEnabled><setGradW>0</setGradW>
<setMaxChargeRateW><multiplier>0</multiplier><value>{max_w}</value></setMaxChargeRateW>
<setMaxDischargeRateW><multiplier>0</multiplier><value>{max_w}</value></setMaxDischargeRateW>
<setMaxV><multiplier>0</multiplier><value>250</value></setMaxV>
<setMaxVar><multiplier>0</multiplier><value>3000</value></setMaxVar>
<setMaxVarNeg><multiplier>0</multiplier><value>3000</value></setMaxVarNeg>
<setMaxW><multiplier>0</multiplier><value>{max_w}</value></setMaxW>
<setMaxWh><multiplier>3</multiplier><value>60</value></setMaxWh>
<setMinV><multiplier>0</multiplier><value>215</value></setMinV>
<setVRef><multiplier>0</multiplier><value>240</value></setVRef>
<updatedTime>{now}</updatedTime></DERSettings>""".encode()


def der_availability(now: int) -> bytes:
    return f"""<DERAvailability {NS}><availabilityDuration>12000</availabilityDuration>
<maxChargeDuration>18000</maxChargeDuration><readingTime>{now}</readingTime>
<reserveChargePercent>2500</reserveChargePercent><reservePercent>2500</reservePercent>
</DERAvailability>""".encode()


def der_status(now: int, inverter_status: int) -> bytes:
    return f"""<DERStatus {NS}><alarmStatus>00</alarmStatus>
<genConnectStatus><dateTime>{now}</dateTime><value>02</value></genConnectStatus>
<inverterStatus><dateTime>{now}</dateTime><value>{inverter_status}</value></inverterStatus>
<readingTime>{now}</readingTime></DERStatus>""".encode()


def response(lfdi: str, subject: str, status: int, now: int) -> bytes:
    return f"""<DERControlResponse {NS}><createdDateTime>{now}</createdDateTime>
<endDeviceLFDI>{lfdi}</endDeviceLFDI><status>{status}</status><subject>{subject}</subject>
</DERControlResponse>""".encode()


def mirror_usage_point(lfdi: str) -> bytes:
    return f"""<MirrorUsagePoint {NS}><mRID>FFFF00000000000000000000000D17E0</mRID>
<description>PEV MUP</description><roleFlags>04</roleFlags>
<serviceCategoryKind>0</serviceCategoryKind><status>1</status><deviceLFDI>{lfdi}</deviceLFDI>
</MirrorUsagePoint>""".encode()


#: (mRID suffix, description, uom, powerOfTenMultiplier, flowDirection or None, value):
#: Table 6's ReadingTypes (flowDirection 19 for W and var, V2G-4.7.2-27; the section 5
#: example's 1 is refused by a strict EVSE).
METERS = [
    ("01", "Active Power", 38, 0, 19, 6000),
    ("02", "Reactive Power", 63, 0, 19, 0),
    ("03", "Voltage", 29, -2, None, 24000),
    ("04", "Frequency", 33, -2, None, 6000),
]


def mirror_meter_reading(suffix: str, description: str, uom: int, power: int,
                         flow: int | None) -> bytes:
    flow_xml = f"<flowDirection>{flow}</flowDirection>" if flow is not None else ""
    return f"""<MirrorMeterReading {NS}><mRID>FFFF00{suffix}0000000000000000000D17E0</mRID>
<description>{description}</description><ReadingType>
<accumulationBehaviour>12</accumulationBehaviour>{flow_xml}<phase>128</phase>
<powerOfTenMultiplier>{power}</powerOfTenMultiplier><uom>{uom}</uom></ReadingType>
</MirrorMeterReading>""".encode()


def reading(suffix: str, description: str, now: int, value: int) -> bytes:
    return f"""<MirrorMeterReading {NS}><mRID>FFFF00{suffix}0000000000000000000D17E0</mRID>
<description>{description}</description><Reading><timePeriod><duration>0</duration>
<start>{now}</start></timePeriod><value>{value}</value></Reading></MirrorMeterReading>""".encode()


def subscription(resource: str, notify_uri: str, limit: int = 1) -> bytes:
    return f"""<Subscription {NS}><subscribedResource>{resource}</subscribedResource>
<encoding>0</encoding><level>-S1</level><limit>{limit}</limit>
<notificationURI>{notify_uri}</notificationURI></Subscription>""".encode()


@dataclass
class Report:
    """What the scripted PEV found, for assertions (and printed as JSON by the process)."""

    steps: list[str] = field(default_factory=list)
    documents: dict[str, Any] = field(default_factory=dict)
    hrefs: dict[str, str] = field(default_factory=dict)
    controls: list[Any] = field(default_factory=list)
    curves: list[Any] = field(default_factory=list)
    energize: bool | None = None

    def json(self) -> str:
        return json.dumps({"steps": self.steps, "hrefs": self.hrefs,
                           "controls": len(self.controls), "curves": len(self.curves),
                           "energize": self.energize})


class ScriptFailure(AssertionError):
    pass


class ScriptedPEV:
    """Runs the section 5 sequence against ``http``; every href comes from a link."""

    def __init__(self, http: HTTP, lfdi: str, dcap: str, now: Callable[[], int],
                 notify_uri: str = "https://pev.test/ntfy") -> None:
        self.http = http
        self.lfdi = lfdi.upper()
        self.dcap = dcap
        self.now = now
        self.notify_uri = notify_uri
        self.report = Report()

    @inlineCallbacks
    def get(self, href: str, cls: type, query: str = "") -> Generator[Any, Any, Any]:
        status, headers, body = yield self.http("GET", href + query, None)
        if status != 200:
            raise ScriptFailure(f"GET {href}{query}: {status} {body!r}")
        if headers.get("content-type") != MEDIA:
            raise ScriptFailure(f"GET {href}: content type {headers.get('content-type')}")
        doc = parse(body, cls)
        self.report.documents[href + query] = doc
        return doc

    @inlineCallbacks
    def send(self, method: str, href: str, body: bytes, expect: tuple[int, ...]
             ) -> Generator[Any, Any, Any]:
        status, headers, answer = yield self.http(method, href, body)
        if status not in expect:
            raise ScriptFailure(f"{method} {href}: {status} {answer!r}")
        return headers.get("location")

    @inlineCallbacks
    def run(self) -> Generator[Any, Any, Report]:
        r = self.report
        now = self.now()
        # 5.2 Resource discovery
        dcap = yield self.get(self.dcap, DeviceCapability)
        if dcap.DERProgramListLink is not None:
            raise ScriptFailure("DeviceCapability has a DERProgramListLink (V2G-4.5.1-4)")
        yield self.get(dcap.TimeLink.href, Time)
        edevs = yield self.get(dcap.EndDeviceListLink.href, EndDeviceList, "?s=0&l=10")
        mine = [e for e in edevs.EndDevice if bytes(e.lFDI).hex().upper() == self.lfdi]
        if not mine:
            raise ScriptFailure("own EndDevice not in the EndDeviceList")
        edev = yield self.get(mine[0].href, EndDevice)
        r.hrefs["edev"] = edev.href
        r.steps.append("resource discovery")
        # 5.3 Site limits
        sdev = yield self.get(dcap.SelfDeviceLink.href, SelfDevice)
        sders = yield self.get(sdev.DERListLink.href, DERList, "?l=1")
        site = yield self.get(sders.DER[0].DERSettingsLink.href, DERSettings)
        max_w = site.setMaxW.value * 10 ** site.setMaxW.multiplier
        r.steps.append("site limits")
        # 5.4 PEV sends its information
        yield self.send("PUT", edev.DeviceInformationLink.href,
                        device_information(self.lfdi), (204,))
        yield self.send("PUT", edev.PowerStatusLink.href, power_status(now), (204,))
        ders = yield self.get(edev.DERListLink.href, DERList, "?l=1")
        der = ders.DER[0]
        r.hrefs["dstat"] = der.DERStatusLink.href
        yield self.send("PUT", der.DERCapabilityLink.href, DER_CAPABILITY, (204,))
        yield self.send("PUT", der.DERSettingsLink.href, der_settings(now, int(max_w)), (204,))
        yield self.send("PUT", der.DERAvailabilityLink.href, der_availability(now), (204,))
        yield self.send("PUT", der.DERStatusLink.href, der_status(now, 3), (204,))
        r.steps.append("information sent")
        # 5.5 / 5.6 Management information, paging 3 at a time, then the curves
        fsas = yield self.get(edev.FunctionSetAssignmentsListLink.href,
                              FunctionSetAssignmentsList, "?l=1")
        fsa = fsas.FunctionSetAssignments[0]
        yield self.get(fsa.TimeLink.href, Time)
        programs = yield self.get(fsa.DERProgramListLink.href, DERProgramList, "?l=1")
        r.documents["derpl"] = programs
        program = programs.DERProgram[0]
        r.hrefs.update(dderc=program.DefaultDERControlLink.href,
                       derc=program.DERControlListLink.href)
        default = yield self.get(program.DefaultDERControlLink.href, DefaultDERControl)
        r.energize = default.DERControlBase.opModEnergize
        start = 0
        while True:
            page = yield self.get(program.DERControlListLink.href, DERControlList,
                                  f"?s={start}&l=3")
            r.controls += page.DERControl
            start += page.results
            if page.results == 0 or start >= page.all:
                break
        for control in r.controls:
            base = control.DERControlBase
            for name in ("opModVoltVar", "opModVoltWatt", "opModWattVar", "opModHFRTMustTrip",
                         "opModLFRTMustTrip", "opModHVRTMustTrip", "opModLVRTMustTrip",
                         "opModHVRTMomentaryCessation", "opModLVRTMomentaryCessation"):
                link = getattr(base, name)
                if link is not None:
                    curve = yield self.get(link.href, DERCurve)
                    r.curves.append(curve)
        r.steps.append("management information")
        # 5.7 Responses: received, then started, to each control's replyTo
        for status in (1, 2):
            for control in r.controls:
                yield self.send("POST", control.replyTo,
                                response(self.lfdi, bytes(control.mRID).hex().upper(),
                                         status, now), (201,))
        r.steps.append("responses")
        # 5.8 Metrology
        location = yield self.send("POST", dcap.MirrorUsagePointListLink.href,
                                   mirror_usage_point(self.lfdi), (201,))
        r.hrefs["mup"] = location
        yield self.get(dcap.MirrorUsagePointListLink.href, MirrorUsagePointList, "?l=1")
        for suffix, description, uom, power, flow, _ in METERS:
            yield self.send("POST", location,
                            mirror_meter_reading(suffix, description, uom, power, flow), (201,))
        for suffix, description, _, _, _, value in METERS:
            yield self.send("POST", location, reading(suffix, description, now, value),
                            (201, 204))
        r.steps.append("metrology")
        # 5.9 Subscriptions
        for target in (program.DERControlListLink.href, program.DefaultDERControlLink.href,
                       edev.FunctionSetAssignmentsListLink.href, fsa.DERProgramListLink.href):
            sub = yield self.send("POST", edev.SubscriptionListLink.href,
                                  subscription(target, self.notify_uri), (201,))
            r.hrefs.setdefault("subscriptions", sub)
        r.steps.append("subscriptions")
        # 5.10 / 5.11 Periodic
        yield self.send("PUT", der.DERStatusLink.href, der_status(self.now(), 3), (204,))
        default = yield self.get(program.DefaultDERControlLink.href, DefaultDERControl)
        r.energize = default.DERControlBase.opModEnergize
        yield self.get(edev.href, EndDevice)
        r.steps.append("periodic")
        return r


def main(argv: list[str]) -> int:  # pragma: no cover - run as a process by e2e tests
    """``python -m tests.scripted_pev URL CERT KEY CA``: run over real mutual TLS."""
    from pathlib import Path

    from twisted.internet import task
    from twisted.web.client import Agent, readBody
    from twisted.web.http_headers import Headers

    from sepgw.security.tls import TLSSettings, client_policy

    url, cert, key, ca = argv
    settings = TLSSettings(Path(cert), Path(key), (Path(ca),))
    base = "{0.scheme}://{0.netloc}".format(urlsplit(url))

    def run(reactor: Any) -> Deferred:
        agent = Agent(reactor, contextFactory=client_policy(settings))

        @inlineCallbacks
        def http(method: str, href: str, body: bytes | None) -> Generator[Any, Any, Any]:
            from twisted.web.client import FileBodyProducer
            import io

            headers = Headers({b"Content-Type": [MEDIA.encode()]} if body else {})
            producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
            target = href if href.startswith("https://") else base + href
            response = yield agent.request(method.encode(), target.encode(), headers, producer)
            data = yield readBody(response)
            flat = {k.decode().lower(): v[0].decode()
                    for k, v in response.headers.getAllRawHeaders()}
            return response.code, flat, data

        pev = ScriptedPEV(http, settings.identity.lfdi, urlsplit(url).path,
                          lambda: int(reactor.seconds()))
        d = pev.run()

        def done(report: Report) -> None:
            print("REPORT " + report.json(), flush=True)

        def failed(failure: Any) -> None:
            print(f"FAILED {failure.getErrorMessage()}", flush=True)
            raise SystemExit(1)

        return d.addCallbacks(done, failed)

    task.react(run)
    return 0


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
