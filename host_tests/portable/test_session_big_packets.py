"""Packets larger than the send buffer still leave whole.

The send buffer (``out_size``) is small on a device (default 256 B); a CONNECT with long
credentials (an AWS custom-authorizer token), a SUBSCRIBE with many filters or a PUBLISH
with a long topic and properties must not be refused for it. Such a packet is encoded
into a buffer of its own and handed out as ``out_tail`` (cold path only).
"""

from _session_util import T0, connected, eq, feed, new, out_bytes

from mqtt_v5 import properties as P
from mqtt_v5._server_codec import Connack, Publish, Subscribe, decode


def test_connect_larger_than_the_send_buffer():
    s = new(out_size=64)
    token = "t" * 1500
    s.connect(T0, True, 30, "user?token=" + token, b"p" * 700)
    eq(s.out_len, 0, "nothing in out: the packet has its own buffer")
    pkt = decode(out_bytes(s))
    eq(pkt.username, "user?token=" + token)
    eq(pkt.password, b"p" * 700)
    s.flushed(T0)
    feed(s, Connack())
    s.poll(T0)
    eq(s.state, 2, "connected")


def test_subscribe_larger_than_the_send_buffer():
    s = connected(out_size=64)
    filters = [("sensors/%03d/+/reading" % i, 1) for i in range(20)]
    pid = s.subscribe(filters)
    pkt = decode(out_bytes(s))
    eq(type(pkt), Subscribe)
    eq(pkt.packet_id, pid)
    eq(pkt.subscriptions, filters)


def test_publish_header_larger_than_the_send_buffer():
    s = connected(out_size=64)
    topic = b"a/" + b"x" * 200
    props = {P.PROP_USER_PROPERTY: [("k", "v" * 50)], P.PROP_CONTENT_TYPE: "application/json"}
    pid = s.publish(topic, b"hello", 1, False, props)
    pkt = decode(out_bytes(s))
    eq(type(pkt), Publish)
    eq((pkt.topic, pkt.payload, pkt.packet_id), (topic.decode(), b"hello", pid))
    eq(pkt.properties[P.PROP_CONTENT_TYPE], "application/json")
    s.flushed(T0)
    eq(s.has_output(), False)


def test_small_packets_still_use_the_send_buffer():
    s = connected(out_size=64)
    s.publish(b"t", b"x" * 10, 0)
    eq(s.out_tail, None)
    eq(decode(bytes(s.out[:s.out_len])).payload, b"x" * 10)
