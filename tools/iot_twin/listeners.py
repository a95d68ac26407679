"""The twin's front ends: mutual TLS, TLS routed by ALPN, MQTT over WebSocket, plain TCP.

Each listener is an ``asyncio.start_server`` whose connection callback turns the
transport into a :class:`~iot_twin.server.Stream`, describes it in a
:class:`~iot_twin.server.ConnInfo` (listener, peer, ALPN, SNI, client certificate,
WebSocket request) and hands both to :meth:`Broker.serve`. Who may do what is decided
later, from the CONNECT, by the broker's ``authenticate`` hook.

=========  ===========  =========================================================  ===========
name       default      what (aws-iot-spec §1.2 [PROTO])                            AWS port
=========  ===========  =========================================================  ===========
mtls       18883        MQTT over TLS, client certificate required                  8883
alpn       18443        TLS; ALPN ``x-amzn-mqtt-ca`` = MQTT + client certificate,   443
                        ``mqtt`` = MQTT + custom authorizer (username/password),
                        ``http/1.1`` (or none) = MQTT over WebSocket
wss        18444        MQTT over WebSocket over TLS (path ``/mqtt``, subprotocol   443
                        ``mqtt``); custom-authorizer credentials in the upgrade
                        request's headers or query, or in CONNECT
plain      11883        MQTT over plain TCP: no AWS equivalent, for experiments     none
=========  ===========  =========================================================  ===========

The WebSocket server side (RFC 6455) is written here, small and strict: masked client
frames only, binary data frames (text frames are refused, [MQTT-6.0.0-1]), ping/pong and
close handled, fragmented messages joined.

Only loopback addresses are used unless the caller explicitly allows otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from .server import Broker, ConnInfo, Stream, TcpStream
from .sigv4 import SigV4Error

log = logging.getLogger("iot_twin")

ALPN_X509 = "x-amzn-mqtt-ca"  # §1.2: X.509 client certificate on 443
ALPN_CUSTOM_AUTH = "mqtt"  # §1.2: custom authorizer on 443
ALPN_HTTP = "http/1.1"  # §1.2: WebSocket on 443 (the SDK's websocket builder sends it)

DEFAULT_PORTS = {"mtls": 18883, "alpn": 18443, "wss": 18444, "plain": 11883}
PORT_ENV = {
    "mtls": "TWIN_MTLS_PORT",
    "alpn": "TWIN_ALPN_PORT",
    "wss": "TWIN_WSS_PORT",
    "plain": "TWIN_PLAIN_PORT",
}
TLS_HANDSHAKE_TIMEOUT_S = 10.0
HTTP_UPGRADE_TIMEOUT_S = 10.0
MAX_HTTP_REQUEST = 16384
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_PATH = "/mqtt"  # §1.1: wss://<endpoint>/mqtt [PROTO-2022]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class TlsFiles:
    """Server certificate and key, and the CA that client certificates must chain to."""

    cert: Path
    key: Path
    ca: Path


def server_context(
    files: TlsFiles,
    *,
    client_cert: int,
    alpn: list[str] | None = None,
    sni_names: tuple[str, ...] | None = None,
) -> ssl.SSLContext:
    """A server-side TLS 1.2/1.3 context (§1.3); ``client_cert`` is an ``ssl.CERT_*``.

    ``sni_names``: if given, a ClientHello without one of these server names fails the
    handshake with an ``unrecognized_name`` alert (§1.3 [MQTT-DOC]: "Connection attempts
    that don't include the SNI are refused").
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.cert), str(files.key))
    ctx.verify_mode = client_cert
    if client_cert != ssl.CERT_NONE:
        ctx.load_verify_locations(str(files.ca))
    # §1.3 [TRANSPORT-2022]: the SessionTicket extension is not supported.
    ctx.options |= ssl.OP_NO_TICKET
    if alpn:
        ctx.set_alpn_protocols(alpn)

    def remember_sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> int | None:
        try:
            sslobj._twin_sni = name  # type: ignore[attr-defined]
        except AttributeError:
            pass
        if sni_names is not None and name not in sni_names:
            log.info(
                "TLS ClientHello with server name %r (want one of %s): refused", name, sni_names
            )
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    ctx.sni_callback = remember_sni  # type: ignore[assignment]
    return ctx


def _tls_facts(writer: asyncio.StreamWriter) -> tuple[str | None, str | None, bytes | None]:
    sslobj = writer.get_extra_info("ssl_object")
    if sslobj is None:
        return None, None, None
    name = getattr(sslobj, "_twin_sni", None)
    return sslobj.selected_alpn_protocol(), name, sslobj.getpeercert(binary_form=True)


