"""What the SLAC state machines return, their timers, and a driver that runs one on a clock.

The machines (:mod:`sepgw.slac.evse`, :mod:`sepgw.slac.ev`) are pure: each input method
(``frame(f)``, ``timer(name)``, ``start()``...) returns a list of outputs, in order:

* :class:`Send` -- put this frame on the wire;
* :class:`StartTimer` / :class:`CancelTimer` -- (re)arm or cancel a named timer; when it
  fires, call the machine's ``timer(name)``;
* :class:`Matched` / :class:`Failed` -- decisions for the owner (the transport).

:class:`Driver` performs the outputs: frames go to a send function, timers become
``clock.callLater`` calls on the injected clock (a reactor, or ``task.Clock`` in tests),
decisions go to a callback. Received bytes are decoded here; a bad frame is logged and
ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from twisted.logger import Logger

from sepgw.slac import frames
from sepgw.slac.frames import Frame, FrameError


@dataclass(frozen=True)
class Send:
    frame: Frame


@dataclass(frozen=True)
class StartTimer:
    name: Hashable
    delay: float


@dataclass(frozen=True)
class CancelTimer:
    name: Hashable


@dataclass(frozen=True)
class Matched:
    """Matching succeeded: ``peer`` is the other side's MAC (the EV's for the EVSE, the
    chosen EVSE's for the EV); ``nid``/``nmk`` the network both modems now use."""

    peer: bytes
    run_id: bytes
    nid: bytes
    nmk: bytes
    set_key_result: int = 0


@dataclass(frozen=True)
class Failed:
    """A matching attempt failed (``peer`` and ``run_id`` when known)."""

    reason: str
    peer: bytes | None = None
    run_id: bytes | None = None
    final: bool = True
    """False when the machine keeps going (another attempt or other EVs)."""


Output = Send | StartTimer | CancelTimer | Matched | Failed


def random_bytes(n: int) -> bytes:
    """The default randomness source of the machines (os.urandom)."""
    return os.urandom(n)


@dataclass
class Timers:
    """The ISO 15118-3 timers and counts (seconds), with the defaults from the standard."""

    slac_init: float = 50.0
    """TT_EVSE_SLAC_init: EVSE waits this long for CM_SLAC_PARM.REQ once matching is on
    (20-50 s; some cars take 30 s to start)."""
    match_sequence: float = 0.4
    """TT_match_sequence."""
    match_response: float = 0.2
    """TT_match_response: EV waits this long for a CNF before repeating a REQ."""
    evse_match_mnbc: float = 0.6
    """TT_EVSE_match_MNBC: EVSE collects attenuation profiles this long after the first
    CM_START_ATTEN_CHAR.IND."""
    ev_atten_results: float = 1.2
    """TT_EV_atten_results: EV collects CM_ATTEN_CHAR.IND this long after its first
    CM_START_ATTEN_CHAR.IND."""
    evse_match_session: float = 10.0
    """TT_EVSE_match_session: an EVSE's attempt expires if not matched within this."""
    batch_interval: float = 0.02
    """TP_EV_batch_msg_interval (20-50 ms) between START_ATTEN_CHAR and MNBC_SOUND frames."""
    sounds: int = 10
    """C_EV_match_MNBC."""
    start_atten_char_inds: int = 3
    """C_EV_start_atten_char_inds."""
    match_retry: int = 2
    """C_EV_match_retry: repetitions of a REQ (or of the EVSE's CM_ATTEN_CHAR.IND)."""
    max_match: int = 3
    """C_conn_max_match: EV matching attempts (new RunID each) before giving up."""
    set_key: float = 1.0
    """How long to wait for the local modem's CM_SET_KEY.CNF (no standard value)."""
    set_key_retry: int = 2
    """CM_SET_KEY.REQ repetitions when the modem does not confirm."""


@dataclass
class Driver:
    """Runs a machine on a clock: performs its outputs, feeds back timers and frames."""

    machine: Any
    clock: Any
    send: Callable[[bytes], None]
    decide: Callable[[Matched | Failed], None]
    name: str = "slac"
    _calls: dict[Hashable, Any] = field(default_factory=dict)
    log = Logger()

    def run(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self.send(frames.encode(out.frame))
            elif isinstance(out, StartTimer):
                self._cancel(out.name)
                self._calls[out.name] = self.clock.callLater(out.delay, self._fire, out.name)
            elif isinstance(out, CancelTimer):
                self._cancel(out.name)
            else:
                self.decide(out)

    def _cancel(self, name: Hashable) -> None:
        call = self._calls.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _fire(self, name: Hashable) -> None:
        self._calls.pop(name, None)
        self.run(self.machine.timer(name))

    def received(self, data: bytes) -> None:
        """Bytes from the wire (or the modem): decode, hand to the machine."""
        try:
            frame = frames.decode(data)
        except FrameError as e:
            src = frames.mac_to_str(data[6:12]) if len(data) >= 12 else "?"
            self.log.warn("{name}: ignored a bad frame from {src}: {error}", name=self.name,
                          src=src, error=str(e))
            return
        self.run(self.machine.frame(frame))

    def call(self, method: str, *args: Any) -> None:
        """Call a machine input such as ``start`` and perform its outputs."""
        self.run(getattr(self.machine, method)(*args))

    def cancel_all(self) -> None:
        for name in list(self._calls):
            self._cancel(name)

    def pending(self) -> list[Hashable]:
        return [n for n, c in self._calls.items() if c.active()]
