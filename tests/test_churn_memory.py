"""Session churn in memory: PEVs arrive, exchange information, post their Responses,
subscribe, get authorized and shared the site limit, and leave (link down), over and over on
one fake clock. What a session created must go with it: the live per-session objects after
many cycles are as many as after a few (issue 12's 10-minute churn benchmark saw RSS rise).
"""

from __future__ import annotations

import collections
import dataclasses
import gc
from typing import Any

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone

from sepgw.config import load
from sepgw.evse.controller import PortController, SiteCoordinator
from sepgw.evse.notify import Notifier
from sepgw.evse.tree import EVSEResources
from sepgw.interfaces import LinkPeer
from sepgw.model import DERControlList, Response, parse
from sepgw.model.paging import ListQuery
from tests import scripted_pev as script
from tests.helpers import ETC
from tests.test_evse_server import T0, identities
from tests.test_evse_session import SAFETY, build

PORTS = 3
#: Per-session object types counted (by class name; some are private to their module).
TRACKED = ("PEVSession", "_SessionResources", "ManagementInformation", "Subscriptions",
           "_Delivery", "_Share", "MirrorPoint")


class _Answered:
    """A notification receiver's answer: 204, empty body."""

    code = 204

    def deliverBody(self, protocol: Any) -> None:
        protocol.connectionLost(Failure(ResponseDone()))


class ChurnWorld:
    """``PORTS`` ports (j3072 policy, site coordinator, notifier) and PEVs with LFDIs of
    their own coming and going; a departed PEV's notification endpoint refuses connections
    (its cancellation notices are retried, then given up)."""

    def __init__(self) -> None:
        config = load(ETC / "sepgw.toml", "evse")
        self.clock = Clock()
        self.clock.advance(T0)
        self.gone: set[str] = set()
        world = self

        class Agent:
            def __init__(self, lfdi: str) -> None:
                self.lfdi = lfdi.upper()

            def request(self, *args: Any, **kwargs: Any) -> Any:
                if self.lfdi in world.gone:
                    return fail(ConnectionRefusedError("PEV gone"))
                return succeed(_Answered())

        self.notifier = Notifier(Agent, self.clock, server_url="https://[::1]:443")
        self.resources = EVSEResources(
            server=config["server"], site=config["site"], management=config["management"],
            ports=[f"port{i + 1}" for i in range(PORTS)], clock=self.clock,
            notifier=self.notifier)
        coordinator = SiteCoordinator(config["site"]["max_w"])
        self.ports = []
        for i in range(PORTS):
            policy = build("policy", "j3072", self.clock,
                           approved_list=str(ETC / "approved-pevs.txt"))
            port = PortController(
                index=i, name=f"port{i + 1}", clock=self.clock, resources=self.resources,
                contactor=build("contactor", "simulated", self.clock), policy=policy,
                site=config["site"], safety=SAFETY, meter_timeout=0.5,
                coordinator=coordinator)
            meter = build("meter", "simulated", self.clock, interval=0.1)
            meter.add_listener(port)
            meter.start()
            port.start()
            port.link_up(LinkPeer(address="::1"))
            self.ports.append(port)
        self.base = identities()["pev"]
        self.active: dict[int, Any] = {}
        self.answered: dict[str, set[tuple[str, int]]] = {}
        self.arrivals = 0
        self.departures = 0

    def arrive(self, port: int) -> None:
        self.arrivals += 1
        ident = dataclasses.replace(self.base, lfdi=f"{self.arrivals:040X}",
                                    sfdi=self.arrivals)
        tree = self.resources
        tree.attach(ident, port)
        e = f"/edev/{port}"
        now = int(self.clock.seconds())
        for href, body in ((f"{e}/di", script.device_information(ident.lfdi)),
                           (f"{e}/ps", script.power_status(now)),
                           (f"{e}/der/1/dercap", script.DER_CAPABILITY),
                           (f"{e}/der/1/ders", script.der_settings(now, 6500)),
                           (f"{e}/der/1/dera", script.der_availability(now)),
                           (f"{e}/der/1/dstat", script.der_status(now, 3))):
            tree.put(href, parse(body), ident)
        tree.post("/mup", parse(script.mirror_usage_point(ident.lfdi)), ident)
        for suffix, description, uom, power, flow, _ in script.METERS:
            tree.post(f"/mup/{port}", parse(script.mirror_meter_reading(
                suffix, description, uom, power, flow)), ident)
        for target in (f"{e}/derp/1/derc", f"{e}/derp/1/dderc"):
            tree.post(f"{e}/sub", parse(script.subscription(
                target, f"https://pev{self.arrivals}.test/ntfy", 10)), ident)
        self.active[port] = ident
        self.answered[ident.lfdi] = set()
        self.respond(port)

    def respond(self, port: int) -> None:
        """Received and Started for every control, Superseded/Cancelled when shown."""
        ident = self.active[port]
        done = self.answered[ident.lfdi]
        now = int(self.clock.seconds())
        derc = self.resources.get(f"/edev/{port}/derp/1/derc", ListQuery(0, None, 100), ident)
        assert isinstance(derc, DERControlList)
        for control in derc.DERControl:
            subject = bytes(control.mRID).hex().upper()
            terminal = {4: 7, 2: 6}.get(int(control.EventStatus.currentStatus))
            for status in (1, 2) + ((terminal,) if terminal else ()):
                if (subject, status) not in done:
                    done.add((subject, status))
                    self.resources.post(control.replyTo or "", parse(script.response(
                        ident.lfdi, subject, status, now)), ident)

    def run(self, seconds: float) -> None:
        """Advance the clock; each PEV beats, reads its controls and answers every second."""
        for _ in range(round(seconds * 10)):
            self.clock.advance(0.1)
            if round(self.clock.seconds() * 10) % 10 == 0:
                now = int(self.clock.seconds())
                for port, ident in list(self.active.items()):
                    self.resources.put(f"/edev/{port}/der/1/dstat",
                                       parse(script.der_status(now, 3)), ident)
                    self.respond(port)

    def leave(self, port: int) -> None:
        ident = self.active.pop(port)
        del self.answered[ident.lfdi]
        self.gone.add(ident.lfdi)
        self.departures += 1
        self.ports[port].link_down("PEV left")
        self.ports[port].link_up(LinkPeer(address="::1"))

    def cycles(self, n: int) -> None:
        for _ in range(n):
            port = self.departures % PORTS
            self.leave(port)
            self.run(0.1)
            self.arrive(port)
            self.run(2.0)


