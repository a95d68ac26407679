"""The hot paths allocate nothing, measured under real MicroPython.

STYLE.md: "Hot paths (publish, receive, ack, ping) allocate nothing: prove it under
MicroPython with gc.mem_alloc() deltas or micropython.heap_lock()". This file does both:
after a warm-up, 1000 iterations of each operation with the garbage collector disabled
must leave gc.mem_alloc() unchanged, and one more iteration must run under heap_lock()
(where any allocation raises MemoryError).

Under CPython (pytest) there is nothing to measure -- every int and slice is an object
there -- so each test only runs the operation once for correctness and says so. The
measurement happens when host_tests/test_micropython.py runs this file under MicroPython
(node tools/mp_run.mjs host_tests/portable/test_codec_alloc.py).
"""

import gc
import sys

from _codec_util import eq, fail

from mqtt_v5 import codec

ON_MICROPYTHON = sys.implementation.name == "micropython"
ITERATIONS = 1000

TOPIC = b"sensors/room1/temper"  # 20 characters, as bytes
PAYLOAD = bytes(range(64))


def allocated(fn, n=ITERATIONS):
    """Bytes allocated by ``n`` calls of fn() after a warm-up, with the GC off; on
    MicroPython also one call under heap_lock. Returns 0 on CPython (not measured)."""
    fn()
    fn()
    if not ON_MICROPYTHON:
        return 0  # CPython: correctness only, see the module docstring
    import micropython

    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(n):
            fn()
        after = gc.mem_alloc()
    finally:
        gc.enable()
    if after != before:
        return after - before
    # heap_lock nests as a counter: unlock exactly once, or the heap stays locked.
    locked_ok = True
    micropython.heap_lock()
    try:
        fn()
    except MemoryError:
        locked_ok = False
    micropython.heap_unlock()
    if not locked_ok:
        fail("allocated under heap_lock")
    return 0


BUF = bytearray(256)


def encode_qos0():
    return codec.encode_publish(BUF, TOPIC, PAYLOAD, 0)


def encode_qos1():
    return codec.encode_publish(BUF, TOPIC, PAYLOAD, 1, 77)


def test_encode_publish_qos0_allocates_nothing():
    eq(allocated(encode_qos0), 0, "bytes allocated by %d QoS 0 encodes" % ITERATIONS)
    eq(encode_qos0(), 1 + 1 + 2 + 20 + 1 + 64)


def test_encode_publish_qos1_allocates_nothing():
    eq(allocated(encode_qos1), 0, "bytes allocated by %d QoS 1 encodes" % ITERATIONS)
    eq(encode_qos1(), 1 + 1 + 2 + 20 + 2 + 1 + 64)


def test_publishing_to_topics_in_turn_allocates_nothing():
    # Each publish then checks its topic again (only the last one checked is remembered):
    # that check must not allocate either, as a device publishing to a few topics does.
    other = b"sensors/room2/humid"
    turn = [0]

    def encode_in_turn():
        turn[0] ^= 1
        return codec.encode_publish_plain(BUF, other if turn[0] else TOPIC, PAYLOAD, 0, 0,
                                          False, 256)

    eq(allocated(encode_in_turn), 0, "bytes allocated by %d QoS 0 encodes" % ITERATIONS)
    eq(encode_in_turn() + encode_in_turn(), 2 * (1 + 1 + 2 + 64 + 1) + 20 + 19)


def test_encode_publish_header_allocates_nothing():
    def header():
        return codec.encode_publish_header(BUF, TOPIC, 4096, 1, 9)

    eq(allocated(header), 0)


