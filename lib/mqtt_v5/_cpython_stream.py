# mypy: ignore-errors
# (CPython only: the project type-checks lib/ against MicroPython's stubs.)
"""CPython only (imported by ``_compat`` on CPython, never on a device): a
TCP/TLS stream with MicroPython's ``Stream`` surface (``readinto``, ``write``,
``drain``, ``close``, ``wait_closed``), built on ``asyncio.BufferedProtocol``.

Why not ``asyncio.StreamReader``: it has no ``readinto``, so every read would
copy kernel -> its buffer -> new bytes -> the caller's buffer. Here a waiting
``readinto`` hands its own buffer to the event loop, which receives (or, for
TLS, decrypts) straight into it; bytes that arrive while nobody waits go to a
64 KiB side buffer and are copied out once.

Writes: the write buffer limits make the protocol pause as soon as the
transport keeps any byte, and ``drain`` waits until it has sent them all.
Recent CPython keeps a *reference* to the caller's buffer when a send is
partial; waiting for the transport to empty before ``drain`` returns keeps the
caller free to reuse its buffer.
"""

import asyncio
import errno

_SIDE = 65536  # side buffer for bytes that arrive with no readinto waiting
_DIRECT_MIN = 16384  # smaller caller buffers are filled from the side buffer
_YIELD_EVERY = 16  # drain() yields to the loop at least this often


class Stream(asyncio.BufferedProtocol):
    def __init__(self):
        self._t = None
        self._loop = None
        self._buf = bytearray(_SIDE)
        self._mv = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._want = None  # the caller's buffer while a readinto waits
        self._direct = False
        self._waiter = None
        self._eof = False
        self._exc = None
        self._read_paused = False
        self._write_paused = False
        self._drain_waiter = None
        self._writes = 0
        self._broken = False
        self._lost = None

    def start(self):
        """(The TLS handshake ran while opening: nothing to start. MicroPython's stream
        makes its TLS session here.)"""

    # -- protocol callbacks ------------------------------------------------

    def connection_made(self, transport):
        self._t = transport
        self._loop = asyncio.get_running_loop()
        self._lost = self._loop.create_future()
        # Paused as soon as the transport keeps a byte: a plain transport pauses when
        # its buffer is > high, CPython's TLS transport when it is >= high (high=0
        # there would pause with nothing buffered, and nothing would resume it).
        tls = transport.get_extra_info("sslcontext") is not None
        transport.set_write_buffer_limits(high=1 if tls else 0, low=0)

    def get_buffer(self, sizehint):
        want = self._want
        if want is not None and self._start == self._end:
            self._direct = True
            return want
        self._direct = False
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == _SIDE:
            self._compact()
        return self._mv[self._end:]

    def buffer_updated(self, nbytes):
        if self._direct:
            self._direct = False
            want = self._want
            self._want = None
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(nbytes)
                return
            # The reader was cancelled after its buffer was handed out: keep the bytes.
            self._mv[self._end:self._end + nbytes] = memoryview(want)[:nbytes]
        self._end += nbytes
        if self._end == _SIDE and self._start == 0:
            self._read_paused = True
            self._t.pause_reading()
        self._wake(-1)

    def eof_received(self):
        self._eof = True
        self._wake(-1)
        return False

    def connection_lost(self, exc):
        self._eof = True
        if exc is not None and self._exc is None:
            self._exc = exc
        self._wake(-1)
        self._write_paused = False
        self._wake_drain()
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self):
        self._write_paused = True

    def resume_writing(self):
        self._write_paused = False
        self._wake_drain()

    def _wake(self, value):
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(value)

    def _wake_drain(self):
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _compact(self):
        s, e = self._start, self._end
        self._mv[0:e - s] = self._mv[s:e]
        self._start, self._end = 0, e - s

    # -- MicroPython Stream surface ------------------------------------------

    async def readinto(self, buf):
        while True:
            s = self._start
            avail = self._end - s
            if avail:
                n = len(buf)
                if n > avail:
                    n = avail
                buf[:n] = self._mv[s:s + n]
                self._start = s + n
                if self._read_paused:
                    self._compact()
                    self._read_paused = False
                    self._t.resume_reading()
                return n
            if self._eof:
                if self._exc is not None:
                    raise self._exc
                return 0
            if len(buf) >= _DIRECT_MIN:
                self._want = buf
            w = self._waiter = self._loop.create_future()
            try:
                n = await w
            finally:
                self._want = None
                self._waiter = None
            if n >= 0:
                return n

    @property
    def out_buf(self):
        """Truthy when drain() has something to wait for (as MicroPython's Stream.out_buf:
        bytes the kernel has not taken): paused above the high-water mark, broken, or
        (so readers run when the socket never pushes back) every _YIELD_EVERY writes."""
        return self._write_paused or self._broken or self._writes >= _YIELD_EVERY

    def write(self, buf):
        self._writes += 1
        if self._exc is not None:
            raise self._exc
        if self._t.is_closing():
            self._broken = True  # drain() reports why, once the transport has said
            return
        self._t.write(buf)

    async def drain(self):
        if self._broken:
            await self.wait_closed(1)
            if self._exc is not None:
                raise self._exc
            raise BrokenPipeError(errno.EPIPE, "connection closed")
        if self._write_paused:
            w = self._drain_waiter = self._loop.create_future()
            try:
                await w
            finally:
                self._drain_waiter = None
            self._writes = 0
            if self._exc is not None:
                raise self._exc
            if self._broken or self._t.is_closing():
                raise BrokenPipeError(errno.EPIPE, "connection closed")
        elif self._writes >= _YIELD_EVERY:
            # Let readers run even when the socket never pushes back.
            self._writes = 0
            await asyncio.sleep(0)

    def close(self):
        if self._t is not None:
            self._t.close()

    async def wait_closed(self, timeout_s=2):
        if self._lost is None or self._lost.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), timeout_s)
        except asyncio.TimeoutError:
            self._t.abort()

    def abort(self):
        if self._t is not None:
            self._t.abort()

    def sock(self):
        return self._t.get_extra_info("socket")
