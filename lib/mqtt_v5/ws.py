"""MQTT over WebSocket (RFC 6455), client side: a transport for any broker.

    await client.connect("wss://broker.example/mqtt")                  # URL form
    await client.connect(lambda: open_ws("wss://host/mqtt", tls=tls,   # headers, query
                                         headers={"x-token": "abc"}, query={"a": "b"}))

``open_ws`` opens TCP or TLS through ``mqtt_v5.transport.open_connection``, sends the
HTTP/1.1 Upgrade request (``Sec-WebSocket-Key``, subprotocol ``mqtt``, extra headers,
query parameters), checks the answer (101, ``Upgrade: websocket``, the
``Sec-WebSocket-Accept`` computed from our key, subprotocol ``mqtt``) and returns a
``WebSocketTransport`` with the transport contract (``readinto`` / ``write`` /
``close``). MQTT is a byte stream, so message boundaries do not matter to it:

- ``write(buf)`` sends one masked binary frame (the mask key changes per frame;
  RFC 6455 section 5.3), masking through a preallocated buffer in chunks: no
  allocation per write but the frame header;
- ``readinto(buf)`` hands over the payload of binary frames and their continuation
  frames in order (a fragmented message reads like one), answers a ping with a pong,
  skips pongs, and on a close frame answers with a close and reports the end of
  the stream (0). A text frame, a masked server frame, an unknown opcode or a control
  frame over 125 bytes is a ``ProtocolError`` (the link is closed with 1002).

Payload bytes already in the read buffer are copied out; once it is empty, payload
bytes are read straight into the caller's buffer. Runs on CPython and on MicroPython
(``hashlib.sha1`` and ``binascii`` are in every TLS-capable firmware).
"""

import asyncio
import binascii
import hashlib
import random
import struct

from mqtt_v5.errors import NetworkError, ProtocolError, UsageError
from mqtt_v5.transport import parse_url

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Union  # noqa: F401

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONT = 0x0
_OP_TEXT = 0x1
_OP_BINARY = 0x2
_OP_CLOSE = 0x8
_OP_PING = 0x9
_OP_PONG = 0xA
_MAX_HEADERS = 4096  # the HTTP answer to the Upgrade request must fit in this
_CHUNK = 512  # masking buffer


def parse_ws_url(url):
    # type: (str) -> tuple
    """``ws://host[:port][/path][?query]`` / ``wss://...`` -> (tls, host, port, path).
    The path defaults to ``/mqtt`` (AWS IoT, Mosquitto, HiveMQ, EMQX all serve MQTT
    there)."""
    i = url.find("://")
    scheme = url[:i].lower() if i > 0 else ""
    if scheme not in ("ws", "wss"):
        raise UsageError("not a WebSocket URL (ws:// or wss://): %r" % (url,))
    tls = scheme == "wss"
    rest = url[i + 3:]
    j = rest.find("/")
    k = rest.find("?")
    if j < 0 or (0 <= k < j):
        j = k
    if j < 0:
        hostport, path = rest, "/mqtt"
    else:
        hostport, path = rest[:j], rest[j:]
        if path.startswith("?"):
            path = "/mqtt" + path
    host, port, _ = parse_url(hostport)  # the one host[:port] parser (IPv6 in brackets)
    return tls, host, port or (443 if tls else 80), path


def quote(s):
    # type: (Union[str, bytes]) -> str
    """Percent-encode ``s`` for a URL query (RFC 3986 unreserved characters kept)."""
    out = []
    for b in s.encode() if isinstance(s, str) else s:
        if (48 <= b <= 57) or (65 <= b <= 90) or (97 <= b <= 122) or b in b"-._~":
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def _pairs(d):
    return list(d.items()) if isinstance(d, dict) else list(d or ())


