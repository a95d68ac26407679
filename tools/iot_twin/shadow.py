"""The Device Shadow service (aws-iot-spec §3): classic and named shadows, no I/O.

``ShadowStore.handle(request, payload)`` takes a parsed request topic and the raw payload
and returns the ``(topic, payload)`` pairs AWS would publish: ``.../accepted`` or
``.../rejected``, and for accepted updates ``update/delta`` and ``update/documents``.
Time comes from an injectable clock (epoch seconds, like every shadow timestamp).

Document rules implemented (§3.2): partial deep merge; ``null`` deletes a key and a
``null`` section deletes the section; empty sections disappear; arrays are values
(replaced whole, never containing ``null``); per-leaf metadata timestamps, arrays get a
per-element list; ``version`` increments on every accepted update and survives a delete
for 48 hours; ``clientToken`` (at most 64 bytes) is echoed.

Throttling (§3.4: 10 in-flight per thing, else 429) is an admission counter the endpoint
drives: :meth:`ShadowStore.begin` when it publishes a response it awaits a PUBACK for,
:meth:`ShadowStore.end` when the PUBACK comes; requests arriving while ``in_flight``
is at the limit are rejected with 429.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import persist
from .topics import ShadowRequest, shadow_topic

Clock = Callable[[], float]
Responses = list[tuple[str, bytes]]
Json = Any

MAX_CLIENT_TOKEN_BYTES = 64  # [SHADOW-DOC]
MAX_STATE_BYTES = 8192  # [QUOTAS-OLD] 8 KB of desired+reported, metadata excluded
# ⚠ AWS pages say 5, 6 and 8 (§3.4). The current quota page's "maximum depth of JSON
# device state documents: 8" counts keys on the path from "state" (a third-party reading
# of it: state.reported.params.<device>.<param> is 5 [ESPR]); the current error page's
# "maximum is 6" then counts inside desired/reported: the same limit. We count inside a
# section, 6 (UNVERIFIED reading, see DEVIATIONS); configurable.
DEFAULT_MAX_DEPTH = 6
MAX_IN_FLIGHT = 10  # [QUOTAS-OLD], [SHADOW-ERR]
VERSION_MEMORY_S = 48 * 3600  # [SHADOW-FLOW] recreate within 48 h keeps numbering

SECTIONS = ("desired", "reported")


class ShadowError(Exception):
    """A request AWS rejects: ``code`` is the HTTP-style status of §3.3."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


