"""The network plane: IPv6 addressing and RAs, routing lockout, mDNS."""
