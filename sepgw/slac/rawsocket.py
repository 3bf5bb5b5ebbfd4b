"""A raw AF_PACKET socket for one ethertype on one interface, read by the reactor.

The socket is non-blocking; the reactor calls :meth:`RawSocket.doRead` when frames are
waiting, and each frame received (not our own outgoing copies, which AF_PACKET also shows)
goes to the ``receive`` callback on the reactor thread. Linux only; needs CAP_NET_RAW.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from sepgw.slac.frames import ETHERTYPE_HOMEPLUG

PACKET_OUTGOING = 4
"""sll_pkttype of a frame this host sent (seen by every packet socket on the interface)."""
MAX_FRAME = 1518
READ_BUDGET = 64
"""At most this many frames per doRead, so one busy socket cannot starve the reactor."""


@implementer(IReadDescriptor)
class RawSocket:
    """Frames of ``ethertype`` on ``interface``."""

    log = Logger()

    def __init__(self, reactor: Any, interface: str, receive: Callable[[bytes], None],
                 ethertype: int = ETHERTYPE_HOMEPLUG) -> None:
        self.reactor = reactor
        self.interface = interface
        self.receive = receive
        self.ethertype = ethertype
        self.mac: bytes | None = None
        self._socket: socket.socket | None = None

    def open(self) -> None:
        """Open, bind and start reading; raises OSError (no such interface, no privilege)."""
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(self.ethertype))
        try:
            s.bind((self.interface, self.ethertype))
            s.setblocking(False)
            self.mac = s.getsockname()[4]
            # Frames queued between socket() and bind() may come from any interface.
            while True:
                try:
                    s.recv(MAX_FRAME)
                except BlockingIOError:
                    break
        except BaseException:
            s.close()
            raise
        self._socket = s
        self.reactor.addReader(self)

    def send(self, data: bytes) -> None:
        if self._socket is None:
            return
        try:
            self._socket.send(data)
        except BlockingIOError:
            self.log.warn("{interface}: send buffer full, frame dropped",
                          interface=self.interface)
        except OSError as e:
            self.log.warn("{interface}: send failed: {error}", interface=self.interface,
                          error=e)

    def close(self) -> None:
        if self._socket is not None:
            self.reactor.removeReader(self)
            self._socket.close()
            self._socket = None

    # IReadDescriptor

    def fileno(self) -> int:
        return -1 if self._socket is None else self._socket.fileno()

    def doRead(self) -> None:
        for _ in range(READ_BUDGET):
            if self._socket is None:
                return
            try:
                data, address = self._socket.recvfrom(MAX_FRAME)
            except BlockingIOError:
                return
            except OSError as e:
                self.log.error("{interface}: receive failed: {error}",
                               interface=self.interface, error=e)
                return
            if address[2] == PACKET_OUTGOING:
                continue
            try:
                self.receive(data)
            except Exception:
                self.log.failure("{interface}: frame handler failed",
                                 interface=self.interface)

    def connectionLost(self, reason: Failure) -> None:
        self.close()

    def logPrefix(self) -> str:
        return f"raw {self.interface}"
