"""
A small IEEE 2030.5-shaped test PKI for labs, the demo and the test suite.

Layout (``init``)::

    serca.pem  serca.key     self-signed root (SERCA), P-256, never expires
    mca.pem    mca.key       manufacturer CA, signed by the SERCA
    evse.pem   evse.key      EVSE device certificate (device cert, then mca.pem)
    pev.pem    pev.key       PEV device certificate (device cert, then mca.pem)

Device certificates follow the 2030.5 device certificate shape: empty subject, a critical
subjectAltName holding a HardwareModuleName, ECDSA P-256 key, ecdsa-with-SHA256 signature and
the "no well-defined expiration" notAfter 99991231235959Z.

THIS IS A TEST PKI.  Private keys are written unencrypted (mode 0600).  Never use it for
anything but labs and tests.
"""

from __future__ import annotations

import datetime
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from sepgw.security.identity import HardwareModuleName

__all__ = [
    "ANY_POLICY_OID",
    "DEFAULT_EVSE_HW_TYPE",
    "DEFAULT_PEV_HW_TYPE",
    "DEVICE_POLICY_OID",
    "NO_EXPIRY",
    "PKIError",
    "PKIExistsError",
    "PKIPaths",
    "TEST_POLICY_OID",
    "generate_key",
    "init_pki",
    "issue_device",
    "issue_pev",
    "load_certificates",
    "load_private_key",
    "make_ca",
    "make_device_certificate",
    "make_rsa_device_certificate",
    "write_certificates",
    "write_private_key",
]

#: GeneralizedTime 99991231235959Z: "no well-defined expiration date" (RFC 5280 4.1.2.5),
#: which IEEE 2030.5 uses for device and CA certificates.
NO_EXPIRY = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)

#: IEEE 2030.5 certificate policy OIDs (the 40732 arc) as commonly cited: generic device
#: and test certificate.  Check against IEEE 2030.5 Annex / the CA's CP before relying on
#: them for anything but a lab.
DEVICE_POLICY_OID = x509.ObjectIdentifier("1.3.6.1.4.1.40732.1.1")
TEST_POLICY_OID = x509.ObjectIdentifier("1.3.6.1.4.1.40732.2.1")
ANY_POLICY_OID = x509.ObjectIdentifier("2.5.29.32.0")

#: hwType defaults under IANA private enterprise number 32473, which RFC 5612 reserves for
#: documentation and examples: 32473.1 = "example EVSE maker", 32473.2 = "example PEV
#: maker", last arc = model.
DEFAULT_EVSE_HW_TYPE = "1.3.6.1.4.1.32473.1.1"
DEFAULT_PEV_HW_TYPE = "1.3.6.1.4.1.32473.2.1"

_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


class PKIError(Exception):
    """
    A PKI operation could not be performed (message is meant for the user).
    """


class PKIExistsError(PKIError):
    """
    The files to be created exist already and replacing them was not asked for; nothing
    was changed.
    """


def generate_key() -> ec.EllipticCurvePrivateKey:
    """
    A fresh ECDSA P-256 private key.
    """
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str | None) -> x509.Name:
    if not common_name:
        return x509.Name([])
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sepgw test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    path_length: int | None = None,
    not_after: datetime.datetime = NO_EXPIRY,
) -> x509.Certificate:
    """
    Make a CA certificate: self-signed (a SERCA) if C{issuer} is L{None}, otherwise an
    intermediate (MCA / MICA) signed by C{issuer} = (certificate, key).
    """
    subject = _name(common_name)
    if issuer is None:
        issuer_name, signing_key = subject, key
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    else:
        issuer_name, signing_key = issuer[0].subject, issuer[1]
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(ANY_POLICY_OID, None)]),
            critical=True,
        )
    )
    return builder.sign(signing_key, hashes.SHA256())


