"""What one client sends to publish and subscribe: PUBLISH (topic aliases, AWS's payload
and rate limits, reserved topics, ``iot:Publish`` and ``iot:RetainPublish``, the PUBACK,
routing), SUBSCRIBE (filter rules, ``iot:Subscribe``, the subscription quota, retained
messages) and UNSUBSCRIBE.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5._server_codec import PUBACK

from . import topics
from .identity import TopicVerdicts
from .limits import MAXIMUM_QOS, RC_SUBSCRIPTION_QUOTA, TokenBucket
from .routing import Subscription
from .session import Message, Session, clamp_expiry, mono_now

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("iot_twin")


class PubSub:
    """Inbound PUBLISH, SUBSCRIBE and UNSUBSCRIBE for one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.aliases: dict[int, str] = {}  # the client's topic aliases
        self._publish_quota = TokenBucket(conn.broker.limits.publishes_per_s, conn.loop.time())
        # iot:Publish, asked once per topic: may_publish(topic) -> bool
        self.may_publish = TopicVerdicts(conn, "iot:Publish")

    def forget_authorisations(self) -> None:
        self.may_publish.clear()

    # --- PUBLISH --------------------------------------------------------------------------

    def _refused(self, pkt: Any, code: int, reason: str) -> None:
        conn = self.conn
        log.info(
            "%s: PUBLISH to %s refused: 0x%02X %s",
            conn.client_id,
            pkt.topic or "(alias)",
            code,
            reason,
        )
        if pkt.qos:
            conn.write(
                codec.encode_ack(conn.broker.buf, PUBACK, pkt.packet_id, code, conn.reason(reason))
            )
        else:
            conn.disconnect(code, reason, "CLIENT_ERROR")  # see DEVIATIONS

    def _topic(self, pkt: Any) -> str | None:
        """The PUBLISH's topic after its alias, or None once the connection is closed."""
        conn = self.conn
        lim = conn.broker.limits
        topic = pkt.topic
        alias = pkt.properties.pop(P.PROP_TOPIC_ALIAS, 0)
        if not alias:
            return topic
        if alias > lim.topic_alias_maximum:
            # §1.9 [MQTT-DOC]: alias above 8 -> DISCONNECT 0x94.
            conn.disconnect(
                0x94,
                f"topic alias {alias} above the maximum {lim.topic_alias_maximum}",
                "CLIENT_ERROR",
            )
            return None
        if topic:
            self.aliases[alias] = topic
            return topic
        found = self.aliases.get(alias)
        if found is None:
            conn.disconnect(0x94, f"unknown topic alias {alias}", "CLIENT_ERROR")
            return None
        pkt.topic = found
        return found

    def on_publish(self, pkt: Any) -> None:
        conn = self.conn
        b = conn.broker
        lim = b.limits
        b.stats["publishes_in"] += 1
        if pkt.qos > MAXIMUM_QOS:
            # §1.9 [MQTT-DOC]: Maximum QoS is 1; a QoS 2 PUBLISH gets DISCONNECT 0x9B.
            conn.disconnect(0x9B, "QoS 2 is not supported", "CLIENT_ERROR")
            return
        props = pkt.properties
        topic = self._topic(pkt)
        if topic is None:
            return
        if P.PROP_SUBSCRIPTION_IDENTIFIER in props:
            conn.disconnect(
                0x82, "a client PUBLISH carries no Subscription Identifier", "CLIENT_ERROR"
            )  # [MQTT-3.3.4-6]
            return
        if len(pkt.payload) > lim.max_payload_bytes:
            # §1.9 [JS535], [TOPICDATA]: the connection is dropped (CLIENT_ERROR,
            # PAYLOAD_LIMIT_EXCEEDED). We say so with DISCONNECT 0x97 first.
            log.info(
                "%s: %d-byte payload on %s exceeds 128 KiB",
                conn.client_id,
                len(pkt.payload),
                topic,
            )
            conn.disconnect(0x97, "PAYLOAD_LIMIT_EXCEEDED", "CLIENT_ERROR")
            return
        if not self._publish_quota.try_take(1, conn.loop.time()):
            # §0 [QUOTAS]: over 100 publishes/s on a connection the excess is discarded:
            # QoS 1 hears it as PUBACK 0x97, QoS 0 is dropped (see DEVIATIONS).
            b.stats["throttled"] = b.stats.get("throttled", 0) + 1
            if pkt.qos:
                return self._refused(pkt, 0x97, "publish rate quota exceeded")
            return None
        problem = topics.topic_name_problem(topic)
        if problem:
            return self._refused(pkt, 0x90, problem)  # §1.7, §1.8
        request = None
        if topic.startswith("$"):
            if pkt.retain:
                # §1.7 [MQTT-DOC]: no RETAIN on reserved topics.
                return self._refused(pkt, 0x90, "RETAIN is not allowed on reserved topics")
            if not topic.startswith("$aws/rules/"):
                request = topics.parse_request(topic)
                if request is None:
                    # §1.7 [RESERVED]: only AWS-defined reserved topics may be published to.
                    return self._refused(pkt, 0x90, "not a topic devices may publish to")
        if not self.may_publish(topic):
            return self._refused(pkt, 0x87, "iot:Publish not allowed on " + topic)
        if (
            pkt.retain
            and conn.principal is not None
            and not conn.principal.allowed("iot:RetainPublish", topic, conn.client_id)
        ):
            return self._refused(pkt, 0x87, "iot:RetainPublish not allowed on " + topic)
        if pkt.qos:
            conn.write(codec.encode_ack(b.buf, PUBACK, pkt.packet_id))
        if request is not None:
            conn.reserved.handle(request, pkt)
            return
        if topic.startswith("$aws/rules/"):
            # Basic Ingest goes to the rules engine only, never to subscribers (§1.7).
            log.debug("%s: basic ingest %s (no rules engine in the twin)", conn.client_id, topic)
            return
        self._route(pkt, topic)

    def _route(self, pkt: Any, topic: str) -> None:
        conn = self.conn
        b = conn.broker
        props = pkt.properties
        expiry = props.pop(P.PROP_MESSAGE_EXPIRY_INTERVAL, None)
        msg = Message(
            topic,
            pkt.payload,
            pkt.qos,
            pkt.retain,
            props,
            mono_now() + clamp_expiry(expiry) if expiry is not None else None,
            origin=conn.client_id,
        )
        if pkt.retain:
            b._retain(msg)
        n = b.route(msg)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s published %s (QoS %d%s, %d bytes) -> %d receiver(s)",
                conn.client_id,
                topic,
                pkt.qos,
                ", retained" if pkt.retain else "",
                len(pkt.payload),
                n,
            )

    # --- SUBSCRIBE, UNSUBSCRIBE -----------------------------------------------------------

    def on_subscribe(self, pkt: Any) -> None:
        conn = self.conn
        b = conn.broker
        lim = b.limits
        session = conn.session
        if session is None:
            return
        if P.PROP_SUBSCRIPTION_IDENTIFIER in pkt.properties:
            # §1.8 [NODERED4133]: DISCONNECT 0xA1 with this reason string.
            conn.disconnect(0xA1, "Subscription Id is not supported now", "CLIENT_ERROR")
            return
        if len(pkt.subscriptions) > lim.max_filters_per_subscribe:
            # §1.7, §1.9 [SUB8]: more than 8 filters -> connection closed.
            conn.disconnect(
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
        conn.write(codec.encode_suback(b.buf, pkt.packet_id, codes))
        log.info("%s subscribed: %s", conn.client_id, ", ".join(notes))
        for msg, sub in retained:
            b.deliver(session, msg, min(msg.qos, sub.qos), True)

    def _subscribe_one(
        self,
        session: Session,
        filt: str,
        options: int,
        retained: list[tuple[Message, Subscription]],
    ) -> int:
        conn = self.conn
        b = conn.broker
        problem = topics.topic_filter_problem(filt)
        share, bare = topics.share_group(filt)
        if problem is None and bare.startswith("$") and not bare.startswith("$aws/"):
            problem = "reserved topic filter"
        if problem:
            return 0x8F  # §1.8 SUBACK 0x8F Topic Filter invalid
        if conn.principal is not None and not conn.principal.allowed(
            "iot:Subscribe", filt, conn.client_id
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

    def on_unsubscribe(self, pkt: Any) -> None:
        conn = self.conn
        b = conn.broker
        session = conn.session
        if session is None:
            return
        codes = []
        for filt in pkt.filters:
            sub = session.subs.pop(filt, None)
            if sub is not None:
                b.tree.remove(sub)
            codes.append(0)  # §1.8: AWS's UNSUBACK codes have no 0x11
        b._dirty()
        conn.write(codec.encode_unsuback(b.buf, pkt.packet_id, codes))
        log.info("%s unsubscribed: %s", conn.client_id, ", ".join(pkt.filters))


_SUB_NAMES = {
    0: "QoS 0",
    1: "QoS 1",
    0x80: "0x80 quota",
    0x87: "0x87 not authorized",
    0x8F: "0x8F filter invalid",
    0x97: "0x97 quota",
}
