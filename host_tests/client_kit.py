"""Helpers for the MqttClient tests (host_tests/test_client_*.py), CPython only.

* ``Paho``: paho-mqtt 2.x (MQTT 5) as an independent second party, running its own network
  thread; ``await paho.wait_messages(n)`` waits (with a timeout) without blocking the loop.
* ``Tap``: wraps a transport and frames every packet in both directions, so a test can say
  exactly what the client put on the wire (``tap.sent``/``tap.received``: (type, first byte,
  whole packet bytes)). ``tapped(url)`` is a connect factory that keeps the taps.
* ``Recorder``: collects connection events and lets a test wait for one.
* ``wait_until(predicate)``: waits for a condition, polling the event loop briefly.
"""

from __future__ import annotations

import asyncio
import threading
import time

from paho.mqtt import client as pmqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqtt_v5 import _server_codec as codec
from mqtt_v5.transport import open_connection

HOST = "127.0.0.1"
TIMEOUT = 10.0

_ids = iter(range(1, 1 << 30))


def unique(prefix: str) -> str:
    """A name (client id / topic root) unique within this test run."""
    return f"{prefix}-{int(time.monotonic() * 1000) % 100000}-{next(_ids)}"


async def wait_until(predicate, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(0.005)


# ---------------------------------------------------------------------------------- paho --


class Paho:
    """A paho-mqtt 2.x MQTT 5 client on its own thread."""

    def __init__(self, port, client_id=None, *, host=HOST, clean_start=True,
                 session_expiry=0, username=None, password=None):
        self.client_id = client_id or unique("paho")
        self.host, self.port = host, port
        self.clean_start, self.session_expiry = clean_start, session_expiry
        self.c = pmqtt.Client(pmqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                              protocol=pmqtt.MQTTv5)
        if username is not None:
            self.c.username_pw_set(username, password)
        self.cond = threading.Condition()
        self.messages: list[pmqtt.MQTTMessage] = []
        self.connects = 0
        self.session_present = None
        self.subacks: dict[int, list] = {}
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe

    # callbacks (paho's thread)
    def _on_connect(self, client, userdata, flags, rc, props):
        with self.cond:
            self.connects += 1
            self.session_present = flags.session_present
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, codes, props):
        with self.cond:
            self.subacks[mid] = [c.value for c in codes]
            self.cond.notify_all()

    def _wait(self, pred, timeout, what):
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise AssertionError(f"paho {self.client_id}: timed out waiting for {what}")

    def connect(self, will=None):
        props = Properties(PacketTypes.CONNECT)
        if self.session_expiry:
            props.SessionExpiryInterval = self.session_expiry
        n = self.connects
        self.c.connect(self.host, self.port, keepalive=30, clean_start=self.clean_start,
                       properties=props)
        self.c.loop_start()
        self._wait(lambda: self.connects > n, TIMEOUT, "CONNACK")
        return self

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()

    def subscribe(self, topic, qos=1, **opts):
        rc, mid = self.c.subscribe(topic, options=SubscribeOptions(qos=qos, **opts))
        assert rc == 0
        self._wait(lambda: mid in self.subacks, TIMEOUT, "SUBACK")
        return self.subacks[mid]

    def publish(self, topic, payload, qos=0, retain=False, **props):
        p = None
        if props:
            p = Properties(PacketTypes.PUBLISH)
            for k, v in props.items():
                setattr(p, k, v)
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=p)
        if qos:
            info.wait_for_publish(TIMEOUT)
        return info

    async def wait_messages(self, n, timeout=TIMEOUT, topic=None):
        """Wait until at least ``n`` messages (on ``topic``, if given) arrived; returns them."""
        def count():
            return len(self.received(topic))

        await asyncio.to_thread(self._wait, lambda: count() >= n, timeout,
                                f"{n} messages (have {count()})")
        return self.received(topic)

    async def wait_for(self, predicate, timeout=TIMEOUT, what="condition"):
        """Wait until ``predicate(messages)`` is true (checked on each arrival)."""
        await asyncio.to_thread(self._wait, lambda: predicate(self.messages), timeout, what)
        return self.received()

    def received(self, topic=None):
        with self.cond:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def payloads(self, topic=None):
        return [m.payload for m in self.received(topic)]


# ----------------------------------------------------------------------------------- tap --


class _Framer:
    """Frames MQTT packets out of a byte stream (for observation only)."""

    def __init__(self):
        self.buf = bytearray()
        self.packets: list[bytes] = []

    def feed(self, data):
        self.buf += data
        while len(self.buf) >= 2:
            value, shift, p = 0, 0, 1
            while True:
                if p >= len(self.buf):
                    return
                b = self.buf[p]
                p += 1
                value |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80 or p > 4:
                    break
            if len(self.buf) < p + value:
                return
            self.packets.append(bytes(self.buf[: p + value]))
            del self.buf[: p + value]


class Tap:
    """A transport wrapper that records both directions, packet by packet."""

    def __init__(self, inner):
        self.inner = inner
        self._out = _Framer()
        self._in = _Framer()
        self.writes = 0
        self.on_sent = None  # optional callback(packet_bytes)
        self.on_received = None

    async def readinto(self, buf):
        n = await self.inner.readinto(buf)
        if n:
            before = len(self._in.packets)
            self._in.feed(bytes(memoryview(buf)[:n]))
            if self.on_received is not None:
                for pkt in self._in.packets[before:]:
                    self.on_received(pkt)
        return n

    async def write(self, buf):
        before = len(self._out.packets)
        self._out.feed(bytes(buf))
        self.writes += 1
        if self.on_sent is not None:
            for pkt in self._out.packets[before:]:
                self.on_sent(pkt)
        await self.inner.write(buf)

    async def close(self):
        await self.inner.close()

    @property
    def sent(self):
        return self._out.packets

    @property
    def received(self):
        return self._in.packets

    def sent_of(self, ptype):
        return [codec.decode(p) for p in self.sent if p[0] >> 4 == ptype]

    def received_of(self, ptype):
        return [codec.decode(p) for p in self.received if p[0] >> 4 == ptype]


class tapped:
    """``client.connect(tapped(url))``: every connection is opened by ``open_connection`` and
    wrapped in a Tap; ``.taps`` lists them, ``.tap`` is the latest."""

    def __init__(self, url, tls=None, wrap=None):
        self.url = url
        self.tls = tls
        self.taps: list[Tap] = []
        self.wrap = wrap

    async def __call__(self):
        t = Tap(await open_connection(self.url, tls=self.tls, timeout_s=5))
        self.taps.append(t)
        return t

    @property
    def tap(self):
        return self.taps[-1]


def url(broker, listener="plain"):
    return f"mqtt://{broker.host}:{broker.ports[listener]}"


# ------------------------------------------------------------------------------ events --


class Recorder:
    """``client.on_connection_event(rec)``; ``await rec.wait(Kind, n)``."""

    def __init__(self):
        self.events = []
        self._changed = asyncio.Event()

    def __call__(self, event):
        self.events.append(event)
        self._changed.set()

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]

    async def wait(self, kind, n=1, timeout=TIMEOUT):
        async def go():
            while len(self.of(kind)) < n:
                self._changed.clear()
                await self._changed.wait()
            return self.of(kind)[n - 1]

        try:
            return await asyncio.wait_for(go(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"timed out waiting for {n} {kind.__name__} events; got {self.events!r}"
            ) from None

    def kinds(self):
        return [type(e).__name__ for e in self.events]
