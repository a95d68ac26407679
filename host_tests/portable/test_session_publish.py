"""Session: QoS 0/1/2 flows in both directions, packet identifiers, and the server's
limits on what we publish (Receive Maximum, Maximum QoS, Retain Available, Maximum
Packet Size, Topic Alias Maximum).

Portable: runs under pytest and under real MicroPython (tools/mp_run.mjs).
"""

from _session_util import (
    ack,
    connect,
    connected,
    drain,
    eq,
    fail,
    feed,
    new,
    nothing_sent,
    poll,
    pump_all,
    take,
    usage_error,
)

from mqtt_v5 import properties as P
from mqtt_v5 import session as S
from mqtt_v5._server_codec import PUBACK, PUBCOMP, PUBREC, PUBREL, Ack, Publish
from mqtt_v5.errors import QueueFull

# ------------------------------------------------------------ outbound QoS ---


def test_qos0_publish():
    s = connected()
    eq(s.publish(b"a/b", b"hello"), 0)
    eq(take(s), Publish("a/b", b"hello"))
    eq(s.inflight(), 0)
    eq(drain(s), [])


def test_publish_with_properties_and_retain():
    s = connected()
    props = {P.PROP_CONTENT_TYPE: "text/plain", P.PROP_USER_PROPERTY: [("k", "v")]}
    s.publish("a/b", b"text", 0, True, props)
    eq(take(s), Publish("a/b", b"text", 0, True, False, 0, props))


def test_qos1_publish_and_puback():
    s = connected()
    pid = s.publish(b"a", b"1", 1, token="T")
    eq(pid, 1)
    eq(take(s), Publish("a", b"1", 1, packet_id=1))
    eq(s.inflight(), 1)
    feed(s, ack(PUBACK, pid))
    eq(poll(s), (S.EV_PUBLISH_DONE, None))
    eq((s.ev_pid, s.ev_rc, s.ev_token), (1, 0, "T"))
    eq(s.inflight(), 0)


def test_qos1_puback_no_matching_subscribers_is_success():
    s = connected()
    pid = s.publish(b"a", b"1", 1)
    take(s)
    feed(s, ack(PUBACK, pid, 0x10))
    eq(poll(s), (S.EV_PUBLISH_DONE, None))
    eq(s.ev_rc, 0x10)


def test_qos2_publish_full_flow():
    s = connected()
    pid = s.publish(b"a", b"2", 2, token="Q2")
    eq(take(s), Publish("a", b"2", 2, packet_id=pid))
    feed(s, ack(PUBREC, pid))
    ev, pkt = poll(s)
    eq(ev, S.EV_CONTINUE)
    eq(pkt, Ack(PUBREL, pid))
    eq(s.inflight(), 1)  # still in flight until PUBCOMP
    feed(s, ack(PUBCOMP, pid))
    eq(poll(s), (S.EV_PUBLISH_DONE, None))
    eq((s.ev_pid, s.ev_rc, s.ev_token), (pid, 0, "Q2"))
    eq(s.inflight(), 0)
    eq(drain(s), [])


def test_qos2_duplicate_pubrec_gets_pubrel_again():
    s = connected()
    pid = s.publish(b"a", b"2", 2)
    take(s)
    feed(s, ack(PUBREC, pid))
    eq(poll(s)[1], Ack(PUBREL, pid))
    feed(s, ack(PUBREC, pid))
    eq(poll(s)[1], Ack(PUBREL, pid))
    feed(s, ack(PUBCOMP, pid))
    eq(poll(s)[0], S.EV_PUBLISH_DONE)


def test_pubrec_for_unknown_id_answers_pubrel_0x92():
    s = connected()
    feed(s, ack(PUBREC, 77))
    eq(poll(s), (S.EV_CONTINUE, Ack(PUBREL, 77, 0x92)))
    eq(s.state, S.CONNECTED)


