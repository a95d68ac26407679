"""Byte streams under the broker: :class:`Stream` (the contract), :class:`TcpStream`
(TCP and TLS) and :class:`WsStream` (MQTT in binary WebSocket messages, RFC 6455).
"""

from __future__ import annotations

import asyncio
import logging
import struct

log = logging.getLogger("iot_twin")


class Stream:
    """The byte pipe a connection runs over (TCP, TLS, or WebSocket messages)."""

    async def read(self) -> bytes:
        """The next chunk of bytes; ``b""`` at end of stream."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def buffered(self) -> int:
        """Bytes written but not yet handed to the kernel."""
        return 0

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        """Flush what is buffered, then close."""
        raise NotImplementedError

    def abort(self) -> None:
        """Close now, dropping what is buffered."""
        self.close()

    def is_closing(self) -> bool:
        return False


class TcpStream(Stream):
    """A stream over asyncio's StreamReader/StreamWriter (TCP or TLS)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, read_size: int = 65536
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.read_size = read_size

    async def read(self) -> bytes:
        return await self.reader.read(self.read_size)

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.writer.write(data)

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


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
