"""Tests for the log observers of :mod:`sepgw.logs` (text or JSON lines, level filtering)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from sepgw.interfaces import LinkPeer
from sepgw.logs import JSONLinesObserver, event_as_json, is_default, make_observer


def close_log_file(observer: Any) -> None:
    """Close the file a ``file =`` observer opened.

    make_observer gives no way to close the file it opens, so reach through the filtering
    observer to the file of the observer it wraps.
    """
    inner = getattr(observer, "_observer", None)
    for name in ("_out", "_outFile"):
        f = getattr(inner, name, None)
        if f is not None and hasattr(f, "close"):
            f.close()


def records(text: str) -> list[dict[str, Any]]:
    """Each line of ``text`` parsed as JSON."""
    lines = text.splitlines()
    return [json.loads(line) for line in lines]


class JSONLinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = StringIO()
        observer: ILogObserver = JSONLinesObserver(self.out)  # type: ignore[assignment]
        self.log = Logger(namespace="sepgw.test.ports", observer=observer)

    def test_one_object_per_line(self) -> None:
        """Each event is written as exactly one JSON object on its own line, with the event's
        time, level name, namespace and formatted message."""
        self.log.info("HTTPS listening on {address}", address="[::1]:8443")
        self.log.warn("second\nevent with a newline")
        text = self.out.getvalue()
        self.assertTrue(text.endswith("\n"))
        self.assertEqual(len(text.splitlines()), 2)
        first, second = records(text)
        self.assertIsInstance(first["time"], float)
        self.assertEqual({k: first[k] for k in ("level", "namespace", "message")},
                         {"level": "info", "namespace": "sepgw.test.ports",
                          "message": "HTTPS listening on [::1]:8443"})
        self.assertEqual((second["level"], second["message"]),
                         ("warn", "second\nevent with a newline"))

    def test_structured_fields_kept(self) -> None:
        """Plain structured fields (str, int, float, bool, None) become JSON fields of their
        own, typed, whether or not the message uses them."""
        self.log.info("{port}: link up", port="port1", lfdi="A2038B8645F15C66D889FFBC4352AC0B"
                      "8CDACBA1", sfdi=434902610920, power_w=-3300.5, energized=True,
                      mac=None)
        [record] = records(self.out.getvalue())
        self.assertEqual(record["message"], "port1: link up")
        self.assertEqual({k: record[k] for k in ("port", "lfdi", "sfdi", "power_w", "energized",
                                                  "mac")},
                         {"port": "port1", "lfdi": "A2038B8645F15C66D889FFBC4352AC0B8CDACBA1",
                          "sfdi": 434902610920, "power_w": -3300.5, "energized": True,
                          "mac": None})

    def test_internal_and_non_plain_fields_left_out(self) -> None:
        """Twisted's log_* keys and objects that are not plain values are not fields of the
        record; such objects still appear in the formatted message."""
        self.log.info("peer {peer}", peer=LinkPeer(mac="02:00:00:00:00:01"))
        [record] = records(self.out.getvalue())
        self.assertEqual(set(record), {"time", "level", "namespace", "message"})
        self.assertIn("02:00:00:00:00:01", record["message"])

    def test_failure_has_traceback(self) -> None:
        """log.failure() yields a critical record whose traceback names the exception."""
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("Computing {what} failed", what="the ramp")
        [record] = records(self.out.getvalue())
        self.assertEqual((record["level"], record["message"], record["what"]),
                         ("critical", "Computing the ramp failed", "the ramp"))
        self.assertIn("ZeroDivisionError", record["traceback"])
        self.assertIn("Traceback", record["traceback"])

    def test_event_as_json_of_bare_event(self) -> None:
        """An event without level or namespace still gives a valid record with nulls."""
        record = json.loads(event_as_json({"log_format": "hello {who}", "who": "world",
                                           "log_time": 12.5}))
        self.assertEqual(record, {"time": 12.5, "level": None, "namespace": None,
                                  "message": "hello world", "who": "world"})


class MakeObserverTests(SynchronousTestCase):
    def test_level_filtering_json(self) -> None:
        """level = "warn" drops debug and info events and keeps warn, error and critical."""
        out = StringIO()
        observer = make_observer({"level": "warn", "format": "json", "file": None}, stdout=out)
        log = Logger(namespace="sepgw.test", observer=observer)
        log.debug("debug")
        log.info("info")
        log.warn("warn")
        log.error("error")
        log.critical("critical")
        self.assertEqual([(r["level"], r["message"]) for r in records(out.getvalue())],
                         [("warn", "warn"), ("error", "error"), ("critical", "critical")])

    def test_level_debug_keeps_everything(self) -> None:
        """level = "debug" lets every level through."""
        out = StringIO()
        observer = make_observer({"level": "debug", "format": "json", "file": None}, stdout=out)
        log = Logger(namespace="sepgw.test", observer=observer)
        for level in LogLevel.iterconstants():
            log.emit(level, "at {level_name}", level_name=level.name)
        self.assertEqual([r["level"] for r in records(out.getvalue())],
                         ["debug", "info", "warn", "error", "critical"])

    def test_text_format(self) -> None:
        """format = "text" writes Twisted's human-readable lines: namespace, level, message;
        level filtering applies too."""
        out = StringIO()
        observer = make_observer({"level": "info", "format": "text", "file": None}, stdout=out)
        log = Logger(namespace="sepgw.test", observer=observer)
        log.debug("hidden")
        log.info("{port}: link up", port="port1")
        [line] = out.getvalue().splitlines()
        self.assertIn("[sepgw.test#info] port1: link up", line)

    def test_file_setting_writes_to_file(self) -> None:
        """file = PATH writes the log to that file (creating its directory) instead of
        standard output, appending to what is there."""
        path = Path(self.mktemp()) / "log" / "sepgw.jsonl"
        stdout = StringIO()
        settings = {"level": "info", "format": "json", "file": path}
        observer = make_observer(settings, stdout=stdout)
        self.addCleanup(close_log_file, observer)
        Logger(namespace="sepgw.test", observer=observer).info("first", port=8443)
        close_log_file(observer)
        observer = make_observer(settings, stdout=stdout)
        self.addCleanup(close_log_file, observer)
        Logger(namespace="sepgw.test", observer=observer).info("second")
        self.assertEqual(stdout.getvalue(), "")
        self.assertEqual([(r["message"], r.get("port")) for r in records(path.read_text())],
                         [("first", 8443), ("second", None)])

    def test_text_file(self) -> None:
        """A text log goes to the file as well, one line per event."""
        path = Path(self.mktemp()) / "sepgw.log"
        observer = make_observer({"level": "info", "format": "text", "file": path})
        self.addCleanup(close_log_file, observer)
        Logger(namespace="sepgw.test", observer=observer).info("hello {who}", who="file")
        close_log_file(observer)
        [line] = path.read_text().splitlines()
        self.assertIn("[sepgw.test#info] hello file", line)

    def test_is_default(self) -> None:
        """Only text to standard output at level info counts as the default (left to
        twistd); any other setting does not."""
        base = {"level": "info", "format": "text", "file": None}
        self.assertTrue(is_default(base))
        for change in ({"level": "debug"}, {"format": "json"}, {"file": Path("x.log")}):
            self.assertFalse(is_default({**base, **change}), change)
