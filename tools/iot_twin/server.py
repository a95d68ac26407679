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
(shadow, jobs, fleet provisioning) are answered through :class:`Services`.

Nothing here opens a listening socket; ``listeners.py`` does, and ``twin.py`` wires the
registry, CA, policies and services into a :class:`Broker`.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

from . import persist, topics

log = logging.getLogger("iot_twin")

# --- AWS numbers (aws-iot-spec §0, §1.6) ---------------------------------------------------

RECEIVE_MAXIMUM = 100  # §1.6 observed CONNACK [JS535]; §0 100 in-flight each way [QUOTAS]
MAXIMUM_QOS = 1  # §0 QoS 0 and 1 only [MQTT-DOC]
MAXIMUM_PACKET_SIZE = 149504  # §1.6 observed CONNACK [JS535]
TOPIC_ALIAS_MAXIMUM = 8  # §1.6 [MQTT-DOC], [JS535], [CRTJ618]
MAX_PAYLOAD_BYTES = 131072  # §0 128 KiB per PUBLISH [QUOTAS-OLD], [JS535]
MAX_CLIENT_ID_BYTES = 128  # §1.5 [QUOTAS-OLD]
MAX_FILTERS_PER_SUBSCRIBE = 8  # §1.7 [QUOTAS-OLD], [SUB8]
MAX_SUBSCRIPTIONS = 50  # §1.7 [QUOTAS], [SUB50]
KEEPALIVE_MIN_S = 30  # §1.5 1-29 -> 30 [QUOTAS-OLD]
KEEPALIVE_MAX_S = 1200  # §1.5 0 or >1200 -> 1200 [QUOTAS-OLD]
SESSION_EXPIRY_DEFAULT_MAX_S = 3600  # §1.6 default account maximum 1 h [MQTT-DOC]
SESSION_EXPIRY_HARD_MAX_S = 604800  # §1.6 at most 7 days [MQTT-DOC]
MESSAGE_EXPIRY_MIN_S = 1  # §1.6 0 -> 1 [MQTT-DOC]
MESSAGE_EXPIRY_MAX_S = 604800  # §1.6 larger values clamped [MQTT-DOC]
PUBLISHES_PER_S = 100  # §0 publish requests per second per connection [QUOTAS]
THROUGHPUT_BYTES_PER_S = 512 * 1024  # §0 512 KiB/s per connection, excess delayed [QUOTAS]
CONNECTS_PER_S_PER_CLIENT_ID = 1  # §1.5 1 CONNECT/s per client id [QUOTAS]

# The 51st subscription on a connection: AWS's quotas page says only that it "might be
# rejected" [QUOTAS]; the 0x80 reports [SUB50] come from MQTT 3.1.1 clients, where 0x80 is
# the only failure code. For MQTT 5 the twin answers 0x97 Quota exceeded, which AWS lists
# among its SUBACK codes (§1.8 [MQTT-DOC]); UNVERIFIED, see DEVIATIONS.
RC_SUBSCRIPTION_QUOTA = 0x97

