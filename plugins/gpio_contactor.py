"""Bundled plugin: a contactor driven by a GPIO line (libgpiod 2, ``pip install sepgw[gpio]``):
an output line drives the coil (through a relay or driver stage), an optional input line reads
the auxiliary (mirror) contact for the sensed position (IContactorFeedback, weld detection).

"Not allowed, never closed" holds in the plugin itself: the coil is driven active only by
``close()`` while closing is allowed; ``set_allowed(False)`` drives it inactive at once and
fails a close still waiting for its confirmation; a coil found active while closing is not
allowed is driven inactive. The lines are requested in ``start()`` with the coil inactive from
the first instant, and on ``stop()`` the coil is driven inactive before the lines are released.
``gpiod`` is imported only when the plugin is built. See docs/plugins.md ("GPIO contactor").
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from sepgw.plugin import (BuildContext, ContactorRefused, ContactorState, IContactor,
                          IContactorFeedback, Key, Logger, PluginFactory, Section,
                          require_module)

INSTALL = "pip install sepgw[gpio]"
BIASES = ("as-is", "disabled", "pull-up", "pull-down")


class ContactorFailed(Exception):
    """The contactor did not do what it was told (or could not be told)."""


@implementer(IContactor, IContactorFeedback)
class GpioContactor:
    """Coil on ``chip`` line ``coil``; with ``aux`` >= 0 the auxiliary contact on line ``aux``.

    ``lib`` is the libgpiod 2 module (``gpiod``) or a stand-in with the same
    ``request_lines``, ``LineSettings`` and ``line.Direction/Value/Bias``: the tests inject
    one. Logical values are used throughout; ``*_active_low`` make the kernel invert the
    electrical level. ``state`` is the sensed position with feedback, else the coil's
    commanded position once it was driven; ``sensed`` the latest auxiliary reading (read every
    ``interval`` and after every switch; unknown when it cannot be read).
    """

    log = Logger()

    def __init__(self, clock: Any, name: str, lib: Any, chip: str, coil: int, *,
                 coil_active_low: bool = False, aux: int = -1, aux_active_low: bool = False,
                 aux_bias: str = "as-is", interval: float = 0.05,
                 confirm_s: float = 0.5) -> None:
        if aux == coil:
            raise ValueError(f"{name}: aux line {aux} is the coil line")
        self._clock = clock
        self._name = name
        self._lib = lib
        self.chip = chip
        self.coil = coil
        self.coil_active_low = coil_active_low
        self.aux = aux
        self.aux_active_low = aux_active_low
        self.aux_bias = aux_bias
        self.interval = interval
        self.confirm_s = confirm_s
        self.feedback = aux >= 0
        self.sensed = ContactorState.unknown
        self.state = ContactorState.unknown
        self.allowed = False
        self.error: str | None = None
        self._request: Any = None
        self._closing: list[Deferred[ContactorState]] = []
        self._opening: list[Deferred[ContactorState]] = []
        self._deadline = 0.0
        self._check: Any = None
        self._loop = LoopingCall(self.poll)
        self._loop.clock = clock

    def _where(self, line: int | None = None) -> str:
        return f"{self.chip} line {self.coil if line is None else line}"

    # IComponent

    def start(self) -> None:
        """Request the lines (coil inactive from the first instant), read the auxiliary
        contact and start polling; a line that cannot be requested stops start-up."""
        lib = self._lib
        config: dict[Any, Any] = {self.coil: lib.LineSettings(
            direction=lib.line.Direction.OUTPUT, active_low=self.coil_active_low,
            output_value=lib.line.Value.INACTIVE)}
        if self.feedback:
            bias = {"as-is": lib.line.Bias.AS_IS, "disabled": lib.line.Bias.DISABLED,
                    "pull-up": lib.line.Bias.PULL_UP,
                    "pull-down": lib.line.Bias.PULL_DOWN}[self.aux_bias]
            config[self.aux] = lib.LineSettings(direction=lib.line.Direction.INPUT,
                                                active_low=self.aux_active_low, bias=bias)
        lines = f"lines {self.coil} and {self.aux}" if self.feedback else f"line {self.coil}"
        try:
            self._request = lib.request_lines(self.chip, config=config,
                                              consumer=f"sepgw {self._name}"[:31])
        except Exception as e:  # OSError (no chip, line busy, permission), ValueError
            raise ContactorFailed(f"{self._name}: cannot request {self.chip} {lines}: "
                                  f"{type(e).__name__}: {e}") from None
        self.log.info("{name}: GPIO contactor, coil on {where}{low}{aux}, closing not allowed",
                      name=self._name, where=self._where(),
                      low=" (active low)" if self.coil_active_low else "",
                      aux=f", auxiliary contact on line {self.aux}"
                      f"{' (active low)' if self.aux_active_low else ''}"
                      if self.feedback else ", no auxiliary contact")
        self._set(ContactorState.open)
        if self.feedback:
            self._read_aux()
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        """Coil inactive first, then the lines released (safe when never started)."""
        self.set_allowed(False)
        if self._loop.running:
            self._loop.stop()
        self._stop_check()
        self._finish_opening()
        request, self._request = self._request, None
        if request is None:
            return
        try:
            request.set_value(self.coil, self._lib.line.Value.INACTIVE)
        except Exception as e:
            self.log.error("{name}: driving {where} inactive on stop failed: {e}",
                           name=self._name, where=self._where(), e=e)
        try:
            request.release()
        except Exception as e:
            self.log.error("{name}: releasing the GPIO lines failed: {e}", name=self._name,
                           e=e)
        self.state = self.sensed = ContactorState.unknown

    # IContactor

    def set_allowed(self, allowed: bool) -> None:
        self.allowed = bool(allowed)
        if not self.allowed:
            self.open()

    def close(self) -> Deferred[ContactorState]:
        if not self.allowed:
            return fail(ContactorRefused(f"{self._name}: closing is not allowed"))
        if self._request is None:
            return fail(ContactorFailed(f"{self._name}: not started ({self._where()} not "
                                        "requested)"))
        if self._closing:
            d: Deferred[ContactorState] = Deferred()
            self._closing.append(d)
            return d
        try:
            self._drive(True)
        except Exception as e:
            self._comms_error(f"driving {self._where()} active failed: {e}")
            self._drive_off()
            return fail(ContactorFailed(f"{self._name}: {self.error}"))
        if not self.feedback:
            self._set(ContactorState.closed)
            return succeed(self.state)
        self._read_aux()
        if self.sensed is ContactorState.closed:
            return succeed(self.state)
        d = Deferred()
        self._closing.append(d)
        self._deadline = self._clock.seconds() + self.confirm_s
        self._schedule_check()
        return d

    def open(self) -> Deferred[ContactorState]:
        """Drive the coil inactive; fires with the state then known: with an auxiliary
        contact, once it is sensed open or ``confirm_s`` passed (a welded contactor fires
        ``closed``); ``unknown`` when the line cannot be driven (logged, never raised)."""
        closing, self._closing = self._closing, []
        for waiting in closing:
            waiting.errback(ContactorRefused(f"{self._name}: close cancelled by an open"))
        if self._request is None:
            return succeed(self.state)
        if not self._drive_off():
            return succeed(self.state)
        if not self.feedback:
            self._set(ContactorState.open)
            return succeed(self.state)
        self._read_aux()
        if self.sensed is not ContactorState.closed:
            return succeed(self.state)
        d: Deferred[ContactorState] = Deferred()
        if not self._opening:
            self._deadline = self._clock.seconds() + self.confirm_s
        self._opening.append(d)
        self._schedule_check()
        return d

    def poll(self) -> None:
        """Drive the coil inactive if it is active while closing is not allowed; read the
        auxiliary contact."""
        if self._request is None:
            return
        try:
            active = self._request.get_value(self.coil) == self._lib.line.Value.ACTIVE
        except Exception as e:
            self._comms_error(f"reading {self._where()} failed: {e}")
            if self.feedback:
                self.sensed = ContactorState.unknown
            self._set(ContactorState.unknown)
            return
        if active and not self.allowed:
            self.log.error("{name}: {where} is active while closing is not allowed: driving "
                           "it inactive", name=self._name, where=self._where())
            self._drive_off()
        if self.feedback:
            self._read_aux()

    # Internals

    def _drive(self, on: bool) -> None:
        value = self._lib.line.Value.ACTIVE if on else self._lib.line.Value.INACTIVE
        self._request.set_value(self.coil, value)

    def _drive_off(self) -> bool:
        try:
            self._drive(False)
        except Exception as e:
            self._comms_error(f"driving {self._where()} inactive failed: {e}")
            self._set(ContactorState.unknown)
            return False
        return True

    def _read_aux(self) -> None:
        try:
            value = self._request.get_value(self.aux)
        except Exception as e:
            self.sensed = ContactorState.unknown
            self._set(ContactorState.unknown)
            self._comms_error(f"reading auxiliary contact on {self._where(self.aux)} "
                              f"failed: {e}")
            return
        closed = value == self._lib.line.Value.ACTIVE
        sensed = ContactorState.closed if closed else ContactorState.open
        if sensed is not self.sensed:
            self.log.info("{name}: auxiliary contact ({where} {value}): contacts {state}",
                          name=self._name, where=self._where(self.aux),
                          value="active" if closed else "inactive", state=sensed.value)
        self.sensed = sensed
        self._set(sensed)
        self.error = None

    def _schedule_check(self) -> None:
        if self._check is None or not self._check.active():
            self._check = self._clock.callLater(min(self.interval, self.confirm_s / 5),
                                                self._confirm)

    def _stop_check(self) -> None:
        if self._check is not None and self._check.active():
            self._check.cancel()
        self._check = None

    def _confirm(self) -> None:
        """Waiting for the auxiliary contact to follow the coil."""
        self._check = None
        if self._request is None:
            return
        self._read_aux()
        late = self._clock.seconds() >= self._deadline
        if self._closing:
            if self.sensed is ContactorState.closed:
                closing, self._closing = self._closing, []
                for d in closing:
                    d.callback(self.state)
            elif late:
                closing, self._closing = self._closing, []
                reason = (f"{self._name}: {self._where()} driven active but the auxiliary "
                          f"contact on {self._where(self.aux)} still reads "
                          f"{self.sensed.value} after {self.confirm_s:g} s")
                self.log.error("{reason}; driving the coil inactive", reason=reason)
                self._drive_off()
                for d in closing:
                    d.errback(ContactorFailed(reason))
        if self._opening and (self.sensed is not ContactorState.closed or late):
            if self.sensed is ContactorState.closed:
                self.log.error("{name}: {where} inactive but the auxiliary contact still "
                               "reads closed after {s:g} s", name=self._name,
                               where=self._where(), s=self.confirm_s)
            self._finish_opening()
        if self._closing or self._opening:
            self._schedule_check()

    def _finish_opening(self) -> None:
        opening, self._opening = self._opening, []
        for d in opening:
            d.callback(self.state)

    def _set(self, state: ContactorState) -> None:
        if state is not self.state:
            self.state = state
            self.log.info("{name}: contactor {state}", name=self._name, state=state.value)

    def _comms_error(self, reason: str) -> None:
        if reason != self.error:
            self.log.error("{name}: {reason}", name=self._name, reason=reason)
        self.error = reason


def build_contactor(config: Mapping[str, Any], context: BuildContext,
                    lib: Any = None) -> GpioContactor:
    """The contactor for a validated section; ``lib`` replaces ``gpiod`` (tests)."""
    if lib is None:
        lib = require_module("gpiod", INSTALL, "the gpio contactor (libgpiod 2 bindings)")
    return GpioContactor(context.reactor, context.name, lib, config["chip"], config["coil"],
                         coil_active_low=config["coil_active_low"], aux=config["aux"],
                         aux_active_low=config["aux_active_low"],
                         aux_bias=config["aux_bias"], interval=config["interval"],
                         confirm_s=config["confirm_s"])


def _rules(config: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if config["aux"] == config["coil"]:
        yield "aux", f"line {config['aux']} is already the coil line"


def _build(config: Mapping[str, Any], context: BuildContext) -> GpioContactor:
    return build_contactor(config, context)


OPTIONS = Section({
    "chip": Key("str", "/dev/gpiochip0", "GPIO character device of the lines.",
                non_empty=True),
    "coil": Key("int", doc="Line offset of the output that drives the contactor's coil "
                           "(through a relay or driver stage).", min=0, max=1023),
    "coil_active_low": Key("bool", False, "The coil is energized while the coil line is low "
                                          "(the kernel inverts the level)."),
    "aux": Key("int", -1, "Line offset of the input wired to the auxiliary (mirror) contact "
                          "that senses the contacts' position; -1: none (the gatekeeper then "
                          "verifies opens on the meter).", min=-1, max=1023),
    "aux_active_low": Key("bool", False, "The auxiliary input is low while the contacts are "
                                         "closed."),
    "aux_bias": Key("str", "as-is", "Bias of the auxiliary input: 'as-is', 'disabled', "
                                    "'pull-up' or 'pull-down' (for a dry contact to ground "
                                    "use pull-up with aux_active_low).", choices=BIASES),
    "interval": Key("float", 0.05, "Seconds between readings of the coil and auxiliary "
                                   "lines.", min=0.005, max=10),
    "confirm_s": Key("float", 0.5, "With an auxiliary contact: seconds a close (or an open) "
                                   "may take to be sensed; a close not sensed by then fails "
                                   "and the coil is driven inactive.", min=0.01, max=10),
}, rules=[_rules])

contactor = PluginFactory(
    kind="contactor",
    name="gpio",
    description="Contactor on a GPIO line (libgpiod 2): coil output, optional "
                "auxiliary-contact input; needs `pip install sepgw[gpio]`.",
    options=OPTIONS,
    build=_build,
)