def test_failed_puback_frees_the_slot():
    s = connected(props={P.PROP_RECEIVE_MAXIMUM: 1})
    pid = s.publish(b"a", b"1", 1, token="T")
    take(s)
    eq(s.window_open(), False)
    feed(s, ack(PUBACK, pid, 0x87))
    eq(poll(s), (S.EV_PUBLISH_FAILED, None))
    eq((s.ev_pid, s.ev_rc, s.ev_token), (pid, 0x87, "T"))
    eq(s.inflight(), 0)
    eq(s.window_open(), True)
    eq(s.state, S.CONNECTED)


def test_failed_pubrec_ends_the_qos2_exchange():
    # [MQTT-4.3.3-4] no PUBREL after a PUBREC >= 0x80
    s = connected()
    pid = s.publish(b"a", b"1", 2, token="T")
    take(s)
    feed(s, ack(PUBREC, pid, 0x97))
    eq(poll(s), (S.EV_PUBLISH_FAILED, None))
    eq((s.ev_pid, s.ev_rc, s.ev_token), (pid, 0x97, "T"))
    eq(s.inflight(), 0)
    # the id is free again: a later PUBCOMP for it is a protocol error, not a completion
    eq(drain(s), [])


def test_pubcomp_with_0x92_is_a_failure():
    s = connected()
    pid = s.publish(b"a", b"1", 2)
    take(s)
    feed(s, ack(PUBREC, pid))
    poll(s)
    feed(s, ack(PUBCOMP, pid, 0x92))
    eq(poll(s)[0], S.EV_PUBLISH_FAILED)
    eq(s.ev_rc, 0x92)


def test_acks_in_any_order():
    s = connected()
    pids = []
    for i in range(6):
        pids.append(s.publish(b"t", bytes([i]), 1 + (i & 1), token=i))
        take(s)
    eq(pids, [1, 2, 3, 4, 5, 6])
    done = []
    for pid in (4, 1, 6, 3, 2, 5):
        qos = 1 + ((pid - 1) & 1)
        if qos == 2:
            feed(s, ack(PUBREC, pid))
            eq(poll(s)[1], Ack(PUBREL, pid))
            feed(s, ack(PUBCOMP, pid))
        else:
            feed(s, ack(PUBACK, pid))
        eq(poll(s)[0], S.EV_PUBLISH_DONE)
        done.append(s.ev_token)
    eq(done, [3, 0, 5, 2, 1, 4])
    eq(s.inflight(), 0)


def test_large_payload_goes_out_as_a_tail():
    s = connected(out_size=64)
    payload = bytes(range(200))
    pid = s.publish(b"big", payload, 1)
    eq(s.out_tail is payload, True)  # never copied
    eq(take(s), Publish("big", payload, 1, packet_id=pid))


def test_publish_before_flushing_is_a_usage_error():
    s = connected()
    s.publish(b"a", b"1")
    usage_error(None, s.publish, b"a", b"2")
    usage_error(None, s.poll, 0)
    eq(take(s), Publish("a", b"1"))


def test_invalid_qos():
    s = connected()
    usage_error(None, s.publish, b"a", b"", 3)
    usage_error(None, s.publish, b"a", b"", -1)
    nothing_sent(s)


def test_invalid_topic_changes_nothing():
    s = connected()
    usage_error(0x90, s.publish, b"a/+", b"", 1)
    usage_error(0x90, s.publish, b"", b"", 1)
    nothing_sent(s)
    eq(s.inflight(), 0)
    eq(s.publish(b"a", b"", 1), 1)  # no packet id was used up


# --------------------------------------------------------- packet identifiers ---

def test_packet_ids_wrap_and_are_never_zero():
    s = connected()
    s._next_pid = 65533
    got = []
    for _ in range(4):
        pid = s.publish(b"a", b"", 1)
        take(s)
        feed(s, ack(PUBACK, pid))
        poll(s)
        got.append(pid)
    eq(got, [65534, 65535, 1, 2])