DEVIATIONS = (
    "QoS 2 SUBSCRIBE is granted QoS 1 (SUBACK 0x01): AWS's answer is UNVERIFIED (§1.9); the "
    "SUBACK table allows 'a lower QoS than requested' (§1.8).",
    "A QoS 0 PUBLISH that a QoS 1 one would get a PUBACK error for (0x87 not authorised, "
    "0x90 topic invalid) gets a DISCONNECT with that code: MQTT 5 has no other way to say "
    "it and both codes are in AWS's DISCONNECT list (§1.8); AWS's choice is UNVERIFIED.",
    "Payload over 128 KiB: DISCONNECT 0x97 (reason string PAYLOAD_LIMIT_EXCEEDED, AWS's "
    "CloudWatch reason) then close; AWS is observed to drop the connection (§1.9).",
    "More than 8 filters in one SUBSCRIBE: DISCONNECT 0x97 then close (AWS: connection "
    "closed, §1.9 [SUB8]).",
    "Throttles (on by default, AWS's values [QUOTAS], each configurable in Limits; 0 turns "
    "one off): over 100 inbound PUBLISHes/s on a connection (AWS counts inbound and "
    "outbound) a QoS 1 PUBLISH gets PUBACK 0x97 and a QoS 0 one is dropped (AWS: 'discarded', "
    "the signal is UNVERIFIED); over 512 KiB/s inbound the twin stops reading the connection "
    "until the quota has room (AWS: 'delayed'); over 1 CONNECT/s per client id the CONNACK is "
    "held until the quota has room, or with connect_throttle_refuses the CONNECT gets CONNACK "
    "0x97 (AWS: throttled, mechanism UNVERIFIED). Each quota saves up at most one second's "
    "worth (burst UNVERIFIED). The AWS SDK paces itself to these quotas client-side.",
    "No 10 msg/s replay pacing of queued messages, no 1 h QoS 1 redelivery cutoff.",
    "Queued QoS 1 messages are re-sent after reconnect with DUP=0: AWS does not support the "
    "DUP flag (§1.6); MQTT 5 asks for DUP=1.",
    "No outbound topic aliases: AWS's use of them towards clients is not documented "
    "(§1.6 shows topicAliasMaximumToClient 0 negotiated).",
    "SNI is required by default (the MQTT page [MQTT-DOC]; the protocols page [PROTO] calls it "
    "'highly recommended': §1.3, we follow the stricter one): a ClientHello without the server "
    "name localhost (or with another one) fails the handshake with unrecognized_name. "
    "require_sni=False / --no-sni-check accepts any. Clients dialling 127.0.0.1 must set the "
    "server name to localhost (an IP address is never sent as SNI).",
    "Shared subscriptions are served round-robin among connected members (AWS: random).",
    "The 51st subscription on a connection gets SUBACK 0x97 Quota exceeded (the connection "
    "stays up): AWS documents only that it 'might be rejected' and the connection closed; "
    "0x80 was observed from MQTT 3.1.1 clients, which have no other failure code. The MQTT 5 "
    "code is UNVERIFIED.",
    "UNSUBACK always carries 0x00: AWS's UNSUBACK code list has no 0x11 (§1.8).",
    "An INACTIVE, REVOKED or unregistered certificate (chaining to the twin's CA) gets "
    "CONNACK 0x87 after a successful handshake; whether AWS fails the TLS handshake instead "
    "is not documented. A certificate from another CA fails the handshake.",
    "A certificate set INACTIVE or REVOKED closes its live connections revocation_delay_s "
    "later (default 0; AWS: 'within minutes') with DISCONNECT 0x98 Administrative action "
    "and lifecycle disconnectReason AUTH_ERROR: AWS's code and reason for this are "
    "UNVERIFIED. Policies attached to or detached from a certificate apply to its live "
    "connections' next PUBLISH, SUBSCRIBE or delivery (AWS documents no delay).",
    "iot:ConnectAttributes holds PersistentConnect when Clean Start (clean session) is 0 and "
    "LastWill when the CONNECT has a will [connect-policy]; whether AWS also counts Clean "
    "Start 1 with Session Expiry > 0 as PersistentConnect is UNVERIFIED (the twin does not).",
    "Jobs accepted/rejected answers go to the requester only, subscribed or not (§4.1); "
    "shadow answers go to subscribers (§3.1); fleet provisioning answers go to the "
    "requester only, through its own subscriptions (§5.2).",
    "MQTT over WebSocket: custom authorizers, or SigV4 with static test credentials "
    "(Twin.add_iam_credential / --iam-credential) whose IoT policies stand in for IAM; a bad "
    "signature gets HTTP 403 at the upgrade. The signature is checked with a 15-minute "
    "clock-skew allowance when the URL has no X-Amz-Expires (AWS's allowance UNVERIFIED). The "
    "custom authorizer is invoked at CONNECT (with the upgrade request's headers and query "
    "string in protocolData.http); whether AWS invokes it at the upgrade is UNVERIFIED.",
    "Shadow /update/delta follows the current data-flow page ('When the shadow's state "
    "changes, AWS IoT sends /delta messages'): a reported-only update that leaves a "
    "difference publishes one too; the MQTT topics page's wording can be read as desired-"
    "only (ShadowStore(delta_on_reported_update=False)).",
    "Shadow depth: the current quota page says 8, the current error page 'maximum is 6'. The "
    "twin allows 6 levels inside desired/reported, i.e. 8 keys on a path counted from "
    "'state' (the way a third-party quota summary counts [ESPR]); the two pages agree under "
    "that reading, which is UNVERIFIED. The error text says 'maximum is 6'.",
    "Jobs notify follows the current jobs-notifications page (published when an execution is "
    "queued, changes to IN_PROGRESS or QUEUED, or ends; at most 15 listed); the 2022 page and "
    "the SDKs' docs say 'added to or removed from the list'. Jobs events ($aws/events/job/..., "
    "$aws/events/jobExecution/...) are not published.",
    "Persistent sessions and retained messages are written to the state directory half a "
    "second after they change and at stop; a killed process loses that last half second.",
)


