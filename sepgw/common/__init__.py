"""What both roles share (EVSE and PEV): nothing here imports :mod:`sepgw.evse` or
:mod:`sepgw.pev`."""
