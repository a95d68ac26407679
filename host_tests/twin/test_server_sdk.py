"""The official AWS IoT Device SDK v2 (awsiotsdk / awscrt) against the twin over mutual
TLS: connect as a thing, then Device Shadow through ``IotShadowClientV2`` and Jobs through
``IotJobsClientV2`` (brokers-and-peers.md §4; aws-iot-spec §3, §4, §6.1)."""

from __future__ import annotations

import threading

import pytest

# awsiotsdk is a pinned dev dependency: a missing one fails here, it does not skip.
from awscrt import mqtt_request_response
from awsiot import (
    ServiceStreamOptions,
    V2ServiceException,
    iotjobs,
    iotshadow,
    mqtt5_client_builder,
)

from twin._server_util import running_twin

TIMEOUT = 10


@pytest.fixture
def sdk_client(tmp_path):
    """A started SDK MQTT 5 client connected as thing ``t1`` over mTLS, and the twin."""
    with running_twin(tmp_path) as tw:
        creds = tw.thing("t1")
        connected = threading.Event()
        failures = []
        client = mqtt5_client_builder.mtls_from_path(
            endpoint="localhost",
            port=tw.port("mtls"),
            cert_filepath=str(creds.cert_path),
            pri_key_filepath=str(creds.key_path),
            ca_filepath=tw.ca,
            client_id="t1",
            on_lifecycle_connection_success=lambda _d: connected.set(),
            on_lifecycle_connection_failure=lambda d: failures.append(d.exception),
        )
        client.start()
        assert connected.wait(TIMEOUT), failures
        try:
            yield client, tw
        finally:
            client.stop()


def _options():
    return mqtt_request_response.ClientOptions(
        max_request_response_subscriptions=4,
        max_streaming_subscriptions=2,
        operation_timeout_in_seconds=TIMEOUT,
    )


def test_sdk_connects_and_the_twin_sees_its_username_metrics(sdk_client):
    client, tw = sdk_client
    conns = tw.call(tw.twin.connections)
    assert conns[0]["client_id"] == "t1"
    assert conns[0]["thing"] == "t1"
    # brokers-and-peers §4.2: the SDK asks for keep-alive 1200 s.
    assert conns[0]["keep_alive_s"] == 1200
    del client


def test_sdk_shadow_get_update_and_delta_stream(sdk_client):
    client, tw = sdk_client
    shadow = iotshadow.IotShadowClientV2(client, _options())
    with pytest.raises(V2ServiceException) as e:
        shadow.get_shadow(iotshadow.GetShadowRequest(thing_name="t1")).result(TIMEOUT)
    assert e.value.modeled_error.code == 404  # §3.3: no shadow yet

    deltas = []
    got_delta = threading.Event()

    def on_delta(event):
        # The device's own update (desired 3, reported 1) makes a version 1 delta too; the
        # operator's change below is version 2.
        deltas.append(event)
        if event.version == 2:
            got_delta.set()

    stream = shadow.create_shadow_delta_updated_stream(
        iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name="t1"),
        ServiceStreamOptions(incoming_event_listener=on_delta),
    )
    stream.open()

    update = shadow.update_shadow(
        iotshadow.UpdateShadowRequest(
            thing_name="t1", state=iotshadow.ShadowState(desired={"fan": 3}, reported={"fan": 1})
        )
    ).result(TIMEOUT)
    assert update.version == 1
    assert update.state.desired == {"fan": 3}

    got = shadow.get_shadow(iotshadow.GetShadowRequest(thing_name="t1")).result(TIMEOUT)
    assert got.version == 1
    assert got.state.delta == {"fan": 3}
    assert got.state.reported == {"fan": 1}

    # An operator changes desired (UpdateThingShadow): the device's delta stream fires.
    tw.call(tw.twin.update_shadow, "t1", {"state": {"desired": {"fan": 5}}})
    assert got_delta.wait(TIMEOUT)
    assert deltas[-1].state == {"fan": 5}
    assert deltas[-1].version == 2
    assert tw.call(tw.twin.get_shadow, "t1")["state"]["desired"] == {"fan": 5}


def test_sdk_jobs_get_pending_and_start_next(sdk_client):
    client, tw = sdk_client
    tw.call(tw.twin.add_job, "t1", {"operation": "reboot"}, "job-1")
    jobs = iotjobs.IotJobsClientV2(client, _options())
    pending = jobs.get_pending_job_executions(
        iotjobs.GetPendingJobExecutionsRequest(thing_name="t1")
    ).result(TIMEOUT)
    assert [j.job_id for j in pending.queued_jobs] == ["job-1"]
    started = jobs.start_next_pending_job_execution(
        iotjobs.StartNextPendingJobExecutionRequest(thing_name="t1")
    ).result(TIMEOUT)
    assert started.execution.job_id == "job-1"
    assert started.execution.status == "IN_PROGRESS"
    assert started.execution.job_document == {"operation": "reboot"}