@dataclass
class Limits:
    """The broker's limits; the defaults are AWS IoT Core's (aws-iot-spec §0, §1.6)."""

    receive_maximum: int = RECEIVE_MAXIMUM
    maximum_packet_size: int = MAXIMUM_PACKET_SIZE
    topic_alias_maximum: int = TOPIC_ALIAS_MAXIMUM
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_client_id_bytes: int = MAX_CLIENT_ID_BYTES
    max_filters_per_subscribe: int = MAX_FILTERS_PER_SUBSCRIBE
    max_subscriptions: int = MAX_SUBSCRIPTIONS
    # Test-only override of AWS's 30 s keep-alive floor (see Twin's keepalive_floor_s).
    keepalive_min_s: float = KEEPALIVE_MIN_S
    keepalive_max_s: int = KEEPALIVE_MAX_S
    max_session_expiry_s: int = SESSION_EXPIRY_DEFAULT_MAX_S
    outbound_inflight_max: int = RECEIVE_MAXIMUM
    # Throttles (§0 [QUOTAS]); 0 turns one off. What a client over them sees is in
    # DEVIATIONS: PUBACK 0x97 (QoS 0: dropped), reading paused, CONNACK 0x97.
    publishes_per_s: float = PUBLISHES_PER_S
    throughput_bytes_per_s: float = THROUGHPUT_BYTES_PER_S
    connects_per_s_per_client_id: float = CONNECTS_PER_S_PER_CLIENT_ID
    # Over the CONNECT rate: False holds the CONNACK until the quota has room (the
    # default: quick reconnects, as tests make, just slow down); True refuses (0x97).
    connect_throttle_refuses: bool = False
    # Not AWS numbers: how long a connection may stay silent before CONNECT, how many
    # QoS 1 messages an offline session keeps, when QoS 0 deliveries start being dropped.
    connect_timeout_s: float = 10.0
    max_queued_messages: int = 10000
    write_high_water: int = 1 << 20
    lifecycle_events: bool = True


