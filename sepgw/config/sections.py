"""The configuration files of the two roles, declared with :mod:`sepgw.config.schema`.

``EVSE_SCHEMA`` describes ``sepgw.toml`` (the charger), ``PEV_SCHEMA`` describes ``pev.toml``
(the vehicle or its emulator). ``docs/configuration.md`` is the reference for both; it is
generated from these declarations by ``tools/config_reference.py``.
"""

from __future__ import annotations

import ipaddress
import zoneinfo
from typing import Any, Iterator
from urllib.parse import urlsplit

from sepgw.config.schema import ArrayOf, Key, PluginRef, Section


def _timezone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"{value!r} is not a known IANA time zone (e.g. 'UTC', 'America/Los_Angeles')"
    return None


def _abs_uri_path(value: str) -> str | None:
    if not value.startswith("/") or any(c in value for c in " ?#"):
        return f"{value!r} must be an absolute URI path such as '/dcap'"
    return None


def _https_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return f"{value!r} is not an https:// URL (plain HTTP is never used, V2G-4.1.3-3)"
    return None


TLS = Section(
    {
        "cert": Key("path", doc="PEM file with this device's 2030.5 certificate, followed by "
                                "its intermediate CA certificates (MCA/MICA)."),
        "key": Key("path", doc="PEM file with the private key (ECDSA P-256) of `cert`."),
        "ca": Key(["path"], doc="PEM files of the trusted 2030.5 root CAs (SERCA).",
                  non_empty=True),
        "ciphers": Key("str", "ECDHE-ECDSA-AES128-CCM8",
                       doc="OpenSSL cipher list. 2030.5 mandates the default; change it only "
                           "in a lab.", non_empty=True),
        "keylog": Key("path", None, doc="Append TLS session keys to this file in NSS key log "
                                        "format (for Wireshark). Off when absent; never in "
                                        "production."),
    },
    doc="Mutual TLS material (IEEE 2030.5 device certificate and trust anchors).",
)

LOGGING = Section(
    {
        "level": Key("str", "info", doc="Lowest level logged.",
                     choices=("debug", "info", "warn", "error", "critical")),
        "format": Key("str", "text", doc="`text` (human readable) or `json` (one JSON object "
                                         "a line, for journald or log shipping).",
                      choices=("text", "json")),
        "file": Key("path", None, doc="Write the log to this file instead of standard output."),
    },
    doc="Logging.",
)


def _common(role_doc: str, default_state: str) -> Section:
    return Section(
        {
            "name": Key("str", "sepgw", doc="Instance name, used in logs and mDNS.",
                        non_empty=True),
            "state_dir": Key("path", default_state,
                             doc="Directory for persistent state (created if missing)."),
            "plugin_dirs": Key(["path"], [],
                               doc="Drop-in plugin directories searched after the bundled "
                                   "`plugins/`."),
        },
        doc=role_doc,
    )


# --------------------------------------------------------------------------------------------
# EVSE


