"""Opening a connection (connect-time code: ``transport.open_connection`` loads this module
for each connection it opens, and it unloads itself once the connection is open or
failed). On MicroPython the TLS handshake runs in the connection's first write, after
this: the heap this code took is free for it then, and while connected."""

import asyncio

from ._compat import const
from .transport import _error, _usage

# transport's usage errors (_neterr's texts), by number
_E_SCHEME = const(0)
_E_PATH = const(1)
_E_BRACKET = const(2)
_E_HOST = const(3)
_E_PORT = const(4)
_E_NO_HOST = const(5)
_E_PLAIN = const(6)


def _drop():
    """Unload this module (the lines of ``_clienterr._drop``: see there)."""
    import sys

    sys.modules.pop(__name__, None)  # "mqtt_v5._open"
    try:
        delattr(sys.modules["mqtt_v5"], "_open")  # as the import set it on the package
    except (AttributeError, KeyError):
        pass


_DEFAULT_PORT = const(1883)
_DEFAULT_TLS_PORT = const(8883)


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


async def open_connection(url_or_host, port, tls, timeout_s):
    """``transport.open_connection``'s work up to the stream (its TLS session not made
    yet: see there): ``(stream, where, tls, client_cert)``, or the transport of a
    ``ws://`` URL; then this module unloads itself."""
    try:
        return await _open_connection(url_or_host, port, tls, timeout_s)
    finally:
        _drop()


async def _open_connection(url_or_host, port, tls, timeout_s):
    i = url_or_host.find("://")
    scheme = url_or_host[:i].lower() if 0 < i < 4 else None
    if scheme == "ws" or scheme == "wss":  # (no tuple of them in RAM while connected)
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
        port = _DEFAULT_TLS_PORT if tls else _DEFAULT_PORT
    ctx = None
    sni = None
    has_cert = False
    if tls:
        ctx = tls.context()
        has_cert = tls.cert is not None
        sni = tls.server_hostname or host
    where = "%s:%d" % (host, port)
    from ._compat import open_stream  # (MicroPython's unloads itself too)

    try:
        if timeout_s is None:
            stream = await open_stream(host, port, ctx, sni)
        else:
            stream = await asyncio.wait_for(  # type: ignore[var-annotated]
                open_stream(host, port, ctx, sni), timeout_s)
    except asyncio.TimeoutError:
        from ._neterr import timeout_error

        raise timeout_error(timeout_s, where, tls)
    except (OSError, ValueError) as e:
        raise _error(e, where, ctx is not None, True, has_cert, "connect")
    return stream, where, ctx is not None, has_cert
