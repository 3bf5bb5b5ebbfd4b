"""Site sharing among many authorized PEVs (profile 4.6.1.1): bounded DERControlLists, one
coalesced update per reactor turn, nothing new for an unchanged share, superseded share
controls answered and retired under the 2030.5 §10.2.3 event rules without a gap in the
limit. In memory on a fake clock, with the real port controllers, resources and
coordinator (tests/test_evse_session.py's Site) and made-up PEV identities."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from sepgw.events import EventEngine, Source
from sepgw.evse.policy_facts import missing_responses
from sepgw.interfaces import Decision
from sepgw.model import DERControl, EventStatusCode, ResponseStatus
from sepgw.model.paging import ListQuery
from sepgw.security.identity import PeerIdentity, sfdi_from_lfdi
from tests.test_evse_session import Site

#: etc/sepgw.toml configures 9 Table 5 functions (each its own DERControl, V2G-4.6.3-7).
MANAGEMENT_CONTROLS = 9
#: Written out, not read from the code: per PEV the 9 management controls, the share in
#: effect and at most 2 superseded or cancelled shares still listed.
LONGEST_LIST = MANAGEMENT_CONTROLS + 1 + 2
SITE_W = 7200.0
PEV_W = 6500.0


def fake_identity(i: int) -> PeerIdentity:
    lfdi = f"{0xA0000000 + i:040X}"
    return PeerIdentity(lfdi=lfdi, sfdi=sfdi_from_lfdi(lfdi), hardware_module_name=None,
                        subject="", certificate=None)  # type: ignore[arg-type]


class Sharing:
    """A site of ``ports`` ports, each with its own made-up PEV ``p0``, ``p1``…"""

    def __init__(self, ports: int, site_w: float = SITE_W) -> None:
        self.s = Site(ports=ports, site_max_w=site_w)
        for i in range(ports):
            self.s.ids[f"p{i}"] = fake_identity(i)

    def arrive(self, i: int) -> Any:
        return self.s.connect(i, f"p{i}", max_w=int(PEV_W))

    def leave(self, i: int) -> None:
        self.s.ports[i].link_down("unplugged")
        self.s.clock.advance(0)

    def beat(self, seconds: float) -> None:
        """Let time pass, every connected PEV sending its heartbeat every second."""
        for _ in range(round(seconds)):
            self.s.clock.advance(1.0)
            for port in self.s.ports:
                if port.session is not None:
                    port.heartbeat.heartbeat()

    def session(self, i: int) -> Any:
        return self.s.resources.sessions[i]

    def served_list(self, i: int) -> list[DERControl]:
        """The DERControlList the PEV on port ``i`` GETs (every page), as the bytes the
        server sends (serialized once per change, so a stale cache would show here)."""
        from sepgw.model import DERControlList, parse

        edev = self.session(i).edev
        data = self.s.resources.render(f"{edev}/derp/1/derc", ListQuery(0, None, 255),
                                       self.s.ids[f"p{i}"])
        return list(parse(data, DERControlList).DERControl)

    def shares(self, i: int) -> list[DERControl]:
        return [c for c in self.served_list(i) if c.DERControlBase.opModMaxLimW is not None]

    def in_effect(self, i: int) -> DERControl:
        [control] = [c for c in self.shares(i)
                     if c.EventStatus.currentStatus == EventStatusCode.ACTIVE]
        return control

    def respond(self, i: int, control: DERControl, status: int) -> None:
        from sepgw.model import parse
        from tests import scripted_pev as script

        ident = self.s.ids[f"p{i}"]
        body = script.response(ident.lfdi, control.mRID.hex().upper(), status,
                               int(self.s.clock.seconds()))
        self.s.resources.post(control.replyTo, parse(body), ident)

    def longest(self) -> int:
        return max(len(self.served_list(i)) for i in self.s.resources.sessions)


class BoundedListTests(SynchronousTestCase):
    def test_lists_bounded_under_churn_without_responses(self) -> None:
        """V2G-4.7.1-3: 60 arrivals and departures among 6 ports, the PEVs never answering:
        every DERControlList stays within 9 management controls + the share in effect + 2
        retired shares (before, every grant or revocation added one to every authorized
        PEV's list for the rest of its session), and the shares never exceed the site."""
        t = Sharing(6)
        for i in range(5):
            t.arrive(i)
        for n in range(60):
            i = n % 5
            t.leave(i)
            t.beat(1)
            t.arrive(i)
            t.beat(1)
            self.assertLessEqual(t.longest(), LONGEST_LIST)
            watts = sum(t.in_effect(k).DERControlBase.opModMaxLimW * PEV_W / 10000
                        for k in range(5))
            self.assertLessEqual(watts, SITE_W)
        self.assertEqual(sum(p.granted for p in t.s.ports), 5)

    def test_answered_superseded_share_is_retired(self) -> None:
        """V2G-4.7.1-3 (2030.5 §10.2.3): a superseded share stays listed with currentStatus
        4 until the PEV answers 7 (Superseded); at the next change it is no longer listed,
        and a late Response about it is still accepted (201)."""
        t = Sharing(4, site_w=9000)
        t.arrive(0)
        t.arrive(1)
        first = t.in_effect(0)
        t.arrive(2)
        [old] = [c for c in t.shares(0) if c.mRID == first.mRID]
        self.assertEqual(old.EventStatus.currentStatus, EventStatusCode.SUPERSEDED)
        t.respond(0, old, int(ResponseStatus.EVENT_SUPERSEDED))
        t.arrive(3)  # the next change of PEV 0's share
        self.assertNotIn(first.mRID, [c.mRID for c in t.served_list(0)])
        t.respond(0, old, int(ResponseStatus.EVENT_SUPERSEDED))  # late: no 400

    def test_unanswered_superseded_share_retired_after_grace(self) -> None:
        """V2G-4.7.1-3: without its Response, a superseded share is retired at the first
        change 5 s (five 1 s polls) or more after it was superseded, not before."""
        t = Sharing(4, site_w=9000)
        t.arrive(0)
        t.arrive(1)
        first = t.in_effect(0).mRID
        t.arrive(2)
        t.beat(2)
        t.leave(2)  # a change 2 s later: still listed
        self.assertIn(first, [c.mRID for c in t.served_list(0)])
        t.beat(4)
        t.arrive(3)  # 6 s after: retired
        self.assertNotIn(first, [c.mRID for c in t.served_list(0)])


class CoalescingTests(SynchronousTestCase):
    def test_simultaneous_arrivals_one_update(self) -> None:
        """V2G-4.6.1.1-1: 5 PEVs authorized in the same reactor turn cause one site-sharing
        update in the next turn, and the PEV already authorized gets one new share
        DERControl, not five."""
        t = Sharing(6, site_w=12000)
        t.arrive(0)
        t.s.policy.decision = Decision(False, ("held back",))
        for i in range(1, 6):
            t.arrive(i)
        updates = t.s.coordinator.updates
        t.s.policy.decision = Decision(True)
        for port in t.s.ports[1:]:
            port._evaluate("test: granted")
        self.assertEqual(t.s.coordinator.updates, updates)  # nothing yet in this turn
        t.s.clock.advance(0)
        self.assertEqual(t.s.coordinator.updates, updates + 1)
        for i in range(6):
            [share] = t.shares(i)
            self.assertEqual(share.DERControlBase.opModMaxLimW, 12000 * 10000 // 6 // 6500)

    def test_unchanged_share_issues_nothing(self) -> None:
        """V2G-4.6.1.1-1: when the site holds every PEV's full limit (3 × 6500 W within
        20 kW), a third arrival changes nothing for the first two: the same share
        DERControl (same mRID, opModMaxLimW 10000) stays in effect and none is added."""
        t = Sharing(3, site_w=20000)
        t.arrive(0)
        t.arrive(1)
        before = [t.shares(i) for i in range(2)]
        self.assertEqual([s[0].DERControlBase.opModMaxLimW for s in before], [10000, 10000])
        t.arrive(2)
        self.assertEqual([t.shares(i) for i in range(2)], before)

    def test_arrival_within_reserve_touches_nobody_else(self) -> None:
        """V2G-4.6.1.1-1: from 16 PEVs on, the shares keep a reserve of one PEV's share per
        16 PEVs. When the 32nd PEV arrives the 7.2 kW no longer fit the shares of 31 (7200 /
        31 W each): they become 7200 / (32 + 2) W, so the 33rd gets a share from the reserve
        and nobody else's DERControl changes; the sum stays within the site limit, and above
        it less 2 × 2 reserve shares and the rounding (0.01 % of 6500 W per PEV)."""
        t = Sharing(33)
        for i in range(32):
            t.arrive(i)
        self.assertEqual(t.in_effect(0).DERControlBase.opModMaxLimW,
                         int(7200 / 34 / 6500 * 10000))
        before = {i: t.in_effect(i).mRID for i in range(32)}
        issued = t.s.coordinator.issued
        t.arrive(32)
        self.assertEqual(t.s.coordinator.issued, issued + 1)
        self.assertEqual({i: t.in_effect(i).mRID for i in range(32)}, before)
        watts = sum(t.in_effect(i).DERControlBase.opModMaxLimW * PEV_W / 10000
                    for i in range(33))
        self.assertLessEqual(watts, SITE_W)
        self.assertGreater(watts, SITE_W * 33 / (33 + 4) - 33 * 0.65)

    def test_no_reserve_below_sixteen(self) -> None:
        """V2G-4.6.1.1-1: with 15 PEVs the whole 7.2 kW is shared: 7200 / 15 W each."""
        t = Sharing(15)
        for i in range(15):
            t.arrive(i)
        self.assertEqual({t.in_effect(i).DERControlBase.opModMaxLimW for i in range(15)},
                         {int(7200 / 15 / 6500 * 10000)})


class EventRulesTests(SynchronousTestCase):
    def test_no_gap_in_the_limit(self) -> None:
        """V2G-4.7.1-3: a PEV running the §10.2.3 event engine on every DERControlList it
        is served, its idea of the server time 0.9 s behind, always has an opModMaxLimW
        from a DERControl in effect once it has one, equal to the share served (a share
        superseding another keeps its start, so it is never Scheduled for a lagging PEV); each
        superseded share gets Received and then Superseded (7), or Cancelled (6) if the
        PEV only saw it gone from the list."""
        t = Sharing(5, site_w=9000)
        clock = t.s.clock
        sent: list[tuple[bytes, int]] = []
        effective: list[Any] = []
        engine = EventEngine(lambda: clock.seconds() - 0.9, clock, effective.append,
                             lambda c, status: sent.append((c.mRID, int(status))))
        t.arrive(0)
        t.arrive(1)

        def poll() -> None:
            engine.update_program("/edev/0/derp/1", 0, None, t.served_list(0))
            got = engine.effective.controls.get("opModMaxLimW")
            self.assertIsNotNone(got)
            self.assertEqual(got.source, Source.EVENT)
            self.assertEqual(got.value, t.in_effect(0).DERControlBase.opModMaxLimW)

        # The first share starts now: a PEV 0.9 s behind runs it once its clock gets there.
        engine.update_program("/edev/0/derp/1", 0, None, t.served_list(0))
        clock.advance(1.0)
        poll()
        for i in (2, 3, 4):
            clock.advance(0.3)
            t.arrive(i)
            poll()
        for i in (4, 3):
            t.beat(6)
            t.leave(i)  # retires shares older than the grace: the PEV sees them go
            poll()
        statuses: dict[bytes, list[int]] = {}
        for mrid, status in sent:
            statuses.setdefault(mrid, []).append(status)
        current = t.in_effect(0).mRID
        for mrid, got in statuses.items():
            if mrid == current:
                self.assertEqual(got, [1, 2])
            elif got[:1] == [1] and len(got) > 2:
                self.assertIn(got[2:], ([7], [6]), got)

    def test_share_control_does_not_count_as_management_information(self) -> None:
        """V2G-4.6.4-1: the policy's "every management-information DERControl answered"
        rule (missing_responses over PolicyFacts.controls) sees the 9 Table 5 controls, not
        the site share: a PEV that answered those stays authorized when a new, unanswered
        share DERControl is issued to it and it is evaluated again."""
        t = Sharing(2)

        class AnsweredPolicy:
            def start(self) -> None:
                pass

            def stop(self) -> None:
                pass

            def evaluate(self, facts: Any) -> Decision:
                missing = missing_responses(facts.controls, facts.responses)
                return Decision(not missing, tuple(f"{c.description} unanswered"
                                                   for c, _ in missing))

        for port in t.s.ports:
            port.policy = AnsweredPolicy()  # type: ignore[assignment]
        for i in range(2):
            session = t.arrive(i)
            self.assertFalse(t.s.ports[i].granted)
            m = t.s.resources.management(session)
            self.assertEqual(len(m.current()), MANAGEMENT_CONTROLS)
            for control in m.current():
                t.respond(i, control, 1)
                t.respond(i, control, 2)
            t.s.clock.advance(0)
            self.assertTrue(t.s.ports[i].granted, t.s.ports[i].reasons)
        share = t.in_effect(0)
        facts = t.s.ports[0].facts()
        assert facts is not None
        self.assertNotIn(share.mRID, [c.mRID for c in facts.controls])
        t.s.ports[0]._evaluate("test: re-evaluated")
        self.assertTrue(t.s.ports[0].granted, t.s.ports[0].reasons)


class DepartureDuringDrainTests(SynchronousTestCase):
    def test_pev_leaving_while_shares_are_still_being_served(self) -> None:
        """More changed shares than one turn serves (32): the rest follow in the next turn.
        A PEV that leaves in between gets nothing served to its ended session, nothing
        fails, and the PEV that arrives next on that port gets one share in effect."""
        n = 40
        t = Sharing(n, site_w=n * 1000.0)
        for i in range(n):
            t.arrive(i)
        t.beat(1)
        coordinator = t.s.coordinator
        coordinator.site_max_w = n * 500.0  # every share must be lowered
        coordinator.rebalance()
        coordinator.update()  # this turn's update: 32 shares served, the rest next turn
        waiting = sorted(coordinator._todo)
        self.assertTrue(waiting, "everything was served in one turn")
        port = next(p for p in t.s.ports if p.name == waiting[0])
        i = t.s.ports.index(port)
        ended = t.session(i)
        issued = coordinator.issued
        port.link_down("unplugged")
        t.s.clock.advance(0)  # the continued drain and the departure's update
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertNotIn(i, t.s.resources.sessions)
        self.assertEqual(coordinator.issued - issued, len(waiting) - 1)
        self.assertFalse(any(s.session is ended for s in coordinator._served.values()))
        t.arrive(i)
        t.beat(1)
        self.assertTrue(port.granted, port.reasons)
        self.assertEqual(len([c for c in t.shares(i)
                              if c.EventStatus.currentStatus == EventStatusCode.ACTIVE]), 1)
