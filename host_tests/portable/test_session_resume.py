"""Session: what survives a lost connection. With CONNACK session_present=1 the
unacknowledged PUBLISH packets go out again with DUP=1 and their packet ids, and PUBREL
for QoS 2 awaiting PUBCOMP, in the original order [MQTT-4.4.0-1] [MQTT-4.6.0-1]; with
session_present=0 the messages are sent again as new publishes, so nothing is lost.

Portable: runs under pytest and under real MicroPython (tools/mp_run.mjs).
"""

from _session_util import (
    ack,
    connect,
    connected,
    drain,
    eq,
    feed,
    new,
    nothing_sent,
    poll,
    protocol_failure,
    pump_all,
    take,
)

from mqtt_v5 import session as S
from mqtt_v5._server_codec import PUBACK, PUBCOMP, PUBREC, PUBREL, Ack, Connack, Publish

T1 = 50000  # time of the reconnect


def three_in_flight():
    """QoS 1 awaiting PUBACK (id 1), QoS 2 awaiting PUBREC (id 2), QoS 2 awaiting PUBCOMP
    (id 3), then the link drops."""
    s = connected(connect_kw={"clean_start": False, "session_expiry_s": 600})
    eq(s.publish(b"t/1", b"one", 1, token="one"), 1)
    take(s)
    eq(s.publish(b"t/2", b"two", 2, token="two"), 2)
    take(s)
    eq(s.publish(b"t/3", b"three", 2, token="three"), 3)
    take(s)
    feed(s, ack(PUBREC, 3))
    eq(poll(s)[1], Ack(PUBREL, 3))
    s.connection_lost()
    eq(s.state, S.DISCONNECTED)
    return s


def test_resume_resends_with_dup_and_pubrel():
    s = three_in_flight()
    connect(s, T1, None, True, clean_start=False)
    eq(s.window_open(), False)  # resends come first
    eq(s.publish(b"t/4", b"four", 1, token="four"), 0)  # waits behind them
    nothing_sent(s)
    toks = []
    sent = []
    while True:
        tok = s.pump()
        if tok is None:
            break
        toks.append(tok)
        sent.append(take(s, T1))
    eq(sent, [
        Publish("t/1", b"one", 1, dup=True, packet_id=1),
        Publish("t/2", b"two", 2, dup=True, packet_id=2),
        Ack(PUBREL, 3),
        Publish("t/4", b"four", 1, packet_id=4),
    ])
    eq(toks, ["one", "two", "three", "four"])
    # and the flows complete as usual
    feed(s, ack(PUBACK, 1), ack(PUBREC, 2), ack(PUBCOMP, 3), ack(PUBACK, 4))
    got = drain(s, T1)
    eq([(e, p) for e, p in got if p is not None], [(S.EV_CONTINUE, Ack(PUBREL, 2))])
    done = [e for e, _ in got if e == S.EV_PUBLISH_DONE]
    eq(len(done), 3)
    feed(s, ack(PUBCOMP, 2))
    eq(poll(s, T1), (S.EV_PUBLISH_DONE, None))
    eq(s.ev_token, "two")
    eq((s.inflight(), s.queued()), (0, 0))


def test_resends_keep_the_original_order():
    # Slots are reused: the order of the in-flight table is not the order of sending.
    s = connected(connect_kw={"clean_start": False})
    s.publish(b"t", b"A", 1)  # id 1
    take(s)
    s.publish(b"t", b"B", 1)  # id 2
    take(s)
    feed(s, ack(PUBACK, 1))
    poll(s)
    s.publish(b"t", b"C", 2)  # id 3, in the slot A had
    take(s)
    s.publish(b"t", b"D", 1)  # id 4
    take(s)
    feed(s, ack(PUBACK, 2))
    poll(s)
    s.publish(b"t", b"E", 1)  # id 5, in the slot B had
    take(s)
    s.connection_lost()
    connect(s, T1, None, True, clean_start=False)
    eq([(p.payload, p.packet_id, p.dup) for p in pump_all(s, T1)],
       [(b"C", 3, True), (b"D", 4, True), (b"E", 5, True)])


def test_not_present_sends_everything_again_as_new():
    s = three_in_flight()
    s.publish(b"t/4", b"four", 1, token="four")  # queued while offline
    connect(s, T1, None, False, clean_start=False)
    eq(s.ev_session_present, False)
    eq(s.inflight(), 0)
    sent = []
    toks = []
    while True:
        tok = s.pump()
        if tok is None:
            break
        toks.append(tok)
        sent.append(take(s, T1))
    # id 3 had reached the server (PUBREC) before it lost the session: not sent twice
    eq([(p.topic, p.payload, p.qos, p.dup) for p in sent],
       [("t/1", b"one", 1, False), ("t/2", b"two", 2, False), ("t/4", b"four", 1, False)])
    eq(toks, ["one", "two", "four"])
    eq(len({p.packet_id for p in sent}), 3)
    eq(s.queued(), 0)
    eq(s._queued_bytes, 0)


def test_requeued_messages_count_against_the_queue_bytes():
    s = connected(max_queued_bytes=100)
    s.publish(b"t", bytes(60), 1)
    take(s)
    s.connection_lost()
    connect(s, T1)  # session_present=0: the message is queued again (61 bytes)
    eq(s.queued(), 1)
    eq(s._queued_bytes, 61)
    pump_all(s, T1)
    eq(s._queued_bytes, 0)
    s.connection_lost()
    # the bound still holds exactly: 100 bytes fit, 101 do not
    s.publish(b"t", bytes(99), 1)
    from _check import raises

    from mqtt_v5.errors import QueueFull
    raises(QueueFull, s.publish, b"t", b"", 1)


