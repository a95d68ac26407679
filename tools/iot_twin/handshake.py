"""CONNECT to CONNACK for one connection: the first packet, client id rules, the CONNECT
throttle, the will's checks, authentication and ``iot:Connect``, the session taken up or
started, the CONNACK properties; and after it, the authorizer's refresh and
disconnect-after timers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5._server_codec import CONNECT, Connect, PacketReader

from . import topics
from .identity import ConnInfo, Principal
from .limits import MAXIMUM_QOS
from .session import Session

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("iot_twin")


class Handshake:
    """CONNECT to CONNACK, and the authorizer's timers that run after it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.timers: list[asyncio.TimerHandle] = []

    def arm_timeout(self) -> None:
        conn = self.conn
        self.timers.append(
            conn.loop.call_later(conn.broker.limits.connect_timeout_s, self._connect_timeout)
        )

    def cancel_timers(self) -> None:
        for h in self.timers:
            h.cancel()
        self.timers.clear()

    def _connect_timeout(self) -> None:
        conn = self.conn
        if not conn.connected and not conn.closing:
            log.info(
                "%s: no CONNECT within %.1f s, closing",
                conn.info.peer,
                conn.broker.limits.connect_timeout_s,
            )
            conn.closing = True
            conn.stream.abort()

    def refuse(self, reason_code: int, reason: str) -> None:
        """CONNACK with a failure code, then close (§1.8 lists AWS's CONNACK codes)."""
        conn = self.conn
        conn.closing = True
        props = {P.PROP_REASON_STRING: reason} if reason else None
        conn.write(codec.encode_connack(conn.broker.buf, reason_code, False, props))
        conn.out.flush()
        conn.stream.close()
        log.info(
            "%s: CONNECT refused: 0x%02X %s", conn.client_id or conn.info.peer, reason_code, reason
        )

    # --- CONNECT --------------------------------------------------------------------------

    async def first_packet(self, first: int, reader: PacketReader) -> None:
        """Handle the connection's first packet; ``conn.closing`` is set if it ended it."""
        conn = self.conn
        if first >> 4 != CONNECT:
            # [MQTT-3.1.0-1] the first packet must be CONNECT: close without answering.
            log.info("%s: first packet is not CONNECT, closing", conn.info.peer)
            conn.closing = True
            conn.stream.abort()
            return
        start, end = reader.body_start, reader.body_end
        body = reader.buf
        head = bytes(body[start : min(end, start + 9)])
        if head[:7] == b"\x00\x04MQTT\x04" or head == b"\x00\x06MQIsdp\x03":
            # MQTT 3.1/3.1.1: we speak 5 only. A v3 CONNACK with return code 0x01
            # "unacceptable protocol version" is what a v3 client understands [MQTT-3.1.2-2].
            log.info("%s: MQTT 3 CONNECT refused (the twin speaks MQTT 5 only)", conn.info.peer)
            conn.closing = True
            conn.stream.write(b"\x20\x02\x00\x01")
            conn.stream.close()
            return
        r = reader.reader.reset(body, start, end)
        await self._on_connect(codec.decode_body(first, r))

    async def _on_connect(self, pkt: Connect) -> None:
        conn = self.conn
        conn.problem_info = pkt.properties.get(P.PROP_REQUEST_PROBLEM_INFORMATION, 1) == 1
        assigned = self._client_id(pkt)
        if conn.closing:
            return
        cid = conn.client_id
        wait_s = conn.broker.connect_quota(cid)
        if wait_s:
            # §1.5 [QUOTAS]: 1 CONNECT per second per client id (see DEVIATIONS).
            if conn.broker.limits.connect_throttle_refuses:
                return self.refuse(0x97, "CONNECT rate quota exceeded for this client id")
            log.info("%s: CONNECT rate quota: CONNACK held %.2f s", cid, wait_s)
            await asyncio.sleep(wait_s)
            if conn.closing:
                return None
        problem = _will_problem(pkt.will)
        if problem:
            return self.refuse(*problem)
        principal = await self._authenticate(pkt)
        if principal is None:
            return None
        conn.principal = principal
        ka, sei, requested_sei = self._negotiate(pkt)
        session, present = self._take_session(pkt, sei, principal)
        self._connack(ka, sei, requested_sei, assigned, present)
        self._connected(ka, sei, present, principal)
        if present:
            conn.delivery.resume(session)
        return None

    def _client_id(self, pkt: Connect) -> str | None:
        """Set ``conn.client_id``; returns the id the twin assigned, if it did one."""
        conn = self.conn
        lim = conn.broker.limits
        cid = pkt.client_id
        assigned = None
        if not cid:
            # §1.5 [CRT-MQTT]: AWS assigns $GEN/<uuid> to an empty client id.
            cid = assigned = "$GEN/" + str(uuid.uuid4())
        elif len(cid.encode("utf-8")) > lim.max_client_id_bytes:
            self.refuse(0x85, f"client id longer than {lim.max_client_id_bytes} bytes")
            return None
        elif cid.startswith("$"):
            # §1.5 [QUOTAS-OLD], [CRT-MQTT]: '$' client ids are reserved for AWS.
            self.refuse(0x85, "client ids starting with '$' are reserved")
            return None
        conn.client_id = cid
        return assigned

    async def _authenticate(self, pkt: Connect) -> Principal | None:
        """The principal, or None once the CONNECT was refused."""
        conn = self.conn
        cid = conn.client_id
        try:
            result = conn.broker.authenticate(conn.info, pkt)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            log.exception("%s: authentication failed with an error", cid)
            result = 0x80
        if conn.closing:
            return None
        if isinstance(result, int):
            self.refuse(result, "not authorized" if result == 0x87 else "refused")
            return None
        if not result.allowed("iot:Connect", cid, cid):
            self.refuse(0x87, "iot:Connect not allowed for this client id")
            return None
        return result

    def _negotiate(self, pkt: Connect) -> tuple[float, int, int]:
        """Keep-alive, session expiry (granted and asked for) and the client's limits."""
        conn = self.conn
        lim = conn.broker.limits
        props = pkt.properties
        ka = pkt.keep_alive
        if ka == 0 or ka > lim.keepalive_max_s:
            ka = lim.keepalive_max_s  # §1.5: 0 or > 1200 -> 1200 [QUOTAS-OLD]
        elif ka < lim.keepalive_min_s:
            ka = lim.keepalive_min_s  # §1.5: 1-29 -> 30 [QUOTAS-OLD]
        requested_sei = props.get(P.PROP_SESSION_EXPIRY_INTERVAL, 0)
        sei = min(requested_sei, lim.max_session_expiry_s)  # §1.6: clamped, returned in CONNACK
        delivery = conn.delivery
        delivery.receive_max = min(
            props.get(P.PROP_RECEIVE_MAXIMUM, 65535), lim.outbound_inflight_max
        )
        delivery.max_packet_out = props.get(P.PROP_MAXIMUM_PACKET_SIZE, codec.VBI_MAX + 5)
        return ka, sei, requested_sei

    def _take_session(self, pkt: Connect, sei: int, principal: Principal) -> tuple[Session, bool]:
        """The client id's session, taken over or resumed, or a new one."""
        conn = self.conn
        b = conn.broker
        cid = conn.client_id
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
        session.will = pkt.will
        session.expiry_s = sei
        session.conn = conn
        session.principal = principal
        b.sessions[cid] = session
        conn.session = session
        return session, present

    def _connack(
        self, ka: float, sei: int, requested_sei: int, assigned: str | None, present: bool
    ) -> None:
        conn = self.conn
        lim = conn.broker.limits
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
        conn.write(codec.encode_connack(conn.broker.buf, 0, present, cprops))

    def _connected(self, ka: float, sei: int, present: bool, principal: Principal) -> None:
        """CONNACK sent: timers, stats, log, lifecycle event."""
        conn = self.conn
        b = conn.broker
        loop = conn.loop
        conn.connected = True
        conn.connected_at = time.time()
        conn.last_rx = loop.time()
        self.cancel_timers()  # the CONNECT timeout
        conn.lifetime.start(ka)
        if principal.disconnect_after_s:
            self.timers.append(
                loop.call_later(
                    principal.disconnect_after_s,
                    conn.disconnect,
                    0x98,
                    "authorizer's disconnectAfterInSeconds",
                    "CUSTOMAUTH_TTL_EXPIRATION",
                )
            )
        if principal.refresh is not None and principal.refresh_after_s:
            self.timers.append(loop.call_later(principal.refresh_after_s, self._refresh))
        b.stats["connects"] += 1
        log.info(
            "%s connected (%s, %s%s, keep-alive %s s, %s%s)",
            conn.client_id,
            principal.kind,
            conn.info.listener,
            _peer(conn.info),
            _fmt_s(ka),
            "session present" if present else "new session",
            f", session expiry {sei} s" if sei else "",
        )
        b.lifecycle("connected", conn)

    # --- the authorizer's refresh ---------------------------------------------------------

    def _refresh(self) -> None:
        conn = self.conn
        principal = conn.principal
        if principal is None or principal.refresh is None or conn.closing:
            return
        task = asyncio.ensure_future(_maybe_await(principal.refresh()))

        def done(t: asyncio.Future[Any]) -> None:
            try:
                result = t.result()
            except Exception:
                log.exception("%s: authorizer refresh failed", conn.client_id)
                result = 0x87
            if isinstance(result, int):
                conn.disconnect(0x87, "authorizer refused on refresh", "AUTH_ERROR")
                return
            conn.principal = result
            if conn.session is not None:
                conn.session.principal = result
            conn.forget_authorisations()
            if result.refresh_after_s:
                loop = asyncio.get_running_loop()
                self.timers.append(loop.call_later(result.refresh_after_s, self._refresh))

        task.add_done_callback(done)


def _will_problem(will: codec.Will | None) -> tuple[int, str] | None:
    """The CONNACK code and reason that refuse this will, or None."""
    if will is None:
        return None
    if will.qos > MAXIMUM_QOS:
        return 0x9B, "QoS 2 is not supported in the will"  # §1.5, §1.9
    problem = topics.topic_name_problem(will.topic)
    if problem is None and will.topic.startswith("$"):
        problem = "a will cannot go to a reserved topic"
    if problem:
        return 0x90, "will topic: " + problem  # §1.8
    return None


def _peer(info: ConnInfo) -> str:
    return f" from {info.peer[0]}:{info.peer[1]}" if info.peer else ""


def _fmt_s(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.2f}"


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value
