"""The EVSE side of the uplink (sepgw.uplink.site): DME site controls applied to the ports
through the policy and the controls the PEVs are served, on task.Clock."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from sepgw.interfaces import Decision
from sepgw.uplink.site import DME_LIMIT_KEY, SiteControls

SITE = {"max_w": 8000.0}


class Resources:
    """The controls served to each session's PEV, each a DERControl-like record with an
    mRID (a new one only when the value changes, as the EVSE's management does)."""

    def __init__(self) -> None:
        self.served: dict[tuple[int, str], tuple[str, Any]] = {}
        self.issued: dict[tuple[int, str], Any] = {}
        self._n = 0

    def set_control(self, session: Any, key: str, opmod: str, value: Any, description: str
                    ) -> None:
        if self.served.get((id(session), key)) == (opmod, value):
            return
        self.served[(id(session), key)] = (opmod, value)
        self._n += 1
        base = SimpleNamespace(opModFixedW=None, opModMaxLimW=None)
        setattr(base, opmod, value)
        self.issued[(id(session), key)] = SimpleNamespace(
            mRID=self._n.to_bytes(16, "big"), DERControlBase=base, description=description)

    def clear_control(self, session: Any, key: str) -> None:
        self.served.pop((id(session), key), None)
        self.issued.pop((id(session), key), None)

    def management(self, session: Any) -> Any:
        mine = [c for (sid, _), c in self.issued.items() if sid == id(session)]
        return SimpleNamespace(extras=lambda: mine)


class Port:
    """The part of a PortController the site controls use: its grant, its PEV's limit,
    the operator's opModFixedW path and the controls served to its PEV."""

    def __init__(self, name: str, pev_max_w: float, resources: Resources) -> None:
        self.name = name
        self.granted = False
        self.session: Any = None
        self._pev_max_w = pev_max_w
        self.resources = resources
        self.authorization_observers: list[Any] = []
        self.fixed: float | None = None
        self.evaluations: list[str] = []

    def pev_max_w(self) -> float:
        return self._pev_max_w

    def set_fixed_w(self, percent: float) -> None:
        self.fixed = percent
        self.resources.set_control(self.session, "fixed-w", "opModFixedW",
                                   round(percent * 100), "Coordinated W")

    def clear_fixed_w(self) -> None:
        self.fixed = None

    def _evaluate(self, why: str) -> None:
        self.evaluations.append(why)

    def authorize(self) -> None:
        self.granted, self.session = True, SimpleNamespace(observers=[])
        for observer in self.authorization_observers:
            observer(True)

    def limit(self) -> Any:
        return self.resources.served.get((id(self.session), DME_LIMIT_KEY))


class Granting:
    def evaluate(self, facts: Any) -> Decision:
        return Decision(True)


class SiteControlTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.resources = Resources()
        self.a = Port("a", 6000.0, self.resources)
        self.b = Port("b", 2000.0, self.resources)
        self.site = SiteControls([self.a, self.b], SITE, self.clock)

    def test_energize_false_denies_through_the_policy(self) -> None:
        """opModEnergize false makes the policy deny with a reason naming the DME, and
        every port is evaluated again; once withdrawn, the configured policy decides again.
        The DME never grants: with energize true the configured policy's denial stands."""
        policy = self.site.gate(Granting())
        self.assertTrue(policy.evaluate(None).granted)
        self.site.apply({"opModEnergize": False})
        decision = policy.evaluate(None)
        self.assertEqual((decision.granted, decision.reasons),
                         (False, ("DME: opModEnergize false",)))
        self.assertEqual(len(self.a.evaluations), 1)
        self.site.apply({"opModEnergize": None, "opModConnect": False})
        self.assertFalse(policy.evaluate(None).granted)
        self.site.apply({"opModEnergize": True})
        self.assertTrue(policy.evaluate(None).granted)

        class Denying:
            def evaluate(self, facts: Any) -> Decision:
                return Decision(False, ("not on the approved list",))
        self.assertFalse(self.site.gate(Denying()).evaluate(None).granted)

    def test_stored_until_a_pev_is_authorized(self) -> None:
        """A DME opModMaxLimW with no PEV authorized is kept, and relayed to the first PEV
        authorized while it is in effect: 50 % of the 8000 W site is 4000 W, which is
        6666 hundredths of a percent of that PEV's 6000 W (rounded down)."""
        self.site.apply({"opModMaxLimW": 5000})
        self.assertEqual(self.resources.served, {})
        self.a.authorize()
        self.clock.advance(0)
        self.assertEqual(self.a.limit(), ("opModMaxLimW", 6666))

    def test_limit_and_setpoint_shared(self) -> None:
        """With two PEVs authorized a 5000 W site limit (62.5 %) is water-filled: the 2000 W
        PEV gets all it can do (100 %) and the 6000 W one the other 3000 W (50 %). A site
        opModFixedW of -50 % (4000 W charge) is shared the same way as charging setpoints:
        2000 W (100 %) and 2000 W (33.33 %). Withdrawn controls are withdrawn from both."""
        self.a.authorize()
        self.b.authorize()
        self.site.apply({"opModMaxLimW": 6250, "opModFixedW": -5000})
        self.assertEqual(self.a.limit(), ("opModMaxLimW", 5000))
        self.assertEqual(self.b.limit(), ("opModMaxLimW", 10000))
        self.assertEqual((self.a.fixed, self.b.fixed), (-33.33, -100.0))
        self.site.apply({})
        self.assertEqual((self.a.limit(), self.b.limit()), (None, None))
        self.assertEqual((self.a.fixed, self.b.fixed), (None, None))


class PEVResponseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.resources = Resources()
        self.a = Port("a", 6000.0, self.resources)
        self.site = SiteControls([self.a], SITE, self.clock)
        self.got: list[tuple[bytes, str, int]] = []
        self.site.responses = lambda *r: self.got.append(r)

    def answer(self, port: Port, key: str, status: int) -> None:
        """The PEV on ``port`` posts a Response to the control served under ``key``."""
        control = self.resources.issued[(id(port.session), key)]
        for observer in port.session.observers:
            observer.response_received(port.session, SimpleNamespace(
                subject=control.mRID, status=status))

    def test_relayed_responses_reported_for_the_dme_control(self) -> None:
        """A PEV's Responses (Received, Started) to the opModMaxLimW relayed for DME control
        A are reported as answers to A, with the port; when DME control B of the same value
        takes over (the PEV's control is unchanged), B is reported as already Started by
        that PEV; a Response to another control (the site sharing's) is not reported."""
        dme_a, dme_b = b"\xaa" * 16, b"\xbb" * 16
        self.a.authorize()
        self.site.apply({"opModMaxLimW": 5000, "sources": {"opModMaxLimW": dme_a.hex()}})
        self.answer(self.a, DME_LIMIT_KEY, 1)
        self.answer(self.a, DME_LIMIT_KEY, 2)
        self.assertEqual(self.got, [(dme_a, "a", 1), (dme_a, "a", 2)])
        self.site.apply({"opModMaxLimW": 5000, "sources": {"opModMaxLimW": dme_b.hex()}})
        self.assertEqual(self.got[2:], [(dme_b, "a", 1), (dme_b, "a", 2)])
        self.resources.set_control(self.a.session, "share", "opModMaxLimW", 9000,
                                   "Site sharing")
        self.answer(self.a, "share", 2)
        self.assertEqual(len(self.got), 4)

    def test_fixed_w_responses(self) -> None:
        """The opModFixedW relayed for a DME setpoint is followed the same way."""
        dme = b"\xcc" * 16
        self.a.authorize()
        self.site.apply({"opModFixedW": 2500, "sources": {"opModFixedW": dme.hex()}})
        self.answer(self.a, "fixed-w", 2)
        self.assertEqual(self.got, [(dme, "a", 2)])
