"""The AWS connection preset and AWS IoT Core's limits, checked before a byte is sent."""

from __future__ import annotations

import asyncio

import pytest
from netutil import FaultProxy

from mqtt_v5 import ConnectRefused, UsageError
from mqtt_v5.aws.connect import (
    aws_client,
    check_client_id,
    check_filters,
    check_publish,
    check_topic,
    metrics_username,
)

from .conftest import device, run


def test_topic_limits_count_bytes_and_slashes_without_the_exempt_prefixes():
    check_topic("a/" * 7 + "b")                       # 7 slashes: fine
    with pytest.raises(UsageError) as e:
        check_topic("a/" * 8 + "b")                   # 8 slashes
    assert e.value.reason_code == 0x90
    check_topic("$aws/rules/my_rule/" + "a/" * 7 + "b")   # rule prefix not counted
    check_topic("$share/grp/" + "a/" * 7 + "b")           # share prefix not counted
    check_topic("$share/grp/$aws/rules/r/" + "a/" * 7 + "b")
    with pytest.raises(UsageError):
        check_topic("$aws/rules/my_rule/" + "a/" * 8 + "b")
    check_topic("x" * 256)
    with pytest.raises(UsageError):
        check_topic("x" * 257)
    with pytest.raises(UsageError):
        check_topic("é" * 129)                        # 258 bytes in UTF-8
    check_topic("$aws/rules/r/" + "x" * 256)
    with pytest.raises(UsageError) as e:
        check_filters(["a/" * 8 + "#"])
    assert e.value.reason_code == 0x8F
    with pytest.raises(UsageError):
        check_filters([f"f{i}" for i in range(9)])
    check_filters([f"f{i}" for i in range(8)])


def test_publish_and_client_id_limits():
    check_publish("t", b"x" * 131072, 1)
    with pytest.raises(UsageError):
        check_publish("t", b"x" * 131073, 1)
    with pytest.raises(UsageError):
        check_publish("t", "é" * 65537, 0)            # 131074 bytes as UTF-8
    with pytest.raises(UsageError) as e:
        check_publish("t", b"", 2)
    assert e.value.reason_code == 0x9B
    check_client_id("c" * 128)
    for bad in ("c" * 129, "", "$GEN/abc"):
        with pytest.raises(UsageError):
            check_client_id(bad)


def test_metrics_username():
    assert metrics_username(None, version="1") == "?SDK=mqtt_v5&Version=1"
    assert metrics_username("u?a=b", version="1") == "u?a=b&SDK=mqtt_v5&Version=1"


def test_metrics_username_reaches_the_endpoint(twin):
    """``aws_client(..., metrics=True)`` end to end: the twin's CONNECT carries the
    username with AWS's SDK-metrics query (after the user's own username, if any), the
    connection is accepted over mutual TLS, and without ``metrics`` no username is sent."""
    from urllib.parse import parse_qs

    from mqtt_v5 import __version__

    async def main():
        for thing, kw in (("metrics-1", {}), ("metrics-2", {"username": "fleet-a"}),
                          ("metrics-3", {"metrics": False})):
            c = device(twin, thing, **({"metrics": True} | kw))
            await c.connect()
            await c.publish_qos1(f"devices/{thing}/up", b"1")
            await c.disconnect()

    run(main())
    seen = twin.twin.connect_usernames
    for thing, user in (("metrics-1", ""), ("metrics-2", "fleet-a")):
        name, _, query = seen[thing].partition("?")
        assert name == user
        assert parse_qs(query) == {"SDK": ["mqtt_v5"], "Version": [__version__]}
    assert seen["metrics-3"] is None


