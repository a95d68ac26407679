"""MQTT 5 properties: identifiers, per-packet validity, a writer and a cursor.

Outgoing properties are given as a dict ``{PROP_X: value}``. User Property
takes a list of ``(key, value)`` pairs; Subscription Identifier takes an int
or a list of ints. Incoming properties are checked once by ``check`` (which
allocates nothing) and can be walked with a ``PropertyCursor`` or, on cold
paths, turned into such a dict by ``to_dict``.
"""

# ``isinstance`` and ``len`` as globals of this module: MicroPython looks a builtin up in
# the module's globals first, and a miss probes the dict to a free slot; this one held
# 58 names in 59 slots, so each miss probed most of it (a publish with two user
# properties makes some twenty such calls: 37 -> 29 us per QoS 0 publish on the unix
# port). It holds 22 in 23 now (frozen, with its __version__: see del const).
from builtins import isinstance, len  # noqa: UP029  (see above)

from ._compat import const, heap_collect

heap_collect()  # (before this module defines anything: see _compat's heap_collect)

_TYPE_CHECKING = const(0)  # (folded by MicroPython: mypy alone reads the block)
if _TYPE_CHECKING:  # pragma: no cover
    from typing import Any  # noqa: F401 (type comments)

# The property identifiers (``PROP_*``) are ``_properties_rare``'s, handed out by
# ``__getattr__`` below on first use (``properties.PROP_X`` and ``from .properties import
# PROP_X`` work as before): the modules a device imports fold their own const()s, and
# here each would cost a device a global and an interned name. Those the checks below
# need, folded:
_PROP_RESPONSE_TOPIC = const(0x08)
_PROP_SUBSCRIPTION_IDENTIFIER = const(0x0B)
_PROP_TOPIC_ALIAS = const(0x23)
_PROP_USER_PROPERTY = const(0x26)
_PROP_RECEIVE_MAXIMUM = const(0x21)
_PROP_MAXIMUM_PACKET_SIZE = const(0x27)

# Value types.
_T_BYTE = const(1)
_T_U16 = const(2)
_T_U32 = const(3)
_T_VBI = const(4)
_T_UTF8 = const(5)
_T_BINARY = const(6)
_T_PAIR = const(7)

# Where a property may appear: bit (1 << packet type); bit 0 stands for the
# Will Properties of CONNECT. Packet types: 1 CONNECT .. 15 AUTH.
_W_WILL = const(1 << 0)  # (public as W_WILL: _properties_rare, see __getattr__)
_CONNECT = const(1 << 1)
_CONNACK = const(1 << 2)
_PUBLISH = const(1 << 3)
_PUBACK = const(1 << 4)
_PUBREC = const(1 << 5)
_PUBREL = const(1 << 6)
_PUBCOMP = const(1 << 7)
_SUBSCRIBE = const(1 << 8)
_SUBACK = const(1 << 9)
_UNSUBSCRIBE = const(1 << 10)
_UNSUBACK = const(1 << 11)
_DISCONNECT = const(1 << 14)
_AUTH = const(1 << 15)
_ACKS = const(_PUBACK | _PUBREC | _PUBREL | _PUBCOMP)

# Indexed by identifier (0x00..0x2A): value type, 0 = no such property. (This table and
# _WHERE are const(): folded into their users, they are no globals of this module;
# _properties_rare repeats both for prop_type and allowed_in, test_codec_roundtrip
# checks they agree.)
_TYPES = const(
    b"\x00\x01\x03\x05\x00\x00\x00\x00\x05\x06\x00\x04\x00\x00\x00\x00"
    b"\x00\x03\x05\x02\x00\x05\x06\x01\x03\x01\x05\x00\x05\x00\x00\x05"
    b"\x00\x02\x02\x02\x01\x01\x07\x03\x01\x01\x01")
