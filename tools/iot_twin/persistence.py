"""Persistent sessions and retained messages on disk (``sessions.json``,
``retained.json`` in the state directory): JSON with payloads and binary properties in
base64 and expiry deadlines as wall-clock times, so a restart resumes them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import TYPE_CHECKING, Any

from mqtt_v5 import properties as P

from . import persist
from .routing import Subscription, sub_options
from .session import Message, Session, mono_now

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("iot_twin")


def props_to_json(props: dict[int, Any] | None) -> list[Any]:
    out: list[Any] = []
    for pid, value in (props or {}).items():
        if isinstance(value, (bytes, bytearray)):
            out.append([pid, {"b64": base64.b64encode(value).decode()}])
        elif pid == P.PROP_USER_PROPERTY:
            out.append([pid, [list(pair) for pair in value]])
        else:
            out.append([pid, value])
    return out


def props_from_json(items: list[Any]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for pid, value in items:
        if isinstance(value, dict):
            value = base64.b64decode(value["b64"])
        elif pid == P.PROP_USER_PROPERTY:
            value = [tuple(pair) for pair in value]
        out[int(pid)] = value
    return out


def msg_to_json(m: Message, mono: float, wall: float) -> dict[str, Any]:
    return {
        "topic": m.topic,
        "payload": base64.b64encode(m.payload).decode(),
        "qos": m.qos,
        "retain": m.retain,
        "props": props_to_json(m.props),
        "expires_at": None if m.expires_at is None else wall + (m.expires_at - mono),
    }


def msg_from_json(d: dict[str, Any], mono: float, wall: float) -> Message:
    exp = d.get("expires_at")
    return Message(
        d["topic"],
        base64.b64decode(d["payload"]),
        int(d["qos"]),
        bool(d["retain"]),
        props_from_json(d.get("props") or []),
        None if exp is None else mono + (float(exp) - wall),
    )


def save_state(broker: Broker) -> None:
    """Write retained messages and persistent sessions to the state directory."""
    if broker.state_dir is None:
        return
    mono, wall = mono_now(), time.time()
    retained = [
        msg_to_json(m, mono, wall) for m in broker.retained.values() if not m.expired(mono)
    ]
    persist.write_json_atomic(broker.state_dir / "retained.json", {"retained": retained})
    sessions = []
    for s in broker.sessions.values():
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
                "subscriptions": [[f, sub_options(sub)] for f, sub in s.subs.items()],
                "queued": [
                    dict(msg_to_json(m, mono, wall), retain_flag=r)
                    for m, r in queued
                    if not m.expired(mono)
                ],
            }
        )
    persist.write_json_atomic(broker.state_dir / "sessions.json", {"sessions": sessions})


def load_state(broker: Broker) -> None:
    """Restore what save_state wrote (expired entries are dropped)."""
    if broker.state_dir is None:
        return
    mono, wall = mono_now(), time.time()
    data = persist.read_json(broker.state_dir / "retained.json", {}) or {}
    for entry in data.get("retained", []):
        try:
            msg = msg_from_json(entry, mono, wall)
        except (KeyError, ValueError, TypeError):
            continue
        if not msg.expired(mono):
            broker.retained[msg.topic] = msg
    data = persist.read_json(broker.state_dir / "sessions.json", {}) or {}
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
                broker.tree.add(sub)
            for q in entry["queued"]:
                s.pending.append((msg_from_json(q, mono, wall), bool(q.get("retain_flag"))))
        except (KeyError, ValueError, TypeError):
            log.warning("skipping a damaged persisted session")
            continue
        broker.sessions[s.client_id] = s
        s.expires_at_wall = wall + left
        s.expiry_handle = asyncio.get_running_loop().call_later(left, broker.expire_session, s)
    if broker.retained or broker.sessions:
        log.info(
            "restored %d retained messages and %d persistent sessions",
            len(broker.retained),
            len(broker.sessions),
        )