def _site_rules(site: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if site["min_v"] is not None and site["max_v"] is not None and site["min_v"] >= site["max_v"]:
        yield "min_v", f"must be below max_v ({site['max_v']:g} V)"
    if site["v_ref"] is not None and site["max_v"] is not None and site["v_ref"] > site["max_v"]:
        yield "v_ref", f"must not be above max_v ({site['max_v']:g} V)"
    if site["v_ref"] is not None and site["min_v"] is not None and site["v_ref"] < site["min_v"]:
        yield "v_ref", f"must not be below min_v ({site['min_v']:g} V)"


SITE = Section(
    {
        "max_w": Key("float", doc="Site active-power limit in W, sent as "
                                  "SelfDevice DERSettings setMaxW (V2G-4.6.1.1-1) and shared "
                                  "among authorized PEVs.", min=0),
        "max_var": Key("float", doc="Reactive power the PEV may inject, var (setMaxVar).",
                       min=0),
        "max_var_neg": Key("float", doc="Reactive power the PEV may absorb, var "
                                        "(setMaxVarNeg, as a positive number).", min=0),
        "max_v": Key("float", doc="Highest grid voltage for operation, V (setMaxV).", min=0),
        "min_v": Key("float", doc="Lowest grid voltage for operation, V (setMinV).", min=0),
        "v_ref": Key("float", doc="Site nominal voltage, V (setVRef; setVNom is never sent, "
                                  "V2G-4.9.5-2).", min=0),
        "max_charge_rate_w": Key("float", doc="Highest charge rate, W (setMaxChargeRateW).",
                                 min=0),
        "max_discharge_rate_w": Key("float", doc="Highest discharge rate, W "
                                                 "(setMaxDischargeRateW).", min=0),
        "quadrants": Key("int", 4, doc="Inverter capability the site requires: 2 (active "
                                       "power only) or 4 (also reactive).", choices=(2, 4)),
    },
    doc="Site limits, served as SelfDevice DERSettings (profile 4.6.1).",
    rules=[_site_rules],
)

SERVER = Section(
    {
        "addresses": Key(["str"], ["::1"],
                         doc="Addresses the HTTPS server listens on. With `[network] enabled`, "
                             "use `\"::\"` so that the ports' ULA addresses are served (a "
                             "connection's port is the one whose prefix it reached).",
                         non_empty=True),
        "port": Key("int", 8443, doc="TCP port of the HTTPS server.", min=1, max=65535),
        "dcap_path": Key("str", "/dcap", doc="Path of the DeviceCapability resource "
                                             "(announced in mDNS TXT `dcap`).",
                         validator=_abs_uri_path),
        "post_rate": Key("int", 15, doc="EndDevice and MirrorUsagePoint postRate, s "
                                        "(V2G-4.7.2-9).", min=1, max=3600),
        "poll_rate": Key("int", 15, doc="pollRate of the EndDeviceList, MirrorUsagePointList "
                                        "and other polled lists, s; the DERProgramList is "
                                        "always 1 s (V2G-4.1.4-6).", min=1, max=3600),
        "max_body_bytes": Key("int", 65536, doc="Largest request body accepted; larger gets "
                                                "413.", min=1024, max=16 * 1024 * 1024),
        "max_line_bytes": Key("int", 8192, doc="Longest request line; longer gets 414.",
                              min=256, max=65536),
        "max_header_bytes": Key("int", 16384, doc="Largest request head (request line and "
                                                  "header fields); larger gets 431.",
                                min=1024, max=262144),
        "max_headers": Key("int", 64, doc="Most header fields in a request; more gets 431.",
                           min=8, max=1000),
        "head_timeout_s": Key("float", 10.0, doc="Deadline from a request's first byte to "
                                                 "the end of its head; later gets 408 and "
                                                 "the connection is closed.", min=1, max=300),
        "body_timeout_s": Key("float", 30.0, doc="Deadline from the end of a request's head "
                                                 "to the end of its body (408, closed).",
                              min=1, max=600),
        "idle_timeout_s": Key("float", 60.0, doc="A connection with nothing received for "
                                                 "this long between requests (or during the "
                                                 "TLS handshake) is closed.", min=5, max=3600),
        "max_connections": Key("int", 256, doc="Concurrent connections served; more are "
                                               "closed at once (before TLS) and logged.",
                               min=1, max=65536),
        "max_connections_per_peer": Key("int", 8, doc="Concurrent connections from one "
                                                      "peer address; more are closed at once "
                                                      "and logged.", min=1, max=65536),
        "lenient": Key("bool", False, doc="Accept the known deviations of the profile's "
                                          "section 5 examples (misspelt elements, 17-byte "
                                          "mRIDs, Table 6 flowDirection 1 for W and var), "
                                          "each logged once per session; strict when false."),
        "timezone": Key("str", "UTC", doc="IANA zone for the Time resource's tzOffset and "
                                          "DST fields.", validator=_timezone),
    },
    doc="The IEEE 2030.5 HTTPS server.",
)


def _curve(min_points: int = 1, max_points: int = 10) -> Key:
    def check(points: list[Any]) -> str | None:
        if not (min_points <= len(points) <= max_points):
            return f"a curve needs {min_points} to {max_points} points, got {len(points)}"
        for i, p in enumerate(points):
            if (not isinstance(p, list) or len(p) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               for v in p)):
                return f"point {i} must be [x, y] numbers, got {p!r}"
        xs = [p[0] for p in points]
        if any(b <= a for a, b in zip(xs, xs[1:])):
            return "x values must increase strictly from point to point"
        return None

    return _CurveKey(check)