class TokenBucket:
    """``rate`` tokens a second, at most one second's worth saved up; ``rate`` 0 is
    unlimited. ``take(n, now)`` spends ``n`` and returns how far in debt that leaves the
    bucket, in seconds (0: within the quota)."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = now

    def take(self, n: float, now: float) -> float:
        if not self.rate:
            return 0.0
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= n
        return -self.tokens / self.rate if self.tokens < 0 else 0.0

    def try_take(self, n: float, now: float) -> bool:
        """Spend ``n`` only if that stays within the quota."""
        if self.take(n, now):
            self.tokens += n
            return False
        return True


# --- identity --------------------------------------------------------------------------------


@dataclass
class ConnInfo:
    """What the transport knows about a connection before any MQTT byte is read."""

    listener: str  # "mtls", "alpn-x509", "alpn-custom-auth", "wss", "plain"
    peer: tuple[str, int] | None = None
    tls: bool = False
    alpn: str | None = None
    sni: str | None = None
    cert_der: bytes | None = None  # the verified client certificate
    ws_path: str | None = None
    ws_headers: dict[str, str] = field(default_factory=dict)
    ws_query: str = ""
    sigv4_key_id: str | None = None  # a WebSocket upgrade SigV4-signed with this key


Allow = Callable[[str, str, str], bool]


class Principal:
    """Who a connection is and what it may do.

    ``allow(action, target, client_id)`` answers for ``iot:Connect`` (target: client id),
    ``iot:Publish`` / ``iot:Receive`` (target: topic) and ``iot:Subscribe`` (target: the
    topic filter as sent, ``$share/...`` included); None allows everything.
    ``disconnect_after_s`` closes the connection after that long (custom authorizers,
    aws-iot-spec §2.3).
    """

    def __init__(
        self,
        kind: str,
        name: str,
        *,
        thing: str | None = None,
        allow: Allow | None = None,
        disconnect_after_s: float | None = None,
        refresh: Callable[[], Awaitable[Principal | int] | Principal | int] | None = None,
        refresh_after_s: float | None = None,
        cert_id: str | None = None,
    ) -> None:
        self.kind = kind
        self.cert_id = cert_id
        self.name = name
        self.thing = thing
        self._allow = allow
        self.disconnect_after_s = disconnect_after_s
        self.refresh = refresh
        self.refresh_after_s = refresh_after_s

    def allowed(self, action: str, target: str, client_id: str) -> bool:
        if self._allow is None:
            return True
        try:
            return bool(self._allow(action, target, client_id))
        except Exception:
            log.exception("policy evaluation failed for %s %s %s", action, target, client_id)
            return False

    def __repr__(self) -> str:
        return f"Principal({self.kind!r}, {self.name!r}, thing={self.thing!r})"


Authenticate = Callable[[ConnInfo, Connect], "Awaitable[Principal | int] | Principal | int"]


def allow_all(info: ConnInfo, connect: Connect) -> Principal:
    """An ``authenticate`` that lets everyone in (the default for a bare Broker)."""
    return Principal("anonymous", connect.client_id or "anonymous", thing=connect.client_id)


# --- transports ------------------------------------------------------------------------------


class Stream:
    """The byte pipe a connection runs over (TCP, TLS, or WebSocket messages)."""

    async def read(self) -> bytes:
        """The next chunk of bytes; ``b""`` at end of stream."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def buffered(self) -> int:
        """Bytes written but not yet handed to the kernel."""
        return 0

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        """Flush what is buffered, then close."""
        raise NotImplementedError

    def abort(self) -> None:
        """Close now, dropping what is buffered."""
        self.close()

    def is_closing(self) -> bool:
        return False


