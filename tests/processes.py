"""Real processes for end-to-end tests: start twistd, wait for log lines, stop with SIGTERM."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TWISTD = str(Path(sys.executable).parent / "twistd")
"""The twistd script installed next to the interpreter running the tests."""


def free_port(host: str = "::1", kind: int = socket.SOCK_STREAM) -> int:
    """A TCP (or, with ``kind=socket.SOCK_DGRAM``, UDP) port that was free on ``host`` a
    moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Process:
    """A child process whose combined output is read line by line with deadlines."""

    def __init__(self, args: list[str], cwd: Path = REPO) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.args = args
        self.popen = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, bufsize=0)
        self.lines: list[str] = []
        self._pending: list[str] = []
        self._partial = b""
        self._eof = False
        self._selector = selectors.DefaultSelector()
        assert self.popen.stdout is not None
        self._selector.register(self.popen.stdout, selectors.EVENT_READ)

    @classmethod
    def twistd(cls, plugin: str, config: Path, *options: str) -> "Process":
        return cls([TWISTD, "-n", "--pidfile=", plugin, "--config", str(config), *options])

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def _read_line(self, timeout: float) -> str | None:
        """The next line; "" at end of output; None if none came within ``timeout``.

        Reads the pipe's file descriptor directly (no buffered reader), so that lines that
        arrived together are never hidden from the selector in a buffer."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        while not self._pending:
            if self._eof:
                return ""
            if not self._selector.select(max(0.0, deadline - time.monotonic())):
                return None
            chunk = os.read(self.popen.stdout.fileno(), 65536)
            if not chunk:
                self._eof = True
                if self._partial:
                    self._pending.append(self._partial.decode("utf-8", "replace"))
                    self._partial = b""
                continue
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            self._pending += [c.decode("utf-8", "replace") + "\n" for c in complete]
        line = self._pending.pop(0)
        self.lines.append(line)
        return line

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Read output until a line matches ``pattern``; fail with the output on timeout."""
        regex = re.compile(pattern)
        for line in self.lines:
            if m := regex.search(line):
                return m
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            line = self._read_line(left)
            if line == "":
                break  # EOF: the process ended
            if line and (m := regex.search(line)):
                return m
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s from "
                             f"{' '.join(self.args)}; output:\n{self.output}")

    def finish(self, timeout: float = 20.0) -> int:
        """Read the rest of the output and return the exit code."""
        deadline = time.monotonic() + timeout
        while self._read_line(max(0.0, deadline - time.monotonic())):
            pass
        return self.popen.wait(max(0.1, deadline - time.monotonic()))

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, then read everything until exit; return the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        assert self.popen.stdout is not None
        self.popen.stdout.close()
        self._selector.close()
