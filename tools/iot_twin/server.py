"""The twin's MQTT 5 broker core: AWS IoT Core's behaviour on asyncio, our codec both ways.

Theory of operation
-------------------
One asyncio task per connection (:meth:`Connection.run`) reads bytes from a
:class:`Stream` (TCP, TLS or WebSocket; see ``listeners.py``), frames them with the
codec's ``PacketReader`` and decodes with ``decode_body``; every answer is encoded with
the codec's ``encode_*`` functions into one buffer the broker owns (the loop is single
threaded, so one buffer serves every connection) and written straight to the target
connection's transport. Routing a PUBLISH to subscribers happens synchronously in the
publisher's task: writes to other connections never await. Backpressure: QoS 1
deliveries are bounded by the receiver's in-flight window (its Receive Maximum, capped
at AWS's 100 [QUOTAS]); QoS 0 deliveries to a connection whose write buffer is over the
high-water mark are dropped (AWS promises QoS 0 "zero or more times" [MQTT-DOC]); the
publisher's own task awaits ``drain()`` for its own acknowledgements.

Timers are loop callbacks, never polling loops: the keep-alive deadline is one
``call_later`` per connection re-armed lazily from the time of the last packet; session
expiry and delayed wills are ``call_later`` handles on the session.

What is AWS and what is MQTT: every rule that differs from plain MQTT 5 cites
``/work/shared/reference/aws-iot-spec.md`` (``§1.6`` etc.) with the source key it gives.
Choices made where AWS's behaviour is UNVERIFIED, and what the twin does not do, are
listed in :data:`DEVIATIONS` (and referred to where they are made).

Identity and authorisation are pluggable: the broker calls ``authenticate(info,
connect)`` once per CONNECT and gets a :class:`Principal` (or a CONNACK reason code),
and asks the principal ``allowed(action, target, client_id)`` for ``iot:Connect``,
``iot:Publish``, ``iot:Subscribe`` and ``iot:Receive``. The reserved service topics
(shadow, jobs, fleet provisioning) are answered by the
:class:`~iot_twin.services.ServiceLayer` the broker is given.

Where things are (one concern per module; this one re-exports their public names):

==================  =====================================================================
``limits``          AWS's numbers, :class:`Limits`, :class:`TokenBucket` (throttles)
``deviations``      :data:`DEVIATIONS`: where the twin differs from AWS, and why
``identity``        :class:`ConnInfo`, :class:`Principal`, the ``authenticate`` hook
``streams``         :class:`Stream`, :class:`TcpStream`, :class:`WsStream`
``session``         :class:`Message`, :class:`Session`
``routing``         :class:`Subscription`, :class:`SubscriptionTree`
``persistence``     sessions and retained messages on disk
``connection``      :class:`Connection`: one client's task, framing, output, dispatch;
                    it composes the parts below, one concern each
``handshake``       :class:`Handshake`: CONNECT to CONNACK, the authorizer's timers
``pubsub``          :class:`PubSub`: the client's PUBLISH, SUBSCRIBE, UNSUBSCRIBE
``reserved``        :class:`ReservedTopics`: shadow / jobs / provisioning requests
``delivery``        :class:`Delivery`: PUBLISH to the client, iot:Receive, in-flight, queue
``lifetime``        :class:`Lifetime`: keep-alive, DISCONNECT, will, session expiry
``broker``          :class:`Broker`: sessions, routing, retained, wills, lifecycle events
``listeners``       the TLS / ALPN / WebSocket / plain front ends
``twin``            the whole endpoint: registry, CA, services, broker, listeners, admin
==================  =====================================================================

Nothing here opens a listening socket; ``listeners.py`` does, and ``twin.py`` wires the
registry, CA, policies and services into a :class:`Broker`.
"""

from __future__ import annotations

from .broker import Broker
from .connection import Connection
from .deviations import DEVIATIONS
from .identity import Authenticate, ConnInfo, Principal, allow_all
from .limits import (
    CONNECTS_PER_S_PER_CLIENT_ID,
    KEEPALIVE_MAX_S,
    KEEPALIVE_MIN_S,
    MAX_CLIENT_ID_BYTES,
    MAX_FILTERS_PER_SUBSCRIBE,
    MAX_PAYLOAD_BYTES,
    MAX_SUBSCRIPTIONS,
    MAXIMUM_PACKET_SIZE,
    MAXIMUM_QOS,
    MESSAGE_EXPIRY_MAX_S,
    MESSAGE_EXPIRY_MIN_S,
    PUBLISHES_PER_S,
    RC_SUBSCRIPTION_QUOTA,
    RECEIVE_MAXIMUM,
    SESSION_EXPIRY_DEFAULT_MAX_S,
    SESSION_EXPIRY_HARD_MAX_S,
    THROUGHPUT_BYTES_PER_S,
    TOPIC_ALIAS_MAXIMUM,
    Limits,
    TokenBucket,
)
from .routing import Subscription, SubscriptionTree
from .session import Message, Session
from .streams import Stream, TcpStream, WsStream

__all__ = [
    "CONNECTS_PER_S_PER_CLIENT_ID",
    "DEVIATIONS",
    "KEEPALIVE_MAX_S",
    "KEEPALIVE_MIN_S",
    "MAXIMUM_PACKET_SIZE",
    "MAXIMUM_QOS",
    "MAX_CLIENT_ID_BYTES",
    "MAX_FILTERS_PER_SUBSCRIBE",
    "MAX_PAYLOAD_BYTES",
    "MAX_SUBSCRIPTIONS",
    "MESSAGE_EXPIRY_MAX_S",
    "MESSAGE_EXPIRY_MIN_S",
    "PUBLISHES_PER_S",
    "RC_SUBSCRIPTION_QUOTA",
    "RECEIVE_MAXIMUM",
    "SESSION_EXPIRY_DEFAULT_MAX_S",
    "SESSION_EXPIRY_HARD_MAX_S",
    "THROUGHPUT_BYTES_PER_S",
    "TOPIC_ALIAS_MAXIMUM",
    "Authenticate",
    "Broker",
    "ConnInfo",
    "Connection",
    "Limits",
    "Message",
    "Principal",
    "Session",
    "Stream",
    "Subscription",
    "SubscriptionTree",
    "TcpStream",
    "TokenBucket",
    "WsStream",
    "allow_all",
]
