"""A reference point for benchmarks/server.py: a minimal aiohttp TLS server (not run by hand).

What a user might write instead of sepgw with a popular asyncio framework: mutual TLS with the
same certificates and the same TLS 1.2 ECDHE-ECDSA-AES128-CCM8 suite (Python's ``ssl``
module, no session tickets), keep-alive, no access log, and a trivial handler answering the
same bytes as benchmarks/_ceiling_server.py: a GET gets the bytes sepgw answered for that kind
of GET, a POST 201 with a Location, any other method 204. aiohttp is not a dependency of
sepgw: install it in the venv for the benchmark only (``pip install aiohttp``).

    python benchmarks/_aiohttp_ceiling.py --pki DIR --port P --bodies FILE.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from pathlib import Path

from aiohttp import web

MEDIA = "application/sep+xml"


def tls_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki / "evse.pem"), str(pki / "evse.key"))
    ctx.load_verify_locations(str(pki / "serca.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-CCM8:@SECLEVEL=0")
    ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION
    return ctx


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pki", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bodies", required=True)
    args = ap.parse_args()
    bodies = json.loads(Path(args.bodies).read_text())
    dderc, derc = bodies["dderc"].encode(), bodies["derc"].encode()

    async def handle(request: web.Request) -> web.Response:
        if request.method == "GET":
            body = dderc if request.path.endswith("/dderc") else derc
            return web.Response(body=body, headers={"Content-Type": MEDIA})
        await request.read()
        if request.method == "POST":
            return web.Response(status=201, headers={"Location": request.path + "/1"})
        return web.Response(status=204)

    async def serve() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port, ssl_context=tls_context(Path(args.pki)))
        await site.start()
        print(f"CEILING serving on {args.port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
