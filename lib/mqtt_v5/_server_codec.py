"""The server half of the MQTT 5.0 codec, and every packet both ways as objects.

A device never imports this module: ``codec`` has what a client sends and receives
(CONNECT, PUBLISH, acks, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT, AUTH out; CONNACK, PUBLISH,
acks, SUBACK, UNSUBACK, DISCONNECT, AUTH in). Here is the rest, for brokers (the AWS IoT
twin), scripted servers and tests: the CONNACK/SUBACK/UNSUBACK encoders, the
CONNECT/SUBSCRIBE/UNSUBSCRIBE decoders, packet objects for every type, ``encode`` /
``encode_bytes`` of any packet object and ``decode`` / ``decode_body`` of any packet.

Everything public in ``codec`` is re-exported, so ``from mqtt_v5 import _server_codec as
codec`` is the whole codec. Same strictness, same errors: ``ProtocolError`` with the
reason code to DISCONNECT with, ``UsageError`` for arguments MQTT does not allow.
"""

from . import properties as _p
from ._codec_rare import (  # noqa: F401  (the public names codec gives through __getattr__)
    AUTH,
    CONNACK,
    CONNECT,
    DISCONNECT,
    PACKET_NAMES,
    PINGREQ,
    PINGREQ_BYTES,
    PINGRESP,
    PINGRESP_BYTES,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    AckView,
    _check_id,
    _expect_end,
    _props,
    check_flags,
    encode_auth,
    encode_publish,
    encode_publish_header,
    encode_unsubscribe,
    publish_size,
)
from ._compat import const
from .codec import (  # noqa: F401  (the client half, re-exported; private ones used below)
    PacketReader,
    PublishView,
    Will,
    _header,
    decode_ack_into,
    decode_publish_into,
    encode_ack,
    encode_connect,
    encode_disconnect,
    encode_publish_plain,
    encode_subscribe,
    reason_allowed,
    sub_options,
)
from .codec import decode_body as _client_decode_body
from .errors import ProtocolError, UsageError
from .properties import vbi_size, write_u16
from .topic import filter_ok, topic_name_ok

_PROTOCOL_NAME = b"\x00\x04MQTT"
_PROTOCOL_LEVEL = const(5)
VBI_MAX = const(268435455)
_bytes = _p.to_utf8

# Reason codes by name (reasons.py has their human-readable names).
RC_SUCCESS = const(0x00)
RC_GRANTED_QOS_1 = const(0x01)
RC_GRANTED_QOS_2 = const(0x02)
RC_DISCONNECT_WITH_WILL = const(0x04)
RC_NO_MATCHING_SUBSCRIBERS = const(0x10)
RC_NO_SUBSCRIPTION_EXISTED = const(0x11)
RC_CONTINUE_AUTHENTICATION = const(0x18)
RC_REAUTHENTICATE = const(0x19)
RC_UNSPECIFIED_ERROR = const(0x80)
RC_MALFORMED_PACKET = const(0x81)
RC_PROTOCOL_ERROR = const(0x82)
RC_IMPLEMENTATION_SPECIFIC_ERROR = const(0x83)
RC_UNSUPPORTED_PROTOCOL_VERSION = const(0x84)
RC_CLIENT_IDENTIFIER_NOT_VALID = const(0x85)
RC_BAD_USER_NAME_OR_PASSWORD = const(0x86)
RC_NOT_AUTHORIZED = const(0x87)
RC_SERVER_UNAVAILABLE = const(0x88)
RC_SERVER_BUSY = const(0x89)
RC_BANNED = const(0x8A)
RC_SERVER_SHUTTING_DOWN = const(0x8B)
RC_BAD_AUTHENTICATION_METHOD = const(0x8C)
RC_KEEP_ALIVE_TIMEOUT = const(0x8D)
RC_SESSION_TAKEN_OVER = const(0x8E)
RC_TOPIC_FILTER_INVALID = const(0x8F)
RC_TOPIC_NAME_INVALID = const(0x90)
RC_PACKET_IDENTIFIER_IN_USE = const(0x91)
RC_PACKET_IDENTIFIER_NOT_FOUND = const(0x92)
RC_RECEIVE_MAXIMUM_EXCEEDED = const(0x93)
RC_TOPIC_ALIAS_INVALID = const(0x94)
RC_PACKET_TOO_LARGE = const(0x95)
RC_MESSAGE_RATE_TOO_HIGH = const(0x96)
RC_QUOTA_EXCEEDED = const(0x97)
RC_ADMINISTRATIVE_ACTION = const(0x98)
RC_PAYLOAD_FORMAT_INVALID = const(0x99)
RC_RETAIN_NOT_SUPPORTED = const(0x9A)
RC_QOS_NOT_SUPPORTED = const(0x9B)
RC_USE_ANOTHER_SERVER = const(0x9C)
RC_SERVER_MOVED = const(0x9D)
RC_SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = const(0x9E)
RC_CONNECTION_RATE_EXCEEDED = const(0x9F)
RC_MAXIMUM_CONNECT_TIME = const(0xA0)
RC_SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = const(0xA1)
RC_WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = const(0xA2)


