"""The only module that knows MicroPython from CPython.

Everything else imports runtime-specific names from here, so the rest of the
library is one source tree for both runtimes.
"""

import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"

if IS_MICROPYTHON:
    from micropython import const  # noqa: F401
    import time as _time

    ticks_ms = _time.ticks_ms
    ticks_add = _time.ticks_add
    ticks_diff = _time.ticks_diff

    def _gen():
        yield

    _GENERATOR = type(_gen())

    def is_awaitable(obj):
        """True for what a callback may return to be awaited (a coroutine)."""
        return isinstance(obj, _GENERATOR) or hasattr(obj, "__await__")

    def sleep_ms(ms):
        import asyncio

        return asyncio.sleep_ms(ms)

    class EventWaiter:
        """``await waiter`` is ``await event.wait()`` without the generator that
        Event.wait() makes per call (48 B): it parks the current task on the
        event's queue exactly as asyncio's Event.wait does, then completes when
        woken. For ONE waiting task at a time (it keeps that task's state):
        an in-flight message's waiter, a pipe's reader. Uses asyncio.core's
        ``cur_task`` and Event's ``state``/``waiting``, as asyncio itself does."""

        def __init__(self, event):
            from asyncio import core  # type: ignore[attr-defined]

            self._core = core
            self._ev = event
            self._armed = False
            self._stop = StopIteration(True)

        def __await__(self):
            return self

        def __iter__(self):
            return self

        def __next__(self):
            ev = self._ev
            if not self._armed and not ev.state:  # type: ignore[attr-defined]
                self._armed = True
                t = self._core.cur_task
                ev.waiting.push(t)  # type: ignore[attr-defined]
                t.data = ev.waiting  # type: ignore[attr-defined]  # (cancel() unlinks it)
                return None  # to the scheduler, until event.set() queues the task
            self._armed = False
            e = self._stop
            e.__traceback__ = None
            raise e

        def send(self, value):
            return self.__next__()

        def throw(self, typ, val=None, tb=None):
            self._armed = False  # cancelled while parked
            raise typ if val is None else val

        def close(self):
            self._armed = False