class TcpStream(Stream):
    """A stream over asyncio's StreamReader/StreamWriter (TCP or TLS)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, read_size: int = 65536
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.read_size = read_size

    async def read(self) -> bytes:
        return await self.reader.read(self.read_size)

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.writer.write(data)

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


# --- messages, subscriptions, sessions -------------------------------------------------------


class Message:
    """An application message as the broker keeps it.

    ``props`` holds the PUBLISH properties to forward (Topic Alias, Subscription
    Identifier and Message Expiry Interval removed); the expiry is kept as a deadline on
    the loop clock so every delivery carries the remaining lifetime (§1.6 [MQTT-DOC]).
    """

    __slots__ = (
        "expires_at",
        "origin",
        "payload",
        "props",
        "qos",
        "retain",
        "shadow_thing",
        "topic",
        "topic_b",
    )

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        props: dict[int, Any] | None = None,
        expires_at: float | None = None,
        origin: str | None = None,
    ) -> None:
        self.topic = topic
        self.topic_b = topic.encode("utf-8")
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.props = props or None
        self.expires_at = expires_at
        self.origin = origin  # publisher's client id (No Local)
        self.shadow_thing: str | None = None  # counts against the shadow 429 window

    def remaining_s(self, now: float) -> int | None:
        """Whole seconds left (§1.6: 30 s routed after 20 s -> 10; <1 s left -> 0)."""
        if self.expires_at is None:
            return None
        return max(0, math.floor(self.expires_at - now))

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def props_at(self, now: float) -> dict[int, Any] | None:
        if self.expires_at is None:
            return self.props
        out = dict(self.props) if self.props else {}
        out[P.PROP_MESSAGE_EXPIRY_INTERVAL] = self.remaining_s(now)
        return out


class Subscription:
    __slots__ = (
        "filter",
        "no_local",
        "qos",
        "retain_as_published",
        "retain_handling",
        "session",
        "share",
        "topic_filter",
    )

    def __init__(self, session: Session, filt: str, options: int) -> None:
        self.session = session
        self.filter = filt
        self.share, self.topic_filter = topics.share_group(filt)
        self.qos = min(options & 3, MAXIMUM_QOS)
        self.no_local = bool(options & 4)
        self.retain_as_published = bool(options & 8)
        self.retain_handling = (options >> 4) & 3


class _Group:
    """The members of one shared subscription ``$share/{name}/{filter}``."""

    __slots__ = ("members", "turn")

    def __init__(self) -> None:
        self.members: dict[str, Subscription] = {}
        self.turn = 0

    def pick(self) -> Subscription | None:
        """The next member round-robin, preferring connected ones; persistent offline
        members queue when nobody is connected (§1.10 [MQTT-DOC])."""
        subs = list(self.members.values())
        if not subs:
            return None
        n = len(subs)
        for k in range(n):
            sub = subs[(self.turn + k) % n]
            if sub.session.conn is not None:
                self.turn = (self.turn + k + 1) % n
                return sub
        for k in range(n):
            sub = subs[(self.turn + k) % n]
            if sub.session.expiry_s:
                self.turn = (self.turn + k + 1) % n
                return sub
        return None


class _Node:
    __slots__ = ("children", "groups", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.subs: dict[str, Subscription] = {}  # client id -> subscription
        self.groups: dict[str, _Group] = {}  # share name -> group


class SubscriptionTree:
    """Filters indexed level by level, matched the AWS way (aws-iot-spec §1.7).

    ``sensor/#`` matches ``sensor/`` and below but not ``sensor`` [MQTT-DOC], [TOPICS];
    a first level of ``+`` or ``#`` never matches a ``$`` topic [MQTT-4.7.2-1].
    """

    def __init__(self) -> None:
        self.root = _Node()

    def add(self, sub: Subscription) -> None:
        node = self.root
        for level in sub.topic_filter.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                nxt = node.children[level] = _Node()
            node = nxt
        cid = sub.session.client_id
        if sub.share is None:
            node.subs[cid] = sub
        else:
            group = node.groups.get(sub.share)
            if group is None:
                group = node.groups[sub.share] = _Group()
            group.members[cid] = sub

    def remove(self, sub: Subscription) -> None:
        path = [self.root]
        node = self.root
        for level in sub.topic_filter.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                return
            node = nxt
            path.append(node)
        cid = sub.session.client_id
        if sub.share is None:
            if node.subs.get(cid) is sub:
                del node.subs[cid]
        else:
            group = node.groups.get(sub.share)
            if group is not None and group.members.get(cid) is sub:
                del group.members[cid]
                if not group.members:
                    del node.groups[sub.share]
        levels = sub.topic_filter.split("/")
        for i in range(len(levels), 0, -1):
            child = path[i]
            if child.children or child.subs or child.groups:
                break
            del path[i - 1].children[levels[i - 1]]

    def match(self, topic: str) -> tuple[list[dict[str, Subscription]], list[_Group]]:
        """The subscription maps and shared groups whose filters match ``topic``."""
        names = topic.split("/")
        n = len(names)
        dollar = topic.startswith("$")
        found: list[dict[str, Subscription]] = []
        groups: list[_Group] = []
        stack = [(self.root, 0)]
        while stack:
            node, i = stack.pop()
            if i == n:
                if node.subs:
                    found.append(node.subs)
                if node.groups:
                    groups.extend(node.groups.values())
                continue
            children = node.children
            if not (dollar and i == 0):
                hash_node = children.get("#")
                # i < n here: '#' stands for at least one level, so 'a/#' misses 'a' (§1.7).
                if hash_node is not None:
                    if hash_node.subs:
                        found.append(hash_node.subs)
                    if hash_node.groups:
                        groups.extend(hash_node.groups.values())
                plus = children.get("+")
                if plus is not None:
                    stack.append((plus, i + 1))
            child = children.get(names[i])
            if child is not None:
                stack.append((child, i + 1))
        return found, groups


class Session:
    """MQTT session state that outlives a connection when Session Expiry > 0 (§1.10)."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.subs: dict[str, Subscription] = {}
        self.inflight: dict[int, tuple[Message, bool, bool]] = {}  # pid -> (msg, retain, counted)
        self.pending: deque[tuple[Message, bool]] = deque()  # QoS 1 (msg, retain flag)
        self.expiry_s = 0
        self.conn: Connection | None = None
        self.principal: Principal | None = None
        self.expiry_handle: asyncio.TimerHandle | None = None
        self.expires_at_wall: float | None = None
        self.will: codec.Will | None = None
        self.will_handle: asyncio.TimerHandle | None = None
        self.next_pid = 1

    def new_pid(self) -> int:
        pid = self.next_pid
        for _ in range(65535):
            if pid not in self.inflight:
                break
            pid = pid % 65535 + 1
        self.next_pid = pid % 65535 + 1
        return pid


