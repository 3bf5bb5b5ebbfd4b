"""Bundled plugin: the DME uplink as an IEEE 2030.5 client of a utility's server
(``docs/uplink.md``). This module stays tiny: the uplink code is imported only when a
configuration selects ``[uplink] plugin = "ieee2030_5"`` (idle RSS)."""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlsplit

from sepgw.plugin import BuildContext, Key, PluginFactory, Section


def _https(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        return f"{value!r} is not an https:// URL (e.g. https://dme.example:443/dcap)"
    return None


def _build(config: Mapping[str, Any], context: BuildContext) -> Any:
    from sepgw.uplink.component import UplinkComponent

    site = context.extra.get("site") or {"max_w": 0.0}
    return UplinkComponent(config, context.reactor, context.name, context.state_dir,
                           site, list(context.extra.get("ports") or []))


uplink = PluginFactory(
    kind="uplink",
    name="ieee2030_5",
    description="IEEE 2030.5 client of a utility DME: controls in, telemetry out (queued).",
    options=Section({
        "dcap_url": Key("str", doc="The DME's DeviceCapability URL (out of band), e.g. "
                        "`https://dme.example:443/dcap`.", validator=_https),
        "cert": Key("path", doc="PEM: the uplink's own certificate (utility PKI, not the "
                    "vehicle PKI), then its intermediates."),
        "key": Key("path", doc="PEM: the ECDSA P-256 private key of `cert`."),
        "ca": Key(["path"], doc="PEM files of the utility's trusted root CAs.", non_empty=True),
        "ciphers": Key("str", "ECDHE-ECDSA-AES128-CCM8", doc="OpenSSL cipher list (TLS 1.2 "
                       "CCM8, the 2030.5 suite, by default).", non_empty=True),
        "server_lfdi": Key("str", "", doc="Refuse a server whose certificate has another "
                           "LFDI (40 hex digits); empty: any server the CA vouches for."),
        "register": Key("bool", True, doc="POST the EndDevice to the EndDeviceList when the "
                        "DME does not know this LFDI (in-band registration)."),
        "pin": Key("int", -1, doc="Registration PIN to check against the EndDevice's "
                   "Registration; -1: no check.", min=-1, max=999999),
        "post_rate_s": Key("float", 60.0, doc="postRate used until the DME sets one, s.",
                           min=1, max=86400),
        "timeout_s": Key("float", 30.0, doc="A request with no answer within this is failed "
                         "and retried, s.", min=1, max=600),
        "queue_path": Key("str", "", doc="SQLite file of the durable queue; empty: "
                          "`uplink-queue.sqlite` in the state directory."),
        "queue_max_items": Key("int", 100000, doc="Queue bound: when full the oldest items "
                               "are dropped (counted).", min=10, max=100_000_000),
        "model": Key("str", "sepgw EVSE", doc="DeviceInformation mfModel."),
        "serial": Key("str", "", doc="DeviceInformation mfSerNum; empty: from the LFDI."),
        "notify_port": Key("int", -1, doc="TCP port of the EVSE's HTTPS listener for the "
                           "DME's notifications (mutual TLS with `cert`/`ca`, separate from "
                           "the vehicle-facing server); -1: no listener, polling only; 0: any "
                           "free port.", min=-1, max=65535),
        "notify_address": Key("str", "::", doc="Address the notification listener binds."),
        "notify_advertise": Key("str", "", doc="Host put in the notificationURI; empty: "
                                "`notify_address`, or for a wildcard the local address "
                                "towards the DME."),
        "notify_path": Key("str", "/ntfy", doc="Path of the notificationURI."),
        "notify_check_s": Key("float", 300.0, doc="While everything is subscribed, how "
                              "often the subscriptions are checked and the resources read "
                              "again (a change found unannounced: polling), s.",
                              min=10, max=86400),
    }),
    build=_build,
)
