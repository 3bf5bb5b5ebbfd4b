"""The lab DME's IEEE 2030.5 server: a utility head-end in a box, on twisted.web, written
from the 2030.5 resource structure with sepgw.model documents.

Serves DeviceCapability, Time, EndDeviceList (registration by POST when allowed, limited to
an allow list of LFDIs; an EndDevice's Registration with a PIN), FunctionSetAssignments, one
DERProgram with a DefaultDERControl and a DERControlList, an EndDevice's DER
(DERCapability, DERSettings, DERStatus, DERAvailability by PUT), MirrorUsagePoints (POST,
then readings POSTed to each) and Responses.

Over TLS the client certificate's LFDI is the device's identity: a device sees and writes
only its own EndDevice, and may register only its own LFDI. Without a certificate (in
memory, for unit tests) these checks are skipped.

With a :class:`~sepgw.dme.store.DMEStore` what the DME hands out survives a restart and
what devices send is recorded (duplicates counted); without one (unit tests) everything is
kept in memory lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import Resource

from sepgw.client import Registration
from sepgw.dme.store import DMEStore
from sepgw.model import (
    DER, DERAvailability, DERCapability, DERControl, DERControlBase, DERControlList, DERList,
    DERProgram, DERProgramList, DERSettings, DERStatus, DefaultDERControl, DeviceCapability,
    DeviceInformation, EndDevice, EndDeviceList, EventStatus, FunctionSetAssignments,
    FunctionSetAssignmentsList, Link, ListLink, MirrorMeterReading, MirrorMeterReadingList,
    MirrorUsagePoint, MirrorUsagePointList, Model, ModelError, Response, Time, fill_list,
    parse, parse_query, serialize,
)
from sepgw.model.base import DateTimeInterval
from sepgw.model.types import EventStatusCode, ResponseRequired, TimeQuality

__all__ = ["DMEServer", "Device", "DMEError", "MEDIA"]

MEDIA = b"application/sep+xml"
PUT_TYPES = {"di": DeviceInformation, "dercap": DERCapability, "ders": DERSettings,
             "dstat": DERStatus, "dera": DERAvailability}


class DMEError(ValueError):
    """An operator request the DME cannot carry out (unknown control, bad function)."""


@dataclass
class Device:
    href: str
    doc: EndDevice
    pin: int
    resources: dict[str, Model] = field(default_factory=dict)


class DMEServer:
    """The head-end's state and its resource tree. ``clock`` gives the server's time
    (plus ``time_offset``). ``allow``: the LFDIs that may register (None: any)."""

    log = Logger()

    def __init__(self, clock: Any, *, registration: bool = True, pin: int = 111115,
                 poll_rate: int = 5, post_rate: int = 5, time_offset: float = 0.0,
                 allow: set[str] | None = None, store: DMEStore | None = None,
                 primacy: int = 1, log_readings: bool = True) -> None:
        self.clock = clock
        self.registration = registration
        self.pin = pin
        self.poll_rate = poll_rate
        self.post_rate = post_rate
        self.time_offset = time_offset
        self.allow = None if allow is None else {a.upper() for a in allow}
        self.store = store
        self.primacy = primacy
        self.log_readings = log_readings
        self.devices: dict[str, Device] = {}
        self.default: DefaultDERControl | None = None
        self.controls: list[DERControl] = []
        self.responses: list[Response] = []
        self.mups: dict[str, MirrorUsagePoint] = {}
        self.readings: list[tuple[str, MirrorMeterReading]] = []
        """In memory only without a store (with one, see :meth:`DMEStore.readings`)."""
        self.fail_status: int | None = None
        """When set, every request is answered with this status (an outage)."""
        self.requests = 0
        self._mrid = 0
        if store is not None:
            self._load(store)

    def _load(self, store: DMEStore) -> None:
        for lfdi, href, sfdi, pin, _ in store.devices():
            self.devices[lfdi] = Device(href, EndDevice(lFDI=bytes.fromhex(lfdi), sFDI=sfdi,
                                                        changedTime=self.now()), pin)
        for href, doc in store.mups():
            self.mups[href] = parse(doc, MirrorUsagePoint)
        self.controls = [parse(doc, DERControl) for doc in store.controls()]
        default = store.get("default")
        self.default = None if default is None else parse(default, DefaultDERControl)
        self._mrid = int((store.get("mrid") or b"0").decode())

    # -- operator controls -----------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock.seconds() + self.time_offset)

    def new_mrid(self) -> bytes:
        self._mrid += 1
        if self.store is not None:
            self.store.put("mrid", str(self._mrid).encode())
        # The head-end's mRIDs: a counter, then a fixed tail (PEN-style) to 16 bytes.
        return self._mrid.to_bytes(4, "big") + bytes(12)

    def pre_register(self, lfdi: str, sfdi: int) -> str:
        """Register a device out of band (as utilities do); return its EndDevice href."""
        return self._register(EndDevice(lFDI=bytes.fromhex(lfdi), sFDI=sfdi,
                                        changedTime=self.now()))

    def add_control(self, base: DERControlBase, *, start: int | None = None,
                    duration: int = 600, creation: int | None = None,
                    response_required: int = 3) -> DERControl:
        """A new DERControl in the program (its href is ``/derp/1/derc/N``)."""
        now = self.now()
        control = DERControl(
            href=f"/derp/1/derc/{len(self.controls) + 1}", mRID=self.new_mrid(),
            replyTo="/rsps/1/rsp",
            responseRequired=ResponseRequired(response_required),
            creationTime=now if creation is None else creation,
            EventStatus=EventStatus(currentStatus=EventStatusCode.SCHEDULED, dateTime=now,
                                    potentiallySuperseded=False),
            interval=DateTimeInterval(duration=duration, start=now if start is None else start),
            DERControlBase=base)
        self.controls.append(control)
        self._save_control(control)
        return control

    def find_control(self, mrid: str) -> DERControl:
        """The control whose mRID (hex, or a unique prefix of it) is ``mrid``."""
        wanted = mrid.lower()
        found = [c for c in self.controls if c.mRID.hex().startswith(wanted)]
        if len(found) != 1:
            raise DMEError(f"no control {mrid!r}" if not found
                           else f"{mrid!r} matches {len(found)} controls; give more digits")
        return found[0]

    def cancel(self, mrid: str) -> DERControl:
        """Cancel a control (EventStatus currentStatus 2, Cancelled)."""
        return self._set_status(self.find_control(mrid), EventStatusCode.CANCELLED)

    def supersede(self, mrid: str, base: DERControlBase, *, duration: int | None = None,
                  response_required: int | None = None) -> DERControl:
        """Replace a control: a new one with a later creationTime, starting now (or when
        the old one starts, if later), and the old one marked Superseded (currentStatus 4)
        so that clients that do not compare the two still drop it."""
        old = self.find_control(mrid)
        if old.EventStatus.currentStatus in (EventStatusCode.CANCELLED,
                                             EventStatusCode.SUPERSEDED):
            raise DMEError(f"control {old.mRID.hex()} is already "
                           f"{EventStatusCode(old.EventStatus.currentStatus).name.lower()}")
        now = self.now()
        end = old.interval.start + old.interval.duration
        start = max(now, old.interval.start)
        new = self.add_control(
            base, start=start, duration=duration if duration is not None else max(1, end - start),
            creation=max(now, int(old.creationTime) + 1),
            response_required=int(old.responseRequired or 0) if response_required is None
            else response_required)
        self._set_status(old, EventStatusCode.SUPERSEDED)
        return new

    def _set_status(self, control: DERControl, status: EventStatusCode) -> DERControl:
        control.EventStatus = EventStatus(currentStatus=status, dateTime=self.now(),
                                          potentiallySuperseded=False)
        self._save_control(control)
        return control

    def _save_control(self, control: DERControl) -> None:
        if self.store is not None:
            self.store.save_control(self.controls.index(control), serialize(control))

    def set_default(self, base: DERControlBase | None) -> None:
        self.default = None if base is None else DefaultDERControl(
            href="/derp/1/dderc", mRID=self.new_mrid(), DERControlBase=base)
        if self.store is not None:
            self.store.put("default", None if self.default is None else serialize(self.default))

    def responses_for(self, mrid: bytes) -> list[int]:
        if self.store is not None:
            return [r["status"] for r in self.store.responses(mrid.hex())]
        return [int(r.status or 0) for r in self.responses if r.subject == mrid]

    # -- HTTP ------------------------------------------------------------------------------

    def resource(self) -> Resource:
        return _Root(self)

    def handle(self, method: str, path: str, query: bytes, body: bytes,
               peer: str | None = None) -> tuple[int, bytes, str | None]:
        """(status, body, Location) for one request; ``peer``: the client certificate's
        LFDI (None without TLS)."""
        self.requests += 1
        if self.fail_status is not None:
            return self.fail_status, b"", None
        try:
            return self._route(method, path.rstrip("/") or "/", query, body,
                               None if peer is None else peer.upper())
        except ModelError as e:
            return 400, str(e).encode(), None
        except PermissionError as e:
            self.log.warn("DME: refused {method} {path} from {peer}: {why}", method=method,
                          path=path, peer=peer, why=e)
            return 403, str(e).encode(), None
        except (KeyError, IndexError, ValueError, StopIteration) as e:
            return 404, f"{type(e).__name__}: {e}".encode(), None

    def _route(self, method: str, path: str, query: bytes, body: bytes, peer: str | None
               ) -> tuple[int, bytes, str | None]:
        q = parse_query(query)
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/dcap":
            return self._doc(DeviceCapability(
                href="/dcap", pollRate=self.poll_rate, TimeLink=Link(href="/tm"),
                EndDeviceListLink=ListLink(href="/edev", all=len(self._visible(peer))),
                MirrorUsagePointListLink=ListLink(href="/mup", all=len(self.mups))))
        if method == "GET" and path == "/tm":
            return self._doc(Time(href="/tm", currentTime=self.now(), dstEndTime=0,
                                  dstOffset=0, dstStartTime=0, quality=TimeQuality.LEVEL_5,
                                  tzOffset=0, pollRate=self.poll_rate))
        if path == "/edev":
            if method == "GET":
                return self._doc(fill_list(EndDeviceList(href="/edev", pollRate=self.poll_rate),
                                           [self._edev(d) for d in self._visible(peer)], q))
            if method == "POST":
                if not self.registration:
                    return 403, b"registration by POST not allowed", None
                doc = parse(body, EndDevice)
                lfdi = doc.lFDI.hex().upper() if doc.lFDI else ""
                if peer is not None and lfdi != peer:
                    raise PermissionError(f"EndDevice lFDI {lfdi or '(none)'} is not the "
                                          f"client certificate's {peer}")
                if self.allow is not None and lfdi not in self.allow:
                    raise PermissionError(f"LFDI {lfdi} is not in the allow list")
                return 201, b"", self._register(doc)
        if parts[0] == "edev" and len(parts) >= 2:
            device = next(d for d in self.devices.values() if d.href == f"/edev/{parts[1]}")
            lfdi = device.doc.lFDI.hex().upper() if device.doc.lFDI else ""
            if peer is not None and lfdi != peer:
                raise PermissionError(f"{device.href} is not the client's EndDevice")
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
            key = rest[-1] if rest else ""
            if method == "PUT" and key in PUT_TYPES:
                device.resources[key] = parse(body, PUT_TYPES[key])
                if self.store is not None:
                    self.store.save_resource(lfdi, key, body)
                    self.store.record(lfdi, method, path, key, body)
                self.log.info("DME: {lfdi} PUT {key}", lfdi=lfdi, key=key)
                return 204, b"", None
        if path == "/derp" and method == "GET":
            return self._doc(fill_list(DERProgramList(href="/derp", pollRate=self.poll_rate), [
                DERProgram(href="/derp/1", mRID=b"\xdb" * 16, primacy=self.primacy,
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
                if self.store is not None:
                    self.store.add_mup(href, peer, serialize(mup))
                self.log.info("DME: MirrorUsagePoint {desc} at {href}",
                              desc=mup.description, href=href)
                return 201, b"", href
        if parts[0] == "mup" and len(parts) == 2:
            if method == "GET":
                return self._doc(self.mups[path])
            if method == "POST":
                return self._post_readings(path, body, peer)
        if path == "/rsps/1/rsp" and method == "POST":
            response = parse(body, Response)
            status = int(response.status or 0)
            new = True
            if self.store is not None:
                new = self.store.record(peer, method, path, "response", body, response=(
                    response.subject.hex(), status, response.createdDateTime))
            else:
                self.responses.append(response)
            self.log.info("DME: Response {status} for {mrid}{dup}", status=status,
                          mrid=response.subject.hex(), dup="" if new else " (duplicate)")
            return 201, b"", f"/rsps/1/rsp/{self.requests}"
        return 404, b"", None

    def _post_readings(self, path: str, body: bytes, peer: str | None
                       ) -> tuple[int, bytes, str | None]:
        if path not in self.mups:
            return 404, b"", None
        if b"MirrorMeterReadingList" in body[:200]:
            entries = parse(body, MirrorMeterReadingList).MirrorMeterReading
        else:
            entries = [parse(body, MirrorMeterReading)]
        new = True
        if self.store is not None:
            new = self.store.record(peer, "POST", path, "reading", body, readings=[
                (e.description, e.Reading.timePeriod.start if e.Reading.timePeriod else None,
                 e.Reading.value) for e in entries if e.Reading is not None])
        else:
            self.readings.extend((path, entry) for entry in entries)
        if not new:
            self.log.info("DME: duplicate readings at {href}", href=path)
        elif self.log_readings:
            for entry in entries:
                if entry.Reading is not None:
                    self.log.info("DME: reading {desc} {value} at {href}",
                                  desc=entry.description, href=path,
                                  value=entry.Reading.value)
        return 201, b"", None

    def _visible(self, peer: str | None) -> list[Device]:
        return [d for lfdi, d in self.devices.items() if peer is None or lfdi == peer]

    def _register(self, doc: EndDevice) -> str:
        lfdi = doc.lFDI.hex().upper() if doc.lFDI else ""
        if lfdi in self.devices:
            return self.devices[lfdi].href
        href = f"/edev/{len(self.devices) + 1}"
        self.devices[lfdi] = Device(href, doc, self.pin)
        if self.store is not None:
            self.store.add_device(lfdi, href, int(doc.sFDI or 0), self.pin)
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
        self.dme = server

    def render(self, request: Any) -> bytes:
        from sepgw.security.identity import peer_identity

        body = request.content.read() if request.content is not None else b""
        path = request.path.decode("utf-8", "replace")
        query = request.uri.partition(b"?")[2]
        identity = peer_identity(request)
        status, out, location = self.dme.handle(
            request.method.decode(), path, query, body,
            peer=identity.lfdi if identity is not None else None)
        request.setResponseCode(status)
        if location:
            request.setHeader(b"Location", location.encode())
        if out and status == 200:
            request.setHeader(b"Content-Type", MEDIA)
        return out
