"""The twin endpoint's PUBLISH/SUBSCRIBE behaviour against AWS IoT Core's (aws-iot-spec
§1.6-§1.10), with paho-mqtt 2.x (MQTT 5) over mutual TLS and plain TCP, and a raw-socket
client for packets paho will not send."""

from __future__ import annotations

import json
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from twin._server_util import props, running_twin, wait_for


@pytest.fixture
def tw(tmp_path):
    with running_twin(tmp_path) as t:
        yield t


def test_publish_subscribe_round_trip_with_properties(tw):
    a = tw.paho("t1")
    b = tw.paho("t2")
    assert b.subscribe("dev/+/temp") == [1]
    p = props(
        ContentType="application/json",
        ResponseTopic="dev/t1/reply",
        CorrelationData=b"c1",
        PayloadFormatIndicator=1,
    )
    p.UserProperty = [("k1", "v1"), ("k2", "v2")]
    assert a.publish("dev/t1/temp", b"21.5", qos=1, props=p) == 0
    m = b.get()
    assert (m.topic, m.payload, m.qos, m.retain) == ("dev/t1/temp", b"21.5", 1, False)
    # §1.6: request/response and payload format properties forwarded, user properties in order.
    assert m.prop("ContentType") == "application/json"
    assert m.prop("ResponseTopic") == "dev/t1/reply"
    assert m.prop("CorrelationData") == b"c1"
    assert m.prop("UserProperty") == [("k1", "v1"), ("k2", "v2")]
    a.close()
    b.close()


def test_qos2_publish_gets_disconnect_0x9b(tw):
    # §1.9 [MQTT-DOC]: Maximum QoS 1; a QoS 2 PUBLISH -> DISCONNECT 0x9B.
    raw = tw.raw()
    raw.connect("q2")
    raw.send(codec.Publish("a/b", b"x", qos=2, packet_id=1))
    assert raw.recv_type(codec.DISCONNECT).reason_code == 0x9B
    assert raw.closed()


def test_qos2_subscribe_is_granted_qos1(tw):
    # §1.8: SUBACK 0x01 "might be a lower QoS than requested" (AWS's exact answer to a QoS 2
    # SUBSCRIBE is UNVERIFIED, §1.9).
    c = tw.paho("t1")
    assert c.subscribe(("a/b", 2)) == [1]
    c.close()


def test_payload_over_128_kib_drops_the_connection(tw):
    # §0/§1.9 [QUOTAS-OLD], [JS535]: 131072 bytes is the limit; more -> connection dropped
    # (we say DISCONNECT 0x97 PAYLOAD_LIMIT_EXCEEDED first).
    c = tw.paho("t1")
    assert c.subscribe("big") == [1]
    assert c.publish("big", b"x" * 131072) == 0
    assert len(c.get().payload) == 131072
    c.publish("big", b"x" * 131073, qos=0)
    assert c.disconnected() == 0x97
    c.close()


def test_packet_over_maximum_packet_size_gets_0x95(tw):
    raw = tw.raw()
    raw.connect("huge")
    raw.send(codec.Publish("big", b"x" * 149504, qos=0))
    assert raw.recv_type(codec.DISCONNECT).reason_code == 0x95


def test_topic_limits(tw):
    # §1.7 [QUOTAS-OLD]: at most 256 bytes and 7 slashes; PUBACK 0x90 Topic Name invalid.
    c = tw.paho("t1")
    assert c.publish("a" * 256) == 0
    assert c.publish("a" * 257) == 0x90
    assert c.publish("1/2/3/4/5/6/7/8") == 0
    assert c.publish("1/2/3/4/5/6/7/8/9") == 0x90
    # Basic Ingest ($aws/rules/<rule>/..., its prefix not counted) needs a policy that
    # allows it; the default thing policy allows no $ topic but the thing's own.
    assert c.publish("$aws/rules/r1/1/2/3/4/5/6/7/8") == 0x87
    # SUBACK 0x8F for a filter over the limits; $share/<name>/ is not counted.
    assert c.subscribe("1/2/3/4/5/6/7/+/9", "$share/g/1/2/3/4/5/6/7/8", "x" * 257) == [
        0x8F,
        1,
        0x8F,
    ]
    c.close()


