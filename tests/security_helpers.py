"""
Helpers for the sepgw.security tests: a test PKI made once per process, and TLS handshakes
in memory (TLSMemoryBIOFactory over twisted.test.iosim, no sockets, no global reactor).
"""

from __future__ import annotations

import atexit
import datetime
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from twisted.internet.address import IPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.logger import LogEvent, LogLevel
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from sepgw.security import pki
from sepgw.security.identity import HardwareModuleName
from sepgw.security.pki import PKIPaths

SERVER_ADDRESS = IPv6Address("TCP", "fd00::1", 443)
CLIENT_ADDRESS = IPv6Address("TCP", "fd00::2", 49152)
REQUEST = b"GET /dcap HTTP/1.1\r\nHost: evse\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class LabPKI:
    """
    The main test PKI (``sepgw pki init``) plus extra certificates for refusal tests.
    """

    paths: PKIPaths
    other: PKIPaths  # an unrelated PKI: its certificates chain to an unknown CA
    directory: Path
    extra: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    def write_device(
        self,
        name: str,
        certs: list[x509.Certificate],
        key: Any,
    ) -> tuple[Path, Path]:
        cert_path = self.directory / f"{name}.pem"
        key_path = self.directory / f"{name}.key"
        pki.write_certificates(cert_path, certs)
        pki.write_private_key(key_path, key)
        self.extra[name] = (cert_path, key_path)
        return cert_path, key_path


_PKI: LabPKI | None = None


def shared_pki() -> LabPKI:
    """
    The shared test PKI, created on first use in a temporary directory.
    """
    global _PKI
    if _PKI is None:
        base = Path(tempfile.mkdtemp(prefix="sepgw-test-pki-"))
        atexit.register(shutil.rmtree, base, True)
        paths = pki.init_pki(base / "main", pev_serial=b"PEV-TEST-1", evse_serial=b"EVSE-TEST-1")
        other = pki.init_pki(base / "other")
        result = LabPKI(paths=paths, other=other, directory=base)

        mca = pki.load_certificates(paths.mca)[0]
        mca_key = pki.load_private_key(paths.mca_key)

        # RSA device certificate issued by the trusted MCA: only the key type is wrong.
        rsa_cert, rsa_key = pki.make_rsa_device_certificate(mca, mca_key)
        result.write_device("rsa", [rsa_cert, mca], rsa_key)

        # Expired device certificate (negative control for the 9999 test).
        key = pki.generate_key()
        expired = pki.make_device_certificate(
            mca,
            mca_key,
            key,
            HardwareModuleName(pki.DEFAULT_PEV_HW_TYPE, b"OLD"),
            not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc),
        )
        result.write_device("expired", [expired, mca], key)

        # SERCA -> MCA -> MICA -> device; the file carries device, MICA, MCA.
        mica_key = pki.generate_key()
        mica = pki.make_ca("sepgw test MICA", mica_key, issuer=(mca, mca_key), path_length=0)
        key = pki.generate_key()
        via_mica = pki.make_device_certificate(
            mica, mica_key, key, HardwareModuleName("1.3.6.1.4.1.32473.2.9", b"MICA-1")
        )
        result.write_device("mica", [via_mica, mica, mca], key)
        # The same device certificate without its intermediates.
        result.write_device("leafonly", [via_mica], key)

        # A P-384 device certificate (wrong curve).
        key384 = ec.generate_private_key(ec.SECP384R1())
        p384 = pki.make_device_certificate(
            mca, mca_key, key384, HardwareModuleName(pki.DEFAULT_PEV_HW_TYPE, b"P384")
        )
        result.write_device("p384", [p384, mca], key384)
        _PKI = result
    return _PKI


class RecordingProtocol(Protocol):
    """
    Application protocol that records what it sees.  As a client it sends C{greeting} on
    connect; as a server it answers every chunk with C{reply}.
    """

    def __init__(self, greeting: bytes = b"", reply: bytes = b"") -> None:
        self.greeting = greeting
        self.reply = reply
        self.received: list[bytes] = []
        self.lost: Failure | None = None
        self.made = False

    def connectionMade(self) -> None:
        self.made = True
        if self.greeting:
            cast(Any, self.transport).write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        if self.reply:
            cast(Any, self.transport).write(self.reply)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = reason


@implementer(IOpenSSLClientConnectionCreator)
class RawClientCreator:
    """
    A plain pyOpenSSL client for talking to sepgw's server the way a misconfigured or
    foreign peer would.
    """

    def __init__(
        self,
        cert: Path | None = None,
        key: Path | None = None,
        ciphers: bytes = b"ECDHE-ECDSA-AES128-CCM8:@SECLEVEL=0",
    ) -> None:
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_cipher_list(ciphers)
        ctx.set_verify(SSL.VERIFY_NONE)
        if cert is not None and key is not None:
            ctx.use_certificate_chain_file(str(cert))
            ctx.use_privatekey_file(str(key))
        self.context = ctx

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self.context, None)


@dataclass
class Handshake:
    """
    The two ends of an in-memory TLS connection after pumping.
    """

    server_tls: Any
    client_tls: Any
    server_app: RecordingProtocol
    client_app: RecordingProtocol
    pump: iosim.IOPump
    clock: Clock


def run_handshake(
    server_creator: Any,
    client_creator: Any,
    greeting: bytes = REQUEST,
    reply: bytes = RESPONSE,
) -> Handshake:
    """
    Connect C{client_creator} to C{server_creator} in memory, send C{greeting} from the
    client and C{reply} from the server, and pump until quiet.
    """
    clock = Clock()
    server_app = RecordingProtocol(reply=reply)
    client_app = RecordingProtocol(greeting=greeting)
    server_factory = TLSMemoryBIOFactory(
        server_creator, False, Factory.forProtocol(lambda: server_app), clock
    )
    client_factory = TLSMemoryBIOFactory(
        client_creator, True, Factory.forProtocol(lambda: client_app), clock
    )
    server_tls = server_factory.buildProtocol(CLIENT_ADDRESS)
    client_tls = client_factory.buildProtocol(SERVER_ADDRESS)
    assert server_tls is not None and client_tls is not None

    def server_transport(protocol: Any) -> iosim.FakeTransport:
        return iosim.FakeTransport(protocol, True, SERVER_ADDRESS, CLIENT_ADDRESS)

    def client_transport(protocol: Any) -> iosim.FakeTransport:
        return iosim.FakeTransport(protocol, False, CLIENT_ADDRESS, SERVER_ADDRESS)

    _, _, pump = iosim.connectedServerAndClient(
        lambda: server_tls,
        lambda: client_tls,
        clientTransportFactory=client_transport,
        serverTransportFactory=server_transport,
        clock=clock,
    )
    for _ in range(20):
        if not pump.pump():
            break
    pump.flush()
    return Handshake(server_tls, client_tls, server_app, client_app, pump, clock)


def warnings_from(events: list[LogEvent], namespace_prefix: str = "sepgw.security") -> list[LogEvent]:
    """
    The warning-or-worse events logged by sepgw.security.
    """
    return [
        e
        for e in events
        if str(e.get("log_namespace", "")).startswith(namespace_prefix)
        and e.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical)
    ]
