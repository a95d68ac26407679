"""Hand-written byte vectors from the MQTT 5.0 specification (OASIS Standard, 7 March 2019),
independent of our encoder: every expected byte is written out literally, field by field.

Each vector is checked both ways: decode(bytes) gives the expected packet object, and
encoding that object gives the bytes back. Where the spec prints a non-normative example
(CONNECT variable header 3.1.2.11.x, PUBLISH variable header 3.3.2.3, SUBSCRIBE 3.8.2/3.8.3,
UNSUBSCRIBE 3.10.3, Variable Byte Integer table 1.5.5, UTF-8 string 1.5.4) the vector is
built around it; the rest follow the packet layouts of chapter 3.

Portable: runs under pytest and under real MicroPython (tools/mp_run.mjs).
"""

from _codec_util import DICT_ORDERED, eq

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5._server_codec import (
    Ack,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Ping,
    Publish,
    SubAck,
    Subscribe,
    Unsubscribe,
    Will,
)


def check(data, packet, encode=True):
    """``data`` decodes to ``packet``; with ``encode``, ``packet`` encodes to ``data``."""
    eq(codec.decode(data), packet, "decode")
    if encode:
        eq(codec.encode_bytes(packet), data, "encode")
        # and through the type-specific encoder into a buffer of exactly the right size
        buf = bytearray(len(data))
        eq(codec.encode(packet, buf), len(data), "length")
        eq(bytes(buf), data, "encode into an exact buffer")


def check_unordered(data, packet):
    """For packets whose property dict has several entries: their order on the wire follows
    the dict, which only CPython keeps in insertion order (the order written here)."""
    check(data, packet, encode=DICT_ORDERED)
    if not DICT_ORDERED:
        enc = codec.encode_bytes(packet)
        eq(len(enc), len(data), "length")
        eq(codec.decode(enc), packet, "decode(encode)")


# ---------------------------------------------------------------- 1.5 data types --------

def test_variable_byte_integer_table_1_5_5():
    # The table of 1.5.5: the smallest and largest value of each length.
    table = (
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2097151, b"\xff\xff\x7f"),
        (2097152, b"\x80\x80\x80\x01"),
        (268435455, b"\xff\xff\xff\x7f"),
        (321, b"\xc1\x02"),  # the 321 example of 2.1.4 / 1.5.5 prose
    )
    for value, wire in table:
        buf = bytearray(4)
        n = P.write_vbi(buf, 0, value)
        eq(bytes(buf[:n]), wire, "write_vbi(%d)" % value)
        eq(P.vbi_size(value), len(wire), "vbi_size(%d)" % value)
        r = P.Reader().reset(wire, 0, len(wire))
        eq(r.vbi(), value, "Reader.vbi(%r)" % wire)
        eq(r.pos, len(wire))


def test_remaining_length_of_321_in_a_fixed_header():
    # A PUBLISH whose Remaining Length is 321 = 0xC1 0x02:
    # 2 (topic length) + 1 (topic "a") + 1 (property length) + 317 payload bytes.
    payload = b"p" * 317
    data = b"\x30\xc1\x02" + b"\x00\x01a" + b"\x00" + payload
    eq(len(data), 3 + 321)
    check(data, Publish("a", payload))


def test_utf8_string_example_1_5_4():
    # "A" U+0041 then U+2A6D4 (a CJK ideograph) = 0x00 0x05 0x41 0xF0 0xAA 0x9B 0x94
    wire = b"\x00\x05\x41\xf0\xaa\x9b\x94"
    r = P.Reader().reset(wire, 0, len(wire))
    eq(codec.read_string(r), "A\U0002a6d4")
    # and as a PUBLISH topic name
    data = b"\x30\x08" + wire + b"\x00"
    check(data, Publish("A\U0002a6d4"))


# ---------------------------------------------------------------- CONNECT ---------------

# 3.1.2.11.x "Variable Header non normative example": protocol name, version 5, connect
# flags 0xCE (User Name 1, Password 1, Will Retain 0, Will QoS 01, Will Flag 1, Clean
# Start 1, Reserved 0), Keep Alive 10, Properties length 5 = Session Expiry Interval (17) 10.
SPEC_CONNECT_VARIABLE_HEADER = (
    b"\x00\x04MQTT"  # Protocol Name
    b"\x05"  # Protocol Version
    b"\xce"  # Connect Flags
    b"\x00\x0a"  # Keep Alive 10
    b"\x05"  # Properties length 5
    b"\x11\x00\x00\x00\x0a"  # Session Expiry Interval 10
)


