"""Round trips: every packet type (15) and every property (27) in every packet kind the spec
allows it in (Will Properties included): encode -> decode gives the packet back, and
encoding the decoded packet gives the same bytes.

The table of where each property may appear is written out here from the spec (2.2.2.2),
not taken from properties.py, so a wrong entry there fails this test. The other side,
a property where it is NOT allowed, is in test_codec_strict.py.

Portable: runs under pytest and under real MicroPython (tools/mp_run.mjs).
"""

from _codec_util import DICT_ORDERED, eq, fail

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

WILL = 0  # stands for the Will Properties of CONNECT in the table below

# MQTT 5.0, 2.2.2.2: identifier -> (name, packets it may appear in). Packet types by number:
# 1 CONNECT 2 CONNACK 3 PUBLISH 4 PUBACK 5 PUBREC 6 PUBREL 7 PUBCOMP 8 SUBSCRIBE
# 9 SUBACK 10 UNSUBSCRIBE 11 UNSUBACK 14 DISCONNECT 15 AUTH.
SPEC_TABLE = {
    0x01: ("Payload Format Indicator", (3, WILL)),
    0x02: ("Message Expiry Interval", (3, WILL)),
    0x03: ("Content Type", (3, WILL)),
    0x08: ("Response Topic", (3, WILL)),
    0x09: ("Correlation Data", (3, WILL)),
    0x0B: ("Subscription Identifier", (3, 8)),
    0x11: ("Session Expiry Interval", (1, 2, 14)),
    0x12: ("Assigned Client Identifier", (2,)),
    0x13: ("Server Keep Alive", (2,)),
    0x15: ("Authentication Method", (1, 2, 15)),
    0x16: ("Authentication Data", (1, 2, 15)),
    0x17: ("Request Problem Information", (1,)),
    0x18: ("Will Delay Interval", (WILL,)),
    0x19: ("Request Response Information", (1,)),
    0x1A: ("Response Information", (2,)),
    0x1C: ("Server Reference", (2, 14)),
    0x1F: ("Reason String", (2, 4, 5, 6, 7, 9, 11, 14, 15)),
    0x21: ("Receive Maximum", (1, 2)),
    0x22: ("Topic Alias Maximum", (1, 2)),
    0x23: ("Topic Alias", (3,)),
    0x24: ("Maximum QoS", (2,)),
    0x25: ("Retain Available", (2,)),
    0x26: ("User Property", (1, 2, 3, WILL, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15)),
    0x27: ("Maximum Packet Size", (1, 2)),
    0x28: ("Wildcard Subscription Available", (2,)),
    0x29: ("Subscription Identifier Available", (2,)),
    0x2A: ("Shared Subscription Available", (2,)),
}

# Sample values per property, as decoding gives them back (Subscription Identifier and User
# Property as lists). Several values each: the extremes of the type.
SAMPLES = {
    0x01: (0, 1),
    0x02: (0, 0xFFFFFFFF),
    0x03: ("application/json", ""),
    0x08: ("reply/to/me", "r\u00e9ponse/\U0001f600"),
    0x09: (b"\x00\xff\x10", b""),
    0x0B: ([1], [268435455], [128]),
    0x11: (0, 0xFFFFFFFF),
    0x12: ("auto-1234", ""),
    0x13: (0, 0xFFFF),
    0x15: ("SCRAM-SHA-256",),
    0x16: (b"\x01" * 300,),
    0x17: (0, 1),
    0x18: (0, 0xFFFFFFFF),
    0x19: (0, 1),
    0x1A: ("response/info",),
    0x1C: ("other.example:1883",),
    0x1F: ("a reason", "\u00fcml\u00e4ut"),
    0x21: (1, 0xFFFF),
    0x22: (0, 0xFFFF),
    0x23: (1, 0xFFFF),
    0x24: (0, 1),
    0x25: (0, 1),
    0x26: ([("k", "v")], [("a", "1"), ("a", "2"), ("", "")]),
    0x27: (1, 0xFFFFFFFF),
    0x28: (0, 1),
    0x29: (0, 1),
    0x2A: (0, 1),
}


