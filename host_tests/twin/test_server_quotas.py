"""AWS IoT Core's per-connection quotas as the official AWS SDK meets them: the 51st
subscription, publishes and bytes per second, CONNECTs per second per client id (issue 11,
items 5 and 7). Values and what the client sees are in the twin's DEVIATIONS where AWS
does not document them."""

from __future__ import annotations

import pytest

from twin._server_util import SdkClient, running_twin


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