def test_connect_spec_variable_header_with_a_payload():
    data = (
        b"\x10\x37"  # CONNECT, Remaining Length 55
        + SPEC_CONNECT_VARIABLE_HEADER
        + b"\x00\x08client-1"  # Client Identifier
        + b"\x05"  # Will Properties length 5
        + b"\x18\x00\x00\x00\x1e"  # Will Delay Interval 30
        + b"\x00\x06a/will"  # Will Topic
        + b"\x00\x03bye"  # Will Payload
        + b"\x00\x04user"  # User Name
        + b"\x00\x02pw"  # Password
    )
    will = Will("a/will", b"bye", 1, False, {P.PROP_WILL_DELAY_INTERVAL: 30})
    check(data, Connect("client-1", True, 10, "user", b"pw", will,
                        {P.PROP_SESSION_EXPIRY_INTERVAL: 10}))


def test_connect_minimal():
    data = (
        b"\x10\x0d"
        b"\x00\x04MQTT\x05"
        b"\x02"  # Clean Start
        b"\x00\x3c"  # Keep Alive 60
        b"\x00"  # no properties
        b"\x00\x00"  # empty Client Identifier [MQTT-3.1.3-6]
    )
    check(data, Connect("", True, 60))
    buf = bytearray(15)
    eq(codec.encode_connect(buf, b"", True, 60), 15)
    eq(bytes(buf), data)


def test_connect_every_connect_property():
    props = (
        b"\x11\x00\x00\x0e\x10"  # Session Expiry Interval 3600
        b"\x21\x00\x14"  # Receive Maximum 20
        b"\x27\x00\x00\x08\x00"  # Maximum Packet Size 2048
        b"\x22\x00\x0a"  # Topic Alias Maximum 10
        b"\x19\x01"  # Request Response Information 1
        b"\x17\x00"  # Request Problem Information 0
        b"\x26\x00\x01a\x00\x01b"  # User Property a=b
        b"\x26\x00\x01a\x00\x01c"  # User Property a=c (repeats, order kept)
        b"\x15\x00\x05PLAIN"  # Authentication Method
        b"\x16\x00\x03\x00\x01\x02"  # Authentication Data
    )
    eq(len(props), 5 + 3 + 5 + 3 + 2 + 2 + 7 + 7 + 8 + 6)
    data = (
        b"\x10\x3d"  # Remaining Length 61 = 10 + 1 + 48 + 2
        b"\x00\x04MQTT\x05\x00\x00\x00"  # not clean, Keep Alive 0
        b"\x30" + props  # Properties length 48
        + b"\x00\x00"  # empty Client Identifier
    )
    eq(len(data), 2 + 61)
    want = Connect("", False, 0, None, None, None, {
        P.PROP_SESSION_EXPIRY_INTERVAL: 3600,
        P.PROP_RECEIVE_MAXIMUM: 20,
        P.PROP_MAXIMUM_PACKET_SIZE: 2048,
        P.PROP_TOPIC_ALIAS_MAXIMUM: 10,
        P.PROP_REQUEST_RESPONSE_INFORMATION: 1,
        P.PROP_REQUEST_PROBLEM_INFORMATION: 0,
        P.PROP_USER_PROPERTY: [("a", "b"), ("a", "c")],
        P.PROP_AUTHENTICATION_METHOD: "PLAIN",
        P.PROP_AUTHENTICATION_DATA: b"\x00\x01\x02",
    })
    check_unordered(data, want)


def test_connect_password_without_user_name():
    # MQTT 5 allows a Password without a User Name (3.1.2.9, unlike 3.1.1)
    data = b"\x10\x12\x00\x04MQTT\x05\x42\x00\x00\x00\x00\x01x\x00\x02pw"
    check(data, Connect("x", True, 0, None, b"pw"))


