"""Codecs generated before the first session (sepgw.model.prepare, RoleService): generated
on first use, the fast encoders and scanners of a session's documents cost the first PEV
about 0.2 s in each role (benchmarks/session.py: connect to grant 283 ms, 66 ms prepared)."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from sepgw.config import load
from sepgw.model import (SESSION_TYPES, DERControl, DERControlBase, DERControlList, parse,
                         prepare, serialize)
from sepgw.model import _fast
from sepgw.service.evse import EVSEGateway
from tests.helpers import evse_config, shared_pki


class PrepareTests(SynchronousTestCase):
    def test_prepares_the_class_and_what_it_contains(self) -> None:
        """prepare(DERControlList) generates the encoder and scanner of the list and of the
        DERControl and DERControlBase it contains (2030.5's DERControlList structure); the
        codecs then round-trip a document."""
        prepare(DERControlList)
        for cls in (DERControlList, DERControl, DERControlBase):
            self.assertIn(cls, _fast._encoders, cls.__name__)
            self.assertIn(cls, _fast._scanners, cls.__name__)
        doc = DERControlList(href="/edev/0/derp/1/derc", all=0, results=0)
        self.assertEqual(parse(serialize(doc), DERControlList), doc)

    def test_session_types_cover_what_a_session_exchanges(self) -> None:
        """SESSION_TYPES names the documents of the profile's exchange (section 4.6 and
        Table 4): written out here, independently of the list in the code."""
        names = {cls.__name__ for cls in SESSION_TYPES}
        for name in ("DeviceCapability", "Time", "EndDeviceList", "EndDevice",
                     "DeviceInformation", "PowerStatus", "DERList", "DERCapability",
                     "DERSettings", "DERAvailability", "DERStatus",
                     "FunctionSetAssignmentsList", "DERProgramList", "DefaultDERControl",
                     "DERControlList", "DERCurveList", "Response", "Subscription",
                     "Notification", "MirrorUsagePoint", "MirrorMeterReading"):
            self.assertIn(name, names)


class RolePrepareTests(SynchronousTestCase):
    def test_evse_prepares_before_it_serves(self) -> None:
        """Once the EVSE gateway has started, the codecs of every session document exist,
        so its first PEV does not wait for them."""
        reactor = MemoryReactorClock()
        path = evse_config(Path(self.mktemp()), "", pki=shared_pki(), port=18444)
        gateway = EVSEGateway(load(path, "evse"), reactor)
        gateway.startService()
        self.successResultOf(gateway.started)
        for cls in SESSION_TYPES:
            self.assertIn(cls, _fast._encoders, cls.__name__)
            self.assertIn(cls, _fast._scanners, cls.__name__)
        self.successResultOf(gateway.stopService())