# --- services --------------------------------------------------------------------------------

Responses = list[tuple[str, bytes]]


class Services:
    """The reserved-topic services behind the broker (any of them may be None).

    ``shadows`` is a :class:`~iot_twin.shadow.ShadowStore` (``handle`` plus the
    ``begin``/``end`` 429 window), ``jobs`` a :class:`~iot_twin.jobs.JobStore`,
    ``provisioning`` a :class:`~iot_twin.provisioning.FleetProvisioning`; ``tick()``
    returns messages that timers produced (job timeouts) and runs every few seconds.
    """

    def __init__(
        self,
        shadows: Any = None,
        jobs: Any = None,
        provisioning: Any = None,
        tick: Callable[[], Responses] | None = None,
    ) -> None:
        self.shadows = shadows
        self.jobs = jobs
        self.provisioning = provisioning
        self.tick = tick


# --- the broker ------------------------------------------------------------------------------


class Broker:
    """Sessions, subscriptions, retained messages and routing; one per twin."""

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        authenticate: Authenticate | None = None,
        services: Services | None = None,
        state_dir: Path | str | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.authenticate = authenticate or allow_all
        self.services = services or Services()
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
            if self.services.tick is not None:
                self.emit_all(self.services.tick())
            elif self.services.jobs is not None:
                self.emit_all(self.services.jobs.tick())
            now = _now()
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
            if not conn.may_receive(msg.topic):
                return 0
            return conn.send_message(msg, qos, retain)
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
            _now() + _clamp_expiry(expiry) if expiry is not None else None,
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
            _now() + _clamp_expiry(expiry) if expiry is not None else None,
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
        if msg.shadow_thing is None or self.services.shadows is None:
            return False
        self.services.shadows.begin(msg.shadow_thing)
        return True

    def shadow_done(self, msg: Message) -> None:
        if msg.shadow_thing is not None and self.services.shadows is not None:
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
                    "keep_alive_s": conn.keep_alive,
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
        if self.state_dir is None:
            return
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        mono, wall = _now(), time.time()
        retained = [
            _msg_to_json(m, mono, wall) for m in self.retained.values() if not m.expired(mono)
        ]
        persist.write_json_atomic(self.state_dir / "retained.json", {"retained": retained})
        sessions = []
        for s in self.sessions.values():
            if not s.expiry_s:
                continue
            expires = wall + s.expiry_s
            if s.conn is None and s.expires_at_wall:
                expires = s.expires_at_wall
            queued = [(m, r) for m, r, _c in s.inflight.values()] + list(s.pending)
            sessions.append(
                {
                    "client_id": s.client_id,
                    "expiry_s": s.expiry_s,
                    "expires_at": expires,
                    "subscriptions": [[f, _options(sub)] for f, sub in s.subs.items()],
                    "queued": [
                        dict(_msg_to_json(m, mono, wall), retain_flag=r)
                        for m, r in queued
                        if not m.expired(mono)
                    ],
                }
            )
        persist.write_json_atomic(self.state_dir / "sessions.json", {"sessions": sessions})

    def _load_state(self) -> None:
        if self.state_dir is None:
            return
        mono, wall = _now(), time.time()
        data = persist.read_json(self.state_dir / "retained.json", {}) or {}
        for entry in data.get("retained", []):
            try:
                msg = _msg_from_json(entry, mono, wall)
            except (KeyError, ValueError, TypeError):
                continue
            if not msg.expired(mono):
                self.retained[msg.topic] = msg
        data = persist.read_json(self.state_dir / "sessions.json", {}) or {}
        for entry in data.get("sessions", []):
            try:
                left = float(entry["expires_at"]) - wall
                if left <= 0:
                    continue
                s = Session(entry["client_id"])
                s.expiry_s = int(entry["expiry_s"])
                for filt, options in entry["subscriptions"]:
                    sub = Subscription(s, filt, int(options))
                    s.subs[filt] = sub
                    self.tree.add(sub)
                for q in entry["queued"]:
                    s.pending.append((_msg_from_json(q, mono, wall), bool(q.get("retain_flag"))))
            except (KeyError, ValueError, TypeError):
                log.warning("skipping a damaged persisted session")
                continue
            self.sessions[s.client_id] = s
            s.expires_at_wall = wall + left
            s.expiry_handle = asyncio.get_running_loop().call_later(left, self.expire_session, s)
        if self.retained or self.sessions:
            log.info(
                "restored %d retained messages and %d persistent sessions",
                len(self.retained),
                len(self.sessions),
            )