def test_connect_will_qos2_retain_with_every_will_property():
    wprops = (
        b"\x01\x01"  # Payload Format Indicator 1 (UTF-8)
        b"\x02\x00\x00\x00\x3c"  # Message Expiry Interval 60
        b"\x03\x00\x04text"  # Content Type
        b"\x08\x00\x03r/t"  # Response Topic
        b"\x09\x00\x02\xab\xcd"  # Correlation Data
        b"\x18\x00\x00\x00\x05"  # Will Delay Interval 5
        b"\x26\x00\x01k\x00\x01v"  # User Property
    )
    eq(len(wprops), 37)
    data = (
        b"\x10\x3b"  # Remaining Length 59
        b"\x00\x04MQTT\x05"
        b"\x34"  # Will Retain 1, Will QoS 2, Will Flag 1, Clean Start 0
        b"\x00\x00\x00"
        b"\x00\x01c"  # Client Identifier "c"
        b"\x25" + wprops  # Will Properties length 37
        + b"\x00\x01w"  # Will Topic
        + b"\x00\x02hi"  # Will Payload
    )
    eq(len(data), 2 + 59)
    will = Will("w", b"hi", 2, True, {
        P.PROP_PAYLOAD_FORMAT_INDICATOR: 1,
        P.PROP_MESSAGE_EXPIRY_INTERVAL: 60,
        P.PROP_CONTENT_TYPE: "text",
        P.PROP_RESPONSE_TOPIC: "r/t",
        P.PROP_CORRELATION_DATA: b"\xab\xcd",
        P.PROP_WILL_DELAY_INTERVAL: 5,
        P.PROP_USER_PROPERTY: [("k", "v")],
    })
    check_unordered(data, Connect("c", False, 0, None, None, will))


# ---------------------------------------------------------------- CONNACK ---------------

def test_connack_success_no_properties():
    check(b"\x20\x03\x00\x00\x00", Connack(0, False))


def test_connack_refused_not_authorized():
    check(b"\x20\x03\x00\x87\x00", Connack(0x87, False))


def test_connack_session_present_with_server_properties():
    data = (
        b"\x20\x13"  # CONNACK, Remaining Length 19
        b"\x01"  # Session Present
        b"\x00"  # Success
        b"\x10"  # Properties length 16
        b"\x21\x00\x0a"  # Receive Maximum 10
        b"\x22\x00\x05"  # Topic Alias Maximum 5
        b"\x12\x00\x03abc"  # Assigned Client Identifier
        b"\x24\x01"  # Maximum QoS 1
        b"\x25\x00"  # Retain Available 0
    )
    check_unordered(data, Connack(0, True, {
        P.PROP_RECEIVE_MAXIMUM: 10,
        P.PROP_TOPIC_ALIAS_MAXIMUM: 5,
        P.PROP_ASSIGNED_CLIENT_IDENTIFIER: "abc",
        P.PROP_MAXIMUM_QOS: 1,
        P.PROP_RETAIN_AVAILABLE: 0,
    }))


def test_connack_one_property_exact_on_both_runtimes():
    data = b"\x20\x06\x00\x00\x03\x13\x00\x1e"  # Server Keep Alive 30
    check(data, Connack(0, False, {P.PROP_SERVER_KEEP_ALIVE: 30}))


# ---------------------------------------------------------------- PUBLISH ---------------

def test_publish_spec_variable_header_qos1():
    # 3.3.2.3 example: Topic Name "a/b", Packet Identifier 10, no properties.
    data = (
        b"\x32\x0a"  # PUBLISH QoS 1, Remaining Length 10
        b"\x00\x03a/b"  # Topic Name
        b"\x00\x0a"  # Packet Identifier 10
        b"\x00"  # Properties length 0
        b"hi"  # Payload
    )
    check(data, Publish("a/b", b"hi", 1, False, False, 10))
    buf = bytearray(12)
    eq(codec.encode_publish(buf, b"a/b", b"hi", 1, 10), 12)
    eq(bytes(buf), data)


def test_publish_qos0_empty_payload():
    check(b"\x30\x04\x00\x01t\x00", Publish("t"))


def test_publish_qos2_dup_retain():
    data = b"\x3d\x08\x00\x01t\xff\xff\x00ok"  # DUP 1, QoS 2, RETAIN 1, id 65535
    check(data, Publish("t", b"ok", 2, True, True, 0xFFFF))


def test_publish_with_every_publish_property():
    data = (
        b"\x31\x2b"  # PUBLISH QoS 0 RETAIN, Remaining Length 43
        b"\x00\x01t"  # Topic Name "t"
        b"\x25"  # Properties length 37
        b"\x01\x01"  # Payload Format Indicator 1
        b"\x02\x00\x00\x00\x3c"  # Message Expiry Interval 60
        b"\x03\x00\x04json"  # Content Type
        b"\x08\x00\x03r/1"  # Response Topic
        b"\x09\x00\x02\x01\x02"  # Correlation Data
        b"\x26\x00\x01k\x00\x01v"  # User Property
        b"\x23\x00\x01"  # Topic Alias 1
        b"\x0b\x05"  # Subscription Identifier 5
        b"{}"  # Payload
    )
    check_unordered(data, Publish("t", b"{}", 0, True, False, 0, {
        P.PROP_PAYLOAD_FORMAT_INDICATOR: 1,
        P.PROP_MESSAGE_EXPIRY_INTERVAL: 60,
        P.PROP_CONTENT_TYPE: "json",
        P.PROP_RESPONSE_TOPIC: "r/1",
        P.PROP_CORRELATION_DATA: b"\x01\x02",
        P.PROP_USER_PROPERTY: [("k", "v")],
        P.PROP_TOPIC_ALIAS: 1,
        P.PROP_SUBSCRIPTION_IDENTIFIER: [5],
    }))


