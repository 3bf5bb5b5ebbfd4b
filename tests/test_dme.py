"""The lab DME (sepgw.dme) in memory on task.Clock: registration by LFDI with an allow list
and the client certificate as identity, controls added, superseded and cancelled through the
operator protocol, what devices post kept in SQLite with duplicates counted, state kept over
a restart, the configuration, and the lazy twistd plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from sepgw.config.schema import ConfigError
from sepgw.dme.config import load_dme
from sepgw.dme.operator import DMEOperatorProtocol
from sepgw.dme.server import DMEServer
from sepgw.dme.store import DMEStore
from sepgw.model import (
    DERControlBase, DERControlList, EndDevice, EndDeviceList, MirrorMeterReading,
    MirrorMeterReadingList, MirrorUsagePoint, Reading, parse, serialize,
)
from sepgw.model.base import DateTimeInterval
from tests.processes import REPO

T0 = 1_700_000_000
A = "A2038B8645F15C66D889FFBC4352AC0B8CDACBA1"
B = "0123456789ABCDEF0123456789ABCDEF01234567"
# 2030.5 EventStatus currentStatus values, written out: 0 Scheduled, 2 Cancelled,
# 4 Superseded.
SCHEDULED, CANCELLED_STATUS, SUPERSEDED_STATUS = 0, 2, 4


def edev(lfdi: str) -> bytes:
    return serialize(EndDevice(lFDI=bytes.fromhex(lfdi), sFDI=1, changedTime=T0))


def readings(value: int, start: int = T0) -> bytes:
    return serialize(MirrorMeterReadingList(all=1, results=1, MirrorMeterReading=[
        MirrorMeterReading(mRID=b"\x01" * 16, description="Active Power",
                           Reading=Reading(timePeriod=DateTimeInterval(duration=0, start=start),
                                           value=value))]))


def make(path: str = ":memory:", **kw: object) -> tuple[DMEServer, DMEStore, Clock]:
    clock = Clock()
    clock.advance(T0)
    store = DMEStore(path)
    return DMEServer(clock, store=store, **kw), store, clock  # type: ignore[arg-type]


class RegistrationTests(SynchronousTestCase):
    def test_allow_list_and_certificate_identity(self) -> None:
        """A device may register only its own certificate's LFDI (403 otherwise), only when
        the LFDI is on the allow list (403 naming it otherwise); it then sees only its own
        EndDevice in the list, and another device's EndDevice is refused."""
        dme, _, _ = make(allow={A})
        status, body, _ = dme.handle("POST", "/edev", b"", edev(A), peer=B)
        self.assertEqual(status, 403)
        self.assertIn(b"not the client certificate", body)
        status, body, _ = dme.handle("POST", "/edev", b"", edev(B), peer=B)
        self.assertEqual((status, body), (403, f"LFDI {B} is not in the allow list".encode()))
        status, _, location = dme.handle("POST", "/edev", b"", edev(A), peer=A)
        self.assertEqual((status, location), (201, "/edev/1"))
        self.assertEqual(parse(dme.handle("GET", "/edev", b"", b"", peer=B)[1],
                               EndDeviceList).all, 0)
        self.assertEqual(parse(dme.handle("GET", "/edev", b"", b"", peer=A)[1],
                               EndDeviceList).all, 1)
        self.assertEqual(dme.handle("GET", "/edev/1", b"", b"", peer=B)[0], 403)
        self.assertEqual(dme.handle("GET", "/edev/1", b"", b"", peer=A)[0], 200)

    def test_registration_by_post_off(self) -> None:
        """With registration by POST off, a POSTed EndDevice is refused (403)."""
        dme, _, _ = make(registration=False)
        self.assertEqual(dme.handle("POST", "/edev", b"", edev(A), peer=A)[0], 403)


