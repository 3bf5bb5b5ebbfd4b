"""The options of the ``plc`` transport plugin, apart from the SLAC machinery so that plugin
discovery can read them without importing it."""

from __future__ import annotations

from typing import Any, Iterator

from sepgw.config.schema import Key, Section


def _attenuation_count(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    values = config.get("emulated_attenuation")
    if values is not None and len(values) not in (1, 58):
        yield ("emulated_attenuation", f"give 1 value (all groups) or 58 values, not "
                                       f"{len(values)}")


OPTIONS = Section({
    "interface": Key("str", doc="Network interface of the PLC modem (e.g. eth1 for a "
                                "QCA7000 on qcaspi).", non_empty=True),
    "role": Key("str", "evse", "Which side of SLAC this host plays.", choices=("evse", "ev")),
    "start_matching": Key("str", "start", "`start`: match as soon as the transport starts "
                          "(and again after a loss); `call`: only when begin_matching() is "
                          "called (control pilot state B).", choices=("start", "call")),
    "slac_init_timeout": Key("float", 50.0, "TT_EVSE_SLAC_init (s): EVSE gives up waiting "
                             "for CM_SLAC_PARM.REQ.", min=1),
    "match_response": Key("float", 0.2, "TT_match_response (s).", min=0.01),
    "evse_match_mnbc": Key("float", 0.6, "TT_EVSE_match_MNBC (s).", min=0.01),
    "ev_atten_results": Key("float", 1.2, "TT_EV_atten_results (s).", min=0.01),
    "evse_match_session": Key("float", 10.0, "TT_EVSE_match_session (s).", min=0.1),
    "batch_interval": Key("float", 0.02, "TP_EV_batch_msg_interval (s; the standard says "
                          "0.02-0.05).", min=0.001, max=1),
    "sounds": Key("int", 10, "C_EV_match_MNBC: sounds the EV sends.", min=1, max=255),
    "match_retry": Key("int", 2, "C_EV_match_retry: repetitions of an unanswered REQ/IND.",
                       min=0, max=10),
    "max_match": Key("int", 3, "C_conn_max_match: EV attempts (new RunID each) before a "
                     "failure is final.", min=1, max=100),
    "set_key_timeout": Key("float", 1.0, "Seconds to wait for the modem's CM_SET_KEY.CNF.",
                           min=0.01),
    "trust_set_key_result": Key("bool", False, "Fail when CM_SET_KEY.CNF's Result is not 0 "
                                "(some QCA firmware reports it inverted: off by default)."),
    "wait_all_atten_results": Key("bool", True, "EV: wait the whole TT_EV_atten_results for "
                                  "CM_ATTEN_CHAR.IND (the standard); false: choose once "
                                  "every EVSE that confirmed has answered."),
    "max_attenuation_db": Key("float", 0.0, "EVSE: ignore EVs whose mean attenuation is "
                              "above this (dB; neighbouring-port crosstalk); 0 = off.",
                              min=0, max=255),
    "retry_after": Key("float", 10.0, "TT_matching_repetition (s): pause before matching "
                       "again after a failure or a lost link (start_matching = start).",
                       min=0),
    "link_check_interval": Key("float", 1.0, "Seconds between link checks once matched "
                               "(modem link status, idle timeout); 0 = no checks.", min=0),
    "idle_timeout": Key("float", 0.0, "Link lost after this many seconds in which the "
                        "interface received no frame at all; 0 = off.", min=0),
    "emulate_modem": Key("bool", False, "Emulate the local modem (labs and tests: a veth "
                         "pair instead of PLC)."),
    "emulated_attenuation": Key(["int"], [30], "Emulated modem, EVSE side: attenuation (dB) "
                                "reported per sound, 1 or 58 values.", min=0, max=255),
    "emulated_set_key_result": Key("int", 0, "Emulated modem: Result in CM_SET_KEY.CNF.",
                                   min=0, max=255),
}, rules=[_attenuation_count])
"""The options of the ``plc`` transport plugin."""
