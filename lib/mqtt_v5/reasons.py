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

# Tables as one str constant each ("|" + two hex digits + name, per code): frozen, a str
# stays in flash; from a .mpy it is one object, where a dict of 48 entries cost 4.5 KB of
# heap (its table, a str per name). Scanned only when a name is asked for.
# Codes whose name is the same in every packet that may carry them.
_NAMES = (
    "|00Success|01Granted QoS 1|02Granted QoS 2|04Disconnect with Will Message|"
    "10No matching subscribers|11No subscription existed|18Continue authentication|"
    "19Re-authenticate|80Unspecified error|81Malformed Packet|82Protocol Error|"
    "83Implementation specific error|84Unsupported Protocol Version|"
    "85Client Identifier not valid|86Bad User Name or Password|87Not authorized|"
    "88Server unavailable|89Server busy|8ABanned|8BServer shutting down|"
    "8CBad authentication method|8DKeep Alive timeout|8ESession taken over|"
    "8FTopic Filter invalid|90Topic Name invalid|91Packet Identifier in use|"
    "92Packet Identifier not found|93Receive Maximum exceeded|94Topic Alias invalid|"
    "95Packet too large|96Message rate too high|97Quota exceeded|98Administrative action|"
    "99Payload format invalid|9ARetain not supported|9BQoS not supported|"
    "9CUse another server|9DServer moved|9EShared Subscriptions not supported|"
    "9FConnection rate exceeded|A0Maximum connect time|"
    "A1Subscription Identifiers not supported|A2Wildcard Subscriptions not supported|"
)

_PROPS = (
    "|01Payload Format Indicator|02Message Expiry Interval|03Content Type|"
    "08Response Topic|09Correlation Data|0BSubscription Identifier|"
    "11Session Expiry Interval|12Assigned Client Identifier|13Server Keep Alive|"
    "15Authentication Method|16Authentication Data|17Request Problem Information|"
    "18Will Delay Interval|19Request Response Information|1AResponse Information|"
    "1CServer Reference|1FReason String|21Receive Maximum|22Topic Alias Maximum|"
    "23Topic Alias|24Maximum QoS|25Retain Available|26User Property|"
    "27Maximum Packet Size|28Wildcard Subscription Available|"
    "29Subscription Identifier Available|2AShared Subscription Available|"
)


def _find(table, code):
    i = table.find("|%02X" % code) if 0 <= code <= 0xFF else -1
    if i < 0:
        return "0x%02X" % code
    return table[i + 3:table.find("|", i + 3)]


def name(code, ptype=0):
    """The spec's name for reason code ``code``; "0x%02X" if MQTT 5 defines
    none. ``ptype`` (a packet type, e.g. ``codec.DISCONNECT``) picks the name
    0x00 has in that packet: "Normal disconnection", "Granted QoS 0"."""
    if code == 0:
        if ptype == _DISCONNECT:
            return "Normal disconnection"
        if ptype == _SUBACK:
            return "Granted QoS 0"
    return _find(_NAMES, code)


def prop_name(pid):
    """The spec's name for property identifier ``pid``; "0x%02X" if unknown."""
    return _find(_PROPS, pid)