def test_packet_ids_skip_those_in_use():
    s = connected()
    held = s.publish(b"a", b"", 1)  # id 1 stays in flight
    take(s)
    sub = s.subscribe([("x", 0)])  # id 2 awaits its SUBACK
    take(s)
    eq((held, sub), (1, 2))
    s._next_pid = 65535  # the counter wraps back onto ids still in use
    pid = s.publish(b"a", b"", 2)
    take(s)
    eq(pid, 3)
    s._next_pid = 0
    eq(s.unsubscribe(["x"]), 4)
    take(s)


def test_packet_ids_shared_by_publish_and_subscribe():
    s = connected()
    ids = []
    ids.append(s.publish(b"a", b"", 1))
    take(s)
    ids.append(s.subscribe([("a", 1)]))
    take(s)
    ids.append(s.publish(b"a", b"", 2))
    take(s)
    eq(ids, [1, 2, 3])


# ------------------------------------------------------------ Receive Maximum ---

def test_receive_maximum_window():
    s = connected(props={P.PROP_RECEIVE_MAXIMUM: 2})
    eq(s.publish(b"t", b"1", 1, token=1), 1)
    take(s)
    eq(s.publish(b"t", b"2", 2, token=2), 2)
    take(s)
    eq(s.window_open(), False)
    # the 3rd QoS 1 PUBLISH waits: nothing sent
    eq(s.publish(b"t", b"3", 1, token=3), 0)
    nothing_sent(s)
    eq((s.inflight(), s.queued()), (2, 1))
    eq(s.pump(), None)  # still no room
    nothing_sent(s)
    # a QoS 0 message keeps its place behind the waiting one
    eq(s.publish(b"t", b"4", 0, token=4), 0)
    nothing_sent(s)
    feed(s, ack(PUBACK, 1))
    eq(poll(s)[0], S.EV_PUBLISH_DONE)
    eq(s.pump(), 3)
    eq(take(s), Publish("t", b"3", 1, packet_id=3))
    eq(s.inflight(), 2)
    eq(s.pump(), 4)  # QoS 0 needs no window
    eq(take(s), Publish("t", b"4"))
    eq((s.pump(), s.queued()), (None, 0))


def test_our_max_inflight_caps_the_servers_receive_maximum():
    s = connected(max_inflight=2)  # server allows 65535
    s.publish(b"t", b"1", 1)
    take(s)
    s.publish(b"t", b"2", 1)
    take(s)
    eq(s.publish(b"t", b"3", 1), 0)
    nothing_sent(s)
    eq(s.queued(), 1)


def test_qos0_goes_straight_out_when_the_window_is_full():
    s = connected(props={P.PROP_RECEIVE_MAXIMUM: 1})
    s.publish(b"t", b"1", 1)
    take(s)
    s.publish(b"t", b"0", 0)
    eq(take(s), Publish("t", b"0"))


# ------------------------------------------------------- server limits on PUBLISH ---

def test_maximum_qos_1_refuses_qos2_like_aws_iot():
    s = connected(props={P.PROP_MAXIMUM_QOS: 1})
    e = usage_error(0x9B, s.publish, b"t", b"x", 2)
    eq(e.reason_code, 0x9B)
    nothing_sent(s)
    eq((s.inflight(), s.queued()), (0, 0))
    eq(s.publish(b"t", b"x", 1), 1)
    take(s)


def test_maximum_qos_0():
    s = connected(props={P.PROP_MAXIMUM_QOS: 0})
    usage_error(0x9B, s.publish, b"t", b"x", 1)
    usage_error(0x9B, s.publish, b"t", b"x", 2)
    s.publish(b"t", b"x", 0)
    take(s)


def test_retain_not_available():
    s = connected(props={P.PROP_RETAIN_AVAILABLE: 0})
    usage_error(0x9A, s.publish, b"t", b"x", 0, True)
    nothing_sent(s)
    s.publish(b"t", b"x", 0, False)
    take(s)


