"""Session teardown of the EVSE's resource tree (sepgw.evse.tree.EVSEResources.detach): a
departing session's resources disappear, and only its own, in memory on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from sepgw.config import load
from sepgw.evse.tree import EVSEResources, HTTPError
from sepgw.model.paging import ListQuery
from tests.helpers import ETC
from tests.test_evse_server import T0, identities

#: What the EVSE serves each PEV session on port p (docs/architecture.md's resource tree),
#: written out here rather than taken from the code.
SESSION_PATHS = (
    "/edev/{p}", "/edev/{p}/di", "/edev/{p}/ps", "/edev/{p}/sub", "/edev/{p}/der",
    "/edev/{p}/der/1", "/edev/{p}/der/1/dercap", "/edev/{p}/der/1/ders",
    "/edev/{p}/der/1/dera", "/edev/{p}/der/1/dstat", "/edev/{p}/fsa", "/edev/{p}/fsa/1",
    "/edev/{p}/derp", "/edev/{p}/derp/1", "/edev/{p}/derp/1/dderc",
    "/edev/{p}/derp/1/derc", "/edev/{p}/derp/1/dc", "/edev/{p}/derp/1/actderc",
    "/rsps/{p}", "/rsps/{p}/rsp", "/mup/{p}",
)
#: Served to every client whatever the sessions.
GLOBAL_PATHS = ("/dcap", "/tm", "/sdev", "/sdev/der", "/sdev/der/1", "/sdev/der/1/ders",
                "/edev", "/rsps", "/mup")


class DetachTests(SynchronousTestCase):
    def setUp(self) -> None:
        config = load(ETC / "sepgw.toml", "evse")
        self.clock = Clock()
        self.clock.advance(T0)
        self.resources = EVSEResources(
            server=config["server"], site=config["site"], management=config["management"],
            ports=["port1", "port2", "port3"], clock=self.clock)
        self.ids = identities()

    def paths(self, p: int) -> list[str]:
        return [template.format(p=p) for template in SESSION_PATHS]

    def assert_served(self, path: str) -> None:
        self.resources.route(path)  # raises HTTPError 404 when not served

    def assert_gone(self, path: str) -> None:
        with self.assertRaises(HTTPError) as caught:
            self.resources.route(path)
        self.assertEqual(caught.exception.code, 404, path)

    def test_detach_removes_all_of_its_own_and_nothing_else(self) -> None:
        """After one of two sessions ends, every resource of that session answers 404
        (including its DERControl items, found below its list) and every resource of the
        other session and of the site is still served, to its owner."""
        pev = self.resources.attach(self.ids["pev"], 0)
        other = self.resources.attach(self.ids["pev2"], 1)
        for path in self.paths(0) + self.paths(1) + list(GLOBAL_PATHS):
            self.assert_served(path)
        self.assertTrue(self.resources.management(pev).controls)

        self.resources.detach(0, "link down")

        for path in self.paths(0):
            self.assert_gone(path)
        self.assert_gone("/edev/0/derp/1/derc/1")
        for path in self.paths(1) + list(GLOBAL_PATHS):
            self.assert_served(path)
        dderc = self.resources.get("/edev/1/derp/1/dderc", ListQuery(),
                                   self.ids["pev2"])
        self.assertEqual(dderc.href, "/edev/1/derp/1/dderc")
        self.assertIs(self.resources.session_for(self.ids["pev2"]), other)
        self.assertIsNone(self.resources.session_for(self.ids["pev"]))

    def test_detach_twice_and_reattach(self) -> None:
        """A second detach of the same port is a no-op that removes nothing of the others;
        a PEV attaching on the freed port gets all its resources again, and ending that
        second session removes them again."""
        self.resources.attach(self.ids["pev"], 0)
        self.resources.attach(self.ids["pev2"], 1)
        self.resources.detach(0, "link down")
        self.resources.detach(0, "link down")
        for path in self.paths(1):
            self.assert_served(path)
        self.resources.attach(self.ids["pev"], 0)
        for path in self.paths(0) + self.paths(1):
            self.assert_served(path)
        self.resources.detach(1, "link down")
        for path in self.paths(1):
            self.assert_gone(path)
        for path in self.paths(0):
            self.assert_served(path)
        self.resources.detach(0, "link down")
        for path in self.paths(0):
            self.assert_gone(path)
        for path in GLOBAL_PATHS:
            self.assert_served(path)

    def test_control_for_an_ended_session_goes_nowhere(self) -> None:
        """A DERControl set for a session that has ended (as a site-sharing update spread
        over reactor turns may still do) raises nothing, and the PEV that took the port
        since is not served it: its DERControlList is the management information alone."""
        old = self.resources.attach(self.ids["pev"], 0)
        before = len(self.resources.management(old).controls)
        self.resources.detach(0, "link down")
        self.resources.set_control(old, "share", "opModMaxLimW", 5000, "Site share")
        new = self.resources.attach(self.ids["pev2"], 0)
        self.resources.set_control(old, "share", "opModMaxLimW", 5000, "Site share")
        self.assertEqual(len(self.resources.management(new).controls), before)
        self.resources.set_control(new, "share", "opModMaxLimW", 5000, "Site share")
        self.assertEqual(len(self.resources.management(new).controls), before + 1)
