"""systemd integration: sd_notify datagrams (sepgw.service.systemd) and the unit files.

The notify socket is a real AF_UNIX datagram socket bound in a temporary directory, read
the way systemd reads it: one datagram per notification, newline-separated ``VAR=value``
assignments (sd_notify(3)). What is right is written out here from sd_notify(3) and
systemd.service(5): ``READY=1`` once start-up is complete, ``WATCHDOG=1`` at least every
``WATCHDOG_USEC`` microseconds (sd_watchdog_enabled(3) advises every half of it) and only by
the process named in ``WATCHDOG_PID`` when that is set, ``STOPPING=1`` when stopping.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, cast
from contextlib import contextmanager

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, Logger, LogLevel, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from sepgw.config import load
from sepgw.service.evse import EVSEGateway
from sepgw.service.systemd import SystemdNotifier, notify_address, watchdog_interval
from tests.helpers import evse_config, shared_pki
from tests.processes import REPO, TWISTD, Process, free_port
from tests.test_e2e_twistd import write_configs

UNITS = REPO / "etc" / "systemd"


class NotifySocket:
    """systemd's side of $NOTIFY_SOCKET: a bound datagram socket whose datagrams are read.

    Like systemd, waiting on one drains every open one: a datagram socket queues only
    ``net.unix.max_dgram_qlen`` (10) datagrams, after which the sender's sends fail."""

    instances: list["NotifySocket"] = []

    def __init__(self, abstract: bool = False) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"sepgw-test-{os.getpid()}-{id(self)}"
            self.socket.bind("\0" + name)
            self.env = "@" + name
            self._dir: str | None = None
        else:
            # Socket paths are limited to ~100 bytes: a short temporary directory.
            self._dir = tempfile.mkdtemp(prefix="sdn-")
            path = os.path.join(self._dir, "notify")
            self.socket.bind(path)
            self.env = path
        self.socket.setblocking(False)
        self.received: list[str] = []
        NotifySocket.instances.append(self)

    def close(self) -> None:
        NotifySocket.instances.remove(self)
        self.socket.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def drain(self) -> list[str]:
        """Every datagram waiting now (sends on a local datagram socket are synchronous)."""
        got = []
        while True:
            try:
                got.append(self.socket.recv(4096).decode())
            except BlockingIOError:
                break
        self.received += got
        return got

    def wait_for(self, match: Callable[[str], bool], timeout: float = 30.0,
                 process: Process | None = None) -> str:
        """The first datagram (already received or arriving within ``timeout``) matching;
        on failure the message shows what came (and the ``process``'s output)."""
        for datagram in self.received:
            if match(datagram):
                return datagram
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([n.socket for n in NotifySocket.instances], [], [], left)[0]:
                continue
            for other in NotifySocket.instances:
                if other is not self:
                    other.drain()
            for datagram in self.drain():
                if match(datagram):
                    return datagram
        got = [d for d in self.received if d != "WATCHDOG=1"]
        pings = len(self.received) - len(got)
        output = "" if process is None else f"; output:\n{process.output}"
        raise AssertionError(f"no matching datagram within {timeout} s; got {got} and "
                             f"{pings} WATCHDOG=1{output}")


def fields(datagram: str) -> dict[str, str]:
    """The ``VAR=value`` assignments of one notification datagram."""
    return dict(line.split("=", 1) for line in datagram.split("\n") if line)


class Watched:
    """An object whose state changes are announced by a log event, like a port controller."""

    log = Logger()

    def __init__(self) -> None:
        self.state = "idle"

    def set(self, state: str) -> None:
        self.state = state
        self.log.info("now {state}", state=state)


def capture_log(test: SynchronousTestCase) -> list[dict[str, Any]]:
    """Every log event from now until the end of ``test``."""
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    test.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


class NotifierTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sock = NotifySocket()
        self.addCleanup(self.sock.close)
        self.clock = Clock()

    def notifier(self, env: dict[str, str] | None = None, watched: Watched | None = None,
                 pid: int = 4242) -> SystemdNotifier:
        environ = {"NOTIFY_SOCKET": self.sock.env, **(env or {})}
        watched = watched or Watched()
        notifier = SystemdNotifier(self.clock, lambda: f"port1: {watched.state}",
                                   lambda e: e.get("log_source") is watched, environ, pid=pid)
        self.addCleanup(lambda: notifier.stopService() if notifier.running else None)
        return notifier

    def test_ready_with_status_on_start_stopping_on_stop(self) -> None:
        """Start sends one datagram with READY=1 and the STATUS text; stop sends STOPPING=1
        (sd_notify(3)); nothing else is sent without a watchdog."""
        notifier = self.notifier()
        notifier.startService()
        [ready] = self.sock.drain()
        self.assertEqual(fields(ready), {"READY": "1", "STATUS": "port1: idle"})
        self.clock.advance(3600)
        self.assertEqual(self.sock.drain(), [])
        notifier.stopService()
        [stopping] = self.sock.drain()
        self.assertEqual(fields(stopping)["STOPPING"], "1")

    def test_watchdog_every_half_of_watchdog_usec(self) -> None:
        """WATCHDOG_USEC=10 s: WATCHDOG=1 at start, then every 5 s of the reactor's clock
        (half, as sd_watchdog_enabled(3) advises); none after stop."""
        notifier = self.notifier({"WATCHDOG_USEC": "10000000"})
        notifier.startService()
        self.assertEqual([fields(d) for d in self.sock.drain()],
                         [{"READY": "1", "STATUS": "port1: idle"}, {"WATCHDOG": "1"}])
        self.clock.advance(4.9)
        self.assertEqual(self.sock.drain(), [])
        self.clock.advance(0.1)
        self.assertEqual(self.sock.drain(), ["WATCHDOG=1"])
        self.clock.pump([5.0] * 3)
        self.assertEqual(self.sock.drain(), ["WATCHDOG=1"] * 3)
        notifier.stopService()
        self.sock.drain()
        self.clock.advance(60)
        self.assertEqual(self.sock.drain(), [])

    def test_watchdog_pid_honoured(self) -> None:
        """WATCHDOG_PID naming another process: no pings from this one; naming this one:
        pings (sd_watchdog_enabled(3))."""
        other = self.notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, pid=4242)
        other.startService()
        self.clock.advance(10)
        self.assertNotIn("WATCHDOG=1", self.sock.drain())
        other.stopService()
        self.sock.drain()
        own = self.notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4242"}, pid=4242)
        own.startService()
        self.clock.advance(1.0)
        self.assertEqual(self.sock.drain()[1:], ["WATCHDOG=1", "WATCHDOG=1"])

    def test_status_sent_on_change_only_once_per_reactor_turn(self) -> None:
        """A watched object's log event makes the status be recomputed on the next reactor
        turn and sent if it changed: two changes in one turn give one STATUS with the last
        state; an event that changes nothing and other objects' events send nothing."""
        watched = Watched()
        notifier = self.notifier(watched=watched)
        notifier.startService()
        self.sock.drain()
        watched.set("linked")
        watched.set("authorized")
        self.assertEqual(self.sock.drain(), [])  # not from inside the log observer
        self.clock.advance(0)
        self.assertEqual(self.sock.drain(), ["STATUS=port1: authorized"])
        watched.log.info("something else")
        Watched().set("sleeping")
        self.clock.advance(0)
        self.assertEqual(self.sock.drain(), [])
        notifier.stopService()
        watched.set("idle")
        self.clock.advance(0)
        self.assertEqual([fields(d) for d in self.sock.drain()],
                         [{"STOPPING": "1", "STATUS": "stopping"}])

    def test_status_and_ready_retried_with_the_next_ping(self) -> None:
        """When systemd's queue is full (sends fail with EAGAIN), a status change that
        could not be sent rides along with the next WATCHDOG=1 once the queue has room, so
        systemd never keeps a stale STATUS."""
        events = capture_log(self)
        watched = Watched()
        notifier = self.notifier({"WATCHDOG_USEC": "2000000"}, watched=watched)
        notifier.startService()
        for _ in range(10000):  # fill the receiver's queue: pings until one is refused
            if errors := [e for e in events if e.get("log_level") is LogLevel.error]:
                break
            self.clock.advance(1.0)
        self.assertIn("failed", errors[0]["log_format"])
        watched.set("authorized")
        self.clock.advance(0)  # the STATUS send fails too
        queued = self.sock.drain()
        self.assertNotIn("STATUS=port1: authorized", "\n".join(queued))
        self.clock.advance(1.0)
        self.assertEqual([fields(d) for d in self.sock.drain()],
                         [{"WATCHDOG": "1", "STATUS": "port1: authorized"}])
        self.clock.advance(1.0)
        self.assertEqual(self.sock.drain(), ["WATCHDOG=1"])

    def test_abstract_socket(self) -> None:
        """NOTIFY_SOCKET=@name is the abstract socket "\\0name" (sd_notify(3))."""
        self.assertEqual(notify_address({"NOTIFY_SOCKET": "@x/y"}), "\0x/y")
        self.assertEqual(notify_address({"NOTIFY_SOCKET": "/run/n"}), "/run/n")
        self.assertIsNone(notify_address({"NOTIFY_SOCKET": ""}))
        abstract = NotifySocket(abstract=True)
        self.addCleanup(abstract.close)
        notifier = SystemdNotifier(self.clock, lambda: "ok", None,
                                   {"NOTIFY_SOCKET": abstract.env})
        notifier.startService()
        self.assertEqual(abstract.drain(), ["READY=1\nSTATUS=ok"])
        notifier.stopService()

    def test_unset_notify_socket_is_a_no_op(self) -> None:
        """Without NOTIFY_SOCKET nothing is opened, sent or scheduled, and no log observer
        is added."""
        before = len(globalLogPublisher._observers)
        notifier = SystemdNotifier(self.clock, lambda: "ok", lambda e: True,
                                   {"WATCHDOG_USEC": "1000000"})
        notifier.startService()
        self.assertEqual(len(globalLogPublisher._observers), before)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(notifier.send("READY=1"))
        notifier.stopService()

    def test_send_failures_logged_once_never_raised(self) -> None:
        """A socket nobody listens on: every send fails without raising, the first failure
        is logged with the address, later ones are not; the watchdog keeps running."""
        events = capture_log(self)
        gone = os.path.join(tempfile.mkdtemp(prefix="sdn-"), "nobody")
        self.addCleanup(shutil.rmtree, os.path.dirname(gone), True)
        notifier = SystemdNotifier(self.clock, lambda: "ok", None,
                                   {"NOTIFY_SOCKET": gone, "WATCHDOG_USEC": "1000000"})
        notifier.startService()
        self.clock.pump([0.5] * 10)
        notifier.stopService()
        errors = [e for e in events if e.get("log_source") is notifier
                  and "failed" in e.get("log_format", "")]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["address"], gone)

    def test_bad_watchdog_values(self) -> None:
        """A WATCHDOG_USEC or WATCHDOG_PID that is not a number is an error naming the
        variable; the notifier then runs without a watchdog."""
        with self.assertRaisesRegex(ValueError, "WATCHDOG_USEC='soon'"):
            watchdog_interval({"WATCHDOG_USEC": "soon"}, 1)
        with self.assertRaisesRegex(ValueError, "WATCHDOG_PID='me'"):
            watchdog_interval({"WATCHDOG_USEC": "1", "WATCHDOG_PID": "me"}, 1)
        with self.assertRaisesRegex(ValueError, "WATCHDOG_USEC='0'"):
            watchdog_interval({"WATCHDOG_USEC": "0"}, 1)
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "3000000"}, 1), 1.5)
        self.assertIsNone(watchdog_interval({}, 1))
        notifier = self.notifier({"WATCHDOG_USEC": "soon"})
        notifier.startService()
        self.clock.advance(100)
        self.assertNotIn("WATCHDOG=1", self.sock.drain())


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set, restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class GatewayWiringTests(SynchronousTestCase):
    def gateway(self) -> tuple[EVSEGateway, MemoryReactorClock]:
        reactor = MemoryReactorClock()
        path = evse_config(Path(self.mktemp()), pki=shared_pki(), port=18443)
        return EVSEGateway(load(path, "evse"), reactor), reactor

    def test_notifier_is_last_child_ready_after_https(self) -> None:
        """With NOTIFY_SOCKET set the EVSE's notifier is its last child: READY=1 only once
        the HTTPS server listens, with the port's state as STATUS; a port transition (the
        transport reports the link down) updates STATUS; stop sends STOPPING=1 first."""
        sock = NotifySocket()
        self.addCleanup(sock.close)
        with environment(NOTIFY_SOCKET=sock.env):
            gateway, reactor = self.gateway()
        self.assertEqual([s.name for s in gateway][-2:], ["https", "systemd"])
        notifier = gateway.getServiceNamed("systemd")
        listening_at_send: list[int] = []
        send = notifier.send

        def recording_send(*assignments: str) -> bool:
            listening_at_send.append(len(reactor.tcpServers))
            return send(*assignments)

        self.patch(notifier, "send", recording_send)
        gateway.startService()
        self.successResultOf(gateway.started)
        self.assertEqual(listening_at_send, [1])  # READY was sent with HTTPS listening
        self.assertEqual([fields(d) for d in sock.drain()],
                         [{"READY": "1", "STATUS": "port1: linked"}])
        gateway.ports[0].transport.stop()  # the link goes down: port1 idle
        reactor.advance(0)
        self.assertEqual(sock.drain(), ["STATUS=port1: idle"])
        self.successResultOf(gateway.stopService())
        self.assertEqual([fields(d) for d in sock.drain()],
                         [{"STOPPING": "1", "STATUS": "stopping"}])

    def test_nothing_imported_without_notify_socket(self) -> None:
        """Without NOTIFY_SOCKET the EVSE has no notifier and never imports the module (the
        idle memory of the default configuration does not grow)."""
        path = evse_config(Path(self.mktemp()).absolute(), pki=shared_pki(), port=18443)
        code = ("import sys\n"
                "from twisted.internet.testing import MemoryReactorClock\n"
                "from sepgw.config import load\n"
                "from sepgw.service.evse import EVSEGateway\n"
                f"g = EVSEGateway(load({str(path)!r}, 'evse'), MemoryReactorClock())\n"
                "g.startService()\n"
                "print([s.name for s in g], 'sepgw.service.systemd' in sys.modules)\n")
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                             capture_output=True, text=True).stdout
        self.assertEqual(out.strip(), "['port1', 'https'] False")