class _CurveKey(Key):
    """An array of [x, y] pairs."""

    def __init__(self, check: Any) -> None:
        super().__init__("str", doc="Curve points as [[x, y], ...], 1 to 10 points, x rising.")
        self._check_points = check

    def type_label(self) -> str:
        return "array of [x, y] number pairs"

    def check(self, value: Any, path: str, ctx: Any) -> Any:
        if not isinstance(value, list):
            ctx.add(path, f"expected an array of [x, y] pairs, got {type(value).__name__}")
            return None
        reason = self._check_points(value)
        if reason:
            ctx.add(path, reason)
            return None
        return [(float(x), float(y)) for x, y in value]


def _curve_section(doc: str, x: str, y: str) -> Section:
    curve = _curve()
    curve.doc = f"Points [[{x}, {y}], ...], 1 to 10, {x} rising."
    return Section({"points": curve}, doc=doc, optional=True)


REACTIVE_FUNCTIONS = ("constant_pf", "volt_var", "watt_var", "constant_var")


def _management_rules(m: dict[str, Any]) -> Iterator[tuple[str, str]]:
    enabled = [f for f in REACTIVE_FUNCTIONS if m.get(f) is not None]
    if len(enabled) > 1:
        yield "", (f"at most one reactive-power function may be enabled (V2G-4.9.7-1), "
                   f"found {', '.join(enabled)}")


MANAGEMENT = Section(
    {
        "enter_service": Section(
            {
                "delay_s": Key("float", 300.0, doc="setESDelay, s.", min=0, max=42949672),
                "random_delay_s": Key("float", 0.0, doc="setESRandomDelay, s.", min=0,
                                      max=42949672),
                "ramp_s": Key("float", 300.0, doc="setESRampTms, s.", min=0, max=42949672),
                "high_volt_pct": Key("float", 105.0, doc="setESHighVolt, % of v_ref.",
                                     min=0, max=327.67),
                "low_volt_pct": Key("float", 91.7, doc="setESLowVolt, % of v_ref.", min=0,
                                    max=327.67),
                "high_freq_hz": Key("float", 60.1, doc="setESHighFreq, Hz.", min=0,
                                    max=655.35),
                "low_freq_hz": Key("float", 59.5, doc="setESLowFreq, Hz.", min=0, max=655.35),
            },
            doc="Enter Service, served in DefaultDERControl (Table 5).",
        ),
        "constant_pf": Section(
            {
                "pf": Key("float", doc="Displacement power factor.", min=0.0, max=1.0),
                "excitation": Key("str", "absorb", doc="Reactive power direction while "
                                                       "injecting active power.",
                                  choices=("absorb", "inject")),
            },
            doc="Constant Power Factor, DERControl opModFixedPFInjectW.", optional=True,
        ),
        "volt_var": _curve_section("Volt-Var, DERControl opModVoltVar.", "% v_ref",
                                   "% var available"),
        "watt_var": _curve_section("Watt-Var, DERControl opModWattVar.", "% max W",
                                   "% var available"),
        "constant_var": Section(
            {"var_pct": Key("float", doc="Reactive power, % of var available (positive "
                                         "injects).", min=-100, max=100)},
            doc="Constant Var, DERControl opModFixedVar.", optional=True,
        ),
        "volt_watt": _curve_section("Volt-Watt, DERControl opModVoltWatt.", "% v_ref",
                                    "% max W"),
        "limit_active_power": Section(
            {"max_w_pct": Key("float", doc="Active-power limit, % of the PEV's max W.",
                              min=0, max=100)},
            doc="Limit Active Power, DERControl opModMaxLimW.", optional=True,
        ),
        "freq_droop": Section(
            {
                "db_of_hz": Key("float", 0.036, doc="Over-frequency deadband, Hz.", min=0),
                "db_uf_hz": Key("float", 0.036, doc="Under-frequency deadband, Hz.", min=0),
                "k_of": Key("float", 0.05, doc="Over-frequency droop, per unit.", min=0),
                "k_uf": Key("float", 0.05, doc="Under-frequency droop, per unit.", min=0),
                "open_loop_s": Key("float", 5.0, doc="Open-loop response time, s.", min=0),
            },
            doc="High and Low Frequency Droop, DERControl opModFreqDroop (IEEE 1547 "
                "defaults).",
        ),
        "high_freq_trip": _curve_section("High Frequency Trip, DERControl opModHFRTMustTrip.",
                                         "s", "Hz"),
        "low_freq_trip": _curve_section("Low Frequency Trip, DERControl opModLFRTMustTrip.",
                                        "s", "Hz"),
        "high_volt_trip": _curve_section("High Voltage Trip, DERControl opModHVRTMustTrip.",
                                         "s", "% v_ref"),
        "low_volt_trip": _curve_section("Low Voltage Trip, DERControl opModLVRTMustTrip.",
                                        "s", "% v_ref"),
        "high_volt_cessation": _curve_section(
            "High Voltage momentary cessation, DERControl opModHVRTMomentaryCessation "
            "(V2G-4.9.2-1).", "s", "% v_ref"),
        "low_volt_cessation": _curve_section(
            "Low Voltage momentary cessation, DERControl opModLVRTMomentaryCessation "
            "(V2G-4.9.2-1).", "s", "% v_ref"),
    },
    doc="Management information in effect for the site (profile 4.6.3, Table 5). An omitted "
        "optional function is not in effect.",
    rules=[_management_rules],
)

