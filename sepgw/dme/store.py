"""The lab DME's durable state: SQLite in WAL mode (stdlib :mod:`sqlite3`).

What the head-end hands out (registered EndDevices, MirrorUsagePoints, DERControls, the
DefaultDERControl) is kept so that a restarted DME serves the same hrefs and events to
devices that cached them. What devices send (readings, Responses, PUT statuses) is
recorded one row per request in ``posts``; a request whose body is byte for byte one the
DME already took is recorded as a **duplicate** (the client re-sent it
because an acknowledgement was lost) and its readings are not stored again.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = ["DMEStore", "request_digest"]


def request_digest(method: str, body: bytes) -> str:
    """What identifies a request for duplicate counting: its method and body (every body
    a client sends carries its own mRIDs and times, so two distinct ones never match)."""
    return hashlib.sha256(method.encode() + b"\n" + body).hexdigest()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (lfdi TEXT PRIMARY KEY, href TEXT NOT NULL,
    sfdi INTEGER NOT NULL, pin INTEGER NOT NULL, registered REAL NOT NULL);
CREATE TABLE IF NOT EXISTS mups (href TEXT PRIMARY KEY, lfdi TEXT, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS controls (seq INTEGER PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kv (name TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS posts (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,
    lfdi TEXT, method TEXT NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL,
    sha TEXT NOT NULL, duplicate INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS posts_sha ON posts (sha);
CREATE TABLE IF NOT EXISTS readings (post INTEGER NOT NULL, mup TEXT NOT NULL,
    description TEXT, start INTEGER, value INTEGER);
CREATE TABLE IF NOT EXISTS responses (post INTEGER NOT NULL, subject TEXT NOT NULL,
    status INTEGER NOT NULL, created INTEGER, lfdi TEXT);
CREATE TABLE IF NOT EXISTS resources (lfdi TEXT NOT NULL, name TEXT NOT NULL,
    doc BLOB NOT NULL, time REAL NOT NULL, PRIMARY KEY (lfdi, name));
"""


class DMEStore:
    """The DME's SQLite file at ``path`` (``":memory:"`` for tests); ``now`` gives the time
    stamps (the reactor's ``seconds``; wall-clock time when not given)."""

    def __init__(self, path: str | Path, now: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self._now = now
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- what the DME hands out ------------------------------------------------------------

    def devices(self) -> list[tuple[str, str, int, int, float]]:
        """(lfdi, href, sfdi, pin, registered) in registration order."""
        return [tuple(r) for r in self._db.execute(  # type: ignore[misc]
            "SELECT lfdi, href, sfdi, pin, registered FROM devices ORDER BY rowid")]

    def add_device(self, lfdi: str, href: str, sfdi: int, pin: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?)",
                         (lfdi, href, sfdi, pin, self._now()))

    def mups(self) -> list[tuple[str, bytes]]:
        return [(r[0], bytes(r[1])) for r in self._db.execute(
            "SELECT href, doc FROM mups ORDER BY rowid")]

    def add_mup(self, href: str, lfdi: str | None, doc: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO mups VALUES (?, ?, ?)", (href, lfdi, doc))

    def controls(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._db.execute("SELECT doc FROM controls ORDER BY seq")]

    def save_control(self, seq: int, doc: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO controls VALUES (?, ?)", (seq, doc))

    def get(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM kv WHERE name = ?", (name,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def put(self, name: str, value: bytes | None) -> None:
        self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (name, value))

    # -- what devices send -----------------------------------------------------------------

    def record(self, lfdi: str | None, method: str, path: str, kind: str, body: bytes,
               readings: Iterable[tuple[str | None, int | None, int | None]] = (),
               response: tuple[str, int, int | None] | None = None) -> bool:
        """Record one request from a device; return False when it is a duplicate (the
        same body at the same path taken before), whose readings are not stored again."""
        sha = request_digest(method, body)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            dup = db.execute("SELECT 1 FROM posts WHERE sha = ? LIMIT 1", (sha,)).fetchone()
            cur = db.execute("INSERT INTO posts (time, lfdi, method, path, kind, sha, duplicate)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (self._now(), lfdi, method, path, kind, sha, 1 if dup else 0))
            post = cur.lastrowid
            if not dup:
                db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?)",
                               [(post, path, d, s, v) for d, s, v in readings])
                if response is not None:
                    db.execute("INSERT INTO responses VALUES (?, ?, ?, ?, ?)",
                               (post, response[0], response[1], response[2], lfdi))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return not dup

    def save_resource(self, lfdi: str, name: str, doc: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?)",
                         (lfdi, name, doc, self._now()))

    def resources(self, lfdi: str) -> dict[str, float]:
        """The resources a device PUT (name → when last)."""
        return {r[0]: r[1] for r in self._db.execute(
            "SELECT name, time FROM resources WHERE lfdi = ?", (lfdi,))}

    def counts(self) -> dict[str, dict[str, int]]:
        """Per kind of request: ``received`` (all), ``distinct`` and ``duplicates``."""
        out: dict[str, dict[str, int]] = {}
        for kind, total, dups in self._db.execute(
                "SELECT kind, COUNT(*), SUM(duplicate) FROM posts GROUP BY kind"):
            out[kind] = {"received": total, "distinct": total - (dups or 0),
                         "duplicates": dups or 0}
        return out

    def readings(self, limit: int = 20, mup: str | None = None) -> list[dict[str, Any]]:
        """The latest readings, newest first."""
        where, args = ("WHERE mup = ?", (mup,)) if mup else ("", ())
        return [{"mup": m, "description": d, "start": s, "value": v}
                for m, d, s, v in self._db.execute(
                    f"SELECT mup, description, start, value FROM readings {where} "
                    "ORDER BY rowid DESC LIMIT ?", (*args, limit))]

    def responses(self, subject: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, args = ("WHERE subject = ?", (subject,)) if subject else ("", ())
        return [{"subject": s, "status": st, "created": c, "lfdi": lf}
                for s, st, c, lf in self._db.execute(
                    f"SELECT subject, status, created, lfdi FROM responses {where} "
                    "ORDER BY rowid DESC LIMIT ?", (*args, limit))][::-1]

    def shas(self) -> set[str]:
        """Every distinct request taken (for tests comparing with a client's queue)."""
        return {r[0] for r in self._db.execute("SELECT DISTINCT sha FROM posts")}
