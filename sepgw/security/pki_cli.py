"""
``sepgw pki``: create and inspect a test PKI for labs and the demo.

    sepgw pki init DIR [--hw-type OID] [--evse-hw-type OID] [--force]
    sepgw pki pev DIR NAME --hw-type OID [--serial S] [--force]
    sepgw pki show CERT

Exit codes: 0 success; 1 failed (message on stderr); 2 usage error; 3 the files exist
already and nothing was changed (``init`` / ``pev`` without ``--force``), so scripts can
treat 3 as "already done".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from cryptography.hazmat.primitives.asymmetric import ec

from sepgw.security.identity import PeerIdentity
from sepgw.security.pki import (
    DEFAULT_EVSE_HW_TYPE,
    DEFAULT_PEV_HW_TYPE,
    PKIError,
    PKIExistsError,
    init_pki,
    issue_pev,
    load_certificates,
)

__all__ = ["EXIT_EXISTS", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "describe", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_EXISTS = 3


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.format_usage()}{self.prog}: error: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        # --help: argparse has printed the help already.
        raise SystemExit(status)


def _parser() -> _Parser:
    parser = _Parser(prog="sepgw pki", description="Test PKI for IEEE 2030.5 labs (not for production).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p_init = sub.add_parser("init", help="create SERCA, MCA, EVSE and PEV certificates in DIR")
    p_init.add_argument("directory", metavar="DIR", type=Path)
    p_init.add_argument(
        "--hw-type",
        default=DEFAULT_PEV_HW_TYPE,
        metavar="OID",
        help=f"HardwareModuleName hwType (make/model) of the PEV (default {DEFAULT_PEV_HW_TYPE})",
    )
    p_init.add_argument(
        "--evse-hw-type",
        default=DEFAULT_EVSE_HW_TYPE,
        metavar="OID",
        help=f"HardwareModuleName hwType of the EVSE (default {DEFAULT_EVSE_HW_TYPE})",
    )
    p_init.add_argument("--force", action="store_true", help="replace an existing PKI")

    p_pev = sub.add_parser("pev", help="issue another PEV certificate DIR/NAME.pem from the MCA")
    p_pev.add_argument("directory", metavar="DIR", type=Path)
    p_pev.add_argument("name", metavar="NAME")
    p_pev.add_argument("--hw-type", required=True, metavar="OID", help="hwType OID (make/model)")
    p_pev.add_argument("--serial", metavar="S", help="hwSerialNum (text; default random)")
    p_pev.add_argument("--force", action="store_true", help="replace an existing NAME.pem")

    p_show = sub.add_parser("show", help="print a certificate's 2030.5 identity")
    p_show.add_argument("cert", metavar="CERT", type=Path)
    return parser


def describe(cert_path: Path) -> str:
    """
    The text ``show`` prints for the first certificate in C{cert_path} (plus a note about
    any further certificates in the file).
    """
    certs = load_certificates(cert_path)
    if not certs:
        raise PKIError(f"{cert_path}: no certificate in file")
    cert = certs[0]
    identity = PeerIdentity.from_certificate(cert)
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key_text = f"EC {key.curve.name}"
    else:
        key_text = type(key).__name__
    lines = [
        f"subject:    {cert.subject.rfc4514_string() or '(empty)'}",
        f"issuer:     {cert.issuer.rfc4514_string() or '(empty)'}",
        f"notBefore:  {cert.not_valid_before_utc:%Y%m%d%H%M%SZ}",
        f"notAfter:   {cert.not_valid_after_utc:%Y%m%d%H%M%SZ}",
        f"key:        {key_text}",
        f"LFDI:       {identity.lfdi}",
        f"SFDI:       {identity.sfdi}",
    ]
    hwmn = identity.hardware_module_name
    if hwmn is None:
        lines.append("HardwareModuleName: (none)")
    else:
        lines.append(f"hwType:     {hwmn.hw_type}")
        lines.append(f"hwSerial:   {hwmn.serial_text()}")
    if len(certs) > 1:
        lines.append(f"chain:      {len(certs) - 1} more certificate(s) in file")
    return "\n".join(lines)


def main(argv: list[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """
    Run ``sepgw pki`` with C{argv} (the words after ``pki``); return the exit code.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(str(e), file=err)
        return EXIT_USAGE
    except SystemExit as e:  # --help
        return int(e.code or 0)
    if args.command is None:
        print(parser.format_help(), file=err, end="")
        return EXIT_USAGE
    try:
        if args.command == "init":
            paths = init_pki(
                args.directory,
                pev_hw_type=args.hw_type,
                evse_hw_type=args.evse_hw_type,
                force=args.force,
            )
            print(f"Created test PKI in {paths.directory}:", file=out)
            for path in paths.all_files():
                print(f"  {path.name}", file=out)
            print("These keys are for labs only; they are not protected.", file=out)
        elif args.command == "pev":
            serial = args.serial.encode("utf-8") if args.serial else None
            cert_path, key_path = issue_pev(
                args.directory, args.name, args.hw_type, serial, force=args.force
            )
            print(f"Issued {cert_path} and {key_path}", file=out)
            print(describe(cert_path), file=out)
        elif args.command == "show":
            print(describe(args.cert), file=out)
    except PKIExistsError as e:
        print(f"sepgw pki {args.command}: {e}", file=err)
        return EXIT_EXISTS
    except PKIError as e:
        print(f"sepgw pki {args.command}: {e}", file=err)
        return EXIT_FAILED
    except ValueError as e:  # e.g. malformed HardwareModuleName in a shown certificate
        print(f"sepgw pki {args.command}: {e}", file=err)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
