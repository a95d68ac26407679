"""Load on the AWS IoT twin: many concurrent MQTT 5 connections publishing QoS 1.

``bench_twin(results)`` is a section for ``tools/bench.py``: it starts a twin in a child
process (plain listener on a free loopback port, fresh state directory), opens
``BENCH_TWIN_CONNECTIONS`` (default 500) connections from this process, holds them all,
then has every connection publish ``BENCH_TWIN_MESSAGES`` (default 100) QoS 1 messages
with a window of 10 unacknowledged to ``bench/<client id>``, a topic it is itself
subscribed to (QoS 1), so every message is also routed back and counted. It fills
``results`` with::

    twin_connections_held   connections that got CONNACK 0 and stayed up to the end
    twin_connect_s          seconds to open, CONNECT and SUBSCRIBE all of them
    twin_qos1_msgs_per_s    PUBACKed publishes per second, all connections together
    twin_pubacks_lost       publishes without a PUBACK (must be 0)
    twin_delivered          messages routed back to the subscribers (must equal the publishes)

Run alone: ``PYTHONPATH=lib:tools python tools/bench_twin.py [connections] [messages]``.
The clients are built on our codec (``mqtt_v5.codec``) over asyncio streams; the twin is
in another process so the numbers are the twin's, not the clients' GIL share.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
for _p in (_ROOT / "lib", _ROOT / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from mqtt_v5 import _server_codec as codec  # noqa: E402
from mqtt_v5._server_codec import AckView, PacketReader, PublishView  # noqa: E402

HOST = "127.0.0.1"


def unthrottled_limits() -> Any:
    """The twin's limits with AWS's per-connection throttles off, for bulk load."""
    from iot_twin.server import Limits

    return Limits.unthrottled()


def raise_nofile(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class _Client:
    """One load connection: CONNECT, then QoS 1 publishes with a sliding window."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.buf = bytearray(4096)
        self.rx = PacketReader(1 << 16)
        self.ack = AckView()
        self.pub = PublishView()
        self.acked = 0
        self.received = 0
        self.ok = False

    async def connect(self, port: int, ssl_ctx: Any = None) -> None:
        # The twin refuses TLS without SNI (as AWS does): name it localhost.
        self.reader, self.writer = await asyncio.open_connection(
            HOST, port, ssl=ssl_ctx, server_hostname="localhost" if ssl_ctx else None
        )
        n = codec.encode_connect(self.buf, self.client_id, keep_alive=600)
        self.writer.write(bytes(self.buf[:n]))
        first = await self._next()
        body = self.rx.reader.reset(self.rx.buf, self.rx.body_start, self.rx.body_end)
        ack = codec.decode_body(first, body)
        self.ok = ack.type == codec.CONNACK and ack.reason_code == 0

    async def _next(self) -> int:
        while True:
            first = self.rx.next()
            if first >= 0:
                return first
            assert self.reader is not None
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError(f"{self.client_id}: connection closed")
            self.rx.feed(data)

    async def subscribe(self, topic_filter: str) -> None:
        assert self.writer is not None
        n = codec.encode_subscribe(self.buf, 1, [(topic_filter, 1)])
        self.writer.write(bytes(self.buf[:n]))
        first = await self._next()
        assert first >> 4 == codec.SUBACK

    async def publish_all(self, count: int, window: int, payload: bytes) -> None:
        """Publish ``count`` QoS 1 messages to our own topic; also take them back."""
        assert self.writer is not None
        topic = ("bench/" + self.client_id).encode()
        sent = 0
        while self.acked < count or self.received < count:
            while sent < count and sent - self.acked < window:
                sent += 1
                n = codec.encode_publish(self.buf, topic, payload, qos=1, packet_id=sent)
                self.writer.write(bytes(self.buf[:n]))
            first = await self._next()
            kind = first >> 4
            r = self.rx.reader.reset(self.rx.buf, self.rx.body_start, self.rx.body_end)
            if kind == codec.PUBACK:
                codec.decode_ack_into(self.ack, first, r)
                if self.ack.reason_code == 0:
                    self.acked += 1
            elif kind == codec.PUBLISH:
                codec.decode_publish_into(self.pub, first, r)
                self.received += 1
                if self.pub.qos:
                    n = codec.encode_ack(self.buf, codec.PUBACK, self.pub.packet_id)
                    self.writer.write(bytes(self.buf[:n]))
            elif kind == codec.DISCONNECT:
                raise ConnectionError(f"{self.client_id}: DISCONNECT from the twin")

    def alive(self) -> bool:
        return self.writer is not None and not self.writer.transport.is_closing()

    async def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.write(codec.encode_bytes(codec.Disconnect(0)))
                self.writer.close()
                await self.writer.wait_closed()


