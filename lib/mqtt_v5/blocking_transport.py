"""A blocking socket transport for the synchronous (REPL) facade.

``BlockingTransport.connect(url_or_host, port=None, tls=None, timeout_s=10)``
opens TCP or TLS with ``socket`` + ``SSLContext.wrap_socket`` (the same calls
on both runtimes). ``readinto(buf, timeout_s)`` waits with ``select.poll``
(MicroPython's SSLSocket has no ``settimeout``) and returns the byte count,
0 when the peer closed, or None when nothing came in time. Errors are
``NetworkError``s named as in ``mqtt_v5.transport``, including the TLS 1.3
"client certificate refused shows as EOF on the first read" case.

On MicroPython a stream's ``readinto`` on a blocking socket reads until the
buffer is full, and one with a timeout raises ETIMEDOUT dropping what it had
read: so once connected the socket is switched to non-blocking, waited on with
``poll`` and read for what is there. ``timeout_s`` bounds the TCP connect and
each read of the TLS handshake (done inside ``connect`` on both runtimes), and
each wait of a write for room in the kernel's send buffer.
"""

import select
import socket

from ._compat import set_nodelay
from ._neterr import error as _error
from .errors import NetworkError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any  # noqa: F401


class BlockingTransport:
    """Blocking counterpart of ``StreamTransport``; see the module docstring."""

    def __init__(self, sock, peer="", tls=False, client_cert=False, write_timeout_s=30):
        self._sock = sock
        self.peer = peer
        self.tls = tls
        self._cert = client_cert
        self._got = not tls
        self._closed = False
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        # Duck-typed, so no runtime test: CPython sockets have recv_into and
        # sendall; MicroPython streams have readinto and write (sendall only
        # on plain sockets and, since 1.25, SSL sockets).
        self._recv = getattr(sock, "readinto", None)  # type: Any
        # A MicroPython stream (it has readinto) is read and written non-blocking
        # (see the module docstring); a CPython socket keeps its timeout, under
        # which recv_into returns what has arrived.
        self._nb = self._recv is not None
        if self._nb:
            sock.setblocking(False)
            self._send = sock.write  # type: Any
        else:
            self._recv = sock.recv_into
            self._send = sock.sendall
        self._pending = getattr(sock, "pending", None)  # CPython SSLSocket
        self.write_timeout_s = write_timeout_s

    @classmethod
    def connect(cls, url_or_host, port=None, tls=None, timeout_s=10):
        """Open TCP (or TLS: ``mqtts://`` or ``tls`` given) and return a
        BlockingTransport."""
        from .transport import parse_url

        host, url_port, url_tls = parse_url(url_or_host)
        if port is None:
            port = url_port
        if url_or_host.find("://") >= 0 and not url_tls and tls:
            from ._neterr import usage_error

            raise usage_error(6, None)  # (transport's _E_PLAIN): mqtt:// is plain TCP
        if tls is True or (url_tls and tls is None):
            from .tls import TlsConfig

            tls = TlsConfig()
        if port is None:
            port = 8883 if tls else 1883
        ctx = tls.context() if tls else None
        has_cert = bool(tls) and tls.cert is not None
        peer = "%s:%d" % (host, port)
        try:
            ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        except OSError as e:
            raise NetworkError("DNS: cannot resolve host %r: %s" % (host, e))
        s = socket.socket(ai[0], ai[1], ai[2])
        try:
            s.settimeout(timeout_s)
            s.connect(ai[-1])
            set_nodelay(s)
            if ctx is not None:
                s = ctx.wrap_socket(s, server_hostname=tls.server_hostname or host)
        except (OSError, ValueError) as e:
            s.close()
            raise _error(e, peer, ctx is not None, True, has_cert, "connect")
        return cls(s, peer, ctx is not None, has_cert, timeout_s)

    def readinto(self, buf, timeout_s=None):
        """Wait up to ``timeout_s`` (None = forever) for bytes; returns the
        count, 0 if the peer closed, None on timeout."""
        if self._closed:
            return 0
        try:
            if not (self._pending and self._pending()):
                ms = -1 if timeout_s is None else int(timeout_s * 1000)
                if not self._poll.poll(ms):
                    return None
            n = self._recv(buf)
        except (OSError, ValueError) as e:
            raise _error(e, self.peer, self.tls, not self._got, self._cert, "read")
        if n is None:  # non-blocking: nothing yet (TLS: no whole record yet)
            return None
        if n:
            self._got = True
            return n
        if not self._got:
            raise _error(None, self.peer, True, True, self._cert, "read")
        return 0

    def write(self, buf):
        """Write all of ``buf``."""
        if self._closed:
            raise NetworkError("write on a closed transport")
        try:
            if not self._nb:
                self._send(buf)
                return
            n = self._send(buf)
            if n is not None and n == len(buf):
                return
            # The kernel's buffer is full: wait for room, write the rest.
            mv = memoryview(buf)
            off = n or 0
            p = select.poll()
            p.register(self._sock, select.POLLOUT)
            while off < len(mv):
                if not p.poll(int(self.write_timeout_s * 1000)):
                    raise NetworkError("write on %s: no room to send for %s s (is the "
                                       "link dead?)" % (self.peer, self.write_timeout_s))
                n = self._send(mv[off:])
                off += n or 0
        except (OSError, ValueError) as e:
            raise _error(e, self.peer, self.tls, not self._got, self._cert, "write")

    def close(self):
        """Close the socket. Idempotent."""
        if not self._closed:
            self._closed = True
            try:
                self._poll.unregister(self._sock)
            except (OSError, ValueError, KeyError):
                pass
            self._sock.close()
