"""Device Shadow service (aws-iot-spec §3), with moto's FakeShadow as a delta/state oracle."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_twin import shadow as sh
from iot_twin.shadow import ShadowStore
from iot_twin.topics import ShadowRequest, parse_shadow_request

T0 = 1_700_000_000


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return float(self.now)


def req(op: str, thing: str = "t1", name: str | None = None) -> ShadowRequest:
    base = f"$aws/things/{thing}/shadow" + (f"/name/{name}" if name else "")
    r = parse_shadow_request(f"{base}/{op}")
    assert r is not None
    return r


def send(store: ShadowStore, op: str, body: Any = None, **kw: Any) -> dict[str, Any]:
    """Send one request; return {topic: decoded payload}."""
    payload = (
        b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    )
    out = store.handle(req(op, **kw), payload)
    topics = [t for t, _ in out]
    assert len(topics) == len(set(topics))
    return {t: json.loads(p) for t, p in out}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> ShadowStore:
    return ShadowStore(clock=clock)


P = "$aws/things/t1/shadow"


# --- documents --------------------------------------------------------------------------


def test_first_update_documents(store: ShadowStore) -> None:
    """§3.2: accepted echoes the request with per-leaf metadata; delta; documents (no previous)."""
    out = send(store, "update", {"state": {"desired": {"color": "red"}}, "clientToken": "tok"})
    assert out == {
        f"{P}/update/accepted": {
            "state": {"desired": {"color": "red"}},
            "metadata": {"desired": {"color": {"timestamp": T0}}},
            "version": 1,
            "timestamp": T0,
            "clientToken": "tok",
        },
        f"{P}/update/delta": {
            "version": 1,
            "timestamp": T0,
            "state": {"color": "red"},
            "metadata": {"color": {"timestamp": T0}},
            "clientToken": "tok",
        },
        f"{P}/update/documents": {
            "current": {
                "state": {"desired": {"color": "red"}},
                "metadata": {"desired": {"color": {"timestamp": T0}}},
                "version": 1,
            },
            "timestamp": T0,
            "clientToken": "tok",
        },
    }


def test_get_after_updates_has_delta_and_old_metadata(store: ShadowStore, clock: Clock) -> None:
    """§3.2: get shows desired, reported, delta; metadata keeps each leaf's own timestamp."""
    send(store, "update", {"state": {"desired": {"a": 1, "b": {"c": [1, 2]}, "d": "x"}}})
    clock.now += 10
    send(store, "update", {"state": {"reported": {"a": 1, "b": {"c": [1]}, "e": 5}}})
    clock.now += 5
    out = send(store, "get", {"clientToken": "g"})
    assert out == {
        f"{P}/get/accepted": {
            "state": {
                "desired": {"a": 1, "b": {"c": [1, 2]}, "d": "x"},
                "reported": {"a": 1, "b": {"c": [1]}, "e": 5},
                # arrays compared whole; reported-only 'e' never in the delta
                "delta": {"b": {"c": [1, 2]}, "d": "x"},
            },
            "metadata": {
                "desired": {
                    "a": {"timestamp": T0},
                    "b": {"c": [{"timestamp": T0}, {"timestamp": T0}]},  # [GO213]
                    "d": {"timestamp": T0},
                },
                "reported": {
                    "a": {"timestamp": T0 + 10},
                    "b": {"c": [{"timestamp": T0 + 10}]},
                    "e": {"timestamp": T0 + 10},
                },
            },
            "version": 2,
            "timestamp": T0 + 15,
            "clientToken": "g",
        }
    }


def test_documents_carry_previous_and_current(store: ShadowStore, clock: Clock) -> None:
    send(store, "update", {"state": {"desired": {"a": 1}}})
    clock.now += 1
    out = send(store, "update", {"state": {"reported": {"a": 2}}})
    docs = out[f"{P}/update/documents"]
    assert docs["previous"]["version"] == 1
    assert docs["previous"]["state"] == {"desired": {"a": 1}}
    assert docs["current"]["state"] == {"desired": {"a": 1}, "reported": {"a": 2}}
    assert "delta" not in docs["current"]["state"]  # §3.2 no delta in documents
    assert docs["timestamp"] == T0 + 1