SAFETY = Section(
    {
        "discharge_threshold_w": Key("float", 100.0, doc="Active power above which the "
                                     "meter counts as the PEV discharging, W (meter noise "
                                     "below it is ignored).", min=0),
        "limit_tolerance_pct": Key("float", 5.0, doc="How far above its authorized limit a "
                                   "PEV may discharge before the authorization is revoked, "
                                   "% (plus the threshold).", min=0, max=100),
        "meter_timeout_s": Key("float", None, doc="A meter silent this long opens the "
                               "contactor; default 3 x the meter's interval (at least "
                               "0.5 s).", min=0.05, max=600),
        "open_deadline_s": Key("float", 1.0, doc="Time an open of the contactor has to be "
                               "confirmed (auxiliary contact, else no current on the meter); "
                               "past it the port latches a contactor fault (welded) until "
                               "`sepgw ctl clear-fault`.", min=0.05, max=10),
        "reevaluate_s": Key("float", 5.0, doc="How often a PEV that is not authorized is "
                            "evaluated again (e.g. after the approved list changed); 0 "
                            "turns it off.", min=0, max=3600),
    },
    doc="The gatekeeper and session logic (profile 4.8.1). The heartbeat rules (10 missed, "
        "3 received), the 3 s a PEV has to stop and the 1 s revocation are the profile's "
        "and not configurable.",
)

NETWORK = Section(
    {
        "enabled": Key("bool", False, doc="Manage each port's IPv6 numbering, Router "
                       "Advertisements, routing lockout and mDNS announcement on the "
                       "transport's interface (docs/network.md). Needs root (CAP_NET_ADMIN, "
                       "CAP_NET_RAW)."),
        "ula_prefix": Key("str", None, doc="The gateway's ULA /48 in fd00::/8 (e.g. "
                          "`fd12:3456:789a::/48`); generated once and kept in `state_dir` "
                          "when absent. Port N gets subnet N+1."),
        "ra_interval_s": Key("float", 30.0, doc="Longest interval between unsolicited "
                             "Router Advertisements, s.", min=4, max=1800),
        "forward_when_authorized": Key("bool", False, doc="Lift the routing lockout while "
                                       "the port's PEV is authorized (4.2.4 allows it); "
                                       "otherwise the PEV reaches only the EVSE."),
        "mdns": Key("bool", True, doc="Announce the 2030.5 server by mDNS on each port."),
    },
    doc="The network plane of the ports (profile 4.2, 4.3).",
)

PORT = Section(
    {
        "name": Key("str", doc="Port name used in logs and diagnostics.", non_empty=True),
        "transport": PluginRef("transport", doc="The port's link (e.g. `loopback`, "
                                                "`ethernet`, `plc`)."),
        "contactor": PluginRef("contactor", doc="The port's contactor."),
        "meter": PluginRef("meter", doc="The port's meter."),
    },
    doc="One charging port; each serves one PEV.",
)


