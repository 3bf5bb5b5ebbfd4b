"""Strict parsing: each rule rejects with one error type (ModelError, a ValueError) and a
path-qualified message; hostile documents (XXE, billion laughs, oversize, deep) are refused;
serializing invalid objects fails the same way."""

from __future__ import annotations

import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from sepgw.model import (
    ActivePower, DERControlBase, DERCurve, DERSettings, DERStatus, DefaultDERControl,
    DERCurveType, DERUnitRefType, EndDevice, Link, ModelError, Response, DERControlResponse, parse, serialize,
)
from sepgw.model import Deviation, _fast
from sepgw.model.codec import _lxml_parser, DEFAULT_MAX_DEPTH, ELEMENT_2023, SCHEMA_VER

NSDECL = 'xmlns="urn:ieee:std:2030.5:ns"'


def settings(body: str, attrs: str = "") -> bytes:
    return (f"<DERSettings {NSDECL}{attrs}><setGradW>0</setGradW>{body}"
            f"<updatedTime>1</updatedTime></DERSettings>").encode()


MAXW = "<setMaxW><multiplier>0</multiplier><value>6500</value></setMaxW>"


class StrictnessTests(SynchronousTestCase):
    """One rule per test, with the exact message a client developer sees."""

    def assertRejected(self, data: bytes, message: str, **kw: object) -> ModelError:
        e = self.assertRaises(ModelError, parse, data, **kw)
        self.assertEqual(str(e), message)
        self.assertIsInstance(e, ValueError)
        return e

    def test_valid_baseline(self) -> None:
        """The baseline document used below is accepted (so each rejection is due to the
        one change it makes)."""
        self.assertIsInstance(parse(settings(MAXW), DERSettings), DERSettings)

    def test_wrong_type(self) -> None:
        """A non-integer where an integer is due names the element path and the value."""
        self.assertRejected(
            settings("<setMaxW><multiplier>0</multiplier><value>abc</value></setMaxW>"),
            "DERSettings/setMaxW/value: 'abc' is not an integer")

    def test_integer_lexical_forms(self) -> None:
        """XSD integer forms are accepted (surrounding whitespace, a sign); Python-only
        forms (underscores, non-ASCII digits) are not."""
        ok = parse(settings("<setMaxW><multiplier> -3 </multiplier><value>+65</value>"
                            "</setMaxW>"), DERSettings)
        self.assertEqual(ok.setMaxW, ActivePower(multiplier=-3, value=65))
        self.assertRejected(
            settings("<setMaxW><multiplier>0</multiplier><value>6_500</value></setMaxW>"),
            "DERSettings/setMaxW/value: '6_500' is not an integer")
        self.assertRejected(
            settings("<setMaxW><multiplier>0</multiplier><value>٦</value></setMaxW>"),
            "DERSettings/setMaxW/value: '٦' is not an integer")

    def test_out_of_range(self) -> None:
        """A value outside its XSD type's range is rejected with the range."""
        self.assertRejected(
            settings("<setMaxW><multiplier>0</multiplier><value>40000</value></setMaxW>"),
            "DERSettings/setMaxW/value: 40000 is out of range for Int16 (-32768..32767)")
        self.assertRejected(
            settings(MAXW).replace(b"<setGradW>0<", b"<setGradW>-1<"),
            "DERSettings/setGradW: -1 is out of range for UInt16 (0..65535)")

    def test_percent_range(self) -> None:
        """Percentages are hundredths, 0..10000 (PerCent) and -10000..10000
        (SignedPerCent)."""
        dderc = (f'<DefaultDERControl {NSDECL}><mRID>01</mRID><DERControlBase>'
                 f'<opModFixedW>-10001</opModFixedW></DERControlBase></DefaultDERControl>')
        self.assertRejected(
            dderc.encode(),
            "DefaultDERControl/DERControlBase/opModFixedW: -10001 is out of range for "
            "SignedPerCent (-10000..10000)")
        self.assertRejected(
            dderc.replace("opModFixedW>-10001</opModFixedW", "opModMaxLimW>10001</opModMaxLimW")
            .encode(),
            "DefaultDERControl/DERControlBase/opModMaxLimW: 10001 is out of range for "
            "PerCent (0..10000)")

    def test_missing_required_element(self) -> None:
        """A missing required element is named."""
        self.assertRejected(settings(""), "DERSettings: missing required element 'setMaxW'")

    def test_missing_required_attribute(self) -> None:
        """A list without its required 'all' attribute is rejected."""
        self.assertRejected(
            f'<DERControlList {NSDECL} results="0"/>'.encode(),
            "DERControlList: missing required attribute 'all'")

    def test_unknown_element(self) -> None:
        """An element the schema does not define there is rejected, with a hint for a
        wrong-case name."""
        self.assertRejected(settings(MAXW + "<setFoo>1</setFoo>"),
                            "DERSettings: unknown element 'setFoo' in DERSettings")
        self.assertRejected(settings("<setmaxw><multiplier>0</multiplier><value>1</value>"
                                     "</setmaxw>"),
                            "DERSettings: unknown element 'setmaxw' (did you mean 'setMaxW'?)")

    def test_unknown_attribute(self) -> None:
        """An attribute the schema does not define is rejected."""
        self.assertRejected(settings(MAXW, ' color="red"'),
                            "DERSettings: unknown attribute 'color'")

    def test_out_of_order(self) -> None:
        """Elements out of schema sequence order are rejected."""
        doc = (f"<DERSettings {NSDECL}>{MAXW}<setGradW>0</setGradW>"
               f"<updatedTime>1</updatedTime></DERSettings>").encode()
        self.assertRejected(doc, "DERSettings: element 'setGradW' is out of schema order "
                                 "(it must come before 'setMaxW')")

    def test_duplicate(self) -> None:
        """A non-repeating element given twice is rejected."""
        self.assertRejected(settings(MAXW + MAXW),
                            "DERSettings: element 'setMaxW' appears more than once")

    def test_wrong_root(self) -> None:
        """A document of another type than expected is rejected; an unknown root too."""
        self.assertRejected(settings(MAXW),
                            "DERSettings: expected a DERStatus document, got DERSettings",
                            expected=DERStatus)
        self.assertRejected(f"<Foo {NSDECL}/>".encode(),
                            "Foo: not a known IEEE 2030.5 resource")

    def test_subclass_root_accepted(self) -> None:
        """expected=Response accepts a DERControlResponse document (a Response)."""
        doc = (f"<DERControlResponse {NSDECL}><endDeviceLFDI>{'AB' * 20}</endDeviceLFDI>"
               f"<subject>01</subject></DERControlResponse>").encode()
        self.assertIsInstance(parse(doc, Response), DERControlResponse)

    def test_wrong_namespace(self) -> None:
        """Elements outside urn:ieee:std:2030.5:ns are rejected, root or child."""
        self.assertRejected(b"<DERSettings/>",
                            "DERSettings: root element is not in namespace "
                            "urn:ieee:std:2030.5:ns")
        self.assertRejected(
            settings('<setMaxW xmlns="urn:other"><multiplier>0</multiplier>'
                     '<value>1</value></setMaxW>'),
            "DERSettings: element 'setMaxW' is not in namespace urn:ieee:std:2030.5:ns "
            "(it is in 'urn:other')")

    def test_hex_lengths(self) -> None:
        """hexBinary lengths: LFDI exactly 20 bytes, mRID at most 16 bytes, HexBinary8
        flags at most one byte, odd digit counts and non-hex refused."""
        def ed(lfdi: str) -> bytes:
            return (f"<EndDevice {NSDECL}><lFDI>{lfdi}</lFDI><sFDI>1</sFDI>"
                    f"<changedTime>0</changedTime></EndDevice>").encode()
        self.assertRejected(ed("AB" * 19), f"EndDevice/lFDI: '{'AB' * 19}' is 19 bytes, "
                                           "HexBinary160 (LFDI) must be exactly 20")
        self.assertRejected(ed("AB" * 21), f"EndDevice/lFDI: '{'AB' * 21}' is 21 bytes, "
                                           "HexBinary160 (LFDI) allows at most 20")
        self.assertRejected(ed("ABC"), "EndDevice/lFDI: 'ABC' is not hexBinary")
        self.assertRejected(ed("XY" * 20), f"EndDevice/lFDI: '{'XY' * 20}' is not hexBinary")
        mrid = "CC" * 17
        self.assertRejected(
            (f"<DERCurve {NSDECL}><mRID>{mrid}</mRID><creationTime>0</creationTime>"
             f"<CurveData><xvalue>0</xvalue><yvalue>0</yvalue></CurveData>"
             f"<curveType>11</curveType><xMultiplier>0</xMultiplier>"
             f"<yMultiplier>0</yMultiplier><yRefType>0</yRefType></DERCurve>").encode(),
            f"DERCurve/mRID: '{mrid}' is 17 bytes, mRIDType allows at most 16")
        ctl = (f'<DERControlList {NSDECL} all="1" results="1"><DERControl '
               f'responseRequired="0103"><mRID>01</mRID></DERControl></DERControlList>')
        self.assertRejected(ctl.encode(), "DERControlList/DERControl[1]/@responseRequired: "
                                          "'0103' is 2 bytes, HexBinary8 allows at most 1")

    def test_boolean(self) -> None:
        """Booleans are true/false/1/0 only."""
        doc = (f'<DefaultDERControl {NSDECL}><mRID>01</mRID><DERControlBase>'
               f'<opModEnergize>yes</opModEnergize></DERControlBase></DefaultDERControl>')
        self.assertRejected(doc.encode(), "DefaultDERControl/DERControlBase/opModEnergize: "
                                          "'yes' is not a boolean (true, false, 1 or 0)")
        ok = parse(doc.replace("yes", "1").encode(), DefaultDERControl)
        self.assertIs(ok.DERControlBase.opModEnergize, True)

    def test_reserved_enumeration_value(self) -> None:
        """A reserved value of a closed enumeration (inverterStatus 11) is rejected
        (V2G-4.7.2-2: only the defined enumerations are used)."""
        doc = (f"<DERStatus {NSDECL}><inverterStatus><dateTime>0</dateTime><value>11</value>"
               f"</inverterStatus><readingTime>0</readingTime></DERStatus>").encode()
        self.assertRejected(doc, "DERStatus/inverterStatus/value: 11 is not a valid "
                                 "InverterStatus (reserved value)")

    def test_string_too_long(self) -> None:
        """String32 allows 32 characters."""
        doc = (f"<DefaultDERControl {NSDECL}><mRID>01</mRID><description>{'x' * 33}"
               f"</description><DERControlBase/></DefaultDERControl>").encode()
        self.assertRejected(doc, f"DefaultDERControl/description: '{'x' * 33}' is 33 "
                                 f"characters, String32 allows at most 32")

    def test_mixed_content(self) -> None:
        """Text between elements of a complex type, or attributes/children on a simple
        value, are rejected."""
        self.assertRejected(settings(MAXW + "junk"), "DERSettings: unexpected text 'junk'")
        self.assertRejected(settings(MAXW).replace(b"<setGradW>", b'<setGradW x="1">'),
                            "DERSettings/setGradW: a simple value cannot have attributes "
                            "or child elements")

    def test_occurrence_bounds(self) -> None:
        """DERCurve needs 1..10 CurveData."""
        pts = "<CurveData><xvalue>0</xvalue><yvalue>0</yvalue></CurveData>" * 11
        doc = (f"<DERCurve {NSDECL}><mRID>01</mRID><creationTime>0</creationTime>{pts}"
               f"<curveType>11</curveType><xMultiplier>0</xMultiplier>"
               f"<yMultiplier>0</yMultiplier><yRefType>0</yRefType></DERCurve>").encode()
        self.assertRejected(doc, "DERCurve: element 'CurveData' may occur at most 10 times")

    def test_xsi_type_checked(self) -> None:
        """A Notification's Resource must name a known resource type with xsi:type."""
        doc = (f'<Notification {NSDECL} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
               f'<subscribedResource>/x</subscribedResource><Resource xsi:type="Bogus"/>'
               f'<status>0</status><subscriptionURI>/s</subscriptionURI></Notification>')
        self.assertRejected(doc.encode(),
                            "Notification/Resource: xsi:type 'Bogus' is not a known Resource "
                            "type")

    def test_not_well_formed(self) -> None:
        """The profile's </DERControllist> typo is not XML; it is rejected in strict and
        lenient mode alike."""
        doc = f'<DERControlList {NSDECL} all="0" results="0"></DERControllist>'.encode()
        e = self.assertRaises(ModelError, parse, doc)
        self.assertTrue(str(e).startswith("not well-formed XML: "))
        self.assertRaises(ModelError, parse, doc, lenient=True)

    def test_nested_errors_have_list_index(self) -> None:
        """Errors inside list entries name the entry (1-based)."""
        good = ("<DER><DERSettingsLink href='/a'/></DER>")
        bad = ("<DER><DERSettingsLink/></DER>")
        doc = f'<DERList {NSDECL} all="2" results="2">{good}{bad}</DERList>'.encode()
        self.assertRejected(doc, "DERList/DER[2]/DERSettingsLink: missing required "
                                 "attribute 'href'")


