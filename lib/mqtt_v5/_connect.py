"""transport's connect-time half: ``parse_url`` and ``open_connection`` (``transport``
hands both out; its ``open_connection`` calls this one). Loaded at each connect and
unloaded when the connection is open (or has failed): MicroPython runs the TLS handshake
in the connection's first write, after this returns, and the handshake's bignums then
have this code's heap too. A device keeps only ``StreamTransport`` while connected."""

import asyncio

from ._compat import const, open_stream
from .errors import NetworkError


def _error(*args):
    from ._neterr import error  # cold: loaded at the first network failure, not at import

    return error(*args)


# parse_url's and open_connection's usage errors, as a number into _neterr's texts
# (folded at compile time: no string in RAM until one is raised).
_E_SCHEME = const(0)
_E_PATH = const(1)
_E_BRACKET = const(2)
_E_HOST = const(3)
_E_PORT = const(4)
_E_NO_HOST = const(5)
_E_PLAIN = const(6)


def _usage(n, arg=None):
    from ._neterr import usage_error

    return usage_error(n, arg)


DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883


def parse_url(url):
    """``mqtt://host[:port]``, ``mqtts://host[:port]`` or ``host[:port]`` ->
    ``(host, port or None, tls)``. IPv6 literals go in brackets."""
    tls = False
    rest = url
    i = url.find("://")
    if i >= 0:
        scheme = url[:i].lower()
        rest = url[i + 3:]
        if scheme == "mqtts" or scheme == "ssl" or scheme == "tls":
            tls = True
        elif scheme != "mqtt" and scheme != "tcp":
            raise _usage(_E_SCHEME, scheme)
    slash = rest.find("/")
    if slash >= 0:
        if rest[slash:] != "/":
            raise _usage(_E_PATH, url)
        rest = rest[:slash]
    port = None
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise _usage(_E_BRACKET, url)
        host = rest[1:end]
        tail = rest[end + 1:]
        if tail:
            if not tail.startswith(":"):
                raise _usage(_E_HOST, url)
            port = tail[1:]
    else:
        host = rest
        if rest.count(":") == 1:
            host, port = rest.split(":")
    if port is not None:
        try:
            port = int(port)
        except ValueError:
            port = -1
        if not 0 < port < 65536:
            raise _usage(_E_PORT, url)
    if not host:
        raise _usage(_E_NO_HOST, url)
    return host, port, tls


async def open_connection(url_or_host, port=None, tls=None, timeout_s=10):
    """Connect over TCP, or TLS when the URL is ``mqtts://`` or ``tls`` is
    given (a ``TlsConfig``, or True for a verifying default). Returns a
    ``StreamTransport``. ``timeout_s`` bounds DNS + TCP connect (+ the TLS
    handshake on CPython; MicroPython does the handshake in the first I/O,
    which ``MqttClient`` bounds by its ``connect_timeout``).
    ``ws://`` and ``wss://`` URLs go to ``mqtt_v5.ws.open_ws`` (MQTT over WebSocket)."""
    try:
        i = url_or_host.find("://")
        if 0 < i < 4 and url_or_host[:i].lower() in ("ws", "wss"):
            from .ws import open_ws  # imported only by those who use WebSocket

            return await open_ws(url_or_host, tls=tls, timeout_s=timeout_s)
        host, url_port, url_tls = parse_url(url_or_host)
        if port is None:
            port = url_port
        if url_or_host.find("://") >= 0 and not url_tls and tls:
            raise _usage(_E_PLAIN)
        if tls is True or (url_tls and tls is None):
            from .tls import TlsConfig

            tls = TlsConfig()
        if port is None:
            port = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
        ctx = None
        sni = None
        has_cert = False
        if tls:
            ctx = tls.context()
            has_cert = tls.cert is not None
            sni = tls.server_hostname or host
        where = "%s:%d" % (host, port)
        try:
            stream = await asyncio.wait_for(  # type: ignore[var-annotated]
                open_stream(host, port, ctx, sni), timeout_s)
        except asyncio.TimeoutError:
            from ._neterr import timeout_error

            raise timeout_error(timeout_s, where, tls)
        except NetworkError:
            raise
        except (OSError, ValueError) as e:
            raise _error(e, where, ctx is not None, True, has_cert, "connect")
        from .transport import StreamTransport

        return StreamTransport(stream, where, ctx is not None, has_cert)
    finally:
        _drop()  # (unloaded: see above)


def _drop():
    """Unload this module (see above; the next connect loads it again)."""
    import sys

    sys.modules.pop(__name__, None)  # "mqtt_v5._connect"
    try:
        delattr(sys.modules["mqtt_v5"], "_connect")  # as the import set it on the package
    except (AttributeError, KeyError):
        pass
