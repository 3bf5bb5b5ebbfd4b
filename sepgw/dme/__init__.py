"""The lab DME (``twistd sepgw-dme``): a utility's IEEE 2030.5 head-end in a box, built from
sepgw's model and server pieces (docs/uplink.md, "Lab DME")."""
