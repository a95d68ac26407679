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

On a device this module holds only what a client's everyday path runs: errors are
raised by number (``_err``; their texts load with ``_errtext`` on the first one), and
the public names the everyday path does not use (``CONNECT`` ... ``AUTH``,
``PACKET_NAMES``, ``AckView``, ``encode_publish``, ``encode_publish_header``,
``publish_size``, ``Will``, ...) live in
``_codec_rare``, where ``codec.X`` finds them (``__getattr__``); ``encode_connect`` lives
in ``_connect``, which ``Session.connect`` loads for each connect and unloads again.
"""

# ``len`` as a global of this module: MicroPython looks a builtin up in the module's
# globals first, and a miss probes until it meets a free slot; this module's dict is full
# (37 names in 37 slots), so a miss probed all of it: ~200 ns per call on the unix port,
# 3 calls per PUBLISH. A global is found at once (the lookup cache). The protocol name
# (a literal in encode_connect now) gave up its slot, so the dict does not grow (+80 B).
from builtins import len

from . import properties as _p
from ._compat import const, heap_collect
from .topic import topic_name_ok  # (a global: an import in a function allocates per call)

heap_collect()  # (before this module defines anything: see _compat's heap_collect)

_TYPE_CHECKING = const(0)  # (folded by MicroPython: mypy alone reads the block)
if _TYPE_CHECKING:  # pragma: no cover
    from typing import Any  # noqa: F401 (type comments)

# Packet types. Public names (CONNECT, ..., AUTH, PACKET_NAMES, AckView, encode_publish, ...)
# that a device's everyday path does not use live in ``_codec_rare``; this module's
# ``__getattr__`` gives them (``codec.CONNECT`` works as before).
_CONNECT = const(1)
_CONNACK = const(2)
_PUBLISH = const(3)
_PUBACK = const(4)
_PUBREC = const(5)
_PUBREL = const(6)
_PUBCOMP = const(7)
_SUBSCRIBE = const(8)
_SUBACK = const(9)
_UNSUBSCRIBE = const(10)
_UNSUBACK = const(11)
_DISCONNECT = const(14)
_AUTH = const(15)

_PROP_SUBSCRIPTION_IDENTIFIER = const(0x0B)

# The reason codes each packet type may carry (MQTT 5.0, 3.2.2.2, 3.4.2.1, ...), one bytes
# constant: those of type t are _RC[_RC[2t]:_RC[2t + 1]] (an empty span: none).
# PUBACK/PUBREC and PUBREL/PUBCOMP share theirs. A const(): folded into its users, it is no
# global of this module (each global is a slot of its dict).
_RC = const(b"\x00\x00\x00\x00\x20\x36\x00\x00\x36\x3f\x36\x3f\x3f\x41\x3f\x41"  # spans, 0..7
            b"\x00\x00\x41\x4d\x00\x00\x4d\x54\x00\x00\x00\x00\x54\x71\x71\x74"  # spans, 8..15
            # 0x20 CONNACK
            b"\x00\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8c\x90\x95\x97\x99\x9a"
            b"\x9b\x9c\x9d\x9f"
            b"\x00\x10\x80\x83\x87\x90\x91\x97\x99"  # 0x36 PUBACK, PUBREC
            b"\x00\x92"  # 0x3f PUBREL, PUBCOMP
            b"\x00\x01\x02\x80\x83\x87\x8f\x91\x97\x9e\xa1\xa2"  # 0x41 SUBACK
            b"\x00\x11\x80\x83\x87\x8f\x91"  # 0x4d UNSUBACK
            # 0x54 DISCONNECT
            b"\x00\x04\x80\x81\x82\x83\x87\x89\x8b\x8d\x8e\x8f\x90\x93\x94\x95\x96\x97\x98"
            b"\x99\x9a\x9b\x9c\x9d\x9e\x9f\xa0\xa1\xa2"
            b"\x00\x18\x19")  # 0x71 AUTH

_VBI_MAX = const(268435455)

# Errors, by number: their class, reason code and text are in _errtext.CODEC (text kept
# out of a device's RAM until one is raised). UsageError:
_E_TOO_LARGE = const(0)
_E_NO_ROOM = const(1)  # the packet does not fit the caller's buffer
_E_QOS = const(2)
_E_PACKET_ID = const(3)
_E_NOT_BYTES = const(4)  # args: what (_W_*)
_E_BAD_STRING = const(5)  # args: what (_W_*)
_E_KEEP_ALIVE = const(6)
_E_WILL_TOPIC = const(7)
_E_TOPIC = const(8)
_E_EMPTY_TOPIC = const(9)
_E_DUP_QOS0 = const(10)
_E_ALIAS_RANGE = const(11)
_E_ALIAS_TWICE = const(12)
_E_RC_HERE = const(13)
_E_NO_FILTERS = const(14)
_E_ONE_SID = const(15)
_E_FILTER = const(16)
_E_SUB_OPTIONS = const(17)
_E_NO_LOCAL_SHARED = const(18)
_E_AUTH_METHOD = const(19)  # (raised by _codec_rare.encode_auth)
_E_MAX_PACKET_SIZE = const(20)
# ProtocolError:
_E_VBI_LONG = const(21)
_E_VBI_NOT_MINIMAL = const(22)
_E_TYPE_0 = const(23)
_E_OVER_OUR_MAX = const(24)
_E_FLAGS_0010 = const(25)
_E_FLAGS_0 = const(26)
_E_QOS_3 = const(27)
_E_DUP_ON_QOS0 = const(28)
_E_WILDCARD = const(29)
_E_PID_0 = const(30)
_E_EMPTY_NO_ALIAS = const(31)
_E_RC_IN = const(32)  # args: reason code, packet type
_E_LEFT_OVER = const(33)
_E_CONNACK_FLAGS = const(34)
_E_PRESENT_FAILED = const(35)
_E_NO_CODES = const(36)
_E_NOT_FOR_CLIENT = const(37)

# What a checked string or binary field is (in error texts); binary from _W_WILL_PAYLOAD.
_W_CLIENT_ID = const(0)
_W_WILL_TOPIC = const(1)
_W_USERNAME = const(2)
_W_FILTER = const(3)
_W_WILL_PAYLOAD = const(4)
_W_PASSWORD = const(5)

# const() is folded at compile time on MicroPython: only CPython calls it (above). Not
# kept as a global, its slot takes the next name: 23 globals (a frozen module's too, with
# its __version__) fit a dict of 23; 24 took 29 slots.
del const


def _err(n, *a):
    """Error number ``n`` (codec's ``_E_*``, session's), formatted with ``a``, to raise."""
    from . import _errtext

    return _errtext.error(n, a)


def __getattr__(name):
    # codec.CONNECT, codec.PACKET_NAMES, codec.encode_publish, ...: from _codec_rare, then
    # kept here (a second look-up allocates nothing). Not dunders: an import probes
    # ``__path__`` (with _codec_rare half loaded).
    if name[0] == "_":
        raise AttributeError(name)
    if name == "encode_connect":  # (not kept here: a global would keep _connect loaded)
        from ._connect import encode_connect

        return encode_connect
    from . import _codec_rare

    value = globals()[name] = getattr(_codec_rare, name)
    return value


def reason_allowed(ptype, rc):
    """True if reason code ``rc`` may appear in a packet of type ``ptype``."""
    if 0 <= ptype < 16:
        for i in range(_RC[2 * ptype], _RC[2 * ptype + 1]):
            if _RC[i] == rc:
                return True
    return False


def sub_options(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    """The SUBSCRIBE options byte (MQTT 5.0, 3.8.3.1)."""
    return (qos | (4 if no_local else 0) | (8 if retain_as_published else 0)
            | (retain_handling << 4))


# ------------------------------------------------------------ encoding ----

def _header(buf, first, remaining, payload_len):
    """Check capacity, write the fixed header; returns the body offset.
    ``payload_len`` bytes of the packet are not meant for ``buf`` (0 but for a PUBLISH
    header: no default, which would cost a device 16 B of RAM)."""
    if remaining > _VBI_MAX:
        raise _err(_E_TOO_LARGE)
    total = 1 + _p.vbi_size(remaining) + remaining - payload_len
    if total > len(buf):
        raise _err(_E_NO_ROOM, total, len(buf))
    buf[0] = first
    return _p.write_vbi(buf, 1, remaining)


def _check_str(value, what):
    """``value`` (str or bytes-like) as bytes, at most 65535 of them: a valid MQTT UTF-8
    string for ``what`` (a ``_W_*``) below ``_W_WILL_PAYLOAD``, binary data from there."""
    b = _p.to_utf8(value)
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise _err(_E_NOT_BYTES, what)
    if len(b) > 0xFFFF or (what < _W_WILL_PAYLOAD and not _p.utf8_ok(b, 0, len(b))):
        raise _err(_E_BAD_STRING, what)
    return b


# The last bytes topic that passed topic_name_ok. bytes are immutable, so the same
# object again is the same valid name: a device publishing to one topic skips the
# byte-by-byte scan, a third of a PUBLISH encode. One reference, replaced whole, so
# concurrent callers (CPython threads) never see half an update.
_valid_topic = None


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


def encode_ack(buf, ptype, packet_id, reason_code=0, props=None):
    """PUBACK, PUBREC, PUBREL or PUBCOMP (3.4-3.7). Returns the length."""
    if not 0 < packet_id <= 0xFFFF:
        raise _err(_E_PACKET_ID)
    if not reason_allowed(ptype, reason_code):  # (also refuses a ptype not of an ack)
        raise _err(_E_RC_HERE, reason_code)
    first = 0x62 if ptype == _PUBREL else (ptype << 4)
    if not props:
        if reason_code == 0:
            # [MQTT-3.4.2-1] reason code and properties may be omitted on success
            pos = _header(buf, first, 2, 0)
            return _p.write_u16(buf, pos, packet_id)
        pos = _header(buf, first, 3, 0)
        pos = _p.write_u16(buf, pos, packet_id)
        buf[pos] = reason_code
        return pos + 1
    psize = _p.size(props, 1 << ptype)
    pos = _header(buf, first, 3 + _p.vbi_size(psize) + psize, 0)
    pos = _p.write_u16(buf, pos, packet_id)
    buf[pos] = reason_code
    return _p.write(buf, pos + 1, props, psize)


def encode_subscribe(buf, packet_id, subscriptions, props=None):
    """SUBSCRIBE (3.8); ``subscriptions`` is a list of ``(filter, options)``."""
    if not 0 < packet_id <= 0xFFFF:
        raise _err(_E_PACKET_ID)
    if not subscriptions:
        raise _err(_E_NO_FILTERS)
    psize = _p.size(props, 1 << _SUBSCRIBE)
    if props:
        # An int, or the one-element list that decoding gives back (to_dict).
        sid = props.get(_PROP_SUBSCRIPTION_IDENTIFIER)
        if isinstance(sid, (list, tuple)) and len(sid) != 1:
            raise _err(_E_ONE_SID)
    rem = 2 + _p.vbi_size(psize) + psize
    from .topic import filter_ok, share_prefix_len  # (here: two globals fewer; cold)

    encoded = []
    for filt, options in subscriptions:
        f = _check_str(filt, _W_FILTER)
        if not filter_ok(f, 0, len(f)):
            raise _err(_E_FILTER, filt)
        if (not isinstance(options, int) or options & 0xC0 or (options & 3) == 3
                or (options >> 4) & 3 == 3):
            raise _err(_E_SUB_OPTIONS, options)
        if options & 4 and share_prefix_len(f) > 0:
            raise _err(_E_NO_LOCAL_SHARED)
        encoded.append(f)
        rem += 2 + len(f) + 1
    pos = _header(buf, 0x82, rem, 0)
    pos = _p.write_u16(buf, pos, packet_id)
    pos = _p.write(buf, pos, props, psize)
    for i in range(len(encoded)):
        pos = _p.write_bin(buf, pos, encoded[i])
        buf[pos] = subscriptions[i][1]
        pos += 1
    return pos


def encode_disconnect(buf, reason_code=0, props=None, ptype=_DISCONNECT):
    """DISCONNECT (3.14), or with ``ptype`` AUTH (3.15: ``encode_auth`` checks its
    Authentication Method first). Returns the length."""
    if not reason_allowed(ptype, reason_code):
        raise _err(_E_RC_HERE, reason_code)
    first = ptype << 4
    if not props:
        if reason_code == 0:
            return _header(buf, first, 0, 0)
        # DISCONNECT only: a reason code without a Property Length (3.14.2.2.1)
        pos = _header(buf, first, 1, 0)
        buf[pos] = reason_code
        return pos + 1
    psize = _p.size(props, 1 << ptype)
    pos = _header(buf, first, 1 + _p.vbi_size(psize) + psize, 0)
    buf[pos] = reason_code
    return _p.write(buf, pos + 1, props, psize)


class PacketReader:
    """Frames packets out of a receive buffer allocated once.

    ``max_packet_size`` is the Maximum Packet Size we advertise (whole packet,
    fixed header included); the buffer is exactly that large.
    """

    def __init__(self, max_packet_size):
        if max_packet_size < 16:
            raise _err(_E_MAX_PACKET_SIZE)
        # Made at the first read, not here: on MicroPython that read follows the TLS
        # handshake (run inside the first write), whose transient peak is then not on
        # top of it (2 KiB less heap needed to connect, by default).
        self.buf = b""  # type: Any
        self._mv = None  # type: Any
        self.max_packet_size = max_packet_size
        self.start = 0  # first unread byte
        self.end = 0  # end of received bytes
        self.first = 0  # first byte of the packet last framed
        self.body_start = 0
        self.body_end = 0
        self.reader = _p.Reader()

    def free(self):
        """A writable view of the free space (the whole buffer when empty)."""
        if self.end == 0:
            if self._mv is None:  # (the first read: see __init__)
                self.buf = bytearray(self.max_packet_size)
                self._mv = memoryview(self.buf)
            return self._mv
        return self._mv[self.end:]

    def wrote(self, n):
        """Record that ``n`` bytes were written into ``free()``."""
        self.end += n

    def feed(self, data):
        """Copy ``data`` in (tests and servers); returns how many bytes fitted."""
        if self._mv is None:
            self.free()  # (makes the buffer)
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
        while p < end:
            byte = buf[p]
            p += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if p - s > 2 and byte == 0:
                    raise _err(_E_VBI_NOT_MINIMAL)
                first = buf[s]
                if first >> 4 == 0:
                    raise _err(_E_TYPE_0)
                total = p - s + value
                if total > self.max_packet_size:
                    # Refused from the header alone: the body is never buffered.
                    raise _err(_E_OVER_OUR_MAX, total, self.max_packet_size)
                if p + value > end:
                    break
                self.first = first
                self.body_start = p
                self.body_end = p + value
                self.start = p + value
                return first
            if p - s - 1 == 4:
                raise _err(_E_VBI_LONG)
            shift += 7
        # Incomplete: unread bytes to the front, room for the rest behind them.
        if s:
            n = end - s
            self._mv[0:n] = self._mv[s:end]
            self.start = 0
            self.end = n
        return -1


# ------------------------------------------------------------ decoding ----

class PublishView:
    """An incoming PUBLISH as offsets into the receive buffer (hot path), or, as
    ``AckView``, an incoming PUBACK/PUBREC/PUBREL/PUBCOMP (``type``, ``packet_id``,
    ``reason_code``). One class for both: a device keeps one view of each. Valid
    until the reader frames the next packet.

    Made with ``(type, reason_code, properties)``, it is a packet as an object instead
    (``codec.Packet``, the cold path): what ``decode_body`` gives, with the fields of its
    type (CONNACK: reason_code, session_present, properties; SUBACK/UNSUBACK: packet_id,
    reason_codes, properties; DISCONNECT/AUTH: reason_code, properties), ``properties``
    a dict, in place of the view's method. (One class for the three: each class costs a
    device about 130 B of RAM.) ``_server_codec`` has a packet class per type, with
    equality and repr, which a device has no use for."""

    def __init__(self, *packet):
        if packet:
            self.type, self.reason_code, self.properties = packet  # type: ignore[method-assign]
            return
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


def decode_publish_into(view, first, r):
    """Decode the PUBLISH body under reader ``r`` into ``view``, allocating nothing."""
    qos = (first >> 1) & 3
    if qos == 3:
        raise _err(_E_QOS_3)
    dup = (first & 0x08) != 0
    if dup and not qos:
        raise _err(_E_DUP_ON_QOS0)
    view.buf = r.buf
    view.qos = qos
    view.dup = dup
    view.retain = (first & 1) != 0
    ts = r.utf8()  # ill-formed UTF-8 or U+0000: Malformed Packet [MQTT-1.5.4-1] [MQTT-1.5.4-2]
    te = r.pos
    if _p.is_wildcard(r.buf, ts, te):
        raise _err(_E_WILDCARD)
    view.topic_start = ts
    view.topic_end = te
    if qos:
        pid = r.u16()
        if not pid:
            raise _err(_E_PID_0)
        view.packet_id = pid
    else:
        view.packet_id = 0
    alias = _p.check(r, 1 << _PUBLISH)
    if ts == te and not alias:
        raise _err(_E_EMPTY_NO_ALIAS)
    view.topic_alias = alias
    view.prop_start = r.prop_start
    view.prop_end = r.prop_end
    view.payload_start = r.pos
    view.payload_end = r.end
    return view


def decode_ack_into(view, first, r):
    """Decode a PUBACK/PUBREC/PUBREL/PUBCOMP body into ``view``."""
    t = first >> 4
    if first & 0x0F != (2 if t == _PUBREL else 0):  # [MQTT-2.1.3-1]
        raise _err(_E_FLAGS_0010 if t == _PUBREL else _E_FLAGS_0, t)
    view.type = t
    view.buf = r.buf
    pid = r.u16()
    if not pid:
        raise _err(_E_PID_0)
    view.packet_id = pid
    view.prop_start = view.prop_end = 0
    if r.pos == r.end:
        view.reason_code = 0  # [MQTT-3.4.2.1] omitted means Success
        return view
    rc = r.u8()
    if not reason_allowed(t, rc):
        raise _err(_E_RC_IN, rc, t)
    view.reason_code = rc
    if r.pos < r.end:
        _p.check(r, 1 << t)
        view.prop_start = r.prop_start
        view.prop_end = r.prop_end
    if r.pos != r.end:
        raise _err(_E_LEFT_OVER)
    return view


def decode_body(first, r):
    """Decode a packet a server sends on a cold path -- CONNACK, SUBACK, UNSUBACK,
    DISCONNECT, AUTH -- whose first byte is ``first`` and whose body is under reader
    ``r``; returns a packet (a ``PublishView`` made as a packet: see there). PUBLISH and
    the acks have their allocation-free decoders above; every packet type both ways:
    ``_server_codec.decode_body``."""
    t = first >> 4
    if first & 0x0F:
        # Wrong for all a client decodes here (a packet a server receives may have them:
        # its check says which).
        from ._codec_rare import check_flags

        check_flags(first)
    if t == _CONNACK:
        ack_flags = r.u8()
        if ack_flags & 0xFE:
            raise _err(_E_CONNACK_FLAGS)
        rc = r.u8()
        if not reason_allowed(_CONNACK, rc):
            raise _err(_E_RC_IN, rc, t)
        if rc and ack_flags:
            raise _err(_E_PRESENT_FAILED)
        _p.check(r, 1 << _CONNACK)
        p = PublishView(t, rc, _p.to_dict(r.buf, r.prop_start, r.prop_end))
        if r.pos != r.end:
            raise _err(_E_LEFT_OVER)
        p.session_present = bool(ack_flags)  # type: ignore[attr-defined]
        return p
    if t == _SUBACK or t == _UNSUBACK:
        pid = r.u16()
        if not pid:
            raise _err(_E_PID_0)
        _p.check(r, 1 << t)
        props = _p.to_dict(r.buf, r.prop_start, r.prop_end)
        codes = []
        while r.pos < r.end:
            rc = r.u8()
            if not reason_allowed(t, rc):
                raise _err(_E_RC_IN, rc, t)
            codes.append(rc)
        if not codes:
            raise _err(_E_NO_CODES, t)
        p = PublishView(t, 0, props)
        p.packet_id = pid  # type: ignore[attr-defined]
        p.reason_codes = codes  # type: ignore[attr-defined]
        return p
    if t == _DISCONNECT:
        # [MQTT-3.14.2.1] no reason code means 0x00; "If the Remaining Length is less
        # than 2, a value of 0 is used" for the Property Length (3.14.2.2.1). Here, not
        # in _codec_rare: a server's DISCONNECT is an everyday outage's.
        rc = 0
        props = {}
        if r.pos < r.end:
            rc = r.u8()
            if not reason_allowed(t, rc):
                raise _err(_E_RC_IN, rc, t)
            if r.pos < r.end:
                _p.check(r, 1 << t)
                props = _p.to_dict(r.buf, r.prop_start, r.prop_end)
            if r.pos != r.end:
                raise _err(_E_LEFT_OVER)
        return PublishView(t, rc, props)
    if t == _AUTH:
        from . import _codec_rare

        return _codec_rare.decode_reason_only(r, t)
    raise _err(_E_NOT_FOR_CLIENT, t)
