"""PUBLISH towards one client: the ``iot:Receive`` check, QoS 0 under backpressure, the
QoS 1 in-flight window (the client's Receive Maximum), the session's queue beyond it,
PUBACK from the client, and what a resumed session re-sends.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mqtt_v5 import _server_codec as codec
from mqtt_v5.errors import UsageError

from .identity import TopicVerdicts
from .limits import RECEIVE_MAXIMUM
from .session import Message, Session, mono_now

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("iot_twin")


class Delivery:
    """Outbound PUBLISH for one connection: authorisation, flow control, the queue."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.receive_max = RECEIVE_MAXIMUM  # the client's Receive Maximum (capped)
        self.max_packet_out = codec.VBI_MAX + 5  # the client's Maximum Packet Size
        # iot:Receive, asked once per topic: may_receive(topic) -> bool
        self.may_receive = TopicVerdicts(conn, "iot:Receive")

    def forget_authorisations(self) -> None:
        self.may_receive.clear()

    # --- sending --------------------------------------------------------------------------

    def send_message(self, msg: Message, qos: int, retain: bool) -> int:
        """Deliver to this live connection (QoS 1 beyond the in-flight window is queued)."""
        conn = self.conn
        session = conn.session
        if session is None or conn.closing:
            return 0
        if not qos:
            if conn.out.buffered() > conn.broker.limits.write_high_water:
                return 0  # slow consumer: QoS 0 is "zero or more times" (§1.10)
            return 1 if self._send_publish(msg, 0, 0, retain) else 0
        if len(session.inflight) < self.receive_max and not session.pending:
            self._send_qos1(session, msg, retain)
        else:
            if len(session.pending) >= conn.broker.limits.max_queued_messages:
                return 0
            session.pending.append((msg, retain))
        return 1

    def direct(self, msg: Message, qos: int) -> None:
        """Send to this connection only (service answers), subject to iot:Receive."""
        if self.conn.session is not None and self.may_receive(msg.topic):
            self.send_message(msg, min(qos, 1), False)

    def _send_qos1(self, session: Session, msg: Message, retain: bool) -> None:
        pid = session.new_pid()
        if self._send_publish(msg, 1, pid, retain):
            session.inflight[pid] = (msg, retain, self.conn.broker.shadow_begin(msg))

    def _send_publish(self, msg: Message, qos: int, pid: int, retain: bool) -> bool:
        now = mono_now()
        if msg.expired(now):
            return False
        conn = self.conn
        buf = conn.broker.buf
        payload = msg.payload
        try:
            hlen = codec.encode_publish_header(
                buf, msg.topic_b, len(payload), qos, pid, retain, False, msg.props_at(now)
            )
        except UsageError as e:
            # Never let one message that cannot be re-encoded hurt the publisher's or the
            # receiver's connection (the decoders are as strict as the encoders, so this
            # would be a twin bug).
            log.warning("%s: PUBLISH on %s not delivered: %s", conn.client_id, msg.topic, e)
            return False
        if hlen + len(payload) > self.max_packet_out:
            # [MQTT-3.1.2-25] never exceed the client's Maximum Packet Size: drop it.
            log.debug(
                "%s: %d-byte PUBLISH on %s exceeds its Maximum Packet Size, dropped",
                conn.client_id,
                hlen + len(payload),
                msg.topic,
            )
            return False
        out = conn.out
        out.send(bytes(buf[:hlen]))
        if payload:
            out.send(payload)
        conn.broker.stats["publishes_out"] += 1
        return True

    def flush_pending(self) -> None:
        """Send queued messages while the in-flight window has room."""
        conn = self.conn
        session = conn.session
        if session is None:
            return
        now = mono_now()
        while session.pending and len(session.inflight) < self.receive_max and not conn.closing:
            msg, retain = session.pending.popleft()
            if msg.expired(now):
                continue  # §1.6: expired queued messages are dropped
            if not self.may_receive(msg.topic):
                continue  # queued while offline or under other policies: judged now
            self._send_qos1(session, msg, retain)

    def on_puback(self, pkt: Any) -> None:
        session = self.conn.session
        if session is None:
            return
        entry = session.inflight.pop(pkt.packet_id, None)
        if entry is not None and entry[2]:
            self.conn.broker.shadow_done(entry[0])
        if session.pending:
            self.flush_pending()

    # --- a session's start and end --------------------------------------------------------

    def resume(self, session: Session) -> None:
        """A session was present: re-send what was in flight, then what was queued (§1.10).

        Every one passes this connection's iot:Receive check first, like a live message:
        the session may come from disk or from a connection with other policies (issue 11
        item 8).
        """
        b = self.conn.broker
        for pid, (msg, retain, counted) in list(session.inflight.items()):
            if not self.may_receive(msg.topic) or not self._send_publish(msg, 1, pid, retain):
                del session.inflight[pid]
                if counted:
                    b.shadow_done(msg)
        self.flush_pending()

    def park(self, session: Session) -> None:
        """The connection ended: in-flight messages wait for the next one, and stop
        counting against the shadow's in-flight window."""
        b = self.conn.broker
        for pid, (msg, retain, counted) in list(session.inflight.items()):
            if counted:
                b.shadow_done(msg)
                session.inflight[pid] = (msg, retain, False)
