"""The local operator's control channel: a line protocol on a UNIX socket.

``sepgw ctl --socket PATH COMMAND`` talks to it. Commands (one per line, answers are one
JSON object per line):

``status``                   every port: state, PEV, authorization and its reasons,
                             contactor (commanded, sensed, fault), last meter sample and
                             its age, meter fault; with a DME uplink, ``uplink``:
                             connected or lost (since, why), last contact, controls in
                             force, queue depth, drops, duplicates, subscriptions
``fixed-w PORT PERCENT``     coordinated charging/discharging (4.8.2): a DERControl
                             opModFixedW, positive = the PEV discharges
``clear-fixed-w PORT``       withdraw it
``clear-fault PORT``         clear a contactor fault (failure to open, welded contacts);
                             refused while the contacts are not sensed open
``help``                     the commands

Only local users who can open the socket (mode 0600 by default) can send commands.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.internet.protocol import Factory
from twisted.logger import Logger

from sepgw.common.jsonlines import JSONLineProtocol

from sepgw.evse.controller import PortController

HELP = ["status", "fixed-w PORT PERCENT", "clear-fixed-w PORT", "clear-fault PORT", "help"]


def port_status(port: PortController) -> dict[str, Any]:
    """What the operator sees of one port."""
    gk = port.gatekeeper
    sample = gk.last_sample
    session = port.session
    sensed = gk.sensed
    age = gk.meter_age()
    return {
        "port": port.name, "state": port.state.value,
        "lfdi": session.lfdi if session else None,
        "authorized": port.granted, "reasons": list(port.reasons),
        "contactor": gk.contactor_status(),
        "contactor_allowed": bool(port.contactor.allowed),
        "contactor_sensed": None if sensed is None else sensed.value,
        "contactor_feedback": gk.feedback,
        "contactor_fault": gk.contactor_fault,
        "meter": None if sample is None else {
            "w": sample.active_power_w, "var": sample.reactive_power_var,
            "v": sample.voltage_v, "hz": sample.frequency_hz,
            "age_s": None if age is None else round(age, 3)},
        "meter_fault": gk.meter_fault,
        "violation": gk.contactor_fault or gk.violation or gk.revocation,
    }


class OperatorProtocol(JSONLineProtocol):
    log = Logger()

    def __init__(self, ports: Mapping[str, PortController],
                 uplink: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.ports = ports
        self.uplink = uplink

    def _port(self, name: str) -> PortController:
        try:
            return self.ports[name]
        except KeyError:
            raise LookupError(f"no port {name!r}; ports: {', '.join(self.ports)}") from None

    def command(self, words: list[str]) -> Any:
        cmd, args = words[0], words[1:]
        if cmd == "status" and not args:
            status: dict[str, Any] = {"ports": [port_status(p) for p in self.ports.values()]}
            if self.uplink is not None:
                status["uplink"] = dict(self.uplink())
            return status
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
        if cmd == "clear-fault" and len(args) == 1:
            port = self._port(args[0])
            try:
                how = port.clear_fault()
            except ValueError as e:
                self.log.warn("operator: clear-fault {port} refused: {error}", port=args[0],
                              error=e)
                raise
            return {"ok": True, "cleared": how}
        if cmd == "help":
            return {"commands": HELP}
        raise ValueError(f"unknown command {' '.join(words)!r}; commands: {'; '.join(HELP)}")


class OperatorFactory(Factory):
    noisy = False

    def __init__(self, ports: Mapping[str, PortController],
                 uplink: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.ports = ports
        self.uplink = uplink

    def buildProtocol(self, addr: Any) -> OperatorProtocol:
        return OperatorProtocol(self.ports, self.uplink)
