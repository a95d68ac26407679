"""MQTT 5.0 packets <-> bytes, for both directions, with no I/O and no clock.

Theory of operation
-------------------
Encoding: every ``encode_*`` function sizes the packet first, checks that it
fits the caller's ``bytearray`` (allocated once, at connect) and serialises
into it from offset 0, returning the packet length. Nothing else is allocated
when the arguments are bytes-like and no property dict is given. PUBLISH has
``encode_publish_header`` so a large payload can be written after the header
without being copied; ``encode_publish`` copies a small payload behind the
header so the packet leaves in one write.

Decoding: ``PacketReader`` owns the receive buffer. The driver reads socket
bytes into ``reader.free()`` and calls ``reader.wrote(n)``; ``next()`` then
frames one packet at a time, returning its first byte and leaving the body's
bounds in ``body_start``/``body_end``. A packet announcing a Remaining Length
over our Maximum Packet Size is refused (0x95) from its fixed header alone,
before its body is buffered. Offsets handed out are valid until the next call
to ``next()``, which may move unread bytes to the front of the buffer.

Hot-path decoders (``decode_publish_into``, ``decode_ack_into``) fill
preallocated objects with offsets into the buffer; the cold-path ``decode``
builds a packet object with str/bytes/dict fields.

Every decoder is strict and raises only ``ProtocolError`` carrying the
reason code to DISCONNECT with: 0x81 Malformed Packet, 0x82 Protocol Error,
0x84 Unsupported Protocol Version, 0x90 Topic Name invalid, 0x95 Packet too
large. Encoders raise ``UsageError`` for arguments MQTT does not allow.
"""

from . import properties as _p
from ._compat import const
from .errors import ProtocolError, UsageError
from .properties import Reader, vbi_size, write_bin, write_u16, write_vbi
from .topic import filter_ok, is_wildcard, topic_name_ok

CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
PUBREC = const(5)
PUBREL = const(6)
PUBCOMP = const(7)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)
AUTH = const(15)

PACKET_NAMES = (
    "RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
    "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
    "PINGRESP", "DISCONNECT", "AUTH",
)

# The reason codes each packet may carry (MQTT 5.0, 3.2.2.2, 3.4.2.1, ...).
_RC_CONNACK = (b"\x00\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8c\x90\x95\x97\x99\x9a"
               b"\x9b\x9c\x9d\x9f")
_RC_PUBACK = b"\x00\x10\x80\x83\x87\x90\x91\x97\x99"  # PUBACK and PUBREC
_RC_PUBREL = b"\x00\x92"  # PUBREL and PUBCOMP
_RC_SUBACK = b"\x00\x01\x02\x80\x83\x87\x8f\x91\x97\x9e\xa1\xa2"
_RC_UNSUBACK = b"\x00\x11\x80\x83\x87\x8f\x91"
_RC_DISCONNECT = (b"\x00\x04\x80\x81\x82\x83\x87\x89\x8b\x8d\x8e\x8f\x90\x93\x94\x95"
                  b"\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f\xa0\xa1\xa2")
_RC_AUTH = b"\x00\x18\x19"

_PROTOCOL_NAME = b"\x00\x04MQTT"
_PROTOCOL_LEVEL = const(5)
PINGREQ_BYTES = b"\xc0\x00"
PINGRESP_BYTES = b"\xd0\x00"
_VBI_MAX = const(268435455)


def reason_allowed(ptype, rc):
    """True if reason code ``rc`` may appear in a packet of type ``ptype``."""
    if ptype == CONNACK:
        table = _RC_CONNACK
    elif ptype == PUBACK or ptype == PUBREC:
        table = _RC_PUBACK
    elif ptype == PUBREL or ptype == PUBCOMP:
        table = _RC_PUBREL
    elif ptype == SUBACK:
        table = _RC_SUBACK
    elif ptype == UNSUBACK:
        table = _RC_UNSUBACK
    elif ptype == DISCONNECT:
        table = _RC_DISCONNECT
    elif ptype == AUTH:
        table = _RC_AUTH
    else:
        return False
    for code in table:
        if code == rc:
            return True
    return False


