"""A test utility head-end (DME): a small IEEE 2030.5 server on twisted.web, written from
the 2030.5 resource structure with sepgw.model documents.

Serves DeviceCapability, Time, EndDeviceList (registration by POST when allowed; an
EndDevice's Registration with a PIN), FunctionSetAssignments, one DERProgram with a
DefaultDERControl and a DERControlList, an EndDevice's DER (DERCapability, DERSettings,
DERStatus, DERAvailability by PUT), MirrorUsagePoints (POST, then readings POSTed to each)
and Responses. Everything devices send is kept in memory for tests to inspect.

In memory (unit tests): ``treq.testing.RequestTraversalAgent(server.resource())``.
As a process over mutual TLS (end-to-end tests)::

    python -m tests.dme_server --port P --cert C --key K --ca CA --commands DIR

reads JSON command files dropped into DIR (``{"op": "control", "base": {...},
"duration": 600}``, ``{"op": "default", "base": {...}}``, ``{"op": "fail", "status": 503}``)
and logs what devices send, one line each, for the test to wait for.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource

from sepgw.client import Registration
from sepgw.model import (
    DER, DERAvailability, DERCapability, DERControl, DERControlBase, DERControlList, DERList,
    DERProgram, DERProgramList, DERSettings, DERStatus, DefaultDERControl, DeviceCapability,
    DeviceInformation, EndDevice, EndDeviceList, EventStatus, FunctionSetAssignments,
    FunctionSetAssignmentsList, Link, ListLink, MirrorMeterReading, MirrorMeterReadingList,
    MirrorUsagePoint, MirrorUsagePointList, Model, ModelError, Response, Time, fill_list,
    parse, parse_query, serialize,
)
from sepgw.model.base import DateTimeInterval
from sepgw.model.types import ResponseRequired, TimeQuality

MEDIA = b"application/sep+xml"
PUT_TYPES = {"di": DeviceInformation, "dercap": DERCapability, "ders": DERSettings,
             "dstat": DERStatus, "dera": DERAvailability}


@dataclass
class Device:
    href: str
    doc: EndDevice
    pin: int
    resources: dict[str, Model] = field(default_factory=dict)


class DMEServer:
    """The head-end's state and its resource tree. ``clock`` gives the server's time
    (plus ``time_offset``)."""

    log = Logger()

    def __init__(self, clock: Any, *, registration: bool = True, pin: int = 111115,
                 poll_rate: int = 5, post_rate: int = 5, time_offset: float = 0.0) -> None:
        self.clock = clock
        self.registration = registration
        self.pin = pin
        self.poll_rate = poll_rate
        self.post_rate = post_rate
        self.time_offset = time_offset
        self.devices: dict[str, Device] = {}
        self.default: DefaultDERControl | None = None
        self.controls: list[DERControl] = []
        self.responses: list[Response] = []
        self.mups: dict[str, MirrorUsagePoint] = {}
        self.readings: list[tuple[str, MirrorMeterReading]] = []
        self.fail_status: int | None = None
        """When set, every request is answered with this status (an outage)."""
        self.requests = 0
        self._mrid = 0

    # -- test controls ---------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock.seconds() + self.time_offset)

    def new_mrid(self) -> bytes:
        self._mrid += 1
        return self._mrid.to_bytes(4, "big") + bytes(12)

    def pre_register(self, lfdi: str, sfdi: int) -> str:
        """Register a device out of band (as utilities do); return its EndDevice href."""
        return self._register(EndDevice(lFDI=bytes.fromhex(lfdi), sFDI=sfdi,
                                        changedTime=self.now()))

    def add_control(self, base: DERControlBase, *, start: int | None = None,
                    duration: int = 600, creation: int | None = None,
                    response_required: int = 3) -> DERControl:
        now = self.now()
        control = DERControl(
            href=f"/derp/1/derc/{len(self.controls) + 1}", mRID=self.new_mrid(),
            replyTo="/rsps/1/rsp",
            responseRequired=ResponseRequired(response_required),
            creationTime=now if creation is None else creation,
            EventStatus=EventStatus(currentStatus=0, dateTime=now, potentiallySuperseded=False),
            interval=DateTimeInterval(duration=duration, start=now if start is None else start),
            DERControlBase=base)
        self.controls.append(control)
        return control

    def set_default(self, base: DERControlBase | None) -> None:
        self.default = None if base is None else DefaultDERControl(
            href="/derp/1/dderc", mRID=self.new_mrid(), DERControlBase=base)

    def responses_for(self, mrid: bytes) -> list[int]:
        return [int(r.status or 0) for r in self.responses if r.subject == mrid]

    # -- HTTP ------------------------------------------------------------------------------

    def resource(self) -> Resource:
        return _Root(self)

    def handle(self, method: str, path: str, query: bytes, body: bytes
               ) -> tuple[int, bytes, str | None]:
        """(status, body, Location) for one request."""
        self.requests += 1
        if self.fail_status is not None:
            return self.fail_status, b"", None
        try:
            return self._route(method, path.rstrip("/") or "/", query, body)
        except ModelError as e:
            return 400, str(e).encode(), None
        except (KeyError, IndexError, ValueError) as e:
            return 404, f"{type(e).__name__}: {e}".encode(), None

    def _route(self, method: str, path: str, query: bytes, body: bytes
               ) -> tuple[int, bytes, str | None]:
        q = parse_query(query)
        parts = path.strip("/").split("/")
        ok = (200, b"", None)
        if method == "GET" and path == "/dcap":
            return self._doc(DeviceCapability(
                href="/dcap", pollRate=self.poll_rate, TimeLink=Link(href="/tm"),
                EndDeviceListLink=ListLink(href="/edev", all=len(self.devices)),
                MirrorUsagePointListLink=ListLink(href="/mup", all=len(self.mups))))
        if method == "GET" and path == "/tm":
            return self._doc(Time(href="/tm", currentTime=self.now(), dstEndTime=0,
                                  dstOffset=0, dstStartTime=0, quality=TimeQuality.LEVEL_5,
                                  tzOffset=0, pollRate=self.poll_rate))
        if path == "/edev":
            if method == "GET":
                return self._doc(fill_list(EndDeviceList(href="/edev", pollRate=self.poll_rate),
                                           [self._edev(d) for d in self.devices.values()], q))
            if method == "POST":
                if not self.registration:
                    return 403, b"registration by POST not allowed", None
                doc = parse(body, EndDevice)
                return 201, b"", self._register(doc)
        if parts[0] == "edev" and len(parts) >= 2:
            device = next(d for d in self.devices.values() if d.href == f"/edev/{parts[1]}")
            rest = parts[2:]
            if not rest and method == "GET":
                return self._doc(self._edev(device))
            if rest == ["rg"] and method == "GET":
                return self._doc(Registration(href=f"{device.href}/rg",
                                              dateTimeRegistered=self.now(), pIN=device.pin))
            if rest == ["fsa"] and method == "GET":
                return self._doc(fill_list(
                    FunctionSetAssignmentsList(href=f"{device.href}/fsa",
                                               pollRate=self.poll_rate),
                    [FunctionSetAssignments(href=f"{device.href}/fsa/1", mRID=b"\xfa" * 16,
                                            DERProgramListLink=ListLink(href="/derp", all=1))],
                    q))
            if rest == ["der"] and method == "GET":
                der = f"{device.href}/der/1"
                return self._doc(fill_list(DERList(href=f"{device.href}/der", pollRate=900), [DER(
                    href=der, DERCapabilityLink=Link(href=f"{der}/dercap"),
                    DERSettingsLink=Link(href=f"{der}/ders"),
                    DERStatusLink=Link(href=f"{der}/dstat"),
                    DERAvailabilityLink=Link(href=f"{der}/dera"))], q))
            key = rest[-1]
            if method == "PUT" and key in PUT_TYPES:
                device.resources[key] = parse(body, PUT_TYPES[key])
                self.log.info("DME: {lfdi} PUT {key}", lfdi=device.doc.lFDI.hex().upper(),
                              key=key)
                return 204, b"", None
        if path == "/derp" and method == "GET":
            return self._doc(fill_list(DERProgramList(href="/derp", pollRate=self.poll_rate), [
                DERProgram(href="/derp/1", mRID=b"\xdb" * 16, primacy=1,
                           DefaultDERControlLink=(Link(href="/derp/1/dderc")
                                                  if self.default else None),
                           DERControlListLink=ListLink(href="/derp/1/derc",
                                                       all=len(self.controls)))], q))
        if path == "/derp/1/dderc" and method == "GET":
            if self.default is None:
                return 404, b"", None
            return self._doc(self.default)
        if path == "/derp/1/derc" and method == "GET":
            ordered = sorted(self.controls, key=lambda c: (c.interval.start,
                                                           -c.creationTime))
            return self._doc(fill_list(DERControlList(href="/derp/1/derc"), ordered, q))
        if path == "/mup":
            if method == "GET":
                return self._doc(fill_list(MirrorUsagePointList(href="/mup",
                                                                pollRate=self.poll_rate),
                                           list(self.mups.values()), q))
            if method == "POST":
                mup = parse(body, MirrorUsagePoint)
                for href, known in self.mups.items():
                    if known.mRID == mup.mRID:
                        return 204, b"", href
                href = f"/mup/{len(self.mups) + 1}"
                mup.href, mup.postRate = href, self.post_rate
                self.mups[href] = mup
                self.log.info("DME: MirrorUsagePoint {desc} at {href}",
                              desc=mup.description, href=href)
                return 201, b"", href
        if parts[0] == "mup" and len(parts) == 2:
            if method == "GET":
                return self._doc(self.mups[path])
            if method == "POST":
                if path not in self.mups:
                    return 404, b"", None
                if b"MirrorMeterReadingList" in body[:200]:
                    entries = parse(body, MirrorMeterReadingList).MirrorMeterReading
                else:
                    entries = [parse(body, MirrorMeterReading)]
                for entry in entries:
                    self.readings.append((path, entry))
                    if entry.Reading is not None:
                        self.log.info("DME: reading {desc} {value} at {href}",
                                      desc=entry.description, href=path,
                                      value=entry.Reading.value)
                return 201, b"", None
        if path == "/rsps/1/rsp" and method == "POST":
            response = parse(body, Response)
            self.responses.append(response)
            self.log.info("DME: Response {status} for {mrid}", status=int(response.status or 0),
                          mrid=response.subject.hex())
            return 201, b"", f"/rsps/1/rsp/{len(self.responses)}"
        del ok
        return 404, b"", None

    def _register(self, doc: EndDevice) -> str:
        lfdi = doc.lFDI.hex().upper() if doc.lFDI else ""
        if lfdi in self.devices:
            return self.devices[lfdi].href
        href = f"/edev/{len(self.devices) + 1}"
        self.devices[lfdi] = Device(href, doc, self.pin)
        self.log.info("DME: registered EndDevice {lfdi} at {href}", lfdi=lfdi, href=href)
        return href

    def _edev(self, device: Device) -> EndDevice:
        h = device.href
        return EndDevice(href=h, lFDI=device.doc.lFDI, sFDI=device.doc.sFDI,
                         changedTime=device.doc.changedTime, postRate=self.post_rate,
                         DeviceInformationLink=Link(href=f"{h}/di"),
                         DERListLink=ListLink(href=f"{h}/der", all=1),
                         FunctionSetAssignmentsListLink=ListLink(href=f"{h}/fsa", all=1),
                         RegistrationLink=Link(href=f"{h}/rg"))

    @staticmethod
    def _doc(doc: Model) -> tuple[int, bytes, str | None]:
        return 200, serialize(doc), None


class _Root(Resource):
    isLeaf = True

    def __init__(self, server: DMEServer) -> None:
        super().__init__()
        self.server = server

    def render(self, request: Any) -> bytes:
        body = request.content.read() if request.content is not None else b""
        path = request.path.decode("utf-8", "replace")
        query = request.uri.partition(b"?")[2]
        status, out, location = self.server.handle(request.method.decode(), path, query, body)
        request.setResponseCode(status)
        if location:
            request.setHeader(b"Location", location.encode())
        if out and status == 200:
            request.setHeader(b"Content-Type", MEDIA)
        return out


# -- as a process -------------------------------------------------------------------------


def _base(spec: dict[str, Any]) -> DERControlBase:
    return DERControlBase(**spec)


def _apply(server: DMEServer, command: dict[str, Any]) -> None:
    op = command["op"]
    if op == "control":
        control = server.add_control(_base(command["base"]),
                                     duration=int(command.get("duration", 600)))
        server.log.info("DME: control {mrid} added: {base}", mrid=control.mRID.hex(),
                        base=command["base"])
    elif op == "default":
        server.set_default(_base(command["base"]) if command.get("base") else None)
        server.log.info("DME: default control {base}", base=command.get("base"))
    elif op == "fail":
        server.fail_status = command.get("status")
        server.log.info("DME: failing with {status}", status=server.fail_status)


def main(argv: list[str]) -> None:
    import argparse

    from twisted.internet import reactor, task
    from twisted.internet.endpoints import TCP6ServerEndpoint
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.web.server import Site

    from sepgw.security.tls import TLSSettings, server_connection_creator, TLSServerEndpoint

    parser = argparse.ArgumentParser()
    for name in ("--cert", "--key", "--ca", "--commands"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--poll-rate", type=int, default=2)
    parser.add_argument("--post-rate", type=int, default=2)
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    server = DMEServer(reactor, poll_rate=args.poll_rate, post_rate=args.post_rate)
    settings = TLSSettings(cert=args.cert, key=args.key, ca=(args.ca,))
    endpoint = TLSServerEndpoint(TCP6ServerEndpoint(reactor, args.port, interface="::1"),
                                 server_connection_creator(settings), reactor)
    site = Site(server.resource())
    site.noisy = False
    commands = Path(args.commands)
    done: set[str] = set()

    def poll() -> None:
        for path in sorted(commands.glob("*.json")):
            if path.name not in done:
                done.add(path.name)
                _apply(server, json.loads(path.read_text()))

    task.LoopingCall(poll).start(0.1)
    endpoint.listen(site).addCallback(
        lambda port: server.log.info("DME serving on port {port}", port=args.port))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
