"""Session: a server that breaks the protocol. In every case ``poll`` raises
ProtocolError with the reason code the spec calls for, after queueing a DISCONNECT
with that code, and the session is DISCONNECTED.

Portable: runs under pytest and under real MicroPython (tools/mp_run.mjs).
"""

from _session_util import (
    T0,
    ack,
    connected,
    eq,
    feed,
    new,
    nothing_sent,
    poll,
    protocol_failure,
    take,
)

from mqtt_v5 import properties as P
from mqtt_v5 import session as S
from mqtt_v5._server_codec import (
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBREC,
    Connack,
    Connect,
    Ping,
    Publish,
    SubAck,
    Subscribe,
    Unsubscribe,
    encode_bytes,
)


def connecting():
    s = new()
    s.connect(T0)
    take(s)
    return s


def test_puback_for_unknown_id():
    s = connected()
    feed(s, ack(PUBACK, 5))
    protocol_failure(s, 0x82)


def test_puback_for_a_qos2_message():
    s = connected()
    pid = s.publish(b"t", b"", 2)
    take(s)
    feed(s, ack(PUBACK, pid))
    protocol_failure(s, 0x82)


def test_pubcomp_before_pubrec():
    s = connected()
    pid = s.publish(b"t", b"", 2)
    take(s)
    feed(s, ack(PUBCOMP, pid))
    protocol_failure(s, 0x82)


def test_pubcomp_for_unknown_id():
    s = connected()
    feed(s, ack(PUBCOMP, 9))
    protocol_failure(s, 0x82)


def test_suback_for_unknown_id():
    s = connected()
    feed(s, SubAck(9, 3, [0]))
    protocol_failure(s, 0x82)


def test_second_connack():
    s = connected()
    feed(s, Connack())
    protocol_failure(s, 0x82)


def test_client_only_packets_sent_to_a_client():
    for pkt in (Subscribe(1, [("a", 0)]), Unsubscribe(1, ["a"]), Connect("x"),
                Ping(PINGREQ)):
        s = connected()
        feed(s, pkt)
        protocol_failure(s, 0x82)


def test_packets_before_connack():
    for pkt in (Publish("t", b""), Ping(PINGRESP), ack(PUBACK, 1), SubAck(9, 1, [0]),
                Subscribe(1, [("a", 0)])):
        s = connecting()
        feed(s, pkt)
        protocol_failure(s, 0x82)


def test_malformed_remaining_length():
    s = connected()
    feed(s, b"\x30\xff\xff\xff\xff\x01")  # five bytes of length [MQTT-1.5.5]
    protocol_failure(s, 0x81)


def test_remaining_length_not_minimal():
    s = connected()
    feed(s, b"\xd0\x80\x00")  # PINGRESP with 0 encoded on two bytes
    protocol_failure(s, 0x81)


def test_packet_bigger_than_our_maximum_refused_before_its_body():
    s = connected(max_packet_size=128)
    # only the fixed header of a 200-byte PUBLISH has arrived
    feed(s, b"\x30\xc5\x01")
    protocol_failure(s, 0x95)


def test_packet_exactly_our_maximum_is_fine():
    s = connected(max_packet_size=128)
    # 1 + 1 (remaining length 126) + 2 + 1 (topic) + 1 (no properties) + 122
    data = encode_bytes(Publish("t", bytes(122)))
    eq(len(data), 128)
    eq(s.poll(T0), S.EV_NONE)  # the reader rewinds to the start of its buffer
    feed(s, data)
    eq(poll(s)[0], S.EV_MESSAGE)


def test_reserved_packet_type_0():
    s = connected()
    feed(s, b"\x00\x00")
    protocol_failure(s, 0x81)


def test_reserved_flags_on_puback():
    s = connected()
    s.publish(b"t", b"", 1)
    take(s)
    feed(s, b"\x41\x02\x00\x01")
    protocol_failure(s, 0x81)


def test_publish_qos3():
    s = connected()
    feed(s, b"\x36\x05\x00\x01t\x00\x01")
    protocol_failure(s, 0x81)


def test_publish_with_a_wildcard_topic():
    s = connected()
    feed(s, b"\x30\x04\x00\x01#\x00")
    protocol_failure(s, 0x90)


