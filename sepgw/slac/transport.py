"""The PLC transport: SLAC over a raw socket, link up when matched (plugin ``plc``).

:class:`PlcTransport` provides :class:`sepgw.interfaces.ITransport`. On ``start()`` it opens
a raw AF_PACKET socket for ethertype 0x88E1 on ``interface``, builds the SLAC machine of its
``role`` (:class:`~sepgw.slac.evse.EVSEMachine` or :class:`~sepgw.slac.ev.EVMachine`) and, with
``start_matching = "start"``, begins matching at once; with ``"call"`` it waits for
:meth:`PlcTransport.begin_matching` (in a charger: the control pilot reached state B).

When the machine reports a match, listeners get ``link_up(LinkPeer(mac=...))`` (the EV's
MAC on the EVSE, the EVSE's on the EV). The link goes down, once, on ``stop()``, on
:meth:`PlcTransport.end_matching` (pilot back in state A), when the modem manager reports
the link lost, or after ``idle_timeout`` seconds in which the interface received nothing.
After a lost link or a failed matching, matching starts again after ``retry_after`` seconds
when ``start_matching = "start"``.

With ``emulate_modem = true`` a :class:`~sepgw.slac.emulator.ModemEmulator` plays the local
modem between the machine and the socket, so two hosts joined by a veth pair can match.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from zope.interface import implementer

from sepgw.interfaces import BuildContext, ILinkListener, ITransport, LinkPeer
from sepgw.slac.emulator import ModemEmulator
from sepgw.slac.ev import EVMachine
from sepgw.slac.evse import EVSEMachine
from sepgw.slac.frames import mac_to_str
from sepgw.slac.machine import Driver, Failed, Matched, Timers
from sepgw.slac.modem import EmulatedModemManager, IModemManager, NoModemManager
from sepgw.slac.rawsocket import RawSocket


def timers_from(config: Mapping[str, Any]) -> Timers:
    return Timers(slac_init=config["slac_init_timeout"],
                  match_response=config["match_response"],
                  evse_match_mnbc=config["evse_match_mnbc"],
                  ev_atten_results=config["ev_atten_results"],
                  evse_match_session=config["evse_match_session"],
                  batch_interval=config["batch_interval"], sounds=config["sounds"],
                  match_retry=config["match_retry"], max_match=config["max_match"],
                  set_key=config["set_key_timeout"])


@implementer(ITransport)
class PlcTransport:
    """A port's (or the vehicle's) link over a HomePlug Green PHY modem, matched by SLAC."""

    log = Logger()

    def __init__(self, reactor: Any, name: str, config: Mapping[str, Any], *,
                 socket_factory: Any = RawSocket, modem: Any = None,
                 random: Any = None) -> None:
        self.reactor = reactor
        self.name = name
        self.config = dict(config)
        self.interface = config["interface"]
        self.role = config["role"]
        self.is_up = False
        self.peer: bytes | None = None
        self.nid: bytes | None = None
        self.run_id: bytes | None = None
        self.mac: bytes | None = None
        self.matching = False
        self.matched_at: float | None = None
        self.began_at: float | None = None
        self.emulator: ModemEmulator | None = None
        self._socket_factory = socket_factory
        self._modem = modem
        self._random = random
        self._listeners: list[Any] = []
        self._socket: Any = None
        self._driver: Driver | None = None
        self._check: Any = None
        self._retry: Any = None
        self._rx_last: int | None = None
        self._rx_idle_since: float = 0.0

    # ITransport

    def add_listener(self, listener: Any) -> None:
        listener = ILinkListener(listener)
        self._listeners.append(listener)
        if self.is_up:
            listener.link_up(self._link_peer())

    def start(self) -> None:
        self._socket = self._socket_factory(self.reactor, self.interface, self._from_wire)
        self._socket.open()
        self.mac = self._socket.mac
        assert self.mac is not None
        c = self.config
        kwargs: dict[str, Any] = {"trust_set_key_result": c["trust_set_key_result"]}
        if self._random is not None:
            kwargs["random"] = self._random
        if self.role == "evse":
            machine: Any = EVSEMachine(self.mac, timers_from(c),
                                       max_attenuation=c["max_attenuation_db"] or None,
                                       **kwargs)
        else:
            machine = EVMachine(self.mac, timers_from(c),
                                wait_all_atten_results=c["wait_all_atten_results"], **kwargs)
        self._driver = Driver(machine, self.reactor, self._to_wire, self._decide,
                              name=self.name)
        if c["emulate_modem"]:
            self.emulator = ModemEmulator(self.reactor, self.mac, self.role,
                                          self._driver.received, self._socket.send,
                                          attenuation=c["emulated_attenuation"],
                                          set_key_result=c["emulated_set_key_result"])
            if self._modem is None:
                self._modem = EmulatedModemManager(self.emulator, self.interface)
        self._modem = IModemManager(self._modem or NoModemManager())
        self.log.info("{name}: SLAC {role} on {interface} ({mac}){emulated}", name=self.name,
                      role=self.role, interface=self.interface, mac=mac_to_str(self.mac),
                      emulated=", emulated modem" if self.emulator else "")
        if c["start_matching"] == "start":
            self.begin_matching()

    def stop(self) -> None:
        self._cancel_retry()
        if self._driver is not None:
            self._driver.call("stop")
            self._driver.cancel_all()
        self.matching = False
        self._down("transport stopped")
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    # Control (control pilot)

    def begin_matching(self) -> None:
        """Start SLAC now (EVSE: answer an EV; EV: start matching). Idempotent."""
        if self._driver is None or self.matching:
            return
        self._cancel_retry()
        self.matching = True
        self.began_at = self.reactor.seconds()
        self.log.info("{name}: matching", name=self.name)
        self._driver.call("start")

    def end_matching(self, reason: str = "control pilot state A") -> None:
        """Stop SLAC and drop the link (the vehicle is unplugged)."""
        self._cancel_retry()
        if self._driver is not None:
            self._driver.call("stop")
        self.matching = False
        self._down(reason)
        if self._modem is not None:
            maybeDeferred(self._modem.reset).addErrback(self._log_failure, "modem reset")

    # Wiring

    def _from_wire(self, data: bytes) -> None:
        if self.emulator is not None:
            self.emulator.from_wire(data)
        elif self._driver is not None:
            self._driver.received(data)

    def _to_wire(self, data: bytes) -> None:
        if self.emulator is not None:
            self.emulator.from_host(data)
        elif self._socket is not None:
            self._socket.send(data)

    def _decide(self, decision: Matched | Failed) -> None:
        if isinstance(decision, Matched):
            self.matched_at = self.reactor.seconds()
            self.log.info("{name}: matched {peer} (NID {nid}) in {elapsed:.3f} s",
                          name=self.name, peer=mac_to_str(decision.peer),
                          nid=decision.nid.hex(),
                          elapsed=self.matched_at - (self.began_at or self.matched_at))
            if self.is_up and self.run_id != decision.run_id:
                self._down("matched again" if self.peer == decision.peer
                           else "another peer matched")
            self.nid, self.run_id = decision.nid, decision.run_id
            if self.role == "ev":
                self.matching = False
            self._up(decision.peer)
            return
        if decision.final:
            self.log.warn("{name}: matching failed: {reason}", name=self.name,
                          reason=decision.reason)
            self.matching = False
            self._schedule_retry()
        else:
            self.log.info("{name}: {reason}", name=self.name, reason=decision.reason)

    def _up(self, peer: bytes) -> None:
        if self.is_up and self.peer == peer:
            return
        self.is_up, self.peer = True, peer
        for listener in list(self._listeners):
            listener.link_up(self._link_peer())
        interval = self.config["link_check_interval"]
        if interval > 0 and self._check is None:
            self._rx_last, self._rx_idle_since = self._rx_packets(), self.reactor.seconds()
            self._check = self.reactor.callLater(interval, self._check_link)

    def _down(self, reason: str) -> None:
        if self._check is not None:
            if self._check.active():
                self._check.cancel()
            self._check = None
        if not self.is_up:
            return
        self.is_up, self.peer, self.nid, self.run_id = False, None, None, None
        self.log.info("{name}: link down ({reason})", name=self.name, reason=reason)
        for listener in list(self._listeners):
            listener.link_down(reason)

    def _link_peer(self) -> LinkPeer:
        return LinkPeer(mac=mac_to_str(self.peer) if self.peer else None)

    # Loss detection

    def _check_link(self) -> None:
        self._check = None
        if not self.is_up or self._modem is None:
            return
        d = maybeDeferred(self._modem.link_status)
        d.addCallback(self._link_status)
        d.addErrback(self._log_failure, "modem link status")

    def _link_status(self, status: bool | None) -> None:
        if not self.is_up:
            return
        if status is False:
            return self._lost("the modem reports no PLC link")
        idle = self.config["idle_timeout"]
        if idle > 0:
            now, rx = self.reactor.seconds(), self._rx_packets()
            if rx is None or rx != self._rx_last:
                self._rx_last, self._rx_idle_since = rx, now
            elif now - self._rx_idle_since >= idle:
                return self._lost(f"nothing received for {idle:g} s")
        self._check = self.reactor.callLater(self.config["link_check_interval"],
                                             self._check_link)

    def _lost(self, reason: str) -> None:
        self._driver.call("stop") if self._driver is not None else None
        self.matching = False
        self._down(reason)
        self._schedule_retry()

    def _rx_packets(self) -> int | None:
        try:  # sysfs is in memory: this read does not block
            with open(f"/sys/class/net/{self.interface}/statistics/rx_packets") as fh:
                return int(fh.read())
        except (OSError, ValueError):
            return None

    def _schedule_retry(self) -> None:
        if self.config["start_matching"] != "start" or self._driver is None:
            return
        self._cancel_retry()
        if self.role == "evse":
            self._driver.call("stop")
        self._retry = self.reactor.callLater(self.config["retry_after"], self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self.begin_matching()

    def _cancel_retry(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _log_failure(self, failure: Any, what: str) -> None:
        self.log.failure("{name}: {what} failed", failure, name=self.name, what=what)


def build(config: Mapping[str, Any], context: BuildContext) -> PlcTransport:
    return PlcTransport(context.reactor, context.name, config)
