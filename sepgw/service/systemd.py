"""systemd service notifications (``Type=notify``), written here: no libsystemd, no dependency.

The role services add a :class:`SystemdNotifier` as their *last* child, and only when
``$NOTIFY_SOCKET`` is set (so nothing of this module is imported otherwise). Being last, it
starts once every other child has started (the EVSE's HTTPS listener is then accepting
connections) and stops first. It sends, as datagrams to ``$NOTIFY_SOCKET`` (a path, or an
abstract socket written ``@name``), see sd_notify(3):

* ``READY=1`` with the first ``STATUS=`` when it starts;
* ``STATUS=`` again whenever the status text changes (e.g. ``port1: authorized; port2:
  idle``). No polling: a log observer notices the events of the watched objects (each port
  state transition logs one) and the status is recomputed once per reactor turn;
* ``WATCHDOG=1`` from a reactor timer every half of ``$WATCHDOG_USEC`` (when
  ``$WATCHDOG_PID`` is unset or is this process), so systemd restarts a stalled reactor; a
  a READY or STATUS that could not be sent (systemd's queue full) rides along with the next
  ping;
* ``STOPPING=1`` when it stops.

The socket is non-blocking; a failed send is logged once (until a send succeeds again) and
never raises.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Mapping, cast

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger, globalLogPublisher

__all__ = ["SystemdNotifier", "evse_notifier", "notify_address", "pev_notifier",
           "watchdog_interval"]


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The address of ``$NOTIFY_SOCKET`` for ``socket.sendto`` (``@`` names an abstract
    socket, written with a leading NUL), or None when it is unset or empty."""
    value = environ.get("NOTIFY_SOCKET", "")
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    return value


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``; None when there is
    no watchdog for process ``pid`` (unset, or ``$WATCHDOG_PID`` names another process).

    Raises ValueError naming the variable when a value is not a positive integer."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner:
        if not owner.isdigit():
            raise ValueError(f"WATCHDOG_PID={owner!r} is not a process id")
        if int(owner) != pid:
            return None
    if not usec.isdigit() or int(usec) == 0:
        raise ValueError(f"WATCHDOG_USEC={usec!r} is not a positive number of microseconds")
    return int(usec) / 2e6


