"""The session's hot paths allocate nothing, measured under real MicroPython.

After a warm-up, 1000 iterations of each steady-state exchange (publish QoS 0/1/2,
receive QoS 0/1/2, keep-alive ping) with the garbage collector disabled must leave
``gc.mem_alloc()`` unchanged, and one more iteration must run under
``micropython.heap_lock()`` (any allocation raises MemoryError there). Topics are bytes:
a str topic is encoded per call, which the client layer avoids by caching.

Under CPython there is no per-operation measurement to make (every int is an object),
so there the same loops run under ``tracemalloc`` and only check that nothing is
*retained*: the in-flight table, alias table and queues do not grow.
"""

import gc
import sys

from _session_util import WRAP, connected, eq, fail

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5 import session as S
from mqtt_v5._compat import ticks_add

ON_MICROPYTHON = sys.implementation.name == "micropython"
ITERATIONS = 1000

TOPIC = b"sensors/room1/temper"
PAYLOAD = bytes(range(64))


def allocated(fn, n=ITERATIONS):
    """Bytes allocated by ``n`` calls of fn() after a warm-up (MicroPython, GC off, then
    one call under heap_lock); on CPython, bytes retained (tracemalloc)."""
    for _ in range(3):
        fn()
    if not ON_MICROPYTHON:
        return _retained_cpython(fn, n)
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
    # heap_lock nests: unlock exactly once, or the heap stays locked for the next test.
    locked_ok = False
    micropython.heap_lock()
    try:
        fn()
        locked_ok = True
    except MemoryError:
        pass
    finally:
        micropython.heap_unlock()
    if not locked_ok:
        fail("allocated under heap_lock")
    return after - before


def _retained_cpython(fn, n):
    import tracemalloc

    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            fn()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # A few hundred bytes of interpreter noise (int and frame caches) are not growth:
    # a leak of even one small object per iteration would be tens of kilobytes.
    return 0 if after - before < 2048 else after - before


class Rig:
    """A connected session plus preallocated server-side buffers."""

    def __init__(self, **kw):
        self.s = connected(**kw)
        self.buf = bytearray(256)
        self.now = 2000
        self.events = 0

    def server_sends(self, data):
        """Write ``data`` as a socket read into ``reader.free()`` would."""
        rd = self.s.reader
        n = len(data)
        # Two statements: MicroPython 1.27 heap-allocates the slice of
        # ``rd.free()[0:n] = data`` (16 bytes), not of ``view[0:n] = data``.
        view = rd.free()
        view[0:n] = data
        rd.wrote(n)

    def poll(self, want):
        ev = self.s.poll(self.now)
        if ev != want:
            fail("event %d, wanted %d" % (ev, want))
        self.events += 1

    def flush(self):
        if not self.s.out_len:
            fail("nothing to flush")
        self.s.flushed(self.now)


# ---------------------------------------------------------------- outbound ---

def test_publish_qos0_allocates_nothing():
    r = Rig()
    s = r.s

    def op():
        s.publish(TOPIC, PAYLOAD, 0)
        r.flush()

    eq(allocated(op), 0, "bytes allocated by %d QoS 0 publishes" % ITERATIONS)
    s.publish(TOPIC, PAYLOAD, 0)
    eq(codec.decode(bytes(s.out[:s.out_len])), codec.Publish(TOPIC.decode(), PAYLOAD))