class SchemaVerTests(SynchronousTestCase):
    """IEEE 2030.5-2023 documents carry a ``schemaVer`` attribute on their root element
    (2023 schema: "All XML payloads SHALL include a schemaVer attribute in the top-level XML
    element", type SEPVersion, pattern ``[1-9][0-9]{0,2}[.]([0]|[1-9][0-9]{0,2})``); the 2018
    schema has none. A 2018 server meets both editions (issue 10 item 9): the attribute is
    accepted, ignored and reported, in strict and lenient mode, on every parse path."""

    LFDI = "A2038B8645F15C66D889FFBC4352AC0B8CDACBA1"
    PLAIN = (f'<DERControlResponse {NSDECL}><createdDateTime>1</createdDateTime>'
             f'<endDeviceLFDI>{LFDI}</endDeviceLFDI><status>1</status>'
             f'<subject>000000000000000000000000000000AB</subject></DERControlResponse>')

    def with_ver(self, version: str = "2.2", doc: str | None = None) -> bytes:
        doc = doc or self.PLAIN
        return doc.replace(f"<DERControlResponse {NSDECL}",
                           f'<DERControlResponse {NSDECL} schemaVer="{version}"', 1).encode()

    def assertIgnored(self, data: bytes, lenient: bool = False) -> None:
        got: list[Deviation] = []
        obj = parse(data, Response, lenient=lenient, on_deviation=got.append)
        self.assertEqual(obj, parse(self.PLAIN, Response))
        self.assertEqual([(d.path, d.kind) for d in got],
                         [("DERControlResponse/@schemaVer", SCHEMA_VER)])
        self.assertIn("'2.2'", got[0].detail)

    def test_py20305_default_mode_document(self) -> None:
        """A DERControlResponse as py20305 (an independent 2030.5 library) writes it in its
        default, 2023 mode, with schemaVer="2.2", is read as the same Response in strict and
        lenient mode, the schemaVer reported once."""
        try:
            from py20305.models.sep import sep
            from py20305.xml.serialization import from_xml, to_xml
        except ImportError:  # pragma: no cover
            raise self.skipTest("py20305 not installed")
        data = to_xml(from_xml(self.PLAIN.encode(), sep.DercontrolResponse))
        self.assertIn(b' schemaVer="2.2"', data)
        self.assertIgnored(data)
        self.assertIgnored(data, lenient=True)

    def test_scanner_path(self) -> None:
        """The text scanner (the fast path for plain documents) skips a root schemaVer and
        hands its value back, wherever it is among the root's attributes."""
        versions: list[str] = []
        obj = _fast.scan(self.with_ver(), None, DEFAULT_MAX_DEPTH, versions)
        self.assertEqual(obj, parse(self.PLAIN))
        self.assertEqual(versions, ["2.2"])
        self.assertIgnored(self.with_ver())
        listed = (f'<DERControlList {NSDECL} href="/d" schemaVer="2.2" all="0" results="0"/>')
        versions = []
        self.assertIsNotNone(_fast.scan(listed.encode(), None, DEFAULT_MAX_DEPTH, versions))
        self.assertEqual(versions, ["2.2"])

    def test_lxml_path(self) -> None:
        """A document the scanner gives up on (here: a comment) goes through lxml; there
        too the root schemaVer is ignored and reported, by the generated tree decoder
        (strict) and by the generic decoder (lenient)."""
        data = self.with_ver(doc=self.PLAIN.replace("<status>", "<!-- c --><status>"))
        self.assertIsNone(_fast.scan(data, None, DEFAULT_MAX_DEPTH, []))
        self.assertIgnored(data)
        self.assertIgnored(data, lenient=True)

    def test_bad_schema_ver_rejected(self) -> None:
        """A schemaVer that is not a SEPVersion is rejected with its path, on every path."""
        for version in ("x", "2", "02.2", "2.02", ""):
            for data in (self.with_ver(version),
                         self.with_ver(version, self.PLAIN.replace("<status>",
                                                                   "<!-- c --><status>"))):
                for lenient in (False, True):
                    e = self.assertRaises(ModelError, parse, data, lenient=lenient)
                    self.assertTrue(str(e).startswith("DERControlResponse/@schemaVer: "),
                                    str(e))

    def test_2023_der_control_response_elements(self) -> None:
        """The 2023 edition appends modesResponded and modesResponded2 (HexBinary32) to
        DERControlResponse, and a 2023 client (py20305) sends them: at the end of the root
        they are checked, ignored and reported in document order; a bad value or one out of
        place is rejected with its path."""
        doc = self.PLAIN.replace("</DERControlResponse>",
                                 "<modesResponded>00000100</modesResponded>"
                                 "<modesResponded2>1</modesResponded2></DERControlResponse>")
        for lenient in (False, True):
            got: list[Deviation] = []
            obj = parse(doc, Response, lenient=lenient, on_deviation=got.append)
            self.assertEqual(obj, parse(self.PLAIN, Response))
            self.assertEqual([(d.path, d.kind) for d in got],
                             [("DERControlResponse/modesResponded", ELEMENT_2023),
                              ("DERControlResponse/modesResponded2", ELEMENT_2023)])
        e = self.assertRaises(ModelError, parse, doc.replace(">1</modesResponded2",
                                                             ">x</modesResponded2"))
        self.assertEqual(str(e), "DERControlResponse/modesResponded2: not a HexBinary32 "
                                 "(IEEE 2030.5-2023 element)")
        early = self.PLAIN.replace("<status>", "<modesResponded>1</modesResponded><status>")
        e = self.assertRaises(ModelError, parse, early)
        self.assertEqual(str(e), "DERControlResponse: unknown element 'modesResponded' in "
                                 "DERControlResponse")
        plain_response = self.PLAIN.replace("DERControlResponse", "Response").replace(
            "</Response>", "<modesResponded>1</modesResponded></Response>")
        self.assertRaises(ModelError, parse, plain_response)

    def test_only_on_the_root(self) -> None:
        """schemaVer is a root-element attribute: on a nested element it is still unknown."""
        doc = (f'<DERSettings {NSDECL}><setGradW>0</setGradW><setMaxW schemaVer="2.2">'
               f'<multiplier>0</multiplier><value>1</value></setMaxW>'
               f'<updatedTime>1</updatedTime></DERSettings>').encode()
        e = self.assertRaises(ModelError, parse, doc)
        self.assertEqual(str(e), "DERSettings/setMaxW: unknown attribute 'schemaVer'")


