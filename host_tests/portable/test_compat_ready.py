"""_compat.READY / Done(value), preallocated completed awaitables, and Waiter, a reusable
awaitable that parks the task on an Event (both runtimes): awaiting them allocates nothing
under MicroPython; create_task, gather and wait_for take them."""

import asyncio
import gc
import sys

from mqtt_v5._compat import PENDING, READY, Done, Waiter


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


class _Counter(Waiter):
    """Returns 1, 2, 3... once its event is set; PENDING (event clear) before."""

    def __init__(self):
        Waiter.__init__(self, asyncio.Event())
        self.n = 0

    def poll(self):
        if not self.event.is_set():
            return PENDING
        self.n += 1
        return self.n


async def test_waiter_parks_until_set_and_returns_what_poll_gives():
    w = _Counter()
    ev = w.event
    got = []

    async def waiter(n):
        for _ in range(n):
            got.append(await w.wait())
            ev.clear()

    task = asyncio.create_task(waiter(3))
    for i in range(3):
        await asyncio.sleep(0.002)
        assert len(got) == i  # parked until set()
        ev.set()
    await asyncio.wait_for(task, 1)
    assert got == [1, 2, 3]
    ev.set()
    assert await w.wait() == 4  # already set: no wait
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
    assert got == [5]


async def test_waiter_run_as_a_task_keeps_its_own_result():
    w = _Counter()
    w.event.set()
    t1 = asyncio.create_task(w.wait())
    await asyncio.sleep(0)
    assert await w.wait() == 2  # a later await of the same waiter...
    assert await t1 == 1  # ...does not change what the task returned
    assert await asyncio.gather(w.wait()) == [3]
    assert await asyncio.wait_for(w.wait(), 1) == 4
    w.event.clear()
    try:
        await asyncio.wait_for(w.wait(), 0.01)  # parked, then cancelled by the timeout
        raise AssertionError("no timeout")
    except asyncio.TimeoutError:
        pass
    w.event.set()
    assert await w.wait() == 5


async def test_awaiting_a_waiter_allocates_nothing_under_micropython():
    if sys.implementation.name != "micropython":
        return
    w = _Counter()
    w.event.set()

    async def many(n):
        total = 0
        for _ in range(n):
            total += await w.wait()  # a new small int each time
        return total

    await many(10)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        await many(1000)
        used = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert used <= 128, used


class _Values(Waiter):
    """Returns the given values one by one (its event stays set)."""

    def __init__(self, values):
        Waiter.__init__(self, asyncio.Event())
        self.event.set()
        self.values = list(values)

    def poll(self):
        return self.values.pop(0)


async def test_waiter_returns_every_kind_of_value_whole():
    # Under MicroPython the small non-negative ints leave in one StopIteration whose
    # args[0] is rewritten in place (uctypes); everything else, and the ints at and past
    # the rewrite's bound, in a StopIteration of its own. Both kinds, interleaved, must
    # come back exactly as poll() gave them.
    big = 1 << 40
    values = [0, 1, None, 0x0FFFFFFF, 0x10000000, -1, "text", 7, big, (1, 2), 0, -(1 << 30),
              b"\x00", 0x7FFFFFFF, 42]
    w = _Values(values)
    got = []
    for _ in range(len(values)):
        got.append(await w.wait())
    assert got == values, got
    # A value kept across later awaits is not changed by them (the rewritten word is the
    # StopIteration's, never the value's).
    w = _Values([5, 6])
    first = await w.wait()
    assert await w.wait() == 6
    assert first == 5


def test_stop_iteration_rewrite_is_active_on_the_unix_port():
    # The rewrite is worth its risk only where it works: on the unix port (32- and
    # 64-bit, as on an ESP32) it must have passed its own check at the first Waiter.
    if sys.implementation.name != "micropython" or sys.platform != "linux":
        return
    from mqtt_v5 import _compat

    _Values([1])
    assert _compat._stop is not None