def _bad_json(_constant: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _dumps(obj: Json) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_equal(a: Json, b: Json) -> bool:
    """JSON value equality: ``true`` is not ``1`` (Python's ``==`` says it is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return bool(a == b)


def depth(value: Json) -> int:
    """Levels of nesting: ``1`` for ``{"a": 1}``, ``2`` for ``{"a": {"b": 1}}``.

    Arrays count as a level like objects do (UNVERIFIED: AWS does not say).
    """
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def _null_in_array(value: Json, in_array: bool = False) -> bool:
    if value is None:
        return in_array
    if isinstance(value, dict):
        return any(_null_in_array(v, in_array) for v in value.values())
    if isinstance(value, list):
        return any(_null_in_array(v, True) for v in value)
    return False


def strip_nulls(value: Json) -> Json:
    """A copy of ``value`` with every ``null`` member of every object removed."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def metadata_for(value: Json, timestamp: int) -> Json:
    """Metadata mirroring ``value``: ``{"timestamp": t}`` per leaf, a list for arrays [GO213]."""
    if isinstance(value, dict):
        return {k: metadata_for(v, timestamp) for k, v in value.items()}
    if isinstance(value, list):
        return [metadata_for(v, timestamp) for v in value]
    return {"timestamp": timestamp}


def merge(state: dict[str, Json], meta: dict[str, Json], patch: dict[str, Json], ts: int) -> None:
    """Deep-merge ``patch`` into ``state`` in place, keeping ``meta`` in step (§3.2)."""
    for key, value in patch.items():
        if value is None:
            state.pop(key, None)
            meta.pop(key, None)
        elif isinstance(value, dict) and isinstance(state.get(key), dict):
            if not isinstance(meta.get(key), dict):
                meta[key] = metadata_for(state[key], ts)
            merge(state[key], meta[key], value, ts)
        else:
            state[key] = strip_nulls(copy.deepcopy(value))
            meta[key] = metadata_for(state[key], ts)


def delta(desired: dict[str, Json], reported: dict[str, Json]) -> dict[str, Json]:
    """Desired keys whose value differs from reported, recursing into objects (§3.2).

    Reported-only keys never appear; arrays are compared whole; an object whose nested
    delta is empty is left out.
    """
    return delta_with_metadata(desired, reported, {})[0]


def delta_with_metadata(
    desired: dict[str, Json], reported: dict[str, Json], desired_meta: dict[str, Json]
) -> tuple[dict[str, Json], dict[str, Json]]:
    """:func:`delta` and its metadata, taken from the desired metadata at the same paths."""
    out: dict[str, Json] = {}
    out_meta: dict[str, Json] = {}
    for key, dv in desired.items():
        dmeta = desired_meta.get(key) if isinstance(desired_meta, dict) else None
        if key not in reported:
            out[key] = copy.deepcopy(dv)
            out_meta[key] = copy.deepcopy(dmeta)
            continue
        rv = reported[key]
        if isinstance(dv, dict) and isinstance(rv, dict):
            sub, sub_meta = delta_with_metadata(dv, rv, dmeta if isinstance(dmeta, dict) else {})
            if sub:
                out[key] = sub
                out_meta[key] = sub_meta
        elif not json_equal(dv, rv):
            out[key] = copy.deepcopy(dv)
            out_meta[key] = copy.deepcopy(dmeta)
    return out, out_meta


class _Shadow:
    """One stored shadow; ``deleted_at`` set means a tombstone remembering the version."""

    __slots__ = ("deleted_at", "metadata", "state", "version")

    def __init__(self) -> None:
        self.state: dict[str, dict[str, Json]] = {}
        self.metadata: dict[str, dict[str, Json]] = {}
        self.version = 0
        self.deleted_at: int | None = None

    @property
    def exists(self) -> bool:
        return self.deleted_at is None

    def snapshot(self) -> dict[str, Json]:
        """``{"state", "metadata", "version"}`` as in ``update/documents`` (no delta)."""
        return {
            "state": copy.deepcopy(self.state),
            "metadata": copy.deepcopy(self.metadata),
            "version": self.version,
        }

    def to_json(self) -> dict[str, Json]:
        return {**self.snapshot(), "deletedAt": self.deleted_at}

    @classmethod
    def from_json(cls, data: dict[str, Json]) -> _Shadow:
        s = cls()
        s.state, s.metadata = data["state"], data["metadata"]
        s.version, s.deleted_at = data["version"], data.get("deletedAt")
        return s


class ShadowStore:
    """All shadows of all things, with AWS's request/response behaviour.

    ``path``: a JSON file (usually ``<TWIN_DATA>/shadows.json``) loaded at construction
    and rewritten after every change; None keeps the store in memory.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_state_bytes: int = MAX_STATE_BYTES,
        max_in_flight: int = MAX_IN_FLIGHT,
        version_memory_s: int = VERSION_MEMORY_S,
        delta_on_reported_update: bool = True,
        path: Path | str | None = None,
    ) -> None:
        self.clock = clock
        self.max_depth = max_depth
        self.max_state_bytes = max_state_bytes
        self.max_in_flight = max_in_flight
        self.version_memory_s = version_memory_s
        self.delta_on_reported_update = delta_on_reported_update
        self.path = Path(path) if path is not None else None
        self._shadows: dict[tuple[str, str | None], _Shadow] = {}
        self._in_flight: dict[str, int] = {}
        if self.path is not None:
            data = persist.read_json(self.path)
            if data is not None:
                self._load(data)

    # --- admission (429) -------------------------------------------------------------

    def begin(self, thing: str) -> None:
        """Count one response for ``thing`` as in flight (published, not yet acknowledged)."""
        self._in_flight[thing] = self._in_flight.get(thing, 0) + 1

    def end(self, thing: str) -> None:
        """Count one in-flight response for ``thing`` as acknowledged."""
        n = self._in_flight.get(thing, 0) - 1
        if n > 0:
            self._in_flight[thing] = n
        else:
            self._in_flight.pop(thing, None)

    def in_flight(self, thing: str) -> int:
        """How many responses for ``thing`` are in flight."""
        return self._in_flight.get(thing, 0)

    # --- requests --------------------------------------------------------------------

    def handle(self, request: ShadowRequest, payload: bytes) -> Responses:
        """Answer a shadow request; returns the messages to publish, in order."""
        now = int(self.clock())
        token: str | None = None
        try:
            body, token = self._decode(payload, request.op)
            if self.in_flight(request.thing) >= self.max_in_flight:
                # [SHADOW-ERR] 429; the message text is not documented.
                raise ShadowError(429, "Too Many Requests")
            if request.op == "get":
                return self._get(request, now, token)
            if request.op == "delete":
                return self._delete(request, now, token)
            return self._update(request, body, now, token)
        except ShadowError as e:
            return [(request.rejected, self.error_payload(e.code, e.message, now, token))]

    @staticmethod
    def error_payload(code: int, message: str, timestamp: int, token: str | None) -> bytes:
        """The error document of [SHADOW-DOC]: code, message, timestamp, clientToken."""
        doc: dict[str, Json] = {"code": code, "message": message, "timestamp": timestamp}
        if token is not None:
            doc["clientToken"] = token
        return _dumps(doc)

    def _decode(self, payload: bytes, op: str) -> tuple[dict[str, Json], str | None]:
        if not payload.strip() and op != "update":
            return {}, None  # get/delete take an empty payload [SHADOW-MQTT]
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            raise ShadowError(
                415, "Unsupported documented encoding; supported encoding is UTF-8"
            ) from None
        try:
            body = json.loads(text, parse_constant=_bad_json)
        except ValueError:
            if op == "delete":
                return {}, None  # "content ignored" [SHADOW-MQTT]
            raise ShadowError(400, "Invalid JSON") from None
        if not isinstance(body, dict):
            if op == "delete":
                return {}, None
            raise ShadowError(400, "Invalid JSON")
        token = body.get("clientToken")
        if token is not None and (
            not isinstance(token, str) or len(token.encode("utf-8")) > MAX_CLIENT_TOKEN_BYTES
        ):
            raise ShadowError(400, "Invalid clientToken")
        return body, token

    def _stored(self, request: ShadowRequest) -> _Shadow | None:
        s = self._shadows.get((request.thing, request.shadow))
        return s if s is not None and s.exists else None

    @staticmethod
    def _not_found(request: ShadowRequest) -> ShadowError:
        # [SHADOW-404] real capture: "No shadow exists with name: 'HelloWorld'" for the
        # classic shadow of thing HelloWorld; named shadows are reported by their name.
        name = request.shadow if request.shadow is not None else request.thing
        return ShadowError(404, f"No shadow exists with name: '{name}'")

    def _get(self, request: ShadowRequest, now: int, token: str | None) -> Responses:
        s = self._stored(request)
        if s is None:
            raise self._not_found(request)
        doc = self._full_document(s)
        doc["timestamp"] = now
        if token is not None:
            doc["clientToken"] = token
        return [(request.accepted, _dumps(doc))]

    def _delete(self, request: ShadowRequest, now: int, token: str | None) -> Responses:
        s = self._stored(request)
        if s is None:
            raise self._not_found(request)
        # [SHADOW-FLOW] the version survives the delete; the document goes.
        s.state, s.metadata, s.deleted_at = {}, {}, now
        self._save()
        doc: dict[str, Json] = {"version": s.version, "timestamp": now}
        if token is not None:
            doc["clientToken"] = token
        return [(request.accepted, _dumps(doc))]

    def _validate_update(self, body: dict[str, Json]) -> dict[str, Json] | None:
        """The request's state (None for ``"state": null``), or raise the 400 AWS sends."""
        if "version" in body and (
            not isinstance(body["version"], int) or isinstance(body["version"], bool)
        ):
            raise ShadowError(400, "Invalid version")
        if "state" not in body:
            raise ShadowError(400, "Missing required node: state")
        state = body["state"]
        if state is None:
            return None
        if not isinstance(state, dict):
            raise ShadowError(400, "State node must be an object")
        for key in state:
            if key not in SECTIONS:
                raise ShadowError(400, f"State contains an invalid node: '{key}'")
        for section in SECTIONS:
            value = state.get(section)
            if value is not None and not isinstance(value, dict):
                raise ShadowError(400, f"{section.capitalize()} node must be an object")
            if value is not None and depth(value) > self.max_depth:
                raise ShadowError(
                    400,
                    f"JSON contains too many levels of nesting; maximum is {self.max_depth}",
                )
            if _null_in_array(value):
                # [SHADOW-DOC] "Arrays can't have null values ... will be rejected";
                # the message text is UNVERIFIED.
                raise ShadowError(400, "Invalid JSON")
        return state

    def _update(
        self, request: ShadowRequest, body: dict[str, Json], now: int, token: str | None
    ) -> Responses:
        state = self._validate_update(body)
        key = (request.thing, request.shadow)
        stored = self._shadows.get(key)
        existed = stored is not None and stored.exists
        base_version = 0
        if stored is not None and (
            stored.exists
            or (stored.deleted_at is not None and now - stored.deleted_at <= self.version_memory_s)
        ):
            base_version = stored.version
        if "version" in body and body["version"] != base_version:
            raise ShadowError(409, "Version conflict")

        new = _Shadow()
        previous = None
        if existed and stored is not None:
            new.state, new.metadata = copy.deepcopy(stored.state), copy.deepcopy(stored.metadata)
            previous = stored.snapshot()
        if state is None:
            new.state, new.metadata = {}, {}  # "state": null empties the document
        else:
            for section in SECTIONS:
                if section not in state:
                    continue
                patch = state[section]
                if patch is None:
                    new.state.pop(section, None)
                    new.metadata.pop(section, None)
                    continue
                sec = new.state.setdefault(section, {})
                sec_meta = new.metadata.setdefault(section, {})
                merge(sec, sec_meta, patch, now)
                if not sec:
                    # [SHADOW-DOC] a shadow has a section only if it has that state.
                    del new.state[section]
                    new.metadata.pop(section, None)
        size = len(_dumps(new.state))
        if size > self.max_state_bytes:
            # Real text captured in [ESP70] (two spaces after the full stop).
            raise ShadowError(
                413,
                f"Json document too large.  Size is {size}, max allowed: {self.max_state_bytes}",
            )
        new.version = base_version + 1
        self._shadows[key] = new
        self._save()
        return self._update_responses(request, state, new, previous, now, token)

    def _update_responses(
        self,
        request: ShadowRequest,
        state: dict[str, Json] | None,
        new: _Shadow,
        previous: dict[str, Json] | None,
        now: int,
        token: str | None,
    ) -> Responses:
        def with_token(doc: dict[str, Json]) -> bytes:
            if token is not None:
                doc["clientToken"] = token
            return _dumps(doc)

        # /update/accepted echoes only the sections and fields sent [SHADOW-DOC].
        accepted = {
            "state": copy.deepcopy(state),
            "metadata": metadata_for(state, now) if state is not None else {},
            "version": new.version,
            "timestamp": now,
        }
        out: Responses = [(request.accepted, with_token(accepted))]

        # The current data-flow page [SHADOW-FLOW]: "When the shadow's state changes, AWS
        # IoT sends /delta messages ... with the difference between the desired and the
        # reported states": a reported-only update that leaves a difference publishes one
        # too (delta_on_reported_update=False restores the older desired-only reading).
        touched_desired = state is not None and isinstance(state.get("desired"), dict)
        if touched_desired or (self.delta_on_reported_update and state is not None):
            d, d_meta = delta_with_metadata(
                new.state.get("desired", {}),
                new.state.get("reported", {}),
                new.metadata.get("desired", {}),
            )
            if d:
                # All currently differing desired keys, not only the updated ones (§3.2).
                delta_doc = {
                    "version": new.version,
                    "timestamp": now,
                    "state": d,
                    "metadata": d_meta,
                }
                out.append(
                    (
                        shadow_topic(request.thing, request.shadow, "update/delta"),
                        with_token(delta_doc),
                    )
                )

        documents: dict[str, Json] = {}
        if previous is not None:
            documents["previous"] = previous
        documents["current"] = new.snapshot()
        documents["timestamp"] = now
        out.append(
            (
                shadow_topic(request.thing, request.shadow, "update/documents"),
                with_token(documents),
            )
        )
        return out

    # --- inspection and persistence ---------------------------------------------------

    @staticmethod
    def _full_document(s: _Shadow) -> dict[str, Json]:
        state = copy.deepcopy(s.state)
        d = delta(s.state.get("desired", {}), s.state.get("reported", {}))
        if d:
            state["delta"] = d
        return {"state": state, "metadata": copy.deepcopy(s.metadata), "version": s.version}

    def document(self, thing: str, shadow: str | None = None) -> dict[str, Json] | None:
        """The shadow as ``get/accepted`` would show it (without timestamp), or None."""
        s = self._shadows.get((thing, shadow))
        return self._full_document(s) if s is not None and s.exists else None

    def shadow_names(self, thing: str) -> list[str]:
        """Names of the existing named shadows of ``thing``, sorted."""
        return sorted(
            name for (t, name), s in self._shadows.items() if t == thing and name and s.exists
        )

    def to_json(self) -> dict[str, Json]:
        """Everything needed to rebuild the store (in-flight counters excluded)."""
        return {
            "shadows": [
                {"thing": t, "shadow": name, **s.to_json()}
                for (t, name), s in sorted(
                    self._shadows.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
                )
            ]
        }

    @classmethod
    def from_json(cls, data: dict[str, Json], **kwargs: Any) -> ShadowStore:
        """A store holding what :meth:`to_json` returned; ``kwargs`` as for the constructor."""
        store = cls(**kwargs)
        store._load(data)
        return store

    def _load(self, data: dict[str, Json]) -> None:
        self._shadows = {
            (entry["thing"], entry["shadow"]): _Shadow.from_json(entry)
            for entry in data.get("shadows", [])
        }

    def _save(self) -> None:
        if self.path is not None:
            persist.write_json_atomic(self.path, self.to_json())
