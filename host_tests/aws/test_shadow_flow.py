"""Device Shadow through mqtt_v5.aws.shadow against the AWS IoT twin over mutual TLS."""

from __future__ import annotations

import asyncio

import pytest

from mqtt_v5.aws import AwsRejected
from mqtt_v5.aws.shadow import Shadow, match_shadow_topic, shadow_topic, update_request

from .conftest import device, run


def test_topics_assemble_and_match():
    assert shadow_topic("t1", "update") == "$aws/things/t1/shadow/update"
    assert (shadow_topic("t1", "get/accepted", "cfg")
            == "$aws/things/t1/shadow/name/cfg/get/accepted")
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
            assert e.value.code == 404
            assert "No shadow exists" in e.value.message
            acc = await s.update(reported={"temp": 21.5})
            assert acc["state"] == {"reported": {"temp": 21.5}}
            v = acc["version"]
            doc = await s.get()
            assert doc["state"]["reported"] == {"temp": 21.5}
            assert doc["version"] == v
            assert s.version == v
            # optional version check: a stale version is refused with AWS's 409
            with pytest.raises(AwsRejected) as e:
                await s.update(reported={"temp": 1}, version=v - 1)
            assert e.value.code == 409
            assert e.value.message == "Version conflict"
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


def test_document_too_large_rejected_413(twin):
    """A state over the shadow's 8 KB but far under AWS's 128 KiB MQTT limit: the
    library's limit checks let it through, the shadow service refuses it with 413."""
    async def main():
        c = device(twin, "sh-413", maximum_packet_size=65536)
        await c.connect()
        s = Shadow(c)
        with pytest.raises(AwsRejected) as e:
            await s.update(reported={"blob": "x" * 9000})
        assert e.value.code == 413
        assert e.value.status == 413
        assert e.value.message.startswith("Json document too large")
        assert e.value.document["code"] == 413
        assert twin.call(twin.twin.get_shadow, "sh-413") is None  # nothing stored
        assert (await s.update(reported={"blob": "x" * 100}))["version"] == 1
        await c.disconnect()

    run(main())


def test_too_many_requests_rejected_429(twin):
    """AWS throttles a thing with 10 shadow responses in flight (published, not yet
    acknowledged). Another client subscribed to the thing's get/accepted at QoS 1 never
    acknowledges what it gets: after ten gets through ``Shadow`` its ten copies are in
    flight and the next request is rejected with 429; once it is gone, requests are
    served again."""
    from mqtt_v5 import _server_codec as codec

    watch = twin.thing("sh-429-watch")
    allow = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["iot:Subscribe", "iot:Receive"],
        "Resource": ["arn:aws:iot:*:*:topicfilter/$aws/things/sh-429/shadow/*",
                     "arn:aws:iot:*:*:topic/$aws/things/sh-429/shadow/*"]}]}
    twin.call(twin.twin.add_policy, "watch-429", allow, watch.certificate_id)
    raw = twin.raw("mtls", thing="sh-429-watch")
    assert raw.connect("sh-429-watch", clean_start=True).reason_code == 0
    raw.send(codec.Subscribe(1, [("$aws/things/sh-429/shadow/get/accepted", 1)]))
    assert raw.recv_type(codec.SUBACK).reason_codes == [1]
    shadows = twin.twin.services.shadows

    async def main():
        c = device(twin, "sh-429")
        await c.connect()
        s = Shadow(c)
        await s.update(reported={"t": 1})
        for _ in range(shadows.max_in_flight):
            await s.get()    # answered; the watcher's copy stays unacknowledged
        with pytest.raises(AwsRejected) as e:
            await s.update(reported={"t": 2})
        assert e.value.code == 429
        assert e.value.message == "Too Many Requests"
        with pytest.raises(AwsRejected) as e:
            await s.get()
        assert e.value.code == 429
        raw.close()
        for _ in range(100):
            if shadows.in_flight("sh-429") == 0:
                break
            await asyncio.sleep(0.05)
        assert (await s.get())["state"]["reported"] == {"t": 1}  # the 429s changed nothing
        await c.disconnect()

    try:
        run(main())
    finally:
        raw.close()


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
        assert seen
        assert seen[0][0] == {"interval": 10}
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


@pytest.mark.parametrize("persistent", [True, False], ids=["session-kept", "session-lost"])
def test_reconnect_in_the_middle_of_an_update(twin, persistent):
    """The update's PUBLISH is swallowed by a stalled link which then drops: the client
    reconnects, restores the answer subscriptions when the session was lost, resends,
    and the caller gets the accepted document."""
    from netutil import FaultProxy

    proxy = FaultProxy("127.0.0.1", twin.port("mtls")).start()
    try:
        async def main():
            kw = {} if persistent else {"clean_start": True, "session_expiry_interval": 0}
            c = device(twin, "sh-cut", **kw)
            c.url = f"mqtts://127.0.0.1:{proxy.port}"
            events = []
            c.on_connection_event(events.append)
            await c.connect()
            s = Shadow(c, timeout_s=8)
            await s.update(reported={"n": 1})  # answer topics subscribed now
            proxy.stall()
            task = asyncio.create_task(s.update(reported={"n": 2}))
            await asyncio.sleep(0.3)
            proxy.cut()
            proxy.resume()
            acc = await task
            assert acc["state"] == {"reported": {"n": 2}}
            connected = [e for e in events if type(e).__name__ == "Connected"]
            assert len(connected) == 2
            assert connected[1].session_present is persistent
            doc = twin.call(twin.twin.get_shadow, "sh-cut")
            assert doc["state"]["reported"] == {"n": 2}
            await c.disconnect()

        run(main())
    finally:
        proxy.stop()


