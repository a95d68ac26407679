"""Strictness: every malformed or illegal packet is refused with the reason code the spec
calls for, and nothing but our ProtocolError / UsageError (both MqttError) escapes.

The bad packets are written by hand (bytes literals, or the tiny independent builder
below), never produced by our encoder. Each test names the normative statement it enforces.

Portable: runs under pytest and under real MicroPython (tools/mp_run.mjs).
"""

from _check import raises
from _codec_util import eq, fail, protocol_error, usage_error

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5._server_codec import Connack, Publish, Subscribe
from mqtt_v5.errors import MqttError, ProtocolError, UsageError

MALFORMED = 0x81
PROTOCOL = 0x82
UNSUPPORTED_VERSION = 0x84
TOPIC_NAME_INVALID = 0x90
TOO_LARGE = 0x95


# ----------------------------------------------------------- a tiny independent builder -

def vbi(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def s16(data):
    if isinstance(data, str):
        data = data.encode()
    return bytes((len(data) >> 8, len(data) & 0xFF)) + data


def packet(first, body):
    return bytes((first,)) + vbi(len(body)) + body


# Value types from 2.2.2.2, written out again here.
BYTE_PROPS = (0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A)
U16_PROPS = (0x13, 0x21, 0x22, 0x23)
U32_PROPS = (0x02, 0x11, 0x18, 0x27)
UTF8_PROPS = (0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F)
BIN_PROPS = (0x09, 0x16)


def prop(pid, value=None):
    """One property, encoded by hand, with a valid sample value unless ``value`` is given."""
    head = bytes((pid,))
    if value is not None:
        return head + value
    if pid in BYTE_PROPS:
        return head + b"\x01"
    if pid in U16_PROPS:
        return head + b"\x00\x05"
    if pid in U32_PROPS:
        return head + b"\x00\x00\x00\x05"
    if pid == 0x0B:
        return head + b"\x05"
    if pid in UTF8_PROPS:
        return head + s16("x")
    if pid in BIN_PROPS:
        return head + s16(b"x")
    if pid == 0x26:
        return head + s16("k") + s16("v")
    fail("unknown property 0x%02X" % pid)


ALL_PROPS = BYTE_PROPS + U16_PROPS + U32_PROPS + (0x0B,) + UTF8_PROPS + BIN_PROPS + (0x26,)

WILL = 0
KINDS = (WILL, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15)


def with_props(kind, props):
    """A packet of ``kind`` (packet type, or WILL for the Will Properties) whose property
    block content is ``props``; every other field is valid."""
    block = vbi(len(props)) + props
    if kind == WILL:
        return packet(0x10, b"\x00\x04MQTT\x05\x06\x00\x00\x00" + s16("c") + block + s16("w")
                      + s16(b""))
    if kind == 1:
        return packet(0x10, b"\x00\x04MQTT\x05\x02\x00\x00" + block + s16("c"))
    if kind == 2:
        return packet(0x20, b"\x00\x00" + block)
    if kind == 3:
        return packet(0x32, s16("t") + b"\x00\x01" + block + b"pl")
    if kind in (4, 5, 7):
        return packet(kind << 4, b"\x00\x01\x00" + block)
    if kind == 6:
        return packet(0x62, b"\x00\x01\x00" + block)
    if kind == 8:
        return packet(0x82, b"\x00\x01" + block + s16("a") + b"\x00")
    if kind in (9, 11):
        return packet(kind << 4, b"\x00\x01" + block + b"\x00")
    if kind == 10:
        return packet(0xA2, b"\x00\x01" + block + s16("a"))
    if kind == 14:
        return packet(0xE0, b"\x00" + block)
    if kind == 15:
        if props[:1] != b"\x15":  # an AUTH names its Authentication Method (3.15.2.2.2)
            props = prop(0x15) + props
            block = vbi(len(props)) + props
        return packet(0xF0, b"\x18" + block)
    fail("kind %r" % kind)


# Where each property may appear (2.2.2.2), WILL = the Will Properties.
ALLOWED = {
    0x01: (3, WILL), 0x02: (3, WILL), 0x03: (3, WILL), 0x08: (3, WILL), 0x09: (3, WILL),
    0x0B: (3, 8), 0x11: (1, 2, 14), 0x12: (2,), 0x13: (2,), 0x15: (1, 2, 15),
    0x16: (1, 2, 15), 0x17: (1,), 0x18: (WILL,), 0x19: (1,), 0x1A: (2,), 0x1C: (2, 14),
    0x1F: (2, 4, 5, 6, 7, 9, 11, 14, 15), 0x21: (1, 2), 0x22: (1, 2), 0x23: (3,), 0x24: (2,),
    0x25: (2,), 0x26: KINDS, 0x27: (1, 2), 0x28: (2,), 0x29: (2,), 0x2A: (2,),
}


def decodes(data):
    try:
        return codec.decode(data)
    except MqttError as e:
        fail("%r should decode, got %r" % (data, e))


# ----------------------------------------------------------- Variable Byte Integers -----

def test_remaining_length_longer_than_four_bytes_1_5_5():
    # [MQTT-1.5.5-1] at most 4 bytes; the fifth continuation byte is refused at once,
    # from the header alone, whatever follows.
    protocol_error(MALFORMED, codec.decode, b"\x30\xff\xff\xff\xff\x01" + b"\x00" * 16)
    rd = codec.PacketReader(64)
    rd.feed(b"\x30\xff\xff\xff\x80")
    protocol_error(MALFORMED, rd.next)
    rd = codec.PacketReader(64)
    rd.feed(b"\xc0\x80\x80\x80\x80")
    protocol_error(MALFORMED, rd.next)


def test_remaining_length_not_minimal_1_5_5():
    # "the minimum number of bytes" [MQTT-1.5.5-1]: 0x80 0x00 encodes 0 in two bytes
    for data in (b"\xc0\x80\x00", b"\xe0\x80\x80\x00", b"\xd0\x80\x80\x80\x00",
                 b"\x40\x82\x00\x00\x01", b"\x30\x83\x80\x00\x00\x01t"):
        protocol_error(MALFORMED, codec.decode, data)
        rd = codec.PacketReader(64)
        rd.feed(data)
        protocol_error(MALFORMED, rd.next)


def test_vbi_in_properties_too_long_or_not_minimal():
    # property length not minimal
    protocol_error(MALFORMED, codec.decode, b"\x20\x04\x00\x00\x80\x00")
    # property identifier not minimal: 0x9F 0x00 is Reason String (0x1F) in two bytes
    protocol_error(MALFORMED, codec.decode, with_props(2, b"\x9f\x00" + s16("x")))
    # Subscription Identifier not minimal, and five bytes long
    protocol_error(MALFORMED, codec.decode, with_props(3, b"\x0b\x81\x00"))
    protocol_error(MALFORMED, codec.decode, with_props(3, b"\x0b\xff\xff\xff\xff\x01"))
    protocol_error(MALFORMED, codec.decode, with_props(8, b"\x0b\x80\x80\x00"))
    # the largest legal value is fine
    decodes(with_props(3, b"\x0b\xff\xff\xff\x7f"))


def test_reader_vbi_directly():
    for bad in (b"\x80\x00", b"\xff\x80\x00", b"\x80\x80\x80\x80\x01", b"\x80", b""):
        r = P.Reader().reset(bad, 0, len(bad))
        raises(ProtocolError, r.vbi)


# ----------------------------------------------------------- fixed header ---------------

def test_reserved_packet_type_0():
    protocol_error(MALFORMED, codec.decode, b"\x00\x00")
    protocol_error(MALFORMED, codec.decode, b"\x0f\x02\x00\x01")


def test_reserved_flag_bits_2_1_3_1():
    # [MQTT-2.1.3-1] flags not listed in table 2-2 are reserved and MUST be as listed;
    # [MQTT-2.1.3-1] invalid flags = Malformed Packet. Every wrong nibble, every type.
    goods = {
        1: b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x00\x00\x00\x00",
        2: b"\x20\x03\x00\x00\x00",
        4: b"\x40\x02\x00\x01",
        5: b"\x50\x02\x00\x01",
        6: b"\x62\x02\x00\x01",
        7: b"\x70\x02\x00\x01",
        8: b"\x82\x07\x00\x01\x00\x00\x01a\x00",
        9: b"\x90\x04\x00\x01\x00\x00",
        10: b"\xa2\x06\x00\x01\x00\x00\x01a",
        11: b"\xb0\x04\x00\x01\x00\x00",
        12: b"\xc0\x00",
        13: b"\xd0\x00",
        14: b"\xe0\x00",
        15: b"\xf0\x00",
    }
    for t in goods:
        good = goods[t]
        decodes(good)
        for flags in range(16):
            data = bytes((t << 4 | flags,)) + good[1:]
            if data == good:
                continue
            e = protocol_error(MALFORMED, codec.decode, data)
            if "MQTT-2.1.3-1" not in str(e):
                fail("type %d flags %d: %s" % (t, flags, e))


def test_publish_qos_3_3_3_1_4():
    # [MQTT-3.3.1-4] a PUBLISH MUST NOT have both QoS bits set
    for first in (0x36, 0x37, 0x3E, 0x3F):
        protocol_error(MALFORMED, codec.decode, bytes((first,)) + b"\x06\x00\x01t\x00\x01\x00")


def test_publish_dup_on_qos0_3_3_1_2():
    # [MQTT-3.3.1-2] DUP MUST be 0 for QoS 0
    protocol_error(MALFORMED, codec.decode, b"\x38\x04\x00\x01t\x00")


def test_publish_hot_path_refuses_the_same():
    rd = codec.PacketReader(64)
    rd.feed(b"\x36\x06\x00\x01t\x00\x01\x00")
    first = rd.next()
    r = rd.reader.reset(rd.buf, rd.body_start, rd.body_end)
    protocol_error(MALFORMED, codec.decode_publish_into, codec.PublishView(), first, r)


# ----------------------------------------------------------- UTF-8 strings --------------

BAD_UTF8 = (
    b"\xc0\x80",  # overlong U+0000
    b"\xc1\xbf",  # overlong U+007F
    b"\xe0\x80\xaf",  # overlong '/'
    b"\xe0\x9f\xbf",  # overlong U+07FF
    b"\xf0\x80\x80\xaf",  # overlong '/'
    b"\xf0\x8f\xbf\xbf",  # overlong U+FFFF
    b"\xed\xa0\x80",  # U+D800, a surrogate [MQTT-1.5.4-1]
    b"\xed\xbf\xbf",  # U+DFFF
    b"\xf4\x90\x80\x80",  # U+110000, above the Unicode range
    b"\xf5\x80\x80\x80",
    b"\xff",
    b"\xfe",
    b"\x80",  # lone continuation byte
    b"\xe2\x82",  # truncated sequence
    b"\xc3",  # truncated at the end
    b"\xc3\x28",  # bad continuation
    b"a\x00b",  # U+0000 [MQTT-1.5.4-2]
    b"\x00",
)
GOOD_UTF8 = (b"", b"abc", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xef\xbf\xbf",
             b"\xf4\x8f\xbf\xbf", b"\xed\x9f\xbf", b"\xee\x80\x80", b"\x7f", b"\x01")


def test_utf8_validator():
    for bad in BAD_UTF8:
        if P.utf8_ok(bad, 0, len(bad)):
            fail("accepted %r" % bad)
    for good in GOOD_UTF8:
        if not P.utf8_ok(good, 0, len(good)):
            fail("refused %r" % good)
    # bounds are respected: a bad byte outside [start, end) is not looked at
    eq(P.utf8_ok(b"\xffabc\xff", 1, 4), True)


def test_malformed_utf8_is_a_malformed_packet_everywhere_1_5_4_1():
    # [MQTT-1.5.4-1] ill-formed UTF-8, [MQTT-1.5.4-2] U+0000: Malformed Packet, in every
    # UTF-8 field of every packet.
    places = (
        lambda s: packet(0x10, b"\x00\x04MQTT\x05\x02\x00\x00\x00" + s16(s)),  # client id
        lambda s: packet(0x10, b"\x00\x04MQTT\x05\x82\x00\x00\x00\x00\x00" + s16(s)),  # user
        lambda s: packet(0x30, s16(s) + b"\x00"),  # topic name
        lambda s: packet(0x82, b"\x00\x01\x00" + s16(s + b"/a") + b"\x00"),  # filter
        lambda s: packet(0xA2, b"\x00\x01\x00" + s16(s + b"/a")),  # unsubscribe filter
        lambda s: with_props(2, b"\x1f" + s16(s)),  # reason string
        lambda s: with_props(3, b"\x03" + s16(s)),  # content type
        lambda s: with_props(3, b"\x26" + s16(s) + s16("v")),  # user property key
        lambda s: with_props(14, b"\x26" + s16("k") + s16(s)),  # user property value
        lambda s: with_props(WILL, b"\x08" + s16(s)),  # will response topic
        lambda s: packet(0x10, b"\x00\x04MQTT\x05\x06\x00\x00\x00" + s16("c") + b"\x00"
                         + s16(s + b"x") + s16(b"")),  # will topic
    )
    for build in places:
        decodes(build(b"ok"))
        for bad in BAD_UTF8:
            protocol_error(MALFORMED, codec.decode, build(bad))


def test_topic_name_with_wildcards_3_3_2_2():
    # [MQTT-3.3.2-2] no wildcard characters in a Topic Name
    for topic in (b"a/+", b"#", b"a/#", b"+/b", b"a+b"):
        protocol_error(TOPIC_NAME_INVALID, codec.decode, packet(0x30, s16(topic) + b"\x00"))


def test_encoder_refuses_bad_strings():
    buf = bytearray(256)
    for bad in BAD_UTF8:
        usage_error(codec.encode_publish, buf, b"t/" + bad, b"")
        usage_error(codec.encode_connect, buf, bad)
        usage_error(codec.encode_subscribe, buf, 1, [(b"a/" + bad, 0)])
        usage_error(codec.encode_disconnect, buf, 0, {P.PROP_REASON_STRING: bad})
        usage_error(codec.encode_disconnect, buf, 0, {P.PROP_USER_PROPERTY: [("k", bad)]})
    usage_error(codec.encode_publish, buf, "a/+", b"")
    usage_error(codec.encode_publish, buf, "a\u0000", b"")
    big = bytearray(70000)
    usage_error(codec.encode_connect, big, "x" * 65536)


def test_encoder_refuses_a_str_with_a_lone_surrogate():
    # CPython's str.encode() raises UnicodeEncodeError for it: that must not escape.
    buf = bytearray(64)
    bad = "a/" + chr(0xD800)
    usage_error(codec.encode_publish, buf, bad, b"")
    usage_error(codec.encode_connect, buf, bad)
    usage_error(codec.encode_subscribe, buf, 1, [(bad, 0)])
    usage_error(codec.encode_disconnect, buf, 0, {P.PROP_REASON_STRING: bad})
    usage_error(codec.encode_disconnect, buf, 0, {P.PROP_USER_PROPERTY: [(bad, "v")]})


# ----------------------------------------------------------- inconsistent lengths -------

def test_remaining_length_longer_than_the_contents():
    # Fixed-layout packets with a byte too many: Malformed Packet. (PUBLISH payloads and
    # SUBACK/UNSUBACK reason code lists take whatever is left, by design.)
    for data in (
        b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x00\x00\x00\x00\x00",  # CONNECT
        b"\x20\x04\x00\x00\x00\x00",  # CONNACK
        b"\x40\x05\x00\x01\x00\x00\x00",  # PUBACK after the property block
        b"\x62\x05\x00\x01\x00\x00\x00",  # PUBREL
        b"\x82\x08\x00\x01\x00\x00\x01a\x00\x00",  # SUBSCRIBE: a stray byte after options
        b"\xa2\x07\x00\x01\x00\x00\x01a\x00",  # UNSUBSCRIBE: a stray byte
        b"\xc0\x01\x00",  # PINGREQ
        b"\xd0\x01\x00",  # PINGRESP
        b"\xe0\x03\x00\x00\x00",  # DISCONNECT
        b"\xf0\x03\x00\x00\x00",  # AUTH
    ):
        protocol_error(MALFORMED, codec.decode, data)


def test_remaining_length_shorter_than_the_contents():
    # Every packet cut short, with the Remaining Length telling the truth about the cut:
    # a field runs past the end of the packet.
    for data in (
        b"\x10\x0c\x00\x04MQTT\x05\x02\x00\x00\x00\x00",  # CONNECT without client id length
        b"\x10\x04\x00\x04MQ",  # CONNECT: protocol name cut
        b"\x20\x01\x00",  # CONNACK: no reason code
        b"\x20\x02\x00\x00",  # CONNACK: no property length (a v3.1.1 CONNACK)
        b"\x30\x01\x00",  # PUBLISH: topic length cut
        b"\x30\x03\x00\x02t",  # PUBLISH: topic runs past the end
        b"\x30\x03\x00\x01t",  # PUBLISH: no property length
        b"\x32\x04\x00\x01t\x00",  # PUBLISH QoS 1: packet id cut
        b"\x32\x05\x00\x01t\x00\x01",  # PUBLISH QoS 1: no property length
        b"\x40\x01\x00",  # PUBACK: packet id cut
        b"\x40\x00",
        b"\x82\x02\x00\x01",  # SUBSCRIBE: no property length
        b"\x82\x06\x00\x01\x00\x00\x01a",  # SUBSCRIBE: options missing
        b"\x82\x05\x00\x01\x00\x00\x02",  # SUBSCRIBE: filter length cut
        b"\x90\x02\x00\x01",  # SUBACK: no property length
        b"\xa2\x05\x00\x01\x00\x00\x02",  # UNSUBSCRIBE: filter runs past
        b"\xb0\x02\x00\x01",  # UNSUBACK: no property length
        b"\xe0\x02\x00\x05",  # DISCONNECT: property block runs past
        b"\xf0\x02\x18\x01",  # AUTH: property block runs past
    ):
        protocol_error(MALFORMED, codec.decode, data)


def test_property_length_inconsistent_with_the_properties():
    # property block longer than the packet
    protocol_error(MALFORMED, codec.decode, b"\x20\x03\x00\x00\x01")
    protocol_error(MALFORMED, codec.decode, b"\x20\x06\x00\x00\x07\x13\x00\x1e")
    # property block shorter than the property in it: Server Keep Alive runs past it
    protocol_error(MALFORMED, codec.decode, b"\x20\x06\x00\x00\x02\x13\x00\x1e")
    # string property whose length runs past the block (but not past the packet)
    protocol_error(MALFORMED, codec.decode, with_props(3, b"\x03\x00\x05ab") + b"cdefgh")
    # a property identifier with no value
    protocol_error(MALFORMED, codec.decode, with_props(2, b"\x13"))
    protocol_error(MALFORMED, codec.decode, with_props(2, b"\x26\x00\x01k"))


def test_string_length_runs_past_the_packet():
    protocol_error(MALFORMED, codec.decode, b"\x10\x0f\x00\x04MQTT\x05\x02\x00\x00\x00\x00\x05ab")
    protocol_error(MALFORMED, codec.decode, b"\x30\x04\xff\xfft\x00")


def test_decode_refuses_an_incomplete_or_overlong_buffer():
    protocol_error(MALFORMED, codec.decode, b"")
    protocol_error(MALFORMED, codec.decode, b"\x30")
    protocol_error(MALFORMED, codec.decode, b"\x30\x05\x00\x01t")
    protocol_error(MALFORMED, codec.decode, b"\xc0\x00\xc0")  # bytes after the packet


# ----------------------------------------------------------- properties -----------------

def test_sanity_every_property_decodes_where_allowed():
    for pid in ALLOWED:
        for kind in ALLOWED[pid]:
            decodes(with_props(kind, prop(pid)))


def test_property_not_allowed_in_packet_2_2_2_2():
    # A property in a packet it is not defined for: "an Identifier which is not valid for
    # its packet type ... is a Malformed Packet" (decode), UsageError (encode). Every
    # property, every kind.
    buf = bytearray(128)
    count = 0
    for pid in ALLOWED:
        for kind in KINDS:
            if kind in ALLOWED[pid]:
                continue
            protocol_error(MALFORMED, codec.decode, with_props(kind, prop(pid)))
            count += 1
    eq(count, 27 * 14 - sum(len(ALLOWED[p]) for p in ALLOWED))
    usage_error(codec.encode_connack, buf, 0, False, {P.PROP_TOPIC_ALIAS: 1})
    usage_error(codec.encode_publish, buf, b"t", b"", 0, 0, False, False,
                {P.PROP_SESSION_EXPIRY_INTERVAL: 1})
    usage_error(codec.encode_ack, buf, codec.PUBACK, 1, 0, {P.PROP_CONTENT_TYPE: "x"})
    will = codec.Will("w", b"", 0, False, {P.PROP_SESSION_EXPIRY_INTERVAL: 1})
    usage_error(codec.encode_connect, buf, "c", True, 0, None, None, will)
    usage_error(codec.encode_connect, buf, "c", True, 0, None, None, None,
                {P.PROP_WILL_DELAY_INTERVAL: 1})


def test_unknown_property_identifier():
    for pid in (0x00, 0x04, 0x0A, 0x10, 0x14, 0x1B, 0x1D, 0x20, 0x2B, 0x7F):
        protocol_error(MALFORMED, codec.decode, with_props(2, bytes((pid,)) + b"\x00\x00"))
    # 0x80 0x01 is identifier 128, as a VBI
    protocol_error(MALFORMED, codec.decode, with_props(2, b"\x80\x01\x00"))
    usage_error(codec.encode_connack, bytearray(64), 0, False, {0x04: 1})


def test_duplicated_single_valued_property_is_a_protocol_error():
    # 2.2.2.2 / each property's "It is a Protocol Error to include X more than once":
    # every property but User Property, in every kind allowing it.
    for pid in ALLOWED:
        if pid == 0x26:
            continue
        for kind in ALLOWED[pid]:
            if pid == 0x0B and kind == 3:
                continue
            protocol_error(PROTOCOL, codec.decode, with_props(kind, prop(pid) + prop(pid)))
            # and not only side by side
            other = prop(0x26)
            protocol_error(PROTOCOL, codec.decode,
                           with_props(kind, prop(pid) + other + prop(pid)))


def test_user_property_may_repeat_everywhere_3_1_2_11_8():
    for kind in KINDS:
        p = decodes(with_props(kind, prop(0x26) * 3 + prop(0x26, s16("k") + s16("w"))))
        if kind == WILL:
            props = p.will.properties
        else:
            props = p.properties
        eq(props[0x26], [("k", "v"), ("k", "v"), ("k", "v"), ("k", "w")])


def test_subscription_identifier_repeats_in_publish_only_3_3_2_3_8():
    p = decodes(with_props(3, b"\x0b\x01\x0b\x02\x0b\x01"))
    eq(p.properties[0x0B], [1, 2, 1])
    # [MQTT-3.8.2.1.2] SUBSCRIBE: more than once is a Protocol Error
    protocol_error(PROTOCOL, codec.decode, with_props(8, b"\x0b\x01\x0b\x02"))
    usage_error(codec.encode_subscribe, bytearray(64), 1, [("a", 0)],
                {P.PROP_SUBSCRIPTION_IDENTIFIER: [1, 2]})


def test_property_values_out_of_range():
    # one-byte properties are 0 or 1 (Payload Format Indicator, Request Problem/Response
    # Information, Maximum QoS, Retain/Wildcard/Subscription Identifier/Shared Available)
    for pid in BYTE_PROPS:
        kind = ALLOWED[pid][0]
        decodes(with_props(kind, prop(pid, b"\x00")))
        decodes(with_props(kind, prop(pid, b"\x01")))
        protocol_error(PROTOCOL, codec.decode, with_props(kind, prop(pid, b"\x02")))
        protocol_error(PROTOCOL, codec.decode, with_props(kind, prop(pid, b"\xff")))
    # 3.1.2.11.3 / 3.2.2.3.3 Receive Maximum 0, [MQTT-3.3.2-8] Topic Alias 0,
    # 3.1.2.11.4 Maximum Packet Size 0, [MQTT-3.8.2.1.2] Subscription Identifier 0
    protocol_error(PROTOCOL, codec.decode, with_props(1, prop(0x21, b"\x00\x00")))
    protocol_error(PROTOCOL, codec.decode, with_props(2, prop(0x21, b"\x00\x00")))
    protocol_error(PROTOCOL, codec.decode, with_props(3, prop(0x23, b"\x00\x00")))
    protocol_error(PROTOCOL, codec.decode, with_props(1, prop(0x27, b"\x00\x00\x00\x00")))
    protocol_error(PROTOCOL, codec.decode, with_props(2, prop(0x27, b"\x00\x00\x00\x00")))
    protocol_error(PROTOCOL, codec.decode, with_props(3, prop(0x0B, b"\x00")))
    protocol_error(PROTOCOL, codec.decode, with_props(8, prop(0x0B, b"\x00")))


def test_response_topic_is_a_topic_name_3_3_2_14():
    # [MQTT-3.3.2-14] no wildcards in a Response Topic; [MQTT-4.7.3-1] not empty
    for kind in (3, WILL):
        decodes(with_props(kind, prop(0x08, s16("re/ply"))))
        for bad in ("re/+", "#", "a+b", ""):
            protocol_error(PROTOCOL, codec.decode, with_props(kind, prop(0x08, s16(bad))))
            raises(UsageError, P.size, {P.PROP_RESPONSE_TOPIC: bad}, 1 << codec.PUBLISH)
            raises(UsageError, P.size, {P.PROP_RESPONSE_TOPIC: bad}, P.W_WILL)


def test_topic_validation_is_not_skipped_for_a_changed_topic():
    # encode_publish_header remembers the last valid *bytes* topic (immutable) to skip
    # re-validating it; a bytearray can change between calls and must be checked again.
    buf = bytearray(64)
    t = bytearray(b"a/b")
    codec.encode_publish(buf, t, b"")
    codec.encode_publish(buf, t, b"")
    t[2] = 0x2B  # "a/+"
    usage_error(codec.encode_publish, buf, t, b"")
    ok = b"x/y"
    codec.encode_publish(buf, ok, b"")
    codec.encode_publish(buf, ok, b"")
    usage_error(codec.encode_publish, buf, b"x/#", b"")
    usage_error(codec.encode_publish, buf, memoryview(b"x/#"), b"")
    codec.encode_publish(buf, ok, b"")


def test_encoder_type_checks_raise_usage_errors():
    buf = bytearray(64)
    raises(UsageError, P.size, {"x": 1}, 1 << codec.PUBLISH)
    raises(UsageError, P.size, {None: 1}, 1 << codec.PUBLISH)
    usage_error(codec.encode_subscribe, buf, 1, [("a", None)])
    usage_error(codec.encode_subscribe, buf, 1, [("a", "1")])
    # encode_ack refuses a packet type that carries no reason codes, even with code 0
    for ptype in (codec.CONNECT, codec.PUBLISH, codec.SUBSCRIBE, 0, 16):
        usage_error(codec.encode_ack, buf, ptype, 1)
    # a str payload is encoded as UTF-8 (its byte length, not its character count)
    n = codec.encode_publish(buf, b"t", "\u00e9t\u00e9")
    eq(codec.decode(bytes(buf[:n])).payload, "\u00e9t\u00e9".encode())


def test_encoder_refuses_what_the_decoder_refuses():
    # The encoder must never produce a packet our own decoder (or any strict peer) refuses.
    buf = bytearray(128)
    for pid in BYTE_PROPS:
        kind = ALLOWED[pid][0]
        where = P.W_WILL if kind == WILL else 1 << kind
        raises(UsageError, P.size, {pid: 2}, where)
    raises(UsageError, P.size, {P.PROP_RECEIVE_MAXIMUM: 0}, 1 << codec.CONNECT)
    raises(UsageError, P.size, {P.PROP_TOPIC_ALIAS: 0}, 1 << codec.PUBLISH)
    raises(UsageError, P.size, {P.PROP_MAXIMUM_PACKET_SIZE: 0}, 1 << codec.CONNACK)
    raises(UsageError, P.size, {P.PROP_SUBSCRIPTION_IDENTIFIER: 0}, 1 << codec.SUBSCRIBE)
    raises(UsageError, P.size, {P.PROP_SUBSCRIPTION_IDENTIFIER: 268435456},
           1 << codec.PUBLISH)
    raises(UsageError, P.size, {P.PROP_MESSAGE_EXPIRY_INTERVAL: 1 << 32}, 1 << codec.PUBLISH)
    raises(UsageError, P.size, {P.PROP_SERVER_KEEP_ALIVE: 65536}, 1 << codec.CONNACK)
    raises(UsageError, P.size, {P.PROP_SERVER_KEEP_ALIVE: -1}, 1 << codec.CONNACK)
    raises(UsageError, P.size, {P.PROP_CORRELATION_DATA: "not bytes"}, 1 << codec.PUBLISH)
    raises(UsageError, P.size, {P.PROP_USER_PROPERTY: ("k", "v")}, 1 << codec.PUBLISH)
    usage_error(codec.encode_publish, buf, b"t", b"", 0, 0, False, False, {}, 0x10000)
    usage_error(codec.encode_publish, buf, b"t", b"", 0, 0, False, False,
                {P.PROP_TOPIC_ALIAS: 1}, 2)


# ----------------------------------------------------------- packet size ----------------

def test_packet_larger_than_our_maximum_refused_from_the_header_alone():
    # 3.1.2.11.4: we advertise Maximum Packet Size; a bigger packet is refused (0x95)
    # as soon as its fixed header is in, before any of its body arrives.
    rd = codec.PacketReader(64)
    rd.feed(b"\x30\x3f")  # 2 + 63 = 65 bytes > 64
    protocol_error(TOO_LARGE, rd.next)
    rd = codec.PacketReader(64)
    rd.feed(b"\x30\x3e")  # exactly 64: waits for the body
    eq(rd.next(), -1)
    rd.feed(b"\x00\x01t\x00" + b"x" * 58)
    eq(rd.next(), 0x30)
    # the largest Remaining Length, four bytes: refused, nothing allocated for it
    rd = codec.PacketReader(1024)
    rd.feed(b"\x32\xff\xff\xff\x7f")
    protocol_error(TOO_LARGE, rd.next)
    protocol_error(TOO_LARGE, codec.decode, b"\x30\xff\xff\xff\x7f")
    # behind a complete packet in the same buffer
    rd = codec.PacketReader(64)
    rd.feed(b"\xd0\x00\x30\xc0\x01")
    eq(rd.next(), 0xD0)
    protocol_error(TOO_LARGE, rd.next)


def test_encoder_refuses_a_packet_that_does_not_fit_the_buffer():
    buf = bytearray(16)
    e = usage_error(codec.encode_publish, buf, b"topic", b"x" * 20)
    eq(e.reason_code, TOO_LARGE)
    e = usage_error(codec.encode_connect, buf, "a-long-client-identifier")
    eq(e.reason_code, TOO_LARGE)
    # the header alone fits even when the payload would not
    eq(codec.encode_publish_header(buf, b"topic", 1000), 11)  # 1 + 2 + (2 + 5) + 1


# ----------------------------------------------------------- reason codes ---------------

# Reason codes each packet may carry (2.4 table 2-6, written out again).
SPEC_REASONS = {
    2: (0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
        0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F),
    4: (0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99),
    5: (0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99),
    6: (0x00, 0x92),
    7: (0x00, 0x92),
    9: (0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2),
    11: (0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91),
    14: (0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
         0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1,
         0xA2),
    15: (0x00, 0x18, 0x19),
}


def with_reason(t, rc):
    if t == 2:
        return packet(0x20, bytes((0, rc, 0)))
    if 4 <= t <= 7:
        return packet(0x62 if t == 6 else t << 4, bytes((0, 1, rc)))
    if t in (9, 11):
        return packet(t << 4, bytes((0, 1, 0, rc)))
    if t == 15:
        return packet(0xF0, bytes((rc, 4)) + prop(0x15))  # property length 4: the method
    return packet(t << 4, bytes((rc,)))


def test_reason_code_not_valid_for_the_packet():
    buf = bytearray(16)
    for t in SPEC_REASONS:
        for rc in range(256):
            ok = rc in SPEC_REASONS[t]
            eq(codec.reason_allowed(t, rc), ok, "reason_allowed(%d, 0x%02X)" % (t, rc))
            if ok:
                decodes(with_reason(t, rc))
            else:
                protocol_error(PROTOCOL, codec.decode, with_reason(t, rc))
    usage_error(codec.encode_connack, buf, 0x04)
    usage_error(codec.encode_ack, buf, codec.PUBACK, 1, 0x92)
    usage_error(codec.encode_ack, buf, codec.PUBREL, 1, 0x10)
    usage_error(codec.encode_suback, buf, 1, [0x03])
    usage_error(codec.encode_unsuback, buf, 1, [0x01])
    usage_error(codec.encode_disconnect, buf, 0x01)
    usage_error(codec.encode_auth, buf, 0x04)


def test_auth_body_3_15_2():
    # 3.15.2.1: only a Success AUTH without properties drops its body (Remaining Length 0);
    # unlike DISCONNECT (3.14.2.2.1) there is no form with a reason code alone.
    decodes(b"\xf0\x00")
    protocol_error(MALFORMED, codec.decode, b"\xf0\x01\x18")
    protocol_error(MALFORMED, codec.decode, b"\xf0\x01\x00")
    decodes(b"\xe0\x01\x04")  # DISCONNECT may
    # 3.15.2.2.2: omitting the Authentication Method is a Protocol Error
    protocol_error(PROTOCOL, codec.decode, b"\xf0\x02\x18\x00")
    protocol_error(PROTOCOL, codec.decode, b"\xf0\x02\x00\x00")
    protocol_error(PROTOCOL, codec.decode, packet(0xF0, b"\x19\x07" + prop(0x26)))
    buf = bytearray(32)
    usage_error(codec.encode_auth, buf, 0x18)
    usage_error(codec.encode_auth, buf, 0x00, {P.PROP_REASON_STRING: "r"})
    eq(codec.encode_auth(buf, 0x18, {P.PROP_AUTHENTICATION_METHOD: "m"}), 8)
    eq(bytes(buf[:8]), b"\xf0\x06\x18\x04\x15\x00\x01m")


def test_connack_flags_and_session_present():
    protocol_error(MALFORMED, codec.decode, b"\x20\x03\x02\x00\x00")  # [MQTT-3.2.2-1]
    protocol_error(MALFORMED, codec.decode, b"\x20\x03\x80\x00\x00")
    # [MQTT-3.2.2-6] Session Present with a non-zero reason code
    protocol_error(PROTOCOL, codec.decode, b"\x20\x03\x01\x87\x00")
    usage_error(codec.encode_bytes, Connack(0x87, True))


# ----------------------------------------------------------- packet identifiers ---------

def test_packet_identifier_zero_2_2_1_3():
    # [MQTT-2.2.1-3] PUBLISH QoS>0, SUBSCRIBE, UNSUBSCRIBE need a non-zero identifier;
    # acknowledgements carrying 0 can only be for nothing.
    for data in (
        b"\x32\x06\x00\x01t\x00\x00\x00",
        b"\x34\x06\x00\x01t\x00\x00\x00",
        b"\x40\x02\x00\x00",
        b"\x50\x02\x00\x00",
        b"\x62\x02\x00\x00",
        b"\x70\x02\x00\x00",
        b"\x82\x07\x00\x00\x00\x00\x01a\x00",
        b"\x90\x04\x00\x00\x00\x00",
        b"\xa2\x06\x00\x00\x00\x00\x01a",
        b"\xb0\x04\x00\x00\x00\x00",
    ):
        protocol_error(PROTOCOL, codec.decode, data)
    buf = bytearray(32)
    for pid in (0, 65536, -1):
        usage_error(codec.encode_publish, buf, b"t", b"", 1, pid)
        usage_error(codec.encode_ack, buf, codec.PUBACK, pid)
        usage_error(codec.encode_subscribe, buf, pid, [("a", 0)])
        usage_error(codec.encode_unsubscribe, buf, pid, ["a"])
        usage_error(codec.encode_suback, buf, pid, [0])


# ----------------------------------------------------------- CONNECT --------------------

def test_connect_protocol_name_and_version_3_1_2_1_and_3_1_2_2():
    # [MQTT-3.1.2-1] protocol name, [MQTT-3.1.2-2] version: 0x84 Unsupported Protocol
    # Version (the CONNACK a server may send before closing).
    tail = b"\x02\x00\x00\x00\x00\x00"
    for head in (b"\x00\x04MQTT\x04", b"\x00\x04MQTT\x03", b"\x00\x04MQTT\x06",
                 b"\x00\x04MQTT\x00", b"\x00\x06MQIsdp\x03", b"\x00\x04mqtt\x05",
                 b"\x00\x04MQTX\x05", b"\x00\x05MQTTX\x05"):
        protocol_error(UNSUPPORTED_VERSION, codec.decode, packet(0x10, head + tail))
    # a 3.1.1 CONNECT (no property length) as real 3.1.1 clients send it
    protocol_error(UNSUPPORTED_VERSION, codec.decode,
                   b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd")


def test_connect_flags_3_1_2_3_and_will_flags():
    def connect(flags, rest=b"\x00\x00\x00"):
        return packet(0x10, b"\x00\x04MQTT\x05" + bytes((flags,)) + b"\x00\x00" + rest)

    decodes(connect(0x02))
    protocol_error(MALFORMED, codec.decode, connect(0x03))  # [MQTT-3.1.2-3] reserved bit
    will = b"\x00\x00\x01c\x00\x00\x01w\x00\x00"
    decodes(connect(0x0E, will))  # will QoS 1
    protocol_error(MALFORMED, codec.decode, connect(0x1E, will))  # [MQTT-3.1.2-12] QoS 3
    protocol_error(MALFORMED, codec.decode, connect(0x0A))  # [MQTT-3.1.2-11] QoS, no will
    protocol_error(MALFORMED, codec.decode, connect(0x22))  # [MQTT-3.1.2-13] retain, no will
    # will topic empty or with a wildcard
    protocol_error(TOPIC_NAME_INVALID, codec.decode, connect(0x06, b"\x00\x00\x01c\x00\x00\x00"
                                                            b"\x00\x00"))
    protocol_error(TOPIC_NAME_INVALID, codec.decode, connect(0x06, b"\x00\x00\x01c\x00\x00\x01#"
                                                            b"\x00\x00"))
    # user name / password flags without the fields
    protocol_error(MALFORMED, codec.decode, connect(0x82))
    protocol_error(MALFORMED, codec.decode, connect(0x42))


# ----------------------------------------------------------- SUBSCRIBE / topics ---------

def test_subscribe_options_3_8_3():
    def sub(options, filt=b"a/b"):
        return packet(0x82, b"\x00\x01\x00" + s16(filt) + bytes((options,)))

    decodes(sub(0x2E))
    protocol_error(MALFORMED, codec.decode, sub(0x40))  # [MQTT-3.8.3-5] reserved bits
    protocol_error(MALFORMED, codec.decode, sub(0x80))
    protocol_error(MALFORMED, codec.decode, sub(0x03))  # QoS 3
    protocol_error(PROTOCOL, codec.decode, sub(0x30))  # Retain Handling 3
    protocol_error(PROTOCOL, codec.decode, sub(0x04, b"$share/g/a"))  # [MQTT-3.8.3-4]
    protocol_error(PROTOCOL, codec.decode, packet(0x82, b"\x00\x01\x00"))  # [MQTT-3.8.3-2]
    protocol_error(PROTOCOL, codec.decode, packet(0xA2, b"\x00\x01\x00"))  # [MQTT-3.10.3-2]
    protocol_error(PROTOCOL, codec.decode, packet(0x90, b"\x00\x01\x00"))
    protocol_error(PROTOCOL, codec.decode, packet(0xB0, b"\x00\x01\x00"))
    buf = bytearray(64)
    for options in (0x40, 0x80, 0x03, 0x30):
        usage_error(codec.encode_subscribe, buf, 1, [("a", options)])
    usage_error(codec.encode_subscribe, buf, 1, [("$share/g/a", 0x04)])
    usage_error(codec.encode_subscribe, buf, 1, [])
    usage_error(codec.encode_unsubscribe, buf, 1, [])


def test_invalid_topic_filters_4_7_1():
    # [MQTT-4.7.1-1] '#' last and alone in its level, [MQTT-4.7.1-2] '+' alone in its level,
    # [MQTT-4.7.3-1] at least one character, [MQTT-4.8.2-1] a share name, and something
    # after it.
    buf = bytearray(64)
    for filt in (b"", b"a/#/b", b"a#", b"#a", b"a/b#", b"a+", b"+a", b"a/+b", b"$share/",
                 b"$share/g", b"$share/g/", b"$share//a", b"$share/g+/a", b"$share/#/a"):
        protocol_error(MALFORMED, codec.decode, packet(0x82, b"\x00\x01\x00" + s16(filt)
                                                       + b"\x00"))
        protocol_error(MALFORMED, codec.decode, packet(0xA2, b"\x00\x01\x00" + s16(filt)))
        usage_error(codec.encode_subscribe, buf, 1, [(filt, 0)])
        usage_error(codec.encode_unsubscribe, buf, 1, [filt])
    for filt in (b"#", b"+", b"a/#", b"+/+", b"/", b"a//b", b"+/#", b"$share/g/#",
                 b"$share/g/a/+/c"):
        decodes(packet(0x82, b"\x00\x01\x00" + s16(filt) + b"\x00"))


def test_empty_topic_without_alias_3_3_2_1():
    protocol_error(PROTOCOL, codec.decode, b"\x30\x03\x00\x00\x00")
    usage_error(codec.encode_publish, bytearray(16), b"", b"")
    usage_error(codec.encode_bytes, Publish(""))


def test_encoder_argument_checks():
    buf = bytearray(64)
    usage_error(codec.encode_publish, buf, b"t", b"", 3, 1)  # QoS 3
    usage_error(codec.encode_publish, buf, b"t", b"", 0, 0, False, True)  # DUP on QoS 0
    usage_error(codec.encode_connect, buf, "c", True, 65536)  # keep alive
    usage_error(codec.encode_connect, buf, "c", True, 0, None, None,
                codec.Will("w", b"", 3))
    usage_error(codec.encode_connect, buf, "c", True, 0, None, None, codec.Will("w/#"))
    usage_error(codec.encode_connect, buf, "c", True, 0, None, None, codec.Will(""))
    usage_error(codec.encode_bytes, Subscribe(1, [("a", 0x04), ("$share/g/b", 0x04)]))


# ----------------------------------------------------------- only our errors escape -----

def test_deterministic_mutation_sweep_raises_only_mqtt_errors():
    # A small, deterministic cousin of the hypothesis fuzzing (which needs CPython): every
    # truncation and a set of byte substitutions of a dozen valid packets decode to a
    # packet or raise an MqttError -- never IndexError, struct.error, UnicodeError, ...
    seeds = (
        with_props(WILL, prop(0x26) + prop(0x08) + prop(0x09)),
        with_props(1, prop(0x11) + prop(0x21) + prop(0x15) + prop(0x16)),
        with_props(2, prop(0x12) + prop(0x1F) + prop(0x24) + prop(0x27)),
        with_props(3, prop(0x01) + prop(0x0B) + prop(0x23) + prop(0x26)),
        with_props(4, prop(0x1F)),
        with_props(6, prop(0x26)),
        with_props(8, prop(0x0B)),
        with_props(9, prop(0x1F)),
        with_props(10, prop(0x26)),
        with_props(14, prop(0x11) + prop(0x1C)),
        with_props(15, prop(0x15) + prop(0x16)),
        b"\xc0\x00",
    )
    values = (0x00, 0x01, 0x7F, 0x80, 0xC0, 0xFF)
    n = 0
    for seed in seeds:
        decodes(seed)
        for cut in range(len(seed)):
            _only_mqtt_errors(seed[:cut])
            n += 1
        for i in range(len(seed)):
            for v in values:
                mutated = seed[:i] + bytes((v,)) + seed[i + 1:]
                _only_mqtt_errors(mutated)
                _only_mqtt_errors_streamed(mutated)
                n += 2
    eq(n > 2000, True)


def _only_mqtt_errors(data):
    try:
        codec.decode(data)
    except MqttError:
        pass
    except Exception as e:
        fail("%r escaped for %r" % (e, data))


def _only_mqtt_errors_streamed(data):
    rd = codec.PacketReader(64)
    view = codec.PublishView()
    rd.feed(data)
    try:
        first = rd.next()
        if first >= 0:
            r = rd.reader.reset(rd.buf, rd.body_start, rd.body_end)
            if first >> 4 == codec.PUBLISH:
                codec.decode_publish_into(view, first, r)
            else:
                codec.decode_body(first, r)
    except MqttError:
        pass
    except Exception as e:
        fail("%r escaped for %r" % (e, data))


def test_errors_are_mqtt_errors():
    for cls in (ProtocolError, UsageError):
        if not issubclass(cls, MqttError):
            fail(cls.__name__)
    e = protocol_error(MALFORMED, codec.decode, b"\x30")
    eq(isinstance(e, MqttError), True)
