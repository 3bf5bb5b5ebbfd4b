"""The EVSE side of SLAC as a pure state machine (no I/O, no clock: timers are outputs).

Inputs (each returns a list of :mod:`sepgw.slac.machine` outputs):

* ``start()`` -- matching allowed (in a charger: control pilot in state B); arms
  TT_EVSE_SLAC_init; ``stop()`` -- matching off (pilot in state A), every attempt dropped;
* ``frame(frame)`` -- a decoded frame from the wire or from the EVSE's own modem;
* ``timer(name)`` -- a timer the machine started has fired.

Each matching attempt is keyed by (EV MAC, RunID), so several EVs sounding at once
(crosstalk between neighbouring ports) are kept apart. Per attempt::

    CM_SLAC_PARM.REQ  -> CM_SLAC_PARM.CNF (exactly NUM_SOUNDS=10, TIME_OUT=6, RESP_TYPE=1,
                         FORWARDING_STA=EV MAC)                               [sounding]
    CM_START_ATTEN_CHAR.IND (first)  -> arm TT_EVSE_match_MNBC
    CM_ATTEN_PROFILE.IND (from our modem, one per sound)  -> sum the 58 groups
    all sounds in, or TT_EVSE_match_MNBC fired -> CM_ATTEN_CHAR.IND with the averages
                         (repeated every TT_match_response, C_EV_match_retry times)  [results]
    CM_ATTEN_CHAR.RSP (Result 0)                                         [wait match]
    CM_SLAC_MATCH.REQ (EVSE MAC = ours)  -> CM_SLAC_MATCH.CNF (NID, fresh NMK),
                         CM_SET_KEY.REQ to our modem                          [set key]
    CM_SET_KEY.CNF  -> Matched(peer=EV MAC)                                   [matched]

A repeated CM_SLAC_MATCH.REQ (the EV lost our CNF) is answered again with the same NID/NMK
and never triggers a second CM_SET_KEY.REQ. Attempts not matched within
TT_EVSE_match_session fail. ``max_attenuation`` (dB, mean over groups) makes the EVSE
ignore EVs heard too faintly: they are on a neighbouring port.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Hashable

from sepgw.slac import frames as f
from sepgw.slac.frames import Frame, mac_to_str
from sepgw.slac.machine import (CancelTimer, Failed, Matched, Output, Send, StartTimer,
                                Timers, random_bytes)


class Phase(enum.Enum):
    sounding = "sounding"  # CNF sent, waiting for START_ATTEN_CHAR / profiles
    results = "results"  # ATTEN_CHAR.IND sent, waiting for the RSP
    wait_match = "wait_match"  # RSP received, waiting for MATCH.REQ
    set_key = "set_key"  # MATCH.CNF sent, CM_SET_KEY.REQ pending at our modem
    matched = "matched"


@dataclass
class Attempt:
    ev: bytes
    run_id: bytes
    phase: Phase = Phase.sounding
    expected_sounds: int = 10
    started: bool = False  # a START_ATTEN_CHAR.IND was seen
    profiles: int = 0
    sums: list[int] = field(default_factory=lambda: [0] * f.NUM_GROUPS)
    groups: int = f.NUM_GROUPS
    atten: f.AttenCharInd | None = None
    ind_sent: int = 0
    nmk: bytes | None = None
    nid: bytes | None = None
    set_key_sent: int = 0

    @property
    def key(self) -> tuple[bytes, bytes]:
        return (self.ev, self.run_id)

    def label(self) -> str:
        return f"EV {mac_to_str(self.ev)} run {self.run_id.hex()}"


class EVSEMachine:
    """SLAC for one EVSE port. ``mac`` is the EVSE host's MAC (the source of its frames)."""

    def __init__(self, mac: bytes, timers: Timers | None = None, *,
                 random: Callable[[int], bytes] = random_bytes,
                 max_attenuation: float | None = None,
                 trust_set_key_result: bool = False,
                 security_level: int = 0) -> None:
        self.mac = mac
        self.t = timers or Timers()
        self._random = random
        self.max_attenuation = max_attenuation
        self.trust_set_key_result = trust_set_key_result
        self.security_level = security_level
        self.enabled = False
        self.attempts: dict[tuple[bytes, bytes], Attempt] = {}
        self.matched: Attempt | None = None
        self._set_key_nonce = b""

    # ---------------------------------------------------------------------------- inputs

    def start(self) -> list[Output]:
        """Matching allowed: answer EVs from now on; fail if none starts within
        TT_EVSE_SLAC_init."""
        if self.enabled:
            return []
        self.enabled = True
        return [StartTimer("slac_init", self.t.slac_init)]

    def stop(self) -> list[Output]:
        """Matching off: every attempt and the match are dropped, timers cancelled."""
        out: list[Output] = [CancelTimer("slac_init")]
        for attempt in list(self.attempts.values()):
            out += self._drop(attempt)
        self.enabled = False
        self.matched = None
        return out

    def frame(self, frame: Frame) -> list[Output]:
        msg = frame.message
        if frame.dst not in (self.mac, f.BROADCAST) or frame.src == self.mac:
            return []
        if isinstance(msg, f.SlacParmReq):
            return self._parm_req(frame, msg)
        if isinstance(msg, f.StartAttenCharInd):
            return self._start_atten(frame, msg)
        if isinstance(msg, f.AttenProfileInd):
            return self._profile(msg)
        if isinstance(msg, f.AttenCharRsp):
            return self._atten_rsp(frame, msg)
        if isinstance(msg, f.SlacMatchReq):
            return self._match_req(frame, msg)
        if isinstance(msg, f.SetKeyCnf):
            return self._set_key_cnf(msg)
        return []  # CM_MNBC_SOUND.IND and others: our modem measures the sounds

    def timer(self, name: Hashable) -> list[Output]:
        if name == "slac_init":
            if self.enabled and not self.attempts and self.matched is None:
                return [Failed("no CM_SLAC_PARM.REQ from an EV within TT_EVSE_SLAC_init "
                               f"({self.t.slac_init:g} s)")]
            return []
        kind: str
        key: tuple[bytes, bytes]
        kind, key = name  # type: ignore[misc]
        attempt = self.attempts.get(key)
        if attempt is None:
            return []
        if kind == "mnbc":
            return self._results(attempt)
        if kind == "ind":
            if attempt.phase is not Phase.results:
                return []
            if attempt.ind_sent > self.t.match_retry:
                return self._fail(attempt, "no CM_ATTEN_CHAR.RSP after "
                                  f"{attempt.ind_sent} CM_ATTEN_CHAR.IND")
            return self._send_ind(attempt)
        if kind == "session":
            return self._fail(attempt, "not matched within TT_EVSE_match_session "
                              f"({self.t.evse_match_session:g} s) in phase "
                              f"{attempt.phase.value}")
        if kind == "set_key":
            if attempt.set_key_sent > self.t.set_key_retry:
                return self._fail(attempt, "our modem did not confirm CM_SET_KEY.REQ")
            return self._send_set_key(attempt)
        return []

    # ---------------------------------------------------------------------------- steps

    def _parm_req(self, frame: Frame, msg: f.SlacParmReq) -> list[Output]:
        if not self.enabled:
            return []
        if msg.application_type != 0 or msg.security_type != 0:
            return [Failed(f"ignored CM_SLAC_PARM.REQ from {mac_to_str(frame.src)}: "
                           f"application type {msg.application_type}, security type "
                           f"{msg.security_type} (only 0/0 is PEV-EVSE matching)",
                           frame.src, msg.run_id, final=False)]
        out: list[Output] = [CancelTimer("slac_init")]
        key = (frame.src, msg.run_id)
        attempt = self.attempts.get(key)
        if attempt is None:
            # A new RunID from the same EV replaces its older attempt.
            for old in [a for a in self.attempts.values() if a.ev == frame.src]:
                out += self._drop(old)
            attempt = Attempt(frame.src, msg.run_id, expected_sounds=10)
            self.attempts[key] = attempt
            out.append(StartTimer(("session", key), self.t.evse_match_session))
        if attempt.phase is Phase.sounding:  # a repeated REQ: the EV lost our CNF
            out.append(Send(Frame(frame.src, self.mac, f.SlacParmCnf(
                forwarding_sta=frame.src, run_id=msg.run_id, num_sounds=10, time_out=6,
                resp_type=1))))
        return out

    def _start_atten(self, frame: Frame, msg: f.StartAttenCharInd) -> list[Output]:
        attempt = self.attempts.get((frame.src, msg.run_id))
        if attempt is None or attempt.phase is not Phase.sounding or attempt.started:
            return []
        attempt.started = True
        attempt.expected_sounds = msg.num_sounds or 10
        return [StartTimer(("mnbc", attempt.key), self.t.evse_match_mnbc)]

    def _profile(self, msg: f.AttenProfileInd) -> list[Output]:
        candidates = [a for a in self.attempts.values()
                      if a.ev == msg.pev_mac and a.phase is Phase.sounding]
        if not candidates:
            return []
        attempt = candidates[-1]
        attempt.profiles += 1
        attempt.groups = min(attempt.groups, msg.num_groups)
        for i, value in enumerate(msg.aag):
            attempt.sums[i] += value
        if attempt.started and attempt.profiles >= attempt.expected_sounds:
            return [CancelTimer(("mnbc", attempt.key))] + self._results(attempt)
        return []

    def _results(self, attempt: Attempt) -> list[Output]:
        if attempt.phase is not Phase.sounding:
            return []
        if attempt.profiles == 0:
            return self._fail(attempt, "no CM_ATTEN_PROFILE.IND from our modem within "
                              "TT_EVSE_match_MNBC (a modem that never sends them, such as "
                              "an AR7420, cannot be an EVSE's modem)")
        n = attempt.profiles
        aag = tuple((s + n // 2) // n for s in attempt.sums[:attempt.groups])
        if self.max_attenuation is not None and aag and \
                sum(aag) / len(aag) > self.max_attenuation:
            return self._fail(attempt, f"mean attenuation {sum(aag) / len(aag):.1f} dB is "
                              f"above {self.max_attenuation:g} dB: an EV on another port")
        attempt.atten = f.AttenCharInd(source_address=attempt.ev, run_id=attempt.run_id,
                                       num_sounds=n, aag=aag, num_groups=len(aag))
        attempt.phase = Phase.results
        return self._send_ind(attempt)

    def _send_ind(self, attempt: Attempt) -> list[Output]:
        assert attempt.atten is not None
        attempt.ind_sent += 1
        return [Send(Frame(attempt.ev, self.mac, attempt.atten)),
                StartTimer(("ind", attempt.key), self.t.match_response)]

    def _atten_rsp(self, frame: Frame, msg: f.AttenCharRsp) -> list[Output]:
        attempt = self.attempts.get((frame.src, msg.run_id))
        if attempt is None or attempt.phase is not Phase.results:
            return []
        if msg.result != 0:
            return self._fail(attempt, f"CM_ATTEN_CHAR.RSP result {msg.result}")
        attempt.phase = Phase.wait_match
        return [CancelTimer(("ind", attempt.key))]

    def _match_req(self, frame: Frame, msg: f.SlacMatchReq) -> list[Output]:
        if msg.evse_mac != self.mac or msg.pev_mac != frame.src:
            return []  # the EV chose another EVSE
        key = (frame.src, msg.run_id)
        attempt = self.attempts.get(key)
        if attempt is None and self.matched is not None and self.matched.key == key:
            attempt = self.matched  # the EV lost our CNF: answer again, no new key
        if attempt is None or attempt.phase is Phase.sounding:
            return []
        out: list[Output] = []
        if attempt.phase is Phase.results:  # the RSP was lost; the EV went on
            out.append(CancelTimer(("ind", attempt.key)))
        if attempt.nmk is None:
            attempt.nmk = self._random(16)
            attempt.nid = f.nid_from_nmk(attempt.nmk, self.security_level)
        assert attempt.nid is not None
        out.append(Send(Frame(attempt.ev, self.mac, f.SlacMatchCnf(
            pev_mac=msg.pev_mac, evse_mac=self.mac, run_id=msg.run_id, pev_id=msg.pev_id,
            evse_id=msg.evse_id, nid=attempt.nid, nmk=attempt.nmk))))
        if attempt.phase in (Phase.results, Phase.wait_match):
            attempt.phase = Phase.set_key
            # Another EV's attempt cannot match this port any more.
            for other in [a for a in self.attempts.values() if a is not attempt]:
                out += self._fail(other, f"{attempt.label()} matched this port", final=False)
            out += self._send_set_key(attempt)
        return out

    def _send_set_key(self, attempt: Attempt) -> list[Output]:
        assert attempt.nmk is not None and attempt.nid is not None
        attempt.set_key_sent += 1
        self._set_key_nonce = self._random(4)
        return [Send(Frame(f.LOCAL_MODEM, self.mac, f.SetKeyReq(
                    nid=attempt.nid, nmk=attempt.nmk, my_nonce=self._set_key_nonce,
                    cco_cap=0))),
                StartTimer(("set_key", attempt.key), self.t.set_key)]

    def _set_key_cnf(self, msg: f.SetKeyCnf) -> list[Output]:
        pending = [a for a in self.attempts.values() if a.phase is Phase.set_key]
        if not pending:
            return []
        attempt = pending[0]
        if self.trust_set_key_result and msg.result != 0:
            return self._fail(attempt, f"our modem refused the key (CM_SET_KEY.CNF result "
                              f"{msg.result})")
        attempt.phase = Phase.matched
        assert attempt.nid is not None and attempt.nmk is not None
        self.matched = attempt
        del self.attempts[attempt.key]
        return [CancelTimer(("set_key", attempt.key)), CancelTimer(("session", attempt.key)),
                Matched(attempt.ev, attempt.run_id, attempt.nid, attempt.nmk, msg.result)]

    # ---------------------------------------------------------------------------- helpers

    def _drop(self, attempt: Attempt) -> list[Output]:
        self.attempts.pop(attempt.key, None)
        return [CancelTimer((kind, attempt.key))
                for kind in ("session", "mnbc", "ind", "set_key")]

    def _fail(self, attempt: Attempt, reason: str, final: bool = False) -> list[Output]:
        return self._drop(attempt) + [Failed(f"{attempt.label()}: {reason}", attempt.ev,
                                             attempt.run_id, final=final)]
