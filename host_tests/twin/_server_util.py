"""Helpers for the twin endpoint tests: an in-process Twin on free ports, a paho-mqtt 2.x
(MQTT 5) client with blocking helpers, and a raw-socket client built on our codec for
the packets paho will not send (malformed, topic alias 9, QoS 2, abrupt close).

The twin runs on its own event loop in a background thread so that paho's blocking,
threaded API can be used from plain synchronous tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iot_twin.twin import ThingCredentials, Twin
from mqtt_v5 import _server_codec as codec
from mqtt_v5._server_codec import PacketReader

HOST = "127.0.0.1"
TIMEOUT = 5.0


class TwinThread:
    """A Twin running on an event loop in a daemon thread."""

    def __init__(self, data_dir: Path, **kwargs: Any) -> None:
        kwargs.setdefault("mtls_port", 0)
        kwargs.setdefault("alpn_port", 0)
        kwargs.setdefault("wss_port", 0)
        kwargs.setdefault("plain_port", 0)
        kwargs.setdefault("admin", False)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.twin: Twin = self.call(lambda: Twin(data_dir, **kwargs))
        self.run(self.twin.start())
        self._things: dict[str, ThingCredentials] = {}

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the twin's loop and return its result."""
        fut: Any = asyncio.run_coroutine_threadsafe(_call(fn, args, kwargs), self.loop)
        return fut.result(30)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self) -> None:
        try:
            self.run(self.twin.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()

    def port(self, name: str) -> int:
        return self.twin.ports[name]

    @property
    def ca(self) -> str:
        return str(self.twin.ca_path)

    def thing(self, name: str) -> ThingCredentials:
        """The credentials of thing ``name``, registered on first use."""
        if name not in self._things:
            self._things[name] = self.call(self.twin.add_thing, name)
        return self._things[name]

    def paho(
        self,
        client_id: str,
        *,
        listener: str = "mtls",
        thing: str | None = None,
        connect: bool = True,
        **kwargs: Any,
    ) -> PahoClient:
        """A paho client for ``listener``; on mTLS it uses thing ``thing`` (default: the
        client id)'s certificate."""
        c = PahoClient(client_id, transport="websockets" if listener == "wss" else "tcp")
        if listener == "mtls":
            creds = self.thing(thing or client_id)
            c.client.tls_set(
                ca_certs=self.ca, certfile=str(creds.cert_path), keyfile=str(creds.key_path)
            )
        elif listener != "plain":
            raise ValueError(listener)
        c.port = self.port(listener)
        if connect:
            c.connect(**kwargs)
        return c

    def raw(self, listener: str = "plain", *, thing: str | None = None) -> RawClient:
        ctx = None
        if listener == "mtls":
            ctx = client_context(self.ca, self.thing(thing) if thing else None)
        return RawClient(self.port(listener), ctx)


async def _call(fn: Any, args: Any, kwargs: Any) -> Any:
    result = fn(*args, **kwargs)
    if asyncio.iscoroutine(result):
        result = await result
    return result


@contextlib.contextmanager
def running_twin(tmp_path: Path, **kwargs: Any) -> Iterator[TwinThread]:
    t = TwinThread(tmp_path / "twin-data", **kwargs)
    try:
        yield t
    finally:
        t.stop()


def client_context(
    ca: str, creds: ThingCredentials | None = None, alpn: list[str] | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    if creds is not None:
        ctx.load_cert_chain(str(creds.cert_path), str(creds.key_path))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def props(packet_type: int = PacketTypes.PUBLISH, **values: Any) -> Properties:
    p = Properties(packet_type)
    for key, value in values.items():
        setattr(p, key, value)
    return p


class Msg:
    def __init__(self, m: Any) -> None:
        self.topic = m.topic
        self.payload = m.payload
        self.qos = m.qos
        self.retain = bool(m.retain)
        self.props = m.properties

    def prop(self, name: str, default: Any = None) -> Any:
        return getattr(self.props, name, default) if self.props is not None else default

    def __repr__(self) -> str:
        return f"Msg({self.topic!r}, {self.payload[:40]!r}, qos={self.qos}, retain={self.retain})"


class PahoClient:
    """paho-mqtt 2.x (MQTTv5) with blocking helpers; every callback lands in a queue."""

    def __init__(self, client_id: str, transport: str = "tcp") -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            transport=transport,
            reconnect_on_failure=False,
        )
        self.port = 0
        self.messages: queue.Queue[Msg] = queue.Queue()
        self.connack: queue.Queue[tuple[int, Any, bool]] = queue.Queue()
        self.subacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.disconnects: queue.Queue[int] = queue.Queue()
        self._acked = threading.Condition()
        c = self.client
        c.on_connect = self._on_connect
        c.on_message = lambda _c, _u, m: self.messages.put(Msg(m))
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        c.on_disconnect = self._on_disconnect
        self.connected_props: Any = None

    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: Any, properties: Any) -> None:
        self.connack.put((rc.value, properties, bool(flags.session_present)))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        with self._acked:
            self.subacks[mid] = [c.value for c in codes]
            self._acked.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._acked:
            self.pubacks[mid] = rc.value
            self._acked.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, rc: Any, _p: Any) -> None:
        self.disconnects.put(rc.value)

    def connect(
        self,
        *,
        keepalive: int = 60,
        clean_start: bool = True,
        session_expiry: int | None = None,
        host: str = "localhost",
        properties: Properties | None = None,
        expect: int | None = 0,
    ) -> int:
        p = properties
        if session_expiry is not None:
            p = p or Properties(PacketTypes.CONNECT)
            p.SessionExpiryInterval = session_expiry
        self.client.connect(host, self.port, keepalive, clean_start=clean_start, properties=p)
        self.client.loop_start()
        rc, self.connected_props, self.session_present = self.connack.get(timeout=TIMEOUT)
        if expect is not None:
            assert rc == expect, f"CONNACK 0x{rc:02X}, expected 0x{expect:02X}"
        return rc

    def subscribe(
        self,
        *filters: str | tuple[str, int],
        props: Properties | None = None,
        qos: int = 1,
        **options: Any,
    ) -> list[int]:
        subs = []
        for f in filters:
            if isinstance(f, tuple):
                subs.append((f[0], paho.SubscribeOptions(qos=f[1], **options)))
            else:
                subs.append((f, paho.SubscribeOptions(qos=qos, **options)))
        rc, mid = self.client.subscribe(subs, properties=props)
        assert rc == 0, rc
        return self._wait(self.subacks, mid)

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 1,
        retain: bool = False,
        props: Properties | None = None,
    ) -> int | None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if qos == 0:
            return None
        return self._wait(self.pubacks, info.mid)

    def _wait(self, table: dict[int, Any], mid: int) -> Any:
        deadline = time.monotonic() + TIMEOUT
        with self._acked:
            while mid not in table:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no acknowledgement for message id {mid}")
                self._acked.wait(left)
            return table.pop(mid)

    def get(self, timeout: float = TIMEOUT) -> Msg:
        return self.messages.get(timeout=timeout)

    def nothing(self, wait: float = 0.3) -> None:
        """Assert that no message arrives within ``wait`` seconds."""
        with contextlib.suppress(queue.Empty):
            m = self.messages.get(timeout=wait)
            raise AssertionError(f"unexpected message {m}")

    def disconnected(self, timeout: float = TIMEOUT) -> int:
        """The reason code of the next disconnect (0x80+ from a server DISCONNECT)."""
        return self.disconnects.get(timeout=timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


class RawClient:
    """A blocking MQTT 5 client on a raw socket, using our codec both ways."""

    def __init__(
        self, port: int, ctx: ssl.SSLContext | None = None, server_hostname: str = "localhost"
    ) -> None:
        sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_hostname=server_hostname)
        self.sock = sock
        self.reader = PacketReader(1 << 20)

    def send(self, packet: Any) -> None:
        self.sock.sendall(
            packet if isinstance(packet, (bytes, bytearray)) else codec.encode_bytes(packet)
        )

    def recv(self, timeout: float = TIMEOUT) -> Any:
        """The next packet, or None at end of stream."""
        deadline = time.monotonic() + timeout
        while True:
            first = self.reader.next()
            if first >= 0:
                r = self.reader.reader.reset(
                    self.reader.buf, self.reader.body_start, self.reader.body_end
                )
                return codec.decode_body(first, r)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no packet")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return None
            if not data:
                return None
            self.reader.feed(data)

    def recv_type(self, ptype: int, timeout: float = TIMEOUT) -> Any:
        """Skip packets until one of ``ptype`` (PUBLISHes of lifecycle events etc.)."""
        while True:
            p = self.recv(timeout)
            if p is None or p.type == ptype:
                return p

    def connect(self, client_id: str, **kwargs: Any) -> Any:
        self.send(codec.Connect(client_id, **kwargs))
        return self.recv()

    def closed(self, timeout: float = TIMEOUT) -> bool:
        """True once the server has closed the connection (packets before it skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.recv(deadline - time.monotonic()) is None:
                    return True
            except TimeoutError:
                return False
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def wait_for(predicate: Any, timeout: float = TIMEOUT, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


class SdkClient:
    """The official AWS IoT Device SDK's MQTT 5 client (awsiotsdk / awscrt) over mutual
    TLS to ``localhost`` (SNI), with its lifecycle events and messages in queues.

    awsiotsdk is a pinned dev dependency: the import fails (it does not skip) when it is
    missing."""

    def __init__(
        self,
        tw: TwinThread,
        client_id: str,
        *,
        thing: str | None = None,
        start: bool = True,
        **builder_kwargs: Any,
    ) -> None:
        from awsiot import mqtt5_client_builder

        creds = tw.thing(thing or client_id)
        self.connected = threading.Event()
        self.failures: queue.Queue[Any] = queue.Queue()
        self.stopped: queue.Queue[Any] = queue.Queue()
        self.messages: queue.Queue[Any] = queue.Queue()
        builder_kwargs.setdefault("endpoint", "localhost")
        builder_kwargs.setdefault("port", tw.port("mtls"))
        self.client = mqtt5_client_builder.mtls_from_path(
            cert_filepath=str(creds.cert_path),
            pri_key_filepath=str(creds.key_path),
            ca_filepath=tw.ca,
            client_id=client_id,
            on_lifecycle_connection_success=lambda _d: self.connected.set(),
            on_lifecycle_connection_failure=self.failures.put,
            on_lifecycle_disconnection=self.stopped.put,
            on_publish_received=lambda d: self.messages.put(d.publish_packet),
            **builder_kwargs,
        )
        if start:
            self.client.start()

    def wait_connected(self, timeout: float = TIMEOUT) -> None:
        if not self.connected.wait(timeout):
            failure = None
            with contextlib.suppress(queue.Empty):
                failure = self.failures.get_nowait()
            raise AssertionError(f"the SDK did not connect: {failure and failure.exception}")

    def connack_refusal(self, timeout: float = TIMEOUT) -> int:
        """The CONNACK reason code of the first failed connection attempt."""
        data = self.failures.get(timeout=timeout)
        assert data.connack_packet is not None, data.exception
        return int(data.connack_packet.reason_code)

    def disconnect_reason(self, timeout: float = TIMEOUT) -> int | None:
        """The reason code of the server's DISCONNECT that ended the connection (None if
        the connection just closed)."""
        data = self.stopped.get(timeout=timeout)
        packet = data.disconnect_packet
        return int(packet.reason_code) if packet is not None else None

    def subscribe(self, *filters: str, qos: int = 1) -> list[int]:
        from awscrt import mqtt5

        packet = mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(f, mqtt5.QoS(qos)) for f in filters]
        )
        suback = self.client.subscribe(packet).result(TIMEOUT)
        return [int(c) for c in suback.reason_codes]

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 1) -> int | None:
        from awscrt import mqtt5

        result = self.client.publish(
            mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS(qos))
        ).result(TIMEOUT)
        if qos == 0:
            return None
        return int(result.puback.reason_code)

    def get(self, timeout: float = TIMEOUT) -> Any:
        return self.messages.get(timeout=timeout)

    def nothing(self, wait: float = 0.5) -> None:
        """Assert that no message arrives within ``wait`` seconds."""
        with contextlib.suppress(queue.Empty):
            m = self.messages.get(timeout=wait)
            raise AssertionError(f"unexpected message on {m.topic}: {m.payload!r}")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop()
