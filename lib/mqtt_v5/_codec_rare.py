"""The codec's cold half, loaded on first use (``_server_codec`` re-exports it): the
public names a device's everyday path does not use (packet type numbers,
``PACKET_NAMES``, ``AckView``, ``encode_publish``, ``Will``; ``codec.X`` finds them here
through the codec's ``__getattr__``), the Will of a CONNECT, UNSUBSCRIBE, AUTH, and decoding the
DISCONNECT or AUTH a server sends. (The error texts are in ``_errtext``.) Sans-IO like
the codec."""

from . import codec as _c
from . import properties as _p
from .codec import (
    PublishView,
    _check_str,
    _err,
    _header,
    encode_disconnect,
    reason_allowed,
)
from .errors import ProtocolError, UsageError
from .properties import vbi_size, write_bin, write_u16
from .topic import filter_ok, topic_name_ok


def check_flags(first):
    """The flags of the fixed header's first byte [MQTT-2.1.3-1]."""
    t = first >> 4
    flags = first & 0x0F
    if t == PUBREL or t == SUBSCRIBE or t == UNSUBSCRIBE:
        if flags != 0x02:
            raise _err(25, t)  # codec's _E_FLAGS_0010
    elif t != PUBLISH and flags:
        raise _err(26, t)  # codec's _E_FLAGS_0


def _check_id(packet_id):
    if not 0 < packet_id <= 0xFFFF:
        raise _err(3)  # codec's _E_PACKET_ID


def publish_size(topic_len, payload_len, qos, psize):
    """Total bytes of a PUBLISH with a property block of ``psize`` bytes."""
    rem = 2 + topic_len + (2 if qos else 0) + vbi_size(psize) + psize + payload_len
    return 1 + vbi_size(rem) + rem


def _expect_end(r):
    """Nothing may follow what was decoded under reader ``r``."""
    if r.pos != r.end:
        raise _err(33)  # codec's _E_LEFT_OVER


def _props(r, where):
    """The property block at ``r.pos``, checked for ``where``, as a dict."""
    _p.check(r, where)
    return _p.to_dict(r.buf, r.prop_start, r.prop_end)


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
AckView = Packet = PublishView

def encode_publish_header(buf, topic, payload_len, qos=0, packet_id=0, retain=False,
                          dup=False, props=None, topic_alias=0):
    """Fixed and variable header of a PUBLISH (3.3), without the payload.

    ``topic`` is bytes-like (no allocation) or str; it may be empty when
    ``topic_alias`` is given. Returns the header length; the payload must
    follow it on the wire. (Here, not in the codec: the everyday PUBLISH is
    ``encode_publish_plain``'s; the session's others, and resends, come here.)
    """
    if qos != 0 and qos != 1 and qos != 2:
        raise _err(2)  # codec's _E_QOS
    if isinstance(topic, str):
        topic = _p.to_utf8(topic)
    tlen = len(topic)
    if topic is not _c._valid_topic:  # (the codec's last valid topic: see there)
        if not topic_name_ok(topic, 0, tlen):
            raise _err(8)  # _E_TOPIC
        if type(topic) is bytes:
            _c._valid_topic = topic
    if not tlen and not topic_alias and not (props and 0x23 in props):  # Topic Alias
        raise _err(9)  # _E_EMPTY_TOPIC
    if qos:
        _check_id(packet_id)
    elif dup:
        raise _err(10)  # _E_DUP_QOS0
    psize = _p.size(props, 1 << PUBLISH) if props else 0
    if topic_alias:
        if not 0 < topic_alias <= 0xFFFF:
            raise _err(11)  # _E_ALIAS_RANGE
        if props and 0x23 in props:
            raise _err(12)  # _E_ALIAS_TWICE
        psize += 3
    rem = 2 + tlen + (2 if qos else 0) + vbi_size(psize) + psize + payload_len
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (1 if retain else 0)
    pos = _header(buf, first, rem, payload_len)
    pos = write_bin(buf, pos, topic)
    if qos:
        pos = write_u16(buf, pos, packet_id)
    pos = _p.write(buf, pos, props, psize)
    if topic_alias:  # (counted in psize)
        buf[pos] = 0x23  # Topic Alias
        pos = write_u16(buf, pos + 1, topic_alias)
    return pos


def encode_publish(buf, topic, payload, qos=0, packet_id=0, retain=False, dup=False,
                   props=None, topic_alias=0):
    """A whole PUBLISH (3.3), the payload copied behind the header so that the
    packet leaves in one write. Returns the length."""
    payload = _p.to_utf8(payload)  # a str payload allocates its bytes
    n = len(payload)
    pos = encode_publish_header(buf, topic, n, qos, packet_id, retain, dup, props, topic_alias)
    if pos + n > len(buf):
        raise _err(1, pos + n, len(buf))  # _E_NO_ROOM
    buf[pos:pos + n] = payload
    return pos + n


class Will:
    """The message the server publishes if we vanish: the Will of a CONNECT.
    ``delay`` (seconds) goes out as the Will Delay Interval property."""

    def __init__(self, topic, payload=b"", qos=0, retain=False, properties=None, delay=0):
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties or {}
        self.delay = delay


def encode_will(will):
    """The Will part of a CONNECT (Will Properties, Topic and Payload, 3.1.3.2-3.1.3.4),
    checked, in a new bytearray (``delay`` as the Will Delay Interval)."""
    if will.qos != 0 and will.qos != 1 and will.qos != 2:
        raise _err(2)  # _E_QOS
    wtopic = _check_str(will.topic, 1)  # _W_WILL_TOPIC
    if not topic_name_ok(wtopic, 0, len(wtopic)) or not len(wtopic):
        raise _err(7)  # _E_WILL_TOPIC
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
    pos = _header(buf, 0xA2, rem, 0)
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
        raise _err(19)  # _E_AUTH_METHOD
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
