"""Session: what goes out is checked against the server (issue 8 item 8), what comes in that
the spec forbids is refused (item 10), and the offline queue counts every byte it keeps
(item 11).

Portable: runs under pytest and under real MicroPython.
"""

from _check import raises
from _session_util import (
    T0,
    connect,
    connected,
    eq,
    feed,
    new,
    nothing_sent,
    protocol_failure,
    pump_all,
    take,
    usage_error,
)

from mqtt_v5 import properties as P
from mqtt_v5 import session as S
from mqtt_v5._server_codec import SUBACK, UNSUBACK, Disconnect, SubAck
from mqtt_v5.errors import QueueFull

# ------------------------------------------------------------------ item 8: outbound --


def test_publish_refuses_a_raw_topic_alias():
    s = connected(props={P.PROP_TOPIC_ALIAS_MAXIMUM: 2})
    usage_error(0x94, s.publish, b"t", b"x", 0, False, {P.PROP_TOPIC_ALIAS: 5})
    usage_error(0x94, s.publish, b"t", b"x", 0, False, {P.PROP_TOPIC_ALIAS: 1})
    nothing_sent(s)
    s.publish(b"t", b"x", 0, False, None, 1)  # the alias argument is the way
    eq(take(s).properties, {P.PROP_TOPIC_ALIAS: 1})


def test_publish_carries_no_subscription_identifier():
    s = connected()
    # [MQTT-3.3.4-6]
    usage_error(None, s.publish, b"t", b"x", 1, False, {P.PROP_SUBSCRIPTION_IDENTIFIER: 3})
    nothing_sent(s)
    eq(s.inflight(), 0)


def test_disconnect_cannot_give_a_session_expiry_connect_did_not():
    s = connected()
    # [MQTT-3.14.2-2]
    usage_error(None, s.disconnect, 0, {P.PROP_SESSION_EXPIRY_INTERVAL: 60})
    nothing_sent(s)
    eq(s.state, S.CONNECTED)
    s.disconnect(0, {P.PROP_SESSION_EXPIRY_INTERVAL: 0})
    take(s)
    s = connected(connect_kw={"session_expiry_s": 30})
    s.disconnect(0, {P.PROP_SESSION_EXPIRY_INTERVAL: 60})
    eq(take(s).properties, {P.PROP_SESSION_EXPIRY_INTERVAL: 60})


def _reconnected(s, props):
    s.connection_lost()
    connect(s, props=props, session_present=True, clean_start=False)


def test_resend_respects_the_new_servers_maximum_qos():
    s = connected()
    pid = s.publish(b"t", b"x", 2, token="T2")
    take(s)
    s.publish(b"t", b"y", 1, token="T1")
    take(s)
    _reconnected(s, {P.PROP_MAXIMUM_QOS: 1})
    eq(s.pump(), False)  # the QoS 2 message cannot go to this server
    eq((s.ev_token, s.ev_pid, s.ev_rc), ("T2", pid, 0x9B))
    sent = pump_all(s)
    eq([(p.qos, p.payload, p.dup) for p in sent], [(1, b"y", True)])
    eq(s.inflight(), 1)


def test_resend_respects_the_new_servers_maximum_packet_size():
    s = connected()
    s.publish(b"t", b"z" * 200, 1, token="big")
    take(s)
    _reconnected(s, {P.PROP_MAXIMUM_PACKET_SIZE: 100})
    eq(s.pump(), False)
    eq((s.ev_token, s.ev_rc), ("big", 0x95))
    eq(s.inflight(), 0)
    eq(s.pump(), None)


def test_a_queued_messages_topic_alias_is_kept():
    s = new()
    s.publish(b"some/topic", b"x", 0, False, None, 1)  # offline: queued
    s.publish(b"other", b"y", 0, False, None, 3)  # above what this server will allow
    connect(s, props={P.PROP_TOPIC_ALIAS_MAXIMUM: 2})
    sent = pump_all(s)
    eq([(p.topic, p.properties) for p in sent],
       [("some/topic", {P.PROP_TOPIC_ALIAS: 1}), ("other", {})])


# ------------------------------------------------------------------- item 10: inbound --


def test_server_disconnect_with_a_session_expiry_is_refused():
    s = connected()
    feed(s, Disconnect(0x8B, {P.PROP_SESSION_EXPIRY_INTERVAL: 10}))
    protocol_failure(s, 0x82)


def test_server_disconnect_with_the_clients_reason_0x04_is_refused():
    s = connected()
    feed(s, Disconnect(0x04))
    protocol_failure(s, 0x82)


def test_suback_must_have_one_code_per_filter():
    s = connected()
    pid = s.subscribe([("a", 1), ("b", 1)])
    take(s)
    feed(s, SubAck(SUBACK, pid, [1]))
    protocol_failure(s, 0x82)


def test_suback_must_not_grant_more_than_asked():
    s = connected()
    pid = s.subscribe([("a", 1)])
    take(s)
    feed(s, SubAck(SUBACK, pid, [2]))
    protocol_failure(s, 0x82)


def test_suback_may_grant_less_or_refuse():
    s = connected()
    pid = s.subscribe([("a", 2), ("b", 1)])
    take(s)
    feed(s, SubAck(SUBACK, pid, [1, 0x87]))
    eq(s.poll(T0), S.EV_SUBACK)
    eq(list(s.ev_codes), [1, 0x87])


def test_unsuback_must_have_one_code_per_filter():
    s = connected()
    pid = s.unsubscribe(["a"])
    take(s)
    feed(s, SubAck(UNSUBACK, pid, [0, 0]))
    protocol_failure(s, 0x82)


# ------------------------------------------------------------ item 11: queue bytes --


def test_the_offline_queue_counts_properties():
    s = new(max_queued_bytes=100)
    props = {P.PROP_USER_PROPERTY: [("k", "v" * 90)]}  # 11 B of topic and payload
    raises(QueueFull, s.publish, b"t", b"0123456789", 0, False, props)
    s.publish(b"t", b"0123456789", 0, False, {P.PROP_CONTENT_TYPE: "a"})
    eq(s.queued(), 1)
    connect(s)
    eq(len(pump_all(s)), 1)
    # what was counted in is counted out
    s.connection_lost()
    # 4 x 24 B fit the 100 only if the first message's 15 B were counted out again
    for _ in range(4):
        s.publish(b"t", b"0123456789", 0, False, {P.PROP_CONTENT_TYPE: "a" * 10})
    eq(s.queued(), 4)
