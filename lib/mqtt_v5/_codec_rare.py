"""The codec's cold half, loaded on first use (``_server_codec`` re-exports it): the
codec's error texts, the public names a device's everyday path does not use (packet type
numbers, ``PACKET_NAMES``, ``AckView``, ``encode_publish``; ``codec.X`` finds them here
through the codec's ``__getattr__``), UNSUBSCRIBE, AUTH, and decoding the DISCONNECT or
AUTH a server sends. Sans-IO like the codec."""

from . import properties as _p
from .codec import (
    Packet,
    PublishView,
    Will,  # noqa: F401  (re-exported: _server_codec's, and codec.Will's home before)
    _check_id,
    _check_str,
    _expect_end,
    _header,
    _props,
    encode_disconnect,
    encode_publish_header,
    reason_allowed,
)
from .errors import ProtocolError, UsageError
from .properties import vbi_size, write_bin, write_u16
from .topic import filter_ok, topic_name_ok

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

PACKET_NAMES = (
    "RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
    "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
    "PINGRESP", "DISCONNECT", "AUTH",
)
PINGREQ_BYTES = b"\xc0\x00"
PINGRESP_BYTES = b"\xd0\x00"
AckView = PublishView

# The codec's errors, numbered as its _E_* constants (test_unix_lazy checks the two
# lists agree): (name, class, reason code, text). "%s" of a packet type takes its name;
# of a _W_* field, the field's name.
ERRORS = (
    ("_E_TOO_LARGE", UsageError, 0x95, "packet too large for MQTT"),
    ("_E_NO_ROOM", UsageError, 0x95, "%d-byte packet does not fit the %d-byte buffer"),
    ("_E_QOS", UsageError, None, "QoS must be 0, 1 or 2"),
    ("_E_PACKET_ID", UsageError, None, "packet identifier must be 1..65535"),
    ("_E_NOT_BYTES", UsageError, None, "%s must be str or bytes"),
    ("_E_BAD_STRING", UsageError, None, "%s is not a valid MQTT UTF-8 string"),
    ("_E_KEEP_ALIVE", UsageError, None, "keep alive must be 0..65535 seconds"),
    ("_E_WILL_TOPIC", UsageError, None, "will topic must be a valid topic name"),
    ("_E_TOPIC", UsageError, 0x90, "invalid topic name (wildcard, U+0000 or bad UTF-8)"),
    ("_E_EMPTY_TOPIC", UsageError, 0x90, "empty topic needs a topic alias [MQTT-3.3.2-1]"),
    ("_E_DUP_QOS0", UsageError, None, "DUP must be 0 for QoS 0 [MQTT-3.3.1-2]"),
    ("_E_ALIAS_RANGE", UsageError, None, "topic alias must be 1..65535"),
    ("_E_ALIAS_TWICE", UsageError, None, "topic alias given twice"),
    ("_E_RC_HERE", UsageError, None, "reason code 0x%02X not allowed here"),
    ("_E_NO_FILTERS", UsageError, None, "SUBSCRIBE needs at least one filter [MQTT-3.8.3-2]"),
    ("_E_ONE_SID", UsageError, None, "SUBSCRIBE takes one subscription identifier"),
    ("_E_FILTER", UsageError, 0x8F, "invalid topic filter %r"),
    ("_E_SUB_OPTIONS", UsageError, None, "invalid subscription options %r"),
    ("_E_NO_LOCAL_SHARED", UsageError, None, "no local on a shared subscription [MQTT-3.8.3-4]"),
    ("_E_AUTH_METHOD", UsageError, None, "AUTH needs an Authentication Method"),
    ("_E_MAX_PACKET_SIZE", UsageError, None, "maximum packet size must be at least 16 bytes"),
    ("_E_VBI_LONG", ProtocolError, 0x81, "remaining length longer than 4 bytes"),
    ("_E_VBI_NOT_MINIMAL", ProtocolError, 0x81, "remaining length not minimally encoded"),
    ("_E_TYPE_0", ProtocolError, 0x81, "reserved packet type 0"),
    ("_E_OVER_OUR_MAX", ProtocolError, 0x95, "packet of %d bytes exceeds our maximum of %d"),
    ("_E_FLAGS_0010", ProtocolError, 0x81, "reserved flags of %s must be 0010 [MQTT-2.1.3-1]"),
    ("_E_FLAGS_0", ProtocolError, 0x81, "reserved flags of %s must be 0 [MQTT-2.1.3-1]"),
    ("_E_QOS_3", ProtocolError, 0x81, "QoS 3 [MQTT-3.3.1-4]"),
    ("_E_DUP_ON_QOS0", ProtocolError, 0x81, "DUP set on QoS 0 [MQTT-3.3.1-2]"),
    ("_E_WILDCARD", ProtocolError, 0x90, "wildcard in a topic name [MQTT-3.3.2-2]"),
    ("_E_PID_0", ProtocolError, 0x82, "packet identifier 0 [MQTT-2.2.1-3]"),
    ("_E_EMPTY_NO_ALIAS", ProtocolError, 0x82, "empty topic without a topic alias [MQTT-3.3.2-1]"),
    ("_E_RC_IN", ProtocolError, 0x82, "reason code 0x%02X not allowed in %s"),
    ("_E_LEFT_OVER", ProtocolError, 0x81, "bytes left over after the packet's contents"),
    ("_E_CONNACK_FLAGS", ProtocolError, 0x81, "reserved CONNACK flags set [MQTT-3.2.2-1]"),
    ("_E_PRESENT_FAILED", ProtocolError, 0x82,
     "session present with a failure code [MQTT-3.2.2-6]"),
    ("_E_NO_CODES", ProtocolError, 0x82, "%s without reason codes"),
    ("_E_NOT_FOR_CLIENT", ProtocolError, 0x82, "%s is not decoded by a client"),
)
# codec's _W_* (the checked field an _E_NOT_BYTES / _E_BAD_STRING is about)
_FIELDS = ("client id", "will topic", "username", "topic filter", "will payload", "password")
_BINARY_TEXT = "%s must be bytes of at most 65535"


