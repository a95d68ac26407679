"""Who a connection is, before and after CONNECT: :class:`ConnInfo` (what the transport
knew: listener, peer, TLS facts, the WebSocket upgrade request) and :class:`Principal`
(what the ``authenticate`` hook decided, and what it may do).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mqtt_v5._server_codec import (
    Connect,
)

log = logging.getLogger("iot_twin")


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


class TopicVerdicts:
    """One connection's policy answers for one action (``iot:Publish``,
    ``iot:Receive``), by topic: each topic asked once, until ``clear()`` (the
    connection's principal or policy changed). Call it with a topic: True if allowed.
    At most 1,024 topics are kept (then it starts again)."""

    def __init__(self, conn: Any, action: str) -> None:
        self.conn = conn
        self.action = action
        self._cache: dict[str, bool] = {}

    def __call__(self, topic: str) -> bool:
        cache = self._cache
        ok = cache.get(topic)
        if ok is None:
            conn = self.conn
            ok = conn.principal is None or conn.principal.allowed(
                self.action, topic, conn.client_id
            )
            if len(cache) > 1024:
                cache.clear()
            cache[topic] = ok
        return ok

    def clear(self) -> None:
        self._cache.clear()


Authenticate = Callable[[ConnInfo, Connect], "Awaitable[Principal | int] | Principal | int"]


def allow_all(info: ConnInfo, connect: Connect) -> Principal:
    """An ``authenticate`` that lets everyone in (the default for a bare Broker)."""
    return Principal("anonymous", connect.client_id or "anonymous", thing=connect.client_id)
