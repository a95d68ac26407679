"""The in-process transport pair (mqtt_v5.memory): runs under pytest AND under real
MicroPython (tools/mp_run.mjs awaits the async tests; host_tests/conftest.py runs them with
asyncio.run). No pytest features here."""

import asyncio

from _check import raises

from mqtt_v5.errors import NetworkError, UsageError
from mqtt_v5.memory import MemoryTransport, memory_pipe


async def _raises_async(exc_type, coro):
    try:
        await coro
    except exc_type as e:
        return e
    raise AssertionError("did not raise " + exc_type.__name__)


async def _read_exactly(t, n):
    out = bytearray()
    buf = bytearray(64)
    while len(out) < n:
        k = await t.readinto(buf)
        assert k > 0, "closed early"
        out += buf[:k]
    return bytes(out)


async def test_bytes_flow_both_ways():
    a, b = memory_pipe(64)
    await a.write(b"\x10\x02hi")
    buf = bytearray(16)
    n = await b.readinto(buf)
    assert bytes(buf[:n]) == b"\x10\x02hi"
    await b.write(memoryview(b"xxreplyxx")[2:7])
    n = await a.readinto(buf)
    assert bytes(buf[:n]) == b"reply"
    assert a.bytes_out == 4 and b.bytes_in == 4 and b.bytes_out == 5 and a.bytes_in == 5


async def test_readinto_a_memoryview_and_a_small_buffer():
    a, b = memory_pipe(32)
    await a.write(b"abcdefgh")
    buf = bytearray(10)
    n = await b.readinto(memoryview(buf)[4:7])
    assert n == 3 and bytes(buf[4:7]) == b"abc"
    n = await b.readinto(buf)
    assert bytes(buf[:n]) == b"defgh"


async def test_reader_waits_for_a_writer():
    a, b = memory_pipe(16)
    buf = bytearray(8)
    got = []

    async def reader():
        got.append(await b.readinto(buf))

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not got
    await a.write(b"ok")
    await task
    assert got == [2] and bytes(buf[:2]) == b"ok"


async def test_a_write_larger_than_the_ring_waits_for_the_reader_and_wraps():
    a, b = memory_pipe(7)  # odd size: chunks wrap around the ring's end
    data = bytes(range(200))
    writer = asyncio.create_task(a.write(data))
    got = await _read_exactly(b, len(data))
    await writer
    assert got == data
    # Interleaved small writes and reads move the ring's start around.
    for i in range(20):
        await a.write(bytes([i]) * (i % 6 + 1))
        assert await _read_exactly(b, i % 6 + 1) == bytes([i]) * (i % 6 + 1)


async def test_close_gives_the_peer_its_remaining_bytes_then_zero():
    a, b = memory_pipe(32)
    await a.write(b"last words")
    await a.close()
    buf = bytearray(32)
    n = await b.readinto(buf)
    assert bytes(buf[:n]) == b"last words"
    assert await b.readinto(buf) == 0
    assert await b.readinto(buf) == 0
    assert await a.readinto(buf) == 0  # the closed end reads 0 too
    e = await _raises_async(NetworkError, b.write(b"x"))
    assert "closed" in str(e)
    await _raises_async(NetworkError, a.write(b"x"))
    await a.close()  # idempotent


async def test_close_wakes_a_waiting_reader_and_a_blocked_writer():
    a, b = memory_pipe(4)
    buf = bytearray(4)
    results = []

    async def reader():
        results.append(await a.readinto(buf))

    async def writer():
        try:
            await a.write(b"123456789")  # b's ring holds 4: blocks
        except NetworkError:
            results.append("writer failed")

    r = asyncio.create_task(reader())
    w = asyncio.create_task(writer())
    for _ in range(3):
        await asyncio.sleep(0)
    await b.close()
    await r
    await w
    assert 0 in results and "writer failed" in results


def test_capacity_must_be_positive():
    raises(UsageError, MemoryTransport, 0)