def test_preset_defaults_and_refusals():
    c = aws_client("abc-ats.iot.eu-west-1.amazonaws.com", "thing-1", cert=b"x", key=b"y")
    o = c.options
    assert c.url == "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883"
    assert (o.client_id, o.clean_start, o.session_expiry_interval, o.keep_alive) == (
        "thing-1", False, 3600, 300)
    assert o.tls.server_hostname == "abc-ats.iot.eu-west-1.amazonaws.com"
    assert o.tls.alpn is None
    c443 = aws_client("e", "thing-1", cert=b"x", key=b"y", port=443)
    assert c443.options.tls.alpn == ["x-amzn-mqtt-ca"]
    assert c443.url == "mqtts://e:443"
    for kw in ({"keep_alive": 10}, {"keep_alive": 1201}, {"client_id": "c" * 129}):
        with pytest.raises(UsageError):
            aws_client("e", "thing-1", cert=b"x", key=b"y", **kw)
    with pytest.raises(UsageError):
        aws_client("e", "thing-1")                    # no certificate
    from mqtt_v5 import Will

    with pytest.raises(UsageError):
        aws_client("e", "thing-1", cert=b"x", key=b"y", will=Will("s/t", b"x", qos=2))


def test_violations_are_caught_before_any_byte_is_sent(twin):
    proxy = FaultProxy("127.0.0.1", twin.port("mtls")).start()
    try:
        async def main():
            c = device(twin, "lim-1")
            c.url = f"mqtts://127.0.0.1:{proxy.port}"
            await c.connect()
            await c.publish_qos1("ok/topic", b"fine")
            await asyncio.sleep(0.1)
            sent = proxy.bytes_up
            bad = [
                c.publish("t", b"x", qos=2),
                c.publish("t", b"x" * 131073, qos=1),
                c.publish("a/" * 8 + "b", b"x"),
                c.publish("x" * 257, b"x", qos=1),
                c.begin_publish("t", b"x", qos=2),
                c.subscribe("a/" * 8 + "#", qos=1),
                c.subscribe("t/#", qos=2),
            ]
            for coro in bad:
                with pytest.raises(UsageError):
                    await coro
            await asyncio.sleep(0.1)
            assert proxy.bytes_up == sent
            for i in range(50):
                await c.subscribe(f"f/{i}", qos=1)
            sent = proxy.bytes_up
            with pytest.raises(UsageError) as e:
                await c.subscribe("f/50", qos=1)       # the 51st
            assert "50" in str(e.value)
            await asyncio.sleep(0.1)
            assert proxy.bytes_up == sent
            await c.unsubscribe("f/0")
            await c.subscribe("f/50", qos=1)          # room again
            assert c.is_connected
            await c.disconnect()

        run(main())
    finally:
        proxy.stop()


def test_port_443_with_alpn_on_cpython(twin):
    async def main():
        creds = twin.thing("alpn-1")
        c = aws_client("127.0.0.1", "alpn-1", cert=str(creds.cert_path), key=str(creds.key_path),
                       ca=twin.ca, port=443, server_hostname="localhost")
        c.url = f"mqtts://127.0.0.1:{twin.port('alpn')}"
        ev = await c.connect()
        assert ev.limits.maximum_qos == 1
        await c.publish_qos1("alpn/hello", b"hi")
        await c.disconnect()

    run(main())


def test_policy_that_forbids_a_topic_and_a_wrong_client_id(twin):
    from mqtt_v5 import PublishFailed, SubscribeFailed

    async def main():
        c = device(twin, "pol-1")
        await c.connect()
        with pytest.raises(PublishFailed) as e:
            await c.publish_qos1("$aws/things/other-thing/shadow/update", b"{}")
        assert e.value.reason_code == 0x87
        with pytest.raises(SubscribeFailed) as e:
            await c.subscribe("$aws/things/other-thing/shadow/update/delta", qos=1)
        assert e.value.reason_code == 0x87
        assert c.is_connected
        await c.disconnect()
        other = device(twin, "pol-1", client_id="not-the-thing")
        with pytest.raises(ConnectRefused) as e:
            await other.connect()
        assert e.value.reason_code == 0x87

    run(main())