# ------------------------------------------------------------ packets -----

def _packet_eq(self, other):
    return type(self) is type(other) and self.__dict__ == other.__dict__


def _packet_repr(self):
    return "%s(%s)" % (PACKET_NAMES[self.type], ", ".join(
        "%s=%r" % (k, self.__dict__[k]) for k in sorted(self.__dict__)))


def _will_eq(self, other):
    return isinstance(other, Will) and self.__dict__ == other.__dict__


def _will_repr(self):
    return "Will(%r, %r, qos=%d, retain=%r, properties=%r)" % (
        self.topic, self.payload, self.qos, self.retain, self.properties)


# codec's packet objects compare and print only where they are compared and printed.
Will.__eq__ = _will_eq  # type: ignore[method-assign]
Will.__repr__ = _will_repr  # type: ignore[method-assign]


class Packet:
    """A packet as an object, of one class per type (below), which compare and print;
    the client's ``decode_body`` gives its packets as ``codec.PublishView`` objects
    (``codec.Packet``), turned into these by ``decode_body`` here."""

    type = 0


Packet.__eq__ = _packet_eq  # type: ignore[method-assign]
Packet.__repr__ = _packet_repr  # type: ignore[method-assign]


class Connack(Packet):
    type = CONNACK

    def __init__(self, reason_code=0, session_present=False, properties=None):
        self.reason_code = reason_code
        self.session_present = session_present
        self.properties = properties or {}


class SubAck(Packet):
    """SUBACK or UNSUBACK (``type`` set per instance): one reason code per filter."""

    def __init__(self, type, packet_id, reason_codes, properties=None):
        self.type = type
        self.packet_id = packet_id
        self.reason_codes = reason_codes
        self.properties = properties or {}


class Disconnect(Packet):
    type = DISCONNECT

    def __init__(self, reason_code=0, properties=None):
        self.reason_code = reason_code
        self.properties = properties or {}


class Auth(Packet):
    type = AUTH

    def __init__(self, reason_code=0, properties=None):
        self.reason_code = reason_code
        self.properties = properties or {}


class Connect(Packet):
    type = CONNECT

    def __init__(self, client_id="", clean_start=True, keep_alive=0, username=None,
                 password=None, will=None, properties=None):
        self.client_id = client_id
        self.clean_start = clean_start
        self.keep_alive = keep_alive
        self.username = username
        self.password = password
        self.will = will
        self.properties = properties or {}


class Publish(Packet):
    type = PUBLISH

    def __init__(self, topic, payload=b"", qos=0, retain=False, dup=False, packet_id=0,
                 properties=None):
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packet_id = packet_id
        self.properties = properties or {}


class Ack(Packet):
    """PUBACK, PUBREC, PUBREL or PUBCOMP (``type`` set per instance)."""

    def __init__(self, type, packet_id, reason_code=0, properties=None):
        self.type = type
        self.packet_id = packet_id
        self.reason_code = reason_code
        self.properties = properties or {}


class Subscribe(Packet):
    """``subscriptions`` is a list of ``(filter, options)``; see ``sub_options``."""

    type = SUBSCRIBE

    def __init__(self, packet_id, subscriptions, properties=None):
        self.packet_id = packet_id
        self.subscriptions = subscriptions
        self.properties = properties or {}


class Unsubscribe(Packet):
    type = UNSUBSCRIBE

    def __init__(self, packet_id, filters, properties=None):
        self.packet_id = packet_id
        self.filters = filters
        self.properties = properties or {}


class Ping(Packet):
    """PINGREQ or PINGRESP."""

    def __init__(self, type):
        self.type = type


# ------------------------------------------------------------ encoding ----

def encode_connack(buf, reason_code=0, session_present=False, props=None):
    """CONNACK (3.2). Returns the length."""
    if not reason_allowed(CONNACK, reason_code):
        raise UsageError("reason code 0x%02X not allowed in CONNACK" % reason_code)
    if session_present and reason_code:
        raise UsageError("session present needs reason code 0 [MQTT-3.2.2-6]")
    psize = _p.size(props, 1 << CONNACK)
    pos = _header(buf, 0x20, 2 + vbi_size(psize) + psize, 0)
    buf[pos] = 1 if session_present else 0
    buf[pos + 1] = reason_code
    return _p.write(buf, pos + 2, props, psize)


