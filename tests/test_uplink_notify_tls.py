"""The uplink's notification listener over real mutual TLS on loopback: the built
``ieee2030_5`` component subscribes at a subscribing test DME (its own utility PKI) and a
control added at the DME arrives by notification, POSTed by the DME to the EVSE's own HTTPS
listener (separate from the vehicle-facing server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP6ServerEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.server import Site

from sepgw.model import DERControlBase
from sepgw.pev.http import _Bytes
from sepgw.security.pki import init_pki
from sepgw.security.tls import TLSServerEndpoint, TLSSettings, client_policy, \
    server_connection_creator
from sepgw.uplink.component import UplinkComponent
from tests.test_uplink_subscriptions import DERC, SubscribingDME

SITE = {"max_w": 7200.0}


class NotificationOverTLSTests(TestCase):
    timeout = 60

    async def wait(self, check: Any, what: str, seconds: float = 20.0) -> None:
        for _ in range(int(seconds / 0.05)):
            if check():
                return
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"timed out waiting for {what}")

    def test_control_arrives_by_notification(self) -> Deferred[None]:
        """With ``notify_port`` set the uplink listens with mutual TLS on its utility
        identity, subscribes to the DERControlList with an https notificationURI naming that
        listener, and a control added at the DME (pollRate 900 s, so not by polling) takes
        effect within seconds, delivered by the DME's notification; the DME's client
        certificate is checked against ``server_lfdi``."""
        return ensureDeferred(self._scenario())

    async def _scenario(self) -> None:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir(parents=True)
        utility = init_pki(directory / "utility")
        dme_tls = TLSSettings(cert=utility.evse, key=utility.evse_key, ca=(utility.serca,))
        pool = HTTPConnectionPool(reactor, persistent=True)
        agent = Agent(reactor, contextFactory=client_policy(dme_tls), pool=pool)
        codes: list[int] = []

        def deliver(uri: str, body: bytes) -> Deferred[Any]:
            d = agent.request(b"POST", uri.encode(), Headers(
                {b"Content-Type": [b"application/sep+xml"]}), _Bytes(body))
            d.addCallback(lambda response: codes.append(response.code))
            d.addErrback(lambda f: codes.append(-1))
            return d

        dme = SubscribingDME(reactor, deliver=deliver, poll_rate=900, post_rate=900)
        site = Site(dme.resource())
        site.noisy = False
        listening = await TLSServerEndpoint(
            TCP6ServerEndpoint(reactor, 0, interface="::1"),
            server_connection_creator(dme_tls), reactor).listen(site)
        self.addCleanup(listening.stopListening)
        self.addCleanup(pool.closeCachedConnections)
        port = listening.getHost().port
        config = {
            "dcap_url": f"https://[::1]:{port}/dcap", "cert": str(utility.pev),
            "key": str(utility.pev_key), "ca": [str(utility.serca)],
            "ciphers": "ECDHE-ECDSA-AES128-CCM8", "server_lfdi": dme_tls.identity.lfdi,
            "register": True, "pin": -1, "post_rate_s": 900.0, "timeout_s": 10.0,
            "queue_path": str(directory / "queue.sqlite"), "queue_max_items": 1000,
            "model": "test", "serial": "", "notify_port": 0, "notify_address": "::1",
            "notify_advertise": "", "notify_path": "/ntfy", "notify_check_s": 900.0}
        controls: list[Any] = []
        component = UplinkComponent(config, reactor, "uplink", directory, SITE, ["port1"])
        component.set_control_sink(controls.append)
        component.start()
        self.addCleanup(component.stop)
        client = component.client
        await self.wait(lambda: DERC in client.subscriptions, "the subscriptions")
        self.assertTrue(client.notify_uri.startswith("https://[::1]:"))
        self.assertNotEqual(client.notify_uri, f"https://[::1]:{port}/ntfy")
        dme.add_control(DERControlBase(opModMaxLimW=5000), duration=600)
        await self.wait(lambda: any(c["site"].get("opModMaxLimW") == 5000 for c in controls),
                        "the notified control")
        self.assertEqual(codes, [201])
        self.assertEqual(client.status()["subscriptions"]["notifications"], 1)