def test_maximum_packet_size():
    s = connected(props={P.PROP_MAXIMUM_PACKET_SIZE: 100})
    # 1 + 1 (remaining length) + 2 + 1 (topic) + 2 (id) + 1 (no properties) = 8 + payload
    usage_error(0x95, s.publish, b"t", bytes(93), 1)
    nothing_sent(s)
    eq((s.inflight(), s.queued()), (0, 0))
    pid = s.publish(b"t", bytes(92), 1)
    eq(pid, 1)  # the refused publish used no packet id
    eq(len(take(s).payload), 92)


def test_maximum_packet_size_counts_properties_and_alias():
    s = connected(props={P.PROP_MAXIMUM_PACKET_SIZE: 20, P.PROP_TOPIC_ALIAS_MAXIMUM: 2})
    # 12 bytes without properties; the alias property adds 3
    s.publish(b"t", bytes(6), 0, topic_alias=1)  # 18
    take(s)
    usage_error(0x95, s.publish, b"t", bytes(6), 0, props={P.PROP_CONTENT_TYPE: "abcdef"})
    nothing_sent(s)


def test_too_big_auto_aliased_publish_does_not_claim_the_alias():
    # The server must learn an alias from a PUBLISH that it actually receives.
    s = connected(props={P.PROP_MAXIMUM_PACKET_SIZE: 50, P.PROP_TOPIC_ALIAS_MAXIMUM: 2},
                  connect_kw={"auto_alias": True})
    usage_error(0x95, s.publish, b"t/x", bytes(60), 0)
    s.publish(b"t/x", b"small", 0)
    pkt = take(s)
    eq(pkt.topic, "t/x")  # the whole topic, since the server never saw it
    eq(pkt.properties, {P.PROP_TOPIC_ALIAS: 1})
    s.publish(b"t/x", b"again", 0)
    eq(take(s).topic, "")


# --------------------------------------------------------- outbound topic aliases ---

def test_explicit_alias():
    s = connected(props={P.PROP_TOPIC_ALIAS_MAXIMUM: 3})
    s.publish(b"long/topic/name", b"1", 0, topic_alias=2)
    eq(take(s), Publish("long/topic/name", b"1", properties={P.PROP_TOPIC_ALIAS: 2}))
    s.publish(b"long/topic/name", b"2", 1, topic_alias=2)
    eq(take(s), Publish("", b"2", 1, packet_id=1, properties={P.PROP_TOPIC_ALIAS: 2}))
    # re-mapping alias 2 to another topic sends that topic in full
    s.publish(b"other", b"3", 0, topic_alias=2)
    eq(take(s), Publish("other", b"3", properties={P.PROP_TOPIC_ALIAS: 2}))
    s.publish(b"long/topic/name", b"4", 0, topic_alias=2)
    eq(take(s).topic, "long/topic/name")


def test_alias_above_the_servers_maximum():
    s = connected(props={P.PROP_TOPIC_ALIAS_MAXIMUM: 3})
    usage_error(0x94, s.publish, b"t", b"x", 1, topic_alias=4)
    nothing_sent(s)
    eq(s.inflight(), 0)


def test_alias_when_the_server_allows_none():
    s = connected()
    usage_error(0x94, s.publish, b"t", b"x", 0, topic_alias=1)
    nothing_sent(s)


def test_auto_alias_up_to_the_maximum_then_full_topics():
    s = connected(props={P.PROP_TOPIC_ALIAS_MAXIMUM: 2}, connect_kw={"auto_alias": True})
    s.publish(b"a/1", b"", 0)
    eq(take(s), Publish("a/1", b"", properties={P.PROP_TOPIC_ALIAS: 1}))
    s.publish(b"a/2", b"", 0)
    eq(take(s), Publish("a/2", b"", properties={P.PROP_TOPIC_ALIAS: 2}))
    s.publish(b"a/3", b"", 0)
    eq(take(s), Publish("a/3", b""))  # no alias left
    s.publish(b"a/1", b"", 1)
    eq(take(s), Publish("", b"", 1, packet_id=1, properties={P.PROP_TOPIC_ALIAS: 1}))
    s.publish(b"a/2", b"", 0)
    eq(take(s), Publish("", b"", properties={P.PROP_TOPIC_ALIAS: 2}))
    s.publish(b"a/3", b"", 0)
    eq(take(s), Publish("a/3", b""))


