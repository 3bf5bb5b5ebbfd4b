"""The lab DME's configuration (``etc/dme.toml``), declared like the other roles'
(:mod:`sepgw.config.sections`). The DME loads no plugins, so it has a loader of its own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from sepgw.config.loader import read_toml
from sepgw.config.schema import ConfigError, Key, Section
from sepgw.config.sections import LOGGING, TLS

__all__ = ["DME_SCHEMA", "DEFAULT_PATH", "load_dme"]

DEFAULT_PATH = Path("/etc/sepgw/dme.toml")
_LFDI = re.compile(r"[0-9A-Fa-f]{40}")


def _lfdis(root: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for i, lfdi in enumerate((root.get("registration") or {}).get("allow") or []):
        if not _LFDI.fullmatch(lfdi):
            yield f"registration.allow[{i}]", f"{lfdi!r} is not an LFDI (40 hex digits)"


DME_SCHEMA = Section(
    {
        "dme": Section(
            {
                "name": Key("str", "sepgw-dme", doc="Instance name, used in logs.",
                            non_empty=True),
                "state_dir": Key("path", "/var/lib/sepgw-dme", doc="Directory for the "
                                 "database (created if missing)."),
                "database": Key("path", None, doc="SQLite file of what the DME hands out "
                                "and what devices post; default `dme.sqlite` in state_dir."),
            },
            doc="The lab DME (a utility head-end in a box).",
        ),
        "tls": TLS,
        "server": Section(
            {
                "address": Key("str", "::1", doc="Address to listen on (HTTPS, mutual TLS).",
                               non_empty=True),
                "port": Key("int", 8446, doc="TCP port.", min=0, max=65535),
                "poll_rate_s": Key("int", 60, doc="pollRate of DeviceCapability, Time and "
                                   "the lists: how often clients read the controls, s.",
                                   min=1, max=86400),
                "post_rate_s": Key("int", 60, doc="postRate of EndDevices and "
                                   "MirrorUsagePoints: how often clients post status and "
                                   "readings, s.", min=1, max=86400),
                "primacy": Key("int", 1, doc="The DERProgram's primacy.", min=0, max=255),
                "log_readings": Key("bool", True, doc="Log each reading received (one line "
                                    "each); off for load tests."),
            },
            doc="The 2030.5 server.",
        ),
        "registration": Section(
            {
                "by_post": Key("bool", True, doc="Devices may register by POSTing their "
                               "EndDevice (only their own LFDI)."),
                "allow": Key(["str"], [], doc="LFDIs that may register; empty: any device "
                             "the CA vouches for. With `by_post = false` these are "
                             "registered at start-up."),
                "pin": Key("int", 111115, doc="The Registration PIN given to devices.",
                           min=0, max=999999),
            },
            doc="EndDevice registration.",
        ),
        "operator": Section(
            {"socket": Key("path", None, doc="UNIX socket for `sepgw ctl` (controls, "
                           "devices, readings); off when absent.")},
            doc="Local operator commands.",
        ),
        "logging": LOGGING,
    },
    rules=[_lfdis],
)


def load_dme(path: Path | str) -> dict[str, Any]:
    """Read and validate a DME configuration; raise ConfigError listing every problem."""
    path = Path(path)
    data, problems = DME_SCHEMA.validate(read_toml(path), base_dir=path.resolve().parent)
    if problems:
        raise ConfigError(str(path), problems)
    return data