class SafetyTests(SynchronousTestCase):
    """Hostile input is refused before it can do harm."""

    def test_parser_settings(self) -> None:
        """The shared lxml parser does not resolve entities, use the network, load DTDs or
        allow huge trees: even given an XXE document directly, the file is not read."""
        from lxml import etree
        fd, path = tempfile.mkstemp()
        self.addCleanup(os.remove, path)
        os.write(fd, b"TOP-SECRET-42")
        os.close(fd)
        xxe = (f'<!DOCTYPE r [<!ENTITY e SYSTEM "file://{path}">]>'
               f'<r xmlns="urn:ieee:std:2030.5:ns">&e;</r>').encode()
        root = etree.fromstring(xxe, _lxml_parser())
        self.assertNotIn(b"TOP-SECRET", etree.tostring(root))

    def test_xxe_rejected(self) -> None:
        """An external entity (XXE) document is rejected, and the file's content appears
        nowhere in the error."""
        fd, path = tempfile.mkstemp()
        self.addCleanup(os.remove, path)
        os.write(fd, b"TOP-SECRET-42")
        os.close(fd)
        doc = (f'<?xml version="1.0"?><!DOCTYPE DERSettings [<!ENTITY x SYSTEM '
               f'"file://{path}">]><DERSettings {NSDECL}><setGradW>0</setGradW>'
               f'<setMaxW><multiplier>0</multiplier><value>&x;</value></setMaxW>'
               f'<updatedTime>1</updatedTime></DERSettings>').encode()
        for lenient in (False, True):
            e = self.assertRaises(ModelError, parse, doc, lenient=lenient)
            self.assertEqual(str(e), "DOCTYPE and entity declarations are not allowed")
            self.assertNotIn("TOP-SECRET", repr(e.args))
        # Encoded in UTF-16 the byte check cannot see the DOCTYPE; the parsed tree's
        # docinfo still does, and the entity was never resolved.
        e = self.assertRaises(ModelError, parse, doc.decode().replace(
            '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
            .encode("utf-16"))
        self.assertNotIn("TOP-SECRET", str(e))

    def test_billion_laughs_rejected(self) -> None:
        """The billion laughs entity expansion bomb is rejected without expansion."""
        ents = '<!ENTITY lol "lol">' + "".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
            for i in range(1, 10))
        doc = (f'<?xml version="1.0"?><!DOCTYPE lolz [{ents}]>'
               f'<DERSettings {NSDECL}><setGradW>0</setGradW><setMaxW><multiplier>0'
               f'</multiplier><value>1</value></setMaxW><updatedTime>1</updatedTime>'
               f'<x>&lol9;</x></DERSettings>').encode()
        e = self.assertRaises(ModelError, parse, doc)
        self.assertEqual(str(e), "DOCTYPE and entity declarations are not allowed")
        e = self.assertRaises(ModelError, parse, doc.decode().replace(
            '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
            .encode("utf-16"))
        self.assertLess(len(str(e)), 300)

    def test_size_limit(self) -> None:
        """Documents over the size limit (64 KiB by default, or as given) are rejected."""
        doc = settings(MAXW)
        self.assertRejectedSize(doc, len(doc) - 1)
        big = settings(MAXW).replace(b"<setGradW>", b" " * 70000 + b"<setGradW>")
        e = self.assertRaises(ModelError, parse, big)
        self.assertEqual(str(e), f"document is {len(big)} bytes, the limit is 65536")

    def assertRejectedSize(self, doc: bytes, limit: int) -> None:
        e = self.assertRaises(ModelError, parse, doc, max_size=limit)
        self.assertEqual(str(e), f"document is {len(doc)} bytes, the limit is {limit}")

    def test_depth_limit(self) -> None:
        """Nesting deeper than max_depth is rejected."""
        doc = (f'<DERControlList {NSDECL} all="1" results="1"><DERControl><mRID>01</mRID>'
               f'<creationTime>0</creationTime><EventStatus><currentStatus>1</currentStatus>'
               f'<dateTime>0</dateTime><potentiallySuperseded>0</potentiallySuperseded>'
               f'</EventStatus><interval><duration>1</duration><start>0</start></interval>'
               f'<DERControlBase/></DERControl></DERControlList>').encode()
        parse(doc)
        e = self.assertRaises(ModelError, parse, doc, max_depth=2)
        self.assertEqual(str(e), "DERControlList/DERControl[1]/EventStatus: nesting deeper "
                                 "than 2 levels")


class SerializeErrorTests(SynchronousTestCase):
    """Invalid objects are not written."""

    def test_out_of_range_value(self) -> None:
        """An out-of-range value is refused with its path."""
        s = DERSettings(setGradW=0, setMaxW=ActivePower(multiplier=0, value=70000),
                        updatedTime=0)
        e = self.assertRaises(ModelError, serialize, s)
        self.assertEqual(str(e), "DERSettings/setMaxW/value: 70000 is out of range for Int16 "
                                 "(-32768..32767)")

    def test_missing_required(self) -> None:
        """A required element set to None is refused."""
        s = DERSettings(setGradW=0, setMaxW=None, updatedTime=0)  # type: ignore[arg-type]
        e = self.assertRaises(ModelError, serialize, s)
        self.assertEqual(str(e), "DERSettings: required element 'setMaxW' is missing")

    def test_wrong_types(self) -> None:
        """Wrong Python types are refused: a str for an int, a bool for an int, the wrong
        class for a nested element, an over-long mRID."""
        cases = [
            (DERSettings(setGradW="1", setMaxW=ActivePower(multiplier=0, value=1),  # type: ignore[arg-type]
                         updatedTime=0), "DERSettings/setGradW: '1' is not an integer"),
            (DERSettings(setGradW=True, setMaxW=ActivePower(multiplier=0, value=1),
                         updatedTime=0), "DERSettings/setGradW: True is not an integer"),
            (DERSettings(setGradW=1, setMaxW=Link(href="/x"),  # type: ignore[arg-type]
                         updatedTime=0), "DERSettings/setMaxW: Link is not a ActivePower"),
            (DefaultDERControl(mRID=bytes(17), DERControlBase=DERControlBase()),
             f"DefaultDERControl/mRID: {'00' * 17} is 17 bytes, mRIDType allows at most 16"),
            (EndDevice(sFDI=1, changedTime=0, lFDI=bytes(19)),
             f"EndDevice/lFDI: {'00' * 19} is 19 bytes, HexBinary160 (LFDI) must be "
             f"exactly 20"),
        ]
        for obj, msg in cases:
            e = self.assertRaises(ModelError, serialize, obj)
            self.assertEqual(str(e), msg)

    def test_curve_points(self) -> None:
        """A DERCurve without CurveData is refused (minOccurs 1)."""
        c = DERCurve(mRID=bytes(16), creationTime=0, curveType=DERCurveType.opModVoltVar,
                     xMultiplier=0, yMultiplier=0, yRefType=DERUnitRefType.NOT_APPLICABLE)
        e = self.assertRaises(ModelError, serialize, c)
        self.assertEqual(str(e), "DERCurve: required element 'CurveData' is missing")

    def test_xml_invalid_characters(self) -> None:
        """A string with a character XML cannot carry is refused."""
        d = DefaultDERControl(mRID=bytes(1), description="a\x00b",
                              DERControlBase=DERControlBase())
        e = self.assertRaises(ModelError, serialize, d)
        self.assertEqual(str(e), "DefaultDERControl/description: 'a\\x00b' contains "
                                 "characters XML cannot carry")

    def test_unregistered(self) -> None:
        """Only registered resources can be document roots."""
        self.assertRaises(TypeError, serialize, ActivePower(multiplier=0, value=1))