# Where each property may appear, indexed by identifier: two bytes (big-endian) of
# packet-kind bits per identifier. A bytes constant, not a tuple of ints: frozen into
# firmware, an int of 2**15 or more in a constant tuple is stored as a long int, and
# `& where` on it allocated for every User Property checked or written (AUTH is bit 15).
# Built from (bit 0 = Will Properties, bit n = packet type n):
#   0,
#   _PUBLISH | W_WILL,  # 0x01 Payload Format Indicator
#   _PUBLISH | W_WILL,  # 0x02 Message Expiry Interval
#   _PUBLISH | W_WILL,  # 0x03 Content Type
#   0, 0, 0, 0,
#   _PUBLISH | W_WILL,  # 0x08 Response Topic
#   _PUBLISH | W_WILL,  # 0x09 Correlation Data
#   0,
#   _PUBLISH | _SUBSCRIBE,  # 0x0B Subscription Identifier
#   0, 0, 0, 0, 0,
#   _CONNECT | _CONNACK | _DISCONNECT,  # 0x11 Session Expiry Interval
#   _CONNACK,  # 0x12 Assigned Client Identifier
#   _CONNACK,  # 0x13 Server Keep Alive
#   0,
#   _CONNECT | _CONNACK | _AUTH,  # 0x15 Authentication Method
#   _CONNECT | _CONNACK | _AUTH,  # 0x16 Authentication Data
#   _CONNECT,  # 0x17 Request Problem Information
#   W_WILL,  # 0x18 Will Delay Interval
#   _CONNECT,  # 0x19 Request Response Information
#   _CONNACK,  # 0x1A Response Information
#   0,
#   _CONNACK | _DISCONNECT,  # 0x1C Server Reference
#   0, 0,
#   _CONNACK | _ACKS | _SUBACK | _UNSUBACK | _DISCONNECT | _AUTH,  # 0x1F Reason String
#   0,
#   _CONNECT | _CONNACK,  # 0x21 Receive Maximum
#   _CONNECT | _CONNACK,  # 0x22 Topic Alias Maximum
#   _PUBLISH,  # 0x23 Topic Alias
#   _CONNACK,  # 0x24 Maximum QoS
#   _CONNACK,  # 0x25 Retain Available
#   W_WILL | _CONNECT | _CONNACK | _PUBLISH | _ACKS | _SUBSCRIBE | _SUBACK
#   | _UNSUBSCRIBE | _UNSUBACK | _DISCONNECT | _AUTH,  # 0x26 User Property
#   _CONNECT | _CONNACK,  # 0x27 Maximum Packet Size
#   _CONNACK,  # 0x28 Wildcard Subscription Available
#   _CONNACK,  # 0x29 Subscription Identifier Available
#   _CONNACK,  # 0x2A Shared Subscription Available
_WHERE = const(
    b"\x00\x00\x00\x09\x00\x09\x00\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\x09\x00\x09"
    b"\x00\x00\x01\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40\x06\x00\x04\x00\x04"
    b"\x00\x00\x80\x06\x80\x06\x00\x02\x00\x01\x00\x02\x00\x04\x00\x00\x40\x04\x00\x00"
    b"\x00\x00\xca\xf4\x00\x00\x00\x06\x00\x06\x00\x08\x00\x04\x00\x04\xcf\xff\x00\x06"
    b"\x00\x04\x00\x04\x00\x04")
_LAST_ID = const(0x2A)

# The errors raised here, as numbers into _properties_rare's texts (const() folds them:
# no string is in RAM until an error is raised). _error(n, arg, code): a ProtocolError
# with reason ``code``, or with no code a UsageError.
_E_SHORT = const(0)
_E_VBI_LONG = const(1)
_E_VBI_PADDED = const(2)
_E_SPAN = const(3)
_E_UTF8 = const(4)
_E_BLOCK = const(5)
_E_UNKNOWN_ID = const(6)
_E_NOT_HERE = const(7)
_E_TWICE = const(8)
_E_NOT_0_1 = const(9)
_E_ZERO = const(10)
_E_SUB_ID_0 = const(11)
_E_RESPONSE_TOPIC = const(12)
_E_PAST_BLOCK = const(13)
_E_SURROGATE = const(14)
_E_BAD_VALUE = const(15)
_E_UNKNOWN = const(16)
_VBI_MAX = const(268435455)


def _error(n, arg, code):
    from ._properties_rare import error  # cold: loaded at the first error

    return error(n, arg, code)


def __getattr__(name):
    # PROP_USER_PROPERTY, W_WILL, ... (see the identifiers above): from
    # _properties_rare, then kept here. Not dunders: an import probes ``__path__``.
    if name[0] == "_":
        raise AttributeError(name)
    from . import _properties_rare

    value = globals()[name] = getattr(_properties_rare, name)
    return value


