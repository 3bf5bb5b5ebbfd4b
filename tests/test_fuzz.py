"""Fuzzing the EVSE's HTTP server with hostile requests (issue 11).

Every case is raw bytes into the real ``EVSEHTTPServer.site()`` channel on a fake clock: a
method, a path (every writable resource, its neighbours, garbage), a query (``s``/``a``/``l``
with huge, negative, repeated and non-ASCII values), header fields (Content-Type and
Content-Length right, wrong or absurd, chunked bodies) and a body (a valid document of
every writable resource, mutated: text values replaced by huge integers or garbage,
elements dropped, duplicated, renamed, reordered, nested deep, truncated, bytes flipped).

Invariants checked on every case: an answer or a close (after the deadlines on the clock),
never a 5xx, never a logged traceback, and a refused write (4xx) changes no state.

The CI run is bounded (``SEPGW_FUZZ_CASES``, default 1,500 per test, derandomized);
``make fuzz`` runs a long one (e.g. ``make fuzz FUZZ_CASES=100000``) and prints the figures.
"""

from __future__ import annotations

import os
import random
import re
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from sepgw.evse.http import EVSEHTTPServer
from tests import scripted_pev as script
from tests.test_evse_server import T0, ServerFixture
from tests.test_hardening_http import LIMITS, Connection, LogWatch

CASES = int(os.environ.get("SEPGW_FUZZ_CASES", "1500"))
LONG = "SEPGW_FUZZ_CASES" in os.environ
FUZZ = settings(max_examples=CASES, deadline=None, derandomize=not LONG, database=None,
                suppress_health_check=list(HealthCheck), print_blob=True)

WRITES = ["/edev/0/di", "/edev/0/ps", "/edev/0/der/1/dercap", "/edev/0/der/1/ders",
          "/edev/0/der/1/dera", "/edev/0/der/1/dstat", "/rsps/0/rsp", "/edev/0/sub", "/mup",
          "/mup/0"]
READS = ["/dcap", "/tm", "/edev", "/edev/0", "/edev/0/derp", "/edev/0/derp/1/derc",
         "/edev/0/derp/1/dderc", "/rsps/0/rsp", "/edev/0/sub", "/mup", "/sdev/der/1/ders",
         "/edev/1", "/edev/0/sub/0", "/rsps/0/rsp/0", "/mup/0/0", "/", "/edev/0/../0",
         "/%00", "/edev/0/der/1/ders/", "//dcap", "/edev/99999999999999999999"]
METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT",
           "get", "X" * 40, "GE T", ""]
BIG = "9" * 5000


def documents(lfdi: str, control: str) -> dict[str, bytes]:
    """A valid document for each writable resource (from the scripted PEV)."""
    return {
        "/edev/0/di": script.device_information(lfdi),
        "/edev/0/ps": script.power_status(T0),
        "/edev/0/der/1/dercap": script.DER_CAPABILITY,
        "/edev/0/der/1/ders": script.der_settings(T0, 7000),
        "/edev/0/der/1/dera": script.der_availability(T0),
        "/edev/0/der/1/dstat": script.der_status(T0, 4),
        "/rsps/0/rsp": script.response(lfdi, control, 1, T0),
        "/edev/0/sub": script.subscription("/edev/0/derp/1/dderc", "https://[fd00::2]/ntfy"),
        "/mup": script.mirror_usage_point(lfdi),
        "/mup/0": script.reading("01", "Active Power", T0, 6000),
    }


_TEXT = re.compile(rb">([^<>]+)<")
_TAG = re.compile(rb"<([A-Za-z][A-Za-z0-9]*)>")


def _values(r: random.Random) -> bytes:
    return r.choice([BIG.encode(), b"-" + BIG.encode(), b"0" * 4000 + b"1", b"-1",
                     b"18446744073709551616", b"1e9", b"0x10", b"\xff\xfe", b"&amp;",
                     b"&#0;", b"]]>", b"", b" ", b"A" * 70000, b"true", b"NaN",
                     b"-9223372036854775809", b"FFFFFFFF" * 10, bytes(r.randrange(256)
                                                                   for _ in range(8))])


