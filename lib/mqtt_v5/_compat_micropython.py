"""MicroPython's connect-time half of ``_compat`` (``_compat`` hands its names out on
first use: loaded at the first connect, not at import): TCP_NODELAY, reconnect jitter,
connect's timeout, and the stream a connection is read and written through, with its TLS
session (opening it: ``_compat_micropython_open``; the SSL context:
``_compat_micropython_tls``; both unload themselves after use). CPython's:
``_compat_cpython``."""

from asyncio import core as _core  # type: ignore[attr-defined]  # (loaded: the client uses it)

__import__("gc").collect()  # (as the import line's modules do: see _compat's heap_collect)


def set_nodelay(s, on=1):
    """TCP_NODELAY on (or, ``on`` false, off: Nagle's algorithm) for socket ``s``
    where the port allows it. Linux and lwIP agree on IPPROTO_TCP 6 and TCP_NODELAY 1
    (the unix port's socket module names neither; their names would be heap). Without
    it a payload written after its header waits out the peer's delayed ACK each time.
    Turned on, Linux sends at once what Nagle was holding; lwIP only sets the flag, and
    the next write's tcp_output sends everything queued: either way the packet written
    next is not held behind it."""
    try:
        s.setsockopt(6, 1, 1 if on else 0)  # IPPROTO_TCP, TCP_NODELAY
    except (OSError, AttributeError):  # (AttributeError: no socket, or none of its own)
        pass


def stream_socket(stream, tcp=False):
    """The socket under the stream (``_Stream.s``, or asyncio's ``Stream.s``), which
    StreamTransport.write writes to as Stream.write would, one Python call less per
    packet; None for anything else. ``tcp``: the TCP socket, for ``set_nodelay`` (under
    TLS, the one ``open_stream`` kept: MicroPython's SSL socket has no setsockopt)."""
    if not hasattr(stream, "out_buf"):
        return None
    return getattr(stream, "tcp", stream.s) if tcp else stream.s


class _Stream:
    """What StreamTransport uses of asyncio's Stream, with its behaviour: the socket ``s``,
    ``out_buf`` (what the socket did not take yet), ``readinto``, ``drain``, ``close``
    and ``wait_closed``; and ``tcp``, the TCP socket (under TLS, the one below), and
    ``start``, which makes the TLS session once the stream is open. Not
    asyncio's own: its module (``asyncio.stream``: Stream, Server, open_connection,
    start_server) would stay in RAM while connected, about 0.9 KB frozen, and it was
    loaded just before the TLS handshake, the heap's peak.

    ``tls_heap``: what the last ``wrap_socket`` took of MicroPython's heap (mbedTLS' 16 KiB
    input buffer and the rest where mbedTLS allocates from it: the unix port, rp2, stm32;
    on ESP32 it takes ESP-IDF's heap, and this is a few hundred bytes). ``tls_room``: the
    block of the input buffer's size a reconnecting client holds (``_cold.hold_tls_heap``),
    let go of here, just before the next session takes it."""

    tls_heap = 0
    tls_room = None

    def __init__(self, tcp, ctx, server_hostname):
        self.s = self.tcp = tcp
        self.out_buf = b""
        self._tls = (ctx, server_hostname) if ctx is not None else None

    def start(self):
        """Make the TLS session over ``tcp`` (its handshake runs in the first read or
        write), if the stream was opened with an SSL context: here, not where the
        connection was opened, whose code (``_open``, ``_compat_micropython_open``) has
        unloaded itself by now. wrap_socket takes the session's largest blocks (mbedTLS'
        16 KiB input buffer, its output buffer) at the top of what is in use, and the 2 KiB
        receive buffer, made after the handshake, needs room above them: that code's heap
        (about 2 KB from .mpy) was under them. A collection first frees what DNS, the
        socket and asyncio's tasks left, so the buffers go into that room rather than
        above the garbage, whose holes would be too small for the handshake's bignums."""
        tls = self._tls
        if tls is None:
            return
        self._tls = None
        _Stream.tls_room = None
        try:
            from gc import collect, mem_free

            collect()
            free = mem_free()
            s = tls[0].wrap_socket(self.tcp, server_hostname=tls[1],
                                   do_handshake_on_connect=False)
            s.setblocking(False)
            _Stream.tls_heap = free - mem_free()
        except BaseException:
            self.tcp.close()
            raise
        self.s = s

    def readinto(self, buf):  # async (a generator, as asyncio's)
        yield _core._io_queue.queue_read(self.s)  # type: ignore[attr-defined]
        return self.s.readinto(buf)

    def drain(self):  # async (StreamTransport awaits it only with out_buf not empty)
        mv = memoryview(self.out_buf)
        off = 0
        while off < len(mv):
            yield _core._io_queue.queue_write(self.s)  # type: ignore[attr-defined]
            n = self.s.write(mv[off:])
            if n is not None:
                off += n
        self.out_buf = b""

    def close(self):
        pass

    async def wait_closed(self):
        self.s.close()


def random_ms(limit):
    """A random int in [0, limit) for reconnect jitter."""
    import random

    if limit <= 0:
        return 0
    return random.getrandbits(30) % limit


async def within(coro, seconds):
    """``asyncio.wait_for(coro, seconds)`` (asyncio's TimeoutError when time is up), with
    ``coro`` run in the calling task, which a watchdog task cancels then. wait_for runs it in
    a task of its own and sleeps beside it: that task, both frames and asyncio's funcs
    module (loaded by the first wait_for, about 0.5 KB) were on the heap through MqttClient's
    TLS handshake, which runs inside ``coro`` here (in the CONNECT's write)."""
    dog = _core.create_task(_watchdog(_core.cur_task, seconds))
    try:
        return await coro
    except _core.CancelledError:
        if dog.done():  # time was up (else the caller's task was cancelled: as it is)
            raise _core.TimeoutError from None
        raise
    finally:
        dog.cancel()


async def _watchdog(task, seconds):
    await _core.sleep(seconds)
    task.cancel()