def accept_key(key):
    # type: (Union[str, bytes]) -> str
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key`` (RFC 6455 4.2.2)."""
    if isinstance(key, str):
        key = key.encode()
    return binascii.b2a_base64(hashlib.sha1(key + _GUID).digest()).strip().decode()


def handshake_request(host, port, path, key, tls=True, headers=None, query=None,
                      subprotocol="mqtt"):
    # type: (str, int, str, str, bool, Any, Any, str) -> bytes
    """The HTTP/1.1 Upgrade request (bytes)."""
    q = "&".join("%s=%s" % (quote(k), quote(v)) for k, v in _pairs(query))
    if q:
        path += ("&" if "?" in path else "?") + q
    h = "[%s]" % host if ":" in host else host
    if port != (443 if tls else 80):
        h += ":%d" % port
    lines = ["GET %s HTTP/1.1" % path, "Host: " + h, "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Protocol: " + subprotocol]
    for k, v in _pairs(headers):
        if "\r" in k or "\n" in k or "\r" in str(v) or "\n" in str(v):
            raise UsageError("a header name or value holds a line break: %r" % (k,))
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def check_handshake_response(head, key, subprotocol="mqtt"):
    # type: (bytes, str, str) -> None
    """Raise ``NetworkError`` unless ``head`` (the answer up to the blank line, bytes)
    accepts the upgrade for ``key`` with ``subprotocol``."""
    lines = head.decode("utf-8", "replace").split("\r\n")
    status = lines[0]
    parts = status.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise NetworkError("WebSocket: not an HTTP answer: %r" % (status[:80],))
    if parts[1] != "101":
        raise NetworkError("WebSocket upgrade refused: %s" % (status[:120],))
    fields = {}
    for line in lines[1:]:
        c = line.find(":")
        if c > 0:
            fields[line[:c].strip().lower()] = line[c + 1:].strip()
    if fields.get("upgrade", "").lower() != "websocket" or \
            "upgrade" not in fields.get("connection", "").lower():
        raise NetworkError("WebSocket: the answer lacks Upgrade: websocket / Connection: Upgrade")
    if fields.get("sec-websocket-accept") != accept_key(key):
        raise NetworkError("WebSocket: wrong Sec-WebSocket-Accept (not a WebSocket server, "
                           "or a proxy in the way)")
    if fields.get("sec-websocket-protocol") != subprotocol:
        raise NetworkError("WebSocket: the server did not agree to subprotocol %r (got %r)"
                           % (subprotocol, fields.get("sec-websocket-protocol")))


def _new_key():
    return binascii.b2a_base64(bytes(random.getrandbits(8) for _ in range(16))).strip().decode()


async def open_ws(url, tls=None, headers=None, query=None, timeout_s=10, subprotocol="mqtt",
                  read_buffer=512):
    # type: (str, Any, Any, Any, float, str, int) -> WebSocketTransport
    """Connect to ``url`` (ws:// or wss://; a ``TlsConfig`` for wss, default: verify
    against the system CAs) and upgrade; returns a ``WebSocketTransport``. ``headers``
    and ``query``: dicts or lists of (name, value) added to the Upgrade request."""
    from mqtt_v5.transport import open_connection

    use_tls, host, port, path = parse_ws_url(url)
    if tls and not use_tls:
        raise UsageError("ws:// is plain TCP: use wss:// with a TlsConfig")
    link = await open_connection(host, port, tls=(tls or True) if use_tls else None,
                                 timeout_s=timeout_s)
    try:
        key = _new_key()
        await link.write(handshake_request(host, port, path, key, use_tls, headers, query,
                                           subprotocol))
        ws = WebSocketTransport(link, read_buffer)
        head = await ws._read_head()
        check_handshake_response(head, key, subprotocol)
    except BaseException:
        await link.close()
        raise
    return ws


class WebSocketTransport:
    """The transport contract over a WebSocket connection (see the module docstring)."""

    def __init__(self, link, read_buffer=512):
        self._link = link
        self.peer = getattr(link, "peer", "")
        self._rbuf = bytearray(max(read_buffer, 132))
        self._rmv = memoryview(self._rbuf)
        self._rpos = 0
        self._rend = 0
        self._left = 0  # payload bytes of the current data frame still to hand over
        self._in_message = False  # a fragmented binary message is open
        self._wbuf = bytearray(14 + _CHUNK)
        self._wmv = memoryview(self._wbuf)
        self._key = bytearray(4)
        self._wlock = asyncio.Lock()
        self._closed = False
        self._close_sent = False

    async def _read_head(self):
        """The HTTP answer up to its blank line; bytes after it stay buffered."""
        while True:
            end = self._rbuf.find(b"\r\n\r\n", 0, self._rend)
            if end >= 0:
                head = bytes(self._rbuf[:end])
                self._rpos = end + 4
                return head
            if self._rend == len(self._rbuf):
                if len(self._rbuf) >= _MAX_HEADERS:
                    raise NetworkError("WebSocket: the HTTP answer is over %d bytes"
                                       % _MAX_HEADERS)
                self._rbuf.extend(bytes(len(self._rbuf)))
                self._rmv = memoryview(self._rbuf)
            n = await self._link.readinto(self._rmv[self._rend:])
            if not n:
                raise NetworkError("WebSocket: connection closed during the upgrade")
            self._rend += n

    async def _need(self, k):
        """Make ``k`` bytes available at ``_rpos``; False at end of stream."""
        while self._rend - self._rpos < k:
            if self._rpos:
                n = self._rend - self._rpos
                self._rbuf[0:n] = self._rbuf[self._rpos:self._rend]
                self._rpos = 0
                self._rend = n
            n = await self._link.readinto(self._rmv[self._rend:])
            if not n:
                return False
            self._rend += n
        return True

    async def readinto(self, buf):
        # type: (Any) -> int
        """MQTT bytes into ``buf``; 0 when the connection ended (close frame or EOF)."""
        while True:
            if self._closed:
                return 0
            left = self._left
            if left:
                mv = memoryview(buf)
                have = self._rend - self._rpos
                if have:
                    n = min(len(mv), left, have)
                    mv[0:n] = self._rmv[self._rpos:self._rpos + n]
                    self._rpos += n
                else:
                    n = await self._link.readinto(mv[0:min(len(mv), left)])
                    if not n:
                        return 0
                self._left = left - n
                return n
            if not await self._frame():
                return 0

    async def _frame(self):
        """Read the next frame's header; handle control frames. False: the stream ended."""
        if not await self._need(2):
            return False
        b0 = self._rbuf[self._rpos]
        b1 = self._rbuf[self._rpos + 1]
        op = b0 & 0x0F
        n = b1 & 0x7F
        hl = 2
        if b1 & 0x80:
            await self._fail("WebSocket: the server masked a frame (RFC 6455 5.1)")
        if b0 & 0x70:
            await self._fail("WebSocket: reserved bits set (no extension was agreed)")
        if n >= 126:
            hl = 4 if n == 126 else 10
            if not await self._need(hl):
                return False
            if n == 126:
                n = struct.unpack_from(">H", self._rbuf, self._rpos + 2)[0]
            else:
                n = struct.unpack_from(">Q", self._rbuf, self._rpos + 2)[0]
        fin = b0 & 0x80
        if op == _OP_BINARY or op == _OP_CONT:
            if (op == _OP_CONT) != self._in_message:
                await self._fail("WebSocket: continuation frame out of place")
            self._in_message = not fin
            self._rpos += hl
            self._left = n
            return True
        if op >= 0x8:
            if n > 125 or not fin:
                await self._fail("WebSocket: control frame over 125 bytes or fragmented")
            if not await self._need(hl + n):
                return False
            payload = bytes(self._rbuf[self._rpos + hl:self._rpos + hl + n])
            self._rpos += hl + n
            if op == _OP_PING:
                await self._send(_OP_PONG, payload)
                return True
            if op == _OP_PONG:
                return True
            if op == _OP_CLOSE:
                if not self._close_sent:
                    try:
                        await self._send(_OP_CLOSE, payload[:2])
                    except Exception:
                        pass
                await self.close()
                return False
        if op == _OP_TEXT:
            await self._fail("WebSocket: a text frame (MQTT travels in binary frames)")
        await self._fail("WebSocket: unknown opcode 0x%X" % op)
        return False

    async def _fail(self, why):
        try:
            await self._send(_OP_CLOSE, struct.pack(">H", 1002))
        except Exception:
            pass
        await self.close()
        raise ProtocolError(why)

    def _head(self, opcode, n):
        """Write a frame header with a fresh masking key into the write buffer;
        returns where the payload starts."""
        w = self._wbuf
        if n < 126:
            w[0] = 0x80 | opcode
            w[1] = 0x80 | n
            hl = 2
        elif n < 65536:
            struct.pack_into(">BBH", w, 0, 0x80 | opcode, 0xFE, n)
            hl = 4
        else:
            struct.pack_into(">BBQ", w, 0, 0x80 | opcode, 0xFF, n)
            hl = 10
        key = self._key
        r = random.getrandbits(16)
        key[0] = r >> 8
        key[1] = r & 0xFF
        r = random.getrandbits(16)
        key[2] = r >> 8
        key[3] = r & 0xFF
        w[hl:hl + 4] = key
        return hl + 4

    async def _send(self, opcode, data):
        # The reader answers pings while the client may be writing: one frame at a time.
        async with self._wlock:
            if opcode == _OP_CLOSE:
                self._close_sent = True
            n = len(data)
            w = self._wbuf
            key = self._key
            start = self._head(opcode, n)
            pos = 0
            src = memoryview(data)
            while True:
                k = min(n - pos, _CHUNK)
                for i in range(k):
                    w[start + i] = src[pos + i] ^ key[(pos + i) & 3]
                await self._link.write(self._wmv[0:start + k])
                pos += k
                start = 0
                if pos >= n:
                    return

    def write(self, buf):
        # type: (Any) -> Any
        """Send ``buf`` as one masked binary frame; awaitable, as the transport
        contract says. A frame that fits the masking buffer, with no other frame
        under way, goes to the link at once and the link's answer is returned
        (its ``READY``, or the drain to await): no coroutine of ours per packet.
        A longer frame, or one behind a frame under way, is sent by a coroutine."""
        if self._closed:
            raise NetworkError("WebSocket: connection closed")
        n = len(buf)
        if n > _CHUNK or self._wlock.locked():
            return self._send(_OP_BINARY, buf)
        w = self._wbuf
        key = self._key
        start = self._head(_OP_BINARY, n)
        for i in range(n):
            w[start + i] = buf[i] ^ key[i & 3]
        return self._link.write(self._wmv[0:start + n])

    async def close(self):
        # type: () -> None
        """Send a close frame (1000) if none was sent, then close the link. Idempotent."""
        if self._closed:
            return
        if not self._close_sent:
            try:
                await self._send(_OP_CLOSE, struct.pack(">H", 1000))
            except Exception:
                pass
        self._closed = True
        await self._link.close()