def _options(sub: Subscription) -> int:
    return codec.sub_options(sub.qos, sub.no_local, sub.retain_as_published, sub.retain_handling)


def _now() -> float:
    return time.monotonic()


def _clamp_expiry(value: int | None) -> int:
    # §1.6 [MQTT-DOC]: minimum 1 s (0 -> 1), maximum 604800 s.
    return min(max(int(value or 0), MESSAGE_EXPIRY_MIN_S), MESSAGE_EXPIRY_MAX_S)


def _props_to_json(props: dict[int, Any] | None) -> list[Any]:
    out: list[Any] = []
    for pid, value in (props or {}).items():
        if isinstance(value, (bytes, bytearray)):
            out.append([pid, {"b64": base64.b64encode(value).decode()}])
        elif pid == P.PROP_USER_PROPERTY:
            out.append([pid, [list(pair) for pair in value]])
        else:
            out.append([pid, value])
    return out


def _props_from_json(items: list[Any]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for pid, value in items:
        if isinstance(value, dict):
            value = base64.b64decode(value["b64"])
        elif pid == P.PROP_USER_PROPERTY:
            value = [tuple(pair) for pair in value]
        out[int(pid)] = value
    return out


def _msg_to_json(m: Message, mono: float, wall: float) -> dict[str, Any]:
    return {
        "topic": m.topic,
        "payload": base64.b64encode(m.payload).decode(),
        "qos": m.qos,
        "retain": m.retain,
        "props": _props_to_json(m.props),
        "expires_at": None if m.expires_at is None else wall + (m.expires_at - mono),
    }


def _msg_from_json(d: dict[str, Any], mono: float, wall: float) -> Message:
    exp = d.get("expires_at")
    return Message(
        d["topic"],
        base64.b64decode(d["payload"]),
        int(d["qos"]),
        bool(d["retain"]),
        _props_from_json(d.get("props") or []),
        None if exp is None else mono + (float(exp) - wall),
    )


# --- one connection --------------------------------------------------------------------------


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
        now = _now()
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
        now = _now()
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
            _now() + _clamp_expiry(expiry) if expiry is not None else None,
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
                if msg is not None and not msg.expired(_now()):
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
        try:
            if isinstance(request, topics.ShadowRequest):
                if svc.shadows is None:
                    return
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
                if svc.jobs is None:
                    return
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
                if svc.provisioning is None:
                    return
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