def _encode_subacks(buf, first, ptype, packet_id, reason_codes, props):
    _check_id(packet_id)
    for rc in reason_codes:
        if not reason_allowed(ptype, rc):
            raise UsageError("reason code 0x%02X not allowed here" % rc)
    psize = _p.size(props, 1 << ptype)
    pos = _header(buf, first, 2 + vbi_size(psize) + psize + len(reason_codes), 0)
    pos = write_u16(buf, pos, packet_id)
    pos = _p.write(buf, pos, props, psize)
    for rc in reason_codes:
        buf[pos] = rc
        pos += 1
    return pos


def encode_suback(buf, packet_id, reason_codes, props=None):
    """SUBACK (3.9): one reason code per requested filter."""
    return _encode_subacks(buf, 0x90, SUBACK, packet_id, reason_codes, props)


def encode_unsuback(buf, packet_id, reason_codes, props=None):
    """UNSUBACK (3.11)."""
    return _encode_subacks(buf, 0xB0, UNSUBACK, packet_id, reason_codes, props)


def encode(packet, buf):
    """Encode any packet object into ``buf``; returns the length (cold path)."""
    t = packet.type
    if t == CONNECT:
        return encode_connect(buf, packet.client_id, packet.clean_start, packet.keep_alive,
                              packet.username, packet.password, packet.will, packet.properties)
    if t == CONNACK:
        return encode_connack(buf, packet.reason_code, packet.session_present, packet.properties)
    if t == PUBLISH:
        return encode_publish(buf, packet.topic, _bytes(packet.payload), packet.qos,
                              packet.packet_id, packet.retain, packet.dup, packet.properties)
    if PUBACK <= t <= PUBCOMP:
        return encode_ack(buf, t, packet.packet_id, packet.reason_code, packet.properties)
    if t == SUBSCRIBE:
        return encode_subscribe(buf, packet.packet_id, packet.subscriptions, packet.properties)
    if t == SUBACK:
        return encode_suback(buf, packet.packet_id, packet.reason_codes, packet.properties)
    if t == UNSUBSCRIBE:
        return encode_unsubscribe(buf, packet.packet_id, packet.filters, packet.properties)
    if t == UNSUBACK:
        return encode_unsuback(buf, packet.packet_id, packet.reason_codes, packet.properties)
    if t == PINGREQ or t == PINGRESP:
        return _header(buf, t << 4, 0, 0)
    if t == DISCONNECT:
        return encode_disconnect(buf, packet.reason_code, packet.properties)
    if t == AUTH:
        return encode_auth(buf, packet.reason_code, packet.properties)
    raise UsageError("unknown packet type %r" % (t,))


# ------------------------------------------------------------ decoding ----

def read_string(r):
    """A UTF-8 string from properties.Reader ``r``, validated, as a new str."""
    start = r.utf8()
    return str(r.buf[start:r.pos], "utf-8")


def read_binary(r):
    """Binary data from properties.Reader ``r`` as new bytes."""
    start = r.span()
    return bytes(r.buf[start:r.pos])


def _decode_connect(r):
    if r.pos + 6 > r.end:
        raise _p._error(0, None, 0x81)  # (properties' _E_SHORT, as Reader raises it)
    for k in range(6):
        if r.buf[r.pos + k] != _PROTOCOL_NAME[k]:
            raise ProtocolError("protocol name is not MQTT [MQTT-3.1.2-1]", 0x84)
    r.pos += 6
    level = r.u8()
    if level != _PROTOCOL_LEVEL:
        raise ProtocolError("unsupported protocol version %d [MQTT-3.1.2-2]" % level, 0x84)
    flags = r.u8()
    if flags & 0x01:
        raise ProtocolError("reserved CONNECT flag set [MQTT-3.1.2-3]", 0x81)
    will_flag = flags & 0x04
    will_qos = (flags >> 3) & 3
    will_retain = flags & 0x20
    if will_qos == 3:
        raise ProtocolError("will QoS 3 [MQTT-3.1.2-12]", 0x81)
    if not will_flag and (will_qos or will_retain):
        raise ProtocolError("will QoS/retain without a will [MQTT-3.1.2-11] [MQTT-3.1.2-13]", 0x81)
    keep_alive = r.u16()
    props = _props(r, 1 << CONNECT)
    client_id = read_string(r)
    will = None
    if will_flag:
        wprops = _props(r, _p.W_WILL)
        start = r.utf8()
        if start == r.pos or not topic_name_ok(r.buf, start, r.pos):
            raise ProtocolError("invalid will topic", 0x90)
        wtopic = str(r.buf[start:r.pos], "utf-8")
        will = Will(wtopic, read_binary(r), will_qos, bool(will_retain), wprops)
    username = read_string(r) if flags & 0x80 else None
    password = read_binary(r) if flags & 0x40 else None
    _expect_end(r)
    return Connect(client_id, bool(flags & 0x02), keep_alive, username, password, will, props)


