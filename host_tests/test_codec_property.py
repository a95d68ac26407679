"""Hypothesis property tests of the codec.

* round trips over generated packets of all 15 types with generated properties;
* malformed input -- random bytes, and valid packets mutated by bit flips, byte overwrites,
  truncation, insertion, deletion and a corrupted Remaining Length -- lets only MqttError
  subclasses escape, and every decode finishes (a watchdog turns a hang into a failure);
* incremental feeding split at random points equals whole decoding;
* the hot path (PacketReader + decode_publish_into) agrees with the cold path (decode);
* topic.matches agrees with a straightforward reference matcher.

The `ci` profile (default) keeps this file to a few seconds; `make fuzz` runs it with the
`fuzz` profile (host_tests/conftest.py) for far more examples.
"""

import contextlib
import signal

import pytest
from codec_strategies import packets, publishes, topic_filters, topic_names
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import topic as T
from mqtt_v5.errors import MqttError, ProtocolError

HANG_S = 5  # far beyond any decode of these sizes: only a loop that never ends hits it


@contextlib.contextmanager
def watchdog(what):
    def alarm(signum, frame):
        raise AssertionError(f"{what} did not finish within {HANG_S} s (hang?)")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def only_mqtt_errors(data):
    """decode(data) and a streamed decode of it: a packet or an MqttError, nothing else."""
    with watchdog("decode"):
        try:
            codec.decode(data)
        except MqttError:
            pass
        rd = codec.PacketReader(256)
        view = codec.PublishView()
        pos = 0
        try:
            while pos < len(data):
                n = rd.feed(data[pos:pos + 7])
                pos += n
                while True:
                    first = rd.next()
                    if first < 0:
                        break
                    r = rd.reader.reset(rd.buf, rd.body_start, rd.body_end)
                    if first >> 4 == codec.PUBLISH:
                        codec.decode_publish_into(view, first, r)
                        view.topic(), view.payload(), view.properties()
                    else:
                        codec.decode_body(first, r)
                if n == 0:
                    break
        except MqttError:
            pass


# ----------------------------------------------------------------- round trips ----------

@given(packets)
def test_round_trip_every_packet_type(pkt):
    data = codec.encode_bytes(pkt)
    back = codec.decode(data)
    assert back == pkt
    assert codec.encode_bytes(back) == data
    assert data[0] >> 4 == pkt.type


@given(st.lists(packets, min_size=1, max_size=5), st.data())
def test_split_at_random_points_equals_whole(pkts, data):
    stream = b"".join(codec.encode_bytes(p) for p in pkts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    rd = codec.PacketReader(max(len(stream), 16))
    got = []
    for chunk in chunks:
        assert rd.feed(chunk) == len(chunk)
        while (first := rd.next()) >= 0:
            got.append(codec.decode_body(first, rd.reader.reset(rd.buf, rd.body_start,
                                                                rd.body_end)))
    assert got == pkts


@given(publishes())
def test_hot_path_agrees_with_cold_path(pkt):
    data = codec.encode_bytes(pkt)
    rd = codec.PacketReader(len(data) + 16)
    rd.feed(data + b"\xc0")  # the start of the next packet trailing
    first = rd.next()
    v = codec.decode_publish_into(codec.PublishView(), first,
                                  rd.reader.reset(rd.buf, rd.body_start, rd.body_end))
    cold = codec.decode(data)
    assert (v.topic(), v.payload(), v.qos, v.retain, v.dup, v.packet_id, v.properties()) == (
        cold.topic, cold.payload, cold.qos, cold.retain, cold.dup, cold.packet_id,
        cold.properties)
    assert v.topic_alias == cold.properties.get(0x23, 0)


@given(packets, st.data())
def test_too_large_refused_from_the_header_alone(pkt, draw):
    data = codec.encode_bytes(pkt)
    assume(len(data) > 16)
    limit = draw.draw(st.integers(16, len(data) - 1))
    rd = codec.PacketReader(limit)
    header = data[:min(5, len(data))]
    rd.feed(header)
    with pytest.raises(ProtocolError) as e:
        rd.next()
    assert e.value.reason_code == 0x95


# ----------------------------------------------------------------- malformed input ------

@given(st.binary(max_size=300))
@example(b"\x30\xff\xff\xff\x7f")
@example(b"\x10\xff\xff\xff\xff\x0f")
def test_random_bytes_raise_only_mqtt_errors(data):
    only_mqtt_errors(data)


@given(st.integers(1, 15), st.integers(0, 15), st.binary(max_size=200))
def test_random_body_behind_a_valid_header(ptype, flags, body):
    n = len(body)
    head = bytearray([ptype << 4 | flags])
    while True:
        b = n & 0x7F
        n >>= 7
        head.append(b | 0x80 if n else b)
        if not n:
            break
    only_mqtt_errors(bytes(head) + body)


mutations = st.sampled_from(("flip", "byte", "truncate", "insert", "delete", "length"))


@given(packets, st.lists(st.tuples(mutations, st.integers(0, 10**6), st.integers(0, 255)),
                         min_size=1, max_size=4))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_mutated_valid_packets_raise_only_mqtt_errors(pkt, muts):
    data = bytearray(codec.encode_bytes(pkt))
    for kind, where, value in muts:
        if not data:
            break
        i = where % len(data)
        if kind == "flip":
            data[i] ^= 1 << (value % 8)
        elif kind == "byte":
            data[i] = value
        elif kind == "truncate":
            del data[i:]
        elif kind == "insert":
            data.insert(i, value)
        elif kind == "delete":
            del data[i]
        else:  # corrupt the Remaining Length: another VBI of 1..5 bytes, maybe non-minimal
            end = 1
            while end < len(data) and end < 5 and data[end] & 0x80:
                end += 1
            new = bytes([(value | 0x80)] * (where % 5) + [value & 0x7F])
            data[1:end + 1] = new
    only_mqtt_errors(bytes(data))


# ----------------------------------------------------------------- topics ---------------

def reference_match(filt, topic):
    if filt.startswith("$share/"):
        filt = filt.split("/", 2)[2]
    if topic.startswith("$") and filt[:1] in ("+", "#"):
        return False  # [MQTT-4.7.2-1]
    fl = filt.split("/")
    tl = topic.split("/")
    for i, lvl in enumerate(fl):
        if lvl == "#":
            return True
        if i >= len(tl):
            return False
        if lvl != "+" and lvl != tl[i]:
            return False
    return len(fl) == len(tl)


topic_like = st.lists(st.sampled_from(("a", "b", "", "$x", "+", "#", "ab")), min_size=1,
                      max_size=4).map("/".join)


@given(st.one_of(topic_filters(), topic_like), st.one_of(topic_names, topic_like))
def test_matches_agrees_with_a_reference(filt, topic):
    assume(T.filter_ok(filt.encode()) and T.topic_name_ok(topic.encode()) and topic)
    assert T.match(filt, topic) == reference_match(filt, topic), (filt, topic)