class SystemdNotifier(Service):
    """Tells systemd that the role is ready, how its ports are, that it is alive, and that
    it is stopping.

    ``status()`` gives the ``STATUS=`` text; ``watch(event)`` says whether a log event may
    have changed it. ``environ`` defaults to ``os.environ``."""

    log = Logger()

    def __init__(self, reactor: Any, status: Callable[[], str],
                 watch: Callable[[Mapping[str, Any]], bool] | None = None,
                 environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        self.setName("systemd")
        self._reactor = reactor
        self._status = status
        self._watch = watch
        environ = os.environ if environ is None else environ
        self.address = notify_address(environ)
        self.interval: float | None = None
        try:
            self.interval = watchdog_interval(environ, os.getpid() if pid is None else pid)
        except ValueError as e:
            self.log.error("systemd watchdog off: {error}", error=str(e))
        self._socket: socket.socket | None = None
        self._watchdog: LoopingCall | None = None
        self._pending: Any = None
        self._sent_status: str | None = None
        self._ready_sent = False
        self._failing = False

    # -- lifecycle ------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if self.address is None:
            return
        try:
            self._socket = socket.socket(socket.AF_UNIX,
                                         socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)
        except OSError as e:
            self.log.error("systemd notifications off: cannot create a socket: {error}",
                           error=e)
            self._socket = None
            return
        self._notify()  # READY=1 and the first STATUS=
        if self._watch is not None:
            globalLogPublisher.addObserver(cast(ILogObserver, self._observe))
        if self.interval is not None:
            self._watchdog = LoopingCall(self._ping)
            self._watchdog.clock = self._reactor
            self._watchdog.start(self.interval, now=True)
            self.log.info("systemd watchdog: pinging every {interval:g} s",
                          interval=self.interval)

    def stopService(self) -> None:
        super().stopService()
        if self._watch is not None and self._socket is not None:
            globalLogPublisher.removeObserver(cast(ILogObserver, self._observe))
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._watchdog = None
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        if self._socket is not None:
            self.send("STOPPING=1", "STATUS=stopping")
            self._socket.close()
            self._socket = None

    # -- sending --------------------------------------------------------------------------

    def send(self, *assignments: str) -> bool:
        """One datagram of ``VAR=value`` lines; True if it was sent. Never raises."""
        if self._socket is None or self.address is None:
            return False
        data = "\n".join(a.replace("\n", " ") for a in assignments).encode("utf-8", "replace")
        try:
            self._socket.sendto(data, self.address)
        except OSError as e:
            if not self._failing:
                self._failing = True
                self.log.error("systemd notification to {address} failed: {error} (further "
                               "failures not logged)",
                               address=self.address.replace("\0", "@"), error=e)
            return False
        if self._failing:
            self._failing = False
            self.log.info("systemd notifications delivered again")
        return True

    def _notify(self, *assignments: str) -> None:
        """Send ``assignments`` with whatever is owed: ``READY=1`` until it got through,
        ``STATUS=`` when the status differs from the last one delivered."""
        status = self._current_status()
        parts = list(assignments)
        if not self._ready_sent:
            parts.insert(0, "READY=1")
        if status != self._sent_status:
            parts.append(f"STATUS={status}")
        if parts and self.send(*parts):
            self._ready_sent = True
            self._sent_status = status

    def _ping(self) -> None:
        """``WATCHDOG=1``, with anything a failed send left owed."""
        self._notify("WATCHDOG=1")

    def _current_status(self) -> str:
        try:
            return self._status()
        except Exception as e:
            return f"status unavailable: {type(e).__name__}: {e}"

    def update_status(self) -> None:
        """Send ``STATUS=`` if the status text changed since last sent (a send that fails,
        e.g. systemd's queue is full, is retried with the next watchdog ping)."""
        self._pending = None
        self._notify()

    def _observe(self, event: Mapping[str, Any]) -> None:
        """Log observer: an event of a watched object schedules one status update."""
        assert self._watch is not None
        try:
            relevant = self._watch(event)
        except Exception:
            return
        if relevant and self._pending is None and self._socket is not None:
            self._pending = self._reactor.callLater(0, self.update_status)


def _from(sources: Callable[[], list[Any]]) -> Callable[[Mapping[str, Any]], bool]:
    """A watch predicate: the event was logged by one of ``sources()`` (by identity)."""
    def watch(event: Mapping[str, Any]) -> bool:
        source = event.get("log_source")
        return source is not None and any(source is s for s in sources())
    return watch


def evse_notifier(gateway: Any, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
    """The EVSE's notifier: ``STATUS=port1: authorized; port2: idle``, updated on every
    port state transition (the port controllers' log events)."""
    controllers = [p.controller for p in gateway.ports]

    def status() -> str:
        return "; ".join(f"{c.name}: {c.state.value}" for c in controllers)

    return SystemdNotifier(gateway.reactor, status, _from(lambda: controllers), environ)


def pev_notifier(role: Any, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
    """The PEV role's notifier: the J3072 client's state, authorization, sleep and
    communications, updated on the client's log events (``role.j3072`` is its service)."""
    service = role.j3072

    def status() -> str:
        client = service.client
        if client is None:
            return f"no 2030.5 session ({'looking for the EVSE' if service.running else 'idle'})"
        parts = [f"EVSE {service.url}", f"J3072 {client.state}",
                 "discharge authorized" if client.energize else "discharge not authorized"]
        if client.sleeping:
            parts.append("sleeping")
        if not client.comms_ok:
            parts.append("communications lost")
        return "; ".join(parts)

    def sources() -> list[Any]:
        return [service] if service.client is None else [service, service.client]

    return SystemdNotifier(role.reactor, status, _from(sources), environ)
