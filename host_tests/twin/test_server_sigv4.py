"""MQTT over WebSocket signed with SigV4 (aws-iot-spec §1.2 [PROTO]), the official AWS
SDK's ``websockets_with_default_aws_signing`` builder as the client and a static test
credential registered on the twin (issue 11, item 6)."""

from __future__ import annotations

import queue
import threading

import pytest
from awscrt import auth, mqtt5
from awsiot import mqtt5_client_builder

from iot_twin.sigv4 import SigV4Error, verify_presigned
from twin._server_util import TIMEOUT, running_twin

KEY_ID, SECRET = "AKIDTWINTEST", "twin-test-secret"
ARN = "arn:aws:iot:us-east-1:123456789012"


@pytest.fixture
def tw(tmp_path):
    with running_twin(tmp_path, listeners=("wss", "alpn")) as t:
        t.call(t.twin.add_iam_credential, KEY_ID, SECRET)
        yield t


def _sdk(tw, client_id, secret=SECRET, listener="wss"):
    connected, failed = threading.Event(), queue.Queue()
    messages = queue.Queue()
    client = mqtt5_client_builder.websockets_with_default_aws_signing(
        region="us-east-1",
        credentials_provider=auth.AwsCredentialsProvider.new_static(KEY_ID, secret),
        endpoint="localhost",
        port=tw.port(listener),
        ca_filepath=tw.ca,
        client_id=client_id,
        on_lifecycle_connection_success=lambda _d: connected.set(),
        on_lifecycle_connection_failure=failed.put,
        on_publish_received=lambda d: messages.put(d.publish_packet),
    )
    client.start()
    return client, connected, failed, messages


@pytest.mark.parametrize("listener", ["wss", "alpn"])
def test_sdk_sigv4_websocket_connects_publishes_and_receives(tw, listener):
    client, connected, failed, messages = _sdk(tw, "sig-1", listener=listener)
    try:
        assert connected.wait(TIMEOUT), failed.queue
        sub = mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription("sig/+", mqtt5.QoS.AT_LEAST_ONCE)]
        )
        assert [int(c) for c in client.subscribe(sub).result(TIMEOUT).reason_codes] == [1]
        pub = mqtt5.PublishPacket(topic="sig/a", payload=b"signed", qos=mqtt5.QoS.AT_LEAST_ONCE)
        assert int(client.publish(pub).result(TIMEOUT).puback.reason_code) == 0
        assert messages.get(timeout=TIMEOUT).payload == b"signed"
        conns = tw.call(tw.twin.connections)
        assert conns[0]["auth"] == "sigv4"
        assert conns[0]["principal"] == KEY_ID
    finally:
        client.stop()


def test_sdk_sigv4_with_a_wrong_secret_is_refused(tw):
    client, connected, failed, _ = _sdk(tw, "sig-2", secret="not-the-secret")
    try:
        failure = failed.get(timeout=TIMEOUT)
        assert failure.connack_packet is None  # refused at the HTTP upgrade (403)
        assert not connected.is_set()
        assert tw.call(tw.twin.connections) == []
    finally:
        client.stop()


def test_sigv4_credential_policies_apply(tw):
    # The credential's IoT policies decide, like a certificate's.
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/*"},
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN}:topic/ok/*"},
        ],
    }
    tw.call(tw.twin.add_iam_credential, KEY_ID, SECRET, [doc])
    client, connected, failed, _ = _sdk(tw, "sig-3")
    try:
        assert connected.wait(TIMEOUT), failed.queue
        ok = mqtt5.PublishPacket(topic="ok/a", payload=b"x", qos=mqtt5.QoS.AT_LEAST_ONCE)
        no = mqtt5.PublishPacket(topic="no/a", payload=b"x", qos=mqtt5.QoS.AT_LEAST_ONCE)
        assert int(client.publish(ok).result(TIMEOUT).puback.reason_code) == 0
        assert int(client.publish(no).result(TIMEOUT).puback.reason_code) == 0x87
    finally:
        client.stop()


def test_verify_presigned_rejects_tampering_and_stale_dates():
    # The unit under the endpoint: a request signed by awscrt verifies; changing the
    # path, a header or the date breaks it.
    from urllib.parse import urlsplit

    from awscrt import http

    req = http.HttpRequest("GET", "/mqtt", http.HttpHeaders([("Host", "localhost:1")]))
    cfg = auth.AwsSigningConfig(
        algorithm=auth.AwsSigningAlgorithm.V4,
        signature_type=auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
        credentials_provider=auth.AwsCredentialsProvider.new_static(KEY_ID, SECRET),
        region="us-east-1",
        service="iotdevicegateway",
        omit_session_token=True,
    )
    auth.aws_sign_request(req, cfg).result(TIMEOUT)
    url = urlsplit(req.path)
    import time

    args = {
        "method": "GET",
        "path": url.path,
        "query": url.query,
        "headers": {"host": "localhost:1"},
        "credentials": {KEY_ID: SECRET},
        "now": time.time(),
        "region": "us-east-1",
    }
    assert verify_presigned(**args) == KEY_ID
    for change in (
        {"path": "/other"},
        {"headers": {"host": "localhost:2"}},
        {"now": time.time() + 3600},
        {"credentials": {KEY_ID: "other"}},
        {"region": "eu-west-1"},
    ):
        with pytest.raises(SigV4Error):
            verify_presigned(**{**args, **change})
