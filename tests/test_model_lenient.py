"""Lenient mode: exactly the known deviations of the profile's section 5 examples are
accepted, each reported; strict mode (the default) rejects them."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from sepgw.model import (
    DERControlList, DERSettings, Deviation, EndDeviceList, MirrorUsagePoint, ModelError,
    SelfDevice, parse, parse_lenient, serialize,
)

from .test_model_helpers import FIXTURES, schema_errors

LFDI = bytes.fromhex("702C9E51D2D02EFD488453A2BB684C205380B9CF")


class LenientExamplesTests(SynchronousTestCase):
    """The examples as printed in the profile."""

    def test_raw_examples(self) -> None:
        """Every as-printed example that strict mode rejects parses in lenient mode,
        reports at least one deviation, and re-serializes to a schema-valid document."""
        paths = sorted((FIXTURES / "section5-raw").glob("*.xml"))
        self.assertEqual(len(paths), 24)
        for p in paths:
            data = p.read_bytes()
            self.assertRaises(ModelError, parse, data)
            obj, deviations = parse_lenient(data)
            self.assertTrue(deviations, p.name)
            self.assertEqual(schema_errors(serialize(obj)), [], p.name)

    def test_lfdi_sfdi_case(self) -> None:
        """lfdi/sfdi are read as lFDI/sFDI, each reported with its path."""
        data = (FIXTURES / "section5-raw" / "05-SelfDevice.xml").read_bytes()
        e = self.assertRaises(ModelError, parse, data)
        self.assertEqual(str(e), "SelfDevice: unknown element 'lfdi' (did you mean 'lFDI'?)")
        got: list[Deviation] = []
        sdev = parse(data, SelfDevice, lenient=True, on_deviation=got.append)
        self.assertEqual(sdev.lFDI, LFDI)
        self.assertEqual(sdev.sFDI, 301115568938)
        self.assertEqual([str(d) for d in got], [
            "SelfDevice/lfdi: misspelt element: 'lfdi' read as 'lFDI'",
            "SelfDevice/sfdi: misspelt element: 'sfdi' read as 'sFDI'"])

    def test_lfdi_anywhere(self) -> None:
        """In lenient mode the misspelt lfdi/sfdi are accepted out of schema order too
        (the examples differ on where they go); still only once each."""
        doc = (b'<EndDeviceList xmlns="urn:ieee:std:2030.5:ns" all="1" results="1">'
               b'<EndDevice><lfdi>' + LFDI.hex().encode() + b'</lfdi><sfdi>1</sfdi>'
               b'<DERListLink href="/d"/><changedTime>0</changedTime></EndDevice>'
               b'</EndDeviceList>')
        lst, devs = parse_lenient(doc, EndDeviceList)
        self.assertEqual(lst.EndDevice[0].lFDI, LFDI)
        self.assertEqual(len(devs), 2)
        twice = doc.replace(b"<sfdi>1</sfdi>", b"<sfdi>1</sfdi><sFDI>1</sFDI>")
        e = self.assertRaises(ModelError, parse_lenient, twice)
        self.assertEqual(str(e), "EndDeviceList/EndDevice[1]: element 'sFDI' appears more "
                                 "than once")

    def test_updated_at_time(self) -> None:
        """DERSettings updatedAtTime is read as updatedTime."""
        data = (FIXTURES / "section5-raw" / "07-DERSettings.xml").read_bytes()
        s, devs = parse_lenient(data, DERSettings)
        self.assertEqual(s.updatedTime, 1668099600)
        self.assertEqual([d.kind for d in devs], ["misspelt element"])

    def test_17_byte_mrid(self) -> None:
        """A 17-byte mRID loses one 00 byte from its longest zero run (keeping the
        FFFF0000 prefix and the trailing PEN) and the trimming is reported."""
        data = (FIXTURES / "section5-raw" / "33-MirrorUsagePoint.xml").read_bytes()
        mup, devs = parse_lenient(data, MirrorUsagePoint)
        self.assertEqual(mup.mRID.hex().upper(), "FFFF000000000000000000000000D17E")
        self.assertEqual(str(devs[0]),
                         "MirrorUsagePoint/mRID: 17-byte mRID: FFFF00000000000000000000000000"
                         "D17E trimmed to FFFF000000000000000000000000D17E")

    def test_stray_gt_in_boolean(self) -> None:
        """'>false' is read as false."""
        data = (FIXTURES / "section5-raw" / "18-DERControlList.xml").read_bytes()
        lst, devs = parse_lenient(data, DERControlList)
        self.assertIs(lst.DERControl[1].EventStatus.potentiallySuperseded, False)
        self.assertEqual({d.kind for d in devs}, {"stray '>' in boolean"})

    def test_only_known_deviations(self) -> None:
        """Lenient mode is not lax: other errors (unknown elements, other misspellings,
        out-of-range values, 18-byte mRIDs) are still rejected."""
        ns = 'xmlns="urn:ieee:std:2030.5:ns"'
        for doc in [
            f"<SelfDevice {ns}><Sfdi>1</Sfdi></SelfDevice>",
            f"<SelfDevice {ns}><sFDI>x</sFDI></SelfDevice>",
            f"<DERProgram {ns}><mRID>{'11' * 17}</mRID><primacy>0</primacy></DERProgram>",
            f"<DERProgram {ns}><mRID>{'00' * 18}</mRID><primacy>0</primacy></DERProgram>",
        ]:
            self.assertRaises(ModelError, parse_lenient, doc.encode())