def _decode_subscribe(r):
    pid = r.u16()
    if not pid:
        raise ProtocolError("packet identifier 0 [MQTT-2.2.1-3]", 0x82)
    props = _props(r, 1 << SUBSCRIBE)
    subs = []
    while r.pos < r.end:
        start = r.utf8()
        end = r.pos
        if not filter_ok(r.buf, start, end):
            # A broken filter is a Malformed Packet rather than a SUBACK 0x8F:
            # the packet cannot be interpreted [MQTT-4.7.1-1] [MQTT-4.7.1-2].
            raise ProtocolError("invalid topic filter", 0x81)
        options = r.u8()
        if options & 0xC0:
            raise ProtocolError("reserved subscription option bits [MQTT-3.8.3-5]", 0x81)
        if options & 3 == 3:
            raise ProtocolError("subscription QoS 3 [MQTT-3.8.3-2]", 0x81)
        if (options >> 4) & 3 == 3:
            raise ProtocolError("retain handling 3", 0x82)
        filt = str(r.buf[start:end], "utf-8")
        if options & 4 and filt.startswith("$share/"):
            raise ProtocolError("no local on a shared subscription [MQTT-3.8.3-4]", 0x82)
        subs.append((filt, options))
    if not subs:
        raise ProtocolError("SUBSCRIBE without filters [MQTT-3.8.3-2]", 0x82)
    return Subscribe(pid, subs, props)


def _decode_unsubscribe(r):
    pid = r.u16()
    if not pid:
        raise ProtocolError("packet identifier 0 [MQTT-2.2.1-3]", 0x82)
    props = _props(r, 1 << UNSUBSCRIBE)
    filters = []
    while r.pos < r.end:
        start = r.utf8()
        if not filter_ok(r.buf, start, r.pos):
            raise ProtocolError("invalid topic filter", 0x81)
        filters.append(str(r.buf[start:r.pos], "utf-8"))
    if not filters:
        raise ProtocolError("UNSUBSCRIBE without filters [MQTT-3.10.3-2]", 0x82)
    return Unsubscribe(pid, filters, props)


def decode(data):
    """Decode exactly one whole packet from ``data`` (bytes-like); cold path
    and tests. Raises ProtocolError for anything else."""
    rd = PacketReader(max(len(data), 16))
    rd.feed(data)
    first = rd.next()
    if first < 0:
        raise ProtocolError("incomplete packet", 0x81)
    if rd.start != rd.end:
        raise ProtocolError("bytes left over after the packet", 0x81)
    return decode_body(first, rd.reader.reset(rd.buf, rd.body_start, rd.body_end))


def encode_bytes(packet, max_size=VBI_MAX):
    """``encode`` into a fresh buffer and return bytes (cold path and tests)."""
    size = 64
    while True:
        buf = bytearray(size)
        try:
            n = encode(packet, buf)
            return bytes(buf[:n])
        except UsageError as e:
            if e.reason_code != 0x95 or size >= max_size:
                raise
            size = min(size * 4, max_size + 5)


def decode_body(first, r):  # type: ignore[no-redef]
    """Decode the packet whose first byte is ``first`` and whose body is under
    reader ``r``, of any type, either direction; returns a packet object (cold path)."""
    t = first >> 4
    check_flags(first)
    if t == PUBLISH:
        v = decode_publish_into(PublishView(), first, r)
        return Publish(v.topic(), v.payload(), v.qos, v.retain, v.dup, v.packet_id,
                       v.properties())
    if PUBACK <= t <= PUBCOMP:
        v = decode_ack_into(AckView(), first, r)
        return Ack(t, v.packet_id, v.reason_code, v.properties() if v.prop_end else {})
    if t == CONNECT:
        return _decode_connect(r)
    if t == SUBSCRIBE:
        return _decode_subscribe(r)
    if t == UNSUBSCRIBE:
        return _decode_unsubscribe(r)
    if t == PINGREQ or t == PINGRESP:
        _expect_end(r)
        return Ping(t)
    # CONNACK, SUBACK, UNSUBACK, DISCONNECT, AUTH: the client's decoders, their
    # result as this module's packet classes
    p = _client_decode_body(first, r)
    if t == CONNACK:
        return Connack(p.reason_code, p.session_present, p.properties)
    if t == SUBACK or t == UNSUBACK:
        return SubAck(t, p.packet_id, p.reason_codes, p.properties)
    if t == DISCONNECT:
        return Disconnect(p.reason_code, p.properties)
    return Auth(p.reason_code, p.properties)
