"""A scripted MQTT 5 server for the portable client tests (CPython AND MicroPython).

Written with our own codec, it talks to an ``MqttClient`` over ``memory_pipe()`` in the
same event loop. ``server.connect`` is the async factory to give ``client.connect``: each
call opens a new pipe and serves its far end, so reconnects work.

What it does by itself (each switch is an attribute a test may change at any time):

* CONNECT -> CONNACK with ``connack_props`` and ``session_present``;
* SUBSCRIBE -> SUBACK granting the requested QoS (``suback_codes`` overrides);
* PUBLISH QoS 1 -> PUBACK, QoS 2 -> PUBREC, PUBREL -> PUBCOMP (``auto_ack``); with ``echo``
  a PUBLISH matching one of the connection's subscriptions comes back to the client
  (QoS 0, packet ids of its own for QoS 1/2 are the test's business: echo sends QoS 0);
* PINGREQ -> PINGRESP (``pings`` counts them);
* DISCONNECT from the client is recorded and ends the connection.

Every packet received is kept, decoded, in ``received`` (``record = False`` turns that off:
the benchmark's steady state then allocates nothing here beyond the pipe's own costs).
Packets the server sends are ``send(packet)`` (a codec packet object) or ``send_raw(bytes)``.
``hang_up()`` closes the current connection as a network failure would.
"""

import asyncio

from mqtt_v5 import _server_codec as C
from mqtt_v5.memory import memory_pipe
from mqtt_v5.topic import matches


