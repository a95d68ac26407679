"""An independent WebSocket server for the transport tests: the `websockets` library
accepting subprotocol ``mqtt`` and bridging each connection to a TCP MQTT broker
(Mosquitto). It sends the broker's bytes as fragmented messages (3-byte fragments) and
pings the client often, so those paths of our client run against someone else's code."""

from __future__ import annotations

import asyncio
import contextlib

import websockets
from websockets.asyncio.server import serve


class Bridge:
    def __init__(self, broker_port: int, *, fragment: int = 3, ping_interval: float = 0.2):
        self.broker_port = broker_port
        self.fragment = fragment
        self.ping_interval = ping_interval
        self.requests: list = []   # (path, headers) of each upgrade request
        self.server = None
        self.port = 0

    async def __aenter__(self) -> Bridge:
        self.server = await serve(self._handle, "127.0.0.1", 0, subprotocols=["mqtt"],
                                  ping_interval=self.ping_interval, process_request=self._seen)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    def _seen(self, connection, request):
        self.requests.append((request.path, dict(request.headers.raw_items())))

    async def _handle(self, ws) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.broker_port)

        async def down() -> None:
            while data := await reader.read(65536):
                f = self.fragment
                if f and len(data) > f:
                    await ws.send([data[i:i + f] for i in range(0, len(data), f)])
                else:
                    await ws.send(data)
            await ws.close()

        task = asyncio.create_task(down())
        try:
            async for message in ws:
                assert isinstance(message, bytes), "MQTT travels in binary frames"
                writer.write(message)
                await writer.drain()
        except websockets.ConnectionClosed:
            pass
        finally:
            task.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
