"""The uplink's durable queue (SQLite WAL): order, restart, bound, poisoned items."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from sepgw.uplink.queue import DurableQueue


class QueueTests(SynchronousTestCase):
    def path(self) -> Path:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        return directory / "q.sqlite"

    def drain(self, q: DurableQueue) -> list[bytes]:
        out = []
        while (item := q.head()) is not None:
            out.append(item.body)
            q.ack(item.id)
        return out

    def test_fifo_and_at_least_once(self) -> None:
        """Items come out in the order put; an item not acknowledged stays the head (it is
        sent again), so nothing leaves the queue without an acknowledgement."""
        q = DurableQueue(":memory:")
        for i in range(5):
            q.put("POST", "/mup/1", b"%d" % i, "reading")
        head = q.head()
        assert head is not None
        q.attempted(head.id)
        again = q.head()
        assert again is not None
        self.assertEqual((again.id, again.attempts), (head.id, 1))
        self.assertEqual(self.drain(q), [b"0", b"1", b"2", b"3", b"4"])
        self.assertEqual((q.stats()["delivered"], q.stats()["retried"]), (5, 1))

    def test_survives_restart(self) -> None:
        """What was put and not acknowledged is there after the queue is opened again, in
        order, with its counters."""
        path = self.path()
        q = DurableQueue(path)
        for i in range(3):
            q.put("POST", "/rsp", b"%d" % i, "response")
        first = q.head()
        assert first is not None
        q.ack(first.id)
        q.close()
        again = DurableQueue(path)
        self.assertEqual(len(again), 2)
        self.assertEqual(self.drain(again), [b"1", b"2"])
        self.assertEqual(again.stats()["put"], 3)

    def test_survives_kill_9(self) -> None:
        """Items put by a process that is then killed with SIGKILL (no clean close) are all
        there when the queue is opened again."""
        path = self.path()
        code = ("import os, signal, sys; from sepgw.uplink.queue import DurableQueue\n"
                "q = DurableQueue(sys.argv[1])\n"
                "[q.put('POST', '/mup/1', b'%d' % i, 'reading') for i in range(200)]\n"
                "os.kill(os.getpid(), signal.SIGKILL)\n")
        proc = subprocess.run([sys.executable, "-c", code, str(path)],
                              cwd=Path(__file__).resolve().parent.parent,
                              env=dict(os.environ))
        self.assertEqual(proc.returncode, -9)
        q = DurableQueue(path)
        self.assertEqual(self.drain(q), [b"%d" % i for i in range(200)])

    def test_bound_drops_oldest_and_counts(self) -> None:
        """A full queue drops its oldest items to take new ones, and counts them."""
        q = DurableQueue(":memory:", max_items=3)
        for i in range(5):
            q.put("POST", "/mup/1", b"%d" % i, "reading")
        self.assertEqual(len(q), 3)
        self.assertEqual(q.stats()["dropped"], 2)
        self.assertEqual(self.drain(q), [b"2", b"3", b"4"])

    def test_poisoned_set_aside(self) -> None:
        """A poisoned item leaves the queue (the next becomes the head) and is kept aside
        with its reason."""
        q = DurableQueue(":memory:")
        q.put("POST", "/mup/9", b"a", "reading")
        q.put("POST", "/mup/1", b"b", "reading")
        head = q.head()
        assert head is not None
        q.poison(head.id, "404 no such MirrorUsagePoint")
        self.assertEqual(q.poisoned(), [(head.id, "reading", "/mup/9",
                                         "404 no such MirrorUsagePoint")])
        self.assertEqual(self.drain(q), [b"b"])
        self.assertEqual(q.stats()["poisoned"], 1)