def sub_options(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    """The SUBSCRIBE options byte (MQTT 5.0, 3.8.3.1)."""
    return (qos | (4 if no_local else 0) | (8 if retain_as_published else 0)
            | (retain_handling << 4))


# ------------------------------------------------------------ packets -----

class Packet:
    """A packet as an object (cold path); ``type`` is the packet type. ``decode_body``
    gives one of this class with the fields of its type (CONNACK: reason_code,
    session_present, properties; SUBACK/UNSUBACK: packet_id, reason_codes, properties;
    DISCONNECT/AUTH: reason_code, properties). ``_server_codec`` has a subclass per
    packet type, and adds equality and repr, which a device has no use for."""

    type = 0


def _packet(t, reason_code, props):
    p = Packet()
    p.type = t
    p.reason_code = reason_code  # type: ignore[attr-defined]
    p.properties = props  # type: ignore[attr-defined]
    return p


# ------------------------------------------------------------ encoding ----

_bytes = _p.to_utf8


def _header(buf, first, remaining, payload_len=0):
    """Check capacity, write the fixed header; returns the body offset.
    ``payload_len`` bytes of the packet are not meant for ``buf``."""
    if remaining > _VBI_MAX:
        raise UsageError("packet too large for MQTT", 0x95)
    total = 1 + vbi_size(remaining) + remaining - payload_len
    if total > len(buf):
        raise UsageError("%d-byte packet does not fit the %d-byte buffer"
                         % (total, len(buf)), 0x95)
    buf[0] = first
    return write_vbi(buf, 1, remaining)


def _check_qos(qos):
    if qos != 0 and qos != 1 and qos != 2:
        raise UsageError("QoS must be 0, 1 or 2")


def _check_id(packet_id):
    if not 0 < packet_id <= 0xFFFF:
        raise UsageError("packet identifier must be 1..65535")


def _check_str(value, what):
    b = _bytes(value)
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise UsageError("%s must be str or bytes" % what)
    if len(b) > 0xFFFF or not _p.utf8_ok(b, 0, len(b)):
        raise UsageError("%s is not a valid MQTT UTF-8 string" % what)
    return b


def _check_bin(value, what):
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) > 0xFFFF:
        raise UsageError("%s must be bytes of at most 65535" % what)
    return value


def encode_connect(buf, client_id, clean_start=True, keep_alive=0, username=None,
                   password=None, will=None, props=None):
    """CONNECT (3.1). ``will`` is a ``Will`` or None. Returns the length."""
    cid = _check_str(client_id, "client id")
    if not 0 <= keep_alive <= 0xFFFF:
        raise UsageError("keep alive must be 0..65535 seconds")
    flags = 0x02 if clean_start else 0
    psize = _p.size(props, 1 << CONNECT)
    rem = len(_PROTOCOL_NAME) + 1 + 1 + 2 + vbi_size(psize) + psize + 2 + len(cid)
    if will is not None:
        _check_qos(will.qos)
        wtopic = _check_str(will.topic, "will topic")
        if not topic_name_ok(wtopic, 0, len(wtopic)) or not len(wtopic):
            raise UsageError("will topic must be a valid topic name")
        wpayload = _check_bin(_bytes(will.payload), "will payload")
        wsize = _p.size(will.properties, _p.W_WILL)
        rem += vbi_size(wsize) + wsize + 2 + len(wtopic) + 2 + len(wpayload)
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if username is not None:
        user = _check_str(username, "username")
        rem += 2 + len(user)
        flags |= 0x80
    if password is not None:
        pw = _check_bin(_bytes(password), "password")
        rem += 2 + len(pw)
        flags |= 0x40
    pos = _header(buf, 0x10, rem)
    buf[pos:pos + 6] = _PROTOCOL_NAME
    buf[pos + 6] = _PROTOCOL_LEVEL
    buf[pos + 7] = flags
    pos = write_u16(buf, pos + 8, keep_alive)
    pos = _p.write(buf, pos, props, psize)
    pos = write_bin(buf, pos, cid)
    if will is not None:
        pos = _p.write(buf, pos, will.properties, wsize)
        pos = write_bin(buf, pos, wtopic)
        pos = write_bin(buf, pos, wpayload)
    if username is not None:
        pos = write_bin(buf, pos, user)
    if password is not None:
        pos = write_bin(buf, pos, pw)
    return pos


def publish_size(topic_len, payload_len, qos, psize):
    """Total bytes of a PUBLISH with a property block of ``psize`` bytes."""
    rem = 2 + topic_len + (2 if qos else 0) + vbi_size(psize) + psize + payload_len
    return 1 + vbi_size(rem) + rem


# The last bytes topic that passed topic_name_ok. bytes are immutable, so the same
# object again is the same valid name: a device publishing to one topic skips the
# byte-by-byte scan, a third of a PUBLISH encode. One reference, replaced whole, so
# concurrent callers (CPython threads) never see half an update.
_valid_topic = None


