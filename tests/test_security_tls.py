"""
Tests for sepgw.security.tls: real TLS handshakes in memory between sepgw's client and
server connection creators (TLSMemoryBIOFactory over twisted.test.iosim), refusals and
their log messages, settings validation, key log.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, LogLevel, capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface.verify import verifyObject

from sepgw.security import pki
from sepgw.security.identity import HardwareModuleName, PeerIdentity, peer_identity
from sepgw.security.tls import (
    DEFAULT_CIPHERS,
    TLSConfigError,
    TLSSettings,
    client_connection_creator,
    client_policy,
    effective_cipher_list,
    server_connection_creator,
)
from tests.security_helpers import (
    CLIENT_ADDRESS,
    REQUEST,
    RESPONSE,
    SERVER_ADDRESS,
    Handshake,
    RawClientCreator,
    RecordingProtocol,
    run_handshake,
    shared_pki,
    warnings_from,
)


def evse_settings(**kw: Any) -> TLSSettings:
    p = shared_pki().paths
    return TLSSettings(p.evse, p.evse_key, (p.serca,), **kw)


def pev_settings(**kw: Any) -> TLSSettings:
    p = shared_pki().paths
    return TLSSettings(p.pev, p.pev_key, (p.serca,), **kw)


class _TLSTestMixin:
    """
    Runs handshakes while capturing sepgw.security log events.
    """

    def handshake(self, server: Any, client: Any, **kw: Any) -> tuple[Handshake, list[LogEvent]]:
        with capturedLogs() as events:
            result = run_handshake(server, client, **kw)
        return result, list(events)

    def assertRefused(self, result: Handshake) -> None:
        """
        No application data crossed in either direction and both ends were closed.
        """
        case: Any = self
        case.assertEqual(result.server_app.received, [])
        case.assertEqual(result.client_app.received, [])
        case.assertIsNotNone(result.server_app.lost)
        case.assertIsNotNone(result.client_app.lost)
        case.assertTrue(result.server_tls.transport.disconnecting)

    def serverRefusal(self, events: list[LogEvent]) -> LogEvent:
        """
        The single warning the server logged about refusing the client.
        """
        case: Any = self
        refusals = [e for e in warnings_from(events) if e.get("role") == "server"]
        case.assertEqual(len(refusals), 1, refusals)
        event = refusals[0]
        case.assertEqual(event["peer"], "[fd00::2]:49152")
        case.assertEqual(event["log_level"], LogLevel.warn)
        return event


class HandshakeTests(_TLSTestMixin, SynchronousTestCase):
    def test_interfaces(self) -> None:
        """
        The creators and the policy provide the Twisted interfaces they are used through.
        """
        verifyObject(IOpenSSLServerConnectionCreator, server_connection_creator(evse_settings()))
        verifyObject(IOpenSSLClientConnectionCreator, client_connection_creator(pev_settings()))
        policy = client_policy(pev_settings())
        verifyObject(IPolicyForHTTPS, policy)
        verifyObject(IOpenSSLClientConnectionCreator, policy.creatorForNetloc(b"evse.local", 443))

    def test_wrapServerEndpoint(self) -> None:
        """
        wrap_server_endpoint() listens on any stream endpoint with the application factory
        wrapped in TLS (so the port never speaks plaintext), using sepgw's server creator.
        """
        from twisted.internet.defer import succeed
        from twisted.internet.interfaces import IStreamServerEndpoint
        from zope.interface import implementer

        from sepgw.security.tls import ServerConnectionCreator, wrap_server_endpoint

        listened: list[Any] = []

        @implementer(IStreamServerEndpoint)
        class FakeEndpoint:
            def listen(self, factory: Any) -> Any:
                listened.append(factory)
                return succeed("port")

        app_factory = Factory.forProtocol(RecordingProtocol)
        endpoint = wrap_server_endpoint(FakeEndpoint(), evse_settings(), clock=Clock())
        verifyObject(IStreamServerEndpoint, endpoint)
        self.assertEqual(self.successResultOf(endpoint.listen(app_factory)), "port")
        (tls_factory,) = listened
        self.assertIsInstance(tls_factory, TLSMemoryBIOFactory)
        self.assertIs(tls_factory.wrappedFactory, app_factory)
        self.assertIsInstance(endpoint.creator, ServerConnectionCreator)

    def test_mutualHandshakeCCM8(self) -> None:
        """
        sepgw's client and server complete a mutually authenticated TLS 1.2 handshake with
        ECDHE-ECDSA-AES128-CCM8 and exchange application data over HTTPS-style TLS
        (V2G-4.1.3-2).
        """
        result, events = self.handshake(
            server_connection_creator(evse_settings()), client_connection_creator(pev_settings())
        )
        self.assertEqual(result.server_app.received, [REQUEST])
        self.assertEqual(result.client_app.received, [RESPONSE])
        for end in (result.server_tls, result.client_tls):
            conn = end.getHandle()
            self.assertEqual(conn.get_cipher_name(), "ECDHE-ECDSA-AES128-CCM8")
            self.assertEqual(conn.get_protocol_version_name(), "TLSv1.2")
        self.assertEqual(warnings_from(events), [])

    def test_serverSeesClientIdentity(self) -> None:
        """
        After the handshake the server knows the PEV's LFDI, SFDI and HardwareModuleName
        (make/model hwType), from the TLS protocol, its handle, or anything wrapping it
        (V2G-4.4-2).
        """
        result, _ = self.handshake(
            server_connection_creator(evse_settings()), client_connection_creator(pev_settings())
        )
        expected = pev_settings().identity
        identity = peer_identity(result.server_tls)
        assert identity is not None
        self.assertEqual(identity.lfdi, expected.lfdi)
        self.assertEqual(identity.sfdi, expected.sfdi)
        self.assertEqual(
            identity.hardware_module_name,
            HardwareModuleName(pki.DEFAULT_PEV_HW_TYPE, b"PEV-TEST-1"),
        )
        # Cached per connection.
        self.assertIs(peer_identity(result.server_tls), identity)
        self.assertIs(peer_identity(result.server_tls.getHandle()), identity)

        class Channel:
            transport = result.server_tls

        class Request:
            channel = Channel()
            transport = result.server_tls

        self.assertIs(peer_identity(Request()), identity)
        # And the client sees the EVSE.
        server_identity = peer_identity(result.client_tls)
        assert server_identity is not None
        self.assertEqual(server_identity.lfdi, evse_settings().identity.lfdi)

    def test_twistedWebRequestSeesPeer(self) -> None:
        """
        A twisted.web resource served over sepgw's TLS learns the PEV's identity from the
        request with peer_identity(request).
        """
        from twisted.web.resource import Resource
        from twisted.web.server import Request, Site

        seen: list[PeerIdentity | None] = []

        class WhoAmI(Resource):
            isLeaf = True

            def render_GET(self, request: Request) -> bytes:
                identity = peer_identity(request)
                seen.append(identity)
                return (identity.lfdi if identity else "nobody").encode("ascii")

        clock = Clock()
        site = Site(WhoAmI(), reactor=clock, timeout=None)
        server_tls_factory = TLSMemoryBIOFactory(
            server_connection_creator(evse_settings()), False, site, clock
        )
        client_app = RecordingProtocol(
            greeting=b"GET /edev HTTP/1.1\r\nHost: evse\r\nConnection: close\r\n\r\n"
        )
        client_factory = TLSMemoryBIOFactory(
            client_connection_creator(pev_settings()),
            True,
            Factory.forProtocol(lambda: client_app),
            clock,
        )
        from twisted.test import iosim

        _, _, pump = iosim.connectedServerAndClient(
            lambda: server_tls_factory.buildProtocol(CLIENT_ADDRESS),
            lambda: client_factory.buildProtocol(SERVER_ADDRESS),
            clock=clock,
        )
        pump.flush()
        lfdi = pev_settings().identity.lfdi
        self.assertEqual([i.lfdi if i else None for i in seen], [lfdi])
        response = b"".join(client_app.received)
        self.assertTrue(response.startswith(b"HTTP/1.1 200"), response)
        self.assertTrue(response.endswith(lfdi.encode("ascii")), response)

    def test_logsEstablishedSession(self) -> None:
        """
        A successful handshake is logged (info) with the peer address and LFDI.
        """
        _, events = self.handshake(
            server_connection_creator(evse_settings()), client_connection_creator(pev_settings())
        )
        infos = [
            e
            for e in events
            if e.get("role") == "server" and e.get("log_level") == LogLevel.info
        ]
        self.assertEqual(len(infos), 1)
        self.assertEqual(infos[0]["lfdi"], pev_settings().identity.lfdi)
        self.assertEqual(infos[0]["peer"], "[fd00::2]:49152")
        self.assertEqual(infos[0]["cipher"], "ECDHE-ECDSA-AES128-CCM8")

    def test_identityOnlyAfterHandshake(self) -> None:
        """
        Before the handshake has completed, peer_identity() returns None.
        """
        creator = server_connection_creator(evse_settings())
        factory = TLSMemoryBIOFactory(
            creator, False, Factory.forProtocol(RecordingProtocol), Clock()
        )
        proto = factory.buildProtocol(CLIENT_ADDRESS)
        assert proto is not None
        proto.makeConnection(StringTransport(SERVER_ADDRESS, CLIENT_ADDRESS))
        self.assertIsNone(peer_identity(proto))

    def test_noExpiryCertificatesAccepted(self) -> None:
        """
        Certificates with notAfter 99991231235959Z (GeneralizedTime, the 2030.5 "no
        expiration") pass OpenSSL's verification on both ends (V2G-4.1.3-1).
        """
        p = shared_pki().paths
        for path in (p.serca, p.mca, p.evse, p.pev):
            for cert in pki.load_certificates(path):
                self.assertEqual(
                    cert.not_valid_after_utc.strftime("%Y%m%d%H%M%SZ"), "99991231235959Z"
                )
        result, events = self.handshake(
            server_connection_creator(evse_settings()), client_connection_creator(pev_settings())
        )
        self.assertEqual(result.server_app.received, [REQUEST])
        self.assertEqual(warnings_from(events), [])

    def test_expiredCertificateRefused(self) -> None:
        """
        Negative control for the 9999 test: an expired device certificate is refused, so
        validity times really are checked (V2G-4.5.2-2).
        """
        result, events = self.handshake(
            server_connection_creator(evse_settings()),
            RawClientCreator(*shared_pki().extra["expired"]),
        )
        self.assertRefused(result)
        self.assertIn("certificate has expired", self.serverRefusal(events)["reason"])

    def test_intermediateChain(self) -> None:
        """
        A device certificate issued by a MICA under the MCA is accepted when the device
        sends its chain (device, MICA, MCA) and the server trusts only the SERCA.
        """
        cert, key = shared_pki().extra["mica"]
        client = TLSSettings(cert, key, (shared_pki().paths.serca,))
        result, events = self.handshake(
            server_connection_creator(evse_settings()), client_connection_creator(client)
        )
        self.assertEqual(result.server_app.received, [REQUEST])
        identity = peer_identity(result.server_tls)
        assert identity is not None and identity.hardware_module_name is not None
        self.assertEqual(identity.hardware_module_name.hw_serial, b"MICA-1")
        self.assertEqual(warnings_from(events), [])

    def test_missingIntermediateRefused(self) -> None:
        """
        The same device certificate without its intermediates cannot be chained to the
        SERCA and is refused as from an unknown CA (V2G-4.5.2-2).
        """
        result, events = self.handshake(
            server_connection_creator(evse_settings()),
            RawClientCreator(*shared_pki().extra["leafonly"]),
        )
        self.assertRefused(result)
        self.assertIn("unknown CA", self.serverRefusal(events)["reason"])

    def test_trustedIntermediateInCAFile(self) -> None:
        """
        If the CA files also hold the MCA, a device that sends only its leaf certificate
        is still verified up to the SERCA.
        """
        p = shared_pki().paths
        server = TLSSettings(p.evse, p.evse_key, (p.serca, p.mca))
        leaf_cert = pki.load_certificates(p.pev)[0]
        leaf_path = shared_pki().directory / "pev-leaf.pem"
        pki.write_certificates(leaf_path, [leaf_cert])
        result, _ = self.handshake(
            server_connection_creator(server), RawClientCreator(leaf_path, p.pev_key)
        )
        self.assertEqual(result.server_app.received, [REQUEST])

    def test_clientPolicyIgnoresHostName(self) -> None:
        """
        The HTTPS policy's creators connect whatever host name or address is used: 2030.5
        identifies the server by chain (and optionally LFDI), not by name.
        """
        policy = client_policy(pev_settings())
        for host in (b"evse.local", b"fd00::1", b"192.0.2.1"):
            result, events = self.handshake(
                server_connection_creator(evse_settings()), policy.creatorForNetloc(host, 443)
            )
            self.assertEqual(result.client_app.received, [RESPONSE], host)
            self.assertEqual(warnings_from(events), [])

    def test_expectedLFDI(self) -> None:
        """
        A client pinned to the server's LFDI (any case) connects; pinned to another LFDI
        it terminates the handshake and logs why (V2G-4.5.2-3).
        """
        server_lfdi = evse_settings().identity.lfdi
        ok, _ = self.handshake(
            server_connection_creator(evse_settings()),
            client_connection_creator(pev_settings(), expected_lfdi=server_lfdi.lower()),
        )
        self.assertEqual(ok.client_app.received, [RESPONSE])

        bad, events = self.handshake(
            server_connection_creator(evse_settings()),
            client_connection_creator(pev_settings(), expected_lfdi="0" * 40),
        )
        self.assertRefused(bad)
        client_events = [e for e in warnings_from(events) if e.get("role") == "client"]
        self.assertEqual(len(client_events), 1)
        self.assertIn("not the expected", client_events[0]["reason"])
        self.assertEqual(client_events[0]["peer"], "[fd00::1]:443")

    def test_pinnedPoliciesShareOneContext(self) -> None:
        """
        Policies made by C{pinned()} from one client policy (the EVSE's notifier: one per
        subscriber) share its context and each pins its own LFDI: pinned to the server's
        LFDI the handshake completes, pinned to another LFDI it is refused.
        """
        base = client_policy(pev_settings())
        server_lfdi = evse_settings().identity.lfdi
        good, other = base.pinned(server_lfdi), base.pinned("0" * 40)
        self.assertIs(good._context, base._context)
        self.assertIs(other._context, base._context)
        ok, _ = self.handshake(server_connection_creator(evse_settings()),
                               good.creatorForNetloc(b"fd00::1", 443))
        self.assertEqual(ok.client_app.received, [RESPONSE])
        bad, events = self.handshake(server_connection_creator(evse_settings()),
                                     other.creatorForNetloc(b"fd00::1", 443))
        self.assertRefused(bad)
        client_events = [e for e in warnings_from(events) if e.get("role") == "client"]
        self.assertIn("not the expected", client_events[0]["reason"])

    def test_clientRefusesUnknownServer(self) -> None:
        """
        The PEV client refuses an EVSE whose certificate chains to a root it does not
        trust, and terminates the TLS session (V2G-4.5.2-3).
        """
        other = shared_pki().other
        server = TLSSettings(other.evse, other.evse_key, (shared_pki().paths.serca,))
        result, events = self.handshake(
            server_connection_creator(server), client_connection_creator(pev_settings())
        )
        self.assertRefused(result)
        client_events = [e for e in warnings_from(events) if e.get("role") == "client"]
        self.assertEqual(len(client_events), 1)
        self.assertIn("unknown CA", client_events[0]["reason"])


class RefusalTests(_TLSTestMixin, SynchronousTestCase):
    def test_noClientCertificate(self) -> None:
        """
        A client without a certificate is refused during the handshake and the server logs
        "no client certificate" with the peer address (V2G-4.5.2-1, V2G-4.5.2-2).
        """
        result, events = self.handshake(
            server_connection_creator(evse_settings()), RawClientCreator()
        )
        self.assertRefused(result)
        event = self.serverRefusal(events)
        self.assertIn("no client certificate", event["reason"])
        self.assertIsNone(event["lfdi"])

    def test_unknownCA(self) -> None:
        """
        A PEV certificate from an unrelated PKI (unknown CA) is refused during the
        handshake and the reason names the unknown CA (V2G-4.5.2-1, V2G-4.5.2-2).
        """
        other = shared_pki().other
        client = TLSSettings(other.pev, other.pev_key, (shared_pki().paths.serca,))
        result, events = self.handshake(
            server_connection_creator(evse_settings()), client_connection_creator(client)
        )
        self.assertRefused(result)
        self.assertIn("unknown CA", self.serverRefusal(events)["reason"])

    def test_rsaCertificate(self) -> None:
        """
        An RSA client certificate, even one issued by the trusted MCA, is refused by the
        verify callback during the handshake: only ECDSA P-256 is accepted (V2G-4.1.3-1).
        """
        result, events = self.handshake(
            server_connection_creator(evse_settings()),
            RawClientCreator(*shared_pki().extra["rsa"]),
        )
        self.assertRefused(result)
        event = self.serverRefusal(events)
        self.assertIn("RSA", event["reason"])
        self.assertIn("only ECDSA P-256", event["reason"])

    def test_wrongCurve(self) -> None:
        """
        An ECDSA certificate on P-384 is refused like RSA (P-256 only).
        """
        result, events = self.handshake(
            server_connection_creator(evse_settings()),
            RawClientCreator(*shared_pki().extra["p384"]),
        )
        self.assertRefused(result)
        self.assertIn("secp384r1", self.serverRefusal(events)["reason"])

    def test_noAcceptableCipher(self) -> None:
        """
        A client offering only a suite other than ECDHE-ECDSA-AES128-CCM8 is refused and
        the reason says no acceptable cipher was offered (V2G-4.5.2-2).
        """
        p = shared_pki().paths
        result, events = self.handshake(
            server_connection_creator(evse_settings()),
            RawClientCreator(p.pev, p.pev_key, ciphers=b"ECDHE-ECDSA-AES128-GCM-SHA256"),
        )
        self.assertRefused(result)
        self.assertIn("no acceptable cipher", self.serverRefusal(events)["reason"])

    def test_tls13Refused(self) -> None:
        """
        A client that only speaks TLS 1.3 is refused: the server is TLS 1.2 only.
        """
        p = shared_pki().paths
        raw = RawClientCreator(p.pev, p.pev_key)
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.use_certificate_chain_file(str(p.pev))
        ctx.use_privatekey_file(str(p.pev_key))
        raw.context = ctx
        result, events = self.handshake(server_connection_creator(evse_settings()), raw)
        self.assertRefused(result)
        self.serverRefusal(events)

    def test_allowListRefusal(self) -> None:
        """
        The allow-list hook sees the authenticated PEV identity during the handshake; when
        it returns a reason the EVSE terminates the TLS session and logs that reason with
        the LFDI (V2G-4.5.2-1).
        """
        seen: list[PeerIdentity] = []

        def allow(identity: PeerIdentity) -> str | None:
            seen.append(identity)
            return "LFDI not on the allow list"

        result, events = self.handshake(
            server_connection_creator(evse_settings(), allow=allow),
            client_connection_creator(pev_settings()),
        )
        self.assertRefused(result)
        self.assertEqual([i.lfdi for i in seen], [pev_settings().identity.lfdi])
        event = self.serverRefusal(events)
        self.assertIn("allow-list refused: LFDI not on the allow list", event["reason"])
        self.assertEqual(event["lfdi"], pev_settings().identity.lfdi)
        self.assertEqual(event["sfdi"], pev_settings().identity.sfdi)

    def test_allowListAccepts(self) -> None:
        """
        An allow-list hook returning None lets the handshake complete; it can decide on
        make/model (hwType) as well as LFDI.
        """

        def allow(identity: PeerIdentity) -> str | None:
            hwmn = identity.hardware_module_name
            if hwmn is None or hwmn.hw_type != pki.DEFAULT_PEV_HW_TYPE:
                return "model not approved"
            return None

        result, _ = self.handshake(
            server_connection_creator(evse_settings(), allow=allow),
            client_connection_creator(pev_settings()),
        )
        self.assertEqual(result.server_app.received, [REQUEST])

    def test_allowHookErrorFailsClosed(self) -> None:
        """
        If the allow-list hook raises, the peer is refused (fail closed) and the failure
        is logged.
        """

        def allow(identity: PeerIdentity) -> str | None:
            raise RuntimeError("allow list unavailable")

        result, events = self.handshake(
            server_connection_creator(evse_settings(), allow=allow),
            client_connection_creator(pev_settings()),
        )
        self.assertRefused(result)
        self.assertIn("hook failed", self.serverRefusal(events)["reason"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)  # type: ignore[attr-defined]

    def test_peerClosesMidHandshake(self) -> None:
        """
        A peer that connects and closes before finishing the handshake is logged with its
        address and nothing reaches the application.
        """
        app = RecordingProtocol()
        factory = TLSMemoryBIOFactory(
            server_connection_creator(evse_settings()),
            False,
            Factory.forProtocol(lambda: app),
            Clock(),
        )
        proto = factory.buildProtocol(CLIENT_ADDRESS)
        assert proto is not None
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        with capturedLogs() as captured:
            proto.makeConnection(StringTransport(SERVER_ADDRESS, CLIENT_ADDRESS))
            proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(app.received, [])
        self.assertIsNotNone(app.lost)
        event = self.serverRefusal(list(captured))
        self.assertIn("closed", event["reason"])

    def test_plaintextHTTPRefused(self) -> None:
        """
        A plaintext HTTP request to the TLS port is never answered with HTTP: the
        handshake fails, nothing reaches the application, the connection is closed and the
        refusal is logged (V2G-4.1.3-3).
        """
        app = RecordingProtocol(reply=RESPONSE)
        factory = TLSMemoryBIOFactory(
            server_connection_creator(evse_settings()),
            False,
            Factory.forProtocol(lambda: app),
            Clock(),
        )
        proto = factory.buildProtocol(CLIENT_ADDRESS)
        assert proto is not None
        transport = StringTransport(SERVER_ADDRESS, CLIENT_ADDRESS)
        with capturedLogs() as captured:
            proto.makeConnection(transport)
            proto.dataReceived(REQUEST)
        self.assertEqual(app.received, [])
        self.assertNotIn(b"HTTP/", transport.value())
        self.assertTrue(transport.disconnecting)
        event = self.serverRefusal(list(captured))
        self.assertIn("plaintext HTTP", event["reason"])


class CipherTests(_TLSTestMixin, SynchronousTestCase):
    def test_defaultCipher(self) -> None:
        """
        The default cipher list is the single 2030.5 suite, and SECLEVEL=0 is appended so
        OpenSSL enables CCM8.
        """
        self.assertEqual(DEFAULT_CIPHERS, "ECDHE-ECDSA-AES128-CCM8")
        self.assertEqual(
            effective_cipher_list(DEFAULT_CIPHERS),
            "ECDHE-ECDSA-AES128-CCM8:!aNULL:!eNULL:@SECLEVEL=0",
        )
        self.assertEqual(effective_cipher_list("X:@SECLEVEL=1"), "X:@SECLEVEL=1:!aNULL:!eNULL")

    def test_anonymousSuitesExcluded(self) -> None:
        """
        Even if a lab configures anonymous suites, they are removed: a server without a
        certificate can never be accepted by the client.
        """
        settings = pev_settings(ciphers="ECDHE-ECDSA-AES128-CCM8:aNULL")
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_cipher_list(effective_cipher_list(settings.ciphers).encode())
        names = SSL.Connection(ctx, None).get_cipher_list()
        self.assertFalse([n for n in names if "ADH" in n or "AECDH" in n], names)

    def test_defaultSecurityLevelCannotDoCCM8(self) -> None:
        """
        Documents why SECLEVEL=0 is needed: a client using the CCM8 suite at OpenSSL's
        default security level cannot even offer it, and no session results.
        """
        p = shared_pki().paths
        result, _ = self.handshake(
            server_connection_creator(evse_settings()),
            RawClientCreator(p.pev, p.pev_key, ciphers=b"ECDHE-ECDSA-AES128-CCM8"),
        )
        self.assertRefused(result)

    def test_configurableCiphers(self) -> None:
        """
        Labs may configure another cipher list; both ends then negotiate from it.
        """
        ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"
        result, _ = self.handshake(
            server_connection_creator(evse_settings(ciphers=ciphers)),
            client_connection_creator(pev_settings(ciphers=ciphers)),
        )
        self.assertEqual(result.server_tls.getHandle().get_cipher_name(), ciphers)


class KeyLogTests(_TLSTestMixin, SynchronousTestCase):
    def test_keyLogWritesNSSLines(self) -> None:
        """
        With keylog set, NSS key log lines (CLIENT_RANDOM <64 hex> <96 hex>) are appended
        to the file, which is created 0600, and a warning is logged when the context is
        built.
        """
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        with capturedLogs() as captured:
            client = client_connection_creator(pev_settings(keylog=path))
        warnings = warnings_from(list(captured))
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["path"], str(path))
        self.handshake(server_connection_creator(evse_settings()), client)
        lines = path.read_bytes().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertRegex(lines[0], re.compile(rb"^CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}$"))
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)
        # Appends.
        self.handshake(server_connection_creator(evse_settings()), client)
        self.assertEqual(len(path.read_bytes().splitlines()), 2)

    def test_keyLogOffByDefault(self) -> None:
        """
        Without keylog nothing is written anywhere near and nothing is warned.
        """
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        settings = pev_settings()
        self.assertIsNone(settings.keylog)
        with capturedLogs() as captured:
            result, _ = self.handshake(
                server_connection_creator(evse_settings()), client_connection_creator(settings)
            )
        self.assertEqual(result.client_app.received, [RESPONSE])
        self.assertEqual(list(directory.iterdir()), [])
        self.assertEqual(warnings_from(list(captured)), [])
        # No key log callback was installed on the context at all.
        context = result.client_tls.getHandle().get_context()
        self.assertIsNone(getattr(context, "_keylog_callback", None))


class SettingsTests(SynchronousTestCase):
    def assertConfigError(self, source: object, fragment: str, **kw: Any) -> None:
        p = shared_pki().paths
        args: dict[str, Any] = {"cert": p.evse, "key": p.evse_key, "ca": (p.serca,)}
        args.update(kw)
        with self.assertRaises(TLSConfigError) as cm:
            TLSSettings(**args)
        self.assertEqual(cm.exception.source, source)
        self.assertIn(fragment, str(cm.exception))
        self.assertIn(str(source), str(cm.exception))

    def test_loadsEagerly(self) -> None:
        """
        Settings read the files at once: chain, key and trusted roots are available, and
        strings are accepted for paths.
        """
        p = shared_pki().paths
        settings = TLSSettings(str(p.evse), str(p.evse_key), str(p.serca))  # type: ignore[arg-type]
        self.assertEqual(settings.ca, (p.serca,))
        self.assertEqual(len(settings.chain), 2)  # device + MCA
        self.assertEqual(len(settings.trusted), 1)
        self.assertEqual(settings.ciphers, DEFAULT_CIPHERS)

    def test_missingFile(self) -> None:
        """
        A missing certificate, key or CA file is named in the error.
        """
        missing = Path(self.mktemp())
        self.assertConfigError(missing, "does not exist", cert=missing)
        self.assertConfigError(missing, "does not exist", key=missing)
        self.assertConfigError(missing, "does not exist", ca=(missing,))

    def test_notPEM(self) -> None:
        """
        Files that are not PEM are reported as such.
        """
        junk = Path(self.mktemp())
        junk.write_bytes(b"hello")
        self.assertConfigError(junk, "no PEM certificate", cert=junk)
        self.assertConfigError(junk, "no PEM private key", key=junk)
        self.assertConfigError(junk, "no PEM certificate", ca=(junk,))

    def test_keyMismatch(self) -> None:
        """
        A key that does not belong to the certificate is refused.
        """
        self.assertConfigError(shared_pki().paths.pev_key, "does not match", key=shared_pki().paths.pev_key)

    def test_notP256(self) -> None:
        """
        RSA or P-384 certificates are refused for our own identity.
        """
        rsa_cert, rsa_key = shared_pki().extra["rsa"]
        self.assertConfigError(rsa_cert, "requires ECDSA P-256", cert=rsa_cert, key=rsa_key)
        p384_cert, p384_key = shared_pki().extra["p384"]
        self.assertConfigError(p384_cert, "secp384r1", cert=p384_cert, key=p384_key)

    def test_noCA(self) -> None:
        """
        At least one CA file is required.
        """
        self.assertConfigError("ca", "no CA", ca=())

    def test_badCiphers(self) -> None:
        """
        A cipher string OpenSSL cannot use is refused at load time.
        """
        self.assertConfigError("ciphers", "accepts no cipher", ciphers="NOT-A-CIPHER")

    def test_keylogDirectoryMissing(self) -> None:
        """
        A key log path in a missing directory is refused at load time.
        """
        path = Path(self.mktemp()) / "keys.log"
        self.assertConfigError(path, "directory does not exist", keylog=path)

    def test_frozen(self) -> None:
        """
        Settings are immutable.
        """
        with self.assertRaises(AttributeError):
            evse_settings().ciphers = "x"  # type: ignore[misc]