class Listener:
    """One listening socket."""

    def __init__(self, name: str, server: asyncio.Server, tasks: set[asyncio.Task[None]]) -> None:
        self.name = name
        self.server = server
        self.tasks = tasks  # one per open connection
        sock = server.sockets[0].getsockname()
        self.host, self.port = sock[0], sock[1]

    async def close(self, grace_s: float = 1.0) -> None:
        """Stop accepting; give open connections ``grace_s`` to end (a TLS close waits for
        the peer's close_notify), then cancel and abort what is left."""
        self.server.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace_s)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace_s)


async def start_listener(
    broker: Broker,
    name: str,
    host: str,
    port: int,
    tls: TlsFiles | None,
    *,
    sni_names: tuple[str, ...] | None = None,
    check_sigv4: CheckSigV4 | None = None,
) -> Listener:
    """Open listener ``name`` (``mtls``, ``alpn``, ``wss`` or ``plain``) on ``host:port``.

    ``sni_names``: if given, a TLS client must send one of these server names (§1.3: the
    handshake fails otherwise); None records SNI without checking it. ``check_sigv4``
    checks a SigV4-signed WebSocket upgrade (returns the access key id or raises
    :class:`SigV4Error`); without it such upgrades get HTTP 403.
    """
    ctx: ssl.SSLContext | None = None
    if name != "plain":
        if tls is None:
            raise ValueError(f"listener {name} needs TLS files")
        if name == "mtls":
            ctx = server_context(tls, client_cert=ssl.CERT_REQUIRED, sni_names=sni_names)
        elif name == "alpn":
            # §1.2: one port, the authentication method chosen by ALPN; a client
            # certificate is only asked for, checked by the route that needs it.
            ctx = server_context(
                tls,
                client_cert=ssl.CERT_OPTIONAL,
                alpn=[ALPN_X509, ALPN_CUSTOM_AUTH, ALPN_HTTP],
                sni_names=sni_names,
            )
        elif name == "wss":
            ctx = server_context(
                tls, client_cert=ssl.CERT_NONE, alpn=[ALPN_HTTP], sni_names=sni_names
            )
        else:
            raise ValueError(f"unknown listener {name}")

    tasks: set[asyncio.Task[None]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            tasks.add(task)  # type: ignore[arg-type]
        try:
            await _route(broker, name, reader, writer, sni_names, check_sigv4)
        except asyncio.CancelledError:
            writer.transport.abort()  # shutting down: do not wait for the peer
        except Exception:
            log.exception("listener %s: connection failed", name)
        finally:
            tasks.discard(task)  # type: ignore[arg-type]
            if not writer.transport.is_closing():
                writer.transport.abort()

    server = await asyncio.start_server(
        on_connection,
        host,
        port,
        ssl=ctx,
        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S if ctx else None,
        backlog=1024,
        limit=MAX_HTTP_REQUEST * 4,
    )
    return Listener(name, server, tasks)


async def _route(
    broker: Broker,
    name: str,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    sni_names: tuple[str, ...] | None = None,
    check_sigv4: CheckSigV4 | None = None,
) -> None:
    peer = writer.get_extra_info("peername")
    peer = (peer[0], peer[1]) if peer else None
    alpn, server_name, cert = _tls_facts(writer)
    if sni_names is not None and name != "plain" and server_name not in sni_names:
        # The handshake refuses these (server_context); this is a second line.
        log.info("%s: TLS without the SNI %s (got %r), closing", peer, sni_names, server_name)
        writer.transport.abort()
        return
    if name == "plain":
        info = ConnInfo("plain", peer)
    elif name == "mtls":
        info = ConnInfo("mtls", peer, tls=True, alpn=alpn, sni=server_name, cert_der=cert)
    elif name == "wss" or (name == "alpn" and alpn in (ALPN_HTTP, None)):
        # §1.2: on 443 without an MQTT ALPN it is HTTP, i.e. MQTT over WebSocket.
        info = ConnInfo(
            "wss" if name == "wss" else "alpn-wss", peer, tls=True, alpn=alpn, sni=server_name
        )
        stream = await websocket_accept(reader, writer, info, check_sigv4)
        if stream is not None:
            await broker.serve(stream, info)
        return
    elif alpn == ALPN_X509:
        if cert is None:
            # §1.2: X.509 on 443 needs ALPN x-amzn-mqtt-ca *and* a client certificate.
            log.info("%s: ALPN %s without a client certificate, closing", peer, ALPN_X509)
            writer.transport.abort()
            return
        info = ConnInfo("alpn-x509", peer, tls=True, alpn=alpn, sni=server_name, cert_der=cert)
    else:
        # ALPN "mqtt": custom authentication only (§1.2: custom auth cannot use
        # x-amzn-mqtt-ca, and a certificate on the mqtt route is ignored).
        info = ConnInfo("alpn-custom-auth", peer, tls=True, alpn=alpn, sni=server_name)
    await broker.serve(TcpStream(reader, writer), info)


# --- WebSocket (RFC 6455), server side ----------------------------------------------------------


class WebSocketError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


CheckSigV4 = Callable[[str, str, str, dict[str, str]], str]  # method, path, query, headers


async def websocket_accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    info: ConnInfo,
    check_sigv4: CheckSigV4 | None = None,
) -> WsStream | None:
    """Read the HTTP upgrade request and answer it; the stream, or None if refused."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HTTP_UPGRADE_TIMEOUT_S)
    except (
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        TimeoutError,
        ConnectionError,
        OSError,
        ssl.SSLError,
    ):
        writer.transport.abort()
        return None
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            key, sep, value = line.partition(":")
            if not sep:
                raise ValueError("bad header line")
            headers[key.strip().lower()] = value.strip()
    except ValueError:
        _http_error(writer, 400, "Bad Request")
        return None
    url = urlsplit(target)
    info.ws_path = url.path
    info.ws_headers = headers
    info.ws_query = url.query
    key = headers.get("sec-websocket-key", "")
    protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    if method != "GET" or not version.startswith("HTTP/1.1"):
        _http_error(writer, 400, "Bad Request")
        return None
    if url.path != WS_PATH:
        _http_error(writer, 404, "Not Found")
        return None
    if (
        "websocket" not in headers.get("upgrade", "").lower()
        or not key
        or headers.get("sec-websocket-version") != "13"
    ):
        _http_error(writer, 400, "Bad Request")
        return None
    if "mqtt" not in protocols:
        # [MQTT-6.0.0-3] the subprotocol is "mqtt".
        _http_error(writer, 400, "Bad Request: the WebSocket subprotocol must be mqtt")
        return None
    if "x-amz-algorithm" in {k.lower() for k, _ in parse_qsl(url.query)}:
        # §1.2 [PROTO]: MQTT over WebSocket authenticated by a SigV4-signed URL.
        if check_sigv4 is None:
            _http_error(writer, 403, "Forbidden: no SigV4 credentials on this twin")
            return None
        try:
            info.sigv4_key_id = check_sigv4(method, url.path, url.query, headers)
        except SigV4Error as e:
            log.info("%s: SigV4 upgrade refused: %s", info.peer, e.reason)
            _http_error(writer, 403, "Forbidden")
            return None
    accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    writer.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n"
            "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        ).encode()
    )
    return WsStream(reader, writer)


def _http_error(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = text.encode()
    writer.write(
        b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (status, text.split(":")[0].encode(), len(body), body)
    )
    writer.close()


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def ws_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame (servers send unmasked frames; ``mask`` is for test clients)."""
    n = len(payload)
    head = bytearray([0x80 | opcode])
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if mask is not None:
        head += mask
        payload = _unmask(payload, mask)
    return bytes(head) + payload


