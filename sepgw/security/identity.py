"""
IEEE 2030.5 device identity derived from a certificate.

* LFDI (long form device identifier): the first 160 bits of the SHA-256 hash of the
  certificate's DER encoding, written as 40 hexadecimal digits.  Compared without regard to
  case; this module always produces and normalises to upper case.
* SFDI (short form device identifier): the first 36 bits of the LFDI as a decimal number,
  followed by one check digit chosen so that the sum of all digits is a multiple of 10.
  (This is *not* the Luhn algorithm.)
* HardwareModuleName (RFC 4108): an ``otherName`` with type-id 1.3.6.1.5.5.7.8.4 in the
  certificate's subjectAltName, ``SEQUENCE { hwType OBJECT IDENTIFIER, hwSerialNum OCTET
  STRING }``.  The SunSpec V2G-AC profile (section 4.4) encodes the PEV make and model in
  ``hwType``.
"""

from __future__ import annotations

import hashlib
import string
import weakref
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = [
    "HARDWARE_MODULE_NAME_OID",
    "HardwareModuleName",
    "PeerIdentity",
    "hardware_module_name",
    "lfdi_from_certificate",
    "lfdi_from_der",
    "lfdi_matches",
    "normalize_lfdi",
    "peer_identity",
    "sfdi_from_lfdi",
]

#: id-on-hardwareModuleName (RFC 4108 section 5).
HARDWARE_MODULE_NAME_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4")

_HEX = frozenset(string.hexdigits)


def lfdi_from_der(der: bytes) -> str:
    """
    Compute the LFDI of a DER-encoded certificate: SHA-256 over the DER, truncated to the
    leftmost 160 bits, as 40 upper-case hexadecimal digits.
    """
    return hashlib.sha256(der).hexdigest()[:40].upper()


def lfdi_from_certificate(cert: x509.Certificate) -> str:
    """
    Compute the LFDI of a parsed certificate (see L{lfdi_from_der}).
    """
    return lfdi_from_der(cert.public_bytes(Encoding.DER))


def normalize_lfdi(lfdi: str) -> str:
    """
    Return C{lfdi} in canonical form (40 upper-case hex digits).

    Surrounding white space is ignored.  Raises L{ValueError} if the value is not 40
    hexadecimal digits.
    """
    text = lfdi.strip()
    if len(text) != 40 or not set(text) <= _HEX:
        raise ValueError(f"not an LFDI (40 hexadecimal digits expected): {lfdi!r}")
    return text.upper()


def lfdi_matches(a: str, b: str) -> bool:
    """
    Compare two LFDIs without regard to case (and surrounding white space).
    """
    return normalize_lfdi(a) == normalize_lfdi(b)


def sfdi_from_lfdi(lfdi: str) -> int:
    """
    Compute the SFDI for an LFDI: the leftmost 36 bits as a decimal number with one check
    digit appended that makes the sum of all digits a multiple of 10.

    >>> sfdi_from_lfdi("A2038B8645F15C66D889FFBC4352AC0B8CDACBA1")
    434902610920
    """
    value = int(normalize_lfdi(lfdi)[:9], 16)  # 9 hex digits = 36 bits
    digit_sum = sum(int(d) for d in str(value))
    check = (10 - digit_sum % 10) % 10
    return value * 10 + check


# RFC 4108 HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER,
# hwSerialNum OCTET STRING }: small enough to read and write in DER directly (a general
# ASN.1 library would cost the appliance more memory than this code).

_SEQUENCE, _OID, _OCTET_STRING = 0x30, 0x06, 0x04


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(value)) + value


