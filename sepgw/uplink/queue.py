"""The durable store-and-forward queue of everything bound for the DME (readings, status,
responses): SQLite in WAL mode, stdlib :mod:`sqlite3`.

Guarantees (docs/uplink.md): items are delivered in the order they were put (one head at a
time), at least once: an item leaves the queue only when the DME acknowledged it (2xx), is
set aside as *poisoned* (a 4xx answer: the DME will never take it), or is dropped because the
queue is full (``max_items``: oldest first, counted in ``dropped``). A put is committed before
:meth:`DurableQueue.put` returns; with ``synchronous=NORMAL`` in WAL mode a commit survives
the process being killed (kill -9) but not a power cut of the machine in the last moments.

Writes are small single-row transactions (tens of microseconds) on the reactor thread;
nothing here blocks on the network.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DurableQueue", "Item"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT NOT NULL,
    href TEXT NOT NULL,
    body BLOB NOT NULL,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS poisoned (
    id INTEGER PRIMARY KEY,
    method TEXT NOT NULL,
    href TEXT NOT NULL,
    body BLOB NOT NULL,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Item:
    """One queued request."""
    id: int
    method: str
    href: str
    body: bytes
    kind: str
    created: float
    attempts: int


class DurableQueue:
    """A bounded FIFO of requests in ``path`` (``":memory:"`` for tests)."""

    def __init__(self, path: str | Path, max_items: int = 100_000,
                 max_poisoned: int = 1000) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.path = str(path)
        self.max_items = max_items
        self.max_poisoned = max_poisoned
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._count = int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    # -- counters --------------------------------------------------------------------------

    def _bump(self, name: str, by: int = 1) -> None:
        self._db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE "
                         "SET value = value + excluded.value", (name, by))

    def counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def stats(self) -> dict[str, Any]:
        """Length and counters, for status and logs."""
        return {"queued": self._count, "max_items": self.max_items,
                **{n: self.counter(n) for n in ("put", "delivered", "dropped", "poisoned",
                                                "retried")}}

    def __len__(self) -> int:
        return self._count

    # -- queue -----------------------------------------------------------------------------

    def put(self, method: str, href: str, body: bytes, kind: str,
            created: float | None = None) -> int:
        """Append a request (committed on return); when full, the oldest items are dropped
        to make room (counted in ``dropped``). Returns the new item's id."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            over = self._count + 1 - self.max_items
            if over > 0:
                db.execute("DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY id "
                           "LIMIT ?)", (over,))
                self._bump("dropped", over)
                self._count -= over
            cur = db.execute("INSERT INTO items (method, href, body, kind, created) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (method, href, body, kind,
                              time.time() if created is None else created))
            self._bump("put")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._count += 1
        return int(cur.lastrowid or 0)

    def head(self) -> Item | None:
        """The oldest item, without removing it."""
        row = self._db.execute("SELECT id, method, href, body, kind, created, attempts "
                               "FROM items ORDER BY id LIMIT 1").fetchone()
        return None if row is None else Item(row[0], row[1], row[2], bytes(row[3]), row[4],
                                             row[5], row[6])

    def attempted(self, item_id: int) -> None:
        """Count a failed delivery attempt of an item (a retry follows)."""
        self._db.execute("UPDATE items SET attempts = attempts + 1 WHERE id = ?", (item_id,))
        self._bump("retried")

    def ack(self, item_id: int) -> None:
        """The DME took the item: remove it."""
        if self._db.execute("DELETE FROM items WHERE id = ?", (item_id,)).rowcount:
            self._count -= 1
            self._bump("delivered")

    def poison(self, item_id: int, reason: str) -> None:
        """The DME refused the item for good (4xx): set it aside with the reason; only the
        latest ``max_poisoned`` are kept."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT OR REPLACE INTO poisoned SELECT id, method, href, body, kind, "
                       "created, ? FROM items WHERE id = ?", (reason, item_id))
            if db.execute("DELETE FROM items WHERE id = ?", (item_id,)).rowcount:
                self._count -= 1
                self._bump("poisoned")
            db.execute("DELETE FROM poisoned WHERE id NOT IN (SELECT id FROM poisoned "
                       "ORDER BY id DESC LIMIT ?)", (self.max_poisoned,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def poisoned(self) -> list[tuple[int, str, str, str]]:
        """(id, kind, href, reason) of the items set aside, oldest first."""
        return [tuple(r) for r in self._db.execute(  # type: ignore[misc]
            "SELECT id, kind, href, reason FROM poisoned ORDER BY id")]