else:
    import time as _time

    def const(value):  # type: ignore[no-redef]
        """MicroPython folds const() at compile time; CPython just returns the value."""
        return value

    _TICKS_PERIOD = 1 << 30
    _TICKS_MAX = _TICKS_PERIOD - 1
    _TICKS_HALF = _TICKS_PERIOD // 2

    def ticks_ms():
        """Milliseconds on a wrapping 30-bit counter, as MicroPython's time.ticks_ms()."""
        return int(_time.monotonic() * 1000) & _TICKS_MAX

    def ticks_add(ticks, delta):
        return (ticks + delta) & _TICKS_MAX

    def ticks_diff(end, start):
        """Signed difference end - start, correct across one wrap-around."""
        return ((end - start + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF

    import inspect as _inspect

    is_awaitable = _inspect.isawaitable

    def sleep_ms(ms):
        import asyncio

        return asyncio.sleep(ms / 1000)

    class EventWaiter:  # type: ignore[no-redef]
        """``await waiter`` is ``await event.wait()`` (CPython allocates anyway)."""

        def __init__(self, event):
            self._ev = event

        def __await__(self):
            return self._ev.wait().__await__()


class _Ready:
    """An awaitable that is already complete (result None) and can be awaited again
    and again: ``await READY`` allocates nothing on MicroPython, where calling an
    ``async def`` allocates its generator (48 B or more). For a method that usually
    has nothing to wait for: return READY then, a coroutine otherwise. Awaiting it
    iterates one shared, exhausted iterator, which ends at once without raising
    (cheaper than a StopIteration on CPython too). ``send``/``throw``/``close`` let
    ``asyncio.create_task`` and ``gather`` take it as a coroutine on both runtimes."""

    def __await__(self):
        return _EXHAUSTED

    def __iter__(self):
        return _EXHAUSTED

    def send(self, value):
        raise StopIteration

    def throw(self, typ, val=None, tb=None):
        raise typ if val is None else val

    def close(self):
        pass


_EXHAUSTED = iter(())
READY = _Ready()


class Done:
    """An awaitable already complete with ``value``, reusable like ``READY``:
    its one StopIteration is raised again at each await (0 B on MicroPython,
    where a raise of a preallocated exception allocates nothing once its
    traceback is cleared; on CPython about 0.9 us)."""

    def __init__(self, value):
        self._stop = StopIteration(value)

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        e = self._stop
        e.__traceback__ = None
        raise e

    def send(self, value):
        return self.__next__()

    def throw(self, typ, val=None, tb=None):
        raise typ if val is None else val

    def close(self):
        pass


def random_ms(limit):
    """A random int in [0, limit) for reconnect jitter."""
    import random

    if limit <= 0:
        return 0
    return random.getrandbits(30) % limit


# ---------------------------------------------------------------- network ----
# Used by transport/tls only; socket, ssl and asyncio are imported inside the
# functions so the sans-IO modules that import _compat never load them.

if IS_MICROPYTHON:

    def tls_context(cas, certs, key, verify, alpn):
        """SSLContext from DER material. MicroPython's ssl wrapper defaults to
        CERT_NONE, so verification is switched on explicitly."""
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            if not cas:
                from .errors import UsageError

                raise UsageError("TLS: MicroPython has no system CA store: pass "
                                 "TlsConfig(ca=...) or insecure_skip_verify=True")
            ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]
            for der in cas:  # each call appends to mbedTLS's CA chain
                ctx.load_verify_locations(cadata=der)
        else:
            ctx.verify_mode = ssl.CERT_NONE  # type: ignore[attr-defined]
        if certs:
            ctx.load_cert_chain(certs[0], key[1])  # DER leaf only
        if alpn:
            if not hasattr(ctx, "set_alpn_protocols"):
                from .errors import UsageError

                raise UsageError("TLS: this MicroPython firmware has no ALPN")
            ctx.set_alpn_protocols(alpn)
        return ctx

    def _writable(s):
        # A bare generator: awaiting it parks the task on asyncio's poller
        # until the socket is writable (TCP connect finished or failed).
        from asyncio import core  # type: ignore[attr-defined]

        yield core._io_queue.queue_write(s)  # type: ignore[attr-defined]

    async def open_stream(host, port, ctx, server_hostname):
        """TCP (+TLS, handshake deferred to the first read/write) as asyncio's
        Stream, with TCP_NODELAY where the port has it."""
        import socket
        from asyncio import StreamReader
        from errno import EINPROGRESS

        try:
            ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        except OSError as e:
            raise _dns_error(host, e)
        s = socket.socket(ai[0], ai[1], ai[2])
        try:
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (AttributeError, OSError):
                pass
            s.setblocking(False)
            try:
                s.connect(ai[-1])
            except OSError as e:
                if e.errno != EINPROGRESS:
                    raise
            await _writable(s)
            if ctx is not None:
                s = ctx.wrap_socket(s, server_hostname=server_hostname,
                                    do_handshake_on_connect=False)
                s.setblocking(False)
        except BaseException:  # also CancelledError from a timeout
            s.close()
            raise
        return StreamReader(s)

else:

    def tls_context(cas, certs, key, verify, alpn):
        """ssl.SSLContext (hostname check on when verifying). CPython loads a
        client certificate only from files: the PEM goes to a private temp
        file that is deleted at once."""
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
            import os
            import tempfile  # type: ignore[import-not-found]

            from .tls import der_to_pem

            fd, path = tempfile.mkstemp(suffix=".pem")  # mode 0600
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(der_to_pem(key[1], key[0]))
                    for der in certs:
                        f.write(der_to_pem(der))
                ctx.load_cert_chain(path)
            finally:
                os.unlink(path)
        if alpn:
            ctx.set_alpn_protocols(alpn)  # type: ignore[attr-defined]
        return ctx

    async def open_stream(host, port, ctx, server_hostname):
        """TCP (+TLS, handshake done here) as a Stream over a BufferedProtocol.
        asyncio already sets TCP_NODELAY on TCP sockets."""
        import asyncio
        import socket

        from ._cpython_stream import Stream

        loop = asyncio.get_running_loop()
        try:
            _, stream = await loop.create_connection(
                Stream, host, port, ssl=ctx,
                server_hostname=server_hostname if ctx is not None else None)
        except socket.gaierror as e:  # type: ignore[attr-defined]
            raise _dns_error(host, e)
        return stream


def _dns_error(host, e):
    from .errors import NetworkError

    return NetworkError("DNS: cannot resolve host %r: %s" % (host, e))
