"""What the broker keeps between packets: :class:`Message` (an application message with
its expiry deadline on the loop clock) and :class:`Session` (subscriptions, in-flight and
queued QoS 1 messages; it outlives a connection when Session Expiry > 0, §1.10).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P

from .limits import MESSAGE_EXPIRY_MAX_S, MESSAGE_EXPIRY_MIN_S

if TYPE_CHECKING:
    from .connection import Connection
    from .identity import Principal
    from .routing import Subscription


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


def mono_now() -> float:
    """The clock of message expiry deadlines (monotonic seconds)."""
    return time.monotonic()


def clamp_expiry(value: int | None) -> int:
    # §1.6 [MQTT-DOC]: minimum 1 s (0 -> 1), maximum 604800 s.
    return min(max(int(value or 0), MESSAGE_EXPIRY_MIN_S), MESSAGE_EXPIRY_MAX_S)


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
