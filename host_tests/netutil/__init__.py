"""Test-side network helpers (CPython only): a fault-injecting TCP proxy and a scripted,
possibly hostile, MQTT broker. Both listen on 127.0.0.1 on a free port.

FaultProxy(target_host, target_port)        a proxy between a client and a real broker
    .start() / .stop() (also a context manager; the `fault_proxy` fixture stops it)
    .host, .port, .url                       where clients connect ("mqtt://127.0.0.1:P")
    .cut()                                   close both sides of every live connection (FIN)
    .reset()                                 RST both sides (SO_LINGER 0)
    .stall(seconds=None) / .resume()         stop forwarding, keep the sockets open: a dead
                                             link only keep-alive can detect (None = until
                                             resume())
    .cut_after_bytes(n, direction="up")      forward n more bytes that way, then cut (mid-packet)
                                             direction "up" = client->broker, "down" = back
    .refuse(True|False)                      refuse new connections (listener closed: the
                                             client sees ECONNREFUSED) / accept again
    .bytes_up, .bytes_down                   bytes forwarded each way, all connections
    .connections, .active                    accepted so far / open now
    .wait_connections(n, timeout_s)          wait until n connections were accepted
    FaultProxies() collects proxies and stops them all: the `fault_proxy` fixture in a test
    module is `with FaultProxies() as make: yield make` (make(host, port) -> started proxy).
    It runs its own event loop in a daemon thread, so it serves sync and async tests alike,
    and stops by itself after `max_lifetime_s` (default 300 s) if nobody stopped it.

ScriptedBroker()                             a server the test scripts byte by byte; it runs
    in the TEST's event loop (async API), next to the client under test:

        async with ScriptedBroker() as broker:
            task = asyncio.create_task(client.connect())      # to broker.url
            conn = await broker.accept()
            connect = await conn.expect(codec.CONNECT)        # decoded with mqtt_v5.codec
            await conn.send(b"\\x20\\x03\\x00\\x00\\x00")       # any raw bytes
            await conn.send_packet(codec.Connack(0))          # or an encoded packet
            ...
            assert await conn.wait_closed(2)                  # the client hung up

    Connection: .read_packet(timeout_s) -> (first_byte, body bytes, decoded Packet or the
    ProtocolError raised decoding it), .expect(ptype) -> Packet, .read_bytes(), .send(),
    .send_packet(), .close(), .reset(), .wait_closed(timeout_s), .received (raw packets).
    broker.stop() closes everything (the async context manager does it).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

from mqtt_v5 import _server_codec as codec
from mqtt_v5.errors import ProtocolError

HOST = "127.0.0.1"
UP = "up"  # client -> broker
DOWN = "down"  # broker -> client


def _rst(writer: asyncio.StreamWriter | None) -> None:
    """Close with an RST: SO_LINGER on, 0 s."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def _drop(writer: asyncio.StreamWriter | None) -> None:
    """Close now (FIN), dropping whatever is buffered."""
    if writer is not None:
        writer.transport.abort()


# ------------------------------------------------------------------------------ FaultProxy


