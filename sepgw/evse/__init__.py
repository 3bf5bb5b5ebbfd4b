"""The EVSE role: the 2030.5 server and its session logic."""
