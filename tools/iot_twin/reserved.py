"""A client's requests on AWS's reserved topics (shadow, jobs, fleet provisioning): handed
to the broker's :class:`~iot_twin.services.ServiceLayer`, and its answers routed as AWS
routes them (shadow responses to subscribers; jobs and provisioning answers to the
requesting connection only).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from . import topics
from .routing import Subscription
from .session import Message

if TYPE_CHECKING:
    from .connection import Connection

Responses = list[tuple[str, bytes]]

log = logging.getLogger("iot_twin")


class ReservedTopics:
    """Shadow, jobs and provisioning requests from one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def handle(self, request: Any, pkt: Any) -> None:
        """Answer ``request`` (parsed from ``pkt``'s topic); never raises."""
        conn = self.conn
        svc = conn.broker.services
        if svc is None:
            return
        try:
            if isinstance(request, topics.ShadowRequest):
                self._shadow(request, svc.shadows.handle(request, pkt.payload))
            elif isinstance(request, topics.JobsRequest):
                self._jobs(request, pkt, svc.jobs.handle(request, pkt.payload))
            elif isinstance(request, topics.ProvisioningRequest):
                principal = conn.principal
                out = svc.provisioning.handle(
                    request,
                    pkt.payload,
                    client_id=conn.client_id,
                    claim_certificate_id=principal.cert_id if principal else None,
                )
                self._provisioning(request, out)
        except Exception:
            log.exception("%s: service error on %s", conn.client_id, pkt.topic)

    def _shadow(self, request: Any, out: Responses) -> None:
        log.info(
            "%s: shadow %s %s%s -> %s",
            self.conn.client_id,
            request.op,
            request.thing,
            "/" + request.shadow if request.shadow else "",
            _outcome(out, request),
        )
        for topic, payload in out:
            msg = Message(topic, payload, 1)
            msg.shadow_thing = request.thing
            self.conn.broker.route(msg)  # §3.1: shadow responses go to subscribers

    def _jobs(self, request: Any, pkt: Any, out: Responses) -> None:
        conn = self.conn
        log.info(
            "%s: jobs %s %s%s -> %s",
            conn.client_id,
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
                conn.delivery.direct(Message(topic, payload, 1), sub.qos if sub else pkt.qos)
            else:
                conn.broker.route(Message(topic, payload, 1))  # notify / notify-next

    def _provisioning(self, request: Any, out: Responses) -> None:
        conn = self.conn
        log.info(
            "%s: provisioning %s%s -> %s",
            conn.client_id,
            request.op,
            " " + request.template if request.template else "",
            _outcome(out, request),
        )
        for topic, payload in out:
            # §5.2 [FP-API]: subscribe before publishing "or you may miss the result":
            # answered to the requesting connection through its own subscriptions; other
            # clients never see keys or tokens.
            sub = self._own_subscription(topic)
            if sub is not None:
                conn.delivery.direct(Message(topic, payload, 1), sub.qos)

    def _own_subscription(self, topic: str) -> Subscription | None:
        session = self.conn.session
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
