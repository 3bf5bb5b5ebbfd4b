"""What both roles' service makers share: options, config loading, logging, TLS, components."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from twisted.application.service import Service
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.components import Componentized

from sepgw import logs
from sepgw.config import DEFAULT_PATHS, Config, ConfigError, load, validate
from sepgw.config.loader import read_toml
from sepgw.interfaces import BuildContext
from sepgw.security.tls import TLSConfigError, TLSSettings
from sepgw.service.components import ComponentError, build_component
from sepgw.service.tree import ComponentService, OrderedMultiService


def options_for(role: str, extra: list[list[Any]] | None = None,
                override: Any = None) -> type[usage.Options]:
    """A twistd Options class for ``role`` whose ``postOptions`` validates the config.

    ``extra`` adds option parameters; ``override(options, raw_toml)`` may change the parsed
    configuration from them before it is validated (command-line overrides)."""

    class Options(usage.Options):
        synopsis = f"[--config {DEFAULT_PATHS[role]}]"
        optParameters = [
            ["config", "c", str(DEFAULT_PATHS[role]), "Configuration file (TOML)."],
            *(extra or []),
        ]
        longdesc = ("The configuration is validated before anything starts; every problem "
                    "is reported with its key path. See docs/configuration.md.")

        def postOptions(self) -> None:
            path = Path(self["config"])
            try:
                if override is None:
                    self.loaded = load(path, role)  # type: ignore[arg-type]
                else:
                    raw = read_toml(path)
                    override(self, raw)
                    self.loaded = validate(raw, role, source=path)  # type: ignore[arg-type]
            except ConfigError as e:
                raise usage.UsageError(str(e))

    Options.__name__ = f"{role.upper()}Options"
    return Options


def tls_settings(config: Config) -> TLSSettings:
    """The TLS settings of the ``[tls]`` section, loaded now (files read and checked)."""
    tls = config["tls"]
    try:
        return TLSSettings(cert=tls["cert"], key=tls["key"], ca=tuple(tls["ca"]),
                           ciphers=tls["ciphers"], keylog=tls["keylog"])
    except TLSConfigError as e:
        raise StartupError(f"{config.source}: tls: {e}") from e


def find_malloc_trim(libc: Any = None) -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)`` as a callable, or None where the C library has none (musl,
    macOS) or cannot be loaded. ``libc``: the loaded C library (default: found by ctypes)."""
    import ctypes
    import ctypes.util

    if libc is None:
        name = ctypes.util.find_library("c")
        if not name:
            return None
        try:
            libc = ctypes.CDLL(name)
        except OSError:
            return None
    try:
        function = libc.malloc_trim
    except AttributeError:
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return lambda: function(0)


def release_startup_memory() -> None:
    """Once everything is up: collect start-up garbage (configuration parsing, generated
    codecs, plugin discovery) and hand the freed heap back to the operating system, so that
    the idle resident memory of a small appliance is what it really uses."""
    import gc

    gc.collect()
    # Once, at start-up only: what is frozen is never collected, so freezing again later
    # (e.g. per PEV session) would pin the garbage of every ended session for good.
    gc.freeze()
    trim = find_malloc_trim()
    if trim is not None:  # glibc only; harmless to skip elsewhere
        trim()


def prepare_session_codecs() -> None:
    """Generate the fast codecs of every resource a V2G-AC session exchanges
    (``sepgw.model.SESSION_TYPES``) now, before the role listens or connects: generated on
    first use, they cost the first session about 0.2 s, in the EVSE and in the PEV."""
    from sepgw.model import SESSION_TYPES, prepare

    for cls in SESSION_TYPES:
        prepare(cls)


#: Seconds between two heap trims of :class:`HeapTrimmer` (the EVSE role).
HEAP_TRIM_INTERVAL_S = 60.0


class HeapTrimmer(Service):
    """Every ``interval`` seconds, hand the C heap's free pages back to the operating system
    (glibc's ``malloc_trim(0)``; nothing where the C library has none).

    Under session churn, glibc keeps the memory that ended sessions freed (TLS buffers,
    parsed bodies) in its free lists, spread over the heap, and reuses it only in part: the
    resident memory of a long-running gateway then creeps up although what is in use stays
    flat. Trimming returns those pages; it costs a walk of the heap's free chunks (about 1 ms
    with 100 PEV sessions, 2.5–4.5 ms with 500: docs/benchmarks.md). ``trim`` replaces the
    C call, ``libc`` the C library it is looked up in (tests)."""

    log = Logger()

    def __init__(self, clock: Any, interval: float = HEAP_TRIM_INTERVAL_S,
                 trim: Callable[[], object] | None = None, libc: Any = None) -> None:
        self.clock = clock
        self.interval = interval
        self._trim = trim
        self._libc = libc
        self._loop: Any = None

    def startService(self) -> None:
        super().startService()
        if self._trim is None:
            self._trim = find_malloc_trim(self._libc)
        if self._trim is None or self.interval <= 0:
            return
        from twisted.internet.task import LoopingCall

        self._loop = LoopingCall(self._run)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        super().stopService()

    def _run(self) -> None:
        try:
            assert self._trim is not None
            self._trim()
        except Exception:
            self.log.failure("Heap trim failed; no more trims")
            if self._loop is not None and self._loop.running:
                self._loop.stop()


