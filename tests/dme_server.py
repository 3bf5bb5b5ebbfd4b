"""The test head-end (DME): :mod:`sepgw.dme.server` (the lab DME's server, moved there),
re-exported for the tests that use it in memory
(``treq.testing.RequestTraversalAgent(server.resource())``), and a bare process mode for
tests/test_uplink_e2e.py::

    python -m tests.dme_server --port P --cert C --key K --ca CA --commands DIR

reads JSON command files dropped into DIR (``{"op": "control", "base": {...},
"duration": 600}``, ``{"op": "default", "base": {...}}``, ``{"op": "fail", "status": 503}``)
and logs what devices send, one line each, for the test to wait for. The lab DME proper is
``twistd sepgw-dme`` (docs/uplink.md, "Lab DME").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sepgw.dme.server import MEDIA, PUT_TYPES, Device, DMEServer
from sepgw.model import DERControlBase

__all__ = ["DMEServer", "Device", "MEDIA", "PUT_TYPES", "main"]


# -- as a process -------------------------------------------------------------------------


def _base(spec: dict[str, Any]) -> DERControlBase:
    return DERControlBase(**spec)


def _apply(server: DMEServer, command: dict[str, Any]) -> None:
    op = command["op"]
    if op == "control":
        control = server.add_control(_base(command["base"]),
                                     duration=int(command.get("duration", 600)))
        server.log.info("DME: control {mrid} added: {base}", mrid=control.mRID.hex(),
                        base=command["base"])
    elif op == "default":
        server.set_default(_base(command["base"]) if command.get("base") else None)
        server.log.info("DME: default control {base}", base=command.get("base"))
    elif op == "fail":
        server.fail_status = command.get("status")
        server.log.info("DME: failing with {status}", status=server.fail_status)


def main(argv: list[str]) -> None:
    import argparse

    from twisted.internet import reactor, task
    from twisted.internet.endpoints import TCP6ServerEndpoint
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.web.server import Site

    from sepgw.security.tls import TLSSettings, server_connection_creator, TLSServerEndpoint

    parser = argparse.ArgumentParser()
    for name in ("--cert", "--key", "--ca", "--commands"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--poll-rate", type=int, default=2)
    parser.add_argument("--post-rate", type=int, default=2)
    args = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    server = DMEServer(reactor, poll_rate=args.poll_rate, post_rate=args.post_rate)
    settings = TLSSettings(cert=args.cert, key=args.key, ca=(args.ca,))
    endpoint = TLSServerEndpoint(TCP6ServerEndpoint(reactor, args.port, interface="::1"),
                                 server_connection_creator(settings), reactor)
    site = Site(server.resource())
    site.noisy = False
    commands = Path(args.commands)
    done: set[str] = set()

    def poll() -> None:
        for path in sorted(commands.glob("*.json")):
            if path.name not in done:
                done.add(path.name)
                _apply(server, json.loads(path.read_text()))

    task.LoopingCall(poll).start(0.1)
    endpoint.listen(site).addCallback(
        lambda port: server.log.info("DME serving on port {port}", port=args.port))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
