"""MicroPython's connect-time half of ``_compat`` (``_compat`` hands its names out on
first use: loaded at the first connect, not at import): TCP_NODELAY, reconnect jitter
and opening a TCP/TLS stream with asyncio (the SSL context: ``_compat_micropython_tls``).
CPython's: ``_compat_cpython``."""

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
    and ``wait_closed``; and ``tcp``, the TCP socket (under TLS, the one below). Not
    asyncio's own: its module (``asyncio.stream``: Stream, Server, open_connection,
    start_server) would stay in RAM while connected, about 0.9 KB frozen, and it was
    loaded just before the TLS handshake, the heap's peak."""

    def __init__(self, s, tcp):
        self.s = s
        self.tcp = tcp
        self.out_buf = b""

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


def _writable(s):
    # A bare generator: awaiting it parks the task on asyncio's poller
    # until the socket is writable (TCP connect finished or failed).
    yield _core._io_queue.queue_write(s)  # type: ignore[attr-defined]


async def open_stream(host, port, ctx, server_hostname):
    """TCP (+TLS, handshake deferred to the first read/write) as a ``_Stream``, with
    TCP_NODELAY where the port has it (under TLS the TCP socket is kept as its ``tcp``,
    for ``stream_socket``)."""
    import socket
    from errno import EINPROGRESS

    try:
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    except OSError as e:
        from ._neterr import dns_error

        raise dns_error(host, e)
    s = tcp = socket.socket(ai[0], ai[1], ai[2])
    try:
        set_nodelay(s)
        s.setblocking(False)
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.errno != EINPROGRESS:
                raise
        await _writable(s)
        if ctx is not None:
            # wrap_socket takes the TLS session's largest blocks (mbedTLS' 16 KiB input
            # buffer, its output buffer): a collection first frees what DNS, the socket
            # and asyncio's tasks left, so they go into that room rather than above the
            # garbage, whose holes would be too small for the handshake's bignums.
            from gc import collect

            collect()
            s = ctx.wrap_socket(s, server_hostname=server_hostname,
                                do_handshake_on_connect=False)
            s.setblocking(False)
    except BaseException:  # also CancelledError from a timeout
        s.close()
        raise
    return _Stream(s, tcp)
