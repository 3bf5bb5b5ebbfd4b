"""The twistd service trees of the two roles (``twistd sepgw`` and ``twistd sepgw-pev``)."""