def mutate(doc: bytes, r: random.Random) -> bytes:
    """One to three mutations of ``doc``."""
    for _ in range(r.randint(1, 3)):
        kind = r.randrange(12)
        texts = list(_TEXT.finditer(doc))
        tags = list(_TAG.finditer(doc))
        if kind <= 2 and texts:  # a value replaced
            m = r.choice(texts)
            doc = doc[:m.start(1)] + _values(r) + doc[m.end(1):]
        elif kind == 3 and tags:  # an element dropped
            name = r.choice(tags).group(1)
            doc = re.sub(rb"<%s>.*?</%s>" % (name, name), b"", doc, count=1, flags=re.S)
        elif kind == 4 and tags:  # an element duplicated
            name = r.choice(tags).group(1)
            m2 = re.search(rb"<%s>.*?</%s>" % (name, name), doc, flags=re.S)
            if m2:
                doc = doc[:m2.end()] + m2.group(0) * r.choice([1, 2, 500]) + doc[m2.end():]
        elif kind == 5 and tags:  # an element renamed
            name = r.choice(tags).group(1)
            doc = doc.replace(b"<%s>" % name, b"<%sX>" % name, 1).replace(
                b"</%s>" % name, b"</%sX>" % name, 1)
        elif kind == 6:  # truncated
            doc = doc[:r.randrange(len(doc) + 1)]
        elif kind == 7:  # bytes flipped
            b = bytearray(doc)
            for _ in range(r.randint(1, 5)):
                if b:
                    b[r.randrange(len(b))] = r.randrange(256)
            doc = bytes(b)
        elif kind == 8:  # nested deep
            depth = r.choice([10, 100, 5000])
            inner = b"<a>" * depth + b"1" + b"</a>" * depth
            doc = doc.replace(b"</", inner + b"</", 1)
        elif kind == 9:  # namespace or root changed
            doc = r.choice([doc.replace(b"urn:ieee:std:2030.5:ns", b"urn:other", 1),
                            doc.replace(b"<", b"<x:", 1), b"<?xml version='1.0'?>" + doc,
                            b"<!DOCTYPE a [<!ENTITY e 'x'>]>" + doc,
                            doc.replace(b" xmlns", b" a='1' xmlns", 1)])
        elif kind == 10:  # other document
            doc = r.choice([b"", b"{}", b"<a/>", b"\x00" * 100, b"<" * 1000, b"<DERStatus/>"])
        elif kind == 11 and texts:  # whitespace and signs around a number
            m = r.choice(texts)
            doc = doc[:m.start(1)] + r.choice([b" +", b"\t-", b"\n"]) + m.group(1) \
                + r.choice([b" ", b"\r\n", b""]) + doc[m.end(1):]
    return doc


def query(r: random.Random) -> str:
    if r.random() < 0.5:
        return ""
    parts = []
    for _ in range(r.randint(1, 4)):
        name = r.choice(["s", "a", "l", "s", "l", "x", "", "l[]"])
        value = r.choice(["0", "1", "-1", "255", "4294967296", BIG, "0" * 3000 + "5", "abc",
                          "", "%00", "%FF", "１", "+3", " 7", "9223372036854775808",
                          "-9223372036854775809"])
        parts.append(f"{name}={value}")
    return "?" + "&".join(parts)


def build_request(r: random.Random, docs: dict[str, bytes]) -> tuple[str, str, bytes]:
    """(method, path, raw request bytes)."""
    if r.random() < 0.6:
        path = r.choice(WRITES)
        method = r.choice(["PUT", "POST"] * 4 + METHODS)
        body: bytes | None = mutate(docs[path], r) if r.random() < 0.9 else docs[path]
    else:
        path = r.choice(READS + WRITES)
        method = r.choice(["GET"] * 6 + METHODS)
        body = mutate(r.choice(list(docs.values())), r) if r.random() < 0.2 else None
    target = path + query(r)
    head = [f"{method} {target} HTTP/1.1".encode("utf-8", "replace"), b"Host: evse",
            b"X-Test-Client: " + r.choice([b"pev"] * 8 + [b"pev2", b"", b"nobody"])]
    ctype = r.choice([b"application/sep+xml"] * 6 + [
        b"application/sep+xml; charset=utf-8", b"text/xml", b"", b"application/sep+xml;" * 50,
        b"APPLICATION/SEP+XML", b"application/sep+xml; level=-S1"])
    if body is not None:
        head.append(b"Content-Type: " + ctype)
        framing = r.randrange(10)
        if framing <= 6:
            head.append(b"Content-Length: %d" % len(body))
        elif framing == 7:
            head.append(b"Content-Length: %d" % max(0, len(body) + r.choice([-3, 5, 10 ** 6])))
        elif framing == 8:
            head.append(b"Transfer-Encoding: chunked")
            pieces = [body[i:i + 700] for i in range(0, len(body), 700)]
            body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
            body += r.choice([b"0\r\n\r\n", b"", b"0\r\nX-T: 1\r\n\r\n"])
        else:
            head.append(r.choice([b"Content-Length: " + BIG.encode(), b"Content-Length: -1",
                                  b"Transfer-Encoding: gzip", b"Content-Length: 1, 1",
                                  b"Content-Length: 4\r\nContent-Length: 5"]))
    if r.random() < 0.1:
        head.append(r.choice([b"Cookie: " + b"c" * r.choice([100, 20000]), b"X: \x00",
                              b"Bad Header", b"Expect: 100-continue", b"Connection: close",
                              b" folded", b"X-Many: " + b"a;" * 5000]))
    raw = b"\r\n".join(head) + b"\r\n\r\n" + (body or b"")
    return method, path, raw


