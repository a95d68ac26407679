"""The cold half of ``properties``: the texts of the errors it raises, loaded when the
first one is raised (until then they cost a device no RAM), the property identifiers
(the modules a device imports fold their own), and ``prop_type`` / ``allowed_in``
(``properties.__getattr__`` hands them out)."""

from .errors import ProtocolError, UsageError

PROP_PAYLOAD_FORMAT_INDICATOR = 0x01
PROP_MESSAGE_EXPIRY_INTERVAL = 0x02
PROP_CONTENT_TYPE = 0x03
PROP_RESPONSE_TOPIC = 0x08
PROP_CORRELATION_DATA = 0x09
PROP_SUBSCRIPTION_IDENTIFIER = 0x0B
PROP_ASSIGNED_CLIENT_IDENTIFIER = 0x12
PROP_RESPONSE_INFORMATION = 0x1A
PROP_SERVER_REFERENCE = 0x1C
PROP_REASON_STRING = 0x1F
PROP_TOPIC_ALIAS = 0x23
PROP_USER_PROPERTY = 0x26
PROP_SESSION_EXPIRY_INTERVAL = 0x11
PROP_SERVER_KEEP_ALIVE = 0x13
PROP_AUTHENTICATION_METHOD = 0x15
PROP_AUTHENTICATION_DATA = 0x16
PROP_REQUEST_PROBLEM_INFORMATION = 0x17
PROP_WILL_DELAY_INTERVAL = 0x18
PROP_REQUEST_RESPONSE_INFORMATION = 0x19
PROP_RECEIVE_MAXIMUM = 0x21
PROP_TOPIC_ALIAS_MAXIMUM = 0x22
PROP_MAXIMUM_QOS = 0x24
PROP_RETAIN_AVAILABLE = 0x25
PROP_MAXIMUM_PACKET_SIZE = 0x27
PROP_WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
PROP_SHARED_SUBSCRIPTION_AVAILABLE = 0x2A
# Where a property may appear: the Will Properties of CONNECT (bit 0; bit n is packet
# type n), as properties.allowed_in takes it.
W_WILL = 1

# properties' tables (const() there, so folded into its code: repeated here), for the two
# lookups below. By identifier: the value type; two bytes of packet-kind bits.
_TYPES = (
    b"\x00\x01\x03\x05\x00\x00\x00\x00\x05\x06\x00\x04\x00\x00\x00\x00"
    b"\x00\x03\x05\x02\x00\x05\x06\x01\x03\x01\x05\x00\x05\x00\x00\x05"
    b"\x00\x02\x02\x02\x01\x01\x07\x03\x01\x01\x01")
_WHERE = (
    b"\x00\x00\x00\x09\x00\x09\x00\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\x09\x00\x09"
    b"\x00\x00\x01\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40\x06\x00\x04\x00\x04"
    b"\x00\x00\x80\x06\x80\x06\x00\x02\x00\x01\x00\x02\x00\x04\x00\x00\x40\x04\x00\x00"
    b"\x00\x00\xca\xf4\x00\x00\x00\x06\x00\x06\x00\x08\x00\x04\x00\x04\xcf\xff\x00\x06"
    b"\x00\x04\x00\x04\x00\x04")


def prop_type(pid):
    """The value type of property ``pid``, or 0 if MQTT 5 defines no such property."""
    return _TYPES[pid] if 0 <= pid <= 0x2A else 0


def allowed_in(pid, where):
    """True if property ``pid`` may appear in a packet of kind ``where``
    (``1 << packet_type``, or ``W_WILL``)."""
    return 0 <= pid <= 0x2A and ((_WHERE[2 * pid] << 8 | _WHERE[2 * pid + 1]) & where) != 0


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
