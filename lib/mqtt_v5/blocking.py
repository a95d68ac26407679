"""A blocking socket transport for the synchronous (REPL) facade.

``BlockingTransport.connect(url_or_host, port=None, tls=None, timeout_s=10)``
opens TCP or TLS with ``socket`` + ``SSLContext.wrap_socket`` (the same calls
on both runtimes). ``readinto(buf, timeout_s)`` waits with ``select.poll``
(MicroPython's SSLSocket has no ``settimeout``) and returns the byte count,
0 when the peer closed, or None when nothing came in time. Errors are
``NetworkError``s named as in ``mqtt_v5.transport``, including the TLS 1.3
"client certificate refused shows as EOF on the first read" case.

MicroPython does the TLS handshake inside ``connect`` with no timeout of its
own (a stalled server blocks it); CPython bounds it by ``timeout_s``.
"""

import select
import socket

from ._neterr import error as _error
from .errors import NetworkError


class BlockingTransport:
    """Blocking counterpart of ``StreamTransport``; see the module docstring."""

    def __init__(self, sock, peer="", tls=False, client_cert=False):
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
        self._recv = getattr(sock, "readinto", None) or sock.recv_into
        self._send = getattr(sock, "sendall", None) or sock.write
        self._pending = getattr(sock, "pending", None)  # CPython SSLSocket

    @classmethod
    def connect(cls, url_or_host, port=None, tls=None, timeout_s=10):
        """Open TCP (or TLS: ``mqtts://`` or ``tls`` given) and return a
        BlockingTransport."""
        from .transport import parse_url

        host, url_port, url_tls = parse_url(url_or_host)
        if port is None:
            port = url_port
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
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (AttributeError, OSError):
                pass
            if ctx is not None:
                s = ctx.wrap_socket(s, server_hostname=tls.server_hostname or host)
        except (OSError, ValueError) as e:
            s.close()
            raise _error(e, peer, ctx is not None, True, has_cert, "connect")
        return cls(s, peer, ctx is not None, has_cert)

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
        if n is None:  # MicroPython TLS: no whole record yet
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
            self._send(buf)
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