def test_qos0_publish_to_an_invalid_topic_disconnects_0x90(tw):
    c = tw.paho("t1")
    c.publish("1/2/3/4/5/6/7/8/9", qos=0)
    assert c.disconnected() == 0x90
    c.close()


def test_publish_to_unsupported_reserved_topic_is_refused(tw):
    # §1.7 [RESERVED]: only AWS-defined reserved topics may be published to.
    c = tw.paho("t1")
    assert c.publish("$aws/things/t1/shadow/update/accepted", b"{}") == 0x90
    assert c.publish("$aws/things/t1/shadow/update", b"{}", retain=True) == 0x90  # no RETAIN
    assert c.publish("$SYS/x") == 0x90
    c.close()


def test_nine_filters_in_one_subscribe_close_the_connection(tw):
    # §1.7/§1.9 [SUB8]: 8 filters per SUBSCRIBE; more -> connection closed.
    c = tw.paho("t1")
    assert c.subscribe(*[f"f/{i}" for i in range(8)]) == [1] * 8
    c.client.subscribe([(f"g/{i}", 1) for i in range(9)])
    assert c.disconnected() == 0x97
    c.close()


def test_fifty_first_subscription_is_refused(tw):
    # §1.7 [QUOTAS], §1.9 [SUB50]: 50 per connection; SUBACK 0x97 Quota exceeded for the
    # excess (the MQTT 5 code is our choice, see DEVIATIONS).
    c = tw.paho("t1")
    for batch in range(0, 50, 8):
        n = min(8, 50 - batch)
        assert c.subscribe(*[f"s/{batch + i}" for i in range(n)]) == [1] * n
    assert c.subscribe("s/50", "s/0") == [0x97, 1]  # re-subscribing is not a new one
    assert c.publish("s/49", b"x") == 0
    assert c.get().topic == "s/49"
    c.close()


def test_subscription_identifier_gets_disconnect_0xa1(tw):
    # §1.8 [NODERED4133]: DISCONNECT 0xA1 "Subscription Id is not supported now".
    c = tw.paho("t1")
    p = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7)
    c.client.subscribe([("a/b", 1)], properties=p)
    assert c.disconnected() == 0xA1
    c.close()


def test_hash_does_not_match_its_parent_level(tw):
    # §1.7 [MQTT-DOC], [TOPICS]: 'sensor/#' matches 'sensor/', 'sensor/x' but not 'sensor'.
    c = tw.paho("t1")
    c.subscribe("sensor/#")
    for topic in ("sensor", "sensor/", "sensor/x", "sensor/x/y"):
        c.publish(topic, topic.encode())
    got = sorted(c.get().topic for _ in range(3))
    assert got == ["sensor/", "sensor/x", "sensor/x/y"]
    c.nothing()
    c.close()


def test_wildcards_do_not_match_dollar_topics(tw):
    c = tw.paho("t1")
    c.subscribe("#", "+/things/t1/shadow/update/accepted")
    tw.call(tw.twin.update_shadow, "t1", {"state": {"reported": {"a": 1}}})
    c.nothing()
    c.close()


def test_retained_only_on_exact_topic_subscriptions(tw):
    # §1.10 [MQTT-DOC]: the retained message goes to a subscription whose filter equals the
    # topic, with RETAIN set; never to wildcard or shared subscriptions; live deliveries
    # carry RETAIN 0.
    a = tw.paho("t1")
    assert a.publish("r/t", b"kept", retain=True) == 0
    b = tw.paho("t2")
    assert b.subscribe("r/+", "r/#", "$share/g/r/t") == [1, 1, 1]
    b.nothing()
    assert b.subscribe("r/t") == [1]
    m = b.get()
    assert (m.topic, m.payload, m.retain) == ("r/t", b"kept", True)
    b.nothing()
    a.publish("r/t", b"live", retain=True)
    # r/+, r/# and r/t overlap: one copy for them [MQTT-3.3.4-2], one for the shared group.
    live = [b.get() for _ in range(2)]
    assert all(not m.retain for m in live)
    b.nothing()
    # A zero-byte retained publish deletes it (and is delivered).
    a.publish("r/t", b"", retain=True)
    c = tw.paho("t3")
    c.subscribe("r/t")
    c.nothing()
    for x in (a, b, c):
        x.close()