def test_pingresp_with_a_body():
    s = connected()
    feed(s, b"\xd0\x01\x00")
    protocol_failure(s, 0x81)


def test_inbound_alias_above_our_maximum():
    s = connected(topic_alias_maximum=2)
    feed(s, Publish("t", b"", properties={P.PROP_TOPIC_ALIAS: 3}))
    protocol_failure(s, 0x94)


def test_inbound_alias_when_we_allow_none():
    s = connected(topic_alias_maximum=0)
    feed(s, Publish("t", b"", properties={P.PROP_TOPIC_ALIAS: 1}))
    protocol_failure(s, 0x94)


def test_unknown_inbound_alias_with_empty_topic():
    s = connected(topic_alias_maximum=2)
    feed(s, Publish("", b"", properties={P.PROP_TOPIC_ALIAS: 2}))
    protocol_failure(s, 0x82)


def test_too_many_inbound_qos2():
    s = connected(receive_maximum=1)
    feed(s, Publish("t", b"", 2, packet_id=1), Publish("t", b"", 2, packet_id=2))
    eq(poll(s)[0], S.EV_MESSAGE)
    eq(poll(s)[1].packet_id, 1)  # PUBREC 1
    protocol_failure(s, 0x93)


def test_bad_connack():
    # reason code not allowed in CONNACK
    s = connecting()
    feed(s, b"\x20\x03\x00\x04\x00")
    protocol_failure(s, 0x82)
    # Receive Maximum 0 (MQTT 5.0 3.2.2.3.3)
    s = connecting()
    feed(s, b"\x20\x06\x00\x00\x03\x21\x00\x00")
    protocol_failure(s, 0x82)


def test_nothing_is_handled_after_a_protocol_error():
    s = connected()
    feed(s, ack(PUBACK, 5), Publish("t", b"after", 1, packet_id=1))
    protocol_failure(s, 0x82)
    eq(s.poll(T0), S.EV_NONE)
    nothing_sent(s)


def test_nothing_is_handled_after_a_server_disconnect():
    from mqtt_v5._server_codec import Disconnect
    s = connected()
    feed(s, Disconnect(0x8B), Publish("t", b"after", 1, packet_id=1))
    eq(poll(s), (S.EV_DISCONNECT, None))
    eq(s.poll(T0), S.EV_NONE)
    nothing_sent(s)


def test_server_disconnect_forms_the_spec_allows():
    # No body (0x00), a reason code alone (no properties), and both: each an
    # EV_DISCONNECT with its code and properties, nothing sent back [MQTT-3.14.2.1].
    from mqtt_v5._server_codec import Disconnect
    for data, rc, props in ((b"\xe0\x00", 0, {}), (b"\xe0\x01\x8b", 0x8B, {}),
                            (Disconnect(0x9C, {P.PROP_SERVER_REFERENCE: "b:1883"}), 0x9C,
                             {P.PROP_SERVER_REFERENCE: "b:1883"})):
        s = connected()
        feed(s, data)
        eq(poll(s), (S.EV_DISCONNECT, None))
        eq((s.ev_rc, s.ev_props), (rc, props))
        eq(s.state, S.DISCONNECTED)


def test_server_disconnect_the_spec_forbids():
    # 0x04 (with will) is the client's; a server sends no Session Expiry Interval
    # [MQTT-3.14.2-2]; a reason code DISCONNECT does not have; bytes after the properties.
    from mqtt_v5._server_codec import Disconnect
    for data in (Disconnect(0x04), Disconnect(0x8B, {P.PROP_SESSION_EXPIRY_INTERVAL: 5}),
                 b"\xe0\x01\x05", b"\xe0\x03\x8b\x00\x00"):
        s = connected()
        feed(s, data)
        protocol_failure(s, 0x81 if isinstance(data, bytes) and len(data) == 5 else 0x82)


def test_duplicate_pubrec_answered_twice_is_fine_but_failure_then_pubcomp_is_not():
    s = connected()
    pid = s.publish(b"t", b"", 2)
    take(s)
    feed(s, ack(PUBREC, pid, 0x80))
    eq(poll(s)[0], S.EV_PUBLISH_FAILED)
    feed(s, ack(PUBCOMP, pid))
    protocol_failure(s, 0x82)