# (``prop_type`` and ``allowed_in``, which no module a device imports calls, are
# _properties_rare's, handed out by ``__getattr__``: ``size`` and ``check`` read the tables
# inline.)


# ---------------------------------------------------------------- UTF-8 ---

def utf8_ok(buf, start, end):
    """True if ``buf[start:end]`` is well-formed UTF-8 with no U+0000.

    Rejects overlong forms, surrogates (U+D800..U+DFFF) and code points above
    U+10FFFF [MQTT-1.5.4-1], and U+0000 [MQTT-1.5.4-2]. Allocates nothing.
    """
    i = start
    while i < end:
        c = buf[i]
        if c < 0x80:
            if c == 0:
                return False
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            n = 1
            lo = 0x80
            hi = 0xBF
        elif 0xE0 <= c <= 0xEF:
            n = 2
            lo = 0xA0 if c == 0xE0 else 0x80
            hi = 0x9F if c == 0xED else 0xBF
        elif 0xF0 <= c <= 0xF4:
            n = 3
            lo = 0x90 if c == 0xF0 else 0x80
            hi = 0x8F if c == 0xF4 else 0xBF
        else:
            return False
        if i + n >= end:
            return False
        c = buf[i + 1]
        if c < lo or c > hi:
            return False
        j = i + 2
        i += n + 1
        while j < i:
            c = buf[j]
            if c < 0x80 or c > 0xBF:
                return False
            j += 1
    return True


# --------------------------------------------------------------- writing ---

def to_utf8(s):
    """A str as UTF-8 bytes; anything else is returned as it is. UsageError
    for a str that has no UTF-8 form (CPython: a lone surrogate)."""
    if isinstance(s, str):
        try:
            return s.encode()
        except UnicodeError:
            raise _error(_E_SURROGATE, None, 0)
    return s


def vbi_size(value):
    """Bytes needed for ``value`` as a Variable Byte Integer."""
    if value < 128:
        return 1
    if value < 16384:
        return 2
    if value < 2097152:
        return 3
    return 4


# The last short str property strings encoded, as (str, its valid UTF-8) pairs: a device
# sending the same user properties with every publish (one PublishOptions, or a dict kept
# by the caller) encodes each string once, not twice per publish. Found by identity (str is
# immutable); one pair per slot, replaced whole, so concurrent CPython threads never see a
# str paired with another's bytes.
_CACHE_SLOTS = const(8)
_CACHE_MAX = const(64)
# The pairs, then the next slot to replace: made at the first str encoded (none at import).
_cache = None  # type: Any
# const() is folded at compile time on MicroPython: only CPython calls it (above). Not
# kept as a global: 22 globals, a frozen module's with its __version__, fit a dict of 23
# (24 took 29 slots).
del const


def _str_bytes(s):
    """The UTF-8 bytes of a valid MQTT string given as str or bytes-like, or None."""
    global _cache
    if isinstance(s, str):
        c = _cache
        if c is None:
            c = _cache = [None] * _CACHE_SLOTS + [0]
        for i in range(_CACHE_SLOTS):
            e = c[i]
            if e is not None and e[0] is s:
                return e[1]
        try:
            b = s.encode()
        except UnicodeError:  # CPython: a lone surrogate
            return None
        if len(b) > 0xFFFF or not utf8_ok(b, 0, len(b)):
            return None
        if len(b) <= _CACHE_MAX:
            i = c[_CACHE_SLOTS]
            c[i] = (s, b)
            c[_CACHE_SLOTS] = (i + 1) % _CACHE_SLOTS
        return b
    if (isinstance(s, bytes) or isinstance(s, bytearray) or isinstance(s, memoryview)) \
            and len(s) <= 0xFFFF and utf8_ok(s, 0, len(s)):
        return s
    return None


def is_wildcard(buf, start=0, end=-1):
    """True if ``buf[start:end]`` contains '+' or '#'. Allocates nothing. (topic's,
    kept here because topic.py imports this module: the Response Topic's check too.)"""
    if end < 0:
        end = len(buf)
    i = start
    while i < end:
        c = buf[i]
        if c == 0x2B or c == 0x23:  # '+' '#'
            return True
        i += 1
    return False