def encode_publish_header(buf, topic, payload_len, qos=0, packet_id=0, retain=False,
                          dup=False, props=None, topic_alias=0):
    """Fixed and variable header of a PUBLISH (3.3), without the payload.

    ``topic`` is bytes-like (no allocation) or str; it may be empty when
    ``topic_alias`` is given. Returns the header length; the payload must
    follow it on the wire.
    """
    global _valid_topic
    _check_qos(qos)
    if isinstance(topic, str):
        topic = _p.to_utf8(topic)
    tlen = len(topic)
    if topic is not _valid_topic:
        if not topic_name_ok(topic, 0, tlen):
            raise UsageError("invalid topic name (wildcard, U+0000 or bad UTF-8)", 0x90)
        if type(topic) is bytes:
            _valid_topic = topic
    if not tlen and not topic_alias and not (props and _p.PROP_TOPIC_ALIAS in props):
        raise UsageError("empty topic needs a topic alias [MQTT-3.3.2-1]", 0x90)
    if qos:
        _check_id(packet_id)
    elif dup:
        raise UsageError("DUP must be 0 for QoS 0 [MQTT-3.3.1-2]")
    psize = _p.size(props, 1 << PUBLISH) if props else 0
    if topic_alias:
        if not 0 < topic_alias <= 0xFFFF:
            raise UsageError("topic alias must be 1..65535")
        if props and _p.PROP_TOPIC_ALIAS in props:
            raise UsageError("topic alias given twice")
        psize += 3
    rem = 2 + tlen + (2 if qos else 0) + vbi_size(psize) + psize + payload_len
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (1 if retain else 0)
    pos = _header(buf, first, rem, payload_len)
    pos = write_bin(buf, pos, topic)
    if qos:
        pos = write_u16(buf, pos, packet_id)
    pos = write_vbi(buf, pos, psize)
    if topic_alias:
        buf[pos] = _p.PROP_TOPIC_ALIAS
        pos = write_u16(buf, pos + 1, topic_alias)
    return _p.write_content(buf, pos, props)


def encode_publish_plain(buf, topic, payload, qos, packet_id, retain, limit):
    """The common PUBLISH whole into ``buf``: a bytes topic, no properties, no alias,
    no DUP, QoS 0 (``packet_id`` ignored) or 1/2 (a valid ``packet_id``), payload
    copied behind the header. Returns its length, or 0 when it is not that case or
    does not fit ``buf`` or ``limit`` bytes (the caller then takes
    ``encode_publish_header``, which says why). The hot path: no call but the topic
    check, and that only for a topic object other than the last one checked."""
    global _valid_topic
    if topic is not _valid_topic:
        if type(topic) is not bytes or not topic or not topic_name_ok(topic, 0, len(topic)):
            return 0
        _valid_topic = topic  # bytes are immutable: the same object stays valid
    tlen = len(topic)
    n = len(payload)
    rem = tlen + n + (5 if qos else 3)  # topic length, topic, [packet id], 0 properties
    if rem < 128:
        pos = 2
    elif rem < 16384:
        pos = 3
    else:
        return 0
    if pos + rem > len(buf) or pos + rem > limit:
        return 0
    buf[0] = 0x30 | (qos << 1) | (1 if retain else 0)
    if pos == 2:
        buf[1] = rem
    else:
        buf[1] = (rem & 0x7F) | 0x80
        buf[2] = rem >> 7
    buf[pos] = tlen >> 8
    buf[pos + 1] = tlen & 0xFF
    pos += 2
    buf[pos:pos + tlen] = topic
    pos += tlen
    if qos:
        buf[pos] = packet_id >> 8
        buf[pos + 1] = packet_id & 0xFF
        pos += 2
    buf[pos] = 0
    pos += 1
    buf[pos:pos + n] = payload
    return pos + n


def encode_publish(buf, topic, payload, qos=0, packet_id=0, retain=False, dup=False,
                   props=None, topic_alias=0):
    """A whole PUBLISH (3.3), the payload copied behind the header so that the
    packet leaves in one write. Returns the length."""
    if isinstance(payload, str):
        payload = _p.to_utf8(payload)  # cold: a str payload allocates its bytes
    n = len(payload)
    pos = encode_publish_header(buf, topic, n, qos, packet_id, retain, dup, props, topic_alias)
    if pos + n > len(buf):
        raise UsageError("%d-byte packet does not fit the %d-byte buffer"
                         % (pos + n, len(buf)), 0x95)
    buf[pos:pos + n] = payload
    return pos + n