def test_delta_missed_while_offline_is_applied_after_reconnect(twin):
    from netutil import FaultProxy

    proxy = FaultProxy("127.0.0.1", twin.port("mtls")).start()
    try:
        async def main():
            c = device(twin, "sh-away", clean_start=True, session_expiry_interval=0)
            c.url = f"mqtts://127.0.0.1:{proxy.port}"
            await c.connect()
            s = Shadow(c)
            await s.update(reported={"mode": "eco"})
            seen = []
            await s.on_delta(lambda state, version: seen.append(state))
            proxy.refuse(True)
            proxy.cut()
            await asyncio.sleep(0.2)
            desired = {"state": {"desired": {"mode": "boost"}}}
            twin.call(twin.twin.update_shadow, "sh-away", desired)
            proxy.refuse(False)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.05)
            assert seen == [{"mode": "boost"}]
            for _ in range(100):
                doc = twin.call(twin.twin.get_shadow, "sh-away")
                if doc["state"]["reported"]["mode"] == "boost":
                    break
                await asyncio.sleep(0.05)
            assert "delta" not in doc["state"]
            await c.disconnect()

        run(main())
    finally:
        proxy.stop()


def test_stale_and_repeated_deltas_are_dropped(twin):
    async def main():
        c = device(twin, "sh-order")
        await c.connect()
        s = Shadow(c)
        seen = []
        await s.on_delta(lambda state, version: seen.append(version) or False, resync=False)
        await s._apply({"x": 1}, 5)
        await s._apply({"x": 0}, 4)   # older: dropped
        await s._apply({"x": 1}, 5)   # repeated: dropped
        await s._apply({"x": 2}, 6)
        assert seen == [5, 6]
        await c.disconnect()

    run(main())


def test_a_partly_applied_delta_does_not_loop(twin):
    """AWS publishes a delta after a reported-only update that leaves a difference: a
    device that applies only part of a delta must not report it again and again."""
    async def main():
        c = device(twin, "sh-partial")
        await c.connect()
        s = Shadow(c)
        await s.update(reported={"led": "off"})
        calls = []

        def apply(state, version):
            calls.append(state)
            return {k: v for k, v in state.items() if k != "colour"}  # no colour here

        await s.on_delta(apply)
        twin.call(twin.twin.update_shadow, "sh-partial",
                  {"state": {"desired": {"led": "on", "colour": "red"}}})
        for _ in range(100):
            doc = twin.call(twin.twin.get_shadow, "sh-partial")
            if doc["state"]["reported"].get("led") == "on":
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        settled = twin.call(twin.twin.get_shadow, "sh-partial")["version"]
        await asyncio.sleep(0.5)
        assert twin.call(twin.twin.get_shadow, "sh-partial")["version"] == settled
        assert calls[0] == {"led": "on", "colour": "red"}
        assert len(calls) <= 2                # the first, and at most the leftover once
        assert twin.call(twin.twin.get_shadow, "sh-partial")["state"]["delta"] == {
            "colour": "red"}
        await c.disconnect()

    run(main())


def test_a_lost_answer_times_out_instead_of_parking_the_caller(twin):
    from netutil import FaultProxy

    from mqtt_v5 import MqttTimeout

    proxy = FaultProxy("127.0.0.1", twin.port("mtls")).start()
    try:
        async def main():
            c = device(twin, "sh-lost")
            c.url = f"mqtts://127.0.0.1:{proxy.port}"
            await c.connect()
            s = Shadow(c, timeout_s=0.5)
            await s.update(reported={"a": 1})
            proxy.stall()                         # nothing gets through any more
            with pytest.raises(MqttTimeout, match=r"no answer within 0\.5 s"):
                await asyncio.wait_for(s.get(), 5)
            proxy.resume()
            assert (await s.get())["state"]["reported"] == {"a": 1}
            await c.disconnect()

        run(main())
    finally:
        proxy.stop()


def test_an_answer_over_the_maximum_packet_size_times_out_with_a_hint(twin):
    from mqtt_v5 import MqttTimeout

    async def main():
        c = device(twin, "sh-big", maximum_packet_size=2048)
        await c.connect()
        s = Shadow(c, timeout_s=1)
        big = {f"k{i}": "v" * 40 for i in range(40)}    # the get answer (with metadata) > 2 KB
        await asyncio.wait_for(s.update(reported={"a": 1}), 5)
        twin.call(twin.twin.update_shadow, "sh-big", {"state": {"reported": big}})
        with pytest.raises(MqttTimeout, match="maximum_packet_size=2048"):
            await s.get()
        bigger = device(twin, "sh-big", maximum_packet_size=16384)
        await c.disconnect()
        await bigger.connect()
        doc = await Shadow(bigger).get()
        assert doc["state"]["reported"]["k39"] == "v" * 40
        await bigger.disconnect()

    run(main())
