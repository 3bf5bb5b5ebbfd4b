"""The PEV emulator's misbehaviour modes (sepgw.pev.misbehaviour), each judged by what the real
EVSE on the other side of the in-memory wire sees and decides: the wrappers must produce the
fault the mode names, and the EVSE (policy, heartbeat monitor, HTTP checks) must catch it.

The world is tests.test_pev_client.World: EVSEResources, the port controller with the j3072
policy and J3072Client on one fake clock, composed through ``misbehave`` as the service does.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from sepgw.pev.misbehaviour import misbehave
from tests.test_pev_client import BASE, World


def _watts(value: object) -> float:
    return float(value.value) * 10.0 ** value.multiplier  # type: ignore[attr-defined]


class WellBehavedBaselineTests(SynchronousTestCase):
    def test_baseline_is_authorized(self) -> None:
        """Without a mode the same world ends authorized with the inverter energized: the
        failures below are the modes' doing."""
        w = World()
        w.start()
        w.run(3)
        self.assertTrue(w.port.granted, w.port.reasons)
        self.assertTrue(w.inverter.energized)


class MisbehaviourTests(SynchronousTestCase):
    def world(self, mode: str) -> World:
        w = World(**{mode: True})
        w.start()
        w.run(3)
        return w

    def test_skip_responses(self) -> None:
        """skip_responses: no DERControlResponse reaches the EVSE, which never authorizes and
        says the responses are missing."""
        w = self.world("skip_responses")
        self.assertFalse(w.port.granted)
        self.assertEqual(dict(w.resources.sessions[0].responses), {})
        self.assertTrue(any("respon" in r.lower() for r in w.port.reasons), w.port.reasons)

    def test_stop_heartbeats(self) -> None:
        """stop_heartbeats: the EVSE stops hearing DERStatus; 10 missed heartbeats later it
        declares loss of communications and revokes."""
        w = World(stop_heartbeats=True)
        w.start()
        w.run(2)
        self.assertTrue(w.port.granted, w.port.reasons)  # the one heartbeat of step 2 counted
        w.run(12)
        self.assertFalse(w.port.granted)
        self.assertTrue(any("communication" in r.lower() for r in w.port.reasons),
                        w.port.reasons)

    def test_invalid_bodies(self) -> None:
        """invalid_bodies: every PUT is schema-invalid; the EVSE keeps none of them and never
        authorizes."""
        w = self.world("invalid_bodies")
        self.assertFalse(w.port.granted)
        session = w.resources.sessions.get(0)
        self.assertEqual(set(session.written) if session else set(), set())

    def test_exceed_limit(self) -> None:
        """exceed_limit: the EVSE receives DERSettings whose setMaxW is half the vehicle's
        (under-reported), while the inverter is driven to 100 % once allowed."""
        w = self.world("exceed_limit")
        settings = w.resources.sessions[0].written["ders"].resource
        vehicle_max_w = 6500.0  # etc/pev.toml [vehicle] max_w
        self.assertLessEqual(_watts(settings.setMaxW), vehicle_max_w / 2)
        energized = [c for c in w.inverter.applied if c.get("opModEnergize")]
        self.assertTrue(energized)
        self.assertTrue(all(c.get("opModFixedW") == 100.0 and "opModMaxLimW" not in c
                            for c in energized))

    def test_discharge_before_authorization(self) -> None:
        """discharge_before_authorization (with skip_responses, so the EVSE never grants, as
        the rogue-PEV end-to-end test runs it): every command reaching the inverter energizes
        it although the EVSE has granted nothing."""
        w = World(discharge_before_authorization=True, skip_responses=True)
        seen: list[tuple[bool, bool]] = []  # (EVSE granted, inverter told to energize)
        record = w.inverter.apply
        w.inverter.apply = lambda c: (seen.append((w.port.granted, bool(c.get(  # type: ignore
            "opModEnergize")))), record(c))
        w.start()
        w.run(1)
        self.assertTrue(seen)
        self.assertEqual(set(seen), {(False, True)})

    def test_unknown_mode_named(self) -> None:
        """An unknown mode is refused with its name."""
        w = World()
        with self.assertRaisesRegex(ValueError, "unknown misbehaviour mode.*fly"):
            misbehave({"fly"}, w.client.http, w.inverter)
        self.assertTrue(BASE)
