"""The DME uplink: the EVSE as an IEEE 2030.5 client of a utility's server (see
``docs/uplink.md``). Imported only when ``[uplink]`` is configured (idle RSS)."""