def test_retained_message_survives_a_restart(tmp_path):
    with running_twin(tmp_path) as t:
        a = t.paho("t1")
        a.publish("keep/me", b"v1", retain=True)
        a.close()
    with running_twin(tmp_path) as t:
        b = t.paho("t1")
        b.subscribe("keep/me")
        assert b.get().payload == b"v1"
        b.close()


def test_persistent_session_queues_qos1_while_offline(tw):
    # §1.10: clean start 0 + session expiry > 0 keeps subscriptions and queues QoS 1
    # messages; on resume session_present=1 and the queue is delivered.
    sub = tw.paho("t2", clean_start=False, session_expiry=300)
    assert not sub.session_present
    sub.subscribe(("q/1", 1), ("q/0", 0))
    sub.close()
    pub = tw.paho("t1")
    for i in range(5):
        pub.publish("q/1", f"m{i}".encode())
    pub.publish("q/0", b"qos0 is not queued")
    sub = tw.paho("t2", clean_start=False, session_expiry=300)
    assert sub.session_present
    assert [sub.get().payload for _ in range(5)] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    sub.nothing()
    # A clean start throws the session away.
    sub.close()
    sub = tw.paho("t2", clean_start=True)
    assert not sub.session_present
    pub.publish("q/1", b"nobody")
    sub.nothing()
    pub.close()
    sub.close()


def test_session_expiry_is_honoured(tw):
    raw = tw.raw()
    raw.connect("exp", clean_start=False, properties={P.PROP_SESSION_EXPIRY_INTERVAL: 1})
    raw.close()
    time.sleep(1.3)
    raw = tw.raw()
    ack = raw.connect("exp", clean_start=False, properties={P.PROP_SESSION_EXPIRY_INTERVAL: 1})
    assert ack.session_present is False
    raw.close()


def test_message_expiry_counts_down_and_expired_messages_are_dropped(tw):
    # §1.6 [MQTT-DOC]: the outbound PUBLISH carries the remaining seconds; queued messages
    # that expire are not delivered.
    sub = tw.paho("t2", clean_start=False, session_expiry=300)
    sub.subscribe("e/t")
    sub.close()
    pub = tw.paho("t1")
    pub.publish("e/t", b"short", props=props(MessageExpiryInterval=1))
    pub.publish("e/t", b"long", props=props(MessageExpiryInterval=30))
    time.sleep(2.1)
    sub = tw.paho("t2", clean_start=False, session_expiry=300)
    m = sub.get()
    assert m.payload == b"long"
    assert m.prop("MessageExpiryInterval") in (27, 28)
    sub.nothing()
    # Live delivery: the whole interval (minus routing time) is passed on.
    pub.publish("e/t", b"now", props=props(MessageExpiryInterval=30))
    assert sub.get().prop("MessageExpiryInterval") in (29, 30)
    pub.close()
    sub.close()


def test_will_on_abrupt_close_not_on_disconnect(tw):
    # §1.10: the will goes out on any disconnect except a client DISCONNECT.
    watcher = tw.paho("t2")
    watcher.subscribe("wills/#")
    raw = tw.raw()
    raw.connect("dying", will=codec.Will("wills/dying", b"gone", qos=1))
    raw.close()  # no DISCONNECT: the TCP connection just ends
    m = watcher.get()
    assert (m.topic, m.payload) == ("wills/dying", b"gone")
    raw = tw.raw()
    raw.connect("polite", will=codec.Will("wills/polite", b"gone", qos=1))
    raw.send(codec.Disconnect(0))
    raw.close()
    watcher.nothing(0.5)
    # DISCONNECT 0x04 asks for the will.
    raw = tw.raw()
    raw.connect("asks", will=codec.Will("wills/asks", b"please", qos=1))
    raw.send(codec.Disconnect(0x04))
    raw.close()
    assert watcher.get().payload == b"please"
    watcher.close()


