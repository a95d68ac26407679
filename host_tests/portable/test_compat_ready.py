"""_compat.READY / Done(value), preallocated completed awaitables, and EventWaiter (both
runtimes): awaiting them allocates nothing under MicroPython; create_task and gather
take them."""

import asyncio
import gc
import sys

from mqtt_v5._compat import READY, Done


async def _await_many(n, awaitable=READY):
    for _ in range(n):
        await awaitable


async def test_ready_is_a_reusable_completed_awaitable():
    assert await READY is None
    assert await READY is None
    assert await asyncio.gather(READY, READY) == [None, None]
    assert await asyncio.create_task(READY) is None
    zero = Done(0)
    assert await zero == 0
    assert await zero == 0
    assert await asyncio.gather(zero, zero) == [0, 0]
    assert await asyncio.create_task(zero) == 0


async def test_awaiting_ready_allocates_nothing_under_micropython():
    if sys.implementation.name != "micropython":
        return
    for awaitable in (READY, Done(0)):
        await _await_many(10, awaitable)
        gc.collect()
        gc.disable()
        try:
            before = gc.mem_alloc()
            await _await_many(1000, awaitable)  # one coroutine for the loop, 1000 awaits
            used = gc.mem_alloc() - before
        finally:
            gc.enable()
        assert used <= 128, used


async def test_event_waiter_waits_like_event_wait_and_survives_cancellation():
    from mqtt_v5._compat import EventWaiter

    ev = asyncio.Event()
    w = EventWaiter(ev)
    got = []

    async def waiter(n):
        for _ in range(n):
            got.append(await w)
            ev.clear()

    task = asyncio.create_task(waiter(3))
    for i in range(3):
        await asyncio.sleep(0.002)
        assert len(got) == i  # parked until set()
        ev.set()
    await asyncio.wait_for(task, 1)
    assert got == [True, True, True]
    ev.set()
    assert await w is True  # already set: no wait
    ev.clear()
    task = asyncio.create_task(waiter(1))
    await asyncio.sleep(0.002)
    task.cancel()
    try:
        await task
        raise AssertionError("not cancelled")
    except asyncio.CancelledError:
        pass
    got.clear()
    task = asyncio.create_task(waiter(1))  # the same waiter works after a cancel
    await asyncio.sleep(0.002)
    ev.set()
    await asyncio.wait_for(task, 1)
    assert got == [True]
