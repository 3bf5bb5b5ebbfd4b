"""List paging helpers: query validation, page slicing, all/results, list ordering."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from sepgw.model import (
    DateTimeInterval, DERControl, DERControlBase, DERControlList, DERProgram, EndDevice,
    EventStatus, EventStatusCode, ListQuery, SubscribableType, ModelError, fill_list, next_start, page, parse, parse_query,
    query_string, serialize, sort_list,
)
from sepgw.model.paging import DEFAULT_LIMIT, sort_key

from .test_model_helpers import schema_errors


def control(n: int, start: int = 100, created: int = 0) -> DERControl:
    return DERControl(href=f"/derc/{n}", mRID=bytes([n]) * 16, creationTime=created,
                      EventStatus=EventStatus(currentStatus=EventStatusCode.ACTIVE, dateTime=0,
                                              potentiallySuperseded=False),
                      interval=DateTimeInterval(duration=60, start=start),
                      DERControlBase=DERControlBase(opModMaxLimW=5000))


class ParseQueryTests(SynchronousTestCase):
    """s, a and l validation."""

    def test_defaults(self) -> None:
        """No query: start 0, no 'after', limit 1 (the 2030.5 default, which is why the
        profile's un-queried DERControlList GET returns results="1")."""
        self.assertEqual(parse_query(None), ListQuery(0, None, 1))
        self.assertEqual(parse_query(""), ListQuery(0, None, DEFAULT_LIMIT))

    def test_forms(self) -> None:
        """Raw strings (with or without '?'), str mappings and twisted.web bytes mappings
        are accepted; other parameters are ignored."""
        want = ListQuery(3, None, 3)
        self.assertEqual(parse_query("?s=3&l=3"), want)
        self.assertEqual(parse_query(b"s=3&l=3&x=y"), want)
        self.assertEqual(parse_query({"s": ["3"], "l": ["3"]}), want)
        self.assertEqual(parse_query({b"s": [b"3"], b"l": [b"3"], b"z": [b"q"]}), want)
        self.assertEqual(parse_query("a=1670691600"), ListQuery(0, 1670691600, 1))

    def test_invalid(self) -> None:
        """Non-integers, negatives, repeats and out-of-range values are rejected with the
        parameter named."""
        for q, msg in [("s=x", "query/s: 'x' is not an integer"),
                       ("l=-1", "query/l: -1 is out of range (0..4294967295)"),
                       ("s=1_0", "query/s: '1_0' is not an integer"),
                       ("l=", "query/l: '' is not an integer"),
                       ("s=1&s=2", "query/s: given more than once"),
                       ("s=4294967296", "query/s: 4294967296 is out of range "
                                        "(0..4294967295)")]:
            e = self.assertRaises(ModelError, parse_query, q)
            self.assertEqual(str(e), msg)

    def test_max_limit(self) -> None:
        """A server's max_limit caps l."""
        self.assertEqual(parse_query("l=1000", max_limit=50).limit, 50)


class PageTests(SynchronousTestCase):
    """Slicing and filling list resources."""

    def test_profile_paging(self) -> None:
        """Nine controls read three at a time give all=9, results=3 and the next start,
        as in profile section 5.5 (V2G-4.6.3-9: the PEV gets all DERControls); the pages
        validate against the schema."""
        controls = [control(n) for n in range(9, 0, -1)]
        seen: list[DERControl] = []
        start: int | None = 0
        while start is not None:
            q = parse_query(f"s={start}&l=3")
            lst = fill_list(DERControlList(href="/pev/derp/1/derc",
                                                 subscribable=SubscribableType.NON_CONDITIONAL), controls,
                            q)
            self.assertEqual((lst.all, lst.results), (9, 3))
            data = serialize(lst)
            self.assertIn(b'all="9" results="3"', data)
            self.assertEqual(schema_errors(data), [])
            back = parse(data, DERControlList)
            seen += back.DERControl
            start = next_start(back, start)
        self.assertEqual(seen, controls)

    def test_default_limit_and_past_end(self) -> None:
        """Without l one entry is returned; a start past the end returns none, with all
        still the list size."""
        controls = [control(n) for n in range(3)]
        lst = fill_list(DERControlList(), controls, parse_query(""))
        self.assertEqual((lst.all, lst.results, len(lst.DERControl)), (3, 1, 1))
        lst = fill_list(DERControlList(), controls, parse_query("s=10&l=5"))
        self.assertEqual((lst.all, lst.results, lst.DERControl), (3, 0, []))
        self.assertIsNone(next_start(lst, 10))

    def test_after(self) -> None:
        """'a' keeps the entries whose time key is at or after it; all counts them."""
        controls = [control(n, start=100 * n) for n in range(1, 6)]
        entries, total = page(controls, parse_query("a=300&l=10"),
                              time_key=lambda c: c.interval.start)
        self.assertEqual([c.interval.start for c in entries], [300, 400, 500])
        self.assertEqual(total, 3)

    def test_not_a_list(self) -> None:
        """fill_list refuses a resource that is not a list."""
        self.assertRaises(TypeError, fill_list, EndDevice(sFDI=1, changedTime=0), [],
                          ListQuery())

    def test_query_string(self) -> None:
        """The client-side query builder writes s, a and l as given."""
        self.assertEqual(query_string(), "")
        self.assertEqual(query_string(3, 3), "?s=3&l=3")
        self.assertEqual(query_string(0, 3, after=5), "?a=5&l=3")


class OrderingTests(SynchronousTestCase):
    """2030.5 list ordering keys."""

    def test_events(self) -> None:
        """DERControls order by start ascending, then creationTime descending, then mRID
        descending."""
        a = control(1, start=200, created=5)
        b = control(2, start=100, created=5)
        c = control(3, start=100, created=9)
        d = control(4, start=100, created=9)
        self.assertEqual(sort_list([a, b, c, d], DERControl), [d, c, b, a])

    def test_programs_and_devices(self) -> None:
        """DERPrograms order by primacy then mRID descending; EndDevices by sFDI."""
        p1 = DERProgram(mRID=b"\x01", primacy=2)
        p2 = DERProgram(mRID=b"\x02", primacy=1)
        p3 = DERProgram(mRID=b"\x03", primacy=2)
        self.assertEqual(sort_list([p1, p2, p3], DERProgram), [p2, p3, p1])
        e1, e2 = EndDevice(sFDI=5, changedTime=0), EndDevice(sFDI=3, changedTime=0)
        self.assertEqual(sort_list([e1, e2], EndDevice), [e2, e1])

    def test_unknown(self) -> None:
        """Types without a known ordering are refused rather than guessed."""
        from sepgw.model import Time
        self.assertRaises(TypeError, sort_key, Time)