class WsStream(Stream):
    """MQTT bytes carried in binary WebSocket messages."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_message: int = 1 << 20,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.max_message = max_message
        self.closed_sent = False

    async def read(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        in_message = False
        while True:
            try:
                first, second = await self.reader.readexactly(2)
            except asyncio.IncompleteReadError:
                return b""
            fin = first & 0x80
            opcode = first & 0x0F
            if first & 0x70:
                return self._fail(1002, "reserved bits set")
            if not second & 0x80:
                return self._fail(1002, "client frames must be masked")
            n = second & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            if size + n > self.max_message:
                return self._fail(1009, "message too big")
            mask = await self.reader.readexactly(4)
            data = _unmask(await self.reader.readexactly(n), mask)
            if opcode >= 8:
                if not fin or n > 125:
                    return self._fail(1002, "bad control frame")
                if opcode == 8:
                    self._send_close(1000)
                    return b""
                if opcode == 9:
                    self.writer.write(ws_frame(10, data))
                continue  # pong (10) and unknown control frames are ignored
            if opcode == 1:
                return self._fail(1003, "MQTT needs binary frames")  # [MQTT-6.0.0-1]
            if opcode not in (0, 2) or (opcode == 2) == in_message:
                return self._fail(1002, "bad data frame sequence")
            in_message = True
            parts.append(data)
            size += n
            if fin:
                message = b"".join(parts) if len(parts) > 1 else parts[0]
                if message:
                    return message
                # An empty message carries no MQTT bytes; b"" would mean end of stream.
                parts, size, in_message = [], 0, False

    def _fail(self, code: int, reason: str) -> bytes:
        log.info("websocket: %s, closing", reason)
        self._send_close(code)
        return b""

    def _send_close(self, code: int) -> None:
        if not self.closed_sent and not self.transport.is_closing():
            self.closed_sent = True
            self.writer.write(ws_frame(8, struct.pack("!H", code)))

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.writer.write(ws_frame(2, data))

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self._send_close(1000)
        self.writer.close()

    def abort(self) -> None:
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()