def encode_ack(buf, ptype, packet_id, reason_code=0, props=None):
    """PUBACK, PUBREC, PUBREL or PUBCOMP (3.4-3.7). Returns the length."""
    _check_id(packet_id)
    if not reason_allowed(ptype, reason_code):
        raise UsageError("reason code 0x%02X not allowed here" % reason_code)
    first = 0x62 if ptype == PUBREL else (ptype << 4)
    if not props:
        if reason_code == 0:
            # [MQTT-3.4.2-1] reason code and properties may be omitted on success
            pos = _header(buf, first, 2)
            return write_u16(buf, pos, packet_id)
        pos = _header(buf, first, 3)
        pos = write_u16(buf, pos, packet_id)
        buf[pos] = reason_code
        return pos + 1
    psize = _p.size(props, 1 << ptype)
    pos = _header(buf, first, 3 + vbi_size(psize) + psize)
    pos = write_u16(buf, pos, packet_id)
    buf[pos] = reason_code
    return _p.write(buf, pos + 1, props, psize)


def encode_subscribe(buf, packet_id, subscriptions, props=None):
    """SUBSCRIBE (3.8); ``subscriptions`` is a list of ``(filter, options)``."""
    _check_id(packet_id)
    if not subscriptions:
        raise UsageError("SUBSCRIBE needs at least one filter [MQTT-3.8.3-2]")
    psize = _p.size(props, 1 << SUBSCRIBE)
    if props:
        # An int, or the one-element list that decoding gives back (to_dict).
        sid = props.get(_p.PROP_SUBSCRIPTION_IDENTIFIER)
        if isinstance(sid, (list, tuple)) and len(sid) != 1:
            raise UsageError("SUBSCRIBE takes one subscription identifier")
    rem = 2 + vbi_size(psize) + psize
    encoded = []
    for filt, options in subscriptions:
        f = _check_str(filt, "topic filter")
        if not filter_ok(f, 0, len(f)):
            raise UsageError("invalid topic filter %r" % (filt,), 0x8F)
        if (not isinstance(options, int) or options & 0xC0 or (options & 3) == 3
                or (options >> 4) & 3 == 3):
            raise UsageError("invalid subscription options %r" % (options,))
        if options & 4 and f[:7] == b"$share/":
            raise UsageError("no local on a shared subscription [MQTT-3.8.3-4]")
        encoded.append(f)
        rem += 2 + len(f) + 1
    pos = _header(buf, 0x82, rem)
    pos = write_u16(buf, pos, packet_id)
    pos = _p.write(buf, pos, props, psize)
    for i in range(len(encoded)):
        pos = write_bin(buf, pos, encoded[i])
        buf[pos] = subscriptions[i][1]
        pos += 1
    return pos


def _encode_reason_only(buf, ptype, reason_code, props):
    if not reason_allowed(ptype, reason_code):
        raise UsageError("reason code 0x%02X not allowed here" % reason_code)
    first = ptype << 4
    if ptype == AUTH and (reason_code or props) and not (
            props and _p.PROP_AUTHENTICATION_METHOD in props):
        # 3.15.2.2.2: omitting the Authentication Method is a Protocol Error; only a
        # Success AUTH without properties may drop its whole body (3.15.2.1).
        raise UsageError("AUTH needs an Authentication Method")
    if not props:
        if reason_code == 0:
            return _header(buf, first, 0)
        # DISCONNECT only: a reason code without a Property Length (3.14.2.2.1)
        pos = _header(buf, first, 1)
        buf[pos] = reason_code
        return pos + 1
    psize = _p.size(props, 1 << ptype)
    pos = _header(buf, first, 1 + vbi_size(psize) + psize)
    buf[pos] = reason_code
    return _p.write(buf, pos + 1, props, psize)


def encode_disconnect(buf, reason_code=0, props=None):
    """DISCONNECT (3.14). Returns the length."""
    return _encode_reason_only(buf, DISCONNECT, reason_code, props)