def test_will_delay_and_reconnect_within_it(tw):
    watcher = tw.paho("t2")
    watcher.subscribe("wills/#")
    will = codec.Will("wills/d", b"late", qos=1, properties={P.PROP_WILL_DELAY_INTERVAL: 1})
    sei = {P.PROP_SESSION_EXPIRY_INTERVAL: 60}
    raw = tw.raw()
    raw.connect("d1", will=will, clean_start=False, properties=sei)
    raw.close()
    watcher.nothing(0.5)
    start = time.monotonic()
    assert watcher.get().payload == b"late"
    assert time.monotonic() - start < 1.5
    # Reconnecting before the delay ends cancels the will [MQTT-3.1.3-9]. (A delay of 2 s:
    # the second CONNECT of a client id within a second waits for AWS's 1 CONNECT/s quota.)
    will = codec.Will("wills/d", b"late", qos=1, properties={P.PROP_WILL_DELAY_INTERVAL: 2})
    raw = tw.raw()
    raw.connect("d2", will=will, clean_start=False, properties=sei)
    raw.close()
    time.sleep(0.3)
    raw = tw.raw()
    assert raw.connect("d2", clean_start=False, properties=sei).session_present
    watcher.nothing(2.2)
    raw.close()
    watcher.close()


def test_inbound_topic_alias(tw):
    # §1.6: Topic Alias Maximum 8: an alias is set with a topic and used with an empty one.
    watcher = tw.paho("t2")
    watcher.subscribe("alias/#")
    raw = tw.raw()
    raw.connect("al")
    raw.send(
        codec.Publish("alias/one", b"1", qos=1, packet_id=1, properties={P.PROP_TOPIC_ALIAS: 8})
    )
    assert raw.recv_type(codec.PUBACK).reason_code == 0
    raw.send(
        codec.encode_bytes(
            codec.Publish("", b"2", qos=1, packet_id=2, properties={P.PROP_TOPIC_ALIAS: 8})
        )
    )
    assert raw.recv_type(codec.PUBACK).reason_code == 0
    assert [(m.topic, m.payload) for m in (watcher.get(), watcher.get())] == [
        ("alias/one", b"1"),
        ("alias/one", b"2"),
    ]
    # §1.9 [MQTT-DOC]: alias above 8 -> DISCONNECT 0x94.
    raw.send(
        codec.Publish("alias/nine", b"9", qos=1, packet_id=3, properties={P.PROP_TOPIC_ALIAS: 9})
    )
    assert raw.recv_type(codec.DISCONNECT).reason_code == 0x94
    # ... and an alias never set, likewise.
    raw = tw.raw()
    raw.connect("al2")
    raw.send(codec.Publish("", b"?", qos=0, properties={P.PROP_TOPIC_ALIAS: 3}))
    assert raw.recv_type(codec.DISCONNECT).reason_code == 0x94
    watcher.close()


def test_shared_subscription_round_robin(tw):
    # §1.10 [MQTT-DOC]: $share/{name}/{filter}; each message to one member of the group
    # (AWS picks at random, the twin in turn); a plain subscriber gets every message.
    members = [tw.paho(f"m{i}", listener="plain") for i in range(3)]
    for m in members:
        assert m.subscribe("$share/grp/jobs/+") == [1]
    plain = tw.paho("all", listener="plain")
    plain.subscribe("jobs/+")
    pub = tw.paho("t1")
    for i in range(9):
        pub.publish(f"jobs/{i}", str(i).encode())
    counts = []
    got = set()
    for m in members:
        msgs = []
        while True:
            try:
                msgs.append(m.get(0.5))
            except Exception:
                break
        counts.append(len(msgs))
        got |= {x.payload for x in msgs}
    assert counts == [3, 3, 3]
    assert got == {str(i).encode() for i in range(9)}
    assert len([plain.get() for _ in range(9)]) == 9
    for c in (*members, plain, pub):
        c.close()


def test_no_local_and_retain_as_published(tw):
    c = tw.paho("t1")
    c.subscribe("nl/a", noLocal=True)
    c.subscribe("nl/b", retainAsPublished=True)
    c.publish("nl/a", b"mine")
    c.nothing()
    c.publish("nl/b", b"r", retain=True)
    assert c.get().retain is True
    c.close()


