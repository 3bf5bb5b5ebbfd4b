"""The EV side of SLAC as a pure state machine (no I/O, no clock: timers are outputs).

Inputs (each returns a list of :mod:`sepgw.slac.machine` outputs): ``start()`` (the EV is
plugged in: begin matching), ``stop()``, ``frame(frame)``, ``timer(name)``.

One attempt, with a fresh random RunID::

    CM_SLAC_PARM.REQ (broadcast; repeated every TT_match_response, C_EV_match_retry times)
    CM_SLAC_PARM.CNF (RunID ours)  -> CM_START_ATTEN_CHAR.IND x3, then CM_MNBC_SOUND.IND x10,
                                      one every TP_EV_batch_msg_interval; TT_EV_atten_results
                                      armed at the first CM_START_ATTEN_CHAR.IND
    CM_ATTEN_CHAR.IND from each EVSE that heard us -> CM_ATTEN_CHAR.RSP (Result 0) to it
    TT_EV_atten_results fired  -> choose the EVSE with the lowest mean attenuation,
                                  CM_SLAC_MATCH.REQ to it (repeated like PARM.REQ)
    CM_SLAC_MATCH.CNF  -> CM_SET_KEY.REQ (its NID and NMK) to our own modem
    CM_SET_KEY.CNF  -> Matched(peer = the chosen EVSE's MAC)

A failed attempt (no CNF, no CM_ATTEN_CHAR.IND, no MATCH.CNF) is retried with a new RunID
up to C_conn_max_match attempts in all; then ``Failed(final=True)``.
"""

from __future__ import annotations

import enum
from typing import Callable, Hashable

from sepgw.slac import frames as f
from sepgw.slac.frames import Frame
from sepgw.slac.machine import (CancelTimer, Failed, Matched, Output, Send, StartTimer,
                                Timers, random_bytes)


class Phase(enum.Enum):
    idle = "idle"
    parm = "parm"
    sounding = "sounding"
    match = "match"
    set_key = "set_key"
    matched = "matched"
    failed = "failed"


TIMERS = ("parm", "batch", "atten_results", "match", "set_key")