class PacketReader:
    """Frames packets out of a receive buffer allocated once.

    ``max_packet_size`` is the Maximum Packet Size we advertise (whole packet,
    fixed header included); the buffer is exactly that large.
    """

    def __init__(self, max_packet_size):
        if max_packet_size < 16:
            raise UsageError("maximum packet size must be at least 16 bytes")
        self.buf = bytearray(max_packet_size)
        self._mv = memoryview(self.buf)
        self.max_packet_size = max_packet_size
        self.start = 0  # first unread byte
        self.end = 0  # end of received bytes
        self.first = 0  # first byte of the packet last framed
        self.body_start = 0
        self.body_end = 0
        self.reader = Reader()

    def free(self):
        """A writable view of the free space (the whole buffer when empty)."""
        if self.end == 0:
            return self._mv
        return self._mv[self.end:]

    def wrote(self, n):
        """Record that ``n`` bytes were written into ``free()``."""
        self.end += n

    def feed(self, data):
        """Copy ``data`` in (tests and servers); returns how many bytes fitted."""
        room = len(self.buf) - self.end
        n = len(data) if len(data) < room else room
        self.buf[self.end:self.end + n] = data[:n] if n < len(data) else data
        self.end += n
        return n

    def reset(self):
        """Drop everything buffered (after a disconnect)."""
        self.start = self.end = 0

    def next(self):
        """Frame the next complete packet. Returns its first byte (type << 4 |
        flags) with the body bounds in ``body_start``/``body_end``, or -1 if no
        complete packet is buffered yet."""
        buf = self.buf
        s = self.start
        end = self.end
        if s == end:
            self.start = self.end = 0
            return -1
        # Fixed header: first byte then a Variable Byte Integer [MQTT-2.1.4].
        value = 0
        shift = 0
        p = s + 1
        while True:
            if p >= end:
                self._compact()
                return -1
            byte = buf[p]
            p += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            if p - s - 1 == 4:
                raise ProtocolError("remaining length longer than 4 bytes", 0x81)
            shift += 7
        if p - s > 2 and byte == 0:
            raise ProtocolError("remaining length not minimally encoded", 0x81)
        first = buf[s]
        if first >> 4 == 0:
            raise ProtocolError("reserved packet type 0", 0x81)
        total = p - s + value
        if total > self.max_packet_size:
            # Refused from the header alone: the body is never buffered.
            raise ProtocolError("packet of %d bytes exceeds our maximum of %d"
                                % (total, self.max_packet_size), 0x95)
        if p + value > end:
            self._compact()
            return -1
        self.first = first
        self.body_start = p
        self.body_end = p + value
        self.start = p + value
        return first

    def _compact(self):
        s = self.start
        if s:
            n = self.end - s
            self._mv[0:n] = self._mv[s:self.end]
            self.start = 0
            self.end = n


# ------------------------------------------------------------ decoding ----

class PublishView:
    """An incoming PUBLISH as offsets into the receive buffer (hot path), or, as
    ``AckView``, an incoming PUBACK/PUBREC/PUBREL/PUBCOMP (``type``, ``packet_id``,
    ``reason_code``). One class for both: a device keeps one view of each. Valid
    until the reader frames the next packet."""

    def __init__(self):
        self.buf = b""
        self.type = 0
        self.reason_code = 0
        self.qos = 0
        self.retain = False
        self.dup = False
        self.packet_id = 0
        self.topic_start = self.topic_end = 0
        self.topic_alias = 0
        self.prop_start = self.prop_end = 0
        self.payload_start = self.payload_end = 0

    def topic(self):
        return str(self.buf[self.topic_start:self.topic_end], "utf-8")

    def payload(self):
        return bytes(self.buf[self.payload_start:self.payload_end])

    def properties(self):
        return _p.to_dict(self.buf, self.prop_start, self.prop_end)


AckView = PublishView


def _check_flags(first):
    t = first >> 4
    flags = first & 0x0F
    if t == PUBREL or t == SUBSCRIBE or t == UNSUBSCRIBE:
        if flags != 0x02:
            raise ProtocolError("reserved flags of %s must be 0010 [MQTT-2.1.3-1]"
                                % PACKET_NAMES[t], 0x81)
    elif t != PUBLISH and flags:
        raise ProtocolError("reserved flags of %s must be 0 [MQTT-2.1.3-1]"
                            % PACKET_NAMES[t], 0x81)


