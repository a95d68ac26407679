"""One client connection (see :mod:`iot_twin.server` for the theory of operation).

:class:`Connection` is the task that reads and frames the client's bytes, the corked
output, and the dispatch of each packet to the part that owns its concern:

================  =====================================================================
``handshake``     :class:`Handshake`: CONNECT to CONNACK (client id, quotas, will,
                  authentication, iot:Connect, the session), and the authorizer's timers
``pubsub``        :class:`PubSub`: the client's PUBLISH (aliases, throttles,
                  iot:Publish), SUBSCRIBE with retained messages, UNSUBSCRIBE
``reserved``      :class:`ReservedTopics`: shadow, jobs and provisioning requests
``delivery``      :class:`Delivery`: PUBLISH to the client: iot:Receive, the in-flight
                  window, the session's queue, PUBACK, resuming a session
``lifetime``      :class:`Lifetime`: keep-alive, the client's DISCONNECT, and the end
                  (will, session expiry, lifecycle event)
================  =====================================================================

The parts share the connection's state (client id, session, principal, flags) through
the :class:`Connection` they are given; none of them reads the socket.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5._server_codec import (
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBLISH,
    SUBSCRIBE,
    UNSUBSCRIBE,
    PacketReader,
    ProtocolError,
)
from mqtt_v5.errors import UsageError

from .delivery import Delivery
from .handshake import Handshake
from .identity import ConnInfo, Principal
from .lifetime import Lifetime
from .limits import TokenBucket
from .pubsub import PubSub
from .reserved import ReservedTopics
from .session import Session
from .streams import Output, Stream

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("iot_twin")


class _Closed(Exception):
    """Internal: stop processing this connection's input."""


