"""The local operator's control channel: a line protocol on a UNIX socket.

``sepgw ctl --socket PATH COMMAND`` talks to it. Commands (one per line, answers are one
JSON object per line):

``status``                   every port: state, PEV, authorization and its reasons,
                             contactor, last meter sample
``fixed-w PORT PERCENT``     coordinated charging/discharging (4.8.2): a DERControl
                             opModFixedW, positive = the PEV discharges
``clear-fixed-w PORT``       withdraw it
``help``                     the commands

Only local users who can open the socket (mode 0600 by default) can send commands.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from sepgw.evse.controller import PortController

HELP = ["status", "fixed-w PORT PERCENT", "clear-fixed-w PORT", "help"]


def port_status(port: PortController) -> dict[str, Any]:
    """What the operator sees of one port."""
    sample = port.gatekeeper.last_sample
    session = port.session
    return {
        "port": port.name, "state": port.state.value,
        "lfdi": session.lfdi if session else None,
        "authorized": port.granted, "reasons": list(port.reasons),
        "contactor": port.contactor.state.value,
        "contactor_allowed": bool(port.contactor.allowed),
        "meter": None if sample is None else {
            "w": sample.active_power_w, "var": sample.reactive_power_var,
            "v": sample.voltage_v, "hz": sample.frequency_hz},
        "violation": port.gatekeeper.violation or port.gatekeeper.revocation,
    }


class OperatorProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    log = Logger()

    def __init__(self, ports: Mapping[str, PortController]) -> None:
        self.ports = ports

    def answer(self, obj: Any) -> None:
        self.sendLine(json.dumps(obj).encode("utf-8"))

    def lineReceived(self, line: bytes) -> None:
        words = line.decode("utf-8", "replace").split()
        if not words:
            return
        try:
            self.answer(self.command(words))
        except (LookupError, ValueError) as e:
            self.answer({"error": str(e)})

    def _port(self, name: str) -> PortController:
        try:
            return self.ports[name]
        except KeyError:
            raise LookupError(f"no port {name!r}; ports: {', '.join(self.ports)}") from None

    def command(self, words: list[str]) -> Any:
        cmd, args = words[0], words[1:]
        if cmd == "status" and not args:
            return {"ports": [port_status(p) for p in self.ports.values()]}
        if cmd == "fixed-w" and len(args) == 2:
            try:
                percent = float(args[1])
            except ValueError:
                raise ValueError(f"PERCENT must be a number, got {args[1]!r}") from None
            self._port(args[0]).set_fixed_w(percent)
            self.log.info("operator: opModFixedW {pct} % on {port}", pct=percent, port=args[0])
            return {"ok": True}
        if cmd == "clear-fixed-w" and len(args) == 1:
            self._port(args[0]).clear_fixed_w()
            return {"ok": True}
        if cmd == "help":
            return {"commands": HELP}
        raise ValueError(f"unknown command {' '.join(words)!r}; commands: {'; '.join(HELP)}")


class OperatorFactory(Factory):
    noisy = False

    def __init__(self, ports: Mapping[str, PortController]) -> None:
        self.ports = ports

    def buildProtocol(self, addr: Any) -> OperatorProtocol:
        return OperatorProtocol(self.ports)
