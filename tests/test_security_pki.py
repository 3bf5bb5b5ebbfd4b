"""
Tests for the test PKI (sepgw.security.pki) and ``sepgw pki`` (sepgw.security.pki_cli).
"""

from __future__ import annotations

import io
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL.crypto import X509, X509Store, X509StoreContext
from twisted.trial.unittest import SynchronousTestCase

from sepgw.security import pki, pki_cli
from sepgw.security.identity import HardwareModuleName, PeerIdentity
from sepgw.security.tls import TLSSettings, client_connection_creator, server_connection_creator
from tests.security_helpers import REQUEST, run_handshake

EXPECTED_FILES = {
    "serca.pem",
    "serca.key",
    "mca.pem",
    "mca.key",
    "evse.pem",
    "evse.key",
    "pev.pem",
    "pev.key",
}


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = pki_cli.main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def verify_chain(cert_file: Path, serca_file: Path) -> None:
    """
    Verify the first certificate of C{cert_file} with OpenSSL against the SERCA, using
    the rest of the file as untrusted intermediates.  Raises on failure.
    """
    certs = pki.load_certificates(cert_file)
    store = X509Store()
    for root in pki.load_certificates(serca_file):
        store.add_cert(X509.from_cryptography(root))
    X509StoreContext(
        store,
        X509.from_cryptography(certs[0]),
        [X509.from_cryptography(c) for c in certs[1:]],
    ).verify_certificate()


class InitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        code, self.out, err = run(["init", str(self.directory)])
        self.assertEqual((code, err), (0, ""))

    def test_createsAllFiles(self) -> None:
        """
        ``init DIR`` writes SERCA, MCA, EVSE and PEV certificates and keys; keys are 0600.
        """
        names = {p.name for p in self.directory.iterdir()}
        self.assertEqual(names, EXPECTED_FILES)
        for name in EXPECTED_FILES:
            mode = stat.S_IMODE((self.directory / name).stat().st_mode)
            if name.endswith(".key"):
                self.assertEqual(mode, 0o600, name)
        for name in sorted(EXPECTED_FILES):
            self.assertIn(name, self.out)

    def test_certificateShapes(self) -> None:
        """
        The SERCA is a self-signed P-256 CA; device files hold the device certificate then
        the MCA; device certificates have an empty subject, a HardwareModuleName, a P-256
        key and notAfter 99991231235959Z (V2G-4.1.3-1, V2G-4.4-1).
        """
        serca = pki.load_certificates(self.directory / "serca.pem")[0]
        self.assertEqual(serca.subject, serca.issuer)
        self.assertTrue(serca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        ku = serca.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(ku.key_cert_sign)
        mca = pki.load_certificates(self.directory / "mca.pem")[0]
        self.assertEqual(mca.issuer, serca.subject)
        for device in ("evse", "pev"):
            chain = pki.load_certificates(self.directory / f"{device}.pem")
            self.assertEqual(len(chain), 2)
            leaf = chain[0]
            self.assertEqual(chain[1], mca)
            self.assertEqual(len(leaf.subject), 0)
            self.assertEqual(leaf.issuer, mca.subject)
            key = leaf.public_key()
            assert isinstance(key, ec.EllipticCurvePublicKey)
            self.assertIsInstance(key.curve, ec.SECP256R1)
            self.assertEqual(leaf.not_valid_after_utc, pki.NO_EXPIRY)
            self.assertIsNotNone(PeerIdentity.from_certificate(leaf).hardware_module_name)
            verify_chain(self.directory / f"{device}.pem", self.directory / "serca.pem")

    def test_pevCarriesMakeModel(self) -> None:
        """
        The PEV certificate carries the make/model hwType given with --hw-type
        (V2G-4.4-2, V2G-4.4-3).
        """
        directory = Path(self.mktemp())
        code, _, _ = run(["init", str(directory), "--hw-type", "1.3.6.1.4.1.32473.2.42"])
        self.assertEqual(code, 0)
        leaf = pki.load_certificates(directory / "pev.pem")[0]
        hwmn = PeerIdentity.from_certificate(leaf).hardware_module_name
        assert hwmn is not None
        self.assertEqual(hwmn.hw_type, "1.3.6.1.4.1.32473.2.42")

    def test_refusesOverwrite(self) -> None:
        """
        A second ``init`` into the same directory changes nothing and exits 3 with a
        message naming --force; with --force it replaces the PKI.
        """
        before = (self.directory / "serca.pem").read_bytes()
        code, out, err = run(["init", str(self.directory)])
        self.assertEqual(code, pki_cli.EXIT_EXISTS)
        self.assertIn("--force", err)
        self.assertEqual((self.directory / "serca.pem").read_bytes(), before)
        code, _, _ = run(["init", str(self.directory), "--force"])
        self.assertEqual(code, 0)
        self.assertNotEqual((self.directory / "serca.pem").read_bytes(), before)

    def test_generatedPKIWorksForTLS(self) -> None:
        """
        The EVSE and PEV files of a fresh PKI load as TLSSettings and complete a handshake.
        """
        d = self.directory
        server = TLSSettings(d / "evse.pem", d / "evse.key", (d / "serca.pem",))
        client = TLSSettings(d / "pev.pem", d / "pev.key", (d / "serca.pem",))
        result = run_handshake(server_connection_creator(server), client_connection_creator(client))
        self.assertEqual(result.server_app.received, [REQUEST])

    def test_showMatchesIdentity(self) -> None:
        """
        ``show`` prints subject, issuer, notAfter, and LFDI / SFDI / hwType / serial equal
        to what sepgw.security.identity computes.
        """
        path = self.directory / "pev.pem"
        code, out, err = run(["show", str(path)])
        self.assertEqual((code, err), (0, ""))
        identity = PeerIdentity.from_certificate(pki.load_certificates(path)[0])
        hwmn = identity.hardware_module_name
        assert hwmn is not None
        self.assertIn(f"LFDI:       {identity.lfdi}\n", out)
        self.assertIn(f"SFDI:       {identity.sfdi}\n", out)
        self.assertIn(f"hwType:     {hwmn.hw_type}\n", out)
        self.assertIn(f"hwSerial:   {hwmn.serial_text()}\n", out)
        self.assertIn("notAfter:   99991231235959Z", out)
        self.assertIn("subject:    (empty)", out)
        self.assertIn("issuer:     CN=sepgw test MCA", out)

    def test_issuePEV(self) -> None:
        """
        ``pev DIR NAME --hw-type OID --serial S`` issues NAME.pem/NAME.key from the MCA;
        the certificate verifies against SERCA via the MCA in the file and carries the
        given HardwareModuleName.
        """
        code, out, err = run(
            ["pev", str(self.directory), "car2", "--hw-type", "1.3.6.1.4.1.32473.2.7", "--serial", "VIN7"]
        )
        self.assertEqual((code, err), (0, ""))
        cert_path = self.directory / "car2.pem"
        key_path = self.directory / "car2.key"
        verify_chain(cert_path, self.directory / "serca.pem")
        self.assertEqual(stat.S_IMODE(key_path.stat().st_mode), 0o600)
        identity = PeerIdentity.from_certificate(pki.load_certificates(cert_path)[0])
        self.assertEqual(
            identity.hardware_module_name, HardwareModuleName("1.3.6.1.4.1.32473.2.7", b"VIN7")
        )
        self.assertIn(identity.lfdi, out)
        # Loads as TLS settings (key matches).
        TLSSettings(cert_path, key_path, (self.directory / "serca.pem",))
        # Same name again: refused unless --force.
        code, _, err = run(["pev", str(self.directory), "car2", "--hw-type", "1.3.6.1.4.1.32473.2.7"])
        self.assertEqual(code, pki_cli.EXIT_EXISTS)
        self.assertIn("--force", err)


class ErrorTests(SynchronousTestCase):
    def test_usage(self) -> None:
        """
        No subcommand, an unknown one, or a missing --hw-type is a usage error (exit 2).
        """
        self.assertEqual(run([])[0], pki_cli.EXIT_USAGE)
        self.assertEqual(run(["bogus"])[0], pki_cli.EXIT_USAGE)
        self.assertEqual(run(["pev", "dir", "name"])[0], pki_cli.EXIT_USAGE)

    def test_pevWithoutPKI(self) -> None:
        """
        Issuing from a directory without an MCA fails with a message naming the file.
        """
        directory = Path(self.mktemp())
        directory.mkdir()
        code, _, err = run(["pev", str(directory), "car", "--hw-type", "1.2.3.4"])
        self.assertEqual(code, pki_cli.EXIT_FAILED)
        self.assertIn("mca.pem", err)

    def test_badOID(self) -> None:
        """
        A malformed hwType OID is refused before anything is written.
        """
        directory = Path(self.mktemp())
        code, _, err = run(["init", str(directory), "--hw-type", "not.an.oid"])
        self.assertEqual(code, pki_cli.EXIT_FAILED)
        self.assertIn("hwType", err)
        self.assertFalse(directory.exists() and any(directory.iterdir()))

    def test_badName(self) -> None:
        """
        Device names that are paths, or that would replace the CA files, are refused.
        """
        directory = Path(self.mktemp())
        self.assertEqual(run(["init", str(directory)])[0], 0)
        for name in ("../x", "mca", "serca", ".hidden"):
            code, _, _ = run(["pev", str(directory), name, "--hw-type", "1.2.3"])
            self.assertNotEqual(code, 0, name)

    def test_showMissingFile(self) -> None:
        """
        ``show`` on a missing file fails with exit 1 and names the file.
        """
        missing = self.mktemp()
        code, _, err = run(["show", missing])
        self.assertEqual(code, pki_cli.EXIT_FAILED)
        self.assertIn(missing, err)
