"""CPython's half of ``_compat`` (imported by it on CPython only; never frozen or
installed on a device): ticks, const, the coroutine Waiter, and opening a TCP/TLS
stream with CPython's ssl and asyncio."""

import inspect as _inspect  # type: ignore[import-not-found]
import time as _time

from ._compat import PENDING  # defined before _compat imports this module


def const(value):  # type: ignore[no-redef,misc]
    """MicroPython folds const() at compile time; CPython just returns the value."""
    return value


# ConnectOptions(batch_writes=None): publishes in a burst leave together in one write
# (one syscall per packet was most of the CPU cost of publishing).
BATCH_WRITES_DEFAULT = True

_TICKS_PERIOD = 1 << 30
_TICKS_MAX = _TICKS_PERIOD - 1
_TICKS_HALF = _TICKS_PERIOD // 2


def ticks_ms():
    """Milliseconds on a wrapping 30-bit counter, as MicroPython's time.ticks_ms()."""
    return int(_time.monotonic() * 1000) & _TICKS_MAX  # type: ignore[attr-defined]


def ticks_add(ticks, delta):
    return (ticks + delta) & _TICKS_MAX


def ticks_diff(end, start):
    """Signed difference end - start, correct across one wrap-around."""
    return ((end - start + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF

is_awaitable = _inspect.isawaitable


def heap_collect():
    """MicroPython collects before a TLS context is built (a small, non-moving heap);
    CPython's heap needs no help."""


def random_ms(limit):
    """A random int in [0, limit) for reconnect jitter."""
    import random

    if limit <= 0:
        return 0
    return random.getrandbits(30) % limit


def set_nodelay(s, on=1):
    """TCP_NODELAY on (or, ``on`` false, off: Nagle's algorithm) for socket ``s`` (a
    payload written after its header would otherwise wait out the peer's delayed ACK).
    Turned on, Linux sends at once what Nagle was holding."""
    import socket

    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if on else 0)
    except (OSError, AttributeError):  # (AttributeError: no socket)
        pass


def within(coro, seconds):
    """``asyncio.wait_for`` (MicroPython's runs ``coro`` in the calling task: see there)."""
    import asyncio

    return asyncio.wait_for(coro, seconds)


def sleep_ms(ms):
    import asyncio

    return asyncio.sleep(ms / 1000)


def stream_socket(stream, tcp=False):  # type: ignore[misc]
    """CPython's stream (_cpython_stream) is written through its own write(): None;
    ``tcp``: its TCP socket (under TLS too), for ``set_nodelay``."""
    t = getattr(stream, "_t", None) if tcp else None
    return t.get_extra_info("socket") if t is not None else None


class Waiter:  # type: ignore[no-redef]
    """``await w.wait()``: ``w.poll()``'s value, waiting on ``w.event`` while
    it is ``PENDING`` (a coroutine: CPython allocates anyway, and its
    create_task wants one)."""

    def __init__(self, event):
        self.event = event

    def poll(self):
        raise NotImplementedError("Waiter.poll")

    def wait(self):
        return self._wait()

    def __await__(self):
        return self._wait().__await__()

    async def _wait(self):
        while True:
            v = self.poll()
            if v is not PENDING:
                return v
            await self.event.wait()


def has_alpn():
    """True if ``ssl`` can offer ALPN (CPython's can)."""
    import ssl

    return hasattr(ssl.SSLContext, "set_alpn_protocols")


def tls_context(cas, certs, key, verify, alpn):
    """ssl.SSLContext (hostname check on when verifying). CPython loads a
    client certificate only from files: the key is handed over through an
    in-memory file (memfd) or a pipe, never resting on disk (a private temp
    file only where neither exists)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        if cas:
            ctx.load_verify_locations(cadata=b"".join(cas))
        else:
            ctx.load_default_certs()  # type: ignore[attr-defined]
    else:
        ctx.check_hostname = False  # type: ignore[attr-defined]
        ctx.verify_mode = ssl.CERT_NONE  # type: ignore[attr-defined]
    if certs:
        from ._pem import der_to_pem

        _load_chain_unwritten(ctx, b"".join(der_to_pem(der) for der in certs),
                              der_to_pem(key[1], key[0]))
    if alpn:
        ctx.set_alpn_protocols(alpn)  # type: ignore[attr-defined]
    return ctx


def _load_chain_unwritten(ctx, chain, key):
    """ssl loads a client key only from a path: hand it one the key never rests
    at on disk -- an in-memory file (Linux), else pipes read through /dev/fd
    (the bytes pass through the kernel only). Windows has neither: a file of
    mode 0600, deleted at once."""
    import os

    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("mqtt_v5-client-key")  # type: ignore[attr-defined]
        try:
            os.write(fd, key + chain)
            ctx.load_cert_chain("/proc/self/fd/%d" % fd)
        finally:
            os.close(fd)
        return
    if os.path.isdir("/dev/fd"):  # type: ignore[attr-defined]  # CPython only
        ends = []
        try:
            for data in (chain, key):
                r, w = os.pipe()
                ends += [r, w]
                os.set_blocking(w, False)  # type: ignore[attr-defined]
                if os.write(w, data) != len(data):
                    raise OSError("client certificate chain too large for a pipe")
                os.close(w)
                ends.remove(w)
            ctx.load_cert_chain("/dev/fd/%d" % ends[0], "/dev/fd/%d" % ends[1])
        finally:
            for fd in ends:
                os.close(fd)
        return
    import tempfile  # type: ignore[import-not-found]

    fd, path = tempfile.mkstemp(suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key + chain)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


async def open_stream(host, port, ctx, server_hostname):
    """TCP (+TLS, handshake done here) as a Stream over a BufferedProtocol.
    asyncio already sets TCP_NODELAY on TCP sockets."""
    import asyncio
    import socket

    from ._cpython_stream import Stream

    loop = asyncio.get_running_loop()  # type: ignore[attr-defined]  # CPython only
    try:
        _, stream = await loop.create_connection(
            Stream, host, port, ssl=ctx,
            server_hostname=server_hostname if ctx is not None else None)
    except socket.gaierror as e:  # type: ignore[attr-defined]
        from ._neterr import dns_error

        raise dns_error(host, e)
    return stream
