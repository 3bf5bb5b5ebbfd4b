"""The operator sockets' wire protocol: one command per line in, one JSON answer per line
out (``sepgw ctl``). Shared by the EVSE, the PEV and the lab DME."""

from __future__ import annotations

import json
from typing import Any

from twisted.protocols.basic import LineOnlyReceiver


class JSONLineProtocol(LineOnlyReceiver):
    """Splits each line into words and answers with JSON. Subclasses implement
    :meth:`command` (return the answer; LookupError and ValueError become
    ``{"error": message}``) or override :meth:`received` to answer later."""

    delimiter = b"\n"

    def answer(self, obj: Any) -> None:
        self.sendLine(json.dumps(obj).encode("utf-8"))

    def lineReceived(self, line: bytes) -> None:
        words = line.decode("utf-8", "replace").split()
        if words:
            self.received(words)

    def received(self, words: list[str]) -> None:
        try:
            self.answer(self.command(words))
        except (LookupError, ValueError) as e:
            self.answer({"error": str(e)})

    def command(self, words: list[str]) -> Any:
        raise NotImplementedError


__all__ = ["JSONLineProtocol"]