def test_publish_repeated_subscription_identifiers():
    # A PUBLISH to a client may carry several Subscription Identifiers (3.3.2.3.8);
    # 200 needs two bytes as a Variable Byte Integer: 0xC8 0x01.
    data = b"\x30\x0a\x00\x01t\x05\x0b\x01\x0b\xc8\x01x"
    check(data, Publish("t", b"x", properties={P.PROP_SUBSCRIPTION_IDENTIFIER: [1, 200]}))


def test_publish_empty_topic_with_topic_alias():
    # [MQTT-3.3.2-1] a zero-length Topic Name is allowed with a Topic Alias
    data = b"\x30\x07\x00\x00\x03\x23\x00\x07z"
    check(data, Publish("", b"z", properties={P.PROP_TOPIC_ALIAS: 7}))
    buf = bytearray(9)
    eq(codec.encode_publish(buf, b"", b"z", topic_alias=7), 9)
    eq(bytes(buf), data)


def test_publish_header_written_apart_from_the_payload():
    buf = bytearray(16)
    n = codec.encode_publish_header(buf, b"a/b", 1000, 1, 10)
    eq(bytes(buf[:n]), b"\x32\xf0\x07\x00\x03a/b\x00\x0a\x00")  # Remaining Length 1008
    eq(codec.publish_size(3, 1000, 1, 0), n + 1000)


# ---------------------------------------------------------------- PUBACK..PUBCOMP -------

def test_puback_success_short_form():
    # [MQTT-3.4.2.1] Reason Code 0 and no properties: Remaining Length 2
    check(b"\x40\x02\x00\x0a", Ack(codec.PUBACK, 10))


def test_puback_reason_code_without_properties():
    check(b"\x40\x03\x00\x0a\x10", Ack(codec.PUBACK, 10, 0x10))
    # the Property Length may also be present and 0 (decode only: we send the short form)
    check(b"\x40\x04\x00\x0a\x10\x00", Ack(codec.PUBACK, 10, 0x10), encode=False)
    check(b"\x40\x04\x00\x0a\x00\x00", Ack(codec.PUBACK, 10), encode=False)
    check(b"\x40\x03\x00\x0a\x00", Ack(codec.PUBACK, 10), encode=False)


def test_puback_with_reason_string():
    data = b"\x40\x09\x00\x0a\x97\x05\x1f\x00\x02no"
    check(data, Ack(codec.PUBACK, 10, 0x97, {P.PROP_REASON_STRING: "no"}))


def test_pubrec_pubrel_pubcomp():
    check(b"\x50\x02\x00\x0b", Ack(codec.PUBREC, 11))
    check(b"\x50\x03\x00\x0b\x80", Ack(codec.PUBREC, 11, 0x80))
    # PUBREL fixed header flags are 0010 [MQTT-3.6.1-1]
    check(b"\x62\x02\x00\x0b", Ack(codec.PUBREL, 11))
    check(b"\x62\x03\x00\x0b\x92", Ack(codec.PUBREL, 11, 0x92))
    check(b"\x70\x02\x00\x0b", Ack(codec.PUBCOMP, 11))
    check(b"\x70\x0b\x00\x0b\x92\x07\x26\x00\x01a\x00\x01b",
          Ack(codec.PUBCOMP, 11, 0x92, {P.PROP_USER_PROPERTY: [("a", "b")]}))


def test_ack_into_preallocated_view():
    data = b"\x40\x03\x01\x02\x10"
    rd = codec.PacketReader(64)
    rd.feed(data)
    first = rd.next()
    eq(first, 0x40)
    v = codec.decode_ack_into(codec.AckView(), first, rd.reader.reset(rd.buf, rd.body_start,
                                                                       rd.body_end))
    eq((v.type, v.packet_id, v.reason_code), (codec.PUBACK, 0x0102, 0x10))
    buf = bytearray(4)
    eq(codec.encode_ack(buf, codec.PUBREL, 0x0102), 4)
    eq(bytes(buf), b"\x62\x02\x01\x02")