def test_delta_is_published_for_desired_updates_with_all_differences(store: ShadowStore) -> None:
    """§3.2: /update/delta holds every differing desired key, not only the updated ones."""
    send(store, "update", {"state": {"desired": {"a": 1}}})
    out = send(store, "update", {"state": {"desired": {"b": 2}}})
    assert out[f"{P}/update/delta"]["state"] == {"a": 1, "b": 2}
    # A reported-only update that leaves a difference publishes the delta too (the current
    # data-flow page: "When the shadow's state changes, AWS IoT sends /delta messages").
    out = send(store, "update", {"state": {"reported": {"a": 1}}})
    assert out[f"{P}/update/delta"]["state"] == {"b": 2}
    # Desired matching reported: no delta message.
    out = send(store, "update", {"state": {"desired": {"b": 2}, "reported": {"b": 2}}})
    assert f"{P}/update/delta" not in out


def test_delta_on_reported_update_option(clock: Clock) -> None:
    store = ShadowStore(clock=clock)  # the default follows the current data-flow page
    send(store, "update", {"state": {"desired": {"a": 1}}})
    out = send(store, "update", {"state": {"reported": {"a": 3}}})
    assert out[f"{P}/update/delta"]["state"] == {"a": 1}
    # The older, desired-only reading stays available.
    older = ShadowStore(clock=clock, delta_on_reported_update=False)
    send(older, "update", {"state": {"desired": {"a": 1}}})
    out = send(older, "update", {"state": {"reported": {"a": 3}}})
    assert f"{P}/update/delta" not in out


def test_json_booleans_are_not_numbers(store: ShadowStore) -> None:
    """JSON `true` differs from `1` although Python says True == 1."""
    send(
        store,
        "update",
        {"state": {"desired": {"on": True, "n": 1.0}, "reported": {"on": 1, "n": 1}}},
    )
    assert store.document("t1")["state"]["delta"] == {"on": True}  # type: ignore[index]


def test_null_deletes_keys_and_sections(store: ShadowStore) -> None:
    """§3.2: null deletes a key; a null section deletes the section; empty sections vanish."""
    send(
        store,
        "update",
        {"state": {"desired": {"a": 1, "b": {"c": 1, "d": 2}}, "reported": {"x": 1}}},
    )
    send(store, "update", {"state": {"desired": {"b": {"c": None}}}})
    assert store.document("t1")["state"]["desired"] == {"a": 1, "b": {"d": 2}}  # type: ignore[index]
    assert "c" not in store.document("t1")["metadata"]["desired"]["b"]  # type: ignore[index]
    send(store, "update", {"state": {"desired": None}})
    doc = store.document("t1")
    assert doc is not None
    assert doc["state"] == {"reported": {"x": 1}}
    assert doc["metadata"] == {"reported": {"x": {"timestamp": T0}}}
    send(store, "update", {"state": {"reported": {"x": None}}})
    assert store.document("t1")["state"] == {}  # type: ignore[index]


def test_state_null_empties_but_keeps_the_shadow(store: ShadowStore) -> None:
    """§3.2 [SHADOW-FLOW]: state null does not delete the shadow; version increments."""
    send(store, "update", {"state": {"desired": {"a": 1}}})
    out = send(store, "update", {"state": None})
    assert out[f"{P}/update/accepted"]["state"] is None
    doc = store.document("t1")
    assert doc == {"state": {}, "metadata": {}, "version": 2}


def test_arrays_are_replaced_whole(store: ShadowStore) -> None:
    """§3.2 arrays are atomic values."""
    send(store, "update", {"state": {"desired": {"colors": ["RED", "GREEN", "BLUE"]}}})
    send(store, "update", {"state": {"desired": {"colors": ["RED"]}}})
    assert store.document("t1")["state"]["desired"] == {"colors": ["RED"]}  # type: ignore[index]


def test_object_replacing_a_value_and_back(store: ShadowStore) -> None:
    send(store, "update", {"state": {"desired": {"a": 1}}})
    send(store, "update", {"state": {"desired": {"a": {"b": 2, "n": None}}}})
    assert store.document("t1")["state"]["desired"] == {"a": {"b": 2}}  # type: ignore[index]
    send(store, "update", {"state": {"desired": {"a": "s"}}})
    doc = store.document("t1")
    assert doc is not None
    assert doc["state"]["desired"] == {"a": "s"}
    assert doc["metadata"]["desired"] == {"a": {"timestamp": T0}}


# --- errors -----------------------------------------------------------------------------


