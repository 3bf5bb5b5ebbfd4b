"""A frame-level emulator of a host's own HomePlug Green PHY modem (no real modem).

It sits between a SLAC host and the wire (for example one end of a veth pair) and plays
what the modem would do with the host's management frames:

* a CM_SET_KEY.REQ from the host (to 00:B0:52:00:00:01) never reaches the wire: the emulator
  answers with CM_SET_KEY.CNF (``set_key_result``, 0 by default; 1 emulates firmware that
  reports success inverted) and remembers the NID/NMK it "joined";
* on the EVSE side, each CM_MNBC_SOUND.IND heard from the wire is turned into a
  CM_ATTEN_PROFILE.IND to the host carrying the configured attenuation (dB per group:
  one value for all 58 groups, or 58 values), as a real EVSE modem does;
* every other frame passes through unchanged in both directions.

Replies to the host are delivered after ``latency`` seconds on the injected clock (0 by
default: the next reactor turn, never re-entrantly).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.logger import Logger

from sepgw.slac import frames as f


class ModemEmulator:
    """One host's modem. ``to_host`` and ``to_wire`` take frame bytes."""

    log = Logger()

    def __init__(self, clock: Any, host_mac: bytes, role: str,
                 to_host: Callable[[bytes], None], to_wire: Callable[[bytes], None], *,
                 attenuation: Sequence[int] = (30,), set_key_result: int = 0,
                 modem_mac: bytes | None = None, latency: float = 0.0) -> None:
        if role not in ("evse", "ev"):
            raise ValueError(f"role must be 'evse' or 'ev', not {role!r}")
        if len(attenuation) not in (1, f.NUM_GROUPS):
            raise ValueError(f"attenuation needs 1 or {f.NUM_GROUPS} values, "
                             f"not {len(attenuation)}")
        self.clock = clock
        self.host_mac = host_mac
        self.role = role
        self.to_host = to_host
        self.to_wire = to_wire
        self.aag = tuple(attenuation) * (f.NUM_GROUPS if len(attenuation) == 1 else 1)
        self.set_key_result = set_key_result
        # A locally administered address derived from the host's.
        self.modem_mac = modem_mac or bytes([0x02]) + host_mac[1:5] + bytes([host_mac[5] ^ 1])
        self.latency = latency
        self.nid: bytes | None = None
        self.nmk: bytes | None = None
        self.set_keys = 0
        self.profiles = 0

    def from_host(self, data: bytes) -> None:
        """A frame the host sends."""
        if data[0:6] == f.LOCAL_MODEM:
            try:
                frame = f.decode(data)
            except f.FrameError as e:
                self.log.warn("emulated modem: bad management frame from host: {e}", e=str(e))
                return
            if isinstance(frame.message, f.SetKeyReq):
                req = frame.message
                self.nid, self.nmk = req.nid, req.nmk
                self.set_keys += 1
                self._host(f.Frame(self.host_mac, self.modem_mac, f.SetKeyCnf(
                    result=self.set_key_result, my_nonce=bytes(4), your_nonce=req.my_nonce,
                    pid=req.pid, prn=req.prn, pmn=req.pmn, cco_cap=req.cco_cap)))
            return  # other local management (vendor) is not emulated
        self.to_wire(data)

    def from_wire(self, data: bytes) -> None:
        """A frame received from the wire."""
        if self.role == "evse" and len(data) >= 17 and data[14:17] == b"\x01\x76\x60":
            try:
                frame = f.decode(data)
            except f.FrameError as e:
                self.log.warn("emulated modem: bad sound from the wire: {e}", e=str(e))
                return
            self.profiles += 1
            self._host(f.Frame(self.host_mac, self.modem_mac, f.AttenProfileInd(
                pev_mac=frame.src, aag=self.aag)))
            return
        self.to_host(data)

    def link_status(self) -> bool:
        """Whether the emulated modem has joined a network (a key was set)."""
        return self.nmk is not None

    def reset(self) -> None:
        self.nid = self.nmk = None

    def _host(self, frame: f.Frame) -> None:
        self.clock.callLater(self.latency, self.to_host, f.encode(frame))