def error(n, a):
    """The exception for codec error ``n`` with arguments ``a``."""
    _name, cls, rc, text = ERRORS[n]
    if n == 4 or n == 5:  # _E_NOT_BYTES, _E_BAD_STRING: a = (what,)
        if a[0] >= 4:  # _W_WILL_PAYLOAD and after: binary fields
            text = _BINARY_TEXT
        a = (_FIELDS[a[0]],)
    elif "%s" in text:  # a packet type, last
        a = a[:-1] + (PACKET_NAMES[a[-1]],)  # noqa: RUF005 (no *a in a display on MicroPython)
    return cls(text % a if a else text, rc)


def encode_publish(buf, topic, payload, qos=0, packet_id=0, retain=False, dup=False,
                   props=None, topic_alias=0):
    """A whole PUBLISH (3.3), the payload copied behind the header so that the
    packet leaves in one write. Returns the length."""
    payload = _p.to_utf8(payload)  # a str payload allocates its bytes
    n = len(payload)
    pos = encode_publish_header(buf, topic, n, qos, packet_id, retain, dup, props, topic_alias)
    if pos + n > len(buf):
        raise error(1, (pos + n, len(buf)))  # _E_NO_ROOM
    buf[pos:pos + n] = payload
    return pos + n


def encode_will(will):
    """The Will part of a CONNECT (Will Properties, Topic and Payload, 3.1.3.2-3.1.3.4),
    checked, in a new bytearray (``delay`` as the Will Delay Interval)."""
    if will.qos != 0 and will.qos != 1 and will.qos != 2:
        raise error(2, ())  # _E_QOS
    wtopic = _check_str(will.topic, 1)  # _W_WILL_TOPIC
    if not topic_name_ok(wtopic, 0, len(wtopic)) or not len(wtopic):
        raise error(7, ())  # _E_WILL_TOPIC
    wpayload = _check_str(will.payload, 4)  # _W_WILL_PAYLOAD
    wprops = will.properties
    if will.delay:
        wprops = dict(wprops) if wprops else {}
        wprops[_p.PROP_WILL_DELAY_INTERVAL] = will.delay
    wsize = _p.size(wprops, _p.W_WILL)
    block = bytearray(vbi_size(wsize) + wsize + 4 + len(wtopic) + len(wpayload))
    pos = _p.write(block, 0, wprops, wsize)
    pos = write_bin(block, pos, wtopic)
    write_bin(block, pos, wpayload)
    return block


def encode_unsubscribe(buf, packet_id, filters, props=None):
    """UNSUBSCRIBE (3.10)."""
    _check_id(packet_id)
    if not filters:
        raise UsageError("UNSUBSCRIBE needs at least one filter [MQTT-3.10.3-2]")
    psize = _p.size(props, 1 << UNSUBSCRIBE)
    rem = 2 + vbi_size(psize) + psize
    encoded = []
    for filt in filters:
        f = _check_str(filt, 3)  # _W_FILTER
        if not filter_ok(f, 0, len(f)):
            raise UsageError("invalid topic filter %r" % (filt,), 0x8F)
        encoded.append(f)
        rem += 2 + len(f)
    pos = _header(buf, 0xA2, rem)
    pos = write_u16(buf, pos, packet_id)
    pos = _p.write(buf, pos, props, psize)
    for f in encoded:
        pos = write_bin(buf, pos, f)
    return pos


def encode_auth(buf, reason_code=0, props=None):
    """AUTH (3.15). Returns the length."""
    if (reason_code or props) and not (props and _p.PROP_AUTHENTICATION_METHOD in props):
        # 3.15.2.2.2: omitting the Authentication Method is a Protocol Error; only a
        # Success AUTH without properties may drop its whole body (3.15.2.1).
        raise error(19, ())  # _E_AUTH_METHOD
    return encode_disconnect(buf, reason_code, props, AUTH)


# ------------------------------------------------------------ decoding ----


def decode_reason_only(r, t):
    if r.pos == r.end:
        # [MQTT-3.14.2.1] [MQTT-3.15.2.1] no reason code means 0x00
        return Packet(t, 0, {})
    rc = r.u8()
    if not reason_allowed(t, rc):
        raise ProtocolError("reason code 0x%02X not allowed in %s" % (rc, PACKET_NAMES[t]), 0x82)
    if t == DISCONNECT:
        # "If the Remaining Length is less than 2, a value of 0 is used" (3.14.2.2.1)
        props = _props(r, 1 << t) if r.pos < r.end else {}
        _expect_end(r)
        return Packet(t, rc, props)
    # AUTH has no such rule: Reason Code and Property Length go together (3.15.2.1)
    props = _props(r, 1 << t)
    _expect_end(r)
    if _p.PROP_AUTHENTICATION_METHOD not in props:
        raise ProtocolError("AUTH without an Authentication Method (3.15.2.2.2)", 0x82)
    return Packet(t, rc, props)
