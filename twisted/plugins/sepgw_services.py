"""twistd service makers of sepgw. Lazy: nothing of sepgw is imported until one is used."""

from twisted.application.service import ServiceMaker

sepgw = ServiceMaker(
    "sepgw EVSE gateway",
    "sepgw.service.evse",
    "IEEE 2030.5 V2G-AC (SAE J3072) EVSE gateway: the charger's 2030.5 server.",
    "sepgw",
)

sepgw_pev = ServiceMaker(
    "sepgw PEV",
    "sepgw.service.pev",
    "IEEE 2030.5 V2G-AC (SAE J3072) PEV client: vehicle controller or emulator.",
    "sepgw-pev",
)

sepgw_dme = ServiceMaker(
    "sepgw lab DME",
    "sepgw.dme.service",
    "A utility's IEEE 2030.5 head-end (DME) for labs: controls out, readings in (SQLite).",
    "sepgw-dme",
)