def tls_handshake(port: int, pki: Path) -> str:
    """A TLS 1.2 handshake with the EVSE on [::1]:port as the test PEV; the cipher used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(str(pki / "serca.pem"))
    context.load_cert_chain(str(pki / "pev.pem"), str(pki / "pev.key"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-CCM8")
    with socket.create_connection(("::1", port), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            cipher = tls.cipher()
            assert cipher is not None
            return cipher[0]


class TwistdNotifyTests(SynchronousTestCase):
    def test_twistd_under_a_notify_socket(self) -> None:
        """Real `twistd -n sepgw` and `twistd -n sepgw-pev` with NOTIFY_SOCKET and
        WATCHDOG_USEC, as systemd starts them: the EVSE's READY=1 arrives when its HTTPS
        port already completes a mutual-TLS handshake (V2G-4.1.3-2), WATCHDOG=1 keeps
        coming from the reactor, STATUS follows port1 to "authorized" once the PEV is, the
        PEV reports READY and its authorization, and SIGTERM gives STOPPING=1."""
        pki = shared_pki()
        port = free_port()
        evse_cfg, pev_cfg = write_configs(Path(self.mktemp()).absolute(), port, pki)
        evse_sock, pev_sock = NotifySocket(), NotifySocket()
        self.addCleanup(evse_sock.close)
        self.addCleanup(pev_sock.close)
        with environment(NOTIFY_SOCKET=evse_sock.env, WATCHDOG_USEC="400000"):
            evse = Process.twistd("sepgw", evse_cfg)
        self.addCleanup(evse.kill)
        ready = evse_sock.wait_for(lambda d: "READY=1" in d.split("\n"))
        self.assertEqual(tls_handshake(port, pki), "ECDHE-ECDSA-AES128-CCM8")
        self.assertEqual(evse_sock.received[0], ready)  # nothing before READY
        self.assertEqual(fields(ready)["STATUS"], "port1: linked")
        started = time.monotonic()
        for _ in range(3):
            evse_sock.received.clear()
            evse_sock.wait_for(lambda d: d == "WATCHDOG=1", timeout=10)
        self.assertLess(time.monotonic() - started, 10)

        with environment(NOTIFY_SOCKET=pev_sock.env, WATCHDOG_USEC="400000"):
            pev = Process.twistd("sepgw-pev", pev_cfg)
        self.addCleanup(pev.kill)
        pev_ready = pev_sock.wait_for(lambda d: "READY=1" in d.split("\n"))
        self.assertIn("J3072", fields(pev_ready)["STATUS"])
        pev_sock.wait_for(lambda d: "discharge authorized" in fields(d).get("STATUS", ""),
                          process=pev)
        evse_sock.wait_for(lambda d: fields(d).get("STATUS") == "port1: authorized",
                           process=evse)
        pev_sock.wait_for(lambda d: d == "WATCHDOG=1")

        self.assertEqual(pev.terminate(), -signal.SIGTERM, pev.output)
        pev_sock.wait_for(lambda d: fields(d).get("STOPPING") == "1", timeout=5)
        self.assertEqual(evse.terminate(), -signal.SIGTERM, evse.output)
        evse_sock.wait_for(lambda d: fields(d).get("STOPPING") == "1", timeout=5)
        self.assertIn("contactor open", evse.output)
        self.assertNotIn("Traceback", evse.output + pev.output)
        self.assertNotIn("systemd notification", evse.output + pev.output)


class UnitFileTests(SynchronousTestCase):
    def units(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted(UNITS.glob("*.service"))}

    def directives(self, text: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for line in text.splitlines():
            if line and not line.startswith(("#", "[")):
                key, _, value = line.partition("=")
                found.setdefault(key, []).append(value)
        return found

    def test_units_ask_for_what_the_issue_asks(self) -> None:
        """Both units: Type=notify with a watchdog, restart on failure, a dedicated user
        with its own state directory, exactly CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE
        (ambient and bounding), ProtectSystem=strict and the other hardening, the twistd
        command in the foreground without a pidfile, stopped by SIGTERM."""
        caps = {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"}
        families = {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"}
        commands = {"sepgw.service": "sepgw --config /etc/sepgw/sepgw.toml",
                    "sepgw-pev.service": "sepgw-pev --config /etc/sepgw/pev.toml"}
        state = {"sepgw.service": "sepgw", "sepgw-pev.service": "sepgw-pev"}
        units = self.units()
        self.assertEqual(set(units), set(commands))
        for name, text in units.items():
            d = self.directives(text)
            with self.subTest(unit=name):
                for key, value in {"Type": "notify", "Restart": "on-failure",
                                   "User": "sepgw", "StateDirectory": state[name],
                                   "ConfigurationDirectory": "sepgw",
                                   "ProtectSystem": "strict", "ProtectHome": "yes",
                                   "PrivateTmp": "yes", "NoNewPrivileges": "yes",
                                   "KillSignal": "SIGTERM"}.items():
                    self.assertEqual(d.get(key), [value], key)
                self.assertGreater(int(d["WatchdogSec"][0]), 0)
                self.assertNotIn("DynamicUser", d)
                self.assertEqual(set(d["AmbientCapabilities"][0].split()), caps)
                self.assertEqual(set(d["CapabilityBoundingSet"][0].split()), caps)
                self.assertEqual(set(d["RestrictAddressFamilies"][0].split()), families)
                [start] = d["ExecStart"]
                argv = start.split()
                self.assertTrue(argv[0].endswith("/twistd") and argv[0].startswith("/"))
                self.assertEqual(argv[1:3], ["-n", "--pidfile="])
                self.assertEqual(" ".join(argv[3:]), commands[name])

    def test_systemd_analyze_verify(self) -> None:
        """`systemd-analyze verify` accepts both units without a warning (ExecStart pointed
        at this test's twistd, since verify checks that the program exists)."""
        tool = shutil.which("systemd-analyze")
        if tool is None:
            raise SkipTest("systemd-analyze is not installed (package systemd)")
        directory = Path(self.mktemp()).absolute()
        directory.mkdir(parents=True)
        for name, text in self.units().items():
            (directory / name).write_text(text.replace("/opt/sepgw/bin/twistd", TWISTD))
        paths = [str(directory / name) for name in self.units()]
        result = subprocess.run([tool, "verify", *paths], capture_output=True, text=True)
        ours = [line for line in (result.stdout + result.stderr).splitlines()
                if any(name in line for name in self.units())]
        self.assertEqual((result.returncode, ours), (0, []), result.stderr)
