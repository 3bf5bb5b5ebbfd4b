"""Run one side of SLAC on an interface and report as JSON lines (labs, tests, benchmarks).

    python -m sepgw.slac.lab --interface evse0 --role evse --emulate-modem --runs 5
    python -m sepgw.slac.lab --interface ev0 --role ev --emulate-modem --runs 5

Each side builds the ``plc`` transport (:class:`sepgw.slac.transport.PlcTransport`) from
the same options the plugin takes and prints, one JSON object per line on standard output:
``{"event": "ready", "mac": ...}`` once listening, ``{"event": "matched", "peer": ...,
"nid": ..., "elapsed": ...}`` per match (``elapsed``: seconds from the start of matching to
the match, EV side), ``{"event": "done"}`` after ``--runs`` matches, or ``{"event":
"timeout"}``. The EV side starts matching again after each match until it has ``--runs``.
Needs CAP_NET_RAW (root); use ``ip netns exec`` to run each side in its own namespace.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from zope.interface import implementer

from sepgw.interfaces import ILinkListener, LinkPeer
from sepgw.slac.options import OPTIONS
from sepgw.slac.transport import PlcTransport


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


@implementer(ILinkListener)
class Lab:
    def __init__(self, reactor: Any, transport: PlcTransport, runs: int, pause: float) -> None:
        self.reactor = reactor
        self.transport = transport
        self.runs = runs
        self.pause = pause
        self.matches = 0

    def link_up(self, peer: LinkPeer) -> None:
        t = self.transport
        self.matches += 1
        emit(event="matched", role=t.role, peer=peer.mac, nid=t.nid.hex() if t.nid else None,
             elapsed=(t.matched_at or 0) - (t.began_at or 0), run=self.matches)
        if self.matches >= self.runs:
            emit(event="done")
            # Let the EVSE side see the last frames before we stop.
            self.reactor.callLater(0.2 if t.role == "ev" else 0, self.reactor.stop)
        elif t.role == "ev":
            self.reactor.callLater(self.pause, self._again)

    def _again(self) -> None:
        self.transport.end_matching("next run")
        self.transport.begin_matching()

    def link_down(self, reason: str) -> None:
        emit(event="down", reason=reason)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interface", required=True)
    parser.add_argument("--role", choices=("evse", "ev"), required=True)
    parser.add_argument("--emulate-modem", action="store_true")
    parser.add_argument("--attenuation", type=int, nargs="+", default=[30])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.05,
                        help="EV: seconds between a match and the next run")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                        help="any plc transport option, e.g. batch_interval=0.02")
    args = parser.parse_args(argv)

    raw: dict[str, Any] = {"interface": args.interface, "role": args.role,
                           "emulate_modem": args.emulate_modem,
                           "emulated_attenuation": args.attenuation,
                           "link_check_interval": 0.0}
    for item in args.option:
        key, _, value = item.partition("=")
        raw[key] = json.loads(value)
    config, problems = OPTIONS.validate(raw)
    if problems:
        for p in problems:
            print(f"option {p}", file=sys.stderr)
        return 2

    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor

    transport = PlcTransport(reactor, f"slac-lab-{args.role}", config)
    lab = Lab(reactor, transport, args.runs, args.pause)
    transport.add_listener(lab)

    def go() -> None:
        try:
            transport.start()
        except OSError as e:
            emit(event="error", reason=f"{args.interface}: {e}")
            reactor.stop()
            return
        emit(event="ready", role=args.role,
             mac=":".join(f"{b:02x}" for b in transport.mac or b""))

    def timeout() -> None:
        emit(event="timeout", matches=lab.matches)
        reactor.stop()

    reactor.callWhenRunning(go)
    reactor.callLater(args.timeout, timeout)
    reactor.addSystemEventTrigger("before", "shutdown", transport.stop)
    reactor.run()
    return 0 if lab.matches >= args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
