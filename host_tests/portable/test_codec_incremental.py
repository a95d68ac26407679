"""Incremental framing with PacketReader: decoding gives the same packets whether the bytes
arrive whole, one byte at a time, split at every point, or with the start of the next
packet trailing in the buffer (the h11 habit). Also the socket-style free()/wrote() path
and the compaction of a partial packet to the front of the buffer.

Portable: runs under pytest and under real MicroPython (tools/mp_run.mjs).
"""

from _codec_util import bytewise, decode_stream, eq, fail, frames

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

PACKETS = (
    Connect("cid", True, 30, "u", b"p", Will("w", b"x", 1, True, {P.PROP_WILL_DELAY_INTERVAL: 1}),
            {P.PROP_SESSION_EXPIRY_INTERVAL: 60}),
    Connack(0, True, {P.PROP_RECEIVE_MAXIMUM: 10}),
    Publish("a/b", b"hello", 1, False, False, 3, {P.PROP_USER_PROPERTY: [("k", "v")]}),
    Publish("big", bytes(range(256)) * 2, 0),  # two-byte Remaining Length
    Ack(codec.PUBACK, 3),
    Ack(codec.PUBREC, 4, 0x10),
    Ack(codec.PUBREL, 4),
    Ack(codec.PUBCOMP, 4, 0x92, {P.PROP_REASON_STRING: "gone"}),
    Subscribe(5, [("a/+", 1), ("b/#", 2)], {P.PROP_SUBSCRIPTION_IDENTIFIER: [9]}),
    SubAck(codec.SUBACK, 5, [1, 2]),
    Unsubscribe(6, ["a/+"]),
    SubAck(codec.UNSUBACK, 6, [0]),
    Ping(codec.PINGREQ),
    Ping(codec.PINGRESP),
    Disconnect(0x04),
    Auth(0x18, {P.PROP_AUTHENTICATION_METHOD: "m"}),
)


def wires():
    return [codec.encode_bytes(p) for p in PACKETS]


def test_each_packet_whole_and_byte_by_byte():
    ws = wires()
    for i in range(len(PACKETS)):
        p, data = PACKETS[i], ws[i]
        got, rd = decode_stream([data])
        eq(got, [p], "whole")
        got, rd = decode_stream(bytewise(data))
        eq(got, [p], "byte by byte")
        eq((rd.start, rd.end), (0, 0), "buffer drained")


def test_each_packet_split_at_every_point():
    ws = wires()
    for i in range(len(PACKETS)):
        p, data = PACKETS[i], ws[i]
        for cut in range(1, len(data)):
            got, _ = decode_stream([data[:cut], data[cut:]])
            eq(got, [p], "split at %d" % cut)


def test_next_returns_minus_one_until_the_last_byte():
    data = codec.encode_bytes(PACKETS[2])
    rd = codec.PacketReader(128)
    for i in range(len(data) - 1):
        rd.feed(data[i:i + 1])
        eq(rd.next(), -1, "after byte %d" % i)
    rd.feed(data[-1:])
    eq(rd.next(), data[0])
    eq(rd.next(), -1)


def test_trailing_start_of_the_next_packet():
    ws = wires()
    for i in range(len(ws)):
        data = ws[i]
        nxt = ws[(i + 1) % len(ws)]
        for k in range(1, len(nxt)):  # every incomplete prefix of the next packet
            rd = codec.PacketReader(1024)
            rd.feed(data + nxt[:k])
            got = frames(rd, [])
            eq(got, [PACKETS[i]], "with %d bytes of the next packet" % k)
            rd.feed(nxt[k:])
            got = frames(rd, [])
            eq(got, [PACKETS[(i + 1) % len(ws)]], "the next packet completed")


def test_all_packets_in_one_chunk_and_bytewise_stream():
    ws = wires()
    stream = b"".join(ws)
    got, _ = decode_stream([stream])
    eq(got, list(PACKETS))
    got, _ = decode_stream(bytewise(stream))
    eq(got, list(PACKETS))
    # chunks of awkward sizes crossing packet boundaries
    for size in (2, 3, 7, 13, 64):
        chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        got, _ = decode_stream(chunks)
        eq(got, list(PACKETS), "chunks of %d" % size)


def test_free_and_wrote_like_a_socket_read():
    # The driver reads into reader.free() and reports reader.wrote(n).
    stream = b"".join(wires())
    rd = codec.PacketReader(600)
    got = []
    pos = 0
    step = 5
    while pos < len(stream):
        view = rd.free()
        n = min(len(view), step, len(stream) - pos)
        if n == 0:
            fail("no free space")
        view[:n] = stream[pos:pos + n]
        rd.wrote(n)
        pos += n
        frames(rd, got)
        step = step * 3 % 97 + 1
    eq(got, list(PACKETS))


def test_partial_packet_is_moved_to_the_front():
    # A buffer exactly as large as the biggest packet still works when packets straddle
    # its end: the unread tail is compacted to offset 0.
    ws = wires()
    biggest = max(len(w) for w in ws)
    stream = b"".join(ws) * 3
    got, _ = decode_stream([stream[i:i + 11] for i in range(0, len(stream), 11)],
                            max_packet_size=biggest)
    eq(got, list(PACKETS) * 3)


def test_body_bounds_and_hot_path_publish():
    data = codec.encode_bytes(Publish("a/b", b"payload", 1, True, False, 7))
    rd = codec.PacketReader(64)
    rd.feed(b"\xd0\x00" + data + b"\xc0")
    eq(rd.next(), 0xD0)
    eq(rd.body_start, rd.body_end)
    first = rd.next()
    eq(first, 0x33)
    view = codec.PublishView()
    codec.decode_publish_into(view, first, rd.reader.reset(rd.buf, rd.body_start, rd.body_end))
    eq((view.topic(), view.payload(), view.qos, view.retain, view.packet_id),
       ("a/b", b"payload", 1, True, 7))
    eq(bytes(rd.buf[view.topic_start:view.topic_end]), b"a/b")
    eq(rd.next(), -1)  # the lone 0xC0 waits for its length
    rd.feed(b"\x00")
    eq(rd.next(), 0xC0)


def test_feed_reports_how_much_fitted():
    rd = codec.PacketReader(16)
    eq(rd.feed(b"x" * 20), 16)
    rd.reset()
    eq(rd.feed(b"\xc0\x00" * 3), 6)
    eq([rd.next(), rd.next(), rd.next(), rd.next()], [0xC0, 0xC0, 0xC0, -1])


def test_decode_whole_equals_stream_for_every_split_of_two_packets():
    a = codec.encode_bytes(PACKETS[0])
    b = codec.encode_bytes(PACKETS[7])
    stream = a + b
    for cut in range(1, len(stream)):
        got, _ = decode_stream([stream[:cut], stream[cut:]])
        eq(got, [PACKETS[0], PACKETS[7]], "cut %d" % cut)
