"""Vendor modem management behind a small interface.

A real PLC modem (a QCA7000 on SPI, say) can be reset and asked whether it has a link
through vendor messages (MMV 0x00, OUI 00:B0:52). sepgw does not ship a driver for any
vendor's messages yet; :class:`NoModemManager` knows nothing and says so (``None``), and
:class:`EmulatedModemManager` reports the state of :class:`~sepgw.slac.emulator.ModemEmulator`.
"""

from __future__ import annotations

from typing import Any

from zope.interface import Interface, implementer


class IModemManager(Interface):
    """Management of the host's own PLC modem."""

    def reset() -> Any:
        """Reset the modem (leave any network); may return a Deferred."""

    def link_status() -> Any:
        """True when the modem is in a network with a peer, False when it is not, None when
        unknown; may return a Deferred firing with one of these."""


@implementer(IModemManager)
class NoModemManager:
    """For modems without vendor support: nothing to reset, link state unknown."""

    def reset(self) -> None:
        return None

    def link_status(self) -> None:
        return None


@implementer(IModemManager)
class EmulatedModemManager:
    """The emulated modem: in a network once a key was set, and while the interface has
    carrier (the other end of the veth pair exists)."""

    def __init__(self, emulator: Any, interface: str, carrier: Any = None) -> None:
        self.emulator = emulator
        self.interface = interface
        self._carrier = carrier or self._sysfs_carrier

    def _sysfs_carrier(self) -> bool:
        try:  # sysfs is in memory: this read does not block
            with open(f"/sys/class/net/{self.interface}/carrier") as fh:
                return fh.read().strip() == "1"
        except OSError:
            return False

    def reset(self) -> None:
        self.emulator.reset()

    def link_status(self) -> bool:
        return bool(self.emulator.link_status() and self._carrier())
