"""
TLS and device identity for IEEE 2030.5 (SunSpec V2G-AC profile).

* L{sepgw.security.identity}: LFDI / SFDI / HardwareModuleName and L{PeerIdentity}.
* L{sepgw.security.tls}: L{TLSSettings} and the pyOpenSSL-based connection creators.
* L{sepgw.security.pki}, L{sepgw.security.pki_cli}: a test PKI (``sepgw pki``).
"""

from sepgw.security.identity import (
    HardwareModuleName,
    PeerIdentity,
    lfdi_from_der,
    lfdi_matches,
    normalize_lfdi,
    peer_identity,
    sfdi_from_lfdi,
)
from sepgw.security.tls import (
    DEFAULT_CIPHERS,
    TLSConfigError,
    TLSSettings,
    client_connection_creator,
    client_policy,
    server_connection_creator,
)

__all__ = [
    "DEFAULT_CIPHERS",
    "HardwareModuleName",
    "PeerIdentity",
    "TLSConfigError",
    "TLSSettings",
    "client_connection_creator",
    "client_policy",
    "lfdi_from_der",
    "lfdi_matches",
    "normalize_lfdi",
    "peer_identity",
    "server_connection_creator",
    "sfdi_from_lfdi",
]
