"""The PEV process noticing it was stopped and continued (SIGSTOP/SIGCONT, a debugger, a
job-control stop): the stall check of :class:`sepgw.pev.session.J3072Client` is run before
the reactor's timers, so that no timer of the inverter acts on the stale authorization first.

The periodic stall check finds every stall (a frozen or suspended machine sends no SIGCONT);
this only makes the check come first after a SIGCONT.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable


def on_continue(reactor: Any, callback: Callable[[], None]) -> Callable[[], None] | None:
    """Call ``callback`` in the reactor thread, at the start of the reactor's next pass,
    whenever the process receives SIGCONT. Returns the function that removes the handler
    (restoring the previous one), or None when none could be installed (not the main
    thread, no SIGCONT on this platform, a reactor without ``callFromThread``)."""
    sigcont = getattr(signal, "SIGCONT", None)
    call = getattr(reactor, "callFromThread", None)
    if sigcont is None or call is None or threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        # A signal handler may interrupt any Python code: only queue the work.
        call(callback)

    previous = signal.signal(sigcont, handler)

    def remove() -> None:
        if signal.getsignal(sigcont) is handler:
            signal.signal(sigcont, previous)
    return remove
