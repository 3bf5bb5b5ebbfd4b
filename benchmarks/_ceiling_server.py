"""The ceiling for benchmarks/server.py: a bare Twisted TLS web server (not run by hand).

Same listening code path as ``twistd sepgw`` (TCP, ``TLSMemoryBIOFactory`` with
``sepgw.security.tls.server_connection_creator``, so the same mutual TLS and the same
ECDHE-ECDSA-AES128-CCM8 record cost) and the same ``twisted.web`` ``Site`` as sepgw's
(``EVSEHTTPServer.site()``: its channel and request factory with their limits, no POST form
decoding, no access log, the same idle timeout), but the resource is trivial: any GET gets
fixed bytes (the bytes sepgw answered for the same kind of GET, so both servers encrypt the
same amount), a POST gets 201 with a Location (as sepgw answers a created resource), any
other method 204 and no body.

    python benchmarks/_ceiling_server.py --pki DIR --port P --bodies FILE.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import reactor as _reactor  # noqa: E402
from twisted.internet.endpoints import TCP4ServerEndpoint  # noqa: E402
from twisted.protocols.tls import TLSMemoryBIOFactory  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from sepgw.evse.http import EVSEHTTPServer  # noqa: E402
from sepgw.security.tls import TLSSettings, server_connection_creator  # noqa: E402

reactor: Any = _reactor


class Fixed(Resource):
    isLeaf = True

    def __init__(self, dderc: bytes, derc: bytes) -> None:
        super().__init__()
        self.dderc = dderc
        self.derc = derc

    def render(self, request: Any) -> bytes:
        if request.method == b"GET":
            request.setHeader(b"Content-Type", b"application/sep+xml")
            return self.dderc if request.path.endswith(b"/dderc") else self.derc
        if request.method == b"POST":
            request.content.read()
            request.setResponseCode(201)
            request.setHeader(b"Location", request.path + b"/1")
            return b""
        request.content.read()
        request.setResponseCode(204)
        return b""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pki", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bodies", required=True)
    ap.add_argument("--max-body", type=int, default=None)
    args = ap.parse_args()
    pki = Path(args.pki)
    bodies = json.loads(Path(args.bodies).read_text())
    settings = TLSSettings(pki / "evse.pem", pki / "evse.key", (pki / "serca.pem",))
    # sepgw's own Site (channel, request factory, limits, options), with the trivial resource.
    site = EVSEHTTPServer(None, max_body=args.max_body).site()  # type: ignore[arg-type]
    site.resource = Fixed(bodies["dderc"].encode(), bodies["derc"].encode())
    factory = TLSMemoryBIOFactory(server_connection_creator(settings), False, site)
    d = TCP4ServerEndpoint(reactor, args.port, interface="127.0.0.1").listen(factory)
    d.addCallback(lambda port: print(f"CEILING serving on {port.getHost().port}", flush=True))
    reactor.run()


if __name__ == "__main__":
    main()
