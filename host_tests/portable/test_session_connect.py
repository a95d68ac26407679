"""Session: what CONNECT carries and how every CONNACK value is honoured.

Scripted conversations with a fake clock; the server is played with our codec.
Portable: runs under pytest and under real MicroPython (tools/mp_run.mjs).
"""

from _session_util import (
    T0,
    connect,
    connected,
    eq,
    feed,
    new,
    nothing_sent,
    poll,
    take,
    usage_error,
)

from mqtt_v5 import properties as P
from mqtt_v5 import session as S
from mqtt_v5._server_codec import CONNECT, Connack, Connect, SubAck, Will, sub_options
from mqtt_v5.errors import MqttTimeout

# ------------------------------------------------------------------ CONNECT ---

def test_connect_defaults():
    s = new(max_packet_size=2048, receive_maximum=5, topic_alias_maximum=3)
    s.connect(T0)
    eq(s.state, S.CONNECTING)
    pkt = take(s)
    eq(pkt.type, CONNECT)
    eq(pkt, Connect("dev1", True, 60, None, None, None, {
        P.PROP_RECEIVE_MAXIMUM: 5,
        P.PROP_MAXIMUM_PACKET_SIZE: 2048,
        P.PROP_TOPIC_ALIAS_MAXIMUM: 3,
    }))


def test_connect_without_topic_aliases_does_not_advertise_them():
    s = new(topic_alias_maximum=0)
    s.connect(T0)
    pkt = take(s)
    eq(P.PROP_TOPIC_ALIAS_MAXIMUM in pkt.properties, False)
    eq(pkt.properties[P.PROP_RECEIVE_MAXIMUM], 16)
    eq(pkt.properties[P.PROP_MAXIMUM_PACKET_SIZE], 4096)


def test_connect_everything():
    will = Will("dev/status", b"offline", 1, True, {P.PROP_WILL_DELAY_INTERVAL: 5})
    s = new("sensor-7")
    s.connect(T0, clean_start=False, keep_alive_s=30, username="alice", password=b"s3cret",
              will=will, session_expiry_s=3600,
              props={P.PROP_USER_PROPERTY: [("fw", "1.2"), ("board", "esp32")],
                     P.PROP_REQUEST_PROBLEM_INFORMATION: 1})
    pkt = take(s)
    eq(pkt.client_id, "sensor-7")
    eq(pkt.clean_start, False)
    eq(pkt.keep_alive, 30)
    eq(pkt.username, "alice")
    eq(pkt.password, b"s3cret")
    eq(pkt.will, will)
    props = pkt.properties
    eq(props[P.PROP_SESSION_EXPIRY_INTERVAL], 3600)
    eq(props[P.PROP_USER_PROPERTY], [("fw", "1.2"), ("board", "esp32")])
    eq(props[P.PROP_REQUEST_PROBLEM_INFORMATION], 1)
    eq(props[P.PROP_RECEIVE_MAXIMUM], 16)
    eq(props[P.PROP_MAXIMUM_PACKET_SIZE], 4096)
    eq(props[P.PROP_TOPIC_ALIAS_MAXIMUM], 8)
    eq(s.keep_alive_ms, 30000)


def test_connect_does_not_modify_the_callers_props():
    mine = {P.PROP_USER_PROPERTY: [("a", "b")]}
    s = new()
    s.connect(T0, props=mine)
    take(s)
    eq(mine, {P.PROP_USER_PROPERTY: [("a", "b")]})


def test_session_expiry_zero_is_not_sent():
    s = new()
    s.connect(T0, session_expiry_s=0)
    eq(P.PROP_SESSION_EXPIRY_INTERVAL in take(s).properties, False)


def test_connect_twice_is_a_usage_error():
    s = new()
    s.connect(T0)
    usage_error(None, s.connect, T0)  # the CONNECT is still unflushed
    take(s)
    usage_error(None, s.connect, T0)  # already connecting
    eq(s.state, S.CONNECTING)
    nothing_sent(s)


def test_invalid_constructor_arguments():
    usage_error(None, S.Session, "x", max_inflight=0)
    usage_error(None, S.Session, "x", receive_maximum=0)
    usage_error(None, S.Session, "x", out_size=10)