def size(props, where):
    """Byte length of the encoded property block *content* (without its length
    prefix). Validates every property for packet kind ``where``, each value by the rules
    ``check`` applies on receipt (never send what a strict peer, or our own decoder, must
    refuse); raises UsageError on anything the spec does not allow. No generator, no
    list: plain loops over the dict and the repeated values allocate nothing on
    MicroPython."""
    if not props:
        return 0
    total = 0
    for pid in props:
        value = props[pid]
        ptype = _TYPES[pid] if isinstance(pid, int) and 0 <= pid <= _LAST_ID else 0
        if not ptype:
            raise _error(_E_UNKNOWN, (pid,), 0)
        if not (_WHERE[2 * pid] << 8 | _WHERE[2 * pid + 1]) & where:
            raise _error(_E_NOT_HERE, pid, 0)
        many = (pid == _PROP_USER_PROPERTY or pid == _PROP_SUBSCRIPTION_IDENTIFIER) and \
            (isinstance(value, list) or isinstance(value, tuple))  # (the two that repeat)
        for k in range(len(value) if many else 1):
            v = value[k] if many else value
            n = -1
            if ptype <= _T_U32:
                # One, two or four bytes: the value fits in 1 bit (every one-byte property
                # is 0 or 1, Maximum QoS too: absent means 2), 16 or 32 bits (shifts, not
                # a maximum: 0xFFFFFFFF is a long int). Receive Maximum, Topic Alias and
                # Maximum Packet Size are never 0. (No constant tuples here and in check:
                # loaded from a .mpy, each is an object in RAM.)
                if isinstance(v, int) and v >= 0 and not v >> (
                        1 if ptype == _T_BYTE else 16 * (ptype - 1)) and (
                        v or not (pid == _PROP_RECEIVE_MAXIMUM or pid == _PROP_TOPIC_ALIAS
                                  or pid == _PROP_MAXIMUM_PACKET_SIZE)):
                    n = 1 << (ptype - 1)
            elif ptype == _T_VBI:
                if isinstance(v, int) and 1 <= v <= _VBI_MAX:
                    n = vbi_size(v)
            elif ptype == _T_PAIR:
                if (isinstance(v, tuple) or isinstance(v, list)) and len(v) == 2:
                    key = _str_bytes(v[0])
                    b = _str_bytes(v[1])
                    if key is not None and b is not None:
                        n = len(key) + len(b) + 4
            elif ptype == _T_UTF8:
                b = _str_bytes(v)
                n = -1 if b is None else len(b) + 2
                if n > 0 and pid == _PROP_RESPONSE_TOPIC and (
                        not b or is_wildcard(b, 0, len(b))):
                    n = -1  # [MQTT-3.3.2-14] no wildcards; [MQTT-4.7.3-1] one character
            elif (isinstance(v, bytes) or isinstance(v, bytearray) or isinstance(v, memoryview)) \
                    and len(v) <= 0xFFFF:
                n = 2 + len(v)
            if n < 0:
                raise _error(_E_BAD_VALUE, (pid, v), 0)
            total += 1 + n  # (every identifier is below 128: one byte)
    return total


def write(buf, pos, props, size):
    """Write the length prefix and the properties; returns the new position.
    ``size`` comes from ``size()`` (which also validated them); it may count more than
    the caller writes behind them (PUBLISH: its Topic Alias)."""
    pos = write_vbi(buf, pos, size)
    if not props:
        return pos
    for pid in props:
        value = props[pid]
        ptype = _TYPES[pid]
        many = (pid == _PROP_USER_PROPERTY or pid == _PROP_SUBSCRIPTION_IDENTIFIER) and \
            (isinstance(value, list) or isinstance(value, tuple))
        for k in range(len(value) if many else 1):
            v = value[k] if many else value
            buf[pos] = pid
            pos += 1
            if ptype == _T_BYTE:
                buf[pos] = v
                pos += 1
            elif ptype == _T_U16:
                pos = write_u16(buf, pos, v)
            elif ptype == _T_U32:
                buf[pos] = (v >> 24) & 0xFF
                buf[pos + 1] = (v >> 16) & 0xFF
                buf[pos + 2] = (v >> 8) & 0xFF
                buf[pos + 3] = v & 0xFF
                pos += 4
            elif ptype == _T_VBI:
                pos = write_vbi(buf, pos, v)
            elif ptype == _T_PAIR:
                pos = write_bin(buf, pos, _str_bytes(v[0]))
                pos = write_bin(buf, pos, _str_bytes(v[1]))
            elif ptype == _T_UTF8:
                pos = write_bin(buf, pos, _str_bytes(v))
            else:
                pos = write_bin(buf, pos, v)
    return pos