def test_auto_alias_without_server_aliases_sends_full_topics():
    s = connected(connect_kw={"auto_alias": True})
    s.publish(b"a", b"", 0)
    eq(take(s), Publish("a", b""))


def test_auto_alias_never_exceeds_the_maximum_after_an_explicit_one():
    s = connected(props={P.PROP_TOPIC_ALIAS_MAXIMUM: 2}, connect_kw={"auto_alias": True})
    s.publish(b"x", b"", 0, topic_alias=2)
    eq(take(s).properties, {P.PROP_TOPIC_ALIAS: 2})
    s.publish(b"y", b"", 0)
    pkt = take(s)
    eq(pkt.topic, "y")
    eq(pkt.properties, {P.PROP_TOPIC_ALIAS: 1})
    s.publish(b"z", b"", 0)
    eq(take(s), Publish("z", b""))


def test_outbound_aliases_reset_on_reconnect():
    # Topic aliases live for one network connection [MQTT-3.3.2-7].
    s = connected(props={P.PROP_TOPIC_ALIAS_MAXIMUM: 2}, connect_kw={"auto_alias": True})
    s.publish(b"a/1", b"", 0)
    take(s)
    s.publish(b"a/1", b"", 0)
    eq(take(s).topic, "")
    s.connection_lost()
    connect(s, 2000, {P.PROP_TOPIC_ALIAS_MAXIMUM: 2}, auto_alias=True)
    s.publish(b"a/1", b"", 0)
    eq(take(s), Publish("a/1", b"", properties={P.PROP_TOPIC_ALIAS: 1}))


def test_resent_publish_carries_the_full_topic():
    # After a reconnect the old aliases mean nothing: the DUP resend has the topic.
    s = connected(props={P.PROP_TOPIC_ALIAS_MAXIMUM: 2}, connect_kw={"auto_alias": True,
                                                                    "clean_start": False})
    s.publish(b"a/1", b"x", 0)
    take(s)
    pid = s.publish(b"a/1", b"y", 1)
    eq(take(s).topic, "")
    s.connection_lost()
    connect(s, 2000, {P.PROP_TOPIC_ALIAS_MAXIMUM: 2}, True, clean_start=False, auto_alias=True)
    eq(pump_all(s), [Publish("a/1", b"y", 1, dup=True, packet_id=pid)])


# ----------------------------------------------------------------- inbound QoS ---

def test_inbound_qos0():
    s = connected()
    feed(s, Publish("in/0", b"hello", 0, True))
    ev, pkt = poll(s)
    eq((ev, pkt), (S.EV_MESSAGE, None))
    m = s.msg
    eq(bytes(s.topic_buf[s.topic_start:s.topic_end]), b"in/0")
    eq((m.qos, m.retain, m.dup, m.payload()), (0, True, False, b"hello"))
    eq(drain(s), [])


def test_inbound_qos1_acked_on_the_next_poll():
    s = connected()
    feed(s, Publish("in/1", b"x", 1, packet_id=9), Publish("in/1", b"y", 1, packet_id=10))
    eq(poll(s), (S.EV_MESSAGE, None))  # the application sees it first
    eq((s.msg.packet_id, s.msg.payload()), (9, b"x"))
    eq(poll(s), (S.EV_CONTINUE, Ack(PUBACK, 9)))
    eq(poll(s), (S.EV_MESSAGE, None))
    eq(s.msg.payload(), b"y")
    eq(poll(s), (S.EV_CONTINUE, Ack(PUBACK, 10)))
    eq(drain(s), [])


