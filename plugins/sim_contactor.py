"""Bundled plugin: a simulated contactor with confirmation delay and fault injection.

Without ``link`` it lives in memory only. With ``link = "127.0.0.1:47101"`` it is one end of
the simulated electrical link (``plugins/sim_link.py``, ``docs/simulation.md``): while its
contacts are closed the port's link endpoint sends the grid to the PEV emulator, and while
they are open the PEV sees no grid and the port's meter (same ``link``) measures nothing.

It models an auxiliary contact (``feedback``, on by default): ``sensed`` is the contacts'
actual position, welded or not. With ``feedback = false`` it is a unit without one: ``state``
is the commanded position and the gatekeeper must verify opens on the meter.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from sepgw.plugin import (BuildContext, ContactorRefused, ContactorState, IContactor,
                          IContactorFeedback, Key, PluginFactory, Section, dropin_module)

sim_link = dropin_module("sim_link")  # bundled helper module


@implementer(IContactor, IContactorFeedback)
class SimulatedContactor:
    """A contactor in memory. Closing takes ``delay`` seconds to confirm; opening is at once.

    ``contacts`` is the contacts' physical position. ``stuck`` simulates welded contacts: once
    closed they cannot open (the gatekeeper must then revoke and alarm). :meth:`set_stuck`
    injects or clears the fault at run time; so does a ``contactor-stuck`` CONTROL frame on
    the link when ``control`` is set.

    With ``feedback`` (an auxiliary contact) ``sensed`` and ``state`` are the physical
    position; without, ``sensed`` is unknown and ``state`` the commanded position, which a
    welded unit gets wrong, like a real driver with no feedback.

    ``link``, when given, is the port's :class:`sim_link.GridSide`: the contacts' state is
    what decides whether the grid reaches the PEV.
    """

    log = Logger()

    def __init__(self, clock: Any, name: str, delay: float = 0.05, stuck: bool = False,
                 link: Any = None, period: float = 0.1, control: bool = False,
                 feedback: bool = True) -> None:
        self._clock = clock
        self._name = name
        self._delay = delay
        self.stuck = stuck
        self.feedback = feedback
        self.contacts = ContactorState.open
        """The physical position of the contacts."""
        self._commanded = ContactorState.open
        self.allowed = False
        self._pending: Any = None
        self._waiting: list[Deferred[ContactorState]] = []
        self.listeners: list[Any] = []
        self.link = link
        self._period = period
        self._control = control

    @property
    def state(self) -> ContactorState:
        """The position the driver knows: sensed with feedback, else commanded."""
        return self.contacts if self.feedback else self._commanded

    @property
    def sensed(self) -> ContactorState:
        """The auxiliary contact's reading: the contacts' position, or unknown without one."""
        return self.contacts if self.feedback else ContactorState.unknown

    def start(self) -> None:
        if self.link is not None:
            self.link.period = self._period
            self.link.attach("contactor", self)
            self.link.set_closed(self.contacts is ContactorState.closed)
            if self._control:
                self.link.on_control((sim_link.Op.contactor_stuck,), self._control_frame)
        self.log.info("{name}: simulated contactor {state}, closing not allowed, {fb}{stuck}",
                      name=self._name, state=self.contacts.value,
                      fb="auxiliary contact" if self.feedback else "no auxiliary contact",
                      stuck=" (stuck: will not open once closed)" if self.stuck else "")

    def stop(self) -> Any:
        self.set_allowed(False)
        if self.link is not None:
            return self.link.detach("contactor", self)
        return None

    def set_allowed(self, allowed: bool) -> None:
        self.allowed = allowed
        if not allowed:
            self.open()

    def set_stuck(self, stuck: bool) -> None:
        """Inject (True) or clear (False) welded contacts. Cleared while closed and not
        allowed, the contactor opens at once, as the contract wants."""
        self.stuck = stuck
        self.log.warn("{name}: fault injection: contactor {what}", name=self._name,
                      what="stuck (cannot open)" if stuck else "no longer stuck")
        if not stuck and not self.allowed:
            self.open()

    def close(self) -> Deferred[ContactorState]:
        if not self.allowed:
            return fail(ContactorRefused(f"{self._name}: closing is not allowed"))
        if self.contacts is ContactorState.closed:
            self._commanded = ContactorState.closed
            return succeed(self.state)
        d: Deferred[ContactorState] = Deferred()
        self._waiting.append(d)
        if self._pending is None:
            self._pending = self._clock.callLater(self._delay, self._confirm)
        return d

    def _confirm(self) -> None:
        self._pending = None
        waiting, self._waiting = self._waiting, []
        self._commanded = ContactorState.closed
        self._set(ContactorState.closed)
        for d in waiting:
            d.callback(self.state)

    def open(self) -> Deferred[ContactorState]:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(ContactorRefused(f"{self._name}: close cancelled by an open"))
        self._commanded = ContactorState.open
        if not self.stuck:
            self._set(ContactorState.open)
        return succeed(self.state)

    def _set(self, state: ContactorState) -> None:
        """Move the contacts; listeners get every physical change."""
        if state is not self.contacts:
            self.contacts = state
            self.log.info("{name}: contactor {state}", name=self._name, state=state.value)
            if self.link is not None:
                self.link.set_closed(state is ContactorState.closed)
            for listener in list(self.listeners):
                listener(state)

    def _control_frame(self, frame: Any) -> None:
        self.set_stuck(bool(frame.value))


def _build(config: Mapping[str, Any], context: BuildContext) -> SimulatedContactor:
    link = (sim_link.grid_side(context.reactor, config["link"], context.name)
            if config["link"] else None)
    return SimulatedContactor(context.reactor, context.name, config["delay"], config["stuck"],
                              link=link, period=config["period"], control=config["control"],
                              feedback=config["feedback"])


contactor = PluginFactory(
    kind="contactor",
    name="simulated",
    description="Contactor in memory with a closing delay; can be stuck closed for fault tests.",
    options=Section({
        "delay": Key("float", 0.05, "Seconds until a close is confirmed.", min=0, max=10),
        "stuck": Key("bool", False, "Simulate welded contacts that never open."),
        "feedback": Key("bool", True, "Model an auxiliary contact reporting the contacts' "
                                      "actual position; false: a unit without one (the "
                                      "gatekeeper then verifies opens on the meter)."),
        "link": Key("str", "", "Loopback HOST:PORT ([::1]:PORT for IPv6) of the port's "
                               "simulated electrical link, shared with the port's meter; the "
                               "grid reaches the PEV only while the contacts are closed. "
                               "Empty: no link.",
                    validator=sim_link.address_validator()),
        "period": Key("float", 0.1, "Seconds between grid frames sent to the PEV while "
                                    "closed (with link).", min=0.01, max=1),
        "control": Key("bool", False, "Accept contactor-stuck CONTROL frames on the link "
                                      "(fault injection at run time)."),
    }),
    build=_build,
)