class Connection:
    """One client connection: reads, frames and dispatches its packets; writes its output."""

    def __init__(self, broker: Broker, stream: Stream, info: ConnInfo) -> None:
        self.broker = broker
        self.stream = stream
        self.info = info
        self.loop = asyncio.get_running_loop()
        self.reader: PacketReader | None = None
        self.client_id = ""
        self.session: Session | None = None
        self.principal: Principal | None = None
        self.session_identifier = uuid.uuid4().hex
        self.problem_info = True
        self.connected = False
        self.closing = False
        self.connected_at = 0.0
        self.last_rx = 0.0
        self.out = Output(stream, self.loop)
        self._byte_quota = TokenBucket(broker.limits.throughput_bytes_per_s, self.loop.time())
        self.handshake = Handshake(self)
        self.pubsub = PubSub(self)
        self.reserved = ReservedTopics(self)
        self.delivery = Delivery(self)
        self.lifetime = Lifetime(self)

    def __repr__(self) -> str:
        return f"<Connection {self.client_id or '?'} {self.info.listener}>"

    # --- the task -------------------------------------------------------------------------

    async def run(self) -> None:
        self.last_rx = self.loop.time()
        self.handshake.arm_timeout()
        try:
            while not self.closing:
                data = await self.stream.read()
                if not data:
                    break
                await self._received(data)
                # §0 [QUOTAS]: over 512 KiB/s the connection's traffic is delayed: stop
                # reading until the quota has room again.
                debt_s = self._byte_quota.take(len(data), self.loop.time())
                if debt_s and not self.closing:
                    await asyncio.sleep(debt_s)
                if self.out.buffered() > self.broker.limits.write_high_water:
                    self.out.flush()
                    await self.stream.drain()
        except _Closed:
            pass
        except (ConnectionError, TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            log.debug("%r: connection lost: %s", self, e)
        except asyncio.CancelledError:
            self.disconnect(0x8B, "server shutting down", lifecycle="SERVER_INITIATED_DISCONNECT")
            raise
        except Exception:
            log.exception("%r: internal error", self)
            self.disconnect(0x80, "internal error", lifecycle="SERVER_ERROR")
        finally:
            self.lifetime.end()
            self.out.flush()
            self.stream.close()

    async def _received(self, data: bytes) -> None:
        reader = self.reader
        if reader is None:
            reader = self.reader = PacketReader(self.broker.limits.maximum_packet_size)
        view = memoryview(data)
        off = 0
        total = len(data)
        while off < total and not self.closing:
            n = reader.feed(view[off:])
            off += n
            try:
                while not self.closing:
                    first = reader.next()
                    if first < 0:
                        break
                    if not self.connected:
                        await self.handshake.first_packet(first, reader)
                        if self.closing:
                            raise _Closed()
                        continue
                    r = reader.reader.reset(reader.buf, reader.body_start, reader.body_end)
                    self.last_rx = self.loop.time()
                    self._packet(codec.decode_body(first, r))
                if n == 0 and not self.closing:
                    raise ProtocolError("receive buffer full", 0x81)  # cannot happen: see codec
            except ProtocolError as e:
                code = e.reason_code or 0x81
                if self.connected:
                    self.disconnect(
                        code, e.args[0] if e.args else "protocol error", lifecycle="CLIENT_ERROR"
                    )
                else:
                    self.handshake.refuse(
                        code if codec.reason_allowed(codec.CONNACK, code) else 0x81,
                        e.args[0] if e.args else "malformed CONNECT",
                    )
                raise _Closed() from None

    def _packet(self, pkt: Any) -> None:
        t = pkt.type
        if t == PUBLISH:
            self.pubsub.on_publish(pkt)
        elif t == PUBACK:
            self.delivery.on_puback(pkt)
        elif t == SUBSCRIBE:
            self.pubsub.on_subscribe(pkt)
        elif t == UNSUBSCRIBE:
            self.pubsub.on_unsubscribe(pkt)
        elif t == PINGREQ:
            self.out.send(codec.PINGRESP_BYTES)
        elif t == DISCONNECT:
            self.lifetime.on_disconnect(pkt)
        elif t == CONNECT:
            self.disconnect(0x82, "second CONNECT", "CLIENT_ERROR")  # [MQTT-3.1.0-2]
        elif t in (codec.PUBREC, codec.PUBREL, codec.PUBCOMP):
            # §1.6: no QoS 2 flows on AWS.
            self.disconnect(0x82, f"{codec.PACKET_NAMES[t]} is not supported", "CLIENT_ERROR")
        elif t == codec.AUTH:
            # §1.6: no AUTH packet (enhanced authentication) on AWS.
            self.disconnect(0x82, "AUTH is not supported", "CLIENT_ERROR")
        else:
            self.disconnect(
                0x82, f"a client does not send {codec.PACKET_NAMES[t]}", "CLIENT_ERROR"
            )

    # --- output and closing ---------------------------------------------------------------

    def write(self, n: int) -> None:
        """Queue the first ``n`` bytes of the broker's encode buffer."""
        self.out.send(bytes(self.broker.buf[:n]))

    def reason(self, text: str | None) -> dict[int, Any] | None:
        """A Reason String property, unless the client asked for no problem information."""
        if not text or not self.problem_info:
            return None
        return {P.PROP_REASON_STRING: text}

    def disconnect(
        self,
        reason_code: int,
        reason: str | None = None,
        lifecycle: str = "SERVER_INITIATED_DISCONNECT",
    ) -> None:
        """Send DISCONNECT ``reason_code`` and close; the will is published (not a client
        DISCONNECT). Safe to call from any task or timer callback."""
        if self.closing:
            return
        self.closing = True
        self.lifetime.end_reason = lifecycle
        if self.connected:
            props = {P.PROP_REASON_STRING: reason} if reason else None
            try:
                self.write(codec.encode_disconnect(self.broker.buf, reason_code, props))
            except UsageError:
                self.write(codec.encode_disconnect(self.broker.buf, 0x80))
            log.info(
                "%s: disconnected by the twin: 0x%02X %s",
                self.client_id,
                reason_code,
                reason or "",
            )
        self.out.flush()
        self.stream.close()
        if self.connected:
            self.lifetime.end()

    def forget_authorisations(self) -> None:
        """Policies changed: judge every topic again on its next use."""
        self.delivery.forget_authorisations()
        self.pubsub.forget_authorisations()