class ScriptedServer:
    def __init__(self, connack_props=None, session_present=False, capacity=4096,
                 max_packet_size=8192):
        self.connack_props = connack_props or {}
        self.session_present = session_present
        self.connack_code = 0
        self.capacity = capacity
        self.auto_ack = True
        self.echo = True
        self.record = True
        self.suback_codes = None
        self.received = []
        self.connects = []
        self.subs = []  # (filter bytes, qos) of the current connection
        self.pings = 0
        self.handled = 0  # packets received (also while not recording)
        self.connections = 0
        self.conn = None  # the server end of the current pipe
        self.task = None
        self.changed = asyncio.Event()
        self._reader = C.PacketReader(max_packet_size)
        self._view = C.PublishView()
        self._ack = C.AckView()
        self._out = bytearray(max_packet_size)
        self._ack_out = bytearray(8)  # the ack being sent (see _ack_bytes)
        self._ack_views = {}  # length -> view of _ack_out

    # -------------------------------------------------------------- connections --

    async def connect(self):
        """The client's transport factory: a new pipe, served from the far end."""
        a, b = memory_pipe(self.capacity)
        if self.task is not None:
            await self.stop()
        self.conn = b
        self.connections += 1
        self.subs = []
        self._reader.reset()
        self.task = asyncio.create_task(self._serve(b))
        return a

    async def hang_up(self):
        """Close the current connection without DISCONNECT (a network failure)."""
        if self.conn is not None:
            await self.conn.close()

    async def stop(self):
        t = self.task
        self.task = None
        if t is not None:
            t.cancel()
            try:
                await t
            except BaseException:
                pass
        if self.conn is not None:
            await self.conn.close()

    # ------------------------------------------------------------------ sending --

    async def send(self, packet):
        await self.conn.write(C.encode_bytes(packet))

    async def send_raw(self, data):
        await self.conn.write(data)

    async def _send_ack(self, t, pid):
        await self.conn.write(self._ack_bytes(t, pid))

    def _ack_bytes(self, t, pid):
        # Encoded into one small buffer: the pipe copies it before the next ack is
        # encoded (a write that must wait for room holds this task until it is done),
        # so the server allocates nothing per ack, whatever the packet id.
        n = C.encode_ack(self._ack_out, t, pid)
        v = self._ack_views.get(n)
        if v is None:
            v = self._ack_views[n] = memoryview(self._ack_out)[:n]
        return v

    # ------------------------------------------------------------------ waiting --

    async def wait_for(self, cond, timeout_s=5):
        """Wait until ``cond()`` is true (re-checked whenever a packet arrives)."""

        async def loop():
            while not cond():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout_s)

    def of_type(self, t):
        return [p for p in self.received if p.type == t]

    # ------------------------------------------------------------------ serving --

    async def _serve(self, conn):
        rd = self._reader
        try:
            while True:
                n = await conn.readinto(rd.free())
                if not n:
                    return
                rd.wrote(n)
                while True:
                    first = rd.next()
                    if first < 0:
                        break
                    self.handled += 1
                    r = rd.reader.reset(rd.buf, rd.body_start, rd.body_end)
                    t = first >> 4
                    if self.record or not (t == C.PUBLISH or C.PUBACK <= t <= C.PUBCOMP):
                        if await self._handle(conn, first, r):
                            return
                    else:
                        # The hot path, inline: no coroutine per packet, no allocation
                        # once the acks are cached (the benchmark's steady state).
                        if t == C.PUBLISH:
                            qos = C.decode_publish_into(self._view, first, r).qos
                            pid = self._view.packet_id
                            t = C.PUBACK if qos == 1 else (C.PUBREC if qos == 2 else 0)
                        else:
                            pid = C.decode_ack_into(self._ack, first, r).packet_id
                            t = C.PUBCOMP if t == C.PUBREL else (
                                C.PUBREL if t == C.PUBREC else 0)
                        if t and self.auto_ack:
                            await conn.write(self._ack_bytes(t, pid))
                    self.changed.set()
        finally:
            self.changed.set()

    def serve_now(self):
        """Handle, synchronously, what the client wrote so far (PUBLISH and acks
        only), answering straight into the client's ring: the benchmark's server,
        with no task and no coroutine (the serving task must be stopped first).
        Uses the memory pipe's plain methods ``_take``/``_put``."""
        conn = self.conn
        rd = self._reader
        n = conn._take(rd.free())  # (one small memoryview: the benchmark measures it)
        if n > 0:
            rd.wrote(n)
        while True:
            first = rd.next()
            if first < 0:
                return
            self.handled += 1
            r = rd.reader.reset(rd.buf, rd.body_start, rd.body_end)
            t = first >> 4
            if t == C.PUBLISH:
                qos = C.decode_publish_into(self._view, first, r).qos
                pid = self._view.packet_id
                t = C.PUBACK if qos == 1 else (C.PUBREC if qos == 2 else 0)
            else:
                pid = C.decode_ack_into(self._ack, first, r).packet_id
                t = C.PUBCOMP if t == C.PUBREL else (C.PUBREL if t == C.PUBREC else 0)
            if t and self.auto_ack:
                conn._off = 0
                conn._put(self._ack_bytes(t, pid))

    async def _handle(self, conn, first, r):
        """One packet (cold path: decoded and recorded); True when the connection ends."""
        t = first >> 4
        pkt = C.decode_body(first, r)
        self.received.append(pkt)
        if t == C.CONNECT:
            self.connects.append(pkt)
            await self.send(C.Connack(self.connack_code, self.session_present,
                                      dict(self.connack_props)))
        elif t == C.SUBSCRIBE:
            codes = []
            for f, opts in pkt.subscriptions:
                fb = f.encode() if isinstance(f, str) else f
                self.subs = [s for s in self.subs if s[0] != fb]
                self.subs.append((fb, opts & 3))
                codes.append(opts & 3)
            await self.send(C.SubAck(C.SUBACK, pkt.packet_id, self.suback_codes or codes))
        elif t == C.UNSUBSCRIBE:
            await self.send(C.SubAck(C.UNSUBACK, pkt.packet_id, [0] * len(pkt.filters)))
        elif t == C.PUBLISH:
            if pkt.qos and self.auto_ack:
                await self._send_ack(C.PUBACK if pkt.qos == 1 else C.PUBREC, pkt.packet_id)
            if self.echo:
                tb = pkt.topic.encode()
                for f, _ in self.subs:
                    if matches(f, 0, len(f), tb, 0, len(tb)):
                        await self.send(C.Publish(pkt.topic, pkt.payload))
                        break
        elif t == C.PUBREL and self.auto_ack:
            await self._send_ack(C.PUBCOMP, pkt.packet_id)
        elif t == C.PUBREC and self.auto_ack:
            await self._send_ack(C.PUBREL, pkt.packet_id)
        elif t == C.PINGREQ:
            self.pings += 1
            await conn.write(C.PINGRESP_BYTES)
        elif t == C.DISCONNECT:
            await conn.close()
            return True
        return False