def rejected(out: dict[str, Any], op: str = "update", prefix: str = P) -> dict[str, Any]:
    assert list(out) == [f"{prefix}/{op}/rejected"]
    return out[f"{prefix}/{op}/rejected"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Invalid JSON"),
        (b"[1,2]", "Invalid JSON"),
        (b'{"state": {"desired": {"a": NaN}}}', "Invalid JSON"),
        ({"clientToken": "c"}, "Missing required node: state"),
        ({"state": 5}, "State node must be an object"),
        ({"state": {"desired": [1]}}, "Desired node must be an object"),
        ({"state": {"reported": "x"}}, "Reported node must be an object"),
        ({"state": {"delta": {"a": 1}}}, "State contains an invalid node: 'delta'"),
        ({"state": {"desired": {"a": 1}}, "version": "1"}, "Invalid version"),
        ({"state": {"desired": {"a": 1}}, "version": True}, "Invalid version"),
        ({"state": {"desired": {"a": [1, None]}}}, "Invalid JSON"),
        ({"state": {"desired": {"a": 1}}, "clientToken": "x" * 65}, "Invalid clientToken"),
        ({"state": {"desired": {"a": 1}}, "clientToken": 7}, "Invalid clientToken"),
    ],
)
def test_bad_requests_get_400(store: ShadowStore, body: Any, message: str) -> None:
    """§3.3 400 messages (exact texts from the error table)."""
    err = rejected(send(store, "update", body))
    assert err["code"] == 400
    assert err["message"] == message
    assert err["timestamp"] == T0
    assert store.document("t1") is None


def test_error_echoes_a_valid_client_token(store: ShadowStore) -> None:
    """§3.2 error document: code, message, timestamp, clientToken when sent."""
    out = store.handle(req("update"), b'{"clientToken": "abc", "state": 3}')
    assert json.loads(out[0][1]) == {
        "code": 400,
        "message": "State node must be an object",
        "timestamp": T0,
        "clientToken": "abc",
    }


def test_client_token_of_64_bytes_is_accepted(store: ShadowStore) -> None:
    """§3.2 clientToken <= 64 bytes (bytes, not characters)."""
    out = send(store, "update", {"state": {"desired": {"a": 1}}, "clientToken": "x" * 64})
    assert out[f"{P}/update/accepted"]["clientToken"] == "x" * 64
    err = rejected(
        send(store, "update", {"state": {"desired": {"a": 1}}, "clientToken": "é" * 33})
    )
    assert err["message"] == "Invalid clientToken"


def test_non_utf8_payload_gets_415(store: ShadowStore) -> None:
    err = rejected(send(store, "update", b"\xff\xfe{}"))
    assert err["code"] == 415
    assert err["message"] == "Unsupported documented encoding; supported encoding is UTF-8"


def nested(levels: int) -> dict[str, Any]:
    doc: Any = 1
    for _ in range(levels):
        doc = {"k": doc}
    return doc


def test_depth_limit(store: ShadowStore) -> None:
    """§3.3/§3.4: "JSON contains too many levels of nesting; maximum is 6" (default 6)."""
    assert f"{P}/update/accepted" in send(store, "update", {"state": {"desired": nested(6)}})
    err = rejected(send(store, "update", {"state": {"reported": nested(7)}}))
    assert err == {
        "code": 400,
        "message": "JSON contains too many levels of nesting; maximum is 6",
        "timestamp": T0,
    }
    deep = ShadowStore(clock=Clock(), max_depth=8)
    assert f"{P}/update/accepted" in send(deep, "update", {"state": {"desired": nested(8)}})


def test_document_size_limit(store: ShadowStore) -> None:
    """§3.4: 8 KB of state (desired+reported, compact JSON; metadata excluded) else 413."""
    # {"desired":{"a":"xxx"}} is 20 bytes + len(value)
    out = send(store, "update", {"state": {"desired": {"a": "x" * (8192 - 20)}}})
    assert f"{P}/update/accepted" in out
    err = rejected(send(store, "update", {"state": {"reported": {"b": "y"}}}))
    size = len(
        json.dumps({"desired": {"a": "x" * 8172}, "reported": {"b": "y"}}, separators=(",", ":"))
    )
    assert err["code"] == 413
    assert (
        err["message"] == f"Json document too large.  Size is {size}, max allowed: 8192"
    )  # [ESP70]
    assert store.document("t1")["version"] == 1  # type: ignore[index]


def test_version_conflict(store: ShadowStore) -> None:
    """§3.2 [SHADOW-FLOW]: a stale version gets 409 "Version conflict"; matching is accepted."""
    send(store, "update", {"state": {"desired": {"a": 1}}})
    err = rejected(
        send(store, "update", {"state": {"desired": {"a": 2}}, "version": 5, "clientToken": "c"})
    )
    assert err == {"code": 409, "message": "Version conflict", "timestamp": T0, "clientToken": "c"}
    out = send(store, "update", {"state": {"desired": {"a": 2}}, "version": 1})
    assert out[f"{P}/update/accepted"]["version"] == 2