def write_u16(buf, pos, value):
    buf[pos] = value >> 8
    buf[pos + 1] = value & 0xFF
    return pos + 2


def write_vbi(buf, pos, value):
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            buf[pos] = byte | 0x80
            pos += 1
        else:
            buf[pos] = byte
            return pos + 1


def write_bin(buf, pos, data):
    """Two-byte length, then the bytes (bytes-like ``data``)."""
    n = len(data)
    buf[pos] = n >> 8
    buf[pos + 1] = n & 0xFF
    pos += 2
    buf[pos:pos + n] = data
    return pos + n


# --------------------------------------------------------------- reading ---

class Reader:
    """A bounds-checked cursor over a receive buffer. Every read past ``end``
    raises ProtocolError 0x81 Malformed Packet; nothing allocates.

    Also the walker of an already checked property block (as ``PropertyCursor``):
    ``reset`` it to the block, then each ``next()`` returns an identifier, 0 at the end,
    and leaves in ``value`` an int value, or in ``start``/``stop`` the bounds of a string
    or binary value in ``buf`` (and in ``start2``/``stop2`` the value of a User Property
    pair). Allocates nothing either."""

    def __init__(self):
        self.buf = b""
        self.pos = 0
        self.end = 0
        self.prop_start = 0
        self.prop_end = 0
        self.value = self.start = self.stop = self.start2 = self.stop2 = 0

    def reset(self, buf, start, end):
        self.buf = buf
        self.pos = start
        self.end = end
        return self

    def u8(self):
        if self.pos >= self.end:
            raise _error(_E_SHORT, None, 0x81)
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def u16(self):
        p = self.pos
        if p + 2 > self.end:
            raise _error(_E_SHORT, None, 0x81)
        self.pos = p + 2
        return (self.buf[p] << 8) | self.buf[p + 1]

    def vbi(self):
        """A Variable Byte Integer: at most 4 bytes, minimally encoded [MQTT-1.5.5-1]."""
        value = 0
        shift = 0
        count = 0
        while True:
            if self.pos >= self.end:
                raise _error(_E_SHORT, None, 0x81)
            byte = self.buf[self.pos]
            self.pos += 1
            count += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            if count == 4:
                raise _error(_E_VBI_LONG, None, 0x81)
            shift += 7
        if count > 1 and byte == 0:
            raise _error(_E_VBI_PADDED, None, 0x81)
        return value

    def span(self):
        """A two-byte length and that many bytes; returns the start offset,
        leaving ``pos`` at the end of the span."""
        n = self.u16()
        start = self.pos
        if start + n > self.end:
            raise _error(_E_SPAN, None, 0x81)
        self.pos = start + n
        return start

    def utf8(self):
        """A UTF-8 string span, validated [MQTT-1.5.4-1] [MQTT-1.5.4-2]; returns its start."""
        start = self.span()
        if not utf8_ok(self.buf, start, self.pos):
            raise _error(_E_UTF8, None, 0x81)
        return start

    # (A string or binary value as a new object, and a length check alone, only the
    # server side needs: _server_codec's read_string / read_binary: a def fewer each.)

    def next(self):
        """The next property of the block (see the class): its identifier, 0 at the end."""
        if self.pos >= self.end:
            return 0
        pid = self.vbi()
        ptype = _TYPES[pid]
        if ptype == _T_BYTE:
            self.value = self.u8()
        elif ptype == _T_U16:
            self.value = self.u16()
        elif ptype == _T_U32:
            self.value = self.u16() << 16 | self.u16()  # (no u32(): a def less)
        elif ptype == _T_VBI:
            self.value = self.vbi()
        else:
            self.start = self.span()
            self.stop = self.pos
            if ptype == _T_PAIR:
                self.start2 = self.span()
                self.stop2 = self.pos
        return pid