# ------------------------------------------------------------------ CONNACK ---

def test_connack_defaults_are_the_specs():
    s = connected()
    lim = s.limits
    eq(lim.receive_maximum, 65535)
    eq(lim.maximum_qos, 2)
    eq(lim.retain_available, True)
    eq(lim.topic_alias_maximum, 0)
    eq(lim.wildcard_available, True)
    eq(lim.subscription_identifiers_available, True)
    eq(lim.shared_available, True)
    eq(lim.server_keep_alive, -1)
    eq(lim.session_expiry_interval, -1)
    eq(lim.assigned_client_id, None)
    eq(s.ev_rc, 0)
    eq(s.ev_session_present, False)
    eq(s.keep_alive_ms, 60000)
    eq(s.client_id, "dev1")
    repr(lim)  # the cold-path repr works


def test_connack_limits_are_recorded():
    props = {
        P.PROP_RECEIVE_MAXIMUM: 3,
        P.PROP_MAXIMUM_QOS: 1,
        P.PROP_RETAIN_AVAILABLE: 0,
        P.PROP_MAXIMUM_PACKET_SIZE: 500,
        P.PROP_TOPIC_ALIAS_MAXIMUM: 4,
        P.PROP_WILDCARD_SUBSCRIPTION_AVAILABLE: 0,
        P.PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE: 0,
        P.PROP_SHARED_SUBSCRIPTION_AVAILABLE: 0,
        P.PROP_SERVER_KEEP_ALIVE: 20,
        P.PROP_SESSION_EXPIRY_INTERVAL: 120,
    }
    s = connected(props=props)
    lim = s.limits
    eq(lim.receive_maximum, 3)
    eq(lim.maximum_qos, 1)
    eq(lim.retain_available, False)
    eq(lim.maximum_packet_size, 500)
    eq(lim.topic_alias_maximum, 4)
    eq(lim.wildcard_available, False)
    eq(lim.subscription_identifiers_available, False)
    eq(lim.shared_available, False)
    eq(lim.server_keep_alive, 20)
    eq(lim.session_expiry_interval, 120)
    eq(s.ev_props, props)


def test_limits_reset_on_reconnect():
    s = connected(props={P.PROP_MAXIMUM_QOS: 0, P.PROP_RECEIVE_MAXIMUM: 1})
    s.connection_lost()
    connect(s, T0 + 10)
    eq(s.limits.maximum_qos, 2)
    eq(s.limits.receive_maximum, 65535)


def test_server_keep_alive_replaces_ours():
    # [MQTT-3.2.2-21] the client uses the Server Keep Alive
    s = new()
    pkt = connect(s, T0, {P.PROP_SERVER_KEEP_ALIVE: 10}, keep_alive_s=600)
    eq(pkt.keep_alive, 600)
    eq(s.keep_alive_ms, 10000)
    eq(s.next_timeout(T0), 10000)
    s.on_timer(T0 + 9999)
    nothing_sent(s)
    s.on_timer(T0 + 10000)
    eq(take(s).type, 12)  # PINGREQ


def test_server_keep_alive_zero_switches_keep_alive_off():
    s = new()
    connect(s, T0, {P.PROP_SERVER_KEEP_ALIVE: 0}, keep_alive_s=60)
    eq(s.keep_alive_ms, 0)
    eq(s.next_timeout(T0), -1)
    s.on_timer(T0 + 10 ** 6)
    nothing_sent(s)


def test_assigned_client_identifier_is_adopted():
    s = new("")
    pkt = connect(s, T0, {P.PROP_ASSIGNED_CLIENT_IDENTIFIER: "auto-1234"})
    eq(pkt.client_id, "")
    eq(s.limits.assigned_client_id, "auto-1234")
    eq(s.client_id, "auto-1234")
    # and the next CONNECT asks for that session back
    s.connection_lost()
    s.connect(T0 + 5, clean_start=False)
    eq(take(s).client_id, "auto-1234")


