"""An in-process Transport pair: ``a, b = memory_pipe()``.

What ``a`` writes, ``b`` reads, and the other way round. Each end receives
into a ring buffer of ``capacity`` bytes allocated once; a writer finding the
peer's ring full waits (back-pressure), a reader finding its ring empty waits
on an ``asyncio.Event``: nothing polls. ``close()`` on one end makes the
other end read its remaining bytes and then 0.

Used by the tests (the MicroPython WebAssembly port has no sockets) and by
applications that bring their own link (serial, radio, a custom socket).

Memory on MicroPython: ``write`` and ``readinto`` are plain methods returning
an awaitable, so neither makes a coroutine. A write that fits copies straight
into the peer's ring and allocates nothing, unless it wraps around the ring's
end (then a few memoryview slices). A read returns the end's one ``Waiter``
(``_compat``): it copies what is buffered, or parks the task until the writer
sets the event, without allocating -- the views of the ring it copies from
are kept by length (the ring restarts at offset 0 whenever it empties, so a
request/response exchange always reads from 0 and lengths repeat). Like a
coroutine, what ``readinto`` returns is awaited once; one reader at a time.
"""

import asyncio

from ._compat import PENDING, READY, Waiter
from .errors import NetworkError, UsageError


class MemoryTransport:
    """One end of a memory pipe; see ``memory_pipe``."""

    def __init__(self, capacity=4096):
        if capacity < 1:
            raise UsageError("memory pipe capacity must be at least 1 byte")
        self._ring = bytearray(capacity)
        self._mv = memoryview(self._ring)
        self._r = 0  # first unread byte
        self._n = 0  # bytes stored
        self._data = asyncio.Event()  # set: bytes stored or end of stream
        self._reader = _Read(self)  # what readinto returns (one reader at a time)
        self._views = {}  # length -> self._mv[0:length] (reads from offset 0)
        self._space = asyncio.Event()  # set: room in the ring or end of stream
        self._closed = False  # this end was closed
        self._eof = False  # the peer closed: no more bytes will come
        self._off = 0  # progress of the write in course
        self.peer = None  # type: MemoryTransport | None
        self.bytes_in = 0
        self.bytes_out = 0

    # On MicroPython a coroutine's frame is heap-allocated at every call, so the
    # work is done in plain methods: ``readinto`` makes no coroutine, ``write``
    # none unless it has to wait for room.

    def readinto(self, buf):
        """Copy what is buffered (at least one byte, waiting for it) into
        ``buf``; 0 once the peer closed and everything was read. Awaitable."""
        r = self._reader
        r.buf = buf
        return r.wait()

    def write(self, buf):
        """Copy all of ``buf`` into the peer's ring, waiting for room; awaitable.
        When it all fits at once (the usual case) the copy is done here and the
        preallocated ``READY`` is returned: no coroutine is made."""
        self._off = 0
        try:
            if not self._put(buf):
                return READY
        except NetworkError as e:
            return _raise(e)  # raised where the caller awaits, as from a coroutine
        return self._write_rest(buf)

    async def _write_rest(self, buf):
        while True:
            await self.peer._space.wait()  # type: ignore[union-attr]
            if not self._put(buf):
                return

    def _take(self, buf):
        n = self._n
        if not n:
            if self._closed or self._eof:
                return 0
            self._data.clear()
            return -1
        k = len(buf)
        if k > n:
            k = n
        cap = len(self._ring)
        r = self._r
        first = cap - r
        if first > k:
            first = k
        if r == 0:
            src = self._views.get(k)
            if src is None:
                if len(self._views) >= 16:
                    self._views.clear()
                src = self._views[k] = self._mv[0:k]
            buf[0:k] = src
        else:
            buf[0:first] = self._mv[r:r + first]
            if first < k:
                buf[first:k] = self._mv[0:k - first]
        n -= k
        self._n = n
        r += k
        self._r = 0 if n == 0 else (r - cap if r >= cap else r)
        self.bytes_in += k
        self._space.set()
        return k

    def _put(self, buf):
        """Copy as much of ``buf[self._off:]`` as fits; True while some is left."""
        p = self.peer
        if self._closed:
            raise NetworkError("memory pipe: write on a closed end")
        if p is None or self._eof:
            raise NetworkError("memory pipe: the other end is closed")
        total = len(buf)
        off = self._off
        while off < total:
            cap = len(p._ring)
            free = cap - p._n
            if free == 0:
                self._off = off
                p._space.clear()
                return True
            n = total - off
            if n > free:
                n = free
            w = p._r + p._n
            if w >= cap:
                w -= cap
            first = cap - w
            if first > n:
                first = n
            if off == 0 and first == total:
                p._mv[w:w + total] = buf  # the common case: no slicing, no allocation
            else:
                src = buf if isinstance(buf, memoryview) else memoryview(buf)
                p._mv[w:w + first] = src[off:off + first]
                if first < n:
                    p._mv[0:n - first] = src[off + first:off + n]
            p._n += n
            off += n
            p._data.set()
        self.bytes_out += total
        return False

    async def close(self):
        """Close this end; the peer reads what is left, then 0."""
        if self._closed:
            return
        self._closed = True
        self._data.set()
        self._space.set()
        p = self.peer
        if p is not None:
            p._eof = True
            p._data.set()
            p._space.set()


class _Read(Waiter):
    """A pipe end's pending ``readinto``: copies what is buffered into ``buf``,
    else waits for the writer's ``_data.set()`` (``_take`` clears it first)."""

    def __init__(self, end):
        Waiter.__init__(self, end._data)
        self._end = end
        self.buf = None

    def poll(self):
        n = self._end._take(self.buf)
        return PENDING if n < 0 else n


def memory_pipe(capacity=4096):
    """Two connected ``MemoryTransport`` ends, each receiving into its own
    ``capacity``-byte ring."""
    a = MemoryTransport(capacity)
    b = MemoryTransport(capacity)
    a.peer = b
    b.peer = a
    return a, b


async def _raise(error):
    raise error