class StartupError(Exception):
    """Start-up cannot continue; the message says why and names the culprit."""


def fail_startup(error: Exception) -> None:
    """Print a start-up error the way twistd prints a usage error, and exit non-zero."""
    sys.stderr.write(f"twistd: {error}\n")
    raise SystemExit(1)


class RoleService(OrderedMultiService):
    """The root service of a role: installs the configured log observer on the application,
    creates the state directory, and logs when everything is up."""

    log = Logger()

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.started.addCallbacks(self._serving, self._failed)

    def setServiceParent(self, parent: Any) -> None:
        settings = self.config["logging"]
        if isinstance(parent, Componentized) and not logs.is_default(settings):
            parent.setComponent(ILogObserver, logs.make_observer(settings))
        super().setServiceParent(parent)

    #: Whether the role's sessions are SunSpec V2G-AC sessions, whose codecs are then
    #: generated before anything starts (:func:`prepare_session_codecs`).
    prepares_session_codecs = False

    def startService(self) -> Any:
        self.config.general["state_dir"].mkdir(parents=True, exist_ok=True)
        if self.prepares_session_codecs:
            prepare_session_codecs()
        return super().startService()

    def component(self, plugin: Any, name: str, **extra: Any) -> Any:
        """Build a configured plugin's component (errors name the plugin and file)."""
        context = BuildContext(reactor=self.reactor, name=name,
                               state_dir=self.config.general["state_dir"], extra=extra)
        return build_component(plugin, context)

    def add_operator_socket(self, factory: Any) -> None:
        """Serve ``factory`` (the local operator's line protocol) on the ``[operator]``
        socket, if one is configured: mode 0600, a stale socket of a dead process replaced."""
        path = self.config["operator"]["socket"]
        if path is None:
            return
        from twisted.application.internet import StreamServerEndpointService
        from twisted.internet.endpoints import UNIXServerEndpoint

        path.parent.mkdir(parents=True, exist_ok=True)
        service = StreamServerEndpointService(
            UNIXServerEndpoint(self.reactor, str(path), mode=0o600, wantPID=True), factory)
        service.setName("operator")
        service.setServiceParent(self)

    def add_views(self, role: str) -> None:
        """The optional views of the role's status, each imported only when configured (idle
        RSS): ``[dbus]``, ``[console]``, and sd_notify under systemd (``NOTIFY_SOCKET``) as
        the last child, so that it starts last (READY once everything is up) and stops
        first. ``role``: "evse" or "pev"."""
        config = self.config
        if config["dbus"]["enabled"]:
            from sepgw.service import dbus

            views = {"evse": dbus.evse_dbus, "pev": dbus.pev_dbus}
            views[role](self, config["dbus"]).setServiceParent(self)
        if config["console"]["enabled"]:
            import sepgw.console as console

            consoles = {"evse": console.evse_console, "pev": console.pev_console}
            try:
                consoles[role](self, config["console"]).setServiceParent(self)
            except ValueError as e:
                raise StartupError(f"{config.source}: {e}") from e
        if os.environ.get("NOTIFY_SOCKET"):
            from sepgw.service import systemd

            notifiers = {"evse": systemd.evse_notifier, "pev": systemd.pev_notifier}
            notifiers[role](self).setServiceParent(self)

    def add_component(self, name: str, component: Any) -> ComponentService:
        service = ComponentService(name, component)
        service.setServiceParent(self)
        return service

    def _serving(self, _: Any) -> None:
        release_startup_memory()
        self.log.info("{role} {name} ready", role=self.config.role.upper(),
                      name=self.config.general["name"])

    def _failed(self, failure: Any) -> None:
        self.log.failure("Start-up failed; stopping", failure)
        if self.reactor.running:
            self.reactor.stop()


def make_role_service(cls: Any, options: Any, reactor: Any = None) -> Any:
    """The twistd entry point of a role: build ``cls(config, reactor)`` from validated
    options (the global reactor unless one is given); start-up errors exit with a message."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    try:
        return cls(options.loaded, reactor)
    except (ComponentError, StartupError) as e:
        fail_startup(e)
        raise


__all__ = ["ComponentError", "HeapTrimmer", "RoleService", "StartupError", "fail_startup",
           "options_for", "tls_settings", "make_role_service", "release_startup_memory",
           "find_malloc_trim", "prepare_session_codecs"]