# ---------------------------------------------------------------- SUBSCRIBE -------------

def test_subscribe_spec_example():
    # 3.8.2.2 variable header example (Packet Identifier 10, no properties) and the 3.8.3
    # payload example: "a/b" with options 1 and "c/d" with options 2.
    data = (
        b"\x82\x0f"  # SUBSCRIBE, flags 0010, Remaining Length 15
        b"\x00\x0a"  # Packet Identifier 10
        b"\x00"  # Properties length 0
        b"\x00\x03a/b\x01"
        b"\x00\x03c/d\x02"
    )
    check(data, Subscribe(10, [("a/b", 1), ("c/d", 2)]))


def test_subscribe_options_and_subscription_identifier():
    # options 0x2D = Retain Handling 2, Retain As Published, No Local, QoS 1
    data = b"\x82\x0b\x00\x01\x02\x0b\x07\x00\x03x/#\x2d"
    eq(codec.sub_options(1, True, True, 2), 0x2D)
    check(data, Subscribe(1, [("x/#", 0x2D)], {P.PROP_SUBSCRIPTION_IDENTIFIER: [7]}))
    # the encoder also takes the identifier as a plain int
    eq(codec.encode_bytes(Subscribe(1, [("x/#", 0x2D)], {P.PROP_SUBSCRIPTION_IDENTIFIER: 7})),
       data)


def test_subscribe_shared_subscription():
    data = b"\x82\x12\x00\x02\x00\x00\x0c$share/g/a/+\x00"
    check(data, Subscribe(2, [("$share/g/a/+", 0)]))


def test_suback():
    # one reason code per filter: Granted QoS 1, Granted QoS 2, Unspecified error
    data = b"\x90\x06\x00\x0a\x00\x01\x02\x80"
    check(data, SubAck(codec.SUBACK, 10, [1, 2, 0x80]))
    data = b"\x90\x08\x00\x0a\x04\x1f\x00\x01!\x00"
    check(data, SubAck(codec.SUBACK, 10, [0], {P.PROP_REASON_STRING: "!"}))


# ---------------------------------------------------------------- UNSUBSCRIBE -----------

def test_unsubscribe_spec_example():
    # 3.10.3 payload example: "a/b" and "c/d"
    data = b"\xa2\x0d\x00\x0a\x00\x00\x03a/b\x00\x03c/d"
    check(data, Unsubscribe(10, ["a/b", "c/d"]))


def test_unsuback():
    check(b"\xb0\x05\x00\x0a\x00\x00\x11", SubAck(codec.UNSUBACK, 10, [0, 0x11]))


# ---------------------------------------------------------------- PING, DISCONNECT, AUTH -

def test_pingreq_pingresp():
    check(b"\xc0\x00", Ping(codec.PINGREQ))
    check(b"\xd0\x00", Ping(codec.PINGRESP))
    eq(codec.PINGREQ_BYTES, b"\xc0\x00")
    eq(codec.PINGRESP_BYTES, b"\xd0\x00")


def test_disconnect():
    # [MQTT-3.14.2.1] Remaining Length 0 means Normal disconnection
    check(b"\xe0\x00", Disconnect())
    check(b"\xe0\x01\x04", Disconnect(0x04))
    check(b"\xe0\x02\x00\x00", Disconnect(), encode=False)
    data = b"\xe0\x08\x8b\x06\x1f\x00\x03bye"
    check(data, Disconnect(0x8B, {P.PROP_REASON_STRING: "bye"}))
    data = b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00"
    check(data, Disconnect(0, {P.PROP_SESSION_EXPIRY_INTERVAL: 0}))
    buf = bytearray(2)
    eq(codec.encode_disconnect(buf), 2)
    eq(bytes(buf), b"\xe0\x00")


def test_auth():
    check(b"\xf0\x00", Auth())
    data = (
        b"\xf0\x15"  # AUTH, Remaining Length 21
        b"\x18"  # Continue authentication
        b"\x13"  # Properties length 19
        b"\x15\x00\x0bSCRAM-SHA-1"  # Authentication Method
        b"\x16\x00\x02\x01\x02"  # Authentication Data
    )
    check_unordered(data, Auth(0x18, {P.PROP_AUTHENTICATION_METHOD: "SCRAM-SHA-1",
                                      P.PROP_AUTHENTICATION_DATA: b"\x01\x02"}))