def make_device_certificate(
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    hardware_module_name: HardwareModuleName,
    not_after: datetime.datetime = NO_EXPIRY,
    common_name: str | None = None,
) -> x509.Certificate:
    """
    Make a 2030.5-shaped device certificate for C{key}, signed by the issuer.

    The subject is empty unless C{common_name} is given; the identity is carried by the
    (then critical) subjectAltName's HardwareModuleName.
    """
    subject = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([hardware_module_name.to_other_name()]),
            critical=len(subject) == 0,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.CertificatePolicies(
                [
                    x509.PolicyInformation(DEVICE_POLICY_OID, None),
                    x509.PolicyInformation(TEST_POLICY_OID, None),
                ]
            ),
            critical=True,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def make_rsa_device_certificate(
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    hardware_module_name: HardwareModuleName | None = None,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """
    A device certificate with an RSA-2048 key (not allowed by 2030.5), for refusal tests.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hwmn = hardware_module_name or HardwareModuleName(DEFAULT_PEV_HW_TYPE, b"RSA-0001")
    return make_device_certificate(issuer_cert, issuer_key, key, hwmn), key


# --- files ---------------------------------------------------------------------------


def write_certificates(path: Path, certs: list[x509.Certificate]) -> None:
    """
    Write C{certs} as concatenated PEM to C{path} (mode 0644).
    """
    data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    path.write_bytes(data)
    os.chmod(path, 0o644)


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    """
    Write C{key} unencrypted as PKCS#8 PEM to C{path}, created with mode 0600.
    """
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def load_certificates(path: Path) -> list[x509.Certificate]:
    """
    Read every PEM certificate in C{path}.  Raises L{PKIError} with a clear message.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PKIError(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise PKIError(f"{path}: not a PEM certificate file ({e})") from e
    return certs


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """
    Read an unencrypted EC private key from C{path}.  Raises L{PKIError}.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PKIError(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise PKIError(f"{path}: not an unencrypted PEM private key ({e})") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"{path}: not an EC private key")
    return key


@dataclass(frozen=True)
class PKIPaths:
    """
    File names of a test PKI in C{directory}.
    """

    directory: Path

    @property
    def serca(self) -> Path:
        return self.directory / "serca.pem"

    @property
    def serca_key(self) -> Path:
        return self.directory / "serca.key"

    @property
    def mca(self) -> Path:
        return self.directory / "mca.pem"

    @property
    def mca_key(self) -> Path:
        return self.directory / "mca.key"

    @property
    def evse(self) -> Path:
        return self.directory / "evse.pem"

    @property
    def evse_key(self) -> Path:
        return self.directory / "evse.key"

    @property
    def pev(self) -> Path:
        return self.directory / "pev.pem"

    @property
    def pev_key(self) -> Path:
        return self.directory / "pev.key"

    def device(self, name: str) -> tuple[Path, Path]:
        """
        (certificate, key) paths of device C{name}.
        """
        return self.directory / f"{name}.pem", self.directory / f"{name}.key"

    def all_files(self) -> list[Path]:
        return [
            self.serca,
            self.serca_key,
            self.mca,
            self.mca_key,
            self.evse,
            self.evse_key,
            self.pev,
            self.pev_key,
        ]


def _random_serial(prefix: str) -> bytes:
    return f"{prefix}-{secrets.token_hex(4).upper()}".encode("ascii")


def init_pki(
    directory: Path,
    *,
    pev_hw_type: str = DEFAULT_PEV_HW_TYPE,
    evse_hw_type: str = DEFAULT_EVSE_HW_TYPE,
    pev_serial: bytes | None = None,
    evse_serial: bytes | None = None,
    force: bool = False,
) -> PKIPaths:
    """
    Create a SERCA, an MCA, an EVSE and a PEV device certificate in C{directory}.

    Raises L{PKIError} if any of the files exists and C{force} is false (nothing is
    written in that case).
    """
    paths = PKIPaths(directory)
    existing = [p for p in paths.all_files() if p.exists()]
    if existing and not force:
        names = ", ".join(p.name for p in existing)
        raise PKIExistsError(
            f"{directory}: a PKI already exists here ({names}); use --force to replace it"
        )
    try:
        x509.ObjectIdentifier(pev_hw_type)
        x509.ObjectIdentifier(evse_hw_type)
    except ValueError as e:
        raise PKIError(f"invalid hwType OID: {e}") from e
    directory.mkdir(parents=True, exist_ok=True)

    serca_key = generate_key()
    serca = make_ca("sepgw test SERCA", serca_key)
    mca_key = generate_key()
    mca = make_ca("sepgw test MCA", mca_key, issuer=(serca, serca_key), path_length=1)

    write_certificates(paths.serca, [serca])
    write_private_key(paths.serca_key, serca_key)
    write_certificates(paths.mca, [mca])
    write_private_key(paths.mca_key, mca_key)

    for cert_path, key_path, hw_type, serial in (
        (paths.evse, paths.evse_key, evse_hw_type, evse_serial or _random_serial("EVSE")),
        (paths.pev, paths.pev_key, pev_hw_type, pev_serial or _random_serial("PEV")),
    ):
        key = generate_key()
        cert = make_device_certificate(mca, mca_key, key, HardwareModuleName(hw_type, serial))
        write_certificates(cert_path, [cert, mca])
        write_private_key(key_path, key)
    return paths


def issue_device(
    directory: Path,
    name: str,
    hw_type: str,
    serial: bytes | None = None,
    force: bool = False,
) -> tuple[Path, Path]:
    """
    Issue another device certificate C{name}.pem / C{name}.key from the MCA in C{directory}.

    Returns the (certificate, key) paths.  Raises L{PKIError}.
    """
    if not name or "/" in name or name.startswith(".") or os.sep in name:
        raise PKIError(f"invalid device name {name!r}: use a plain file name stem")
    paths = PKIPaths(directory)
    cert_path, key_path = paths.device(name)
    if cert_path in (paths.serca, paths.mca) or key_path in (paths.serca_key, paths.mca_key):
        raise PKIError(f"refusing to overwrite the CA files with device {name!r}")
    if (cert_path.exists() or key_path.exists()) and not force:
        raise PKIExistsError(f"{cert_path}: already exists; use --force to replace it")
    try:
        x509.ObjectIdentifier(hw_type)
    except ValueError as e:
        raise PKIError(f"invalid hwType OID {hw_type!r}: {e}") from e
    mca_certs = load_certificates(paths.mca)
    if not mca_certs:
        raise PKIError(f"{paths.mca}: no certificate")
    mca = mca_certs[0]
    mca_key = load_private_key(paths.mca_key)
    key = generate_key()
    hwmn = HardwareModuleName(hw_type, serial or _random_serial(name.upper()))
    cert = make_device_certificate(mca, mca_key, key, hwmn)
    write_certificates(cert_path, [cert, mca])
    write_private_key(key_path, key)
    return cert_path, key_path


def issue_pev(
    directory: Path,
    name: str,
    hw_type: str,
    serial: bytes | None = None,
    force: bool = False,
) -> tuple[Path, Path]:
    """
    Issue another PEV certificate (see L{issue_device}); C{hw_type} encodes make and model.
    """
    return issue_device(directory, name, hw_type, serial, force)