def test_session_expiry_from_the_server_is_returned():
    s = new()
    pkt = connect(s, T0, {P.PROP_SESSION_EXPIRY_INTERVAL: 0}, session_expiry_s=86400)
    eq(pkt.properties[P.PROP_SESSION_EXPIRY_INTERVAL], 86400)
    eq(s.limits.session_expiry_interval, 0)


def test_session_present_is_reported():
    s = new()
    connect(s, T0, None, True, clean_start=False)
    eq(s.ev_session_present, True)


def test_connack_refused():
    s = new()
    s.connect(T0)
    take(s)
    feed(s, Connack(0x87, False, {P.PROP_REASON_STRING: "not authorized"}))
    ev, pkt = poll(s)
    eq(ev, S.EV_CONNACK)
    eq(pkt, None)  # nothing answers a refusal
    eq(s.ev_rc, 0x87)
    eq(s.ev_props, {P.PROP_REASON_STRING: "not authorized"})
    eq(s.state, S.DISCONNECTED)
    # publishing now only queues
    eq(s.publish(b"t", b"x", 1), 0)
    eq(s.queued(), 1)
    nothing_sent(s)


def test_connack_timeout():
    s = new(connect_timeout_ms=5000)
    s.connect(T0)
    take(s)
    eq(s.next_timeout(T0), 5000)
    eq(s.next_timeout(T0 + 4000), 1000)
    s.on_timer(T0 + 4999)
    eq(s.state, S.CONNECTING)
    e = None
    try:
        s.on_timer(T0 + 5000)
    except MqttTimeout as exc:
        e = exc
    eq(isinstance(e, MqttTimeout), True, "MqttTimeout raised")
    eq(s.state, S.DISCONNECTED)
    nothing_sent(s)
    eq(s.next_timeout(T0 + 6000), -1)


def test_connack_arrives_in_time():
    s = new(connect_timeout_ms=5000)
    s.connect(T0)
    take(s)
    feed(s, Connack())
    eq(s.poll(T0 + 4999), S.EV_CONNACK)
    s.on_timer(T0 + 6000)  # no CONNACK timeout any more; keep alive not yet due
    nothing_sent(s)
    eq(s.state, S.CONNECTED)


# ------------------------------------------------------------ subscriptions ---

def test_subscribe_refused_when_the_server_lacks_the_feature():
    s = connected(props={P.PROP_WILDCARD_SUBSCRIPTION_AVAILABLE: 0,
                         P.PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE: 0,
                         P.PROP_SHARED_SUBSCRIPTION_AVAILABLE: 0})
    usage_error(0xA2, s.subscribe, [("a/+", 1)])
    usage_error(0xA2, s.subscribe, [("a/#", 1)])
    usage_error(0xA2, s.subscribe, [("ok", 0), ("#", 0)])
    usage_error(0x9E, s.subscribe, [("$share/g/a", 1)])
    usage_error(0xA1, s.subscribe, [("a", 1)], {P.PROP_SUBSCRIPTION_IDENTIFIER: 7})
    nothing_sent(s)
    # what the server supports still works, and the refused calls used no packet id
    pid = s.subscribe([("a/b", sub_options(1))])
    eq(pid, 1)
    eq(take(s).subscriptions, [("a/b", 1)])


def test_subscribe_allowed_features():
    s = connected()
    pid = s.subscribe([("$share/g/a/+", 1), ("b/#", 2)], {P.PROP_SUBSCRIPTION_IDENTIFIER: 7},
                      token="tok")
    pkt = take(s)
    eq(pkt.packet_id, pid)
    eq(pkt.subscriptions, [("$share/g/a/+", 1), ("b/#", 2)])
    eq(pkt.properties, {P.PROP_SUBSCRIPTION_IDENTIFIER: [7]})  # decoded as a list
    feed(s, SubAck(9, pid, [1, 2]))
    ev, _ = poll(s)
    eq(ev, S.EV_SUBACK)
    eq((s.ev_pid, s.ev_codes, s.ev_token), (pid, [1, 2], "tok"))


def test_shared_subscription_wildcards_with_wildcards_unavailable():
    s = connected(props={P.PROP_WILDCARD_SUBSCRIPTION_AVAILABLE: 0})
    usage_error(0xA2, s.subscribe, [("$share/g/a/+", 1)])
    s.subscribe([("$share/g/a/b", 1)])
    eq(take(s).subscriptions, [("$share/g/a/b", 1)])


