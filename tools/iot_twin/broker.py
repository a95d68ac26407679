"""The broker: sessions, the subscription tree, retained messages, routing, wills,
lifecycle events, the services behind the reserved topics, and the state saved to disk.
One per twin; each client connection is a :class:`~iot_twin.connection.Connection`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mqtt_v5 import properties as P

from . import persistence
from .connection import Connection
from .identity import Authenticate, ConnInfo, Principal, allow_all
from .limits import Limits, TokenBucket
from .routing import Subscription, SubscriptionTree
from .session import Message, Session, clamp_expiry, mono_now
from .streams import Stream

if TYPE_CHECKING:
    from .services import ServiceLayer

log = logging.getLogger("iot_twin")


class Broker:
    """Sessions, subscriptions, retained messages and routing; one per twin."""

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        authenticate: Authenticate | None = None,
        services: ServiceLayer | None = None,
        state_dir: Path | str | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.authenticate = authenticate or allow_all
        self.services = services  # shadows, jobs, provisioning; None: no services
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self._connect_quota: dict[str, TokenBucket] = {}
        self.tree = SubscriptionTree()
        self.retained: dict[str, Message] = {}
        # One encode buffer for every connection: the loop runs one callback at a time.
        self.buf = bytearray(2 * self.limits.maximum_packet_size + 1024)
        self._save_handle: asyncio.TimerHandle | None = None
        self._lifecycle_versions: dict[str, int] = {}
        self._tick_handle: asyncio.TimerHandle | None = None
        self.stats = {"connects": 0, "publishes_in": 0, "publishes_out": 0}
        self.closing = False
        self.listeners: list[str] = []
        self._loaded = False

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load persisted state and start the housekeeping timer (call inside the loop)."""
        if not self._loaded:
            self._loaded = True
            self._load_state()
        self._schedule_tick()

    async def close(self, reason_code: int = 0x8B) -> None:
        """DISCONNECT everyone with 0x8B Server shutting down, then persist the state."""
        self.closing = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for conn in list(self.connections):
            conn.disconnect(
                reason_code, "server shutting down", lifecycle="SERVER_INITIATED_DISCONNECT"
            )
        await asyncio.sleep(0)
        self.save_state()

    def _schedule_tick(self) -> None:
        # Housekeeping every few seconds (jobs timers count in minutes; retained expiry).
        loop = asyncio.get_running_loop()
        self._tick_handle = loop.call_later(5.0, self._tick)

    def _tick(self) -> None:
        try:
            if self.services is not None:
                self.emit_all(self.services.tick())
            now = mono_now()
            for topic in [t for t, m in self.retained.items() if m.expired(now)]:
                del self.retained[topic]
                self._dirty()
        except Exception:
            log.exception("housekeeping failed")
        if not self.closing:
            self._schedule_tick()

    async def serve(self, stream: Stream, info: ConnInfo) -> None:
        """Run one connection to its end; never raises."""
        conn = Connection(self, stream, info)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    # --- routing -------------------------------------------------------------------------

    def route(self, msg: Message) -> int:
        """Deliver ``msg`` to every matching subscription; returns how many got it."""
        found, groups = self.tree.match(msg.topic)
        if not found and not groups:
            return 0
        count = 0
        if len(found) == 1 and not groups:
            for sub in found[0].values():
                count += self._deliver_sub(sub, msg)
            return count
        # Overlapping filters: one copy per client at the highest QoS [MQTT-3.3.4-2].
        best: dict[str, Subscription] = {}
        for subs in found:
            for cid, sub in subs.items():
                have = best.get(cid)
                if have is None or sub.qos > have.qos:
                    best[cid] = sub
        for sub in best.values():
            count += self._deliver_sub(sub, msg)
        for group in groups:
            # §1.10: each matching group gets one copy.
            pick = group.pick()
            if pick is not None:
                count += self._deliver_sub(pick, msg)
        return count

    def _deliver_sub(self, sub: Subscription, msg: Message) -> int:
        session = sub.session
        if sub.no_local and msg.origin == session.client_id:
            return 0
        retain = msg.retain and sub.retain_as_published
        return self.deliver(session, msg, min(msg.qos, sub.qos), retain)

    def deliver(self, session: Session, msg: Message, qos: int, retain: bool) -> int:
        """Send (or queue) ``msg`` to one session; checks ``iot:Receive`` first (§1.9:
        a Receive the policy denies is silently not delivered)."""
        principal = session.principal
        conn = session.conn
        if conn is not None:
            if not conn.delivery.may_receive(msg.topic):
                return 0
            return conn.delivery.send_message(msg, qos, retain)
        if principal is not None and not principal.allowed(
            "iot:Receive", msg.topic, session.client_id
        ):
            return 0
        if qos and session.expiry_s:
            # §1.10: a persistent session queues QoS 1 messages while offline.
            if len(session.pending) >= self.limits.max_queued_messages:
                log.warning(
                    "%s: offline queue full, dropping a message on %s",
                    session.client_id,
                    msg.topic,
                )
                return 0
            session.pending.append((msg, retain))
            self._dirty()
            return 1
        return 0

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        retain: bool = False,
        props: dict[int, Any] | None = None,
    ) -> int:
        """Publish as the twin itself (admin, services); returns the number of receivers."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        props = dict(props or {})
        expiry = props.pop(P.PROP_MESSAGE_EXPIRY_INTERVAL, None)
        msg = Message(
            topic,
            payload,
            qos,
            retain,
            props,
            mono_now() + clamp_expiry(expiry) if expiry is not None else None,
        )
        if retain:
            self._retain(msg)
        return self.route(msg)

    def emit_all(self, responses: Iterable[tuple[str, bytes]]) -> None:
        for topic, payload in responses:
            self.route(Message(topic, payload, 1))

    # --- retained -------------------------------------------------------------------------

    def _retain(self, msg: Message) -> None:
        # §1.10: one per topic; a 0-byte retained publish deletes (and is delivered).
        if msg.payload:
            self.retained[msg.topic] = msg
        else:
            self.retained.pop(msg.topic, None)
        self._dirty()

    # --- sessions -------------------------------------------------------------------------

    def drop_session(self, session: Session) -> None:
        """End a session: its subscriptions and queue go, a pending will is published."""
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        for sub in session.subs.values():
            self.tree.remove(sub)
        session.subs.clear()
        if session.expiry_handle is not None:
            session.expiry_handle.cancel()
            session.expiry_handle = None
        if session.will_handle is not None:
            # [MQTT-3.1.3-9] the will goes out when the session ends, delay or not.
            session.will_handle.cancel()
            session.will_handle = None
            self.publish_will(session)
        for msg, _retain, counted in session.inflight.values():
            if counted:
                self.shadow_done(msg)
        session.inflight.clear()
        session.pending.clear()
        self._dirty()

    def publish_will(self, session: Session) -> None:
        will = session.will
        session.will = None
        session.will_handle = None
        if will is None:
            return
        principal = session.principal
        if principal is not None and not principal.allowed(
            "iot:Publish", will.topic, session.client_id
        ):
            log.info("%s: will on %s not published: not authorised", session.client_id, will.topic)
            return
        props = dict(will.properties)
        props.pop(P.PROP_WILL_DELAY_INTERVAL, None)
        expiry = props.pop(P.PROP_MESSAGE_EXPIRY_INTERVAL, None)
        # §1.6: a will's expiry interval starts when it is published.
        msg = Message(
            will.topic,
            will.payload,
            will.qos,
            will.retain,
            props,
            mono_now() + clamp_expiry(expiry) if expiry is not None else None,
            origin=session.client_id,
        )
        log.info("%s: will published on %s", session.client_id, will.topic)
        if will.retain:
            self._retain(msg)
        self.route(msg)

    def expire_session(self, session: Session) -> None:
        session.expiry_handle = None
        if session.conn is None:
            log.info("%s: session expired", session.client_id)
            self.drop_session(session)

    def schedule_expiry(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        if session.expiry_handle is not None:
            session.expiry_handle.cancel()
        session.expires_at_wall = time.time() + session.expiry_s
        session.expiry_handle = loop.call_later(session.expiry_s, self.expire_session, session)

    # --- shadow 429 window ----------------------------------------------------------------

    def shadow_begin(self, msg: Message) -> bool:
        if msg.shadow_thing is None or self.services is None:
            return False
        self.services.shadows.begin(msg.shadow_thing)
        return True

    def shadow_done(self, msg: Message) -> None:
        if msg.shadow_thing is not None and self.services is not None:
            self.services.shadows.end(msg.shadow_thing)

    # --- lifecycle events (§1.11 [LIFECYCLE]) ------------------------------------------------

    def lifecycle(self, event: str, conn: Connection, reason: str | None = None) -> None:
        if not self.limits.lifecycle_events:
            return
        cid = conn.client_id
        if "#" in cid or "+" in cid:
            return  # §1.11: such client ids get no lifecycle events
        version = self._lifecycle_versions.get(cid, -1)
        if event == "connected":
            version += 1
            self._lifecycle_versions[cid] = version
        doc: dict[str, Any] = {
            "clientId": cid,
            "timestamp": int(time.time() * 1000),  # §1.11: milliseconds here
            "eventType": event,
            "sessionIdentifier": conn.session_identifier,
            "principalIdentifier": conn.principal.name if conn.principal else "",
            "ipAddress": conn.info.peer[0] if conn.info.peer else "",
            "versionNumber": max(version, 0),
        }
        if event == "disconnected":
            doc["clientInitiatedDisconnect"] = reason == "CLIENT_INITIATED_DISCONNECT"
            doc["disconnectReason"] = reason or "CONNECTION_LOST"
        self.route(
            Message(
                f"$aws/events/presence/{event}/{cid}",
                json.dumps(doc, separators=(",", ":")).encode(),
                1,
            )
        )

    # --- introspection --------------------------------------------------------------------

    def connect_quota(self, client_id: str) -> float:
        """Count a CONNECT for ``client_id``: 0 if it is within the per-client-id rate,
        else how many seconds it is early (refused CONNECTs are not counted)."""
        rate = self.limits.connects_per_s_per_client_id
        if not rate:
            return 0.0
        now = asyncio.get_running_loop().time()
        bucket = self._connect_quota.get(client_id)
        if bucket is None:
            if len(self._connect_quota) > 10000:
                self._connect_quota = {
                    k: v for k, v in self._connect_quota.items() if now - v.at < 1 / rate
                }
            bucket = self._connect_quota[client_id] = TokenBucket(rate, now)
        if self.limits.connect_throttle_refuses:
            return 0.0 if bucket.try_take(1, now) else 1.0 / rate
        return bucket.take(1, now)

    def live_connections(self) -> list[Connection]:
        return [c for c in self.connections if c.connected and not c.closing]

    def policies_changed(self) -> None:
        """The policies behind some principals changed: drop every cached answer, so the
        next PUBLISH, SUBSCRIBE or delivery is judged by the policies attached now."""
        for conn in self.live_connections():
            conn.forget_authorisations()

    def disconnect_principal(
        self, which: Callable[[Principal], bool], reason_code: int, reason: str
    ) -> int:
        """Close the live connections whose principal ``which`` selects (a certificate
        revoked or deactivated); returns how many."""
        closing = [c for c in self.live_connections() if c.principal and which(c.principal)]
        for conn in closing:
            conn.disconnect(reason_code, reason, "AUTH_ERROR")
        return len(closing)

    def connection_list(self) -> list[dict[str, Any]]:
        out = []
        now = time.time()
        for conn in self.connections:
            if conn.session is None:
                continue
            s = conn.session
            out.append(
                {
                    "client_id": conn.client_id,
                    "thing": conn.principal.thing if conn.principal else None,
                    "principal": conn.principal.name if conn.principal else None,
                    "auth": conn.principal.kind if conn.principal else None,
                    "listener": conn.info.listener,
                    "peer": "{}:{}".format(*conn.info.peer) if conn.info.peer else None,
                    "keep_alive_s": conn.lifetime.keep_alive,
                    "session_expiry_s": s.expiry_s,
                    "connected_for_s": round(now - conn.connected_at, 1),
                    "subscriptions": sorted(s.subs),
                    "inflight": len(s.inflight),
                    "queued": len(s.pending),
                }
            )
        return sorted(out, key=lambda c: c["client_id"])

    # --- persistence ----------------------------------------------------------------------

    def _dirty(self) -> None:
        if self.state_dir is None or self._save_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._save_handle = loop.call_later(0.5, self._save_soon)

    def _save_soon(self) -> None:
        self._save_handle = None
        try:
            self.save_state()
        except Exception:
            log.exception("could not save the broker state")

    def save_state(self) -> None:
        """Write retained messages and persistent sessions to the state directory."""
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self.state_dir is not None:
            persistence.save_state(self)

    def _load_state(self) -> None:
        if self.state_dir is not None:
            persistence.load_state(self)