def test_receive_maximum_flow_control_towards_the_client(tw):
    # The client's Receive Maximum bounds unacknowledged QoS 1 deliveries; the rest waits.
    sub = tw.raw()
    sub.connect("slow", properties={P.PROP_RECEIVE_MAXIMUM: 2})
    sub.send(codec.Subscribe(1, [("fc", 1)]))
    assert sub.recv_type(codec.SUBACK).reason_codes == [1]
    pub = tw.paho("t1")
    for i in range(5):
        pub.publish("fc", str(i).encode())
    first = [sub.recv_type(codec.PUBLISH) for _ in range(2)]
    with pytest.raises(TimeoutError):
        sub.recv_type(codec.PUBLISH, timeout=0.3)
    sub.send(codec.Ack(codec.PUBACK, first[0].packet_id))
    third = sub.recv_type(codec.PUBLISH)
    assert [p.payload for p in (*first, third)] == [b"0", b"1", b"2"]
    pub.close()


def test_client_maximum_packet_size_is_honoured(tw):
    sub = tw.raw()
    sub.connect("small", properties={P.PROP_MAXIMUM_PACKET_SIZE: 100})
    sub.send(codec.Subscribe(1, [("mp", 0)]))
    sub.recv_type(codec.SUBACK)
    pub = tw.paho("t1")
    pub.publish("mp", b"x" * 200)
    pub.publish("mp", b"small")
    assert sub.recv_type(codec.PUBLISH).payload == b"small"  # the big one was dropped
    pub.close()


def test_lifecycle_events(tw):
    # §1.11 [LIFECYCLE]: connected / disconnected events with millisecond timestamps.
    _open(tw, "watch")
    watcher = tw.paho("watch")
    assert watcher.subscribe("$aws/events/presence/+/dev1") == [1]
    raw = tw.raw()
    raw.connect("dev1")
    ev = json.loads(watcher.get().payload)
    assert ev["eventType"] == "connected"
    assert ev["clientId"] == "dev1"
    assert ev["timestamp"] > 10**12
    raw.send(codec.Disconnect(0))
    ev = json.loads(watcher.get().payload)
    assert ev["eventType"] == "disconnected"
    assert ev["clientInitiatedDisconnect"] is True
    assert ev["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    watcher.close()


# --- policies -----------------------------------------------------------------------------------

ARN = "arn:aws:iot:us-east-1:123456789012"


def _attach_only(tw, name, doc):
    creds = tw.thing(name)
    cert = tw.call(tw.twin.registry.certificates.get, creds.certificate_id)

    def swap():
        cert.policies = []
        tw.twin.add_policy(f"policy-{name}", doc, creds.certificate_id)

    tw.call(swap)
    return creds


def _open(tw, name):
    """Thing ``name`` with a policy that allows everything."""
    return _attach_only(
        tw,
        name,
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
        },
    )


