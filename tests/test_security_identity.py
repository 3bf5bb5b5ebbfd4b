"""
Tests for sepgw.security.identity: LFDI, SFDI, HardwareModuleName, PeerIdentity.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.trial.unittest import SynchronousTestCase

from sepgw.security import pki
from sepgw.security.identity import (
    HARDWARE_MODULE_NAME_OID,
    HardwareModuleName,
    PeerIdentity,
    hardware_module_name,
    lfdi_from_certificate,
    lfdi_from_der,
    lfdi_matches,
    normalize_lfdi,
    peer_identity,
    sfdi_from_lfdi,
)
from tests.security_helpers import shared_pki

PROFILE_LFDI = "A2038B8645F15C66D889FFBC4352AC0B8CDACBA1"
PROFILE_SFDI = 434902610920


class SFDITests(SynchronousTestCase):
    def test_profileExample(self) -> None:
        """
        The profile's own example: LFDI A2038B8645F15C66D889FFBC4352AC0B8CDACBA1 gives
        SFDI 434902610920 (36 bits in decimal, then the digit-sum check digit).
        """
        self.assertEqual(sfdi_from_lfdi(PROFILE_LFDI), PROFILE_SFDI)

    def test_lowerCase(self) -> None:
        """
        The SFDI does not depend on the case of the LFDI.
        """
        self.assertEqual(sfdi_from_lfdi(PROFILE_LFDI.lower()), PROFILE_SFDI)

    def test_checkDigitIsDigitSumNotLuhn(self) -> None:
        """
        For many LFDIs the check digit makes the digit sum a multiple of 10, and the
        prefix is the first 36 bits; at least one of them differs from what Luhn would give
        (so the implementation is not Luhn).
        """
        differs_from_luhn = False
        for i in range(200):
            lfdi = hashlib.sha256(str(i).encode()).hexdigest()[:40]
            sfdi = sfdi_from_lfdi(lfdi)
            self.assertEqual(sum(int(d) for d in str(sfdi)) % 10, 0)
            self.assertEqual(sfdi // 10, int(lfdi[:9], 16))
            digits = [int(d) for d in str(sfdi // 10)]
            total = 0
            for pos, d in enumerate(reversed(digits)):
                if pos % 2 == 0:
                    d *= 2
                    if d > 9:
                        d -= 9
                total += d
            if (10 - total % 10) % 10 != sfdi % 10:
                differs_from_luhn = True
        self.assertTrue(differs_from_luhn)

    def test_zeroPrefix(self) -> None:
        """
        An LFDI starting with nine zero hex digits gives SFDI 0 (check digit 0).
        """
        self.assertEqual(sfdi_from_lfdi("0" * 40), 0)

    def test_invalidLFDI(self) -> None:
        """
        Values that are not 40 hex digits are rejected.
        """
        for bad in ["", "A2038B", PROFILE_LFDI + "00", "G" * 40]:
            self.assertRaises(ValueError, sfdi_from_lfdi, bad)


class LFDITests(SynchronousTestCase):
    def test_lfdiIsTruncatedSHA256OfDER(self) -> None:
        """
        The LFDI is the first 160 bits of SHA-256 over the certificate DER, upper case.
        """
        cert = pki.load_certificates(shared_pki().paths.pev)[0]
        der = cert.public_bytes(Encoding.DER)
        expected = hashlib.sha256(der).hexdigest()[:40].upper()
        self.assertEqual(lfdi_from_der(der), expected)
        self.assertEqual(lfdi_from_certificate(cert), expected)
        self.assertEqual(len(expected), 40)

    def test_caseInsensitiveComparison(self) -> None:
        """
        LFDIs compare without regard to case or surrounding white space and normalise to
        upper case.
        """
        self.assertTrue(lfdi_matches(PROFILE_LFDI, " " + PROFILE_LFDI.lower() + "\n"))
        self.assertFalse(lfdi_matches(PROFILE_LFDI, "0" * 40))
        self.assertEqual(normalize_lfdi(PROFILE_LFDI.lower()), PROFILE_LFDI)


class HardwareModuleNameTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        """
        A HardwareModuleName survives DER encoding and decoding.
        """
        hwmn = HardwareModuleName("1.3.6.1.4.1.32473.2.5", b"\x00VIN\xff")
        self.assertEqual(HardwareModuleName.from_der(hwmn.to_der()), hwmn)

    def test_fromPEVCertificate(self) -> None:
        """
        The PEV certificate's make/model hwType and serial are read from the
        subjectAltName otherName 1.3.6.1.5.5.7.8.4 (V2G-4.4-2).
        """
        cert = pki.load_certificates(shared_pki().paths.pev)[0]
        self.assertEqual(
            hardware_module_name(cert),
            HardwareModuleName(pki.DEFAULT_PEV_HW_TYPE, b"PEV-TEST-1"),
        )

    def test_otherNameLayout(self) -> None:
        """
        The otherName type-id is id-on-hardwareModuleName and its value is
        SEQUENCE { OID, OCTET STRING } (checked byte by byte).
        """
        cert = pki.load_certificates(shared_pki().paths.pev)[0]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        (other,) = san.value.get_values_for_type(x509.OtherName)
        self.assertEqual(other.type_id, HARDWARE_MODULE_NAME_OID)
        self.assertEqual(other.value[0], 0x30)  # SEQUENCE
        self.assertEqual(other.value[2], 0x06)  # OBJECT IDENTIFIER first
        self.assertTrue(san.critical)  # the subject is empty, so SAN is critical

    def test_absent(self) -> None:
        """
        A certificate without subjectAltName (the SERCA) has no HardwareModuleName.
        """
        cert = pki.load_certificates(shared_pki().paths.serca)[0]
        self.assertIsNone(hardware_module_name(cert))

    def test_malformed(self) -> None:
        """
        Garbage in the otherName value raises ValueError rather than passing silently.
        """
        self.assertRaises(ValueError, HardwareModuleName.from_der, b"\x30\x03\x02\x01\x01")
        self.assertRaises(ValueError, HardwareModuleName.from_der, b"\x04\x00")

    def test_serialText(self) -> None:
        """
        Printable serials show as text, binary ones as hex.
        """
        self.assertEqual(HardwareModuleName("1.2.3", b"ABC-1").serial_text(), "ABC-1")
        self.assertEqual(HardwareModuleName("1.2.3", b"\x01\xff").serial_text(), "01ff")


class PeerIdentityTests(SynchronousTestCase):
    def test_fromCertificate(self) -> None:
        """
        PeerIdentity.from_certificate collects LFDI, SFDI, HardwareModuleName and subject.
        """
        cert = pki.load_certificates(shared_pki().paths.pev)[0]
        identity = PeerIdentity.from_certificate(cert)
        self.assertEqual(identity.lfdi, lfdi_from_certificate(cert))
        self.assertEqual(identity.sfdi, sfdi_from_lfdi(identity.lfdi))
        assert identity.hardware_module_name is not None
        self.assertEqual(identity.hardware_module_name.hw_serial, b"PEV-TEST-1")
        self.assertEqual(identity.subject, "")
        self.assertIs(identity.certificate, cert)
        self.assertTrue(identity.matches_lfdi(identity.lfdi.lower()))
        self.assertFalse(identity.matches_lfdi("nonsense"))

    def test_frozen(self) -> None:
        """
        PeerIdentity cannot be modified after creation.
        """
        cert = pki.load_certificates(shared_pki().paths.pev)[0]
        identity = PeerIdentity.from_certificate(cert)
        with self.assertRaises(AttributeError):
            identity.lfdi = "0" * 40  # type: ignore[misc]

    def test_peerIdentityFromGenericTransport(self) -> None:
        """
        peer_identity() works with any transport offering getPeerCertificate() (pyOpenSSL
        X509 or cryptography certificate), caches per transport, and returns None when
        there is no certificate.
        """
        from OpenSSL.crypto import X509

        cert = pki.load_certificates(shared_pki().paths.pev)[0]
        calls: list[int] = []

        class FakeTransport:
            def __init__(self, value: object) -> None:
                self.value = value

            def getPeerCertificate(self) -> object:
                calls.append(1)
                return self.value

        transport = FakeTransport(X509.from_cryptography(cert))
        first = peer_identity(transport)
        second = peer_identity(transport)
        assert first is not None
        self.assertIs(first, second)
        self.assertEqual(len(calls), 1)
        self.assertEqual(first.lfdi, lfdi_from_certificate(cert))
        self.assertEqual(peer_identity(FakeTransport(cert)), first)
        self.assertIsNone(peer_identity(FakeTransport(None)))
        self.assertIsNone(peer_identity(object()))


class HardwareModuleNameDERTests(SynchronousTestCase):
    """sepgw reads and writes the HardwareModuleName DER itself (no ASN.1 library at run
    time); these tests hold it to pyasn1's reading of the same bytes."""

    def test_agrees_with_pyasn1(self) -> None:
        """Generated names encode to what pyasn1 decodes, and pyasn1's encodings decode to
        the same name. V2G-4.4-2"""
        from hypothesis import given, settings
        from hypothesis import strategies as st
        from pyasn1.codec.der import decoder, encoder
        from pyasn1.type import namedtype, univ

        class HWMN(univ.Sequence):
            componentType = namedtype.NamedTypes(
                namedtype.NamedType("hwType", univ.ObjectIdentifier()),
                namedtype.NamedType("hwSerialNum", univ.OctetString()))

        oids = st.tuples(st.integers(0, 2), st.integers(0, 39),
                         st.lists(st.integers(0, 2**40), max_size=8)).map(
            lambda t: ".".join(map(str, [t[0], t[1], *t[2]])))

        @settings(max_examples=200, deadline=None)
        @given(oids, st.binary(max_size=300))
        def check(oid: str, serial: bytes) -> None:
            name = HardwareModuleName(oid, serial)
            decoded, rest = decoder.decode(name.to_der(), asn1Spec=HWMN())
            self.assertEqual((str(decoded["hwType"]), bytes(decoded["hwSerialNum"]), rest),
                             (oid, serial, b""))
            value = HWMN()
            value["hwType"] = univ.ObjectIdentifier(oid)
            value["hwSerialNum"] = univ.OctetString(serial)
            self.assertEqual(HardwareModuleName.from_der(bytes(encoder.encode(value))), name)

        check()

    def test_malformed_rejected(self) -> None:
        """Truncated, non-minimal and trailing-data encodings raise ValueError."""
        good = HardwareModuleName("1.3.6.1.4.1.32473.2.1", b"PEV-1").to_der()
        for bad in (good[:-1], good + b"\x00", b"\x30\x81\x05" + good[2:],
                    b"\x31" + good[1:], good.replace(b"\x06", b"\x06\x80", 1)[:len(good)]):
            self.assertRaises(ValueError, HardwareModuleName.from_der, bad)