def test_get_missing_shadow_is_404_with_aws_text(store: ShadowStore) -> None:
    """§3.2 [SHADOW-404]: "No shadow exists with name: 'thing'" for the classic shadow."""
    err = rejected(send(store, "get", {"clientToken": "q"}), "get")
    assert err == {
        "code": 404,
        "message": "No shadow exists with name: 't1'",
        "timestamp": T0,
        "clientToken": "q",
    }
    p = "$aws/things/t1/shadow/name/cfg"
    err = rejected(send(store, "get", name="cfg"), "get", p)
    assert err["message"] == "No shadow exists with name: 'cfg'"


def test_delete_and_version_memory(store: ShadowStore, clock: Clock) -> None:
    """§3.2: delete keeps the version; recreate within 48 h continues it, later restarts."""
    send(store, "update", {"state": {"desired": {"a": 1}}})
    send(store, "update", {"state": {"desired": {"a": 2}}})
    out = send(store, "delete", {"clientToken": "d"})
    assert out == {f"{P}/delete/accepted": {"version": 2, "timestamp": T0, "clientToken": "d"}}
    assert rejected(send(store, "get"), "get")["code"] == 404
    assert rejected(send(store, "delete"), "delete")["code"] == 404
    clock.now += 3600
    out = send(store, "update", {"state": {"desired": {"b": 1}}})
    assert out[f"{P}/update/accepted"]["version"] == 3
    assert "previous" not in out[f"{P}/update/documents"]  # the old document is gone
    send(store, "delete")
    clock.now += 48 * 3600 + 1
    out = send(store, "update", {"state": {"desired": {"b": 1}}})
    assert out[f"{P}/update/accepted"]["version"] == 1


def test_delete_ignores_its_payload(store: ShadowStore) -> None:
    """§3.1: delete's content is ignored (beyond an optional clientToken)."""
    send(store, "update", {"state": {"reported": {"a": 1}}})
    assert f"{P}/delete/accepted" in send(store, "delete", b"garbage")


def test_named_shadows_are_separate(store: ShadowStore) -> None:
    send(store, "update", {"state": {"desired": {"a": 1}}}, name="cfg")
    assert store.document("t1") is None
    assert store.document("t1", "cfg")["state"]["desired"] == {"a": 1}  # type: ignore[index]
    assert store.shadow_names("t1") == ["cfg"]


def test_in_flight_limit_gives_429(store: ShadowStore) -> None:
    """§3.4: more than 10 in-flight requests per thing -> 429; end() admits again."""
    send(store, "update", {"state": {"desired": {"a": 1}}})
    for _ in range(10):
        store.begin("t1")
    err = rejected(send(store, "get", {"clientToken": "z"}), "get")
    assert err["code"] == 429
    assert err["clientToken"] == "z"
    assert rejected(send(store, "get"), "get")["code"] == 429  # still throttled
    assert store.in_flight("t1") == 10
    assert "$aws/things/t2/shadow/get/rejected" in send(
        store, "get", thing="t2"
    )  # other thing: 404
    store.end("t1")
    assert f"{P}/get/accepted" in send(store, "get")
    for _ in range(20):
        store.end("t1")
    assert store.in_flight("t1") == 0


# --- persistence ------------------------------------------------------------------------


