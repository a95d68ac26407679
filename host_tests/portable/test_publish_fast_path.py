"""The publish fast path (codec.encode_publish_plain, and the session's QoS 0 / QoS 1
shortcuts that use it) writes the same bytes as the full encoder, takes only what it
can, never skips validation for a topic it has not checked, and leaves the in-flight
table as the full path does. Runs on CPython (pytest) and MicroPython alike."""

from _check import raises
from _codec_util import eq, fail
from _session_util import connected, feed, out_bytes

from mqtt_v5 import codec
from mqtt_v5 import session as S
from mqtt_v5._server_codec import Ack, decode
from mqtt_v5.errors import ProtocolError, UsageError

BIG = 1 << 28


def full(topic, payload, qos=0, pid=0, retain=False):
    buf = bytearray(20000)
    n = codec.encode_publish(buf, topic, payload, qos, pid, retain)
    return bytes(buf[:n])


def plain(topic, payload, qos=0, pid=0, retain=False, size=20000, limit=BIG):
    buf = bytearray(size)
    n = codec.encode_publish_plain(buf, topic, payload, qos, pid, retain, limit)
    return bytes(buf[:n]) if n else None


def test_same_bytes_as_the_full_encoder():
    for topic in (b"a", b"sensors/room1/temperature", b"x" * 300, "caf\u00e9/1".encode()):
        # payload lengths around the 1- / 2-byte Remaining Length boundary
        for n in (0, 1, 64, 100, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 1000):
            for qos, pid in ((0, 0), (1, 1), (1, 65535), (2, 258)):
                for retain in (False, True):
                    p = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
                    eq(plain(topic, p, qos, pid, retain), full(topic, p, qos, pid, retain),
                       "topic %r, %d B, QoS %d" % (topic[:10], n, qos))


def test_declines_what_it_does_not_handle():
    p = bytes(8)
    for topic in ("str/topic", bytearray(b"a/b"), memoryview(b"a/b"), b""):
        eq(plain(topic, p), None, "topic %r" % (topic,))
    # Remaining Length of 3 bytes or more: the full encoder's case
    eq(plain(b"t", bytes(16384), size=17000), None, "16 KiB payload")


def test_invalid_topics_are_refused_not_cached():
    p = bytes(4)
    for bad in (b"a/+", b"a/#", b"#", b"a\x00b", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80"):
        eq(plain(b"ok/topic", p) is not None, True, "a valid topic before %r" % bad)
        eq(plain(bad, p), None, "invalid topic %r" % bad)
        eq(plain(bad, p), None, "invalid topic %r again" % bad)
        raises(UsageError, full, bad, p)


def test_buffer_and_limit_bounds():
    t = b"t/1"
    p = bytes(50)
    whole = full(t, p)
    n = len(whole)
    eq(plain(t, p, size=n), whole, "exactly the buffer")
    eq(plain(t, p, size=n - 1), None, "one byte short of the buffer")
    eq(plain(t, p, limit=n), whole, "exactly the limit")
    eq(plain(t, p, limit=n - 1), None, "one byte over the limit")


def test_a_mutable_topic_is_checked_every_time():
    # Only bytes (immutable) are remembered as valid; a bytearray changed between two
    # publishes must be checked again, by the session's full path.
    s = connected()
    topic = bytearray(b"room/1")
    s.publish(topic, b"x")
    eq(decode(out_bytes(s)).topic, "room/1", "first publish")
    s.flushed(0)
    topic[5] = ord("#")
    e = raises(UsageError, s.publish, topic, b"x")
    eq(e.reason_code, 0x90, "reason code")
    eq(s.out_len, 0, "nothing encoded")


def test_a_changed_topic_is_never_sent_under_the_old_one():
    s = connected()
    for i in range(5):
        for topic in (b"a/1", b"a/2", "a/3", "a/%d" % (4 + i)):
            s.publish(topic, b"p")
            got = decode(out_bytes(s)).topic
            want = topic if isinstance(topic, str) else topic.decode()
            if got != want:
                fail("sent %r for %r" % (got, want))
            s.flushed(0)


def test_qos1_fast_path_keeps_the_in_flight_table():
    s = connected(max_inflight=4)
    pids = []
    for i in range(4):
        pid = s.publish(b"t", b"%d" % i, 1)
        pkt = decode(out_bytes(s))
        eq((pkt.qos, pkt.packet_id), (1, pid), "PUBLISH %d" % i)
        s.flushed(0)
        pids.append(pid)
    eq(len(set(pids)), 4, "distinct packet ids")
    eq(s.window_open(), False, "window full")
    # acknowledged out of order: each frees its own slot, and only that one
    for pid in (pids[2], pids[0]):
        feed(s, Ack(codec.PUBACK, pid))
        eq(s.poll(0), S.EV_PUBLISH_DONE, "PUBLISH_DONE")
        eq(s.ev_pid, pid, "acknowledged id")
    eq(s.inflight(), 2, "two left")
    new = s.publish(b"t", b"again", 1)
    if new in (pids[1], pids[3]):
        fail("packet id %d reused while in flight" % new)
    s.flushed(0)
    feed(s, Ack(codec.PUBACK, pids[0]))  # already acknowledged: unknown now
    raises(ProtocolError, s.poll, 0)


def test_the_usual_puback_and_what_is_not_one():
    # The 4-byte PUBACK takes a shortcut in poll(); these must still be refused, with
    # the reason code of the full decoder, and leave the in-flight table as it was.
    for wire, what in ((b"\x40\x02\x00\x00", "packet id 0"),
                       (b"\x40\x02\x12\x34", "an id not in flight"),
                       (b"\x41\x02\x00\x01", "reserved flags set")):
        s = connected()
        pid = s.publish(b"t", b"x", 1)
        eq(pid, 1, "first packet id")
        s.flushed(0)
        feed(s, wire)
        e = raises(ProtocolError, s.poll, 0)
        eq(e.reason_code in (0x81, 0x82), True, "%s: reason code 0x%02X" % (what, e.reason_code))
    s = connected()
    q2 = s.publish(b"t", b"x", 2)
    s.flushed(0)
    feed(s, bytes((0x40, 2, q2 >> 8, q2 & 255)))  # a PUBACK for a QoS 2 message
    raises(ProtocolError, s.poll, 0)
    s = connected()
    q1 = s.publish(b"t", b"x", 1)
    s.flushed(0)
    feed(s, bytes((0x40, 2, q1 >> 8, q1 & 255)))
    eq(s.poll(0), S.EV_PUBLISH_DONE, "the usual PUBACK")
    eq((s.ev_pid, s.ev_rc, s.inflight(), s.last_ack().packet_id), (q1, 0, 0, q1), "completed")