def test_unsubscribe_and_unsuback():
    s = connected()
    pid = s.unsubscribe(["a/b", "c"], token=5)
    pkt = take(s)
    eq((pkt.packet_id, pkt.filters), (pid, ["a/b", "c"]))
    feed(s, SubAck(11, pid, [0, 0x11]))
    eq(poll(s), (S.EV_UNSUBACK, None))
    eq((s.ev_pid, s.ev_codes, s.ev_token), (pid, [0, 0x11], 5))


def test_subscribe_needs_a_connection():
    s = new()
    usage_error(None, s.subscribe, [("a", 0)])
    usage_error(None, s.unsubscribe, ["a"])


def test_pending_subscribe_tokens_returned_on_connection_lost():
    s = connected()
    p1 = s.subscribe([("a", 0)], token="A")
    take(s)
    p2 = s.unsubscribe(["b"], token="B")
    take(s)
    lost = s.connection_lost()
    eq(sorted(lost.items()), [(p1, "A"), (p2, "B")])


# ---------------------------------------------------------------- leaving ---

def test_disconnect():
    s = connected()
    s.disconnect(0x04, {P.PROP_REASON_STRING: "bye"})
    pkt = take(s)
    eq((pkt.reason_code, pkt.properties), (0x04, {P.PROP_REASON_STRING: "bye"}))
    eq(s.state, S.DISCONNECTED)
    usage_error(None, s.disconnect)


def test_server_disconnect_event():
    s = connected()
    from mqtt_v5._server_codec import Disconnect
    feed(s, Disconnect(0x8B, {P.PROP_REASON_STRING: "maintenance"}))
    eq(poll(s), (S.EV_DISCONNECT, None))
    eq(s.ev_rc, 0x8B)
    eq(s.ev_props, {P.PROP_REASON_STRING: "maintenance"})
    eq(s.state, S.DISCONNECTED)


def test_published_after_disconnect_is_queued_not_sent():
    s = connected()
    s.disconnect()
    take(s)
    eq(s.publish(b"a", b"1", 1), 0)
    nothing_sent(s)
    eq(s.queued(), 1)


def test_auth_exchange():
    from mqtt_v5._server_codec import Auth
    s = new()
    s.connect(T0, props={P.PROP_AUTHENTICATION_METHOD: "SCRAM-SHA-1",
                         P.PROP_AUTHENTICATION_DATA: b"client-first"})
    take(s)
    feed(s, Auth(0x18, {P.PROP_AUTHENTICATION_METHOD: "SCRAM-SHA-1",
                        P.PROP_AUTHENTICATION_DATA: b"server-first"}))
    eq(poll(s), (S.EV_AUTH, None))
    eq(s.ev_rc, 0x18)
    s.auth(0x18, {P.PROP_AUTHENTICATION_METHOD: "SCRAM-SHA-1",
                  P.PROP_AUTHENTICATION_DATA: b"client-final"})
    eq(take(s).properties[P.PROP_AUTHENTICATION_DATA], b"client-final")
    feed(s, Connack(0, False, {P.PROP_AUTHENTICATION_METHOD: "SCRAM-SHA-1"}))
    eq(poll(s), (S.EV_CONNACK, None))
    eq(s.state, S.CONNECTED)



def test_subscribe_above_the_servers_maximum_packet_size():
    s = connected(props={P.PROP_MAXIMUM_PACKET_SIZE: 30})
    usage_error(0x95, s.subscribe, [("a" * 30, 0)])
    usage_error(0x95, s.unsubscribe, ["b" * 30])
    usage_error(None, s.subscribe, [("a/#/b", 0)])  # invalid filter
    nothing_sent(s)
    eq(s.connection_lost(), {})  # nothing left pending
    s = connected(props={P.PROP_MAXIMUM_PACKET_SIZE: 30})
    usage_error(0x95, s.subscribe, [("a" * 30, 0)])
    eq(s.subscribe([("a", 0)]), 1)  # no packet id used up
    take(s)