class StoreTests(SynchronousTestCase):
    def test_duplicates_counted_not_taken_twice(self) -> None:
        """The same readings body posted twice (a re-send after a lost acknowledgement) is
        taken once and counted as one duplicate; different readings are both taken."""
        dme, store, _ = make()
        dme.handle("POST", "/mup", b"", serialize(MirrorUsagePoint(
            mRID=b"\x02" * 16, description="site", roleFlags=1, serviceCategoryKind=0,
            status=1, deviceLFDI=bytes.fromhex(A))), peer=A)
        for body in (readings(100), readings(100), readings(200, T0 + 1)):
            self.assertEqual(dme.handle("POST", "/mup/1", b"", body, peer=A)[0], 201)
        self.assertEqual(store.counts()["reading"],
                         {"received": 3, "distinct": 2, "duplicates": 1})
        self.assertEqual([r["value"] for r in store.readings()], [200, 100])

    def test_state_survives_a_restart(self) -> None:
        """A DME restarted on the same database serves the same EndDevice, MirrorUsagePoint
        and controls (devices keep their cached hrefs), and new mRIDs never repeat."""
        path = str(Path(self.mktemp()).absolute())
        dme, store, _ = make(path)
        dme.handle("POST", "/edev", b"", edev(A), peer=A)
        dme.handle("POST", "/mup", b"", serialize(MirrorUsagePoint(
            mRID=b"\x02" * 16, description="site", roleFlags=1, serviceCategoryKind=0,
            status=1, deviceLFDI=bytes.fromhex(A))), peer=A)
        first = dme.add_control(DERControlBase(opModFixedW=2500))
        dme.cancel(first.mRID.hex())
        dme.set_default(DERControlBase(opModEnergize=False))
        store.close()
        again, _, _ = make(path)
        self.assertEqual(again.devices[A].href, "/edev/1")
        self.assertEqual(list(again.mups), ["/mup/1"])
        listed = parse(again.handle("GET", "/derp/1/derc", b"", b"", peer=A)[1], DERControlList)
        self.assertEqual([(c.mRID, int(c.EventStatus.currentStatus))
                          for c in listed.DERControl], [(first.mRID, CANCELLED_STATUS)])
        self.assertIs(again.default.DERControlBase.opModEnergize, False)  # type: ignore[union-attr]
        default_mrid = again.default.mRID  # type: ignore[union-attr]
        self.assertNotIn(again.new_mrid(), {first.mRID, default_mrid})


class OperatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dme, self.store, self.clock = make()
        self.operator = DMEOperatorProtocol(self.dme)

    def test_add_supersede_cancel(self) -> None:
        """`add` creates a scheduled control; `supersede` creates a later-created one over
        the same interval's remainder and marks the old one Superseded (4); `cancel` marks
        one Cancelled (2)."""
        added = self.operator.command(["add", "opModFixedW=2500", "duration=300"])
        self.assertEqual((added["functions"], added["duration"], added["status"]),
                         ({"opModFixedW": 2500}, 300, "scheduled"))
        self.clock.advance(100)
        new = self.operator.command(["supersede", added["mrid"][:8], "opModFixedW=5000"])
        self.assertEqual((new["start"], new["duration"], new["functions"]),
                         (T0 + 100, 200, {"opModFixedW": 5000}))
        self.assertGreater(new["creation"], added["creation"])
        controls = {c["mrid"]: c for c in self.operator.command(["controls"])["controls"]}
        self.assertEqual(int(self.dme.find_control(added["mrid"]).EventStatus.currentStatus),
                         SUPERSEDED_STATUS)
        self.assertEqual(controls[added["mrid"]]["status"], "superseded")
        self.operator.command(["cancel", new["mrid"]])
        self.assertEqual(int(self.dme.find_control(new["mrid"]).EventStatus.currentStatus),
                         CANCELLED_STATUS)

    def test_bad_commands_name_the_problem(self) -> None:
        """Unknown functions, bad values and unknown controls are answered with an error
        naming the problem and change nothing."""
        sent: list[bytes] = []
        self.operator.sendLine = sent.append  # type: ignore[method-assign]
        for line, fragment in ((b"add opModFoo=1", "unknown function 'opModFoo'"),
                               (b"add opModMaxLimW=20000", "0..10000"),
                               (b"add opModEnergize=maybe", "true or false"),
                               (b"cancel ffff", "no control 'ffff'"),
                               (b"frobnicate", "unknown command")):
            self.operator.lineReceived(line)
            self.assertIn(fragment, json.loads(sent[-1])["error"])
        self.assertEqual(self.dme.controls, [])


class ConfigTests(SynchronousTestCase):
    def test_shipped_config_is_valid(self) -> None:
        """etc/dme.toml validates."""
        self.assertEqual(load_dme(REPO / "etc" / "dme.toml")["server"]["port"], 8446)

    def test_problems_listed(self) -> None:
        """An unknown key and a bad port are both reported; once the keys are right, an
        allow-list entry that is not an LFDI is reported by its index."""
        path = Path(self.mktemp())
        tls = '[tls]\ncert = "c"\nkey = "k"\nca = ["a"]\n'
        path.write_text(tls + '[server]\nport = 70000\ncolour = "red"\n')
        with self.assertRaises(ConfigError) as caught:
            load_dme(path)
        self.assertIn("server.port", str(caught.exception))
        self.assertIn("server.colour", str(caught.exception))
        path.write_text(tls + f'[registration]\nallow = ["{A}", "XYZ"]\n')
        with self.assertRaises(ConfigError) as caught:
            load_dme(path)
        self.assertIn("registration.allow[1]: 'XYZ' is not an LFDI", str(caught.exception))

    def test_twistd_plugin_is_lazy(self) -> None:
        """Importing the twistd plugin module imports nothing of sepgw."""
        code = ("import sys; import twisted.plugins.sepgw_services as m; "
                "print(m.sepgw_dme.tapname, sorted(n for n in sys.modules "
                "if n.split('.')[0] == 'sepgw'))")
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
        self.assertEqual(out.strip(), "sepgw-dme []")
