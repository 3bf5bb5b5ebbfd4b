"""Network namespaces and veth pairs for root-only tests (created and removed by the test).

    net = Netns(testcase)              # skips the test unless root with `ip netns`
    a, b = net.namespace("evse"), net.namespace("pev")
    net.veth("evse0", a, "pev0", b)    # both ends up, IPv6 link-local addresses
    net.run(a, "ip", "-6", "addr", "add", "fd00::1/64", "dev", "evse0")
    proc = net.popen(b, sys.executable, "script.py")   # a subprocess inside a namespace

Everything created is removed by the test's cleanups, also when the test fails. Names get
a random suffix so parallel test runs never collide.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from typing import Any

from twisted.trial.unittest import SkipTest


def available() -> str | None:
    """None when network namespaces can be used here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and veth pairs)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` command"
    probe = f"sepgw-probe-{secrets.token_hex(3)}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"`ip netns add` does not work here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Netns:
    """Namespaces and veth pairs owned by one test case."""

    def __init__(self, testcase: Any) -> None:
        reason = available()
        if reason is not None:
            raise SkipTest(reason)
        self.testcase = testcase
        self.tag = secrets.token_hex(3)

    def namespace(self, name: str) -> str:
        """Create namespace ``<name>-<tag>`` with loopback up; return its name."""
        ns = f"{name}-{self.tag}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        self.testcase.addCleanup(subprocess.run, ["ip", "netns", "del", ns],
                                 capture_output=True)
        self.run(ns, "ip", "link", "set", "lo", "up")
        return ns

    def veth(self, a_name: str, a_ns: str, b_name: str, b_ns: str) -> None:
        """A veth pair ``a_name`` in ``a_ns`` and ``b_name`` in ``b_ns``, both up.

        Interface names are limited to 15 characters by the kernel.
        """
        tmp_a, tmp_b = f"va{self.tag}{len(a_name)}", f"vb{self.tag}{len(b_name)}"
        subprocess.run(["ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b],
                       check=True)
        for tmp, name, ns in ((tmp_a, a_name, a_ns), (tmp_b, b_name, b_ns)):
            subprocess.run(["ip", "link", "set", tmp, "netns", ns], check=True)
            self.run(ns, "ip", "link", "set", tmp, "name", name)
            self.run(ns, "ip", "link", "set", name, "up")

    def run(self, ns: str, *argv: str, check: bool = True, timeout: float = 30
            ) -> subprocess.CompletedProcess[str]:
        """Run a command inside ``ns`` and wait for it."""
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True,
                              text=True, check=check, timeout=timeout)

    def popen(self, ns: str, *argv: str, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command inside ``ns``; it is killed at cleanup if still running."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)

        def stop() -> None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

        self.testcase.addCleanup(stop)
        return proc

    def sysctl(self, ns: str, key: str, value: str) -> None:
        """Set a sysctl inside ``ns`` (e.g. ``net.ipv6.conf.all.forwarding``, ``1``)."""
        self.run(ns, "sysctl", "-q", "-w", f"{key}={value}")
