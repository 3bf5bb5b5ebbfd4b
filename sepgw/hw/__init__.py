"""Helpers for hardware plugins: a Modbus client on Twisted (:mod:`sepgw.hw.modbus`) and
SunSpec map discovery and model decoding (:mod:`sepgw.hw.sunspec`).

Nothing here is imported on the start-up path unless a plugin that needs it is configured.
"""