class State:
    """What a write may change, compared by identity and counts."""

    def __init__(self, f: ServerFixture) -> None:
        self.f = f

    def snapshot(self) -> Any:
        session = self.f.resources.sessions.get(0)
        if session is None:
            return None
        mirror = session.mirror
        extras = self.f.resources._extras[0]
        return ({k: id(v.resource) for k, v in session.written.items()},
                session.responses_received, len(session.response_order),
                None if mirror is None else (id(mirror.usage_point), tuple(
                    (k, id(m.reading), len(m.history)) for k, m in mirror.meters.items())),
                len(extras.subscriptions), session.energize)


class Harness:
    """Runs one case and records what the invariants need."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.f = ServerFixture()
        self.log = LogWatch(case)
        self.site = EVSEHTTPServer(self.f.resources, identify=self.f._identify, limits=LIMITS,
                                   clock=self.f.clock).site()
        c = Connection(self.f, LIMITS, self.site)
        c.send(b"GET /dcap HTTP/1.1\r\nX-Test-Client: pev\r\n\r\n")  # attaches the session
        session = self.f.resources.sessions[0]
        control = bytes(self.f.resources.management(session).all_controls()[0].mRID).hex()
        self.docs = documents(self.f.ids["pev"].lfdi, control.upper())
        self.state = State(self.f)
        self.figures = {"cases": 0, "5xx": 0, "tracebacks": 0, "state_changed": 0,
                        "no_answer": 0}
        self.codes: dict[int, int] = {}

    def run(self, r: random.Random, check: Callable[[bool, str], None]) -> None:
        method, path, raw = build_request(r, self.docs)
        before = self.state.snapshot()
        failures = len(self.log.failures)
        c = Connection(self.f, LIMITS, self.site)
        split = r.choice([len(raw), 1, len(raw) // 2])
        c.send(raw[:split])
        c.send(raw[split:])
        if c.status() is None and not c.closing:
            c.clock.advance(LIMITS.body_timeout + LIMITS.head_timeout + 1)
        code = c.status()
        after = self.state.snapshot()
        self.figures["cases"] += 1
        if code is not None:
            self.codes[code] = self.codes.get(code, 0) + 1
        if code is None and not c.closing:
            self.figures["no_answer"] += 1
        if code is not None and code >= 500:
            self.figures["5xx"] += 1
        if len(self.log.failures) > failures:
            self.figures["tracebacks"] += 1
        refused = code is None or code >= 400
        if refused and after != before:
            self.figures["state_changed"] += 1
        c.proto.connectionLost(None)
        what = f"{method} {path}: {raw[:300]!r}"
        check(code is not None or c.closing, f"neither answer nor close: {what}")
        check(code is None or code < 500, f"{code}: {c.answer()[:300]!r} for {what}")
        check(len(self.log.failures) == failures, f"traceback logged for {what}")
        check(not refused or after == before, f"refused write {code} changed state: {what}")


class FuzzTests(SynchronousTestCase):
    """Hypothesis-driven mutation of valid documents, queries, methods and headers."""

    def setUp(self) -> None:
        self.h = Harness(self)

    def check(self, ok: bool, message: str) -> None:
        if not LONG:
            self.assertTrue(ok, message)

    @FUZZ
    @given(st.integers(0, 2**64))
    def test_mutated_requests(self, seed: int) -> None:
        """No request, however mangled, gets a 5xx or logs a traceback; every one is
        answered or closed; a refused write changes nothing."""
        self.h.run(random.Random(seed), self.check)

    def tearDown(self) -> None:
        figures = self.h.figures
        if LONG and figures["cases"]:
            print(f"\nfuzz figures: {figures}; statuses {sorted(self.h.codes.items())}")
        self.assertEqual((figures["5xx"], figures["tracebacks"], figures["state_changed"],
                          figures["no_answer"]), (0, 0, 0, 0), figures)

    def test_valid_documents_accepted(self) -> None:
        """The unmutated documents the fuzzer starts from are accepted (so mutations test
        the parser, not a request that was refused anyway)."""
        for path in ["/edev/0/di", "/edev/0/ps", "/edev/0/der/1/dercap",
                     "/edev/0/der/1/ders", "/edev/0/der/1/dera", "/edev/0/der/1/dstat",
                     "/rsps/0/rsp", "/mup"]:
            method = "POST" if path in ("/rsps/0/rsp", "/mup") else "PUT"
            code, _, data = self.h.f.call(method, path, self.h.docs[path])
            self.assertIn(code, (201, 204), f"{path}: {data!r}")
