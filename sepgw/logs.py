"""Log observers: human-readable text or JSON lines, filtered by level.

Every module logs with a namespaced ``twisted.logger.Logger`` and structured fields (``port``,
``lfdi``, ``resource``...). :func:`make_observer` builds the observer the ``[logging]``
section asks for; the service makers install it on the twistd application.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from zope.interface import implementer

_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
           "error": LogLevel.error, "critical": LogLevel.critical}


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def event_as_json(event: dict[str, Any]) -> str:
    """One JSON object for a log event: time, level, namespace, text and plain fields."""
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": event.get("log_time"),
        "level": level.name if level is not None else None,
        "namespace": event.get("log_namespace"),
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if not key.startswith("log_") and key not in record and _plain(value) and key not in (
                "format", "message", "time", "system", "isError", "why"):
            record[key] = value
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    return json.dumps(record, default=str)


@implementer(ILogObserver)
class JSONLinesObserver:
    """Writes each event as one JSON object on its own line."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        self._out.write(event_as_json(event) + "\n")
        self._out.flush()


def make_observer(settings: dict[str, Any], stdout: IO[str] | None = None) -> ILogObserver:
    """The observer for a validated ``[logging]`` section."""
    out: IO[str]
    if settings.get("file") is not None:
        settings["file"].parent.mkdir(parents=True, exist_ok=True)
        out = open(settings["file"], "a", encoding="utf-8")
    else:
        out = stdout or sys.stdout
    base = JSONLinesObserver(out) if settings["format"] == "json" else textFileLogObserver(out)
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[settings["level"]])
    return FilteringLogObserver(base, [predicate])


def is_default(settings: dict[str, Any]) -> bool:
    """True when ``[logging]`` asks for nothing twistd would not do by itself."""
    return settings["format"] == "text" and settings["file"] is None and (
        settings["level"] == "info")
