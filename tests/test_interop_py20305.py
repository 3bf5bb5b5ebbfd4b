"""Interoperability with a 2030.5 client nobody here wrote: py20305's CsipClient against the real
`twistd sepgw` EVSE over mutual TLS on loopback.

py20305 is asyncio-based (aiohttp), so it runs in its own interpreter (the WALK script below)
while the EVSE runs as a twistd process, as in tests/test_e2e_*.py. Its identity is the test
PKI's PEV certificate (sepgw.security.pki); it trusts the test PKI's SERCA. Its own cipher
list (ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-CCM8:@SECLEVEL=0) includes the
profile's CCM8 suite. Its notification listener (aiohttp, mutual TLS with the same
certificate) receives the EVSE's Notifications.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.helpers import shared_pki
from tests.processes import Process, free_port
from tests.test_e2e_session import ctl, operator_socket
from tests.test_e2e_twistd import write_configs

WALK = r'''
import asyncio, json, logging, sys, traceback
from pathlib import Path

from py20305.client import CsipClient, TlsConfig
from py20305.events.dispatch import NullDispatcher
from py20305.subscription.manager import SubscriptionManager
from py20305.subscription.notification_server import NotificationServer

url, pki, notify_port, edition = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
compat = edition == "2018"
wire = []  # [method, path, status] of every write, from py20305's own debug log


class Wire(logging.Handler):
    def emit(self, record):
        if isinstance(record.msg, str) and record.msg.endswith(" %s -> %s") and record.args:
            method = record.msg.split(" ")[0]
            path = "/" + str(record.args[0]).split("/", 3)[3]
            if method != "GET":
                wire.append([method, path, int(record.args[1])])


http_log = logging.getLogger("py20305.client.http")
http_log.setLevel(logging.DEBUG)
http_log.addHandler(Wire())
http_log.propagate = False
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def value(v):
    return getattr(v, "value", v)


class Recorder(NullDispatcher):
    """Records the controls py20305 applies: mRID -> (replyTo, opMods set)."""

    def __init__(self):
        self.controls = {}
        self.fixed_w = []

    async def apply_control(self, device_href, derc, curves):
        base = derc.dercontrol_base
        modes = sorted(k for k, v in vars(base).items() if k.startswith("op_mod") and v is not None)
        self.controls[bytes(derc.m_rid.value).hex().upper()] = [derc.reply_to, modes]
        if base.op_mod_fixed_w is not None:
            self.fixed_w.append(value(base.op_mod_fixed_w))


async def main():
    tls = TlsConfig(client_cert=pki / "pev.pem", client_key=pki / "pev.key",
                    ca_cert=pki / "serca.pem", check_hostname=False)
    dispatcher = Recorder()
    client = CsipClient(url, tls=tls, dispatcher=dispatcher, server_2018_compat=compat,
                        heartbeat_enabled=False)
    server = NotificationServer(host="::1", port=notify_port, tls=tls)
    manager = SubscriptionManager(client.http, f"https://[::1]:{notify_port}/notify",
                                  server_2018_compat=compat)
    client.attach_subscriptions(manager, server)
    notes = []
    handle = server.on_notification

    async def on_notification(n):
        notes.append({"subscribedResource": n.subscribed_resource, "status": n.status,
                      "resource": type(n.resource).__name__ if n.resource is not None else None})
        await handle(n)

    server.on_notification = on_notification
    await client.connect()
    state = client.state
    # What CsipClient.run() does first: process the controls found by discovery (this posts
    # the Responses); its poll loops are not started, so only notifications bring news.
    for href in list(state.der_programs):
        await client._event_processor.process_controls(href)
    print("READY " + json.dumps({
        "end_devices": sorted(state.end_devices), "programs": sorted(state.der_programs),
        "subscriptions": {s.subscribed_resource: s.resource_type
                          for s in manager.active_subscriptions},
        "controls": dispatcher.controls, "wire": wire}), flush=True)
    mark = len(wire)
    for _ in range(300):  # the test now changes opModFixedW; news come by notification only
        if notes and dispatcher.fixed_w:
            break
        await asyncio.sleep(0.1)
    print("NOTIFIED " + json.dumps({"notes": notes, "fixed_w": dispatcher.fixed_w,
                                    "controls": dispatcher.controls, "wire": wire[mark:]}),
          flush=True)
    mark = len(wire)
    await client.shutdown()
    print("DONE " + json.dumps({"wire": wire[mark:]}), flush=True)


try:
    asyncio.run(main())
except BaseException:
    print("FAILED " + json.dumps(traceback.format_exc()), flush=True)
    raise
'''


class Py20305InteropTests(SynchronousTestCase):
    """py20305's client, in its 2018-compatible and its default (2023) mode, against the
    real EVSE process."""

    def setUp(self) -> None:
        try:
            import py20305  # noqa: F401
        except ImportError:
            raise SkipTest("py20305 (a test dependency) is not installed")

    def walk(self, edition: str) -> tuple[Process, dict[str, Any], dict[str, Any],
                                          dict[str, Any]]:
        """Start the EVSE, let py20305 discover, subscribe and respond, then change the site's
        opModFixedW through the operator socket; return (EVSE, ready, notified, done)."""
        pki = shared_pki()
        port = free_port()
        evse_cfg, _ = write_configs(Path(self.mktemp()).absolute(), port, pki)
        evse = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(evse.kill)
        evse.wait_for(r"sepgw EVSE serving")
        client = Process([sys.executable, "-c", WALK, f"https://[::1]:{port}", str(pki),
                          str(free_port()), edition])
        self.addCleanup(client.kill)
        m = client.wait_for(r"^(READY|FAILED) (.*)$", timeout=60)
        self.assertEqual(m.group(1), "READY", client.output + evse.output)
        ready = json.loads(m.group(2))
        self.assertEqual(ctl(operator_socket(evse_cfg), "fixed-w", "port1", "50"), {"ok": True})
        m = client.wait_for(r"^(NOTIFIED|FAILED) (.*)$", timeout=60)
        self.assertEqual(m.group(1), "NOTIFIED", client.output + evse.output)
        notified = json.loads(m.group(2))
        m = client.wait_for(r"^(DONE|FAILED) (.*)$", timeout=30)
        self.assertEqual(m.group(1), "DONE", client.output + evse.output)
        done = json.loads(m.group(2))
        self.assertEqual(client.finish(), 0, client.output)
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        self.assertNotIn("Traceback", evse.output)
        return evse, ready, notified, done

    def check(self, edition: str) -> None:
        evse, ready, notified, done = self.walk(edition)
        # TLS 1.2 with the profile's suite, py20305 offering it among others.
        self.assertIn("TLSv1.2 ECDHE-ECDSA-AES128-CCM8", evse.output)
        # Discovery by links: the EVSE created the EndDevice for py20305's certificate.
        self.assertEqual(len(ready["end_devices"]), 1, ready)
        self.assertEqual(len(ready["programs"]), 1, ready)
        self.assertRegex(evse.output, r"EndDevice \S+ created for PEV LFDI")
        # Each Table 4 resource subscribed (py20305 also tries the EndDeviceList, which the
        # profile does not make subscribable and the EVSE refuses with 400).
        self.assertEqual(sorted(ready["subscriptions"].values()),
                         ["DERControlList", "DERProgramList", "DefaultDERControl", "FSAList"])
        # Every management-information control got its Responses, each answered 201.
        controls = ready["controls"]
        self.assertGreaterEqual(len(controls), 9, controls)
        reply_to = {r for r, _ in controls.values()}
        responses = [w for w in ready["wire"] if w[0] == "POST" and w[1] in reply_to]
        self.assertGreaterEqual(len(responses), 2 * len(controls), ready["wire"])
        refused = [line for line in evse.output.splitlines() if ": 400 " in line]
        self.assertEqual({w[2] for w in responses}, {201}, "\n".join(refused))
        subscriptions = [w for w in ready["wire"] if w[0] == "POST" and w[1] not in reply_to]
        self.assertIn(201, {w[2] for w in subscriptions}, ready["wire"])
        # The operator's opModFixedW reached py20305 by Notification, and was applied.
        self.assertTrue(notified["notes"], notified)
        self.assertTrue({n["subscribedResource"] for n in notified["notes"]}
                        <= set(ready["subscriptions"]), notified["notes"])
        self.assertEqual(notified["fixed_w"][-1], 5000, notified)  # hundredths of a percent
        new = [w for w in notified["wire"] if w[0] == "POST" and w[1] in reply_to]
        self.assertTrue(new, notified["wire"])
        self.assertEqual({w[2] for w in new}, {201}, new)
        # Shutting down, py20305 cancels its subscriptions.
        deletes = [w for w in done["wire"] if w[0] == "DELETE"]
        self.assertEqual(len(deletes), len(ready["subscriptions"]), done)
        self.assertTrue(all(200 <= w[2] < 300 for w in deletes), deletes)

    def test_2018_mode(self) -> None:
        """py20305 in its IEEE 2030.5-2018 mode walks the EVSE by links over mutual TLS with
        ECDHE-ECDSA-AES128-CCM8, gets its EndDevice, subscribes to the Table 4 resources,
        posts a DERControlResponse for each DERControl (201), and receives the operator's
        opModFixedW by Notification. V2G-4.1-1 V2G-4.1.1-1 V2G-4.1.1-22 V2G-4.1.1-24
        V2G-4.1.3-2 V2G-4.5.3-2 V2G-4.5.3.3-1"""
        self.check("2018")

    def test_2023_mode(self) -> None:
        """The same in py20305's default (IEEE 2030.5-2023) mode, whose documents carry
        schemaVer and 2023-only elements: a charger in the field meets both editions.
        V2G-4.1-1 V2G-4.1.1-22 V2G-4.1.1-24"""
        self.check("2023")