def check(r, where):
    """Validate the property block at ``r.pos`` for packet kind ``where`` and
    move past it. Returns the Topic Alias found (0 if none), the only value a
    hot path needs; the block's bounds are left in ``r.prop_start`` and
    ``r.prop_end``. Allocates nothing."""
    length = r.vbi()
    start = r.pos
    end = start + length
    if end > r.end:
        raise _error(_E_BLOCK, None, 0x81)
    seen_lo = 0  # ids 0..29
    seen_hi = 0  # ids 30..42 (kept apart so both stay small ints on a device)
    alias = 0
    r.prop_start = start
    while r.pos < end:
        pid = r.vbi()
        ptype = _TYPES[pid] if pid <= _LAST_ID else 0
        if not ptype:
            raise _error(_E_UNKNOWN_ID, pid, 0x81)
        if not (_WHERE[2 * pid] << 8 | _WHERE[2 * pid + 1]) & where:
            # MQTT 5.0 2.2.2.2: an Identifier not valid for its packet is Malformed.
            raise _error(_E_NOT_HERE, pid, 0x81)
        if pid != _PROP_USER_PROPERTY and not (pid == _PROP_SUBSCRIPTION_IDENTIFIER
                                              and where == _PUBLISH):
            # Only User Property (and Subscription Identifier in PUBLISH) may repeat.
            if pid < 30:
                bit = 1 << pid
                if seen_lo & bit:
                    raise _error(_E_TWICE, pid, 0x82)
                seen_lo |= bit
            else:
                bit = 1 << (pid - 30)
                if seen_hi & bit:
                    raise _error(_E_TWICE, pid, 0x82)
                seen_hi |= bit
        if ptype <= _T_U32:
            if ptype == _T_BYTE:
                v = r.u8()
                if v > 1:
                    # Every one-byte property (Maximum QoS included) is 0 or 1.
                    raise _error(_E_NOT_0_1, pid, 0x82)
            elif ptype == _T_U16:
                v = r.u16()
                if pid == _PROP_TOPIC_ALIAS:
                    alias = v
            else:
                v = r.u16() << 16 | r.u16()  # (four bytes, big-endian)
            if v == 0 and (pid == _PROP_RECEIVE_MAXIMUM or pid == _PROP_TOPIC_ALIAS
                           or pid == _PROP_MAXIMUM_PACKET_SIZE):
                # Receive Maximum 0 (spec 3.1.2.11.3, 3.2.2.3.3), Topic Alias 0
                # [MQTT-3.3.2-8], Maximum Packet Size 0 (3.1.2.11.4)
                raise _error(_E_ZERO, pid, 0x82)
        elif ptype == _T_VBI:
            if r.vbi() == 0:
                # [MQTT-3.8.2.1.2] Subscription Identifier 0 is a Protocol Error
                raise _error(_E_SUB_ID_0, None, 0x82)
        elif ptype == _T_BINARY:
            r.span()
        else:
            s = r.utf8()
            if ptype == _T_PAIR:
                r.utf8()
            elif pid == _PROP_RESPONSE_TOPIC and (s == r.pos or is_wildcard(r.buf, s, r.pos)):
                # [MQTT-3.3.2-14] no wildcards; [MQTT-4.7.3-1] at least one character
                raise _error(_E_RESPONSE_TOPIC, None, 0x82)
        if r.pos > end:
            raise _error(_E_PAST_BLOCK, None, 0x81)
    r.prop_end = end
    return alias


# (The walker of a checked property block is a Reader: one class less, each costing a
# device its type object, its dict and its defs.)
PropertyCursor = Reader


def to_dict(buf, start, end):
    """The checked property block ``buf[start:end]`` as a dict (cold paths).
    User Property becomes a list of (key, value) str pairs; Subscription
    Identifier a list of ints."""
    out = {}  # type: dict
    c = Reader().reset(buf, start, end)
    while True:
        pid = c.next()
        if not pid:
            return out
        ptype = _TYPES[pid]
        v = c.value  # type: object
        if ptype == _T_PAIR:
            v = (str(buf[c.start:c.stop], "utf-8"), str(buf[c.start2:c.stop2], "utf-8"))
        elif ptype == _T_UTF8:
            v = str(buf[c.start:c.stop], "utf-8")
        elif ptype == _T_BINARY:
            v = bytes(buf[c.start:c.stop])
        if ptype == _T_PAIR or pid == _PROP_SUBSCRIPTION_IDENTIFIER:
            out.setdefault(pid, []).append(v)  # the ones that may repeat: a list
        else:
            out[pid] = v
