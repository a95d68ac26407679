"""Device Shadow through mqtt_v5.aws.shadow against the AWS IoT twin over mutual TLS."""

from __future__ import annotations

import asyncio

import pytest

from mqtt_v5.aws import AwsRejected
from mqtt_v5.aws.shadow import Shadow, match_shadow_topic, shadow_topic, update_request

from .conftest import device, run


def test_topics_assemble_and_match():
    assert shadow_topic("t1", "update") == "$aws/things/t1/shadow/update"
    assert shadow_topic("t1", "get/accepted", "cfg") == "$aws/things/t1/shadow/name/cfg/get/accepted"
    assert match_shadow_topic("$aws/things/t1/shadow/update/delta") == ("t1", None, "update/delta")
    assert match_shadow_topic("$aws/things/t1/shadow/name/cfg/get/rejected") == (
        "t1", "cfg", "get/rejected")
    for other in ("$aws/things/t1/shadow/update", "$aws/things/t1/shadow/update/deltaX",
                  "$aws/things/t1/jobs/notify", "a/b", "$aws/things//shadow/get/accepted",
                  "$aws/things/t1/shadow/name//get/accepted"):
        assert match_shadow_topic(other) is None, other


def test_update_request_payload():
    import json

    body = json.loads(update_request(reported={"t": 1}, version=3, client_token="c"))
    assert body == {"state": {"reported": {"t": 1}}, "version": 3, "clientToken": "c"}
    assert json.loads(update_request(state={"desired": None})) == {"state": {"desired": None}}


def test_get_update_delete_classic_and_named(twin):
    async def main():
        c = device(twin, "sh-1")
        await c.connect()
        for name in (None, "config"):
            s = Shadow(c, name=name)
            with pytest.raises(AwsRejected) as e:
                await s.get()
            assert e.value.code == 404 and "No shadow exists" in e.value.message
            acc = await s.update(reported={"temp": 21.5})
            assert acc["state"] == {"reported": {"temp": 21.5}}
            v = acc["version"]
            doc = await s.get()
            assert doc["state"]["reported"] == {"temp": 21.5} and doc["version"] == v
            assert s.version == v
            # optional version check: a stale version is refused with AWS's 409
            with pytest.raises(AwsRejected) as e:
                await s.update(reported={"temp": 1}, version=v - 1)
            assert e.value.code == 409 and e.value.message == "Version conflict"
            acc = await s.update(reported={"temp": 22}, version=v)
            assert acc["version"] == v + 1
            gone = await s.delete()
            assert "version" in gone
            with pytest.raises(AwsRejected):
                await s.get()
        assert twin.call(twin.twin.get_shadow, "sh-1") is None
        await c.disconnect()

    run(main())


def test_bad_request_rejected_400(twin):
    async def main():
        c = device(twin, "sh-400")
        await c.connect()
        s = Shadow(c)
        with pytest.raises(AwsRejected) as e:
            await s.update(state={"reported": 5})  # AWS: "Reported node must be an object"
        assert e.value.code == 400
        await c.disconnect()

    run(main())


def test_delta_applied_and_reported_in_one_step(twin):
    async def main():
        c = device(twin, "sh-delta")
        await c.connect()
        s = Shadow(c)
        await s.update(reported={"interval": 60, "unit": "C"})
        seen = []

        def apply(state, version):
            seen.append((state, version))
            return None  # report the delta as given

        await s.on_delta(apply)
        twin.call(twin.twin.update_shadow, "sh-delta",
                  {"state": {"desired": {"interval": 10, "unit": "C"}}})
        for _ in range(100):
            doc = twin.call(twin.twin.get_shadow, "sh-delta")
            if doc["state"].get("reported", {}).get("interval") == 10:
                break
            await asyncio.sleep(0.05)
        assert seen and seen[0][0] == {"interval": 10}  # only what changed
        assert doc["state"]["reported"] == {"interval": 10, "unit": "C"}
        assert "delta" not in doc["state"]
        await c.disconnect()

    run(main())


def test_documents_callback(twin):
    async def main():
        c = device(twin, "sh-docs")
        await c.connect()
        s = Shadow(c)
        got = asyncio.Event()
        docs = []
        await s.on_documents(lambda d: (docs.append(d), got.set()))
        await s.update(reported={"a": 1})
        await asyncio.wait_for(got.wait(), 5)
        assert docs[0]["current"]["state"]["reported"] == {"a": 1}
        await c.disconnect()

    run(main())
