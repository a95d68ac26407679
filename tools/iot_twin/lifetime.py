"""How one connection stays up and how it ends: the keep-alive deadline, the client's
DISCONNECT, and the end of the connection (the will, now or after its delay; the
session kept for its expiry or dropped; the lifecycle event).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from mqtt_v5 import properties as P
from mqtt_v5._server_codec import Will

from .session import Session

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("iot_twin")


class Lifetime:
    """Keep-alive, the client's DISCONNECT, and the once-only end of a connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.keep_alive: float = 0  # as granted (clamped) in CONNACK
        self.ended = False
        self.clean_exit = False  # DISCONNECT 0x00 from the client: no will (§1.10)
        self.end_reason: str | None = None  # lifecycle disconnectReason
        self._ka_handle: asyncio.TimerHandle | None = None

    # --- keep-alive -----------------------------------------------------------------------

    def start(self, keep_alive: float) -> None:
        """CONNACK sent: arm the keep-alive deadline."""
        self.keep_alive = keep_alive
        self._ka_handle = self.conn.loop.call_later(1.5 * keep_alive, self._keepalive_check)

    def _keepalive_check(self) -> None:
        self._ka_handle = None
        conn = self.conn
        if conn.closing:
            return
        loop = conn.loop
        limit = 1.5 * self.keep_alive  # §1.5: disconnect at 1.5 x keep-alive
        idle = loop.time() - conn.last_rx
        if idle >= limit - 0.001:
            conn.disconnect(0x8D, "keep alive timeout", "MQTT_KEEP_ALIVE_TIMEOUT")
        else:
            self._ka_handle = loop.call_later(limit - idle, self._keepalive_check)

    # --- DISCONNECT from the client -------------------------------------------------------

    def on_disconnect(self, pkt: Any) -> None:
        conn = self.conn
        session = conn.session
        if session is None:
            return
        sei = pkt.properties.get(P.PROP_SESSION_EXPIRY_INTERVAL)
        if sei is not None:
            if not session.expiry_s and sei:
                # §1.6 [MQTT-DOC], [MQTT-3.14.2-2]: cannot turn 0 into > 0 on DISCONNECT.
                conn.disconnect(
                    0x82,
                    "session expiry cannot be set on DISCONNECT when it was 0",
                    "CLIENT_ERROR",
                )
                return
            session.expiry_s = min(sei, conn.broker.limits.max_session_expiry_s)
        # §1.10: the will goes out on every disconnect except a client DISCONNECT; 0x04
        # asks for it explicitly.
        self.clean_exit = pkt.reason_code != 0x04
        self.end_reason = "CLIENT_INITIATED_DISCONNECT"
        conn.closing = True
        conn.out.flush()
        conn.stream.close()
        self.end()

    # --- the end --------------------------------------------------------------------------

    def end(self) -> None:
        """Once per connection: will, session expiry, lifecycle event, log."""
        if self.ended:
            return
        self.ended = True
        conn = self.conn
        conn.closing = True
        if self._ka_handle is not None:
            self._ka_handle.cancel()
        conn.handshake.cancel_timers()
        session = conn.session
        if session is None or session.conn is not conn:
            if session is not None and conn.connected:
                self._log_end()
            return
        b = conn.broker
        session.conn = None
        conn.delivery.park(session)
        if self.clean_exit:
            session.will = None
        if session.will is not None:
            self._will(session, session.will)
        if session.expiry_s and not b.closing:
            b.schedule_expiry(session)
        elif not session.expiry_s:
            b.drop_session(session)
        else:
            session.expires_at_wall = time.time() + session.expiry_s
        self._log_end()
        b.lifecycle("disconnected", conn, self.end_reason or "CONNECTION_LOST")

    def _will(self, session: Session, will: Will) -> None:
        b = self.conn.broker
        delay = will.properties.get(P.PROP_WILL_DELAY_INTERVAL, 0)
        if delay and session.expiry_s:
            # [MQTT-3.1.3-9] the will waits for its delay or the session's end.
            session.will_handle = self.conn.loop.call_later(
                min(delay, session.expiry_s), b.publish_will, session
            )
        else:
            b.publish_will(session)

    def _log_end(self) -> None:
        log.info(
            "%s disconnected (%s)",
            self.conn.client_id,
            (self.end_reason or "CONNECTION_LOST").lower().replace("_", " "),
        )
