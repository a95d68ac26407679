"""Byte streams under the broker: :class:`Stream` (the contract), :class:`TcpStream`
(TCP and TLS) and :class:`WsStream` (MQTT in binary WebSocket messages, RFC 6455).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable

from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import CLOSED, OPEN
from websockets.server import ServerProtocol

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


class WsStream(Stream):
    """MQTT bytes carried in binary WebSocket messages (RFC 6455, [MQTT-6.0.0]).

    The framing is ``websockets``' sans-I/O :class:`~websockets.server.ServerProtocol`
    (masking, fragments, ping/pong, close handshake, size limit); this class only moves
    bytes between it and the asyncio stream and joins fragments into messages. Text
    messages are refused with close code 1003 [MQTT-6.0.0-1].
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        protocol: ServerProtocol,
        events: Iterable[object] = (),
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.protocol = protocol
        self._events: deque[object] = deque(events)
        self._parts: list[bytes] = []

    async def read(self) -> bytes:
        while True:
            while self._events:
                event = self._events.popleft()
                if not isinstance(event, Frame):
                    continue
                message = self._frame(event)
                if message is None:
                    continue
                return message  # b"" at the end of the stream
            self._flush()
            if self.protocol.state is CLOSED or self.transport.is_closing():
                return b""
            data = await self.reader.read(65536)
            if not data:
                self.protocol.receive_eof()
                self._flush()
                return b""
            self.protocol.receive_data(data)
            self._events.extend(self.protocol.events_received())
            if self.protocol.parser_exc is not None:
                log.info("websocket: %s, closing", self.protocol.parser_exc)
                self._flush()
                return b""

    def _frame(self, frame: Frame) -> bytes | None:
        """A complete MQTT chunk, b"" to stop, or None to read on."""
        if frame.opcode is Opcode.TEXT:
            log.info("websocket: a text message, closing")  # [MQTT-6.0.0-1]
            self.protocol.fail(CloseCode.UNSUPPORTED_DATA, "MQTT needs binary frames")
            self._flush()
            return b""
        if frame.opcode is Opcode.CLOSE:
            self._flush()  # websockets queued the answering close frame
            return b""
        if frame.opcode not in (Opcode.BINARY, Opcode.CONT):
            return None  # ping (answered by websockets) and pong
        self._parts.append(bytes(frame.data))
        if not frame.fin:
            return None
        message = b"".join(self._parts)
        self._parts = []
        # An empty message carries no MQTT bytes; b"" would mean end of stream.
        return message or None

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if not self.transport.is_closing():
                if chunk:
                    self.writer.write(chunk)
                else:  # websockets' "now close the TCP connection"
                    self.writer.close()

    def write(self, data: bytes) -> None:
        if self.protocol.state is OPEN and not self.transport.is_closing():
            self.protocol.send_binary(data)
            self._flush()

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        if self.protocol.state is OPEN:
            self.protocol.send_close(CloseCode.NORMAL_CLOSURE)
            self._flush()
        self.writer.close()

    def abort(self) -> None:
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class Output:
    """A connection's corked output: packets queued during one loop iteration leave in
    one write (one syscall, one TLS record) instead of one each."""

    __slots__ = ("_out", "_out_bytes", "loop", "stream")

    def __init__(self, stream: Stream, loop: asyncio.AbstractEventLoop) -> None:
        self.stream = stream
        self.loop = loop
        self._out: list[bytes] | None = None
        self._out_bytes = 0

    def send(self, data: bytes) -> None:
        out = self._out
        if out is None:
            self._out = [data]
            self._out_bytes = len(data)
            self.loop.call_soon(self.flush)
        else:
            out.append(data)
            self._out_bytes += len(data)

    def flush(self) -> None:
        out = self._out
        if out is None:
            return
        self._out = None
        self._out_bytes = 0
        self.stream.write(out[0] if len(out) == 1 else b"".join(out))

    def buffered(self) -> int:
        """Bytes queued here or in the stream, not yet handed to the kernel."""
        return self.stream.buffered() + self._out_bytes
