"""The cold half of ``properties``: the texts of the errors it raises, loaded when the
first one is raised (until then they cost a device no RAM)."""

from .errors import ProtocolError, UsageError

# Indexed by properties' _E_* numbers.
_TEXTS = (
    "packet shorter than its contents",
    "variable byte integer longer than 4 bytes",
    "variable byte integer not minimally encoded",
    "length field runs past the packet",
    "malformed UTF-8 string",
    "property length runs past the packet",
    "unknown property identifier 0x%02X",
    "property 0x%02X not allowed in this packet",
    "property 0x%02X given twice",
    "property 0x%02X must be 0 or 1",
    "property 0x%02X must not be 0",
    "Subscription Identifier 0",
    "Response Topic is not a valid topic name",
    "property runs past the property length",
    "string is not valid Unicode (lone surrogate)",
    "bad value for property 0x%02X: %r",
    "unknown property %r",
)


def error(n, arg, code):
    """ProtocolError(text ``n`` % ``arg``, ``code``), or UsageError when ``code`` is 0."""
    text = _TEXTS[n] if arg is None else _TEXTS[n] % arg
    return ProtocolError(text, code) if code else UsageError(text)