def _unique_port_names(root: dict[str, Any]) -> Iterator[tuple[str, str]]:
    seen: dict[str, int] = {}
    for i, port in enumerate(root.get("ports") or []):
        if port and port.get("name") in seen:
            yield f"ports[{i}].name", (f"{port['name']!r} is already the name of "
                                       f"ports[{seen[port['name']]}]")
        elif port:
            seen[port["name"]] = i


def _bus(value: str) -> str | None:
    if value in ("system", "session"):
        return None
    if not value.startswith(("unix:", "tcp:", "nonce-tcp:")):
        return (f"{value!r} must be 'system', 'session' or a D-Bus address such as "
                f"'unix:path=/run/dbus/system_bus_socket'")
    return None


def _dbus(name: str, doc: str, extra: dict[str, Key] | None = None) -> Section:
    return Section(
        {
            "enabled": Key("bool", False, doc="Serve the D-Bus interface (docs/dbus.md)."),
            "bus": Key("str", "system", doc="`system`, `session`, or a D-Bus address "
                       "(e.g. `unix:path=/run/dbus/system_bus_socket`).", validator=_bus),
            "name": Key("str", name, doc="Well-known bus name to own (the system bus "
                        "policy etc/dbus-1/system.d/org.sepgw.Gateway.conf allows "
                        "org.sepgw.Gateway and org.sepgw.Pev).", non_empty=True),
            **(extra or {}),
        },
        doc=doc,
    )