def _der_read(data: bytes, pos: int, tag: int, what: str) -> tuple[bytes, int]:
    """The value of the DER element of ``tag`` at ``pos``, and the position after it."""
    if pos + 2 > len(data) or data[pos] != tag:
        raise ValueError(f"malformed HardwareModuleName: {what} expected")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError(f"malformed HardwareModuleName: bad length of {what}")
        length = int.from_bytes(data[pos:pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise ValueError(f"malformed HardwareModuleName: length of {what} not minimal")
        pos += count
    if pos + length > len(data):
        raise ValueError(f"malformed HardwareModuleName: {what} truncated")
    return data[pos:pos + length], pos + length


def _oid_decode(value: bytes) -> str:
    arcs: list[int] = []
    current = 0
    for i, byte in enumerate(value):
        if current == 0 and byte == 0x80:
            raise ValueError("malformed HardwareModuleName: hwType not minimally encoded")
        current = (current << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(current)
            current = 0
        elif i == len(value) - 1:
            raise ValueError("malformed HardwareModuleName: hwType truncated")
    if not arcs:
        raise ValueError("malformed HardwareModuleName: empty hwType")
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def _oid_encode(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


@dataclass(frozen=True)
class HardwareModuleName:
    """
    The HardwareModuleName of a device certificate.

    @ivar hw_type: the hwType OID in dotted form; for a PEV it identifies make and model
        (profile section 4.4).
    @ivar hw_serial: the hwSerialNum octets.
    """

    hw_type: str
    hw_serial: bytes

    def __post_init__(self) -> None:
        # Validates the dotted form; raises ValueError for nonsense.
        x509.ObjectIdentifier(self.hw_type)
        if not isinstance(self.hw_serial, bytes):
            raise TypeError("hw_serial must be bytes")

    @classmethod
    def from_der(cls, der: bytes) -> HardwareModuleName:
        """
        Parse the DER encoding of the HardwareModuleName SEQUENCE.

        Raises L{ValueError} if it is malformed.
        """
        der = bytes(der)
        body, end = _der_read(der, 0, _SEQUENCE, "SEQUENCE")
        if end != len(der):
            raise ValueError("malformed HardwareModuleName: trailing data")
        oid, pos = _der_read(body, 0, _OID, "hwType OBJECT IDENTIFIER")
        serial, pos = _der_read(body, pos, _OCTET_STRING, "hwSerialNum OCTET STRING")
        if pos != len(body):
            raise ValueError("malformed HardwareModuleName: trailing data in the SEQUENCE")
        return cls(hw_type=_oid_decode(oid), hw_serial=serial)

    def to_der(self) -> bytes:
        """
        The DER encoding of this HardwareModuleName (the otherName value).
        """
        return _der_tlv(_SEQUENCE, _der_tlv(_OID, _oid_encode(self.hw_type))
                        + _der_tlv(_OCTET_STRING, self.hw_serial))

    def to_other_name(self) -> x509.OtherName:
        """
        This HardwareModuleName as a subjectAltName C{otherName}.
        """
        return x509.OtherName(HARDWARE_MODULE_NAME_OID, self.to_der())

    def serial_text(self) -> str:
        """
        The serial number for display: as text if it is printable ASCII, else hex.
        """
        try:
            text = self.hw_serial.decode("ascii")
        except UnicodeDecodeError:
            return self.hw_serial.hex()
        if text and all(c in string.printable and c not in "\r\n\t\x0b\x0c" for c in text):
            return text
        return self.hw_serial.hex()


def hardware_module_name(cert: x509.Certificate) -> HardwareModuleName | None:
    """
    Extract the HardwareModuleName from C{cert}'s subjectAltName, or L{None} if it has none.

    Raises L{ValueError} if the extension or the HardwareModuleName is malformed.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    except ValueError as e:  # duplicate or undecodable extensions
        raise ValueError(f"malformed extensions: {e}") from e
    for name in san.value.get_values_for_type(x509.OtherName):
        if name.type_id == HARDWARE_MODULE_NAME_OID:
            return HardwareModuleName.from_der(name.value)
    return None


@dataclass(frozen=True)
class PeerIdentity:
    """
    Who is on the other end of a TLS connection, per IEEE 2030.5.

    @ivar lfdi: upper-case LFDI of the peer's end-entity certificate.
    @ivar sfdi: SFDI derived from C{lfdi}.
    @ivar hardware_module_name: the certificate's HardwareModuleName, if any.
    @ivar subject: the subject DN as an RFC 4514 string (often empty for device certs).
    @ivar certificate: the peer's end-entity certificate.
    """

    lfdi: str
    sfdi: int
    hardware_module_name: HardwareModuleName | None
    subject: str
    certificate: x509.Certificate

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> PeerIdentity:
        """
        Derive the identity of the device holding C{cert}.

        Raises L{ValueError} if the certificate carries a malformed HardwareModuleName.
        """
        lfdi = lfdi_from_certificate(cert)
        return cls(
            lfdi=lfdi,
            sfdi=sfdi_from_lfdi(lfdi),
            hardware_module_name=hardware_module_name(cert),
            subject=cert.subject.rfc4514_string(),
            certificate=cert,
        )

    def matches_lfdi(self, lfdi: str) -> bool:
        """
        Is C{lfdi} (any case) this peer's LFDI?
        """
        try:
            return normalize_lfdi(lfdi) == self.lfdi
        except ValueError:
            return False

    def describe(self) -> str:
        """
        A one-line human description for logs.
        """
        hwmn = self.hardware_module_name
        hw = f" hwType={hwmn.hw_type} hwSerial={hwmn.serial_text()}" if hwmn else ""
        return f"LFDI={self.lfdi} SFDI={self.sfdi}{hw}"


# Identities computed from transports that do not carry sepgw's per-connection state.
_fallback_cache: weakref.WeakKeyDictionary[Any, PeerIdentity] = weakref.WeakKeyDictionary()


def _as_cryptography(cert: Any) -> x509.Certificate | None:
    if cert is None:
        return None
    if isinstance(cert, x509.Certificate):
        return cert
    to_cryptography = getattr(cert, "to_cryptography", None)
    if to_cryptography is not None:  # OpenSSL.crypto.X509
        result = to_cryptography()
        assert isinstance(result, x509.Certificate)
        return result
    original = getattr(cert, "original", None)  # twisted.internet.ssl.Certificate
    if original is not None:
        return _as_cryptography(original)
    raise TypeError(f"unsupported certificate object {cert!r}")


def peer_identity(transport: Any) -> PeerIdentity | None:
    """
    The L{PeerIdentity} of the TLS peer on C{transport}, or L{None} if there is no peer
    certificate (not TLS, or the handshake has not completed).

    C{transport} may be a L{twisted.protocols.tls.TLSMemoryBIOProtocol}, a
    L{twisted.web.http.Request} (its channel's transport is used), an HTTP channel, an
    L{OpenSSL.SSL.Connection}, or anything with C{getPeerCertificate()}.  The identity is
    computed once per connection and cached.
    """
    # Imported here: tls imports this module.
    from sepgw.security.tls import identity_for_connection

    seen: set[int] = set()
    obj = transport
    while obj is not None and id(obj) not in seen:
        seen.add(id(obj))
        found = identity_for_connection(obj)
        if found is not None:
            return found
        get_handle = getattr(obj, "getHandle", None)
        if get_handle is not None:
            try:
                handle = get_handle()
            except Exception:
                handle = None
            if handle is not None and handle is not obj:
                found = identity_for_connection(handle)
                if found is not None:
                    return found
        get_peer_cert = getattr(obj, "getPeerCertificate", None)
        if get_peer_cert is not None:
            try:
                cached = _fallback_cache.get(obj)
            except TypeError:
                cached = None
            if cached is not None:
                return cached
            try:
                cert = _as_cryptography(get_peer_cert())
            except Exception:
                cert = None
            if cert is not None:
                result = PeerIdentity.from_certificate(cert)
                try:
                    _fallback_cache[obj] = result
                except TypeError:
                    pass
                return result
        # twisted.web Request -> channel -> transport; channel -> transport.
        channel = getattr(obj, "channel", None)
        if channel is not None and getattr(channel, "transport", None) is not None:
            obj = channel
            continue
        obj = getattr(obj, "transport", None)
    return None
