"""Bundled plugin: a contactor driven by a Modbus relay module: a coil switches it, an
optional discrete input reads its auxiliary (mirror) contact.

"Not allowed, never closed" holds in the plugin itself: the coil is switched on only by
``close()`` while closing is allowed, a queued switch-on is withdrawn when closing is
forbidden, and a coil found on while not allowed is switched off at once. See
docs/hardware.md.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.defer import CancelledError, Deferred, fail, inlineCallbacks, succeed
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from sepgw.plugin import (BuildContext, ContactorRefused, ContactorState, IContactor,
                          IContactorFeedback, Key, PluginFactory, Section)


class ContactorFailed(Exception):
    """The contactor did not do what it was told (or could not be told)."""


@implementer(IContactor, IContactorFeedback)
class ModbusContactor:
    """A coil at ``coil``; with ``input`` >= 0 the auxiliary contact at that discrete input
    (``input_inverted``: it reads True while the contacts are open, a normally closed aux).

    ``state`` is the sensed position with feedback, else the coil's position once the relay
    module confirmed the write. ``sensed`` is the latest auxiliary-contact reading (read every
    ``interval`` and after every switch; unknown while the module does not answer).
    """

    log = Logger()

    def __init__(self, clock: Any, name: str, client: Any, coil: int, input: int = -1,
                 input_inverted: bool = False, interval: float = 0.2,
                 confirm_s: float = 0.5) -> None:
        self._clock = clock
        self._name = name
        self.client = client
        self.coil = coil
        self.input = input
        self.input_inverted = input_inverted
        self.interval = interval
        self.confirm_s = confirm_s
        self.feedback = input >= 0
        self.sensed = ContactorState.unknown
        self.state = ContactorState.unknown
        self.allowed = False
        self.error: str | None = None
        self._closing: Deferred[Any] | None = None
        self._waiters: list[Deferred[ContactorState]] = []
        self._switch_on: Deferred[Any] | None = None
        self._loop = LoopingCall(self.poll)
        self._loop.clock = clock

    def _where(self) -> str:
        return f"{self.client.device} coil {self.coil}"

    # IComponent

    def start(self) -> Deferred[Any]:
        self.log.info("{name}: Modbus contactor on {where}{aux}, closing not allowed",
                      name=self._name, where=self._where(),
                      aux=f", auxiliary contact at discrete input {self.input}"
                      if self.feedback else ", no auxiliary contact")
        d: Deferred[Any] = self.open()  # a failure is logged; polling goes on

        def poll(_: Any) -> None:
            self._loop.start(self.interval, now=True)

        d.addCallback(poll)
        return d

    def stop(self) -> Deferred[Any]:
        self.set_allowed(False)
        if self._loop.running:
            self._loop.stop()
        d = self.open()
        d.addBoth(lambda _: self.client.close())
        return d

    # IContactor

    def set_allowed(self, allowed: bool) -> None:
        self.allowed = bool(allowed)
        if not self.allowed:
            self.open()

    def close(self) -> Deferred[ContactorState]:
        if not self.allowed:
            return fail(ContactorRefused(f"{self._name}: closing is not allowed"))
        if self.state is ContactorState.closed and self._closing is None:
            return succeed(self.state)
        d: Deferred[ContactorState] = Deferred()
        self._waiters.append(d)
        if self._closing is None:
            self._closing = self._close()
            self._closing.addBoth(self._closed)
        return d

    def _closed(self, result: Any) -> None:
        self._closing = None
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    @inlineCallbacks
    def _close(self) -> Any:
        try:
            self._switch_on = self.client.write_coil(self.coil, True)
            try:
                yield self._switch_on
            finally:
                self._switch_on = None
            if not self.allowed:  # forbidden while the write was on the wire
                raise ContactorRefused(f"{self._name}: close cancelled by an open")
            if not self.feedback:
                self._set(ContactorState.closed)
                return self.state
            deadline = self._clock.seconds() + self.confirm_s
            while True:
                yield self._read_feedback()
                if not self.allowed:
                    raise ContactorRefused(f"{self._name}: close cancelled by an open")
                if self.sensed is ContactorState.closed:
                    return self.state
                if self._clock.seconds() >= deadline:
                    raise ContactorFailed(
                        f"{self._name}: {self._where()} switched on but discrete input "
                        f"{self.input} still reads {self.sensed.value} after "
                        f"{self.confirm_s:g} s")
                yield deferLater(self._clock, min(self.interval, self.confirm_s / 5),
                                 lambda: None)
        except (ContactorRefused, CancelledError):
            # set_allowed(False) has switched the coil off already
            raise ContactorRefused(f"{self._name}: close cancelled by an open") from None
        except Exception as e:
            self.log.error("{name}: close failed: {e}; switching the coil off",
                           name=self._name, e=e)
            self.open()
            raise ContactorFailed(str(e)) from None

    def open(self) -> Deferred[ContactorState]:
        """Switch the coil off; fires with the state then known (``unknown`` when the module
        did not answer: the failure is logged, never raised)."""
        if self._switch_on is not None:
            self._switch_on.cancel()  # withdrawn if still queued
        d = self._switch(False)
        d.addErrback(lambda f: None)
        d.addCallback(lambda _: self.state)
        return d

    # Internals

    @inlineCallbacks
    def _switch(self, on: bool) -> Any:
        try:
            yield self.client.write_coil(self.coil, on)
        except Exception as e:
            self._comms_error(f"switching coil {'on' if on else 'off'} failed: {e}")
            if self.feedback:
                self.sensed = ContactorState.unknown
            self._set(ContactorState.unknown)
            raise
        if not self.feedback:
            self._set(ContactorState.closed if on else ContactorState.open)
            return
        try:
            yield self._read_feedback()
        except Exception:
            pass  # reported; the state stays what the last reading said

    @inlineCallbacks
    def _read_feedback(self) -> Any:
        try:
            [bit] = yield self.client.read_discrete_inputs(self.input, 1)
        except Exception as e:
            self.sensed = ContactorState.unknown
            self._set(ContactorState.unknown)
            self._comms_error(f"reading discrete input {self.input} failed: {e}")
            raise
        closed = bool(bit) != self.input_inverted
        sensed = ContactorState.closed if closed else ContactorState.open
        if sensed is not self.sensed:
            self.log.info("{name}: auxiliary contact (discrete input {input} = {bit}): "
                          "contacts {state}", name=self._name, input=self.input,
                          bit=int(bit), state=sensed.value)
        self.sensed = sensed
        self._set(sensed)
        self.error = None

    def poll(self) -> Deferred[Any]:
        """Read the coil (switching it off if it is on while closing is not allowed) and the
        auxiliary contact."""
        d = self._poll()
        d.addErrback(lambda f: None)  # reported where it happened
        return d

    @inlineCallbacks
    def _poll(self) -> Any:
        try:
            [coil_on] = yield self.client.read_coils(self.coil, 1)
        except Exception as e:
            self._comms_error(f"reading coil {self.coil} failed: {e}")
            if self.feedback:
                self.sensed = ContactorState.unknown
            self._set(ContactorState.unknown)
            raise
        if coil_on and not self.allowed and self._closing is None:
            self.log.error("{name}: {where} is on while closing is not allowed: switching "
                           "it off", name=self._name, where=self._where())
            yield self._switch(False)
            return
        if self.feedback:
            yield self._read_feedback()
        elif self._closing is None:
            self._set(ContactorState.closed if coil_on else ContactorState.open)

    def _set(self, state: ContactorState) -> None:
        if state is not self.state:
            self.state = state
            self.log.info("{name}: contactor {state}", name=self._name, state=state.value)

    def _comms_error(self, reason: str) -> None:
        if reason != self.error:
            self.log.error("{name}: {reason}", name=self._name, reason=reason)
        self.error = reason


def _build(config: Mapping[str, Any], context: BuildContext) -> ModbusContactor:
    from sepgw.plugin import modbus
    client = modbus.client_from_config(context.reactor, config)
    return ModbusContactor(context.reactor, context.name, client, config["coil"],
                           config["input"], config["input_inverted"], config["interval"],
                           config["confirm_s"])


def _options() -> Section:
    from sepgw.plugin import modbus
    return Section({
        **modbus.connection_options(),
        "coil": Key("int", 0, "Coil address of the relay that drives the contactor.",
                    min=0, max=65535),
        "input": Key("int", -1, "Discrete input address of the auxiliary (mirror) contact "
                                "that senses the contacts' position; -1: none (the "
                                "gatekeeper then verifies opens on the meter).",
                     min=-1, max=65535),
        "input_inverted": Key("bool", False, "The auxiliary input reads on while the "
                                             "contacts are open (a normally closed aux "
                                             "contact)."),
        "interval": Key("float", 0.2, "Seconds between readings of the coil and the "
                                      "auxiliary contact.", min=0.02, max=10),
        "confirm_s": Key("float", 0.5, "With an auxiliary contact: seconds a close may take "
                                       "to be sensed before it fails (and the coil is "
                                       "switched off).", min=0.01, max=10),
    }, rules=[modbus.connection_rules])


contactor = PluginFactory(
    kind="contactor",
    name="modbus-relay",
    description="Contactor on a Modbus relay: coil output, optional discrete-input "
                "auxiliary contact.",
    options=_options(),
    build=_build,
)