class _Link:
    def __init__(self, cw: asyncio.StreamWriter):
        self.cw = cw  # to the client
        self.sw: asyncio.StreamWriter | None = None  # to the broker
        self.tasks: list[asyncio.Task] = []


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = HOST,
                 max_lifetime_s: float = 300.0):
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.max_lifetime_s = max_lifetime_s
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self._links: set[_Link] = set()
        self._budget: dict[str, int | None] = {UP: None, DOWN: None}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._resume_handle: asyncio.TimerHandle | None = None
        self._done: asyncio.Event | None = None
        self._lock = threading.Lock()

    # -- life cycle --

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def active(self) -> int:
        return len(self._links)

    def start(self) -> FaultProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._main(ready))
            except BaseException as e:  # reported to start() if it happens early
                failure.append(e)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"FaultProxy->{self.target[1]}",
                                        daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("FaultProxy did not start")
        if failure:
            raise failure[0]
        return self

    async def _main(self, ready: threading.Event):
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._done = asyncio.Event()
        await self._listen()
        ready.set()
        try:
            await asyncio.wait_for(self._done.wait(), self.max_lifetime_s)
        except TimeoutError:
            pass
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._close_link(link, rst=False)
        await asyncio.sleep(0)

    async def _listen(self):
        self._server = await asyncio.start_server(self._accept, self.host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            loop.call_soon_threadsafe(self._done.set)
        except RuntimeError:  # loop already closed
            return
        thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _call(self, fn, *args):
        """Run fn(*args) (a coroutine function) on the proxy's loop and wait for it."""
        if self._loop is None:
            raise RuntimeError("FaultProxy not started")
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(10)

    # -- controls (callable from any thread) --

    def cut(self) -> None:
        self._call(self._close_all, False)

    def reset(self) -> None:
        self._call(self._close_all, True)

    def stall(self, seconds: float | None = None) -> None:
        async def go():
            self._flowing.clear()
            if self._resume_handle is not None:
                self._resume_handle.cancel()
                self._resume_handle = None
            if seconds is not None:
                self._resume_handle = asyncio.get_running_loop().call_later(
                    seconds, self._flowing.set)

        self._call(go)

    def resume(self) -> None:
        async def go():
            if self._resume_handle is not None:
                self._resume_handle.cancel()
                self._resume_handle = None
            self._flowing.set()

        self._call(go)

    def cut_after_bytes(self, n: int, direction: str = UP) -> None:
        if direction not in (UP, DOWN):
            raise ValueError("direction is 'up' (client->broker) or 'down'")

        async def go():
            self._budget[direction] = n

        self._call(go)

    def refuse(self, on: bool = True) -> None:
        async def go():
            if on and self._server is not None:
                self._server.close()  # live connections stay up
                self._server = None
            elif not on and self._server is None:
                await self._listen()

        self._call(go)

    def wait_connections(self, n: int, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.connections < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # -- inside the proxy's loop --

    async def _close_all(self, rst: bool):
        for link in list(self._links):
            self._close_link(link, rst)

    def _close_link(self, link: _Link, rst: bool):
        self._links.discard(link)
        for t in link.tasks:
            t.cancel()
        (_rst if rst else _drop)(link.cw)
        (_rst if rst else _drop)(link.sw)

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter):
        self.connections += 1
        link = _Link(cw)
        self._links.add(link)
        try:
            sr, sw = await asyncio.open_connection(*self.target)
        except OSError:
            self._close_link(link, rst=True)  # the broker is down: so is the proxy's client
            return
        link.sw = sw
        if link not in self._links:  # cut while connecting
            _drop(sw)
            return
        link.tasks = [asyncio.create_task(self._pump(link, cr, sw, UP)),
                      asyncio.create_task(self._pump(link, sr, cw, DOWN))]

    async def _pump(self, link: _Link, reader, writer, direction: str):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    # Half-close: pass the FIN on, the other direction may still flow.
                    # A stalled link passes nothing, a FIN included.
                    await self._flowing.wait()
                    if writer.can_write_eof() and not writer.is_closing():
                        writer.write_eof()
                    return
                await self._flowing.wait()
                budget = self._budget[direction]
                if budget is not None and len(data) >= budget:
                    data = data[:budget]
                    self._budget[direction] = None
                    self._count(direction, len(data))  # before the peer can see them
                    writer.write(data)
                    await writer.drain()
                    self._close_link(link, rst=False)
                    return
                if budget is not None:
                    self._budget[direction] = budget - len(data)
                self._count(direction, len(data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            self._close_link(link, rst=True)

    def _count(self, direction: str, n: int):
        if direction == UP:
            self.bytes_up += n
        else:
            self.bytes_down += n


class FaultProxies:
    """Starts proxies on demand and stops every one on exit (for fixtures)."""

    def __init__(self):
        self.proxies: list[FaultProxy] = []

    def __call__(self, target_host: str, target_port: int, **kw) -> FaultProxy:
        proxy = FaultProxy(target_host, target_port, **kw).start()
        self.proxies.append(proxy)
        return proxy

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.proxies:
            p.stop()


# --------------------------------------------------------------------------- ScriptedBroker


class ScriptedConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_packet_size: int):
        self.reader = reader
        self.writer = writer
        self._pr = codec.PacketReader(max_packet_size)
        self.received: list[bytes] = []  # every whole packet the client sent, raw

    async def read_bytes(self, timeout_s: float = 5.0) -> bytes:
        """Whatever the client sent next (b"" once it closed)."""
        return await asyncio.wait_for(self.reader.read(65536), timeout_s)

    async def read_packet(self, timeout_s: float = 5.0):
        """(first byte, body bytes, decoded packet or the ProtocolError), or None if the
        client closed the connection first. A packet that cannot even be framed comes back
        as (first byte, every byte buffered after it, the ProtocolError)."""
        pr = self._pr
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                first = pr.next()
            except ProtocolError as e:  # unframeable: hand back all that is buffered
                first, rest = pr.buf[pr.start], bytes(pr.buf[pr.start + 1:pr.end])
                self.received.append(bytes([first]) + rest)
                pr.reset()
                return first, rest, e
            if first >= 0:
                body = bytes(pr.buf[pr.body_start:pr.body_end])
                try:
                    pkt = codec.decode_body(first, pr.reader.reset(pr.buf, pr.body_start,
                                                                   pr.body_end))
                except ProtocolError as e:
                    pkt = e
                self.received.append(bytes([first]) + codec_vbi(len(body)) + body)
                return first, body, pkt
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError("no packet from the client in time")
            data = await asyncio.wait_for(self.reader.read(len(pr.free())), left)
            if not data:
                return None
            pr.feed(data)

    async def expect(self, ptype: int, timeout_s: float = 5.0):
        """Read the next packet; it must be of type ptype (codec.CONNECT, ...). Returns the
        decoded packet."""
        got = await self.read_packet(timeout_s)
        if got is None:
            raise AssertionError(f"expected {codec.PACKET_NAMES[ptype]}, the client closed")
        first, _body, pkt = got
        if first >> 4 != ptype:
            raise AssertionError(f"expected {codec.PACKET_NAMES[ptype]}, got "
                                 f"{codec.PACKET_NAMES[first >> 4]}: {pkt!r}")
        if isinstance(pkt, ProtocolError):
            raise AssertionError(f"{codec.PACKET_NAMES[ptype]} did not decode: {pkt}")
        return pkt

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_packet(self, packet) -> None:
        await self.send(codec.encode_bytes(packet))

    async def wait_closed(self, timeout_s: float = 5.0) -> bool:
        """True once the client closed its side (bytes it sent meanwhile are kept)."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
                    self._pr.feed(data)
        except TimeoutError:
            return False
        except (ConnectionError, OSError):
            return True

    def close(self) -> None:
        _drop(self.writer)

    def reset(self) -> None:
        _rst(self.writer)


def codec_vbi(n: int) -> bytes:
    """MQTT Variable Byte Integer encoding of n."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class ScriptedBroker:
    def __init__(self, *, host: str = HOST, max_packet_size: int = 1 << 20):
        self.host = host
        self.port = 0
        self.max_packet_size = max_packet_size
        self._server: asyncio.base_events.Server | None = None
        self._pending: asyncio.Queue[ScriptedConnection] = asyncio.Queue()
        self.connections: list[ScriptedConnection] = []

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> ScriptedBroker:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader, writer):
        conn = ScriptedConnection(reader, writer, self.max_packet_size)
        self.connections.append(conn)
        await self._pending.put(conn)

    async def accept(self, timeout_s: float = 5.0) -> ScriptedConnection:
        """The next connection a client opened."""
        return await asyncio.wait_for(self._pending.get(), timeout_s)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for c in self.connections:
            c.close()
        await asyncio.sleep(0)

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()
