"""AWS IoT Core's per-connection quotas as the official AWS SDK meets them: the 51st
subscription, publishes and bytes per second, CONNECTs per second per client id (issue 11,
items 5 and 7). Values and what the client sees are in the twin's DEVIATIONS where AWS
does not document them."""

from __future__ import annotations

import contextlib
import queue
import time

import pytest
from awscrt import mqtt5

from iot_twin.server import Limits
from twin._server_util import TIMEOUT, SdkClient, running_twin


@pytest.fixture
def tw(tmp_path):
    with running_twin(tmp_path, listeners=("mtls",)) as t:
        yield t


def test_sdk_fifty_first_subscription_gets_quota_exceeded(tw):
    device = SdkClient(tw, "t1")
    device.wait_connected()
    try:
        for batch in range(0, 50, 8):  # §1.7: at most 8 filters per SUBSCRIBE
            n = min(8, 50 - batch)
            assert device.subscribe(*[f"t1/s/{batch + i}" for i in range(n)]) == [1] * n
        assert device.subscribe("t1/s/50") == [0x97]
        assert device.publish("t1/s/7", b"still subscribed") == 0
        assert device.get().topic == "t1/s/7"
    finally:
        device.stop()


def test_throttles_are_on_by_default_with_aws_values():
    # §0 [QUOTAS]: 100 publishes/s and 512 KiB/s per connection, 1 CONNECT/s per client id.
    lim = Limits()
    assert lim.publishes_per_s == 100
    assert lim.throughput_bytes_per_s == 512 * 1024
    assert lim.connects_per_s_per_client_id == 1


def test_publishes_over_100_per_second_get_quota_exceeded(tw):
    # §0 [QUOTAS]: over 100 publishes a second on a connection the excess is discarded;
    # a QoS 1 publisher hears PUBACK 0x97 (our choice of signal, see DEVIATIONS).
    from mqtt_v5 import _server_codec as codec

    tw.thing("t1")
    raw = tw.raw("mtls", thing="t1")
    assert raw.connect("t1").reason_code == 0
    codes = []
    for first, n in ((1, 100), (101, 50)):  # within Receive Maximum (100) each time
        raw.send(
            b"".join(
                codec.encode_bytes(codec.Publish("t1/burst", b"x", qos=1, packet_id=pid))
                for pid in range(first, first + n)
            )
        )
        codes += [raw.recv_type(codec.PUBACK).reason_code for _ in range(n)]
    assert codes[:100] == [0] * 100  # the quota saves up one second's worth
    assert set(codes[100:]) <= {0, 0x97}
    # Only what refilled while the first 100 were answered (100/s) gets through.
    assert codes.count(0x97) >= 10
    time.sleep(1.1)  # the quota refills
    raw.send(codec.Publish("t1/after", b"y", qos=1, packet_id=7))
    assert raw.recv_type(codec.PUBACK).reason_code == 0
    raw.close()


def test_the_sdk_paces_itself_to_the_publish_quota(tw):
    # The AWS SDK (CRT) applies IoT Core's flow control client-side: 160 publishes
    # queued at once all succeed; it never hears 0x97.
    device = SdkClient(tw, "t1")
    device.wait_connected()
    try:
        futures = [
            device.client.publish(
                mqtt5.PublishPacket(topic="t1/burst", payload=b"x", qos=mqtt5.QoS.AT_LEAST_ONCE)
            )
            for _ in range(160)
        ]
        codes = [int(f.result(TIMEOUT).puback.reason_code) for f in futures]
        assert codes == [0] * 160
    finally:
        device.stop()


def test_qos0_publishes_over_the_rate_are_dropped(tmp_path):
    with running_twin(tmp_path, listeners=("mtls",), limits=Limits(publishes_per_s=5)) as tw:
        device = SdkClient(tw, "t1")
        device.wait_connected()
        try:
            assert device.subscribe("t1/q0") == [1]
            for i in range(20):
                device.publish("t1/q0", str(i), qos=0)
            got = []
            with contextlib.suppress(queue.Empty):
                while True:
                    got.append(device.get(timeout=0.5).payload)
            # The subscription answer counted nothing; 5 saved up, a few more refilled.
            assert 5 <= len(got) < 20
            assert got[:5] == [b"0", b"1", b"2", b"3", b"4"]
            assert tw.call(tw.twin.connections)  # not disconnected
        finally:
            device.stop()


def test_throughput_over_the_quota_is_delayed_not_refused(tmp_path):
    # §0 [QUOTAS]: over 512 KiB/s per connection the traffic is delayed. With 64 KiB/s,
    # 256 KiB (one second's worth may be saved up) cannot take less than ~3 s; nothing is
    # refused or lost.
    limits = Limits(throughput_bytes_per_s=64 * 1024)
    with running_twin(tmp_path, listeners=("mtls",), limits=limits) as tw:
        device = SdkClient(tw, "t1")
        device.wait_connected()
        try:
            assert device.subscribe("t1/bulk") == [1]
            start = time.monotonic()
            for _ in range(8):
                assert device.publish("t1/bulk", bytes(32 * 1024)) == 0
            for _ in range(8):
                assert len(device.get().payload) == 32 * 1024
            assert time.monotonic() - start >= 2.0
        finally:
            device.stop()


def test_connects_over_one_per_second_per_client_id_wait(tw):
    # §1.5 [QUOTAS]: 1 CONNECT per second per client id. By default the twin holds the
    # early CONNECT's CONNACK until the quota has room (see DEVIATIONS).
    tw.thing("t1")
    first = tw.raw("mtls", thing="t1")
    assert first.connect("t1").reason_code == 0
    start = time.monotonic()
    second = tw.raw("mtls", thing="t1")
    assert second.connect("t1").reason_code == 0
    assert time.monotonic() - start >= 0.5  # held until a second after the first CONNECT
    first.close()
    second.close()


def test_connects_over_the_rate_can_be_refused(tmp_path):
    limits = Limits(connect_throttle_refuses=True)
    with running_twin(tmp_path, listeners=("mtls",), limits=limits) as tw:
        device = SdkClient(tw, "t1")
        device.wait_connected()
        device.stop()
        again = SdkClient(tw, "t1")
        try:
            assert again.connack_refusal() == 0x97  # too soon
            again.wait_connected()  # the SDK's retry, a second or more later, gets in
        finally:
            again.stop()