def test_publish_qos1_and_puback_allocate_nothing():
    r = Rig()
    s = r.s
    ack = bytearray(4)

    def op():
        pid = s.publish(TOPIC, PAYLOAD, 1)
        r.flush()
        codec.encode_ack(ack, codec.PUBACK, pid)
        s.reader.feed(ack)
        r.poll(S.EV_PUBLISH_DONE)
        r.poll(S.EV_NONE)

    eq(allocated(op), 0, "bytes allocated by %d QoS 1 publish + PUBACK" % ITERATIONS)
    eq((s.inflight(), s.queued(), s.ev_rc), (0, 0, 0))
    eq(s.ev_pid, r.events // 2)  # one packet id per exchange, from 1


def test_publish_qos2_flow_allocates_nothing():
    r = Rig()
    s = r.s
    ack = bytearray(4)

    def op():
        pid = s.publish(TOPIC, PAYLOAD, 2)
        r.flush()
        codec.encode_ack(ack, codec.PUBREC, pid)
        s.reader.feed(ack)
        r.poll(S.EV_CONTINUE)  # PUBREL queued
        r.flush()
        codec.encode_ack(ack, codec.PUBCOMP, pid)
        s.reader.feed(ack)
        r.poll(S.EV_PUBLISH_DONE)
        r.poll(S.EV_NONE)

    eq(allocated(op), 0, "bytes allocated by %d QoS 2 flows" % ITERATIONS)
    eq(s.inflight(), 0)


def test_publish_with_a_known_auto_alias_allocates_nothing():
    r = Rig(props={P.PROP_TOPIC_ALIAS_MAXIMUM: 4}, connect_kw={"auto_alias": True})
    s = r.s

    def op():
        s.publish(TOPIC, PAYLOAD, 0)
        r.flush()

    eq(allocated(op), 0, "bytes allocated by %d aliased publishes" % ITERATIONS)
    s.publish(TOPIC, PAYLOAD, 0)
    eq(codec.decode(bytes(s.out[:s.out_len])).topic, "")


def test_publish_large_payload_as_tail_allocates_nothing():
    r = Rig(out_size=64)
    s = r.s
    big = bytes(300)

    def op():
        s.publish(TOPIC, big, 0)
        if s.out_tail is not big:
            fail("payload copied")
        r.flush()

    eq(allocated(op), 0)


# ----------------------------------------------------------------- inbound ---

def test_receive_qos0_allocates_nothing():
    r = Rig()
    s = r.s
    n = codec.encode_publish(r.buf, TOPIC, PAYLOAD, 0)
    data = bytes(r.buf[:n])

    def op():
        r.server_sends(data)
        r.poll(S.EV_MESSAGE)
        r.poll(S.EV_NONE)

    eq(allocated(op), 0, "bytes allocated by %d incoming QoS 0" % ITERATIONS)
    eq(bytes(s.topic_buf[s.topic_start:s.topic_end]), TOPIC)
    eq(s.msg.payload_end - s.msg.payload_start, len(PAYLOAD))


def test_receive_qos1_and_puback_allocate_nothing():
    r = Rig()
    s = r.s
    n = codec.encode_publish(r.buf, TOPIC, PAYLOAD, 1, 77)
    data = bytes(r.buf[:n])

    def op():
        r.server_sends(data)
        r.poll(S.EV_MESSAGE)
        r.poll(S.EV_CONTINUE)  # the PUBACK
        r.flush()
        r.poll(S.EV_NONE)

    eq(allocated(op), 0, "bytes allocated by %d incoming QoS 1 + PUBACK" % ITERATIONS)
    eq(s.msg.packet_id, 77)


def test_receive_qos2_flow_allocates_nothing():
    r = Rig()
    s = r.s
    pubrel = bytearray(4)
    codec.encode_ack(pubrel, codec.PUBREL, 78)
    n = codec.encode_publish(r.buf, TOPIC, PAYLOAD, 2, 78)
    data = bytes(r.buf[:n])

    def op():
        r.server_sends(data)
        r.poll(S.EV_MESSAGE)
        r.poll(S.EV_CONTINUE)  # PUBREC
        r.flush()
        s.reader.feed(pubrel)
        r.poll(S.EV_CONTINUE)  # PUBCOMP
        r.flush()
        r.poll(S.EV_NONE)

    eq(allocated(op), 0, "bytes allocated by %d incoming QoS 2 flows" % ITERATIONS)


def test_receive_with_a_known_alias_allocates_nothing():
    r = Rig(topic_alias_maximum=4)
    s = r.s
    n = codec.encode_publish(r.buf, TOPIC, PAYLOAD, 0, topic_alias=3)
    r.server_sends(bytes(r.buf[:n]))
    r.poll(S.EV_MESSAGE)  # sets the alias (allocates its copy of the topic once)
    r.poll(S.EV_NONE)
    n = codec.encode_publish(r.buf, b"", PAYLOAD, 0, topic_alias=3)
    data = bytes(r.buf[:n])

    def op():
        r.server_sends(data)
        r.poll(S.EV_MESSAGE)
        r.poll(S.EV_NONE)

    eq(allocated(op), 0)
    eq(bytes(s.topic_buf[s.topic_start:s.topic_end]), TOPIC)


def test_receive_with_properties_allocates_nothing():
    r = Rig()
    s = r.s
    props = {P.PROP_SUBSCRIPTION_IDENTIFIER: 12, P.PROP_CONTENT_TYPE: "application/json",
             P.PROP_USER_PROPERTY: [("trace", "abc")], P.PROP_MESSAGE_EXPIRY_INTERVAL: 3600}
    n = codec.encode_publish(r.buf, TOPIC, PAYLOAD, 1, 79, props=props)
    data = bytes(r.buf[:n])

    def op():
        r.server_sends(data)
        r.poll(S.EV_MESSAGE)
        r.poll(S.EV_CONTINUE)
        r.flush()
        r.poll(S.EV_NONE)

    eq(allocated(op), 0)
    got = s.msg.properties()
    eq(got[P.PROP_SUBSCRIPTION_IDENTIFIER], [12])  # a list: it may repeat in PUBLISH
    eq(got[P.PROP_MESSAGE_EXPIRY_INTERVAL], 3600)


def test_keep_alive_ping_allocates_nothing():
    # and the clock runs across the ticks wrap meanwhile
    r = Rig(now=ticks_add(WRAP, -1500), connect_kw={"keep_alive_s": 1})
    r.now = ticks_add(WRAP, -1500)
    s = r.s
    pingresp = codec.PINGRESP_BYTES

    def op():
        r.now = ticks_add(r.now, 1000)
        if s.next_timeout(r.now) != 0:
            fail("ping not due")
        s.on_timer(r.now)
        r.flush()
        s.reader.feed(pingresp)
        r.poll(S.EV_CONTINUE)
        r.poll(S.EV_NONE)

    eq(allocated(op), 0, "bytes allocated by %d PINGREQ/PINGRESP" % ITERATIONS)
