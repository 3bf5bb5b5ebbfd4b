"""sepgw: IEEE 2030.5 SunSpec V2G-AC (SAE J3072) EVSE gateway, PEV emulator and DME uplink."""

__version__ = "0.1.0.dev0"