def test_inbound_qos2_exactly_once():
    s = connected()
    feed(s, Publish("in/2", b"once", 2, packet_id=5))
    eq(poll(s), (S.EV_MESSAGE, None))
    eq(s.msg.payload(), b"once")
    eq(poll(s), (S.EV_CONTINUE, Ack(PUBREC, 5)))
    # the server did not get our PUBREC and resends with DUP: acknowledged, not delivered
    feed(s, Publish("in/2", b"once", 2, dup=True, packet_id=5))
    eq(drain(s), [(S.EV_CONTINUE, Ack(PUBREC, 5))])
    feed(s, Ack(PUBREL, 5))
    eq(drain(s), [(S.EV_CONTINUE, Ack(PUBCOMP, 5))])
    # the id is free again: a new message with it is delivered
    feed(s, Publish("in/2", b"next", 2, packet_id=5))
    eq(poll(s)[0], S.EV_MESSAGE)
    eq(s.msg.payload(), b"next")
    eq(poll(s)[1], Ack(PUBREC, 5))


def test_inbound_qos2_resend_before_our_pubrec_left():
    # The message was delivered; the connection dropped before the PUBREC was polled out.
    s = connected(connect_kw={"clean_start": False})
    feed(s, Publish("in/2", b"once", 2, packet_id=5))
    eq(poll(s)[0], S.EV_MESSAGE)
    s.connection_lost()
    connect(s, 2000, None, True, clean_start=False)
    feed(s, Publish("in/2", b"once", 2, dup=True, packet_id=5))
    eq(drain(s, 2000), [(S.EV_CONTINUE, Ack(PUBREC, 5))])


def test_pubrel_for_unknown_id_answers_pubcomp_0x92():
    s = connected()
    feed(s, Ack(PUBREL, 1234))
    eq(drain(s), [(S.EV_CONTINUE, Ack(PUBCOMP, 1234, 0x92))])
    eq(s.state, S.CONNECTED)


def test_inbound_qos2_up_to_our_receive_maximum():
    s = connected(receive_maximum=2)
    for pid in (1, 2):
        feed(s, Publish("t", b"", 2, packet_id=pid))
        eq(poll(s)[0], S.EV_MESSAGE)
        eq(poll(s)[1], Ack(PUBREC, pid))
    feed(s, Ack(PUBREL, 1))
    eq(poll(s)[1], Ack(PUBCOMP, 1))
    feed(s, Publish("t", b"", 2, packet_id=3))
    eq(poll(s)[0], S.EV_MESSAGE)


def test_publish_from_the_message_callback():
    # The driver may publish between the EV_MESSAGE and the poll that acknowledges it.
    s = connected()
    feed(s, Publish("in", b"q", 1, packet_id=3))
    eq(poll(s)[0], S.EV_MESSAGE)
    pid = s.publish(b"reply", s.msg.payload(), 1)
    eq(take(s), Publish("reply", b"q", 1, packet_id=pid))
    eq(poll(s), (S.EV_CONTINUE, Ack(PUBACK, 3)))


def test_byte_by_byte_input():
    s = connected()
    from mqtt_v5._server_codec import encode_bytes
    data = encode_bytes(Publish("a/b", b"payload", 1, packet_id=7)) + encode_bytes(Ack(PUBACK, 1))
    s.publish(b"x", b"", 1)
    take(s)
    events = []
    for i in range(len(data)):
        feed(s, data[i:i + 1])
        events.extend(drain(s))
    eq([e for e, _ in events], [S.EV_MESSAGE, S.EV_CONTINUE, S.EV_PUBLISH_DONE])
    eq(events[1][1], Ack(PUBACK, 7))


# --------------------------------------------------------- inbound topic aliases ---