def packet_with(kind, props):
    """A packet of ``kind`` (packet type, or WILL) carrying ``props``."""
    if kind == WILL:
        return Connect("c", True, 30, None, None, Will("w/t", b"bye", 1, False, props))
    if kind == codec.CONNECT:
        return Connect("c", False, 30, "u", b"p", None, props)
    if kind == codec.CONNACK:
        return Connack(0, True, props)
    if kind == codec.PUBLISH:
        return Publish("t/1", b"payload", 1, False, False, 7, props)
    if codec.PUBACK <= kind <= codec.PUBCOMP:
        return Ack(kind, 7, 0, props)
    if kind == codec.SUBSCRIBE:
        return Subscribe(7, [("a/+", 1)], props)
    if kind == codec.SUBACK:
        return SubAck(kind, 7, [1], props)
    if kind == codec.UNSUBSCRIBE:
        return Unsubscribe(7, ["a/+"], props)
    if kind == codec.UNSUBACK:
        return SubAck(kind, 7, [0], props)
    if kind == codec.DISCONNECT:
        return Disconnect(0, props)
    if kind == codec.AUTH:
        if P.PROP_AUTHENTICATION_METHOD not in props:  # an AUTH names its method (3.15.2.2.2)
            props = dict(props)
            props[P.PROP_AUTHENTICATION_METHOD] = "m"
        return Auth(0x18, props)
    fail("no kind %r" % kind)


def round_trip(packet):
    data = codec.encode_bytes(packet)
    back = codec.decode(data)
    eq(back, packet, "decode(encode(packet))")
    again = codec.encode_bytes(back)
    if DICT_ORDERED:
        eq(again, data, "encode(decode(data))")
    else:
        # Property order follows the dict, which MicroPython does not keep.
        eq(len(again), len(data), "len(encode(decode(data)))")
        eq(codec.decode(again), packet, "decode(encode(decode(data)))")
    return data


def test_spec_table_has_the_27_properties():
    eq(len(SPEC_TABLE), 27)
    for pid in range(0x30):
        known = pid in SPEC_TABLE
        if (P.prop_type(pid) != 0) != known:
            fail("property 0x%02X: codec knows it %r, spec %r" % (pid, not known, known))


def test_every_property_in_every_packet_kind_allowing_it():
    count = 0
    for pid in SPEC_TABLE:
        for kind in SPEC_TABLE[pid][1]:
            for value in SAMPLES[pid]:
                try:
                    round_trip(packet_with(kind, {pid: value}))
                except Exception as e:
                    fail("%s (0x%02X) = %r in kind %d: %r"
                         % (SPEC_TABLE[pid][0], pid, value, kind, e))
                count += 1
    eq(count > 100, True)


def test_codec_table_agrees_with_the_spec():
    for pid in SPEC_TABLE:
        kinds = SPEC_TABLE[pid][1]
        for kind in (WILL, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15):
            where = P.W_WILL if kind == WILL else 1 << kind
            if P.allowed_in(pid, where) != (kind in kinds):
                fail("0x%02X in kind %d" % (pid, kind))


def test_all_properties_of_a_kind_together():
    # Each kind with every property it allows at once (one sample each).
    for kind in (WILL, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15):
        props = {}
        for pid in SPEC_TABLE:
            if kind in SPEC_TABLE[pid][1]:
                props[pid] = SAMPLES[pid][-1]
        round_trip(packet_with(kind, props))


def test_will_properties_and_connect_properties_are_kept_apart():
    will = Will("w", b"", 0, False, {P.PROP_WILL_DELAY_INTERVAL: 9,
                                     P.PROP_USER_PROPERTY: [("w", "1")]})
    pkt = Connect("c", True, 0, None, None, will, {P.PROP_USER_PROPERTY: [("c", "2")],
                                                    P.PROP_SESSION_EXPIRY_INTERVAL: 3})
    round_trip(pkt)


# ------------------------------------------------------ every packet type -------------

