"""Human-readable names for reason codes and property identifiers (MQTT 5.0,
2.4 and 2.2.2.2). Optional: nothing else in the library imports it, so a
device that only logs numbers never pays for these strings.

    >>> name(0x87)
    'Not authorized'
    >>> name(0x00, DISCONNECT)
    'Normal disconnection'
    >>> prop_name(0x26)
    'User Property'
"""

from ._compat import const

_DISCONNECT = const(14)
_SUBACK = const(9)

# Codes whose name is the same in every packet that may carry them.
_NAMES = {
    0x00: "Success",
    0x01: "Granted QoS 1",
    0x02: "Granted QoS 2",
    0x04: "Disconnect with Will Message",
    0x10: "No matching subscribers",
    0x11: "No subscription existed",
    0x18: "Continue authentication",
    0x19: "Re-authenticate",
    0x80: "Unspecified error",
    0x81: "Malformed Packet",
    0x82: "Protocol Error",
    0x83: "Implementation specific error",
    0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid",
    0x86: "Bad User Name or Password",
    0x87: "Not authorized",
    0x88: "Server unavailable",
    0x89: "Server busy",
    0x8A: "Banned",
    0x8B: "Server shutting down",
    0x8C: "Bad authentication method",
    0x8D: "Keep Alive timeout",
    0x8E: "Session taken over",
    0x8F: "Topic Filter invalid",
    0x90: "Topic Name invalid",
    0x91: "Packet Identifier in use",
    0x92: "Packet Identifier not found",
    0x93: "Receive Maximum exceeded",
    0x94: "Topic Alias invalid",
    0x95: "Packet too large",
    0x96: "Message rate too high",
    0x97: "Quota exceeded",
    0x98: "Administrative action",
    0x99: "Payload format invalid",
    0x9A: "Retain not supported",
    0x9B: "QoS not supported",
    0x9C: "Use another server",
    0x9D: "Server moved",
    0x9E: "Shared Subscriptions not supported",
    0x9F: "Connection rate exceeded",
    0xA0: "Maximum connect time",
    0xA1: "Subscription Identifiers not supported",
    0xA2: "Wildcard Subscriptions not supported",
}

_PROPS = {
    0x01: "Payload Format Indicator",
    0x02: "Message Expiry Interval",
    0x03: "Content Type",
    0x08: "Response Topic",
    0x09: "Correlation Data",
    0x0B: "Subscription Identifier",
    0x11: "Session Expiry Interval",
    0x12: "Assigned Client Identifier",
    0x13: "Server Keep Alive",
    0x15: "Authentication Method",
    0x16: "Authentication Data",
    0x17: "Request Problem Information",
    0x18: "Will Delay Interval",
    0x19: "Request Response Information",
    0x1A: "Response Information",
    0x1C: "Server Reference",
    0x1F: "Reason String",
    0x21: "Receive Maximum",
    0x22: "Topic Alias Maximum",
    0x23: "Topic Alias",
    0x24: "Maximum QoS",
    0x25: "Retain Available",
    0x26: "User Property",
    0x27: "Maximum Packet Size",
    0x28: "Wildcard Subscription Available",
    0x29: "Subscription Identifier Available",
    0x2A: "Shared Subscription Available",
}


def name(code, ptype=0):
    """The spec's name for reason code ``code``; "0x%02X" if MQTT 5 defines
    none. ``ptype`` (a packet type, e.g. ``codec.DISCONNECT``) picks the name
    0x00 has in that packet: "Normal disconnection", "Granted QoS 0"."""
    if code == 0:
        if ptype == _DISCONNECT:
            return "Normal disconnection"
        if ptype == _SUBACK:
            return "Granted QoS 0"
    n = _NAMES.get(code)
    return n if n is not None else "0x%02X" % code


def prop_name(pid):
    """The spec's name for property identifier ``pid``; "0x%02X" if unknown."""
    n = _PROPS.get(pid)
    return n if n is not None else "0x%02X" % pid