def test_encode_publish_with_bytes_properties_allocates_nothing():
    # user properties and a content type given as bytes: sized, checked and written
    # without a generator or a temporary (the str forms cost one encode per string)
    from mqtt_v5 import properties as P

    props = {P.PROP_USER_PROPERTY: [(b"k", b"v"), (b"unit", b"celsius")],
             P.PROP_CONTENT_TYPE: b"application/json", P.PROP_MESSAGE_EXPIRY_INTERVAL: 60}

    def with_props():
        return codec.encode_publish(BUF, TOPIC, PAYLOAD, 1, 77, props=props)

    eq(allocated(with_props), 0)
    eq(codec.decode_publish_into(codec.PublishView(), 0x32, _reader(with_props())).properties(),
       {P.PROP_USER_PROPERTY: [("k", "v"), ("unit", "celsius")],
        P.PROP_CONTENT_TYPE: "application/json", P.PROP_MESSAGE_EXPIRY_INTERVAL: 60})


def test_encode_publish_with_the_same_str_user_properties_allocates_nothing():
    # the strings of a PublishOptions reused publish after publish are encoded once
    from mqtt_v5 import properties as P

    props = {P.PROP_USER_PROPERTY: [("k", "v"), ("unit", "celsius")]}

    def with_props():
        return codec.encode_publish(BUF, TOPIC, PAYLOAD, 0, props=props)

    eq(allocated(with_props), 0)
    eq(codec.decode_publish_into(codec.PublishView(), 0x30, _reader(with_props(), 0x30))
       .properties(), {P.PROP_USER_PROPERTY: [("k", "v"), ("unit", "celsius")]})


def test_property_strings_are_checked_whatever_was_encoded_before():
    from mqtt_v5 import properties as P

    good = "ok"
    P.size({P.PROP_CONTENT_TYPE: good}, 1 << codec.PUBLISH)
    for bad in ("nul\x00", "x" * 70000):
        try:
            P.size({P.PROP_USER_PROPERTY: [(good, bad)]}, 1 << codec.PUBLISH)
        except codec.UsageError:
            continue
        raise AssertionError("accepted %r" % bad[:8])


def _reader(n, first=0x32):
    rd = codec.PacketReader(512)
    rd.feed(BUF[:n])
    eq(rd.next(), first)
    return rd.reader.reset(rd.buf, rd.body_start, rd.body_end)


class _Incoming:
    """An incoming PUBLISH arriving as a socket read into reader.free()."""

    def __init__(self):
        n = codec.encode_publish(BUF, TOPIC, PAYLOAD, 1, 77)
        self.packet = bytes(BUF[:n])
        self.n = n
        self.rd = codec.PacketReader(512)
        self.view = codec.PublishView()
        self.pid = 0

    def __call__(self):
        rd = self.rd
        view = rd.free()
        view[:self.n] = self.packet  # what sock.readinto(rd.free()) does
        rd.wrote(self.n)
        first = rd.next()
        codec.decode_publish_into(self.view, first,
                                  rd.reader.reset(rd.buf, rd.body_start, rd.body_end))
        self.pid = self.view.packet_id
        rd.next()  # drained: the reader goes back to offset 0


def test_decode_incoming_publish_allocates_nothing():
    inc = _Incoming()
    eq(allocated(inc), 0, "bytes allocated by %d PUBLISH decodes" % ITERATIONS)
    eq(inc.pid, 77)
    eq(inc.view.payload_end - inc.view.payload_start, 64)
    eq(bytes(inc.rd.buf[inc.view.topic_start:inc.view.topic_end]), TOPIC)


def test_acks_and_ping_allocate_nothing():
    rd = codec.PacketReader(64)
    ack = codec.AckView()
    out = bytearray(4)  # exactly one PUBACK, so feed() takes all of it
    state = [0]

    def roundtrip():
        codec.encode_ack(out, codec.PUBACK, 1234)
        rd.feed(out)
        first = rd.next()
        codec.decode_ack_into(ack, first, rd.reader.reset(rd.buf, rd.body_start, rd.body_end))
        state[0] = ack.packet_id
        rd.reset()

    def ping():
        rd.feed(codec.PINGRESP_BYTES)
        rd.next()
        rd.next()

    eq(allocated(roundtrip), 0, "PUBACK encode + decode")
    eq(state[0], 1234)
    eq(allocated(ping), 0, "PINGRESP framing")