async def run_load(
    port: int,
    connections: int,
    messages: int,
    *,
    window: int = 10,
    payload_size: int = 64,
    ssl_ctx: Any = None,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Open ``connections`` clients to ``port``, then publish; returns the figures."""
    clients = [_Client(f"bench{i}") for i in range(connections)]
    t0 = time.perf_counter()

    async def start(c: _Client) -> None:
        await c.connect(port, ssl_ctx)
        if c.ok:
            await c.subscribe("bench/" + c.client_id)

    # Connect in batches: a SYN flood on one core only measures the accept backlog.
    for first in range(0, connections, 100):
        await asyncio.gather(
            *(start(c) for c in clients[first : first + 100]), return_exceptions=True
        )
    connect_s = time.perf_counter() - t0
    ready = [c for c in clients if c.ok]
    payload = b"x" * payload_size
    total = len(ready) * messages
    t1 = time.perf_counter()
    results = await asyncio.wait_for(
        asyncio.gather(
            *(c.publish_all(messages, window, payload) for c in ready), return_exceptions=True
        ),
        timeout_s,
    )
    publish_s = time.perf_counter() - t1
    errors = [r for r in results if isinstance(r, BaseException)]
    held = sum(1 for c in ready if c.alive())
    acked = sum(c.acked for c in ready)
    for c in clients:
        await c.close()
    return {
        "twin_connections_held": held,
        "twin_connections_wanted": connections,
        "twin_connect_s": round(connect_s, 2),
        "twin_qos1_msgs": acked,
        "twin_qos1_msgs_per_s": round(acked / publish_s) if publish_s else 0,
        "twin_pubacks_lost": total - acked + (connections - len(ready)) * messages,
        "twin_delivered": sum(c.received for c in ready),
        "twin_errors": [repr(e) for e in errors[:3]],
    }


def _serve(data_dir: str, pipe: Any, nofile: int) -> None:
    """Child process: a twin with only the plain listener, until told to stop."""
    raise_nofile(nofile)
    import logging

    from iot_twin.twin import Twin

    logging.getLogger("iot_twin").setLevel(logging.WARNING)

    async def main() -> None:
        # Bulk load: AWS's per-connection throttles (on by default) are turned off here.
        twin = Twin(
            data_dir,
            listeners=("plain",),
            plain_port=0,
            admin=False,
            limits=unthrottled_limits(),
        )
        await twin.start()
        pipe.send(twin.ports["plain"])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, pipe.recv)
        await twin.stop()

    asyncio.run(main())


def bench_twin(results: dict[str, Any]) -> None:
    """The bench.py section: see the module docstring."""
    connections = int(os.environ.get("BENCH_TWIN_CONNECTIONS", "500"))
    messages = int(os.environ.get("BENCH_TWIN_MESSAGES", "100"))
    nofile = raise_nofile(2 * connections + 256)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    with tempfile.TemporaryDirectory(prefix="bench-twin-") as data_dir:
        proc = ctx.Process(target=_serve, args=(data_dir, child, nofile), daemon=True)
        proc.start()
        try:
            if not parent.poll(60):
                raise RuntimeError("the twin did not start")
            port = parent.recv()
            results.update(asyncio.run(run_load(port, connections, messages)))
            results["twin_nofile_limit"] = nofile
        finally:
            with contextlib.suppress(Exception):
                parent.send("stop")
            proc.join(15)
            if proc.is_alive():
                proc.terminate()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.environ["BENCH_TWIN_CONNECTIONS"] = sys.argv[1]
    if len(sys.argv) > 2:
        os.environ["BENCH_TWIN_MESSAGES"] = sys.argv[2]
    out: dict[str, Any] = {}
    bench_twin(out)
    for key, value in out.items():
        print(f"{key:<26} {value}")