def live() -> collections.Counter[str]:
    """Live objects of the tracked per-session types, and of Responses (any subclass)."""
    gc.collect()
    found: collections.Counter[str] = collections.Counter()
    for o in gc.get_objects():
        name = type(o).__name__
        if name in TRACKED:
            found[name] += 1
        elif isinstance(o, Response):
            found["Response"] += 1
    return found


class ChurnMemoryTests(SynchronousTestCase):
    def test_per_session_objects_do_not_grow_with_sessions(self) -> None:
        """After 15 and after 60 arrivals and departures (Responses posted, subscriptions,
        authorization and site sharing), the EVSE holds the same per-session objects: one
        session's worth per occupied port, whatever number of PEVs came and went (issue 12,
        churn without memory growth)."""
        w = ChurnWorld()
        for port in range(PORTS):
            w.arrive(port)
        w.run(3.0)
        self.assertTrue(all(p.granted for p in w.ports), [p.reasons for p in w.ports])
        w.cycles(15)
        w.run(60.0)  # cancellation notices to the departed PEVs retried, then given up
        before = live()
        w.cycles(45)
        w.run(60.0)
        after = live()
        self.assertTrue(all(p.granted for p in w.ports), [p.reasons for p in w.ports])
        self.assertEqual(w.departures, 60)
        # Exactly one session (its resources, management, subscription store) per port.
        for name in ("PEVSession", "_SessionResources", "ManagementInformation",
                     "Subscriptions"):
            self.assertEqual(after[name], PORTS, (name, after))
        # Deliveries: at most one per live subscription (2 per PEV); none left for the gone.
        self.assertLessEqual(after["_Delivery"], 2 * PORTS, after)
        # Responses: those of the PEVs connected now. A held Response per departed session
        # would add 45 or more; the sessions now connected may differ by a few answers.
        self.assertLessEqual(after["Response"], before["Response"] + 10, (before, after))
        self.assertGreater(after["Response"], 0)