def test_inbound_alias_set_then_used():
    s = connected(topic_alias_maximum=4)
    feed(s, Publish("sensors/kitchen/temp", b"21", properties={P.PROP_TOPIC_ALIAS: 4}))
    eq(poll(s)[0], S.EV_MESSAGE)
    eq(bytes(s.topic_buf[s.topic_start:s.topic_end]), b"sensors/kitchen/temp")
    feed(s, Publish("", b"22", properties={P.PROP_TOPIC_ALIAS: 4}))
    eq(poll(s)[0], S.EV_MESSAGE)
    eq(bytes(s.topic_buf[s.topic_start:s.topic_end]), b"sensors/kitchen/temp")
    eq(s.msg.payload(), b"22")
    # re-mapped by the server
    feed(s, Publish("other", b"", properties={P.PROP_TOPIC_ALIAS: 4}),
         Publish("", b"23", properties={P.PROP_TOPIC_ALIAS: 4}))
    poll(s)
    eq(poll(s)[0], S.EV_MESSAGE)
    eq(bytes(s.topic_buf[s.topic_start:s.topic_end]), b"other")


def test_inbound_aliases_forgotten_on_reconnect():
    s = connected(topic_alias_maximum=2)
    feed(s, Publish("t/1", b"", properties={P.PROP_TOPIC_ALIAS: 1}))
    poll(s)
    s.connection_lost()
    connect(s, 2000)
    feed(s, Publish("", b"", properties={P.PROP_TOPIC_ALIAS: 1}))
    from _session_util import protocol_failure
    protocol_failure(s, 0x82)


# ------------------------------------------------------------------ offline queue ---

def test_queue_while_disconnected_then_pump_in_order():
    s = new()
    tokens = []
    for i in range(5):
        eq(s.publish(b"q", bytes([i]), i % 3, token="m%d" % i), 0)
        tokens.append("m%d" % i)
    nothing_sent(s)
    eq(s.queued(), 5)
    connect(s)
    eq(s.window_open(), True)
    sent = []
    got = []
    while True:
        tok = s.pump()
        if tok is None:
            break
        got.append(tok)
        sent.append(take(s))
    eq(got, tokens)
    eq([p.payload for p in sent], [bytes([i]) for i in range(5)])
    eq([p.qos for p in sent], [0, 1, 2, 0, 1])
    eq([p.packet_id for p in sent], [0, 1, 2, 0, 3])
    eq(s.queued(), 0)


def test_publish_while_the_queue_is_not_empty_keeps_order():
    s = new()
    s.publish(b"q", b"1", 1)
    connect(s)
    eq(s.publish(b"q", b"2", 0), 0)  # behind the queued one
    nothing_sent(s)
    eq([p.payload for p in pump_all(s)], [b"1", b"2"])


def test_queue_full_by_count():
    s = new(max_queued=2)
    s.publish(b"q", b"1", 1)
    s.publish(b"q", b"2", 0)
    e = None
    try:
        s.publish(b"q", b"3", 1)
    except QueueFull as exc:
        e = exc
    if e is None:
        fail("QueueFull not raised")
    eq(s.queued(), 2)


def test_queue_full_by_bytes():
    s = new(max_queued_bytes=100)
    s.publish(b"q", bytes(50), 1)  # 51 bytes counted (topic + payload)
    s.publish(b"q", bytes(47), 1)  # 99
    try:
        s.publish(b"q", bytes(1), 1)  # 101
        fail("QueueFull not raised")
    except QueueFull:
        pass
    s.publish(b"q", b"", 1)  # 100: exactly the bound
    eq(s.queued(), 3)
    # draining the queue frees its bytes
    connect(s)
    pump_all(s)
    for pid in (1, 2, 3):
        feed(s, ack(PUBACK, pid))
    drain(s)
    s.connection_lost()
    s.publish(b"q", bytes(99), 1)
    eq(s.queued(), 1)


def test_queued_message_the_new_server_refuses():
    s = new()
    s.publish(b"q", b"2", 2, token="two")
    s.publish(b"q", b"1", 1, token="one")
    connect(s, props={P.PROP_MAXIMUM_QOS: 1})
    eq(s.pump(), False)
    eq((s.ev_token, s.ev_rc), ("two", 0x9B))
    nothing_sent(s)
    eq(s.pump(), "one")
    take(s)