def decode_publish_into(view, first, r):
    """Decode the PUBLISH body under reader ``r`` into ``view``, allocating nothing."""
    qos = (first >> 1) & 3
    if qos == 3:
        raise ProtocolError("QoS 3 [MQTT-3.3.1-4]", 0x81)
    dup = (first & 0x08) != 0
    if dup and not qos:
        raise ProtocolError("DUP set on QoS 0 [MQTT-3.3.1-2]", 0x81)
    view.buf = r.buf
    view.qos = qos
    view.dup = dup
    view.retain = (first & 1) != 0
    ts = r.utf8()  # ill-formed UTF-8 or U+0000: Malformed Packet [MQTT-1.5.4-1] [MQTT-1.5.4-2]
    te = r.pos
    if is_wildcard(r.buf, ts, te):
        raise ProtocolError("wildcard in a topic name [MQTT-3.3.2-2]", 0x90)
    view.topic_start = ts
    view.topic_end = te
    if qos:
        pid = r.u16()
        if not pid:
            raise ProtocolError("packet identifier 0 [MQTT-2.2.1-3]", 0x82)
        view.packet_id = pid
    else:
        view.packet_id = 0
    alias = _p.check(r, 1 << PUBLISH)
    if ts == te and not alias:
        raise ProtocolError("empty topic without a topic alias [MQTT-3.3.2-1]", 0x82)
    view.topic_alias = alias
    view.prop_start = r.prop_start
    view.prop_end = r.prop_end
    view.payload_start = r.pos
    view.payload_end = r.end
    return view


def decode_ack_into(view, first, r):
    """Decode a PUBACK/PUBREC/PUBREL/PUBCOMP body into ``view``."""
    t = first >> 4
    _check_flags(first)
    view.type = t
    view.buf = r.buf
    pid = r.u16()
    if not pid:
        raise ProtocolError("packet identifier 0 [MQTT-2.2.1-3]", 0x82)
    view.packet_id = pid
    view.prop_start = view.prop_end = 0
    if r.pos == r.end:
        view.reason_code = 0  # [MQTT-3.4.2.1] omitted means Success
        return view
    rc = r.u8()
    if not reason_allowed(t, rc):
        raise ProtocolError("reason code 0x%02X not allowed in %s" % (rc, PACKET_NAMES[t]), 0x82)
    view.reason_code = rc
    if r.pos < r.end:
        _p.check(r, 1 << t)
        view.prop_start = r.prop_start
        view.prop_end = r.prop_end
    _expect_end(r)
    return view


def _expect_end(r):
    if r.pos != r.end:
        raise ProtocolError("bytes left over after the packet's contents", 0x81)


def _props(r, where):
    _p.check(r, where)
    return _p.to_dict(r.buf, r.prop_start, r.prop_end)


def _decode_connack(r):
    ack_flags = r.u8()
    if ack_flags & 0xFE:
        raise ProtocolError("reserved CONNACK flags set [MQTT-3.2.2-1]", 0x81)
    rc = r.u8()
    if not reason_allowed(CONNACK, rc):
        raise ProtocolError("reason code 0x%02X not allowed in CONNACK" % rc, 0x82)
    if rc and ack_flags:
        raise ProtocolError("session present with a failure code [MQTT-3.2.2-6]", 0x82)
    p = _packet(CONNACK, rc, _props(r, 1 << CONNACK))
    _expect_end(r)
    p.session_present = bool(ack_flags)  # type: ignore[attr-defined]
    return p


def _decode_subacks(r, t):
    pid = r.u16()
    if not pid:
        raise ProtocolError("packet identifier 0 [MQTT-2.2.1-3]", 0x82)
    props = _props(r, 1 << t)
    codes = []
    while r.pos < r.end:
        rc = r.u8()
        if not reason_allowed(t, rc):
            raise ProtocolError("reason code 0x%02X not allowed in %s"
                                % (rc, PACKET_NAMES[t]), 0x82)
        codes.append(rc)
    if not codes:
        raise ProtocolError("%s without reason codes" % PACKET_NAMES[t], 0x82)
    p = _packet(t, 0, props)
    p.packet_id = pid  # type: ignore[attr-defined]
    p.reason_codes = codes  # type: ignore[attr-defined]
    return p


def decode_body(first, r):
    """Decode a packet a server sends on a cold path -- CONNACK, SUBACK, UNSUBACK,
    DISCONNECT, AUTH -- whose first byte is ``first`` and whose body is under reader
    ``r``; returns a ``Packet``. PUBLISH and the acks have their allocation-free
    decoders above; every packet type both ways: ``_server_codec.decode_body``."""
    t = first >> 4
    _check_flags(first)
    if t == CONNACK:
        return _decode_connack(r)
    if t == SUBACK or t == UNSUBACK:
        return _decode_subacks(r, t)
    if t == DISCONNECT or t == AUTH:
        from . import _codec_rare

        return _codec_rare.decode_reason_only(r, t)
    raise ProtocolError("%s is not decoded by a client" % PACKET_NAMES[t], 0x82)