def test_clean_start_reconnect_sends_everything_again():
    s = connected()
    s.publish(b"t", b"x", 1, token="x")
    take(s)
    s.connection_lost()
    connect(s, T1)  # clean_start=True, session_present=0
    eq(pump_all(s, T1), [Publish("t", b"x", 1, packet_id=2)])
    feed(s, ack(PUBACK, 2))
    eq(poll(s, T1)[0], S.EV_PUBLISH_DONE)
    eq(s.ev_token, "x")


def test_session_present_after_clean_start_is_a_protocol_error():
    # [MQTT-3.2.2-4] a client without session state must not accept Session Present
    s = new()
    s.connect(T1, clean_start=True)
    take(s)
    feed(s, Connack(0, True))
    protocol_failure(s, 0x82)


def test_inbound_qos2_state_survives_a_resumed_session():
    s = connected(connect_kw={"clean_start": False})
    feed(s, Publish("in", b"x", 2, packet_id=7))
    eq(poll(s)[0], S.EV_MESSAGE)
    eq(poll(s)[1], Ack(PUBREC, 7))
    s.connection_lost()
    connect(s, T1, None, True, clean_start=False)
    # the server resends the message (our PUBREC may have been lost): not delivered again
    feed(s, Publish("in", b"x", 2, dup=True, packet_id=7))
    eq(drain(s, T1), [(S.EV_CONTINUE, Ack(PUBREC, 7))])
    feed(s, Ack(PUBREL, 7))
    eq(drain(s, T1), [(S.EV_CONTINUE, Ack(PUBCOMP, 7))])


def test_inbound_qos2_state_dropped_with_the_session():
    s = connected(connect_kw={"clean_start": False})
    feed(s, Publish("in", b"x", 2, packet_id=7))
    poll(s)
    poll(s)
    s.connection_lost()
    connect(s, T1, None, False, clean_start=False)
    feed(s, Publish("in", b"new", 2, packet_id=7))
    eq(poll(s, T1)[0], S.EV_MESSAGE)  # a new message with a reused id


def test_resend_even_without_connection_lost():
    # A driver that goes straight from a DISCONNECT (or a protocol error) to connect()
    # must not strand its in-flight messages.
    s = connected(connect_kw={"clean_start": False})
    s.publish(b"t", b"x", 1)
    take(s)
    s.disconnect()
    take(s)
    connect(s, T1, None, True, clean_start=False)
    eq(pump_all(s, T1), [Publish("t", b"x", 1, dup=True, packet_id=1)])


def test_resend_large_payload_as_tail():
    s = connected(out_size=64, connect_kw={"clean_start": False})
    payload = bytes(range(100))
    s.publish(b"big", payload, 1)
    take(s)
    s.connection_lost()
    connect(s, T1, None, True, clean_start=False)
    eq(s.pump(), True)
    eq(s.out_tail is payload, True)
    eq(take(s, T1), Publish("big", payload, 1, dup=True, packet_id=1))


def test_messages_lost_connection_mid_flight_are_acked_once():
    # PUBACK for a resent message completes it exactly once
    s = connected(connect_kw={"clean_start": False})
    s.publish(b"t", b"x", 1, token="x")
    take(s)
    s.connection_lost()
    connect(s, T1, None, True, clean_start=False)
    pump_all(s, T1)
    feed(s, ack(PUBACK, 1))
    eq(poll(s, T1)[0], S.EV_PUBLISH_DONE)
    feed(s, ack(PUBACK, 1))
    protocol_failure(s, 0x82, T1)


def test_offline_queue_drains_after_connack():
    s = new()
    for i in range(3):
        s.publish(b"q", bytes([i]), 1, token=i)
    eq(s.pump(), None)  # not connected
    nothing_sent(s)
    connect(s, T1)
    sent = pump_all(s, T1)
    eq([(p.payload, p.packet_id) for p in sent], [(b"\x00", 1), (b"\x01", 2), (b"\x02", 3)])


def test_offline_queue_respects_the_new_receive_maximum():
    from mqtt_v5 import properties as P
    s = new()
    for i in range(3):
        s.publish(b"q", bytes([i]), 1)
    connect(s, T1, {P.PROP_RECEIVE_MAXIMUM: 2})
    eq(len(pump_all(s, T1)), 2)
    eq(s.queued(), 1)
    feed(s, ack(PUBACK, 1))
    poll(s, T1)
    eq([p.payload for p in pump_all(s, T1)], [b"\x02"])


def test_resends_respect_a_lower_receive_maximum():
    # [MQTT-3.3.4-7] the new connection's Receive Maximum covers resent PUBLISH packets
    from mqtt_v5 import properties as P
    s = connected(connect_kw={"clean_start": False})
    for i in range(3):
        s.publish(b"t", bytes([i]), 1)
        take(s)
    s.publish(b"t", b"q2", 2)  # id 4, will await PUBCOMP
    take(s)
    feed(s, ack(PUBREC, 4))
    poll(s)
    s.connection_lost()
    connect(s, T1, {P.PROP_RECEIVE_MAXIMUM: 2}, True, clean_start=False)
    sent = pump_all(s, T1)
    # two PUBLISH fill the window; the PUBREL may still go, it is no new PUBLISH
    eq(sent, [Publish("t", b"\x00", 1, dup=True, packet_id=1),
              Publish("t", b"\x01", 1, dup=True, packet_id=2), Ack(PUBREL, 4)])
    feed(s, ack(PUBACK, 2))
    eq(poll(s, T1)[0], S.EV_PUBLISH_DONE)
    eq(pump_all(s, T1), [Publish("t", b"\x02", 1, dup=True, packet_id=3)])
