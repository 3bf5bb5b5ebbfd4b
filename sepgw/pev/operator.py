"""The PEV's local control channel: a line protocol on a UNIX socket (``sepgw ctl``).

``status``   the J3072 state, authorization, what the inverter is told, the run report
``sleep``    post inverterStatus 2 and go quiet (4.8.3)
``wake``     re-acquire the management information, then post inverterStatus 0 (4.8.3)
``help``     the commands
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import ensureDeferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from sepgw.common.jsonlines import JSONLineProtocol

HELP = ["status", "sleep", "wake", "help"]


class PEVOperatorProtocol(JSONLineProtocol):
    log = Logger()

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client

    def received(self, words: list[str]) -> None:
        client = self._client()
        cmd = words[0]
        if cmd == "help":
            self.answer({"commands": HELP})
        elif client is None:
            self.answer({"error": "no 2030.5 session (non-J3072 mode or not connected yet)"})
        elif cmd == "status" and len(words) == 1:
            reading = client.inverter.reading()
            self.answer({"state": client.state, "energize": client.energize,
                         "sleeping": client.sleeping, "comms_ok": client.comms_ok,
                         "inverter": {"w": reading.active_power_w,
                                      "var": reading.reactive_power_var,
                                      "soc_pct": reading.state_of_charge_pct},
                         "report": client.report.as_dict()})
        elif cmd in ("sleep", "wake") and len(words) == 1:
            if client.state != "periodic":
                self.answer({"error": f"cannot {cmd} in state {client.state!r}"})
                return
            work = client.sleep() if cmd == "sleep" else client.wake()
            d = ensureDeferred(work)
            d.addCallbacks(lambda _: self.answer({"ok": True}),
                           lambda f: self.answer({"error": f.getErrorMessage()}))
        else:
            self.answer({"error": f"unknown command {' '.join(words)!r}; commands: "
                                  f"{'; '.join(HELP)}"})


class PEVOperatorFactory(Factory):
    noisy = False

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client

    def buildProtocol(self, addr: Any) -> PEVOperatorProtocol:
        return PEVOperatorProtocol(self._client)
