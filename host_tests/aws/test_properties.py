"""Hypothesis: the pure AWS functions and the WebSocket frame reader take any input and
answer with a result or our typed errors, never a crash or a hang."""

from __future__ import annotations

import asyncio
import struct

from hypothesis import given
from hypothesis import strategies as st

from mqtt_v5 import NetworkError, ProtocolError, UsageError
from mqtt_v5.aws.connect import check_publish, check_topic
from mqtt_v5.aws.jobs import jobs_topic, match_jobs_topic
from mqtt_v5.aws.shadow import match_shadow_topic, shadow_topic
from mqtt_v5.ws import WebSocketTransport

name = st.text(st.sampled_from("abcXYZ019:_-"), min_size=1, max_size=20)
topicish = st.one_of(
    st.text(max_size=80),
    st.builds(lambda t, r: f"$aws/things/{t}/{r}", name, st.text(max_size=40)),
)


@given(topicish)
def test_matchers_answer_none_or_a_consistent_tuple(topic):
    m = match_shadow_topic(topic)
    if m is not None:
        thing, shadow, op = m
        assert shadow_topic(thing, op, shadow) == topic
    j = match_jobs_topic(topic)
    if j is not None:
        thing, job, op, answer = j
        assert topic.startswith(f"$aws/things/{thing}/jobs/")
        rest = f"{job}/{op}" if job else op
        assert topic.endswith(f"/jobs/{rest}" + (f"/{answer}" if answer else ""))


@given(name, st.sampled_from(["get", "update", "delete"]), st.one_of(st.none(), name),
       st.sampled_from(["accepted", "rejected", "delta", "documents"]))
def test_shadow_topics_round_trip(thing, op, shadow, answer):
    if op != "update" and answer in ("delta", "documents"):
        return
    topic = shadow_topic(thing, f"{op}/{answer}", shadow)
    assert match_shadow_topic(topic) == (thing, shadow, f"{op}/{answer}")


@given(name, st.sampled_from(["get", "update"]), st.text(st.sampled_from("abc019_-"),
                                                         min_size=1, max_size=64),
       st.sampled_from(["accepted", "rejected"]))
def test_jobs_topics_round_trip(thing, op, job, answer):
    assert match_jobs_topic(jobs_topic(thing, f"{op}/{answer}", job)) == (thing, job, op, answer)


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)), st.binary(max_size=64),
       st.integers(0, 3))
def test_limit_checks_raise_only_usage_errors(topic, payload, qos):
    try:
        check_publish(topic, payload, qos)
    except UsageError:
        pass
    try:
        check_topic(topic, "filter")
    except UsageError:
        pass


class BytesLink:
    """The transport under the WebSocket layer: hands out ``data`` in ``step``-sized reads."""

    def __init__(self, data: bytes, step: int):
        self.data = data
        self.step = step
        self.sent = bytearray()

    async def readinto(self, buf):
        n = min(len(buf), self.step, len(self.data))
        buf[:n] = self.data[:n]
        self.data = self.data[n:]
        return n

    async def write(self, buf):
        self.sent += bytes(buf)

    async def close(self):
        pass


async def read_all(ws, size):
    out = bytearray()
    buf = bytearray(size)
    for _ in range(10_000):
        n = await ws.readinto(buf)
        if not n:
            return bytes(out)
        out += buf[:n]
    raise AssertionError("the reader does not end")


@given(st.binary(max_size=400), st.integers(1, 64), st.integers(1, 64))
def test_frame_reader_takes_any_bytes(data, step, size):
    async def main():
        ws = WebSocketTransport(BytesLink(data, step))
        try:
            await read_all(ws, size)
        except (ProtocolError, NetworkError):
            pass

    asyncio.run(main())


def frame(op, payload, fin=True):
    n = len(payload)
    b0 = (0x80 if fin else 0) | op
    if n < 126:
        return bytes([b0, n]) + payload
    if n < 65536:
        return struct.pack(">BBH", b0, 126, n) + payload
    return struct.pack(">BBQ", b0, 127, n) + payload


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=6), st.integers(1, 50),
       st.integers(1, 64), st.data())
def test_fragmented_messages_and_pings_read_as_one_stream(messages, step, size, data):
    stream = b""
    for m in messages:
        cut = sorted(data.draw(st.lists(st.integers(0, len(m)), max_size=3)))
        parts = [m[a:b] for a, b in zip([0, *cut], [*cut, len(m)], strict=True)]
        for i, p in enumerate(parts):
            if data.draw(st.booleans()):
                stream += frame(0x9, b"p")            # a ping between fragments
            stream += frame(0x2 if i == 0 else 0x0, p, fin=i == len(parts) - 1)
    stream += frame(0x8, struct.pack(">H", 1000))

    async def main():
        link = BytesLink(stream, step)
        ws = WebSocketTransport(link)
        assert await read_all(ws, size) == b"".join(messages)
        return link.sent

    sent = asyncio.run(main())
    assert sent                                       # pongs and the close answer