@pytest.mark.parametrize(
    ("builder", "listener", "route"),
    [
        ("direct_with_custom_authorizer", "alpn", "alpn-custom-auth"),  # §1.2: 443 + ALPN mqtt
        ("websockets_with_custom_authorizer", "wss", "wss"),
        ("websockets_with_custom_authorizer", "alpn", "alpn-wss"),  # 443 + http/1.1
    ],
)
def test_sdk_custom_authorizer_builders(tmp_path, builder, listener, route):
    # brokers-and-peers §4.3: the SDK's custom-authorizer username (with its SDK metrics
    # suffix) and password; aws-iot-spec §2.1-§2.3: signature checked, Lambda event built.
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from iot_twin.authorizer import CustomAuthorizer

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    sig = base64.b64encode(key.sign(b"tok123", padding.PKCS1v15(), hashes.SHA256())).decode()
    events = []

    def authorize(event):
        events.append(event)
        return {
            "isAuthenticated": event["protocolData"]["mqtt"]["password"] == "c2VjcmV0",
            "principalId": "sdkuser",
            "disconnectAfterInSeconds": 3600,
            "refreshAfterInSeconds": 300,
            "policyDocuments": [
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
                }
            ],
        }

    with running_twin(tmp_path) as tw:
        tw.call(
            tw.twin.register_authorizer,
            CustomAuthorizer(
                "MyAuth", function=authorize, token_key_name="token", public_keys={"k": pub}
            ),
        )
        connected = threading.Event()
        failures = []
        client = getattr(mqtt5_client_builder, builder)(
            endpoint="localhost",
            port=tw.port(listener),
            ca_filepath=tw.ca,
            client_id="sdk-auth",
            auth_username="devuser",
            auth_authorizer_name="MyAuth",
            auth_authorizer_signature=sig,
            auth_token_key_name="token",
            auth_token_value="tok123",
            auth_password=b"secret",
            on_lifecycle_connection_success=lambda _d: connected.set(),
            on_lifecycle_connection_failure=lambda d: failures.append(d.exception),
        )
        client.start()
        try:
            assert connected.wait(TIMEOUT), failures
            conns = tw.call(tw.twin.connections)
            assert conns[0]["listener"] == route
            assert conns[0]["principal"] == "sdkuser"
            assert events[0]["signatureVerified"] is True
            assert events[0]["token"] == "tok123"
            assert "SDK=" in events[0]["protocolData"]["mqtt"]["username"]
        finally:
            client.stop()


def test_sdk_reported_only_update_that_leaves_a_difference_sends_a_delta(sdk_client):
    # Item 10, the current data-flow page: "When the shadow's state changes, AWS IoT sends
    # /delta messages ... with the difference between the desired and the reported states".
    client, tw = sdk_client
    shadow = iotshadow.IotShadowClientV2(client, _options())
    tw.call(tw.twin.update_shadow, "t1", {"state": {"desired": {"fan": 5}}})  # version 1
    deltas = []
    got = threading.Event()

    def on_delta(event):
        deltas.append(event)
        got.set()

    stream = shadow.create_shadow_delta_updated_stream(
        iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name="t1"),
        ServiceStreamOptions(incoming_event_listener=on_delta),
    )
    stream.open()
    shadow.update_shadow(
        iotshadow.UpdateShadowRequest(
            thing_name="t1", state=iotshadow.ShadowState(reported={"fan": 2})
        )
    ).result(TIMEOUT)
    assert got.wait(TIMEOUT)
    assert deltas[-1].version == 2
    assert deltas[-1].state == {"fan": 5}


def test_sdk_shadow_depth_limit(sdk_client):
    # Item 10: 6 levels inside desired/reported (8 keys from "state", as the current quota
    # page's "maximum depth ... 8" reads), one more is 400 (see DEVIATIONS).
    client, _tw = sdk_client
    shadow = iotshadow.IotShadowClientV2(client, _options())

    def nested(levels):
        doc = 1
        for i in range(levels):
            doc = {f"k{i}": doc}
        return doc

    ok = shadow.update_shadow(
        iotshadow.UpdateShadowRequest(
            thing_name="t1", state=iotshadow.ShadowState(reported=nested(6))
        )
    ).result(TIMEOUT)
    assert ok.version == 1
    with pytest.raises(V2ServiceException) as e:
        shadow.update_shadow(
            iotshadow.UpdateShadowRequest(
                thing_name="t1", state=iotshadow.ShadowState(reported=nested(7))
            )
        ).result(TIMEOUT)
    assert e.value.modeled_error.code == 400
    assert "maximum is 6" in e.value.modeled_error.message
