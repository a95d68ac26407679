"""A custom authorizer's ``refreshAfterInSeconds`` and ``disconnectAfterInSeconds`` at the
endpoint (aws-iot-spec §2.3 [CONFIG-CUSTOM-AUTH]: the policy is cached for the refresh
period, then the authorizer is invoked again; the connection is closed after the
disconnect period), with the official AWS SDK's custom-authorizer builder as the device.
The twin's test-only ``authorizer_time_scale`` turns AWS's 300 s minimum into a second or
two."""

from __future__ import annotations

import base64
import queue
import threading
import time

import pytest
from awscrt import mqtt5
from awsiot import mqtt5_client_builder
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from iot_twin.authorizer import CustomAuthorizer
from twin._server_util import TIMEOUT, running_twin

ARN = "arn:aws:iot:us-east-1:123456789012"
SCALE = 1 / 250  # 300 s -> 1.2 s, 600 s -> 2.4 s


def _policy(topic):
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/*"},
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN}:topic/{topic}"},
        ],
    }


class Lambda:
    """Answers with ``self.answer`` (changed by the test) and records every event."""

    def __init__(self):
        self.events = []
        self.answer = {
            "isAuthenticated": True,
            "principalId": "dev",
            "refreshAfterInSeconds": 300,
            "disconnectAfterInSeconds": 86400,
            "policyDocuments": [_policy("first")],
        }

    def __call__(self, event):
        self.events.append(event)
        return dict(self.answer)


@pytest.fixture
def setup(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    fn = Lambda()
    with running_twin(tmp_path, listeners=("alpn",), authorizer_time_scale=SCALE) as tw:
        tw.call(
            tw.twin.register_authorizer,
            CustomAuthorizer("Auth", function=fn, token_key_name="tok", public_keys={"k": pub}),
        )
        sig = base64.b64encode(key.sign(b"t", padding.PKCS1v15(), hashes.SHA256())).decode()
        yield tw, fn, sig


def _sdk(tw, sig):
    connected, stopped = threading.Event(), queue.Queue()
    client = mqtt5_client_builder.direct_with_custom_authorizer(
        endpoint="localhost",
        port=tw.port("alpn"),
        ca_filepath=tw.ca,
        auth_username="dev",
        auth_authorizer_name="Auth",
        auth_authorizer_signature=sig,
        auth_token_key_name="tok",
        auth_token_value="t",
        client_id="dev-1",
        on_lifecycle_connection_success=lambda _d: connected.set(),
        on_lifecycle_disconnection=stopped.put,
    )
    client.start()
    assert connected.wait(TIMEOUT)
    return client, stopped


def _publish(client, topic):
    packet = mqtt5.PublishPacket(topic=topic, payload=b"x", qos=mqtt5.QoS.AT_LEAST_ONCE)
    return int(client.publish(packet).result(TIMEOUT).puback.reason_code)


def test_refresh_reinvokes_the_authorizer_and_applies_its_new_policy(setup):
    tw, fn, sig = setup
    client, _ = _sdk(tw, sig)
    try:
        assert len(fn.events) == 1
        assert _publish(client, "first") == 0
        assert _publish(client, "second") == 0x87
        fn.answer = {**fn.answer, "policyDocuments": [_policy("second")]}
        deadline = time.monotonic() + TIMEOUT
        while len(fn.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(fn.events) == 2  # refreshed after 300 s (scaled)
        assert _publish(client, "second") == 0
        assert _publish(client, "first") == 0x87
    finally:
        client.stop()


def test_refresh_that_fails_disconnects(setup):
    tw, fn, sig = setup
    client, stopped = _sdk(tw, sig)
    try:
        fn.answer = {**fn.answer, "isAuthenticated": False}
        event = stopped.get(timeout=TIMEOUT)
        assert int(event.disconnect_packet.reason_code) == 0x87
    finally:
        client.stop()


def test_disconnect_after_closes_the_connection(setup):
    tw, fn, sig = setup
    fn.answer = {**fn.answer, "refreshAfterInSeconds": 86400, "disconnectAfterInSeconds": 600}
    client, stopped = _sdk(tw, sig)
    start = time.monotonic()
    try:
        event = stopped.get(timeout=TIMEOUT)
        assert int(event.disconnect_packet.reason_code) == 0x98
        assert time.monotonic() - start >= 600 * SCALE * 0.8
    finally:
        client.stop()
