"""One client connection: framing, the CONNECT handshake, and every packet after it
(see :mod:`iot_twin.server` for the theory of operation).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import time
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
    Connect,
    PacketReader,
    ProtocolError,
)
from mqtt_v5.errors import UsageError

from . import topics
from .identity import ConnInfo, Principal
from .limits import MAXIMUM_QOS, RC_SUBSCRIPTION_QUOTA, RECEIVE_MAXIMUM, TokenBucket
from .routing import Subscription
from .session import Message, Session, clamp_expiry, mono_now
from .streams import Stream

if TYPE_CHECKING:
    from .broker import Broker

Responses = list[tuple[str, bytes]]

log = logging.getLogger("iot_twin")


class _Closed(Exception):
    """Internal: stop processing this connection's input."""


class Connection:
    """One client connection: framing, the CONNECT handshake, and every packet after it."""

    def __init__(self, broker: Broker, stream: Stream, info: ConnInfo) -> None:
        self.broker = broker
        self.stream = stream
        self.info = info
        self.reader: PacketReader | None = None
        self.client_id = ""
        self.session: Session | None = None
        self.principal: Principal | None = None
        self.session_identifier = uuid.uuid4().hex
        self.keep_alive = 0
        self.receive_max = RECEIVE_MAXIMUM
        self.max_packet_out = codec.VBI_MAX + 5
        self.problem_info = True
        self.aliases: dict[int, str] = {}
        self.connected = False
        self.closing = False
        self.ended = False
        self.clean_exit = False  # DISCONNECT 0x00 from the client: no will (§1.10)
        self.end_reason: str | None = None  # lifecycle disconnectReason
        self.connected_at = 0.0
        self.last_rx = 0.0
        self._ka_handle: asyncio.TimerHandle | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._receive_cache: dict[str, bool] = {}
        self._publish_cache: dict[str, bool] = {}
        # Output is corked: packets queued during one loop iteration leave in one write
        # (one syscall, one TLS record) instead of one each.
        self.loop = asyncio.get_running_loop()
        lim = broker.limits
        now = self.loop.time()
        self._publish_quota = TokenBucket(lim.publishes_per_s, now)
        self._byte_quota = TokenBucket(lim.throughput_bytes_per_s, now)
        self._out: list[bytes] | None = None
        self._out_bytes = 0

    def __repr__(self) -> str:
        return f"<Connection {self.client_id or '?'} {self.info.listener}>"

    # --- the task -------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.last_rx = loop.time()
        self._timers.append(
            loop.call_later(self.broker.limits.connect_timeout_s, self._connect_timeout)
        )
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
                if self._buffered() > self.broker.limits.write_high_water:
                    self._flush()
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
            self._end()
            self._flush()
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
                        await self._first_packet(first, reader)
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
                    self._refuse(
                        code if codec.reason_allowed(codec.CONNACK, code) else 0x81,
                        e.args[0] if e.args else "malformed CONNECT",
                    )
                raise _Closed() from None

    def _connect_timeout(self) -> None:
        if not self.connected and not self.closing:
            log.info(
                "%s: no CONNECT within %.1f s, closing",
                self.info.peer,
                self.broker.limits.connect_timeout_s,
            )
            self.closing = True
            self.stream.abort()

    # --- output ---------------------------------------------------------------------------

    def _write(self, n: int) -> None:
        self._send(bytes(self.broker.buf[:n]))

    def _send(self, data: bytes) -> None:
        out = self._out
        if out is None:
            self._out = [data]
            self._out_bytes = len(data)
            self.loop.call_soon(self._flush)
        else:
            out.append(data)
            self._out_bytes += len(data)

    def _flush(self) -> None:
        out = self._out
        if out is None:
            return
        self._out = None
        self._out_bytes = 0
        self.stream.write(out[0] if len(out) == 1 else b"".join(out))

    def _buffered(self) -> int:
        return self.stream.buffered() + self._out_bytes

    def _reason(self, text: str | None) -> dict[int, Any] | None:
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
        self.end_reason = lifecycle
        if self.connected:
            props = {P.PROP_REASON_STRING: reason} if reason else None
            try:
                self._write(codec.encode_disconnect(self.broker.buf, reason_code, props))
            except UsageError:
                self._write(codec.encode_disconnect(self.broker.buf, 0x80))
            log.info(
                "%s: disconnected by the twin: 0x%02X %s",
                self.client_id,
                reason_code,
                reason or "",
            )
        self._flush()
        self.stream.close()
        if self.connected:
            self._end()

    def _refuse(self, reason_code: int, reason: str) -> None:
        """CONNACK with a failure code, then close (§1.8 lists AWS's CONNACK codes)."""
        self.closing = True
        props = {P.PROP_REASON_STRING: reason} if reason else None
        self._write(codec.encode_connack(self.broker.buf, reason_code, False, props))
        self._flush()
        self.stream.close()
        log.info(
            "%s: CONNECT refused: 0x%02X %s", self.client_id or self.info.peer, reason_code, reason
        )

    def send_message(self, msg: Message, qos: int, retain: bool) -> int:
        """Deliver to this live connection (QoS 1 beyond the in-flight window is queued)."""
        session = self.session
        if session is None or self.closing:
            return 0
        if not qos:
            if self._buffered() > self.broker.limits.write_high_water:
                return 0  # slow consumer: QoS 0 is "zero or more times" (§1.10)
            return 1 if self._send_publish(msg, 0, 0, retain) else 0
        if len(session.inflight) < self.receive_max and not session.pending:
            self._send_qos1(msg, retain)
        else:
            if len(session.pending) >= self.broker.limits.max_queued_messages:
                return 0
            session.pending.append((msg, retain))
        return 1

    def _send_qos1(self, msg: Message, retain: bool) -> None:
        session = self.session
        if session is None:
            return
        pid = session.new_pid()
        if self._send_publish(msg, 1, pid, retain):
            session.inflight[pid] = (msg, retain, self.broker.shadow_begin(msg))

    def _send_publish(self, msg: Message, qos: int, pid: int, retain: bool) -> bool:
        now = mono_now()
        if msg.expired(now):
            return False
        buf = self.broker.buf
        payload = msg.payload
        try:
            hlen = codec.encode_publish_header(
                buf, msg.topic_b, len(payload), qos, pid, retain, False, msg.props_at(now)
            )
        except UsageError as e:
            # Never let one message that cannot be re-encoded hurt the publisher's or the
            # receiver's connection (the decoders are as strict as the encoders, so this
            # would be a twin bug).
            log.warning("%s: PUBLISH on %s not delivered: %s", self.client_id, msg.topic, e)
            return False
        if hlen + len(payload) > self.max_packet_out:
            # [MQTT-3.1.2-25] never exceed the client's Maximum Packet Size: drop it.
            log.debug(
                "%s: %d-byte PUBLISH on %s exceeds its Maximum Packet Size, dropped",
                self.client_id,
                hlen + len(payload),
                msg.topic,
            )
            return False
        self._send(bytes(buf[:hlen]))
        if payload:
            self._send(payload)
        self.broker.stats["publishes_out"] += 1
        return True

    def _flush_pending(self) -> None:
        session = self.session
        if session is None:
            return
        now = mono_now()
        while session.pending and len(session.inflight) < self.receive_max and not self.closing:
            msg, retain = session.pending.popleft()
            if msg.expired(now):
                continue  # §1.6: expired queued messages are dropped
            if not self.may_receive(msg.topic):
                continue  # queued while offline or under other policies: judged now
            self._send_qos1(msg, retain)

    def forget_authorisations(self) -> None:
        self._receive_cache.clear()
        self._publish_cache.clear()

    def may_receive(self, topic: str) -> bool:
        cache = self._receive_cache
        ok = cache.get(topic)
        if ok is None:
            ok = self.principal is None or self.principal.allowed(
                "iot:Receive", topic, self.client_id
            )
            if len(cache) > 1024:
                cache.clear()
            cache[topic] = ok
        return ok

    def _may_publish(self, topic: str) -> bool:
        cache = self._publish_cache
        ok = cache.get(topic)
        if ok is None:
            ok = self.principal is None or self.principal.allowed(
                "iot:Publish", topic, self.client_id
            )
            if len(cache) > 1024:
                cache.clear()
            cache[topic] = ok
        return ok

    # --- CONNECT --------------------------------------------------------------------------

    async def _first_packet(self, first: int, reader: PacketReader) -> None:
        if first >> 4 != CONNECT:
            # [MQTT-3.1.0-1] the first packet must be CONNECT: close without answering.
            log.info("%s: first packet is not CONNECT, closing", self.info.peer)
            self.closing = True
            self.stream.abort()
            raise _Closed()
        start, end = reader.body_start, reader.body_end
        body = reader.buf
        head = bytes(body[start : min(end, start + 9)])
        if head[:7] == b"\x00\x04MQTT\x04" or head == b"\x00\x06MQIsdp\x03":
            # MQTT 3.1/3.1.1: we speak 5 only. A v3 CONNACK with return code 0x01
            # "unacceptable protocol version" is what a v3 client understands [MQTT-3.1.2-2].
            log.info("%s: MQTT 3 CONNECT refused (the twin speaks MQTT 5 only)", self.info.peer)
            self.closing = True
            self.stream.write(b"\x20\x02\x00\x01")
            self.stream.close()
            raise _Closed()
        r = reader.reader.reset(body, start, end)
        pkt = codec.decode_body(first, r)
        await self._on_connect(pkt)
        if self.closing:
            raise _Closed()

    async def _on_connect(self, pkt: Connect) -> None:
        b = self.broker
        lim = b.limits
        props = pkt.properties
        self.problem_info = props.get(P.PROP_REQUEST_PROBLEM_INFORMATION, 1) == 1
        cid = pkt.client_id
        assigned = None
        if not cid:
            # §1.5 [CRT-MQTT]: AWS assigns $GEN/<uuid> to an empty client id.
            cid = assigned = "$GEN/" + str(uuid.uuid4())
        elif len(cid.encode("utf-8")) > lim.max_client_id_bytes:
            return self._refuse(0x85, f"client id longer than {lim.max_client_id_bytes} bytes")
        elif cid.startswith("$"):
            # §1.5 [QUOTAS-OLD], [CRT-MQTT]: '$' client ids are reserved for AWS.
            return self._refuse(0x85, "client ids starting with '$' are reserved")
        self.client_id = cid
        wait_s = b.connect_quota(cid)
        if wait_s:
            # §1.5 [QUOTAS]: 1 CONNECT per second per client id (see DEVIATIONS).
            if lim.connect_throttle_refuses:
                return self._refuse(0x97, "CONNECT rate quota exceeded for this client id")
            log.info("%s: CONNECT rate quota: CONNACK held %.2f s", cid, wait_s)
            await asyncio.sleep(wait_s)
            if self.closing:
                return None
        will = pkt.will
        if will is not None:
            if will.qos > MAXIMUM_QOS:
                return self._refuse(0x9B, "QoS 2 is not supported in the will")  # §1.5, §1.9
            problem = topics.topic_name_problem(will.topic)
            if problem is None and will.topic.startswith("$"):
                problem = "a will cannot go to a reserved topic"
            if problem:
                return self._refuse(0x90, "will topic: " + problem)  # §1.8
        try:
            result = b.authenticate(self.info, pkt)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            log.exception("%s: authentication failed with an error", cid)
            result = 0x80
        if self.closing:
            return None
        if isinstance(result, int):
            return self._refuse(result, "not authorized" if result == 0x87 else "refused")
        principal = result
        if not principal.allowed("iot:Connect", cid, cid):
            return self._refuse(0x87, "iot:Connect not allowed for this client id")
        self.principal = principal

        ka = pkt.keep_alive
        if ka == 0 or ka > lim.keepalive_max_s:
            ka = lim.keepalive_max_s  # §1.5: 0 or > 1200 -> 1200 [QUOTAS-OLD]
        elif ka < lim.keepalive_min_s:
            ka = lim.keepalive_min_s  # §1.5: 1-29 -> 30 [QUOTAS-OLD]
        self.keep_alive = ka
        requested_sei = props.get(P.PROP_SESSION_EXPIRY_INTERVAL, 0)
        sei = min(requested_sei, lim.max_session_expiry_s)  # §1.6: clamped, returned in CONNACK
        self.receive_max = min(props.get(P.PROP_RECEIVE_MAXIMUM, 65535), lim.outbound_inflight_max)
        self.max_packet_out = props.get(P.PROP_MAXIMUM_PACKET_SIZE, codec.VBI_MAX + 5)

        # §1.5 [MQTT-DOC]: the same client id again -> the old connection gets 0x8E.
        old = b.sessions.get(cid)
        if old is not None and old.conn is not None:
            old.conn.disconnect(0x8E, "session taken over", lifecycle="DUPLICATE_CLIENTID")
            old = b.sessions.get(cid)
        if old is not None and (pkt.clean_start or not old.expiry_s):
            b.drop_session(old)
            old = None
        present = old is not None
        session = old if old is not None else Session(cid)
        if session.expiry_handle is not None:
            session.expiry_handle.cancel()
            session.expiry_handle = None
        if session.will_handle is not None:
            # Reconnected within the will delay: the will is not sent [MQTT-3.1.3-9].
            session.will_handle.cancel()
            session.will_handle = None
        session.will = will
        session.expiry_s = sei
        session.conn = self
        session.principal = principal
        b.sessions[cid] = session
        self.session = session

        cprops: dict[int, Any] = {
            P.PROP_RECEIVE_MAXIMUM: lim.receive_maximum,
            P.PROP_MAXIMUM_QOS: MAXIMUM_QOS,
            P.PROP_RETAIN_AVAILABLE: 1,
            P.PROP_MAXIMUM_PACKET_SIZE: lim.maximum_packet_size,
            P.PROP_TOPIC_ALIAS_MAXIMUM: lim.topic_alias_maximum,
            P.PROP_WILDCARD_SUBSCRIPTION_AVAILABLE: 1,
            P.PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE: 0,
            P.PROP_SHARED_SUBSCRIPTION_AVAILABLE: 1,
            # §1.6 emulator recommendation: Server Keep Alive = the clamped keep-alive.
            P.PROP_SERVER_KEEP_ALIVE: math.ceil(ka),
        }
        if sei != requested_sei:
            cprops[P.PROP_SESSION_EXPIRY_INTERVAL] = sei
        if assigned:
            cprops[P.PROP_ASSIGNED_CLIENT_IDENTIFIER] = assigned
        self._write(codec.encode_connack(b.buf, 0, present, cprops))
        self.connected = True
        loop = asyncio.get_running_loop()
        self.connected_at = time.time()
        self.last_rx = loop.time()
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        self._ka_handle = loop.call_later(1.5 * ka, self._keepalive_check)
        if principal.disconnect_after_s:
            self._timers.append(
                loop.call_later(
                    principal.disconnect_after_s,
                    self.disconnect,
                    0x98,
                    "authorizer's disconnectAfterInSeconds",
                    "CUSTOMAUTH_TTL_EXPIRATION",
                )
            )
        if principal.refresh is not None and principal.refresh_after_s:
            self._timers.append(loop.call_later(principal.refresh_after_s, self._refresh))
        b.stats["connects"] += 1
        log.info(
            "%s connected (%s, %s%s, keep-alive %s s, %s%s)",
            cid,
            principal.kind,
            self.info.listener,
            _peer(self.info),
            _fmt_s(ka),
            "session present" if present else "new session",
            f", session expiry {sei} s" if sei else "",
        )
        b.lifecycle("connected", self)
        if present:
            # Re-send what was in flight, then what was queued (§1.10).
            # Every one passes this connection's iot:Receive check first, like a live
            # message: the session may come from disk or from a connection with other
            # policies (issue 11 item 8).
            for pid, (msg, retain, counted) in list(session.inflight.items()):
                if not self.may_receive(msg.topic) or not self._send_publish(msg, 1, pid, retain):
                    del session.inflight[pid]
                    if counted:
                        b.shadow_done(msg)
            self._flush_pending()
        return None

    def _refresh(self) -> None:
        principal = self.principal
        if principal is None or principal.refresh is None or self.closing:
            return
        task = asyncio.ensure_future(_maybe_await(principal.refresh()))

        def done(t: asyncio.Future[Any]) -> None:
            try:
                result = t.result()
            except Exception:
                log.exception("%s: authorizer refresh failed", self.client_id)
                result = 0x87
            if isinstance(result, int):
                self.disconnect(0x87, "authorizer refused on refresh", "AUTH_ERROR")
                return
            self.principal = result
            if self.session is not None:
                self.session.principal = result
            self.forget_authorisations()
            if result.refresh_after_s:
                loop = asyncio.get_running_loop()
                self._timers.append(loop.call_later(result.refresh_after_s, self._refresh))

        task.add_done_callback(done)

    def _keepalive_check(self) -> None:
        self._ka_handle = None
        if self.closing:
            return
        loop = asyncio.get_running_loop()
        limit = 1.5 * self.keep_alive  # §1.5: disconnect at 1.5 x keep-alive
        idle = loop.time() - self.last_rx
        if idle >= limit - 0.001:
            self.disconnect(0x8D, "keep alive timeout", "MQTT_KEEP_ALIVE_TIMEOUT")
        else:
            self._ka_handle = loop.call_later(limit - idle, self._keepalive_check)

    # --- the end --------------------------------------------------------------------------

    def _end(self) -> None:
        """Once per connection: will, session expiry, lifecycle event, log."""
        if self.ended:
            return
        self.ended = True
        self.closing = True
        if self._ka_handle is not None:
            self._ka_handle.cancel()
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        session = self.session
        if session is None or session.conn is not self:
            if session is not None and self.connected:
                self._log_end()
            return
        b = self.broker
        session.conn = None
        for pid, (msg, retain, counted) in list(session.inflight.items()):
            if counted:
                b.shadow_done(msg)
                session.inflight[pid] = (msg, retain, False)
        if self.clean_exit:
            session.will = None
        if session.will is not None:
            delay = session.will.properties.get(P.PROP_WILL_DELAY_INTERVAL, 0)
            if delay and session.expiry_s:
                # [MQTT-3.1.3-9] the will waits for its delay or the session's end.
                loop = asyncio.get_running_loop()
                session.will_handle = loop.call_later(
                    min(delay, session.expiry_s), b.publish_will, session
                )
            else:
                b.publish_will(session)
        if session.expiry_s and not b.closing:
            b.schedule_expiry(session)
        elif not session.expiry_s:
            b.drop_session(session)
        else:
            session.expires_at_wall = time.time() + session.expiry_s
        self._log_end()
        b.lifecycle("disconnected", self, self.end_reason or "CONNECTION_LOST")

    def _log_end(self) -> None:
        log.info(
            "%s disconnected (%s)",
            self.client_id,
            (self.end_reason or "CONNECTION_LOST").lower().replace("_", " "),
        )

    # --- packets --------------------------------------------------------------------------

    def _packet(self, pkt: Any) -> None:
        t = pkt.type
        if t == PUBLISH:
            self._on_publish(pkt)
        elif t == PUBACK:
            self._on_puback(pkt)
        elif t == SUBSCRIBE:
            self._on_subscribe(pkt)
        elif t == UNSUBSCRIBE:
            self._on_unsubscribe(pkt)
        elif t == PINGREQ:
            self._send(codec.PINGRESP_BYTES)
        elif t == DISCONNECT:
            self._on_disconnect(pkt)
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

    def _publish_refused(self, pkt: Any, code: int, reason: str) -> None:
        log.info(
            "%s: PUBLISH to %s refused: 0x%02X %s",
            self.client_id,
            pkt.topic or "(alias)",
            code,
            reason,
        )
        if pkt.qos:
            self._write(
                codec.encode_ack(
                    self.broker.buf, PUBACK, pkt.packet_id, code, self._reason(reason)
                )
            )
        else:
            self.disconnect(code, reason, "CLIENT_ERROR")  # see DEVIATIONS

    def _on_publish(self, pkt: Any) -> None:
        b = self.broker
        lim = b.limits
        b.stats["publishes_in"] += 1
        if pkt.qos > MAXIMUM_QOS:
            # §1.9 [MQTT-DOC]: Maximum QoS is 1; a QoS 2 PUBLISH gets DISCONNECT 0x9B.
            self.disconnect(0x9B, "QoS 2 is not supported", "CLIENT_ERROR")
            return
        props = pkt.properties
        topic = pkt.topic
        alias = props.pop(P.PROP_TOPIC_ALIAS, 0)
        if alias:
            if alias > lim.topic_alias_maximum:
                # §1.9 [MQTT-DOC]: alias above 8 -> DISCONNECT 0x94.
                self.disconnect(
                    0x94,
                    f"topic alias {alias} above the maximum {lim.topic_alias_maximum}",
                    "CLIENT_ERROR",
                )
                return
            if topic:
                self.aliases[alias] = topic
            else:
                found = self.aliases.get(alias)
                if found is None:
                    self.disconnect(0x94, f"unknown topic alias {alias}", "CLIENT_ERROR")
                    return
                topic = found
                pkt.topic = topic
        if P.PROP_SUBSCRIPTION_IDENTIFIER in props:
            self.disconnect(
                0x82, "a client PUBLISH carries no Subscription Identifier", "CLIENT_ERROR"
            )  # [MQTT-3.3.4-6]
            return
        if len(pkt.payload) > lim.max_payload_bytes:
            # §1.9 [JS535], [TOPICDATA]: the connection is dropped (CLIENT_ERROR,
            # PAYLOAD_LIMIT_EXCEEDED). We say so with DISCONNECT 0x97 first.
            log.info(
                "%s: %d-byte payload on %s exceeds 128 KiB",
                self.client_id,
                len(pkt.payload),
                topic,
            )
            self.disconnect(0x97, "PAYLOAD_LIMIT_EXCEEDED", "CLIENT_ERROR")
            return
        if not self._publish_quota.try_take(1, self.loop.time()):
            # §0 [QUOTAS]: over 100 publishes/s on a connection the excess is discarded:
            # QoS 1 hears it as PUBACK 0x97, QoS 0 is dropped (see DEVIATIONS).
            b.stats["throttled"] = b.stats.get("throttled", 0) + 1
            if pkt.qos:
                return self._publish_refused(pkt, 0x97, "publish rate quota exceeded")
            return None
        problem = topics.topic_name_problem(topic)
        if problem:
            return self._publish_refused(pkt, 0x90, problem)  # §1.7, §1.8
        request = None
        if topic.startswith("$"):
            if pkt.retain:
                # §1.7 [MQTT-DOC]: no RETAIN on reserved topics.
                return self._publish_refused(pkt, 0x90, "RETAIN is not allowed on reserved topics")
            if not topic.startswith("$aws/rules/"):
                request = topics.parse_request(topic)
                if request is None:
                    # §1.7 [RESERVED]: only AWS-defined reserved topics may be published to.
                    return self._publish_refused(pkt, 0x90, "not a topic devices may publish to")
        if not self._may_publish(topic):
            return self._publish_refused(pkt, 0x87, "iot:Publish not allowed on " + topic)
        if (
            pkt.retain
            and self.principal is not None
            and not self.principal.allowed("iot:RetainPublish", topic, self.client_id)
        ):
            return self._publish_refused(pkt, 0x87, "iot:RetainPublish not allowed on " + topic)
        if pkt.qos:
            self._write(codec.encode_ack(b.buf, PUBACK, pkt.packet_id))
        if request is not None:
            self._service(request, pkt)
            return
        if topic.startswith("$aws/rules/"):
            # Basic Ingest goes to the rules engine only, never to subscribers (§1.7).
            log.debug("%s: basic ingest %s (no rules engine in the twin)", self.client_id, topic)
            return
        expiry = props.pop(P.PROP_MESSAGE_EXPIRY_INTERVAL, None)
        msg = Message(
            topic,
            pkt.payload,
            pkt.qos,
            pkt.retain,
            props,
            mono_now() + clamp_expiry(expiry) if expiry is not None else None,
            origin=self.client_id,
        )
        if pkt.retain:
            b._retain(msg)
        n = b.route(msg)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s published %s (QoS %d%s, %d bytes) -> %d receiver(s)",
                self.client_id,
                topic,
                pkt.qos,
                ", retained" if pkt.retain else "",
                len(pkt.payload),
                n,
            )

    def _on_puback(self, pkt: Any) -> None:
        session = self.session
        if session is None:
            return
        entry = session.inflight.pop(pkt.packet_id, None)
        if entry is not None and entry[2]:
            self.broker.shadow_done(entry[0])
        if session.pending:
            self._flush_pending()

    def _on_subscribe(self, pkt: Any) -> None:
        b = self.broker
        lim = b.limits
        session = self.session
        if session is None:
            return
        if P.PROP_SUBSCRIPTION_IDENTIFIER in pkt.properties:
            # §1.8 [NODERED4133]: DISCONNECT 0xA1 with this reason string.
            self.disconnect(0xA1, "Subscription Id is not supported now", "CLIENT_ERROR")
            return
        if len(pkt.subscriptions) > lim.max_filters_per_subscribe:
            # §1.7, §1.9 [SUB8]: more than 8 filters -> connection closed.
            self.disconnect(
                0x97,
                f"more than {lim.max_filters_per_subscribe} topic filters in one SUBSCRIBE",
                "CLIENT_ERROR",
            )
            return
        codes = []
        retained: list[tuple[Message, Subscription]] = []
        notes = []
        for filt, options in pkt.subscriptions:
            code = self._subscribe_one(session, filt, options, retained)
            codes.append(code)
            notes.append("{} ({})".format(filt, _SUB_NAMES.get(code, f"0x{code:02X}")))
        self._write(codec.encode_suback(b.buf, pkt.packet_id, codes))
        log.info("%s subscribed: %s", self.client_id, ", ".join(notes))
        for msg, sub in retained:
            b.deliver(session, msg, min(msg.qos, sub.qos), True)

    def _subscribe_one(
        self,
        session: Session,
        filt: str,
        options: int,
        retained: list[tuple[Message, Subscription]],
    ) -> int:
        b = self.broker
        problem = topics.topic_filter_problem(filt)
        share, bare = topics.share_group(filt)
        if problem is None and bare.startswith("$") and not bare.startswith("$aws/"):
            problem = "reserved topic filter"
        if problem:
            return 0x8F  # §1.8 SUBACK 0x8F Topic Filter invalid
        if self.principal is not None and not self.principal.allowed(
            "iot:Subscribe", filt, self.client_id
        ):
            return 0x87  # §1.8, §1.9 policy deny -> SUBACK 0x87
        existing = session.subs.get(filt)
        if existing is None and len(session.subs) >= b.limits.max_subscriptions:
            return RC_SUBSCRIPTION_QUOTA  # §1.7 [QUOTAS], [SUB50]
        sub = Subscription(session, filt, options)
        if existing is not None:
            b.tree.remove(existing)
        session.subs[filt] = sub
        b.tree.add(sub)
        b._dirty()
        # §1.10 [MQTT-DOC]: retained messages only for a filter equal to the topic, never
        # for wildcard or shared subscriptions.
        if share is None and "+" not in bare and "#" not in bare:
            rh = sub.retain_handling
            if rh == 0 or (rh == 1 and existing is None):
                msg = b.retained.get(bare)
                if msg is not None and not msg.expired(mono_now()):
                    retained.append((msg, sub))
        return sub.qos

    def _on_unsubscribe(self, pkt: Any) -> None:
        session = self.session
        if session is None:
            return
        codes = []
        for filt in pkt.filters:
            sub = session.subs.pop(filt, None)
            if sub is not None:
                self.broker.tree.remove(sub)
            codes.append(0)  # §1.8: AWS's UNSUBACK codes have no 0x11
        self.broker._dirty()
        self._write(codec.encode_unsuback(self.broker.buf, pkt.packet_id, codes))
        log.info("%s unsubscribed: %s", self.client_id, ", ".join(pkt.filters))

    def _on_disconnect(self, pkt: Any) -> None:
        session = self.session
        if session is None:
            return
        sei = pkt.properties.get(P.PROP_SESSION_EXPIRY_INTERVAL)
        if sei is not None:
            if not session.expiry_s and sei:
                # §1.6 [MQTT-DOC], [MQTT-3.14.2-2]: cannot turn 0 into > 0 on DISCONNECT.
                self.disconnect(
                    0x82,
                    "session expiry cannot be set on DISCONNECT when it was 0",
                    "CLIENT_ERROR",
                )
                return
            session.expiry_s = min(sei, self.broker.limits.max_session_expiry_s)
        # §1.10: the will goes out on every disconnect except a client DISCONNECT; 0x04
        # asks for it explicitly.
        self.clean_exit = pkt.reason_code != 0x04
        self.end_reason = "CLIENT_INITIATED_DISCONNECT"
        self.closing = True
        self._flush()
        self.stream.close()
        self._end()

    # --- services -------------------------------------------------------------------------

    def _service(self, request: Any, pkt: Any) -> None:
        b = self.broker
        svc = b.services
        if svc is None:
            return
        try:
            if isinstance(request, topics.ShadowRequest):
                out = svc.shadows.handle(request, pkt.payload)
                log.info(
                    "%s: shadow %s %s%s -> %s",
                    self.client_id,
                    request.op,
                    request.thing,
                    "/" + request.shadow if request.shadow else "",
                    _outcome(out, request),
                )
                for topic, payload in out:
                    msg = Message(topic, payload, 1)
                    msg.shadow_thing = request.thing
                    b.route(msg)  # §3.1: shadow responses go to subscribers
            elif isinstance(request, topics.JobsRequest):
                out = svc.jobs.handle(request, pkt.payload)
                log.info(
                    "%s: jobs %s %s%s -> %s",
                    self.client_id,
                    request.op,
                    request.thing,
                    " " + request.job_id if request.job_id else "",
                    _outcome(out, request),
                )
                for topic, payload in out:
                    if topic in (request.accepted, request.rejected):
                        # §4.1 [RESERVED], [JOBS-MQTT]: delivered to the requester only,
                        # subscribed or not; nobody else sees it.
                        sub = self._own_subscription(topic)
                        self._direct(Message(topic, payload, 1), sub.qos if sub else pkt.qos)
                    else:
                        b.route(Message(topic, payload, 1))  # notify / notify-next
            elif isinstance(request, topics.ProvisioningRequest):
                out = svc.provisioning.handle(
                    request,
                    pkt.payload,
                    client_id=self.client_id,
                    claim_certificate_id=self.principal.cert_id if self.principal else None,
                )
                log.info(
                    "%s: provisioning %s%s -> %s",
                    self.client_id,
                    request.op,
                    " " + request.template if request.template else "",
                    _outcome(out, request),
                )
                for topic, payload in out:
                    # §5.2 [FP-API]: subscribe before publishing "or you may miss the
                    # result": answered to the requesting connection through its own
                    # subscriptions; other clients never see keys or tokens.
                    sub = self._own_subscription(topic)
                    if sub is not None:
                        self._direct(Message(topic, payload, 1), sub.qos)
        except Exception:
            log.exception("%s: service error on %s", self.client_id, pkt.topic)

    def _direct(self, msg: Message, qos: int) -> None:
        session = self.session
        if session is not None and self.may_receive(msg.topic):
            self.send_message(msg, min(qos, 1), False)

    def _own_subscription(self, topic: str) -> Subscription | None:
        session = self.session
        if session is None:
            return None
        best = None
        for sub in session.subs.values():
            if (
                sub.share is None
                and topics.topic_matches(sub.topic_filter, topic)
                and (best is None or sub.qos > best.qos)
            ):
                best = sub
        return best


_SUB_NAMES = {
    0: "QoS 0",
    1: "QoS 1",
    0x80: "0x80 quota",
    0x87: "0x87 not authorized",
    0x8F: "0x8F filter invalid",
    0x97: "0x97 quota",
}


def _outcome(out: Responses, request: Any) -> str:
    for topic, payload in out:
        if topic == request.rejected:
            try:
                doc = json.loads(payload)
                return "rejected {} {}".format(
                    doc.get("code", doc.get("errorCode", "")),
                    doc.get("message", doc.get("errorMessage", "")),
                )
            except ValueError:
                return "rejected"
        if topic == request.accepted:
            return "accepted"
    return "no answer"


def _peer(info: ConnInfo) -> str:
    return f" from {info.peer[0]}:{info.peer[1]}" if info.peer else ""


def _fmt_s(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.2f}"


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
