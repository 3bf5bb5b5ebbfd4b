"""The single error type raised by the 2030.5 model and codec."""

from __future__ import annotations


class ModelError(ValueError):
    """A document or object that is not a valid IEEE 2030.5 resource.

    ``str(error)`` is a message a client developer can act on, qualified by the element path
    where the problem is, e.g. ``DERSettings/setMaxW/value: 'abc' is not an integer``.
    ``path`` is that path (possibly empty for document-level problems) and ``reason`` the
    message without it.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class _Bad(Exception):
    """Internal: a value-level problem; the codec machinery adds the path."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


SHOWN_CHARS = 80
"""How much of a bad value an error message quotes (messages stay one short line)."""


def shown(value: object) -> str:
    """``repr(value)``, cut to :data:`SHOWN_CHARS` characters with the full length noted."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"
