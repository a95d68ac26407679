"""Byte transports: TCP and TLS over asyncio. Knows nothing of MQTT.

The client drives any object with this contract::

    async def readinto(buf) -> int   # bytes read into buf; 0 = closed by the peer
    def write(buf) -> awaitable      # writes ALL of buf; one packet per call. It may
                                     # return _compat.READY: then it is done (buf free)
    async def close() -> None
    def nodelay(on)                  # optional: TCP_NODELAY on/off (off while MqttClient
                                     # writes QoS 0 PUBLISHes; looked up at connect)

``open_connection`` returns a ``StreamTransport`` over TCP or TLS. Failures
are raised as ``NetworkError`` with a message that names the cause (DNS,
refused, timeout, certificate verification, client certificate rejected).
The runtime-specific parts (SSL context, opening the socket) live in
``_compat``; this module does not care which runtime it is on.

Other transports, imported only by those who use them:
``mqtt_v5.tls.TlsConfig``, ``mqtt_v5.memory.memory_pipe`` (in-process pair,
tests and user-supplied links), ``mqtt_v5.blocking_transport.BlockingTransport``
(socket-based, for the REPL facade). They are also reachable here by name.

TLS 1.3 note: a broker that refuses our client certificate does so after the
client considers the handshake done, so the refusal shows as EOF (or an
alert) on the first read. A TLS transport that fails or sees EOF before it
has read any byte therefore raises a NetworkError that says so, instead of
returning 0 as for a normal close. On MicroPython the whole handshake runs
inside the first write/read, so every handshake failure surfaces there.
"""

# ``len`` as a global of this module: a builtin is looked up in the module's globals
# first, and a miss probes the (nearly full) dict to a free slot; write() calls it per packet.
from builtins import len

from ._compat import READY, const, heap_collect, set_nodelay, stream_socket

heap_collect()  # (before this module defines anything: see _compat's heap_collect)

# (``errors`` is not imported here: only _neterr, which makes the errors, needs it)


def _error(*args):
    from ._neterr import error  # cold: loaded at the first network failure, not at import

    return error(*args)


# Usage errors, as a number into _neterr's texts (folded at compile time: no string in
# RAM until one is raised): 0-6 are parse_url's and open_connection's (in _open), these
# two _compat_micropython_tls's.
_E_NO_CA = const(7)
_E_NO_ALPN = const(8)


def _usage(n, arg=None):
    from ._neterr import usage_error

    return usage_error(n, arg)


def __getattr__(name):
    # The other transports, in modules of their own that only their users import.
    if name == "TlsConfig":
        module = "tls"
    elif name == "MemoryTransport" or name == "memory_pipe":
        module = "memory"
    elif name == "parse_url":
        module = "_open"
    elif name == "BlockingTransport":
        module = "blocking_transport"
    else:
        raise AttributeError(name)
    return getattr(__import__("mqtt_v5." + module, None, None, (name,)), name)


async def open_connection(url_or_host, port=None, tls=None, timeout_s=10):
    """Connect over TCP, or TLS when the URL is ``mqtts://`` or ``tls`` is
    given (a ``TlsConfig``, or True for a verifying default). Returns a
    ``StreamTransport``. ``timeout_s`` bounds DNS + TCP connect (+ the TLS
    handshake on CPython; MicroPython does the handshake in the first I/O,
    which ``MqttClient`` bounds by its ``connect_timeout``); None: not bounded
    here (``MqttClient`` bounds the whole connect).
    ``ws://`` and ``wss://`` URLs go to ``mqtt_v5.ws.open_ws`` (MQTT over WebSocket)."""
    from ._open import open_connection as opening  # (connect-time code: it unloads itself)

    r = await opening(url_or_host, port, tls, timeout_s)
    del opening  # (its module is garbage from here: see _Stream.start)
    if type(r) is not tuple:  # (a ws:// URL's transport)
        return r
    stream, where, tls, client_cert = r
    try:
        stream.start()  # the TLS session, now that the opening code is gone (MicroPython)
    except (OSError, ValueError) as e:
        raise _error(e, where, tls, True, client_cert, "connect")
    return StreamTransport(stream, where, tls, client_cert)


class StreamTransport:
    """A Transport over a runtime stream (asyncio's Stream on MicroPython, a
    BufferedProtocol stream on CPython). ``peer`` is "host:port"."""

    def __init__(self, stream, peer="", tls=False, client_cert=False):
        self._s = stream
        self._raw = stream_socket(stream)  # written to first, as the stream does (see write)
        self._tcp = stream_socket(stream, True)  # (see nodelay)
        self.peer = peer
        self.tls = tls
        self._cert = client_cert
        # Until the first byte arrives, EOF on TLS means the handshake was refused.
        self._got = not tls
        self._closed = False

    async def readinto(self, buf):
        """Read what is available into ``buf`` (waits for at least one byte);
        returns the count, or 0 when the peer closed the connection."""
        try:
            while True:
                n = await self._s.readinto(buf)
                if n is not None:  # MicroPython TLS: None = record incomplete
                    break
        except (OSError, ValueError) as e:
            if self._closed:
                return 0
            raise _error(e, self.peer, self.tls, not self._got, self._cert, "read")
        if n:
            self._got = True
            return n
        if not self._got and not self._closed:
            raise _error(None, self.peer, True, True, self._cert, "read")
        return 0

    def read_raw(self, buf):
        """``readinto`` for a driver that reads in a loop, without a coroutine of ours
        once the first byte has come (then it is the stream's own read: asyncio's
        cost only). It may complete with None (nothing whole yet: call again) and
        raise the runtime's OSError or ValueError: ``name_error`` names it."""
        if self._got:
            return self._s.readinto(buf)
        return self.readinto(buf)

    def name_error(self, e, op="read"):
        """A NetworkError naming ``e``, raised by ``read_raw`` (``e`` if it is one)."""
        return _error(e, self.peer, self.tls, not self._got, self._cert, op)

    def write(self, buf):
        """Write all of ``buf``; awaitable. The stream writes at once what the kernel
        takes and keeps a copy of the rest: then the preallocated ``READY`` is
        returned (no coroutine, no scheduler round), else the drain to await,
        which waits for the socket to be writable. A failure raises here."""
        s = self._s
        try:
            raw = self._raw
            if raw is not None and not s.out_buf:
                # What MicroPython's Stream.write does, without its call: the socket
                # first, what it did not take to the stream's out_buf for drain().
                n = raw.write(buf)
                if n == len(buf):
                    return READY
                s.out_buf += buf[n:] if n else buf
            else:
                s.write(buf)
        except (OSError, ValueError) as e:
            raise _error(e, self.peer, self.tls, not self._got, self._cert, "write")
        if not s.out_buf:
            return READY
        return self._drain()

    def nodelay(self, on):
        """TCP_NODELAY on (each write leaves at once) or off (Nagle: a small write
        waits while an earlier segment is unacknowledged, and joins what follows).
        MqttClient turns it off while it writes QoS 0 PUBLISHes in a row, on for
        anything else (see MqttClient._put). A no-op where there is no TCP socket."""
        set_nodelay(self._tcp, on)

    async def _drain(self):
        try:
            await self._s.drain()
        except (OSError, ValueError) as e:
            raise _error(e, self.peer, self.tls, not self._got, self._cert, "write")

    async def close(self):
        """Close (TLS: with close_notify, bounded). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._s.close()
            await self._s.wait_closed()
        except (OSError, ValueError):
            pass