class EVMachine:
    """SLAC for the EV. ``mac`` is the EV host's MAC."""

    def __init__(self, mac: bytes, timers: Timers | None = None, *,
                 random: Callable[[int], bytes] = random_bytes,
                 trust_set_key_result: bool = False,
                 wait_all_atten_results: bool = True) -> None:
        self.mac = mac
        self.t = timers or Timers()
        self._random = random
        self.trust_set_key_result = trust_set_key_result
        self.wait_all_atten_results = wait_all_atten_results
        self.phase = Phase.idle
        self.attempt = 0
        self.run_id = b""
        self.sent = 0  # REQ repetitions in the current phase
        self.responders: list[bytes] = []  # EVSEs whose PARM.CNF we got
        self.results: dict[bytes, f.AttenCharInd] = {}
        self.chosen: bytes | None = None
        self.nid = b""
        self.nmk = b""
        self._batch = 0
        self._num_sounds = self.t.sounds

    # ---------------------------------------------------------------------------- inputs

    def start(self) -> list[Output]:
        if self.phase not in (Phase.idle, Phase.failed):
            return []
        self.attempt = 0
        return self._new_attempt()

    def stop(self) -> list[Output]:
        self.phase = Phase.idle
        return [CancelTimer(name) for name in TIMERS]

    def frame(self, frame: Frame) -> list[Output]:
        msg = frame.message
        if frame.dst != self.mac or frame.src == self.mac:
            return []
        if isinstance(msg, f.SlacParmCnf):
            return self._parm_cnf(frame, msg)
        if isinstance(msg, f.AttenCharInd):
            return self._atten_ind(frame, msg)
        if isinstance(msg, f.SlacMatchCnf):
            return self._match_cnf(frame, msg)
        if isinstance(msg, f.SetKeyCnf):
            return self._set_key_cnf(msg)
        return []

    def timer(self, name: Hashable) -> list[Output]:
        if name == "parm" and self.phase is Phase.parm:
            if self.sent > self.t.match_retry:
                return self._retry("no CM_SLAC_PARM.CNF")
            return self._send_parm()
        if name == "batch" and self.phase is Phase.sounding:
            return self._send_batch()
        if name == "atten_results" and self.phase is Phase.sounding:
            return self._choose()
        if name == "match" and self.phase is Phase.match:
            if self.sent > self.t.match_retry:
                return self._retry("no CM_SLAC_MATCH.CNF")
            return self._send_match()
        if name == "set_key" and self.phase is Phase.set_key:
            if self.sent > self.t.set_key_retry:
                return self._retry("our modem did not confirm CM_SET_KEY.REQ")
            return self._send_set_key()
        return []

    # ---------------------------------------------------------------------------- steps

    def _new_attempt(self) -> list[Output]:
        self.attempt += 1
        self.run_id = self._random(8)
        self.responders, self.results, self.chosen = [], {}, None
        self.phase = Phase.parm
        self.sent = 0
        return self._send_parm()

    def _send_parm(self) -> list[Output]:
        self.sent += 1
        return [Send(Frame(f.BROADCAST, self.mac, f.SlacParmReq(run_id=self.run_id))),
                StartTimer("parm", self.t.match_response)]

    def _parm_cnf(self, frame: Frame, msg: f.SlacParmCnf) -> list[Output]:
        if msg.run_id != self.run_id or msg.forwarding_sta != self.mac:
            return []
        if frame.src not in self.responders:
            self.responders.append(frame.src)
        if self.phase is not Phase.parm:
            return []
        self.phase = Phase.sounding
        self._num_sounds = msg.num_sounds or self.t.sounds
        self._batch = 0
        out: list[Output] = [CancelTimer("parm"),
                             StartTimer("atten_results", self.t.ev_atten_results)]
        return out + self._send_batch()

    def _send_batch(self) -> list[Output]:
        """The next START_ATTEN_CHAR.IND or MNBC_SOUND.IND, one per batch interval."""
        n_start = self.t.start_atten_char_inds
        i = self._batch
        self._batch += 1
        if i < n_start:
            msg: f.Message = f.StartAttenCharInd(forwarding_sta=self.mac, run_id=self.run_id,
                                                 num_sounds=self._num_sounds, time_out=6)
        else:
            msg = f.MnbcSoundInd(cnt=self._num_sounds - 1 - (i - n_start), run_id=self.run_id,
                                 rnd=self._random(16))
        out: list[Output] = [Send(Frame(f.BROADCAST, self.mac, msg))]
        if self._batch < n_start + self._num_sounds:
            out.append(StartTimer("batch", self.t.batch_interval))
        return out

    def _atten_ind(self, frame: Frame, msg: f.AttenCharInd) -> list[Output]:
        if msg.run_id != self.run_id or msg.source_address != self.mac:
            return []
        if self.phase not in (Phase.sounding, Phase.match, Phase.set_key, Phase.matched):
            return []
        rsp = Send(Frame(frame.src, self.mac, f.AttenCharRsp(
            source_address=self.mac, run_id=self.run_id, source_id=msg.source_id,
            resp_id=msg.resp_id, result=0)))
        if self.phase is not Phase.sounding:
            return [rsp]  # a repeated IND: our RSP was lost
        self.results.setdefault(frame.src, msg)
        out: list[Output] = [rsp]
        if not self.wait_all_atten_results and self._batch >= \
                self.t.start_atten_char_inds + self._num_sounds and \
                set(self.responders) <= set(self.results):
            out += [CancelTimer("atten_results")] + self._choose()
        return out

    def _choose(self) -> list[Output]:
        out: list[Output] = [CancelTimer("batch")]
        if not self.results:
            return out + self._retry("no CM_ATTEN_CHAR.IND within TT_EV_atten_results")
        # Lowest mean attenuation wins; the first to answer on a tie.
        self.chosen = min(self.results, key=lambda m: self.results[m].mean_attenuation())
        self.phase = Phase.match
        self.sent = 0
        return out + self._send_match()

    def _send_match(self) -> list[Output]:
        assert self.chosen is not None
        self.sent += 1
        return [Send(Frame(self.chosen, self.mac, f.SlacMatchReq(
                    pev_mac=self.mac, evse_mac=self.chosen, run_id=self.run_id))),
                StartTimer("match", self.t.match_response)]

    def _match_cnf(self, frame: Frame, msg: f.SlacMatchCnf) -> list[Output]:
        if self.phase is not Phase.match or frame.src != self.chosen or \
                msg.run_id != self.run_id or msg.pev_mac != self.mac:
            return []
        self.nid, self.nmk = msg.nid, msg.nmk
        self.phase = Phase.set_key
        self.sent = 0
        return [CancelTimer("match")] + self._send_set_key()

    def _send_set_key(self) -> list[Output]:
        self.sent += 1
        return [Send(Frame(f.LOCAL_MODEM, self.mac, f.SetKeyReq(
                    nid=self.nid, nmk=self.nmk, my_nonce=self._random(4)))),
                StartTimer("set_key", self.t.set_key)]

    def _set_key_cnf(self, msg: f.SetKeyCnf) -> list[Output]:
        if self.phase is not Phase.set_key:
            return []
        if self.trust_set_key_result and msg.result != 0:
            return [CancelTimer("set_key")] + self._retry(
                f"our modem refused the key (CM_SET_KEY.CNF result {msg.result})")
        assert self.chosen is not None
        self.phase = Phase.matched
        return [CancelTimer("set_key"),
                Matched(self.chosen, self.run_id, self.nid, self.nmk, msg.result)]

    def _retry(self, reason: str) -> list[Output]:
        reason = f"attempt {self.attempt} (run {self.run_id.hex()}): {reason}"
        if self.attempt >= self.t.max_match:
            self.phase = Phase.failed
            return [Failed(f"{reason}; gave up after {self.attempt} attempt(s)",
                           self.chosen, self.run_id, final=True)]
        return [Failed(reason, self.chosen, self.run_id, final=False)] + self._new_attempt()