def test_persistence_round_trip(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "shadows.json"
    a = ShadowStore(clock=clock, path=path)
    send(a, "update", {"state": {"desired": {"a": [1, {"b": 2}]}, "reported": {"a": 0}}})
    send(a, "update", {"state": {"desired": {"x": 1}}}, name="n1")
    send(a, "delete", name="n1")
    b = ShadowStore(clock=clock, path=path)
    assert b.document("t1") == a.document("t1")
    out = send(b, "update", {"state": {"desired": {"x": 1}}}, name="n1")
    assert out["$aws/things/t1/shadow/name/n1/update/accepted"]["version"] == 2
    c = ShadowStore.from_json(json.loads(json.dumps(a.to_json())), clock=clock)
    assert c.to_json() == a.to_json()


# --- properties -------------------------------------------------------------------------

_leaf = st.one_of(st.text(alphabet="ab", max_size=2), st.booleans(), st.integers(2, 5))
_key = st.sampled_from(["a", "b", "c"])
_value = st.recursive(
    _leaf | st.lists(_leaf, max_size=3),
    lambda inner: st.dictionaries(_key, inner, max_size=3),
    max_leaves=8,
)
_patch = st.recursive(
    st.dictionaries(_key, _value | st.none(), max_size=3),
    lambda inner: st.dictionaries(_key, _value | st.none() | inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(_key, _value, max_size=3), st.dictionaries(_key, _value, max_size=3))
def test_delta_properties(desired: dict[str, Any], reported: dict[str, Any]) -> None:
    """§3.2: delta keys come from desired; reporting the delta makes the delta empty."""
    d = sh.delta(desired, reported)
    assert set(d) <= set(desired)
    fixed = copy.deepcopy(reported)
    sh.merge(fixed, {}, d, 0)
    assert sh.delta(desired, fixed) == {}
    assert sh.delta(desired, desired) == {}
    # No delta exactly when merging desired into reported changes nothing.
    merged = copy.deepcopy(reported)
    sh.merge(merged, {}, desired, 0)
    assert (d == {}) == sh.json_equal(merged, reported)


@given(
    st.lists(st.tuples(st.sampled_from(["desired", "reported"]), _patch), min_size=1, max_size=6)
)
def test_store_json_round_trip(updates: list[tuple[str, dict[str, Any]]]) -> None:
    store = ShadowStore(clock=Clock())
    for section, patch in updates:
        store.handle(req("update"), json.dumps({"state": {section: patch}}).encode())
    again = ShadowStore.from_json(json.loads(json.dumps(store.to_json())))
    assert again.to_json() == store.to_json()
    assert again.document("t1") == store.document("t1")


def _moto_delta_fixed(
    delta: dict[str, Any], desired: dict[str, Any], reported: dict[str, Any]
) -> dict[str, Any]:
    """Undo moto's one delta deviation: it keeps `{}` for an object whose nested delta is
    empty although the objects differ (reported has extra keys). §3.2's algorithm leaves
    such keys out ("if d: out[k] = d")."""
    out = {}
    for k, v in delta.items():
        if isinstance(desired.get(k), dict) and isinstance(reported.get(k), dict):
            v = _moto_delta_fixed(v, desired[k], reported[k])
            if v:
                out[k] = v
        else:
            out[k] = v
    return out


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.sampled_from(["desired", "reported"]), _patch), min_size=1, max_size=6)
)
def test_state_delta_and_version_match_moto(updates: list[tuple[str, dict[str, Any]]]) -> None:
    """Oracle: moto's FakeShadow (moto/iotdata/models.py) computes the same merged state,
    delta and version for partial updates with nulls, nested objects and arrays.

    Excluded where moto is wrong against AWS's documents, each on purpose:
    * metadata: moto stamps every leaf with the latest update's time [MOTO3849] (§3.2 says
      per-leaf timestamps), so metadata is not compared;
    * `"desired": null` removing a section (§3.2): moto ignores it, so patches are never
      null at the section level;
    * `true` vs `1`: moto compares with Python `==`; leaves avoid 0 and 1 so no clash occurs;
    * empty nested deltas: undone by `_moto_delta_fixed` above.
    """
    from moto.iotdata.models import FakeShadow

    store = ShadowStore(clock=Clock())
    moto_shadow = None
    for section, patch in updates:
        payload = {"state": {section: patch}}
        ((topic, body),) = store.handle(req("update"), json.dumps(payload).encode())[:1]
        if topic.endswith("/rejected"):
            # Deeper than our 6 levels (§3.4); moto has no depth limit.
            assert json.loads(body)["message"].startswith("JSON contains too many levels")
            continue
        moto_shadow = FakeShadow.create_from_previous_version(moto_shadow, copy.deepcopy(payload))
        ours = store.document("t1")
        assert ours is not None
        theirs = moto_shadow.to_dict()
        assert ours["version"] == theirs["version"]
        desired = theirs["state"].get("desired") or {}
        reported = theirs["state"].get("reported") or {}
        assert ours["state"].get("desired", {}) == desired
        assert ours["state"].get("reported", {}) == reported
        moto_delta = _moto_delta_fixed(theirs["state"].get("delta") or {}, desired, reported)
        assert ours["state"].get("delta", {}) == moto_delta


def test_moto_deviation_is_real() -> None:
    """The exclusion above is not dead code: moto keeps the empty nested delta."""
    from moto.iotdata.models import FakeShadow

    s = FakeShadow.create_from_previous_version(
        None, {"state": {"desired": {"a": {"x": 1}}, "reported": {"a": {"x": 1, "y": 2}}}}
    )
    assert s.to_dict()["state"]["delta"] == {"a": {}}
    assert sh.delta({"a": {"x": 1}}, {"a": {"x": 1, "y": 2}}) == {}
