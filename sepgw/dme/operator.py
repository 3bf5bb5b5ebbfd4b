"""The lab DME's operator channel: a line protocol on a UNIX socket, as the EVSE's
(:mod:`sepgw.evse.operator`); ``sepgw ctl --socket PATH COMMAND`` talks to it.

``status``                        devices, controls, default, counts of what devices sent
``devices``                       registered EndDevices and the resources each PUT
``controls``                      every DERControl: mRID, status, interval, functions,
                                  the Responses received for it
``add F=V... [duration=S] [start=+S] [response=N]``
                                  a new DERControl (e.g. ``add opModFixedW=2500``: 25 % of
                                  setMaxW; percentages in hundredths, booleans true/false)
``supersede MRID F=V... [duration=S]``  a new control replacing MRID (hex or prefix)
``cancel MRID``                   cancel a control
``default F=V...`` | ``default clear``  the DefaultDERControl
``readings [N] [MUP_HREF]``       counts and the latest N readings
``responses [N]``                 the latest N Responses
``help``                          the commands
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory
from twisted.logger import Logger

from sepgw.common.jsonlines import JSONLineProtocol

from sepgw.dme.server import DMEError, DMEServer
from sepgw.model import ActivePower, DERControl, DERControlBase, ReactivePower
from sepgw.model.types import EventStatusCode

__all__ = ["DMEOperatorFactory", "DMEOperatorProtocol", "HELP", "parse_base"]

HELP = ["status", "devices", "controls",
        "add FUNCTION=VALUE... [duration=S] [start=+S] [response=N]",
        "supersede MRID FUNCTION=VALUE... [duration=S]", "cancel MRID",
        "default FUNCTION=VALUE... | default clear", "readings [N] [MUP_HREF]",
        "responses [N]", "help"]

_BOOL = ("opModConnect", "opModEnergize")
_PERCENT = ("opModFixedW", "opModMaxLimW", "rampTms")
_POWER = {"opModTargetW": ActivePower, "opModTargetVar": ReactivePower}
_OPTIONS = ("duration", "start", "response")


def parse_base(words: list[str]) -> tuple[DERControlBase, dict[str, str]]:
    """``FUNCTION=VALUE`` words → a DERControlBase, plus the ``duration``/``start``/
    ``response`` options; ValueError naming the bad word."""
    spec: dict[str, Any] = {}
    options: dict[str, str] = {}
    for word in words:
        name, eq, value = word.partition("=")
        if not eq or not value:
            raise ValueError(f"{word!r}: expected FUNCTION=VALUE")
        if name in _OPTIONS:
            options[name] = value
        elif name in _BOOL:
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{name} must be true or false, got {value!r}")
            spec[name] = value.lower() == "true"
        elif name in _PERCENT or name in _POWER:
            try:
                number = int(value)
            except ValueError:
                raise ValueError(f"{name} must be an integer, got {value!r}") from None
            if name == "opModMaxLimW" and not 0 <= number <= 10000:
                raise ValueError("opModMaxLimW is in hundredths of a percent, 0..10000")
            if name == "opModFixedW" and not -10000 <= number <= 10000:
                raise ValueError("opModFixedW is in hundredths of a percent, -10000..10000")
            spec[name] = _POWER[name](multiplier=0, value=number) if name in _POWER else number
        else:
            raise ValueError(f"unknown function {name!r}; known: "
                             f"{', '.join(_BOOL + _PERCENT + tuple(_POWER))}")
    if not spec:
        raise ValueError("no function given (e.g. opModFixedW=2500)")
    return DERControlBase(**spec), options


def _int(options: dict[str, str], name: str, default: int | None) -> int | None:
    if name not in options:
        return default
    try:
        return int(options[name])
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {options[name]!r}") from None


def _functions(base: DERControlBase) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _BOOL + _PERCENT + tuple(_POWER):
        value = getattr(base, name)
        if value is not None:
            out[name] = value.value if name in _POWER else value
    return out


def describe(server: DMEServer, control: DERControl) -> dict[str, Any]:
    status = int(control.EventStatus.currentStatus)
    return {"mrid": control.mRID.hex(), "href": control.href,
            "status": EventStatusCode(status).name.lower() if status in set(
                EventStatusCode) else status,
            "start": control.interval.start, "duration": control.interval.duration,
            "creation": control.creationTime, "functions": _functions(control.DERControlBase),
            "responses": server.responses_for(control.mRID)}


class DMEOperatorProtocol(JSONLineProtocol):
    log = Logger()

    def __init__(self, server: DMEServer) -> None:
        self.server = server

    def command(self, words: list[str]) -> Any:
        s = self.server
        cmd, args = words[0], words[1:]
        if cmd == "status" and not args:
            return {"devices": len(s.devices), "controls": len(s.controls),
                    "default": None if s.default is None else _functions(
                        s.default.DERControlBase),
                    "mirror_usage_points": len(s.mups),
                    "received": s.store.counts() if s.store else {}}
        if cmd == "devices" and not args:
            return {"devices": [
                {"lfdi": lfdi, "href": d.href, "sfdi": d.doc.sFDI,
                 "resources": sorted(s.store.resources(lfdi) if s.store else d.resources)}
                for lfdi, d in s.devices.items()]}
        if cmd == "controls" and not args:
            return {"controls": [describe(s, c) for c in s.controls]}
        if cmd == "add" and args:
            base, options = parse_base(args)
            start = options.get("start")
            when = None
            if start is not None:
                try:
                    when = s.now() + int(start[1:]) if start.startswith("+") else int(start)
                except ValueError:
                    raise ValueError(f"start must be +SECONDS or a Unix time, got {start!r}") \
                        from None
            control = s.add_control(base, start=when,
                                    duration=_int(options, "duration", 600) or 600,
                                    response_required=_int(options, "response", 3) or 0)
            self.log.info("DME: control {mrid} added: {functions}", mrid=control.mRID.hex(),
                          functions=_functions(base))
            return {"ok": True, **describe(s, control)}
        if cmd == "supersede" and len(args) >= 2:
            base, options = parse_base(args[1:])
            try:
                control = s.supersede(args[0], base, duration=_int(options, "duration", None))
            except DMEError as e:
                raise ValueError(str(e)) from None
            self.log.info("DME: control {old} superseded by {mrid}: {functions}",
                          old=args[0], mrid=control.mRID.hex(), functions=_functions(base))
            return {"ok": True, **describe(s, control)}
        if cmd == "cancel" and len(args) == 1:
            try:
                control = s.cancel(args[0])
            except DMEError as e:
                raise ValueError(str(e)) from None
            self.log.info("DME: control {mrid} cancelled", mrid=control.mRID.hex())
            return {"ok": True, **describe(s, control)}
        if cmd == "default" and args:
            if args == ["clear"]:
                s.set_default(None)
            else:
                s.set_default(parse_base(args)[0])
            self.log.info("DME: default control {functions}", functions=(
                _functions(s.default.DERControlBase) if s.default else None))
            return {"ok": True}
        if cmd == "readings" and len(args) <= 2:
            n = int(args[0]) if args and args[0].isdigit() else 20
            mup = next((a for a in args if a.startswith("/")), None)
            return {"received": s.store.counts() if s.store else {},
                    "readings": s.store.readings(n, mup) if s.store else []}
        if cmd == "responses" and len(args) <= 1:
            n = int(args[0]) if args and args[0].isdigit() else 20
            return {"responses": s.store.responses(limit=n) if s.store else []}
        if cmd == "help":
            return {"commands": HELP}
        raise ValueError(f"unknown command {' '.join(words)!r}; commands: {'; '.join(HELP)}")


class DMEOperatorFactory(Factory):
    noisy = False

    def __init__(self, server: DMEServer) -> None:
        self.server = server

    def buildProtocol(self, addr: Any) -> DMEOperatorProtocol:
        return DMEOperatorProtocol(self.server)
