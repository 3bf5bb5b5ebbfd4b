"""
TLS for IEEE 2030.5 / SunSpec V2G-AC: mutual authentication, TLS 1.2, ECDHE-ECDSA-AES128-CCM8,
P-256, chains to the configured SERCA roots.

The pyOpenSSL context is built here directly: Twisted's C{CertificateOptions} filters cipher
strings and would drop CCM8, and OpenSSL 3+ only enables CCM8 at security level 0
(C{:@SECLEVEL=0}).  The resulting objects plug into Twisted's TLS machinery:

* L{server_connection_creator} provides C{IOpenSSLServerConnectionCreator}: pass it to
  L{twisted.protocols.tls.TLSMemoryBIOFactory} (C{isClient=False}), C{SSL4ServerEndpoint},
  or wrap any endpoint's factory.
* L{client_connection_creator} provides C{IOpenSSLClientConnectionCreator}
  (C{wrapClientTLS}, C{SSL4ClientEndpoint}, C{TLSMemoryBIOFactory(..., isClient=True)}).
* L{client_policy} provides C{IPolicyForHTTPS} for C{Agent} / treq.

Host names are not checked: 2030.5 peers are identified by certificate chain and LFDI.
Every refused handshake is logged with the peer address and the reason.  Peer identity is
available from any transport with L{sepgw.security.identity.peer_identity}.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from OpenSSL.crypto import X509
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.logger import Logger
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from sepgw.security.identity import PeerIdentity, normalize_lfdi

__all__ = [
    "DEFAULT_CIPHERS",
    "AllowHook",
    "ClientConnectionCreator",
    "ClientPolicy",
    "ServerConnectionCreator",
    "TLSConfigError",
    "TLSServerEndpoint",
    "TLSSettings",
    "client_connection_creator",
    "client_policy",
    "effective_cipher_list",
    "identity_for_connection",
    "server_connection_creator",
    "wrap_server_endpoint",
]

#: The one cipher suite IEEE 2030.5 mandates.
DEFAULT_CIPHERS = "ECDHE-ECDSA-AES128-CCM8"

#: Allow-list hook: given the authenticated peer, return None to accept it, or a reason
#: (logged) to refuse it during the handshake.
AllowHook = Callable[[PeerIdentity], "str | None"]

# Device -> MICA -> MCA -> SERCA is the longest 2030.5 chain; allow one spare level.
_VERIFY_DEPTH = 4


class TLSConfigError(Exception):
    """
    The TLS configuration is unusable.

    @ivar source: the file (or setting name) at fault.
    @ivar problem: what is wrong with it.
    """

    def __init__(self, source: Path | str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


def effective_cipher_list(ciphers: str) -> str:
    """
    The OpenSSL cipher string actually used for C{ciphers}: anonymous and null-encryption
    suites are always removed (a peer must authenticate with a certificate), and
    C{:@SECLEVEL=0} is appended unless the string already sets a security level, because
    OpenSSL 3+ disables the 64-bit-tag CCM8 suites at the default level.
    """
    text = f"{ciphers.strip()}:!aNULL:!eNULL"
    if "@SECLEVEL=" in text.upper():
        return text
    return f"{text}:@SECLEVEL=0"


def _is_p256(key: object) -> bool:
    return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    )


def _key_description(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}"
    size = getattr(key, "key_size", None)
    kind = type(key).__name__.replace("_", "")
    for name in ("RSA", "DSA", "Ed25519", "Ed448", "X25519", "X448", "DH"):
        if name.lower() in kind.lower():
            return f"{name}-{size}" if size else name
    return kind


def _read_pem_certs(path: Path, what: str) -> tuple[x509.Certificate, ...]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TLSConfigError(path, f"{what} file does not exist") from None
    except OSError as e:
        raise TLSConfigError(path, f"cannot read {what} file: {e.strerror or e}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise TLSConfigError(path, f"{what} file contains no PEM certificate")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise TLSConfigError(path, f"{what} file is not valid PEM: {e}") from None
    return tuple(certs)


def _read_pem_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TLSConfigError(path, "private key file does not exist") from None
    except OSError as e:
        raise TLSConfigError(path, f"cannot read private key file: {e.strerror or e}") from None
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise TLSConfigError(path, "private key file contains no PEM private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSConfigError(path, "private key is encrypted; an unencrypted key is required") from None
    except ValueError as e:
        raise TLSConfigError(path, f"private key is not valid PEM: {e}") from None
    if not _is_p256(key):
        raise TLSConfigError(
            path, f"private key is {_key_description(key)}; IEEE 2030.5 requires ECDSA P-256"
        )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@dataclass(frozen=True)
class TLSSettings:
    """
    TLS configuration of one endpoint (EVSE server, PEV client, uplink client).

    Files are read and checked when the settings are created; problems raise
    L{TLSConfigError} naming the file.

    @ivar cert: PEM file with this device's certificate first, then any intermediates
        (MICA, MCA) to send to the peer.
    @ivar key: PEM file with the unencrypted ECDSA P-256 private key.
    @ivar ca: PEM files with the trusted roots (SERCA); they may also hold intermediates.
    @ivar ciphers: OpenSSL cipher string (default: the 2030.5 suite only).
    @ivar keylog: if set, append NSS key log lines (for Wireshark) to this file.
        Debugging only: anyone with the file can decrypt the traffic.
    """

    cert: Path
    key: Path
    ca: tuple[Path, ...]
    ciphers: str = DEFAULT_CIPHERS
    keylog: Path | None = None

    chain: tuple[x509.Certificate, ...] = field(init=False, repr=False, compare=False)
    private_key: ec.EllipticCurvePrivateKey = field(init=False, repr=False, compare=False)
    trusted: tuple[x509.Certificate, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "cert", Path(self.cert))
        set_(self, "key", Path(self.key))
        ca: Any = self.ca
        if isinstance(ca, str | os.PathLike):
            ca = (ca,)
        set_(self, "ca", tuple(Path(p) for p in ca))
        if self.keylog is not None:
            set_(self, "keylog", Path(self.keylog))

        chain = _read_pem_certs(self.cert, "certificate")
        leaf = chain[0]
        if not _is_p256(leaf.public_key()):
            raise TLSConfigError(
                self.cert,
                f"certificate key is {_key_description(leaf.public_key())}; "
                "IEEE 2030.5 requires ECDSA P-256",
            )
        key = _read_pem_key(self.key)
        if key.public_key() != leaf.public_key():
            raise TLSConfigError(self.key, f"private key does not match the certificate in {self.cert}")

        if not self.ca:
            raise TLSConfigError("ca", "no CA (SERCA) certificate file configured")
        trusted: list[x509.Certificate] = []
        for path in self.ca:
            trusted.extend(_read_pem_certs(path, "CA certificate"))

        if not self.ciphers.strip():
            raise TLSConfigError("ciphers", "empty cipher list")
        probe = SSL.Context(SSL.TLS_METHOD)
        try:
            probe.set_cipher_list(effective_cipher_list(self.ciphers).encode("ascii"))
        except (SSL.Error, UnicodeEncodeError) as e:
            raise TLSConfigError("ciphers", f"OpenSSL accepts no cipher in {self.ciphers!r} ({e})") from None

        if self.keylog is not None and not self.keylog.parent.is_dir():
            raise TLSConfigError(self.keylog, "key log directory does not exist")

        set_(self, "chain", chain)
        set_(self, "private_key", key)
        set_(self, "trusted", tuple(trusted))

    @property
    def certificate(self) -> x509.Certificate:
        """
        This device's own (end-entity) certificate.
        """
        return self.chain[0]

    @property
    def identity(self) -> PeerIdentity:
        """
        This device's own LFDI / SFDI / HardwareModuleName.
        """
        return PeerIdentity.from_certificate(self.certificate)


# --- per-connection state ---------------------------------------------------------------


class _ConnectionState:
    """
    What sepgw knows about one TLS connection while and after it is set up.
    """

    def __init__(self, creator: _CreatorBase, tls_protocol: Any) -> None:
        self.creator = creator
        self.tls_protocol = tls_protocol
        self.identity: PeerIdentity | None = None
        self.refusal: str | None = None
        self.finished = False
        self.established = False

    def peer_address(self) -> str:
        transport = getattr(self.tls_protocol, "transport", None)
        if transport is None:
            return "unknown"
        try:
            peer = transport.getPeer()
        except Exception:
            return "unknown"
        host = getattr(peer, "host", None)
        port = getattr(peer, "port", None)
        if host is None:
            return str(peer)
        if port is None:
            return str(host)
        if ":" in str(host):
            return f"[{host}]:{port}"
        return f"{host}:{port}"


_WANT = (SSL.WantReadError, SSL.WantWriteError, SSL.WantX509LookupError)


class _SEPConnection(SSL.Connection):
    """
    An C{SSL.Connection} that reports the outcome of its handshake to its creator.

    (Twisted keeps the connection's app data for itself, so the state is an attribute.)
    """

    def __init__(self, context: SSL.Context, state: _ConnectionState) -> None:
        super().__init__(context, None)
        self.sepgw_state = state

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except _WANT:
            raise
        except SSL.Error as e:
            self.sepgw_state.creator._handshakeFailed(self, e)
            raise
        if self.get_peer_certificate() is None:
            # Cannot happen with the contexts built here (certificates are required and
            # anonymous suites are excluded); refuse rather than run unauthenticated.
            error = SSL.Error([("sepgw", "", "peer presented no certificate")])
            self.sepgw_state.creator._handshakeFailed(self, error)
            raise error
        self.sepgw_state.creator._handshakeSucceeded(self)

    def recv(self, bufsiz: int, flags: int | None = None) -> bytes:
        try:
            return super().recv(bufsiz, flags)
        except _WANT:
            raise
        except SSL.Error as e:
            if not self.sepgw_state.finished and not isinstance(e, SSL.ZeroReturnError):
                self.sepgw_state.creator._handshakeFailed(self, e)
            raise


_generic_cache: WeakKeyDictionary[SSL.Connection, PeerIdentity] = WeakKeyDictionary()


def identity_for_connection(obj: Any) -> PeerIdentity | None:
    """
    The peer identity of an C{OpenSSL.SSL.Connection} (cached per connection), or L{None}
    if C{obj} is not one or has no peer certificate (yet).

    For connections made by sepgw's creators the identity is only returned once the
    handshake has completed.  Most callers want
    L{sepgw.security.identity.peer_identity}, which accepts any transport.
    """
    if isinstance(obj, _SEPConnection):
        state = obj.sepgw_state
        if not state.established:
            return None
        if state.identity is None:
            cert = obj.get_peer_certificate(as_cryptography=True)
            if cert is None:
                return None
            state.identity = PeerIdentity.from_certificate(cert)
        return state.identity
    if isinstance(obj, SSL.Connection):
        cached = _generic_cache.get(obj)
        if cached is not None:
            return cached
        cert = obj.get_peer_certificate(as_cryptography=True)
        if cert is None:
            return None
        identity = PeerIdentity.from_certificate(cert)
        _generic_cache[obj] = identity
        return identity
    return None


# --- reasons ---------------------------------------------------------------------------

# X509_V_ERR_* codes of OpenSSL (x509_vfy.h) that peers actually produce.
_UNKNOWN_CA = "unknown CA"
_X509_ERRORS: dict[int, str] = {
    2: f"{_UNKNOWN_CA}: unable to get issuer certificate",
    4: "unable to decrypt certificate signature",
    6: "unable to decode issuer public key",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    13: "format error in certificate's notBefore field",
    14: "format error in certificate's notAfter field",
    18: f"{_UNKNOWN_CA}: self-signed certificate",
    19: f"{_UNKNOWN_CA}: self-signed certificate in chain",
    20: f"{_UNKNOWN_CA}: unable to get local issuer certificate",
    21: f"{_UNKNOWN_CA}: unable to verify the first certificate",
    22: "certificate chain too long",
    23: "certificate revoked",
    24: "invalid CA certificate",
    25: "path length constraint exceeded",
    26: "unsupported certificate purpose",
    27: "certificate not trusted",
    28: "certificate rejected",
    34: "unhandled critical extension",
}


def _x509_error(errno: int) -> str:
    return _X509_ERRORS.get(errno, f"X.509 verification error {errno}")


def _openssl_reasons(error: SSL.Error) -> list[str]:
    reasons: list[str] = []
    if error.args and isinstance(error.args[0], list):
        for entry in error.args[0]:
            if isinstance(entry, tuple) and len(entry) == 3:
                reasons.append(str(entry[2]))
            else:
                reasons.append(str(entry))
    elif error.args:
        reasons.append(" ".join(str(a) for a in error.args))
    return [r for r in reasons if r]


def _describe_ssl_error(error: SSL.Error, ciphers: str) -> str:
    if isinstance(error, SSL.SysCallError):
        return "connection closed by the peer during the TLS handshake"
    reasons = _openssl_reasons(error)
    text = "; ".join(reasons) or type(error).__name__
    low = text.lower()
    if "http request" in low or "https proxy request" in low:
        return "plaintext HTTP request on the TLS port (HTTP is not served)"
    if "peer did not return a certificate" in low or "certificate required" in low:
        return "no client certificate presented"
    if "no shared cipher" in low or "no cipher" in low:
        return f"no acceptable cipher suite offered (only {ciphers} is accepted)"
    if "alert handshake failure" in low and "ssl" in low:
        return f"handshake failure reported by the peer ({text})"
    if "wrong version number" in low or "unsupported protocol" in low or "version too low" in low:
        return f"peer does not speak TLS 1.2 ({text})"
    if "alert" in low:
        return f"peer aborted the handshake ({text})"
    if "unexpected eof" in low:
        return "connection closed by the peer during the TLS handshake"
    return f"TLS handshake error ({text})"


def _verify_callback(conn: SSL.Connection, cert: X509, errno: int, depth: int, ok: int) -> bool:
    """
    Chain verification hook shared by every sepgw context.

    OpenSSL does the chain building and signature/time checks (C{ok}); on top of that the
    end-entity certificate must carry an ECDSA P-256 key, must yield a usable identity, and
    must pass the creator's identity check (allow-list, expected LFDI).
    """
    state: _ConnectionState | None = getattr(conn, "sepgw_state", None)
    if state is None:
        return bool(ok)
    if not ok:
        if state.refusal is None:
            subject = cert.to_cryptography().subject.rfc4514_string() or "(empty subject)"
            state.refusal = (
                f"certificate verification failed at depth {depth} [{subject}]: "
                f"{_x509_error(errno)}"
            )
        return False
    if depth != 0:
        return True
    leaf = cert.to_cryptography()
    key = leaf.public_key()
    if not _is_p256(key):
        state.refusal = (
            f"peer certificate key is {_key_description(key)}; only ECDSA P-256 is accepted"
        )
        return False
    try:
        identity = PeerIdentity.from_certificate(leaf)
    except ValueError as e:
        state.refusal = f"peer certificate unusable: {e}"
        return False
    state.identity = identity
    problem = state.creator._checkIdentity(identity)
    if problem is not None:
        state.refusal = problem
        return False
    return True


class _KeyLogWriter:
    """
    Append NSS key log lines to a file (created 0600).
    """

    def __init__(self, path: Path, log: Logger) -> None:
        self.path = path
        self.log = log
        self._complained = False

    def __call__(self, conn: SSL.Connection, line: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.rstrip(b"\n") + b"\n")
            finally:
                os.close(fd)
        except OSError as e:
            if not self._complained:
                self._complained = True
                self.log.error(
                    "Cannot write TLS key log {path}: {error}", path=str(self.path), error=str(e)
                )


def _build_context(settings: TLSSettings, server: bool, log: Logger) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    options = SSL.OP_NO_COMPRESSION | SSL.OP_NO_TICKET
    no_reneg = getattr(SSL, "OP_NO_RENEGOTIATION", 0)
    options |= no_reneg
    if server:
        options |= SSL.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_options(options)
    # No session resumption: every connection runs the full handshake, so the
    # certificate checks and the allow-list are consulted every time.
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_cipher_list(effective_cipher_list(settings.ciphers).encode("ascii"))
    ctx.set_tmp_ecdh(ec.SECP256R1())

    ctx.use_certificate(settings.chain[0])
    for extra in settings.chain[1:]:
        ctx.add_extra_chain_cert(extra)
    ctx.use_privatekey(settings.private_key)
    ctx.check_privatekey()

    store = ctx.get_cert_store()
    assert store is not None
    for ca in settings.trusted:
        try:
            store.add_cert(X509.from_cryptography(ca))
        except Exception as e:  # duplicate certificates are harmless
            if "already" not in str(e).lower():
                raise
    if server:
        # Tell clients which roots we accept (helps them pick a certificate).
        for ca in settings.trusted:
            if ca.subject == ca.issuer:
                ctx.add_client_ca(X509.from_cryptography(ca))
    mode = SSL.VERIFY_PEER
    if server:
        mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    ctx.set_verify(mode, _verify_callback)
    ctx.set_verify_depth(_VERIFY_DEPTH)

    if settings.keylog is not None:
        ctx.set_keylog_callback(_KeyLogWriter(settings.keylog, log))
        log.warn(
            "TLS key logging is ON: session keys are written to {path}; anyone with this "
            "file can decrypt the traffic. Turn it off outside the lab.",
            path=str(settings.keylog),
        )
    return ctx


class _CreatorBase:
    log = Logger()
    role = "tls"

    def __init__(self, settings: TLSSettings, context: SSL.Context | None = None) -> None:
        self.settings = settings
        self._context = context if context is not None else _build_context(
            settings, server=self.role == "server", log=self.log
        )

    def _newConnection(self, tls_protocol: Any) -> _SEPConnection:
        return _SEPConnection(self._context, _ConnectionState(self, tls_protocol))

    def _checkIdentity(self, identity: PeerIdentity) -> str | None:
        return None

    def _handshakeFailed(self, conn: _SEPConnection, error: SSL.Error) -> None:
        state = conn.sepgw_state
        if state.finished:
            return
        state.finished = True
        reason = state.refusal or _describe_ssl_error(error, self.settings.ciphers)
        identity = state.identity
        self._logRefusal(
            peer=state.peer_address(),
            reason=reason,
            lfdi=identity.lfdi if identity else None,
            sfdi=identity.sfdi if identity else None,
            openssl_error="; ".join(_openssl_reasons(error)),
        )

    def _logRefusal(self, **fields: Any) -> None:
        raise NotImplementedError

    def _handshakeSucceeded(self, conn: _SEPConnection) -> None:
        state = conn.sepgw_state
        if state.finished:
            return
        state.finished = True
        state.established = True
        if state.identity is None:
            cert = conn.get_peer_certificate(as_cryptography=True)
            if cert is not None:
                state.identity = PeerIdentity.from_certificate(cert)
        identity = state.identity
        self.log.info(
            "TLS session with {peer} established ({protocol} {cipher}); peer {identity}",
            peer=state.peer_address(),
            protocol=conn.get_protocol_version_name(),
            cipher=conn.get_cipher_name(),
            identity=identity.describe() if identity else "without certificate",
            lfdi=identity.lfdi if identity else None,
            sfdi=identity.sfdi if identity else None,
            role=self.role,
        )


@implementer(IOpenSSLServerConnectionCreator)
class ServerConnectionCreator(_CreatorBase):
    """
    Server side (EVSE): requires and verifies a client certificate, then consults the
    allow-list hook.  Use L{server_connection_creator} to make one.
    """

    role = "server"

    def __init__(self, settings: TLSSettings, allow: AllowHook | None = None) -> None:
        super().__init__(settings)
        self.allow = allow

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """
        A new server-side connection for C{tlsProtocol} (a C{TLSMemoryBIOProtocol}).
        """
        return self._newConnection(tlsProtocol)

    def _checkIdentity(self, identity: PeerIdentity) -> str | None:
        if self.allow is None:
            return None
        try:
            verdict = self.allow(identity)
        except Exception:
            self.log.failure("Allow-list hook raised; refusing {lfdi}", lfdi=identity.lfdi)
            return "allow-list refused: the allow-list hook failed"
        if verdict is None:
            return None
        return f"allow-list refused: {verdict}"

    def _logRefusal(self, **fields: Any) -> None:
        self.log.warn("Refused TLS connection from {peer}: {reason}", role=self.role, **fields)


@implementer(IOpenSSLClientConnectionCreator)
class ClientConnectionCreator(_CreatorBase):
    """
    Client side (PEV, uplink): presents our certificate and verifies the server's chain
    against the configured roots; optionally pins the server's LFDI.  Host names are sent
    as SNI when given but never checked against the certificate.
    """

    role = "client"

    def __init__(
        self,
        settings: TLSSettings,
        hostname: str | None = None,
        expected_lfdi: str | None = None,
        context: SSL.Context | None = None,
    ) -> None:
        super().__init__(settings, context)
        self.hostname = hostname
        self.expected_lfdi = normalize_lfdi(expected_lfdi) if expected_lfdi else None
        self._sni: bytes | None = None
        if hostname:
            name = hostname.strip("[]")
            try:
                ipaddress.ip_address(name.split("%", 1)[0])
            except ValueError:
                try:
                    self._sni = name.encode("idna")
                except UnicodeError:
                    self._sni = None

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """
        A new client-side connection for C{tlsProtocol} (a C{TLSMemoryBIOProtocol}).
        """
        conn = self._newConnection(tlsProtocol)
        if self._sni:
            conn.set_tlsext_host_name(self._sni)
        return conn

    def _checkIdentity(self, identity: PeerIdentity) -> str | None:
        if self.expected_lfdi is not None and identity.lfdi != self.expected_lfdi:
            return f"server LFDI {identity.lfdi} is not the expected {self.expected_lfdi}"
        return None

    def _logRefusal(self, **fields: Any) -> None:
        self.log.warn(
            "TLS handshake with server {peer} failed: {reason}", role=self.role, **fields
        )


@implementer(IPolicyForHTTPS)
class ClientPolicy:
    """
    C{IPolicyForHTTPS} for C{twisted.web.client.Agent} / treq: every HTTPS connection uses
    sepgw's client TLS (one shared context).
    """

    def __init__(self, settings: TLSSettings, expected_lfdi: str | None = None, *,
                 context: SSL.Context | None = None) -> None:
        self.settings = settings
        self.expected_lfdi = expected_lfdi
        self._context = (context if context is not None else
                         _build_context(settings, server=False, log=ClientConnectionCreator.log))

    def pinned(self, expected_lfdi: str | None) -> "ClientPolicy":
        """The same client TLS, sharing this policy's context (its certificate, key and
        trust anchors loaded once), expecting a server certificate with ``expected_lfdi``
        (checked per connection)."""
        return ClientPolicy(self.settings, expected_lfdi, context=self._context)

    def creatorForNetloc(self, hostname: bytes, port: int) -> ClientConnectionCreator:
        """
        The connection creator for C{hostname}:C{port}.
        """
        name = hostname.decode("ascii", "replace") if isinstance(hostname, bytes) else hostname
        return ClientConnectionCreator(
            self.settings, name, expected_lfdi=self.expected_lfdi, context=self._context
        )


def server_connection_creator(
    settings: TLSSettings, allow: AllowHook | None = None
) -> ServerConnectionCreator:
    """
    An C{IOpenSSLServerConnectionCreator} for the EVSE's 2030.5 server.

    @param allow: allow-list hook called with the verified peer's L{PeerIdentity} during
        the handshake: return L{None} to accept, or a reason string to refuse (the
        handshake then fails and the reason is logged).  V2G-4.5.2-1.
    """
    return ServerConnectionCreator(settings, allow)


def client_connection_creator(
    settings: TLSSettings, hostname: str | None = None, expected_lfdi: str | None = None
) -> ClientConnectionCreator:
    """
    An C{IOpenSSLClientConnectionCreator} for a 2030.5 client.

    @param hostname: sent as SNI if it is a name (not checked against the certificate).
    @param expected_lfdi: if given, refuse a server whose LFDI differs.
    """
    return ClientConnectionCreator(settings, hostname, expected_lfdi)


def client_policy(settings: TLSSettings, expected_lfdi: str | None = None) -> ClientPolicy:
    """
    An C{IPolicyForHTTPS} for C{Agent(reactor, contextFactory=...)} / treq.
    """
    return ClientPolicy(settings, expected_lfdi)


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    Serve TLS on any stream server endpoint (TCP6, a UNIX socket for tests, a systemd
    socket...): the factory passed to L{listen} is wrapped in a C{TLSMemoryBIOFactory}
    using C{creator}.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        creator: Any,
        clock: IReactorTime | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.creator = creator
        self.clock = clock

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Listen on the wrapped endpoint with TLS around C{protocolFactory}.
        """
        # (zope interfaces are not typed for mypy: call through Any.)
        endpoint: Any = self.endpoint
        result: Deferred[IListeningPort] = endpoint.listen(
            TLSMemoryBIOFactory(self.creator, False, protocolFactory, self.clock)
        )
        return result


def wrap_server_endpoint(
    endpoint: IStreamServerEndpoint,
    settings: TLSSettings,
    allow: AllowHook | None = None,
    clock: IReactorTime | None = None,
) -> TLSServerEndpoint:
    """
    A server endpoint that speaks sepgw's TLS (see L{server_connection_creator}) on top of
    C{endpoint}; plaintext is never served on it.
    """
    return TLSServerEndpoint(endpoint, server_connection_creator(settings, allow), clock)