def test_connect_variants():
    round_trip(Connect())
    round_trip(Connect("client", False, 0xFFFF, "", b""))
    round_trip(Connect("\u00e9\U0001f600", True, 1, "user\u00e9", b"\x00\x01",
                       Will("a/b", b"\x00\xff" * 100, 2, True)))
    for qos in (0, 1, 2):
        for retain in (False, True):
            round_trip(Connect("x", True, 5, None, b"pw", Will("w", b"x", qos, retain)))


def test_connack_variants():
    round_trip(Connack())
    round_trip(Connack(0, True))
    for rc in (0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
               0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F):
        round_trip(Connack(rc, False, {P.PROP_REASON_STRING: "no"}))


def test_publish_variants():
    for qos in (0, 1, 2):
        for retain in (False, True):
            for dup in ((False, True) if qos else (False,)):
                pid = 0 if qos == 0 else 65535
                round_trip(Publish("a/b/c", b"data", qos, retain, dup, pid))
    round_trip(Publish("t", b""))
    round_trip(Publish("t", bytes(range(256)) * 600, 1, False, False, 1))  # 3-byte length
    round_trip(Publish("/", b"x"))
    round_trip(Publish("$SYS/x", b"x"))
    round_trip(Publish("\u00e9t\u00e9/\U0001f600", b"x"))
    round_trip(Publish("", b"x", 0, False, False, 0, {P.PROP_TOPIC_ALIAS: 3}))
    round_trip(Publish("t", b"x", 0, False, False, 0,
                       {P.PROP_SUBSCRIPTION_IDENTIFIER: [1, 2, 268435455]}))


def test_ack_variants():
    for t in (codec.PUBACK, codec.PUBREC):
        for rc in (0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99):
            round_trip(Ack(t, 1, rc))
            round_trip(Ack(t, 65535, rc, {P.PROP_REASON_STRING: "r"}))
    for t in (codec.PUBREL, codec.PUBCOMP):
        for rc in (0x00, 0x92):
            round_trip(Ack(t, 1, rc))
            round_trip(Ack(t, 2, rc, {P.PROP_USER_PROPERTY: [("a", "b")]}))


def test_subscribe_variants():
    subs = []
    for qos in (0, 1, 2):
        for nl in (False, True):
            for rap in (False, True):
                for rh in (0, 1, 2):
                    subs.append(("f/%d/+/#" % len(subs), codec.sub_options(qos, nl, rap, rh)))
    round_trip(Subscribe(1, subs))
    round_trip(Subscribe(2, [("#", 0), ("+", 1), ("$share/grp/a/#", 2), ("/", 0)]))


def test_suback_unsuback_variants():
    round_trip(SubAck(codec.SUBACK, 3, [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97,
                                        0x9E, 0xA1, 0xA2]))
    round_trip(SubAck(codec.UNSUBACK, 3, [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]))


def test_unsubscribe_variants():
    round_trip(Unsubscribe(9, ["a", "b/+", "#", "$share/g/x"]))


def test_ping_disconnect_auth_variants():
    round_trip(Ping(codec.PINGREQ))
    round_trip(Ping(codec.PINGRESP))
    for rc in (0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90,
               0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F,
               0xA0, 0xA1, 0xA2):
        round_trip(Disconnect(rc))
    round_trip(Auth())  # Remaining Length 0 (3.15.2.1)
    for rc in (0x00, 0x18, 0x19):
        round_trip(Auth(rc, {P.PROP_AUTHENTICATION_METHOD: "m"}))


def test_all_fifteen_packet_types_covered():
    seen = set()
    pkts = [Connect(), Connack(), Publish("t"), Ack(4, 1), Ack(5, 1), Ack(6, 1), Ack(7, 1),
            Subscribe(1, [("a", 0)]), SubAck(9, 1, [0]), Unsubscribe(1, ["a"]),
            SubAck(11, 1, [0]), Ping(12), Ping(13), Disconnect(), Auth()]
    for p in pkts:
        data = round_trip(p)
        seen.add(data[0] >> 4)
    eq(sorted(seen), list(range(1, 16)))