def _restricted(tw, name="t1"):
    """Thing ``name`` with a policy that allows only ``ok/*`` (publish, subscribe, receive)
    and ``pubonly/*`` (publish and subscribe, not receive)."""
    creds = tw.thing(name)
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/{name}"},
            {
                "Effect": "Allow",
                "Action": ["iot:Publish", "iot:Receive"],
                "Resource": f"{ARN}:topic/ok/*",
            },
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN}:topic/pubonly/*"},
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [f"{ARN}:topicfilter/ok/*", f"{ARN}:topicfilter/pubonly/*"],
            },
        ],
    }
    _attach_only(tw, name, doc)
    return creds


def test_policy_deny_gives_puback_and_suback_0x87(tw):
    # §1.8/§1.9: on MQTT 5 a denied publish/subscribe gets PUBACK/SUBACK 0x87 and the
    # connection stays up.
    _restricted(tw)
    c = tw.paho("t1")
    assert c.subscribe("ok/a", "no/a", "ok/#") == [1, 0x87, 1]
    assert c.publish("no/a", b"x") == 0x87
    assert c.publish("ok/a", b"x") == 0
    assert c.get().topic == "ok/a"
    c.close()


def test_policy_denied_receive_is_silently_not_delivered(tw):
    # §1.9/§2 [MQTT-DOC]: a message the policy does not let the client receive is dropped.
    _restricted(tw)
    c = tw.paho("t1")
    assert c.subscribe("pubonly/x") == [1]
    assert c.publish("pubonly/x", b"x") == 0
    c.nothing()
    c.close()


def test_policy_deny_on_qos0_publish_disconnects_0x87(tw):
    _restricted(tw)
    c = tw.paho("t1")
    c.publish("no/a", b"x", qos=0)
    assert c.disconnected() == 0x87
    c.close()


def test_retain_needs_iot_retain_publish(tw):
    _restricted(tw)
    c = tw.paho("t1")
    assert c.publish("ok/r", b"x", retain=True) == 0x87
    c.close()


def test_plain_listener_uses_the_default_thing_policy(tw):
    # No AWS equivalent: client id = thing name, default thing policy (own $aws topics only).
    c = tw.paho("devA", listener="plain")
    assert c.subscribe(
        "$aws/things/devA/shadow/get/accepted", "$aws/things/devB/shadow/get/accepted"
    ) == [1, 0x87]
    assert c.publish("anything/goes", b"x") == 0
    c.close()


def test_a_misbehaving_client_does_not_disturb_others(tw):
    good = tw.paho("t1")
    good.subscribe("g/#")
    bad = tw.raw()
    bad.connect("bad")
    bad.send(b"\xf0\x00")  # AUTH is not supported (§1.6)
    assert bad.recv_type(codec.DISCONNECT).reason_code == 0x82
    good.publish("g/1", b"fine")
    assert good.get().payload == b"fine"
    wait_for(lambda: len(tw.call(tw.twin.connections)) == 1)
    good.close()


def test_unacknowledged_messages_are_resent_on_session_resume(tw):
    # §1.10: unacknowledged QoS 1 messages of a persistent session are sent again after
    # the reconnect (same packet identifier).
    sei = {P.PROP_SESSION_EXPIRY_INTERVAL: 300}
    raw = tw.raw()
    raw.connect("forgetful", clean_start=False, properties=sei)
    raw.send(codec.Subscribe(1, [("re/send", 1)]))
    raw.recv_type(codec.SUBACK)
    pub = tw.paho("t1")
    pub.publish("re/send", b"ack me")
    first = raw.recv_type(codec.PUBLISH)
    raw.close()  # no PUBACK
    raw = tw.raw()
    assert raw.connect("forgetful", clean_start=False, properties=sei).session_present
    again = raw.recv_type(codec.PUBLISH)
    assert (again.payload, again.packet_id) == (b"ack me", first.packet_id)
    raw.send(codec.Ack(codec.PUBACK, again.packet_id))
    raw.close()
    pub.close()


def test_shadow_throttles_at_ten_unacknowledged_responses(tw):
    # §3.4 [QUOTAS-OLD], [SHADOW-ERR]: more than 10 in-flight responses for a thing -> 429.
    raw = tw.raw(thing="t1", listener="mtls")
    raw.connect("t1")
    base = "$aws/things/t1/shadow"
    raw.send(codec.Subscribe(1, [(f"{base}/update/accepted", 1), (f"{base}/update/rejected", 1)]))
    raw.recv_type(codec.SUBACK)
    for i in range(11):
        raw.send(
            codec.Publish(
                f"{base}/update", json.dumps({"state": {"reported": {"n": i}}}).encode(), qos=0
            )
        )
    got = [raw.recv_type(codec.PUBLISH) for _ in range(11)]  # never acknowledged
    assert [p.topic.rsplit("/", 1)[1] for p in got] == ["accepted"] * 10 + ["rejected"]
    assert json.loads(got[-1].payload)["code"] == 429
    for p in got:
        raw.send(codec.Ack(codec.PUBACK, p.packet_id))
    raw.send(codec.Publish(f"{base}/update", b'{"state":{"reported":{"n":99}}}', qos=0))
    assert raw.recv_type(codec.PUBLISH).topic == f"{base}/update/accepted"
    raw.close()
