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

The WebSocket server side (RFC 6455) is ``websockets``' sans-I/O protocol (the upgrade
here, the frames in :class:`~iot_twin.streams.WsStream`): it runs on the same asyncio
streams as MQTT over TLS because one port (``alpn``) serves both, chosen by ALPN.

Only loopback addresses are used unless the caller explicitly allows otherwise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from .broker import Broker
from .identity import ConnInfo
from .sigv4 import SigV4Error
from .streams import TcpStream, WsStream

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


# --- WebSocket (RFC 6455), server side: websockets' sans-I/O protocol ------------------------

CheckSigV4 = Callable[[str, str, str, dict[str, str]], str]  # method, path, query, headers
WS_MAX_MESSAGE = 1 << 20


async def websocket_accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    info: ConnInfo,
    check_sigv4: CheckSigV4 | None = None,
) -> WsStream | None:
    """Read the HTTP upgrade request and answer it; the stream, or None if refused.

    ``websockets``' :class:`ServerProtocol` parses the request and writes the answer; the
    twin adds AWS's rules: path ``/mqtt`` (404), subprotocol ``mqtt`` (400,
    [MQTT-6.0.0-3]), a SigV4-signed URL checked by ``check_sigv4`` (403).
    """
    protocol = ServerProtocol(
        subprotocols=[Subprotocol("mqtt")], max_size=WS_MAX_MESSAGE, logger=log
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HTTP_UPGRADE_TIMEOUT_S
    events: list[object] = []
    request: Request | None = None
    while request is None:
        try:
            data = await asyncio.wait_for(reader.read(MAX_HTTP_REQUEST), deadline - loop.time())
        except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
            writer.transport.abort()
            return None
        if not data:
            writer.transport.abort()
            return None
        protocol.receive_data(data)
        events += protocol.events_received()
        if protocol.handshake_exc is not None:  # not HTTP: websockets answered or closed
            _send(writer, protocol)
            writer.close()
            return None
        for i, event in enumerate(events):
            if isinstance(event, Request):
                request, events = event, events[i + 1 :]
                break
    url = urlsplit(request.path)
    headers = {k.lower(): v for k, v in request.headers.raw_items()}
    info.ws_path = url.path
    info.ws_headers = headers
    info.ws_query = url.query
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    response = None
    if url.path != WS_PATH:
        response = protocol.reject(404, "Not Found")
    elif "mqtt" not in offered:
        response = protocol.reject(400, "Bad Request: the WebSocket subprotocol must be mqtt")
    elif "x-amz-algorithm" in {k.lower() for k, _ in parse_qsl(url.query)}:
        # §1.2 [PROTO]: MQTT over WebSocket authenticated by a SigV4-signed URL.
        if check_sigv4 is None:
            response = protocol.reject(403, "Forbidden: no SigV4 credentials on this twin")
        else:
            try:
                info.sigv4_key_id = check_sigv4("GET", url.path, url.query, headers)
            except SigV4Error as e:
                log.info("%s: SigV4 upgrade refused: %s", info.peer, e.reason)
                response = protocol.reject(403, "Forbidden")
    if response is None:
        response = protocol.accept(request)  # 101, or 400/426 for a bad upgrade
    protocol.send_response(response)
    _send(writer, protocol)
    if response.status_code != 101:
        writer.close()
        return None
    return WsStream(reader, writer, protocol, events)


def _send(writer: asyncio.StreamWriter, protocol: ServerProtocol) -> None:
    for chunk in protocol.data_to_send():
        if chunk and not writer.transport.is_closing():
            writer.write(chunk)
