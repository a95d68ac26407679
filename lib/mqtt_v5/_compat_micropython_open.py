"""MicroPython's opening of a stream with asyncio (``_compat`` hands out ``open_stream``):
loaded for each connection ``_open`` opens, and unloaded once its TCP connection is up,
before its TLS session is made (``_Stream.start``, in ``_compat_micropython``: the
session's buffers then have this code's heap). CPython's: ``_compat_cpython``."""

from ._compat_micropython import _core, _Stream, set_nodelay


def _writable(s):
    # A bare generator: awaiting it parks the task on asyncio's poller
    # until the socket is writable (TCP connect finished or failed).
    yield _core._io_queue.queue_write(s)  # type: ignore[attr-defined]


async def open_stream(host, port, ctx, server_hostname):
    """TCP as a ``_Stream``, with TCP_NODELAY where the port has it; with ``ctx`` (an SSL
    context), its TLS session is made by the stream's ``start()`` (the handshake then
    runs in the first read or write). Then this module unloads itself."""
    try:
        return await _open(host, port, ctx, server_hostname)
    finally:
        _drop()


def _drop():
    """Unload this module (the lines of ``_clienterr._drop``: see there)."""
    import sys

    sys.modules.pop(__name__, None)  # "mqtt_v5._compat_micropython_open"
    try:  # (as the import set it on the package)
        delattr(sys.modules["mqtt_v5"], "_compat_micropython_open")
    except (AttributeError, KeyError):
        pass


async def _open(host, port, ctx, server_hostname):
    import socket
    from errno import EINPROGRESS

    try:
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    except OSError as e:
        from ._neterr import dns_error

        raise dns_error(host, e)
    s = socket.socket(ai[0], ai[1], ai[2])
    try:
        set_nodelay(s)
        s.setblocking(False)
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.errno != EINPROGRESS:
                raise
        await _writable(s)
    except BaseException:  # also CancelledError from a timeout
        s.close()
        raise
    return _Stream(s, ctx, server_hostname)
