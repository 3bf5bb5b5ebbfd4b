"""The web console (sepgw.console) in memory: its event bus, the JSON it serves from an EVSE
port on a fake clock (tests.test_evse_session.Site), its credentials and CSRF defence, its
Server-Sent Events stream, and its configuration rules."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from sepgw.config import ConfigError, load
from sepgw.console.bus import EventBus
from sepgw.console.model import EVSEModel, PEVModel
from sepgw.console.web import Console, Guard, console_root
from sepgw.interfaces import IMeterListener, LinkPeer
from sepgw.pev.report import RunReport
from tests.helpers import ETC
from tests.processes import REPO
from tests.test_evse_session import Site

TOKEN = "a-console-token-of-some-length"


class BusTests(SynchronousTestCase):
    def test_timeline_is_a_bounded_ring(self) -> None:
        """A scope keeps its newest ``timeline_size`` events; reading after a cursor gives
        only what is newer, in order."""
        bus = EventBus(timeline_size=3)
        for i in range(5):
            bus.event("port1", float(i), "log", f"e{i}")
        self.assertEqual([e.text for e in bus.timeline("port1")], ["e2", "e3", "e4"])
        self.assertEqual([e.seq for e in bus.events_after(3)], [4, 5])
        self.assertEqual(bus.events_after(5), [])
        self.assertEqual(bus.events_after(0)[0].as_json(), {
            "seq": 3, "t": 2.0, "scope": "port1", "kind": "log", "text": "e2",
            "requirements": [], "session": None, "level": "info"})

    def test_meter_samples_keep_the_window(self) -> None:
        """Samples older than the window leave as new ones arrive; the size bounds them
        too; ``samples_after`` is per scope and only what is new."""
        bus = EventBus(meter_window_s=10.0, meter_size=1000)
        for t in range(21):
            bus.sample("port1", float(t), 100.0 * t, 0.0, 240.0, 60.0)
        held = bus.samples("port1")
        self.assertEqual([s[1] for s in held], [float(t) for t in range(10, 21)])
        self.assertEqual(held[-1], (21, 20.0, 2000.0, 0.0, 240.0, 60.0))
        bus.sample("port2", 20.5, 1.0, 2.0, 3.0, 4.0)
        self.assertEqual(bus.samples_after(21), {"port2": [(22, 20.5, 1.0, 2.0, 3.0, 4.0)]})
        small = EventBus(meter_window_s=1000.0, meter_size=4)
        for t in range(10):
            small.sample("p", float(t), 0.0, 0.0, 0.0, 0.0)
        self.assertEqual(len(small.samples("p")), 4)

    def test_subscribers_told_only_while_subscribed(self) -> None:
        """Each append tells every subscriber; after unsubscribing nobody is called."""
        bus = EventBus()
        calls: list[str] = []
        stop = bus.subscribe(lambda: calls.append("x"))
        bus.event("p", 0.0, "log", "a")
        bus.sample("p", 0.0, 1.0, 0.0, 0.0, 0.0)
        self.assertEqual(calls, ["x", "x"])
        stop()
        bus.event("p", 1.0, "log", "b")
        self.assertEqual((calls, bus.subscribers), (["x", "x"], 0))

    def test_rejects_a_bus_without_room(self) -> None:
        """A bus that could hold nothing is a programming error, said at once."""
        self.assertRaises(ValueError, EventBus, timeline_size=0)


@implementer(IMeterListener)
class Counter:
    """Another listener of the meter: what it delivered, seen independently."""

    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def meter_sample(self, sample: Any) -> None:
        self.into.append(sample)

    def meter_error(self, reason: str) -> None:
        pass


class FakeTransport:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)


class _EVSECase(SynchronousTestCase):
    """An in-memory EVSE port (fake clock) with a console model on it."""

    def setUp(self) -> None:
        self.site = Site()
        self.port = self.site.ports[0]
        self.transport = FakeTransport()
        self.bus = EventBus(meter_window_s=60.0)
        self.model = EVSEModel(self.site.clock, self.bus,
                               [(self.port, self.site.meters[0], self.transport)], "evse-1")
        globalLogPublisher.addObserver(self.model.observe)
        self.addCleanup(globalLogPublisher.removeObserver, self.model.observe)

    def connect(self) -> Any:
        for listener in self.transport.listeners:
            listener.link_up(LinkPeer(address="::1"))
        return self.site.connect()


class EVSEModelTests(_EVSECase):
    def test_snapshot_of_an_authorized_port(self) -> None:
        """The port's JSON: where it is in the state machine, the PEV's identity (LFDI,
        SFDI, the make/model hwType of the test PKI's PEV certificate, V2G-4.4-2), the
        authorization with no reason left, the contactor, the management information in
        force (Table 5: one DERControl per function) and the meter."""
        session = self.connect()
        self.site.run(1)
        port = self.model.snapshot()["ports"][0]
        self.assertEqual(port["states"], ["idle", "linked", "exchanging", "not authorized",
                                          "authorized", "sleeping", "contactor fault"])
        expected = {"port": "port1", "state": "authorized", "authorized": True, "reasons": [],
                    "contactor": "closed", "contactor_fault": None}
        self.assertEqual({k: port[k] for k in expected}, expected)
        ident = self.site.ids["pev"]
        self.assertEqual(port["pev"]["lfdi"], ident.lfdi)
        self.assertEqual(port["pev"]["sfdi"], ident.sfdi)
        self.assertEqual(port["pev"]["make_model"], "1.3.6.1.4.1.32473.2.1")
        self.assertTrue(port["pev"]["energize"])
        functions = {name for c in port["controls"] for name in c["elements"]}
        self.assertEqual(functions, {
            "opModFixedPFInjectW", "opModVoltWatt", "opModFreqDroop", "opModHFRTMustTrip",
            "opModLFRTMustTrip", "opModHVRTMustTrip", "opModLVRTMustTrip",
            "opModHVRTMomentaryCessation", "opModLVRTMomentaryCessation"})
        self.assertTrue(all(len(c["elements"]) == 1 for c in port["controls"]))  # V2G-4.6.3-7
        self.assertEqual(port["meter"]["v"], 240.0)
        json.dumps(self.model.snapshot())  # all of it is JSON
        self.assertIs(self.port.session, session)

    def test_timeline_of_a_session(self) -> None:
        """The timeline tells link up, the mutual-TLS identity, each step-2 resource the
        PEV wrote, the grant and the state transitions, each with its requirement IDs, in
        order and tagged with the session's LFDI; revocation and loss of communications
        follow when heartbeats stop (V2G-4.8.1.1-3, V2G-4.6.4-3)."""
        self.connect()
        self.site.run(2)
        self.site.run(11, beat=False)
        events = self.bus.timeline("port1")
        said = [(e.kind, e.requirements) for e in events]
        expected = [
            ("link", ()),
            ("tls", ("V2G-4.1.3-2", "V2G-4.4-2")),
            ("exchange", ("V2G-4.5.3.1-1",)),       # DeviceInformation
            ("exchange", ("V2G-4.5.3.2-1",)),       # PowerStatus
            ("exchange", ("V2G-4.5.3.4-2",)),       # DERCapability
            ("exchange", ("V2G-4.5.3.4-3",)),       # DERSettings
            ("exchange", ("V2G-4.5.3.4-4",)),       # DERAvailability
            ("authorization", ("V2G-4.6.4-2",)),
            ("authorization", ("V2G-4.6.4-3",)),
        ]
        it = iter(said)
        for step in expected:  # a subsequence, in this order
            self.assertIn(step, it, f"{step} missing after the previous step in {said}")
        self.assertIn(("heartbeat", ("V2G-4.8.1.1-3",)), said)
        revoked = next(e for e in events if e.requirements == ("V2G-4.6.4-3",))
        self.assertIn("loss of communications", revoked.text)
        lfdi = self.site.ids["pev"].lfdi
        tls = next(i for i, e in enumerate(events) if e.kind == "tls")
        self.assertEqual({e.session for e in events[tls:]}, {lfdi})

    def test_update_carries_only_what_is_new(self) -> None:
        """After a snapshot, an update holds the status and only the events and meter
        samples that came since (the simulated meter samples every 0.1 s)."""
        self.connect()
        delivered: list[Any] = []
        self.site.meters[0].add_listener(Counter(delivered))
        snapshot = self.model.snapshot()
        cursor = tuple(snapshot["cursor"])
        self.site.clock.advance(3.0)
        body, new = self.model.update(cursor)  # type: ignore[arg-type]
        self.assertGreater(len(delivered), 0)
        self.assertEqual([s[1] for s in body["samples"]["port1"]],
                         [d.active_power_w for d in delivered])
        self.assertEqual(len(body["samples"]["port1"][0]), 5)  # t, W, var, V, Hz
        self.assertEqual(body["events"], [])
        self.assertEqual(body["ports"][0]["port"], "port1")
        again, _ = self.model.update(new)
        self.assertEqual((again["events"], again["samples"]), ([], {}))


class Harness:
    """The console's resources around an EVSE model, called with DummyRequests."""

    def __init__(self, case: _EVSECase, token: str | None) -> None:
        self.case = case
        self.console = Console(case.model, Guard(token, csrf="csrf-value"), case.site.clock,
                               interval=0.5)
        self.root = console_root(self.console)

    def request(self, method: str, path: str, peer: str = "192.0.2.7",
                headers: dict[str, str] | None = None, body: bytes = b"") -> DummyRequest:
        parts = [p.encode() for p in path.strip("/").split("/")]
        request = DummyRequest(parts)
        request.method = method.encode()
        request.path = path.encode()
        request.client = (IPv6Address if ":" in peer else IPv4Address)("TCP", peer, 50000)
        request.content = io.BytesIO(body)
        for k, v in {"host": "127.0.0.1:8470", **(headers or {})}.items():
            request.requestHeaders.setRawHeaders(k, [v])
        resource: Any = self.root
        for part in parts:
            resource = resource.getChildWithDefault(part, request)
        result = resource.render(request)
        if result is not NOT_DONE_YET:
            request.write(result)
            request.finish()
        return request


def _body(request: DummyRequest) -> Any:
    return json.loads(b"".join(request.written))


class WebTests(_EVSECase):
    """Credentials, CSRF and actions (the EVSE model of EVSEModelTests behind them)."""

    def test_remote_request_without_credential_refused(self) -> None:
        """With a token configured, an /api/ request without it or with a wrong one is
        refused 401 naming what is needed; the right bearer token is let in. The page
        itself (no data) is served to anyone."""
        web = Harness(self, TOKEN)
        refused = web.request("GET", "/api/state")
        self.assertEqual(refused.responseCode, 401)
        self.assertIn("credential", _body(refused)["error"])
        wrong = web.request("GET", "/api/state", headers={"authorization": "Bearer nope"})
        self.assertEqual(wrong.responseCode, 401)
        for path in ("/api/events", "/api/action"):
            self.assertEqual(web.request("GET" if path.endswith("events") else "POST",
                                         path).responseCode, 401)
        ok = web.request("GET", "/api/state", headers={"authorization": f"Bearer {TOKEN}"})
        self.assertEqual(ok.responseCode, 200)
        self.assertEqual(_body(ok)["you"], web.console.guard.token_id)
        page = web.request("GET", "/")
        self.assertIn(b"sepgw console", b"".join(page.written))

    def test_loopback_console_without_token(self) -> None:
        """Without a token only a loopback peer naming a loopback host is let in: another
        host is refused 401, and so is a loopback peer asking for a foreign Host (a DNS
        rebinding page)."""
        web = Harness(self, None)
        self.assertEqual(web.request("GET", "/api/state", peer="127.0.0.1").responseCode, 200)
        self.assertEqual(web.request("GET", "/api/state", peer="::1",
                                     headers={"host": "[::1]:8470"}).responseCode, 200)
        self.assertEqual(web.request("GET", "/api/state", peer="192.0.2.7").responseCode, 401)
        self.assertEqual(web.request("GET", "/api/state", peer="127.0.0.1",
                                     headers={"host": "evil.example:8470"}).responseCode, 401)

    def post(self, web: Harness, action: dict[str, Any], **headers: str) -> DummyRequest:
        base = {"authorization": f"Bearer {TOKEN}", "x-sepgw-csrf": "csrf-value",
                "content-type": "application/json"}
        base.update({k.replace("_", "-"): v for k, v in headers.items()})
        return web.request("POST", "/api/action", headers={k: v for k, v in base.items() if v},
                           body=json.dumps(action).encode())

    def fixed_w_controls(self) -> list[Any]:
        session = self.port.session
        return [c for c in self.port.resources.management(session).extras()
                if c.DERControlBase.opModFixedW is not None]

    def test_action_needs_csrf_header_json_and_same_origin(self) -> None:
        """An action with the credential but without the CSRF header, with a form body, or
        from another origin is refused 403 and changes nothing."""
        self.connect()
        web = Harness(self, TOKEN)
        action = {"action": "fixed-w", "port": "port1", "percent": 50}
        for headers in ({"x_sepgw_csrf": ""}, {"x_sepgw_csrf": "guess"},
                        {"content_type": "application/x-www-form-urlencoded"},
                        {"origin": "http://evil.example"}, {"origin": "null"}):
            request = self.post(web, action, **headers)
            self.assertEqual(request.responseCode, 403, headers)
        self.assertEqual(self.fixed_w_controls(), [])

    def test_fixed_w_action_runs_the_operator_command_and_is_logged(self) -> None:
        """A confirmed fixed-w of 50 % becomes a DERControl opModFixedW of 5000 (hundredths
        of a percent, V2G-4.8.2-1), exactly as `sepgw ctl fixed-w port1 50`; the log and
        the timeline say who asked (credential id and peer address)."""
        self.connect()
        web = Harness(self, TOKEN)
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        request = self.post(web, {"action": "fixed-w", "port": "port1", "percent": 50})
        self.assertEqual((request.responseCode, _body(request)), (200, {"ok": True}))
        self.assertEqual([int(c.DERControlBase.opModFixedW) for c in self.fixed_w_controls()],
                         [5000])
        who = f"{web.console.guard.token_id} from 192.0.2.7"
        self.assertTrue(any(who in str(e.get("who")) for e in logged))
        last = self.bus.timeline("port1")[-1]
        self.assertEqual((last.kind, last.requirements), ("operator", ("V2G-4.8.2-1",)))
        self.assertIn(who, last.text)
        cleared = self.post(web, {"action": "clear-fixed-w", "port": "port1"})
        self.assertEqual(cleared.responseCode, 200)
        self.assertEqual(self.fixed_w_controls(), [])

    def test_bad_actions_refused_with_reasons(self) -> None:
        """Bad actions get a 4xx naming the problem and change nothing: an unknown action,
        an unknown port, a percent that is no number or out of -100..100, clear-fault with
        no fault, a body that is not a JSON object."""
        self.connect()
        web = Harness(self, TOKEN)
        cases = [({"action": "reboot", "port": "port1"}, 400, "unknown action"),
                 ({"action": "fixed-w", "port": "port9", "percent": 5}, 404, "no port"),
                 ({"action": "fixed-w", "port": "port1", "percent": "50"}, 400, "number"),
                 ({"action": "fixed-w", "port": "port1", "percent": 150}, 400, "-100"),
                 ({"action": "fixed-w", "percent": 5}, 400, "port")]
        for action, status, words in cases:
            request = self.post(web, action)
            self.assertEqual(request.responseCode, status, action)
            self.assertIn(words, _body(request)["error"])
        fault = self.post(web, {"action": "clear-fault", "port": "port1"})
        self.assertEqual(fault.responseCode, 409)
        not_object = web.request("POST", "/api/action", body=b"[1]", headers={
            "authorization": f"Bearer {TOKEN}", "x-sepgw-csrf": "csrf-value",
            "content-type": "application/json"})
        self.assertEqual(not_object.responseCode, 400)
        self.assertEqual(self.fixed_w_controls(), [])
        self.assertEqual(self.port.state.value, "authorized")

    def test_event_stream_pushes_rate_limited_and_only_while_open(self) -> None:
        """The SSE stream starts with a ``state`` snapshot, then sends at most one
        ``update`` per push interval however many samples arrive (10 a second here);
        once the client is gone nothing is subscribed to the bus any more."""
        self.connect()
        web = Harness(self, TOKEN)
        request = web.request("GET", "/api/events",
                              headers={"authorization": f"Bearer {TOKEN}"})
        self.assertEqual(request.responseHeaders.getRawHeaders("content-type"),
                         ["text/event-stream"])
        first = b"".join(request.written).decode()
        self.assertTrue(first.startswith("event: state\ndata: {"), first[:40])
        self.assertEqual(self.bus.subscribers, 1)
        for _ in range(20):
            self.site.clock.advance(0.1)
        text = b"".join(request.written).decode()
        updates = [json.loads(block.split("data: ", 1)[1]) for block in text.split("\n\n")
                   if block.startswith("event: update")]
        self.assertIn(len(updates), (3, 4, 5))  # 2 s at one push per 0.5 s
        self.assertGreaterEqual(sum(len(u["samples"].get("port1", [])) for u in updates), 15)
        request.finish()
        self.assertEqual((self.bus.subscribers, web.console.streams), (0, []))
        before = len(request.written)
        self.site.clock.advance(2.0)
        self.assertEqual(len(request.written), before)


class PEVModelTests(SynchronousTestCase):
    def test_run_report_steps_join_the_timeline_with_their_ids(self) -> None:
        """The PEV view: each run-report step becomes a timeline event with its requirement
        IDs; without a 2030.5 session the status says so and actions are refused 409 with
        the operator socket's own answer."""
        clock = Clock()
        report = RunReport(clock.seconds)
        bus = EventBus()
        model = PEVModel(clock, bus, lambda: None, report)
        report.record("authorized to discharge (opModEnergize true)", True, "", "V2G-4.6.4-2")
        model.observe({"log_source": object(), "log_format": "anything"})
        [event] = bus.timeline("pev")
        self.assertEqual((event.kind, event.requirements, event.text),
                         ("step", ("V2G-4.6.4-2",),
                          "authorized to discharge (opModEnergize true): passed"))
        self.assertEqual(model.status()["pev"], {"connected": False})
        failures: list[Any] = []
        model.act({"action": "sleep"}, "loopback from 127.0.0.1").addErrback(failures.append)
        self.assertEqual(failures[0].value.status, 409)
        self.assertIn("no 2030.5 session", str(failures[0].value))

    def test_inverter_sampled_only_while_watched(self) -> None:
        """No sampling timer runs unless a view is open."""
        clock = Clock()
        model = PEVModel(clock, EventBus(), lambda: None, RunReport(clock.seconds))
        self.assertEqual(clock.getDelayedCalls(), [])
        model.watched(True)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        model.watched(False)
        self.assertEqual(clock.getDelayedCalls(), [])


class ConfigTests(SynchronousTestCase):
    def config(self, extra: str, role: str = "evse") -> Any:
        path = self.mktemp()
        base = (ETC / ("sepgw.toml" if role == "evse" else "pev.toml")).read_text()
        with open(path, "w") as f:
            f.write(base.replace('"approved-pevs.txt"', f'"{ETC / "approved-pevs.txt"}"')
                    .replace('"../run/', f'"{REPO}/run/') + extra)
        from pathlib import Path
        return load(Path(path), role)  # type: ignore[arg-type]

    def test_off_by_default_on_loopback_when_enabled(self) -> None:
        """The console is off by default; enabled, it listens on 127.0.0.1."""
        for role in ("evse", "pev"):
            console = self.config("", role)["console"]
            self.assertEqual((console["enabled"], console["address"]), (False, "127.0.0.1"))

    def test_non_loopback_needs_a_credential(self) -> None:
        """A non-loopback address without token, token_file or client_ca stops start-up
        with an error naming the key; with a token it is accepted."""
        with self.assertRaises(ConfigError) as e:
            self.config('\n[console]\nenabled = true\naddress = "0.0.0.0"\n')
        self.assertIn("console.address", str(e.exception))
        self.assertIn("credential", str(e.exception))
        ok = self.config(f'\n[console]\nenabled = true\naddress = "0.0.0.0"\ntoken = "{TOKEN}"\n')
        self.assertEqual(ok["console"]["token"], TOKEN)
        with self.assertRaises(ConfigError):
            self.config('\n[console]\nenabled = true\ntoken = "short"\n')

    def test_never_on_the_vehicle_facing_port(self) -> None:
        """The console may not share the 2030.5 server's port."""
        with self.assertRaises(ConfigError) as e:
            self.config('\n[console]\nenabled = true\nport = 8443\n')
        self.assertIn("vehicle-facing", str(e.exception))

    def test_default_config_never_imports_the_console(self) -> None:
        """Building the EVSE from the default configuration loads nothing of sepgw.console
        (the idle RSS budget)."""
        out = subprocess.run(
            [sys.executable, "-c",
             "import sys; import sepgw.service.evse, sepgw.service.pev; "
             "print(any(m.startswith('sepgw.console') for m in sys.modules))"],
            cwd=REPO, capture_output=True, text=True, check=True)
        self.assertEqual(out.stdout.strip(), "False")