def _console_rules(c: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """A console off loopback needs a credential; TLS material comes in pairs."""
    if c["token"] is not None and c["token_file"] is not None:
        yield "token_file", "give either token or token_file, not both"
    if (c["tls_cert"] is None) != (c["tls_key"] is None):
        yield "tls_key" if c["tls_key"] is None else "tls_cert", \
            "tls_cert and tls_key go together"
    if c["client_ca"] is not None and c["tls_cert"] is None:
        yield "client_ca", "mutual TLS needs the console's own tls_cert and tls_key"
    if not c["enabled"]:
        return
    address = c["address"]
    try:
        loopback = address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        yield "address", f"{address!r} is not an IP address (or 'localhost')"
        return
    if not loopback and c["token"] is None and c["token_file"] is None \
            and c["client_ca"] is None:
        yield "address", (f"{address!r} is not a loopback address: the console then needs a "
                          "credential, token / token_file or client_ca (mutual TLS)")


def _console(port: int, doc: str) -> Section:
    return Section(
        {
            "enabled": Key("bool", False, doc="Serve the web console (docs/console.md)."),
            "address": Key("str", "127.0.0.1", doc="Listen address; anything but loopback "
                           "needs token, token_file or client_ca.", non_empty=True),
            "port": Key("int", port, doc="TCP port (never the 2030.5 server's; 0: any free "
                        "port).", min=0, max=65535),
            "token": Key("str", None, doc="Bearer token required by every API request "
                         "(at least 16 characters).",
                         validator=lambda v: None if len(v) >= 16 else
                         "must be at least 16 characters"),
            "token_file": Key("path", None, doc="File whose first line is the token (keep it "
                              "mode 0600)."),
            "tls_cert": Key("path", None, doc="PEM certificate: serve HTTPS instead of HTTP."),
            "tls_key": Key("path", None, doc="PEM private key of `tls_cert`."),
            "client_ca": Key("path", None, doc="PEM CA certificates: require a client "
                             "certificate they issued (mutual TLS)."),
            "push_interval_s": Key("float", 0.5, doc="Live updates are pushed at most this "
                                   "often, s.", min=0.05, max=60),
            "meter_window_s": Key("float", 300.0, doc="Meter samples kept for the plots, s.",
                                  min=10, max=3600),
        },
        doc=doc,
        rules=[_console_rules],
    )


def _console_port(root: dict[str, Any]) -> Iterator[tuple[str, str]]:
    console = root.get("console") or {}
    server = root.get("server") or {}
    if console.get("enabled") and console.get("port") and \
            console.get("port") == server.get("port"):
        yield "console.port", "must not be the 2030.5 server's (vehicle-facing) port"


EVSE_SCHEMA = Section(
    {
        "gateway": _common("The gateway itself.", "/var/lib/sepgw"),
        "tls": TLS,
        "server": SERVER,
        "site": SITE,
        "management": MANAGEMENT,
        "safety": SAFETY,
        "network": NETWORK,
        "operator": Section(
            {"socket": Key("path", None, doc="UNIX socket of the local operator's control "
                           "channel (`sepgw ctl`); off when absent.")},
            doc="Local operator commands: status, coordinated charging (opModFixedW).",
        ),
        "dbus": _dbus("org.sepgw.Gateway", "D-Bus interface: each port's status as properties "
                      "with PropertiesChanged signals, the operator commands as methods.",
                      {"meter_interval_s": Key("float", 1.0, doc="Meter values are "
                                               "signalled at most this often, s.", min=0.1,
                                               max=3600)}),
        "console": _console(8470, "Web console: live ports, meter plots, session timelines, "
                            "operator actions (docs/console.md)."),
        "policy": PluginRef("policy", doc="Authorization policy; without one no PEV is ever "
                                          "authorized to discharge.", optional=True),
        "uplink": PluginRef("uplink", doc="DME uplink to a utility.", optional=True),
        "ports": ArrayOf(PORT, doc="The charger's ports (`[[ports]]`).", min_items=1),
        "logging": LOGGING,
    },
    rules=[_unique_port_names, _console_port],
)

# --------------------------------------------------------------------------------------------
# PEV

VEHICLE = Section(
    {
        "manufacturer_id": Key("int", 37250, doc="DeviceInformation mfID: the maker's IANA "
                               "private enterprise number.", min=0, max=4294967295),
        "ism": Key("str", "ISM Value", doc="DeviceInformation mfModel: the ISM number the "
                   "EVSE checks against its approved list.", non_empty=True),
        "hw_version": Key("str", "J3072 Certified", doc="DeviceInformation mfHwVer (carries "
                          "the J3072 certification, as in the profile's example)."),
        "serial": Key("str", "SEPGW-EMULATED-PEV", doc="DeviceInformation mfSerNum (VIN)."),
        "info": Key("str", "sepgw PEV emulator", doc="DeviceInformation mfInfo."),
        "sw_version": Key("str", "sepgw-pev 0.1", doc="DeviceInformation swVer."),
        "manufactured": Key("int", 1606809600, doc="DeviceInformation mfDate, Unix time.",
                            min=0),
        "max_w": Key("float", 6500.0, doc="Rated active power, W (rtgMaxW; setMaxW is the "
                     "lower of this and the site's).", min=1),
        "max_var": Key("float", 3000.0, doc="Rated reactive power, var; 0 makes the PEV "
                       "2-quadrant.", min=0),
        "max_wh": Key("float", 60000.0, doc="Usable battery energy, Wh (setMaxWh, "
                      "V2G-4.9.4-1).", min=1),
        "max_charge_rate_w": Key("float", 6500.0, doc="Highest charge rate, W.", min=0),
        "max_discharge_rate_w": Key("float", 6500.0, doc="Highest discharge rate, W.",
                                    min=0),
        "min_v": Key("float", 211.0, doc="Lowest grid voltage the inverter operates at, V.",
                     min=0),
        "max_v": Key("float", 264.0, doc="Highest grid voltage the inverter operates at, V.",
                     min=0),
        "target_soc_pct": Key("float", 85.0, doc="PEVInfo targetStateOfCharge, %.", min=0,
                              max=100),
        "reserve_pct": Key("float", 25.0, doc="DERAvailability reservePercent, %.", min=0,
                           max=100),
        "charge_needed_in_s": Key("int", 21600, doc="PEVInfo timeChargeIsNeeded, seconds "
                                  "from now.", min=0),
    },
    doc="The vehicle profile the PEV reports over 2030.5 (SAE J3072 Tables C3-C5, C9).",
)

BEHAVIOUR = Section(
    {
        "discharge_before_authorization": Key("bool", False, doc="Misbehave: discharge "
                                              "whenever the grid is there, authorized or "
                                              "not."),
        "exceed_limit": Key("bool", False, doc="Misbehave: report half the real ratings, "
                            "then discharge at full power once authorized."),
        "stop_heartbeats": Key("bool", False, doc="Misbehave: never send the DERStatus "
                               "heartbeat."),
        "skip_responses": Key("bool", False, doc="Misbehave: never answer DERControls."),
        "invalid_bodies": Key("bool", False, doc="Misbehave: send schema-invalid bodies."),
        "report": Key("path", None, doc="Write the run report as JSON to this file at the "
                      "end (it is always printed to the log)."),
    },
    doc="How the PEV behaves: misbehaviour modes for testing chargers (also settable on "
        "the command line), and the run report.",
)

def _host(value: str) -> str | None:
    if not value or any(c in value for c in " /[]?#"):
        return f"{value!r} must be a bare IP address or host name (no brackets, port or path)"
    return None


NOTIFICATIONS = Section(
    {
        "enabled": Key("bool", True, doc="Subscribe to the DERControlList, DefaultDERControl, "
                       "FunctionSetAssignmentsList and DERProgramList and receive their "
                       "Notifications (V2G-4.1.4-3). Off: poll them at the EVSE's pollRate "
                       "(V2G-4.1.4-4)."),
        "address": Key("str", "::1", doc="Address the notification endpoint listens on "
                       "(HTTPS with mutual TLS, this PEV's certificate; only the EVSE the "
                       "PEV is connected to is admitted). In a vehicle: its ULA on the "
                       "PLC link, or `::`.", validator=_host),
        "port": Key("int", 0, doc="TCP port of the notification endpoint; 0 takes a free "
                    "one.", min=0, max=65535),
        "path": Key("str", "/ntfy", doc="Path of the notification endpoint.",
                    validator=_abs_uri_path),
        "advertise": Key("str", None, doc="Host put in the notificationURI. Default: "
                         "`address`, or when that is a wildcard (`::`, `0.0.0.0`) the "
                         "local address the PEV reaches the EVSE from.", validator=_host),
        "limit": Key("int", 50, doc="Subscription limit: list entries embedded in a "
                     "notification; the PEV GETs the rest of a longer list.", min=1,
                     max=255),
        "safety_poll_s": Key("float", 30.0, doc="How often the PEV checks that each "
                             "subscription still exists (GET of its Location; a missing one "
                             "falls back to polling) and reads the subscribed controls again "
                             "in case a notification was lost; 0 turns it off.", min=0,
                             max=3600),
    },
    doc="Subscription/Notification (profile 4.1.4, 5.9): the PEV's notification "
        "endpoint and subscriptions.",
)

PEV_SCHEMA = Section(
    {
        "pev": _common("The vehicle (or emulator) itself.", "/var/lib/sepgw-pev"),
        "tls": TLS,
        "evse": Section(
            {
                "url": Key("str", None, doc="DeviceCapability URL of the EVSE, e.g. "
                                            "`https://[::1]:8443/dcap` (out-of-band "
                                            "discovery, V2G-4.3-4). When absent the PEV "
                                            "browses mDNS on the transport's interface.",
                           validator=_https_url),
                "discovery_timeout_s": Key("float", 60.0, doc="How long to wait for a SLAAC "
                                           "address and the EVSE's mDNS answer when no url "
                                           "is configured, s.", min=1, max=3600),
            },
            doc="How to reach the EVSE.",
        ),
        "vehicle": VEHICLE,
        "notifications": NOTIFICATIONS,
        "behaviour": BEHAVIOUR,
        "operator": Section(
            {"socket": Key("path", None, doc="UNIX socket for `sepgw ctl` (status, sleep, "
                           "wake); off when absent.")},
            doc="Local commands to the PEV (sleep/wake on command, 4.8.3).",
        ),
        "dbus": _dbus("org.sepgw.Pev", "D-Bus interface: the J3072 state as properties with "
                      "PropertiesChanged signals, sleep and wake as methods."),
        "console": _console(8471, "Web console: the J3072 sequence live, the inverter "
                            "against its controls, sleep and wake (docs/console.md)."),
        "transport": PluginRef("transport", doc="The vehicle's link to the EVSE."),
        "inverter": PluginRef("inverter", doc="The onboard inverter."),
        "logging": LOGGING,
    },
)
