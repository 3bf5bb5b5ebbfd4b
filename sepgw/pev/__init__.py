"""The PEV role: the 2030.5 client of a vehicle's communication controller, and its emulator."""
